"""Shared by the synthetic generator's tests: small configs (small networks and narrow depth ranges
keep the TauP grids, the slow part, to a few seconds; the grids are cached per process, so the runs
of one module share them) and independent references computed with obspy."""

from __future__ import annotations

import math

import numpy as np
from obspy import UTCDateTime
from obspy.taup import TauPyModel

from seisjax.data.synthetic import scenario_config, synthesize

TAUP = TauPyModel("iasp91")

TELE_SMALL = {
    "stations.n_scattered": 50, "stations.n_arrays": 1, "stations.array_size": 12,
    "source.depth_km": (200.0, 260.0), "taup.depth_step_km": 30.0, "figure.max_section_traces": 10,
}
# A near-impulsive source, no attenuation, no coda, no noise: every phase is a sharp spike.
TELE_BARE = {**TELE_SMALL, "source.duration_coefficient": 2e-8, "source.subevent_probabilities": (1.0, 0.0, 0.0),
             "source.directivity_probability": 0.0, "propagation.t_star_p": 0.0,
             "propagation.coda_relative_amplitude": 0.0, "noise.enabled": False}
TELE_SIGNAL = {**TELE_SMALL, "source.directivity_probability": 0.5, "noise.snr": (2.0, 20.0)}

LOCAL_SMALL = {
    "catalog.teleseismic_fraction": 0.0, "catalog.local.radius_km": 25.0, "network.radius_km": 25.0,
    "network.n_stations": 12, "catalog.record_probability": 1.0, "catalog.local.depth_km": (5.0, 9.0),
    "catalog.local.magnitude": (2.0, 3.0), "taup.local_depth_step_km": 2.0,
    "propagation.p_coda_relative_amplitude": 0.0, "propagation.s_coda_relative_amplitude": 0.0,
}
# Pure source and path: no attenuation, site or instrument, broadband HH only.
LOCAL_BARE = {**LOCAL_SMALL, "noise.enabled": False, "propagation.q_p": 1e12, "propagation.q_s": 1e12,
              "network.kappa_s": (0.0, 0.0), "network.resonance_gain": (1.0, 1.0),
              "network.site_amplification_log10_std": 0.0, "source.stress_drop_log10_std": 0.0,
              "network.instrument_fractions.HH": 1.0, "network.instrument_fractions.BH": 0.0,
              "network.instrument_fractions.EH": 0.0, "instruments.HH.highpass_hz": 0.0,
              "instruments.HH.lowpass_hz": math.inf}
LOCAL_PHYSICAL = {**LOCAL_SMALL, "noise.enabled": False}
LOCAL_NOISY = {**LOCAL_SMALL, "catalog.teleseismic_fraction": 0.5,
               "catalog.teleseismic.depth_km": (30.0, 40.0), "taup.teleseismic_distance_step_deg": 5.0,
               "noise.snr": (2.0, 50.0)}


def make_dataset(tmp_path_factory, scenario, name, overrides, *, events=2, seed=1, figure=False):
    out = tmp_path_factory.mktemp(name)
    return synthesize(scenario_config(scenario, overrides, events=events, seed=seed), out / "ds", figure=figure,
                      progress=False)


def seconds_after_origin(row) -> float:
    return UTCDateTime(row.trace_start_time) - UTCDateTime(row.source_origin_time)


def first_arrival(depth, distance_deg, names):
    arrivals = [a for a in TAUP.get_travel_times(depth, distance_deg, phase_list=list(names)) if a.name in names]
    return min(arrivals, key=lambda a: a.time)


def aki_richards_p(strike, dip, rake, takeoff, azimuth):
    """F_P of a double couple, Aki & Richards (2002) eq. 4.89, written out by hand."""
    s, d, r, i = (np.deg2rad(v) for v in (strike, dip, rake, takeoff))
    phi = np.deg2rad(azimuth) - s
    return (np.cos(r) * np.sin(d) * np.sin(i) ** 2 * np.sin(2 * phi)
            - np.cos(r) * np.cos(d) * np.sin(2 * i) * np.cos(phi)
            + np.sin(r) * np.sin(2 * d) * (np.cos(i) ** 2 - np.sin(i) ** 2 * np.sin(phi) ** 2)
            + np.sin(r) * np.cos(2 * d) * np.sin(2 * i) * np.sin(phi))


def peak_time(x, centre, half_width, fs):
    """Sub-sample time (s, trace axis) and signed value of the largest |x| near sample ``centre``."""
    lo = max(int(centre - half_width * fs), 1)
    seg = np.abs(x[lo:int(centre + half_width * fs)])
    k = lo + int(np.argmax(seg))
    a, b, c = np.abs(x[k - 1:k + 2])
    shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    return (k + shift) / fs, x[k]
