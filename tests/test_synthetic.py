"""Physics of the synthetic seismograms, checked against independent computations.

Small networks and narrow depth ranges keep the TauP grids (the slow part) to a few seconds; the
grids are cached per process, so the module's runs share them.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.optimize
from obspy import UTCDateTime
from obspy.geodetics import gps2dist_azimuth
from obspy.taup import TauPyModel

from seisjax.cli import main as cli_main
from seisjax.data.dataset import Dataset
from seisjax.data import physics
from seisjax.data.grouping import group_traces
from seisjax.config import apply_overrides
from seisjax.data.synthetic import TravelTimeTable, default_config, read_truth, scenario_config, synthesize
from seisjax.errors import InputError

TAUP = TauPyModel("iasp91")

# --------------------------------------------------------------------------------- fixtures
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


def _make(tmp_path_factory, scenario, name, overrides, *, events=2, seed=1, figure=False):
    out = tmp_path_factory.mktemp(name)
    return synthesize(scenario_config(scenario, overrides, events=events, seed=seed), out / "ds", figure=figure,
                      progress=False)


@pytest.fixture(scope="module")
def tele_bare(tmp_path_factory):
    return _make(tmp_path_factory, "teleseismic-p", "tele_bare", TELE_BARE)


@pytest.fixture(scope="module")
def tele_signal(tmp_path_factory):
    return _make(tmp_path_factory, "teleseismic-p", "tele_signal", {**TELE_SIGNAL, "noise.enabled": False}, seed=2)


@pytest.fixture(scope="module")
def tele_noisy(tmp_path_factory):
    return _make(tmp_path_factory, "teleseismic-p", "tele_noisy", TELE_SIGNAL, seed=2, figure=True)


@pytest.fixture(scope="module")
def local_bare(tmp_path_factory):
    return _make(tmp_path_factory, "local", "local_bare", LOCAL_BARE, events=3)


@pytest.fixture(scope="module")
def local_physical(tmp_path_factory):
    return _make(tmp_path_factory, "local", "local_physical", LOCAL_PHYSICAL, events=3)


@pytest.fixture(scope="module")
def local_noisy(tmp_path_factory):
    return _make(tmp_path_factory, "local", "local_noisy", LOCAL_NOISY, events=6, figure=True)


def _seconds_after_origin(row) -> float:
    return UTCDateTime(row.trace_start_time) - UTCDateTime(row.source_origin_time)


def _first_arrival(depth, distance_deg, names):
    arrivals = [a for a in TAUP.get_travel_times(depth, distance_deg, phase_list=list(names)) if a.name in names]
    return min(arrivals, key=lambda a: a.time)


def _aki_richards_p(strike, dip, rake, takeoff, azimuth):
    """F_P of a double couple, Aki & Richards (2002) eq. 4.89, written out by hand."""
    s, d, r, i = (np.deg2rad(v) for v in (strike, dip, rake, takeoff))
    phi = np.deg2rad(azimuth) - s
    return (np.cos(r) * np.sin(d) * np.sin(i) ** 2 * np.sin(2 * phi)
            - np.cos(r) * np.cos(d) * np.sin(2 * i) * np.cos(phi)
            + np.sin(r) * np.sin(2 * d) * (np.cos(i) ** 2 - np.sin(i) ** 2 * np.sin(phi) ** 2)
            + np.sin(r) * np.cos(2 * d) * np.sin(2 * i) * np.sin(phi))


def _peak_time(x, centre, half_width, fs):
    """Sub-sample time (s, trace axis) and signed value of the largest |x| near sample ``centre``."""
    lo = max(int(centre - half_width * fs), 1)
    seg = np.abs(x[lo:int(centre + half_width * fs)])
    k = lo + int(np.argmax(seg))
    a, b, c = np.abs(x[k - 1:k + 2])
    shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    return (k + shift) / fs, x[k]


# ------------------------------------------------------------------------- teleseismic-p physics
def test_teleseismic_arrivals_match_taup(tele_bare):
    """Peaks of P, pP and sP in noise-free impulsive records sit at obspy TauP's times (computed here
    directly, not from the generator's grid) plus the true timing error, to a tenth of a second."""
    ds = Dataset(tele_bare)
    truth = read_truth(tele_bare)["traces"]
    meta = ds.metadata
    fs = float(meta.trace_sampling_rate_hz.iloc[0])
    checked = {"P": 0, "pP": 0, "sP": 0}
    for i in range(0, len(meta), 3):
        row, tr = meta.iloc[i], truth.iloc[i]
        x = ds.get_waveforms(i)[0].astype(float)
        start = _seconds_after_origin(row)
        arrivals = {a.name: a.time for a in TAUP.get_travel_times(row.source_depth_km, row.path_ep_distance_deg,
                                                                  phase_list=["P", "pP", "sP"])}
        for phase, amp in (("P", tr.amplitude_p), ("pP", tr.amplitude_pp), ("sP", tr.amplitude_sp)):
            strongest = np.abs([tr.amplitude_p, tr.amplitude_pp, tr.amplitude_sp]).max()
            if phase not in arrivals or abs(amp) < 0.2 * strongest:
                continue
            expected = arrivals[phase] + tr.time_error_s - start
            got, _ = _peak_time(x, expected * fs, 1.5, fs)
            assert abs(got - expected) < 0.1, (phase, row.station_code, got, expected)
            checked[phase] += 1
        # the metadata pick is the true onset: TauP P + timing error
        assert abs(row.trace_p_arrival_sample / fs - (arrivals["P"] + tr.time_error_s - start)) < 0.1
    assert checked["P"] >= 5 and checked["pP"] + checked["sP"] >= 5, checked


def test_teleseismic_polarity_is_the_radiation_pattern(tele_bare):
    """Sign of the P spike = sign of Aki & Richards' F_P at TauP's take-off angle and the station
    azimuth (obspy's geodesic), for every trace away from the nodal planes."""
    ds = Dataset(tele_bare)
    meta = ds.metadata
    fs = float(meta.trace_sampling_rate_hz.iloc[0])
    n_checked = 0
    for i, row in meta.iterrows():
        takeoff = _first_arrival(row.source_depth_km, row.path_ep_distance_deg, ("P",)).takeoff_angle
        _, azimuth, _ = gps2dist_azimuth(row.source_latitude_deg, row.source_longitude_deg,
                                         row.station_latitude_deg, row.station_longitude_deg)
        f_p = _aki_richards_p(row.source_strike_deg, row.source_dip_deg, row.source_rake_deg, takeoff, azimuth)
        if abs(f_p) < 0.1:
            continue
        _, value = _peak_time(ds.get_waveforms(i)[0].astype(float), row.trace_p_arrival_sample, 1.0, fs)
        assert np.sign(value) == np.sign(f_p) == row.trace_polarity, (row.station_code, value, f_p)
        n_checked += 1
    assert n_checked >= 20


def test_stfs_integrate_to_the_moment_and_rebuild_the_records(tele_signal):
    """truth.h5 STFs sum to M0 = 10^(1.5 Mw + 9.1) of the catalogue magnitude; and the stored Green's
    functions convolved with the (directivity-stretched) STF and delayed by the timing error give the
    noise-free records back."""
    truth = read_truth(tele_signal, green=True)
    events, traces, stf, green = truth["events"], truth["traces"], truth["stf"], truth["green"]
    fs = truth["attrs"]["stf_sampling_rate_hz"]
    meta = Dataset(tele_signal).metadata
    for e, ev in events.iterrows():
        mw = meta.loc[meta.source_id == ev.source_id, "source_magnitude"].iloc[0]
        np.testing.assert_allclose(stf[e].sum() / fs, ev.moment_nm, rtol=1e-9)
        np.testing.assert_allclose(ev.moment_nm, 10 ** (1.5 * mw + 9.1), rtol=5e-3)
        t = np.arange(stf.shape[1]) / fs
        assert np.all(stf[e] >= 0) and np.all(stf[e][t >= ev.duration_s + 1 / fs] == 0)
    assert traces.stf_time_scale.min() < 0.99 or events.directivity.sum() == 0  # directivity present
    ds = Dataset(tele_signal)
    n = green.shape[1]
    n_fft = 4 * n
    freqs = np.fft.rfftfreq(n_fft, 1 / fs)
    for i in range(0, len(traces), 7):
        tr = traces.iloc[i]
        e = int(np.flatnonzero(events.source_id == tr.source_id)[0])
        scale = tr.stf_time_scale
        cumulative = np.concatenate([[0.0], np.cumsum(stf[e]) / fs])
        edges = np.arange(stf.shape[1] + 1) / fs
        apparent = np.diff(np.interp(edges / scale, edges, cumulative)) * fs
        spectrum = np.fft.rfft(apparent, n_fft) * np.fft.rfft(green[i], n_fft) / fs
        rebuilt = np.fft.irfft(spectrum * np.exp(-2j * np.pi * freqs * tr.time_error_s), n_fft)[:n]
        record = ds.get_waveforms(i)[0].astype(float)
        err = np.abs(rebuilt - record).max() / np.abs(record).max()
        assert err < (1e-4 if scale == 1.0 else 2e-2), (i, scale, err)


def test_teleseismic_snr_is_as_drawn(tele_signal, tele_noisy):
    """Noise = noisy - noise-free record (same seed: the noise has its own random stream). Its RMS
    in the noise window and the signal's in the signal window give exactly the drawn SNR; measured on
    the noisy record alone, as seisjax.data.quality does, the SNR (noise power removed) agrees too."""
    clean, noisy = Dataset(tele_signal), Dataset(tele_noisy)
    truth = read_truth(tele_noisy)["traces"]
    cfg = default_config("teleseismic-p")
    fs = cfg.sampling_rate_hz
    exact, measured = [], []
    for i in range(len(truth)):
        s = clean.get_waveforms(i)[0].astype(float)
        x = noisy.get_waveforms(i)[0].astype(float)
        p = truth.p_arrival_sample.iloc[i]
        nw = slice(int(round(p + cfg.snr.noise_window_s[0] * fs)), int(round(p + cfg.snr.noise_window_s[1] * fs)))
        sw = slice(int(round(p + cfg.snr.signal_window_s[0] * fs)), int(round(p + cfg.snr.signal_window_s[1] * fs)))
        noise = x - s
        exact.append(np.sqrt(np.mean(s[sw] ** 2)) / np.std(noise[nw]))
        ratio = np.sqrt(np.mean((x[sw] - x[nw].mean()) ** 2)) / np.std(x[nw])
        measured.append(np.sqrt(max(ratio ** 2 - 1.0, 0.0)))
    drawn = truth.snr.to_numpy()
    np.testing.assert_allclose(exact, drawn, rtol=2e-3)
    np.testing.assert_allclose(noisy.metadata.trace_snr_db, 20 * np.log10(drawn), atol=1e-3)
    rel = np.abs(np.array(measured) / drawn - 1)
    assert np.median(rel) < 0.15 and np.quantile(rel, 0.9) < 0.4, (np.median(rel), np.quantile(rel, 0.9))


def test_default_network_fills_healpix_groups(tmp_path):
    """With the default global network, every event has (event, pixel) groups of more than 20
    stations at nside 4 (seisjax.data.grouping), the SymAE data requirement."""
    config = scenario_config("teleseismic-p", {"source.depth_km": (200.0, 260.0), "taup.depth_step_km": 30.0,
                                               "noise.enabled": False, "truth.store_green_functions": False},
                             events=3, seed=4)
    out = synthesize(config, tmp_path / "net", figure=False, progress=False)
    meta = Dataset(out).metadata
    assert meta.groupby("source_id").size().min() > 300  # hundreds of stations per event
    groups = group_traces(meta, nside=4, min_stations=21)
    per_event = groups.groupby("source_id").size()
    assert len(per_event) == 3 and per_event.min() >= 3, per_event


def test_travel_time_table_where_branches_change():
    """Between 8 and 10 degrees from a 243 km deep source, iasp91's first P changes from the 'p' to
    the 'P' branch; the interpolated first arrival still follows TauP there (not one branch's end)."""
    table = TravelTimeTable("iasp91", {"P": ("p", "P", "Pn")}, (240.0, 250.0), (7.99, 11.99), 10.0, 2.0)
    distances = np.array([8.5, 9.3, 9.9, 11.0])
    got = table("P", 243.3, distances)["time"]
    expected = [_first_arrival(243.3, d, ("p", "P", "Pn")).time for d in distances]
    np.testing.assert_allclose(got, expected, atol=0.5)


def test_attenuation_operator_is_causal_constant_q():
    """|H| = exp(-pi f t*) exactly; the impulse response starts at t = 0 (nothing before it above
    1% of the peak), its peak delay grows with t*, and it is the same pulse at 20 and 100 Hz."""
    peaks = {}
    for fs in (20.0, 100.0):
        n = int(400 * fs)
        f = np.fft.rfftfreq(n, 1 / fs)
        for t_star in (0.5, 2.0):
            h_f = physics.attenuation_response(n, fs, t_star)
            np.testing.assert_allclose(np.abs(h_f), np.exp(-np.pi * f * t_star), rtol=1e-9, atol=1e-15)
            h = np.fft.irfft(h_f, n)
            t = np.where(np.arange(n) < n // 2, np.arange(n), np.arange(n) - n) / fs
            assert np.abs(h[t < -1 / fs]).max() < 0.01 * h.max()
            peaks[fs, t_star] = t[np.argmax(h)]
    assert 0 < peaks[20.0, 0.5] < peaks[20.0, 2.0]
    assert abs(peaks[20.0, 2.0] - peaks[100.0, 2.0]) <= 0.05


# ------------------------------------------------------------------------------ local physics
def test_local_arrivals_match_taup(local_bare):
    """P and S picks in the metadata are obspy TauP's first arrivals (p/P/Pn, s/S/Sn) for the event
    depth and distance, and the noise-free records start moving at the P pick."""
    ds = Dataset(local_bare)
    meta = ds.metadata
    for i, row in meta.iterrows():
        fs = row.trace_sampling_rate_hz
        start = _seconds_after_origin(row)
        tp = _first_arrival(row.source_depth_km, row.path_ep_distance_deg, ("p", "P", "Pn")).time
        ts = _first_arrival(row.source_depth_km, row.path_ep_distance_deg, ("s", "S", "Sn")).time
        assert abs(row.trace_p_arrival_sample / fs + start - tp) < 0.05, (row.station_code, tp)
        assert abs(row.trace_s_arrival_sample / fs + start - ts) < 0.08, (row.station_code, ts)
        z = ds.get_waveforms(i)[0].astype(float)
        window = z[: int(row.trace_p_arrival_sample + 0.5 * (ts - tp) * fs)]
        onset = np.flatnonzero(np.abs(window) > 0.2 * np.abs(window).max())[0]
        assert abs(onset - row.trace_p_arrival_sample) <= 2, (row.station_code, onset, row.trace_p_arrival_sample)


def test_local_polarity_is_the_radiation_pattern(local_physical):
    """First motion on Z (after attenuation, site and instrument) has the sign of Aki & Richards' F_P
    at the TauP take-off angle of the first P and obspy's azimuth, away from nodal planes."""
    ds = Dataset(local_physical)
    meta = ds.metadata
    n_checked = 0
    for i, row in meta.iterrows():
        first_p = _first_arrival(row.source_depth_km, row.path_ep_distance_deg, ("p", "P", "Pn"))
        _, azimuth, _ = gps2dist_azimuth(row.source_latitude_deg, row.source_longitude_deg,
                                         row.station_latitude_deg, row.station_longitude_deg)
        f_p = _aki_richards_p(row.source_strike_deg, row.source_dip_deg, row.source_rake_deg,
                              first_p.takeoff_angle, azimuth)
        if abs(f_p) < 0.15:
            continue
        fs = row.trace_sampling_rate_hz
        z = ds.get_waveforms(i)[0].astype(float)
        p = int(row.trace_p_arrival_sample)
        window = z[p - int(0.1 * fs): p + int(0.3 * fs)]
        first = window[np.flatnonzero(np.abs(window) > 0.2 * np.abs(window).max())[0]]
        assert np.sign(first) == np.sign(f_p) == row.trace_polarity, (row.station_code, first, f_p)
        n_checked += 1
    assert n_checked >= 10


def test_local_corner_frequency_is_brune(local_bare):
    """The displacement spectrum of the noise-free P pulse, fitted with an omega-squared model, has
    its corner within 10% of Brune's fc = 0.49 beta (stress drop / M0)^(1/3) computed here from the
    catalogue magnitude and the iasp91 shear speed at the source depth."""
    ds = Dataset(local_bare)
    meta = ds.metadata
    cfg = default_config("local")
    v_mod = TAUP.model.s_mod.v_mod
    for source_id, group in meta.groupby("source_id"):
        row = group.sort_values("path_ep_distance_km").iloc[-1]  # longest P window before S
        i = int(row.name)
        fs = row.trace_sampling_rate_hz
        z = ds.get_waveforms(i)[0].astype(float)
        p, s = int(row.trace_p_arrival_sample), int(row.trace_s_arrival_sample)
        disp = np.cumsum(z[p - int(0.2 * fs): s - int(0.2 * fs)]) / fs
        spec = np.abs(np.fft.rfft(disp - disp[0], n=len(disp) * 4))
        f = np.fft.rfftfreq(len(disp) * 4, 1 / fs)
        band = (f > 0.3) & (f < 25.0)
        model = lambda f, log_omega, log_fc: log_omega - np.log(1 + (f / np.exp(log_fc)) ** 2)  # noqa: E731
        (_, log_fc), _ = scipy.optimize.curve_fit(model, f[band], np.log(spec[band]), p0=(np.log(spec[1]), np.log(5.0)))
        m0 = 10 ** (1.5 * row.source_magnitude + 9.1)
        beta = float(np.ravel(v_mod.evaluate_below(row.source_depth_km, "S"))[0]) * 1e3
        fc = 0.49 * beta * (cfg.source.stress_drop_mpa * 1e6 / m0) ** (1 / 3)
        assert abs(np.exp(log_fc) / fc - 1) < 0.1, (source_id, np.exp(log_fc), fc)


def test_local_dataset_columns_truth_and_snr(local_noisy):
    """The local dataset opens with Dataset, mixes instrument families with their own rates, carries
    the label columns (equal to truth.h5), and realises the drawn SNR on Z."""
    ds = Dataset(local_noisy)
    meta = ds.metadata
    assert ds.component_order == "ZNE" and ds.sampling_rate is None
    for column in ("source_id", "source_magnitude", "source_latitude_deg", "source_depth_km", "station_code",
                   "station_channel_code", "trace_sampling_rate_hz", "trace_p_arrival_sample",
                   "trace_s_arrival_sample", "trace_polarity", "path_distance_class", "path_ep_distance_km",
                   "trace_snr_db", "split"):
        assert column in meta.columns, column
    rates = {"HH": 100.0, "BH": 40.0, "EH": 100.0}
    assert all(rates[c] == r for c, r in zip(meta.station_channel_code, meta.trace_sampling_rate_hz))
    assert set(meta.path_distance_class) == {"local", "teleseismic"}
    local = meta.path_distance_class == "local"
    assert meta.path_ep_distance_km[local].max() < 150.0
    assert meta.path_ep_distance_km[~local].between(1000.0, 10000.0).all()
    assert meta.trace_s_arrival_sample[~local].isna().all()  # S after the 80 s window at >= 1000 km
    assert set(meta.station_code) <= {f"SJ{i:02d}" for i in range(1, 13)}
    truth = read_truth(local_noisy)
    np.testing.assert_array_equal(truth["traces"].polarity, meta.trace_polarity)
    np.testing.assert_array_equal(truth["traces"].distance_class, meta.path_distance_class)
    # each event lies in one split
    assert (meta.groupby("source_id").split.nunique() == 1).all()
    rel = []
    for i, row in meta.iterrows():
        z = ds.get_waveforms(i)[0].astype(float)
        fs, p = row.trace_sampling_rate_hz, row.trace_p_arrival_sample
        noise, sig = z[int(round(p - 5 * fs)): int(round(p))], z[int(round(p)): int(round(p + 5 * fs))]
        ratio = np.sqrt(np.mean((sig - noise.mean()) ** 2)) / np.std(noise)
        rel.append(np.sqrt(max(ratio ** 2 - 1, 0)) / 10 ** (row.trace_snr_db / 20) - 1)
    assert np.median(np.abs(rel)) < 0.1, np.median(np.abs(rel))


# ---------------------------------------------------------------------------- the dataset itself
def test_teleseismic_dataset_and_truth_layout(tele_noisy):
    ds = Dataset(tele_noisy)
    meta = ds.metadata
    assert ds.component_order == "Z" and ds.sampling_rate == 10.0
    wave = ds.get_waveforms([0, 1])
    assert wave.shape == (2, 1, 3600) and wave.dtype == np.float32
    for column in ("source_id", "source_origin_time", "source_latitude_deg", "source_longitude_deg",
                   "source_depth_km", "source_magnitude", "source_strike_deg", "source_dip_deg", "source_rake_deg",
                   "station_network_code", "station_code", "station_latitude_deg", "station_longitude_deg",
                   "path_ep_distance_deg", "path_azimuth_deg", "path_back_azimuth_deg", "trace_start_time",
                   "trace_sampling_rate_hz", "trace_p_arrival_sample", "trace_p_predicted_sample",
                   "trace_snr_db", "trace_polarity", "split"):
        assert column in meta.columns, column
    assert meta.path_ep_distance_deg.between(30.0, 90.0).all()
    with h5py.File(tele_noisy / "truth.h5", "r") as h5:
        assert h5["events/stf"].shape[0] == meta.source_id.nunique()
        assert h5["events/stf"].attrs["sampling_rate_hz"] == 10.0
        assert h5["traces/green"].shape == (len(meta), 3600)
        names = [n.decode() for n in h5["traces/trace_name"][()]]
    assert names == meta.trace_name.tolist()
    truth = read_truth(tele_noisy)["traces"]
    np.testing.assert_allclose((meta.trace_p_arrival_sample - meta.trace_p_predicted_sample) / 10.0,
                               truth.time_error_s, atol=2e-3)
    assert (tele_noisy / "figures" / "synthetic_teleseismic-p.png").stat().st_size > 10_000


def _digest(path):
    return hashlib.sha256((path / "waveforms.hdf5").read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path, tele_noisy):
    """Same seed -> byte-identical waveforms.hdf5 (also when the stations are synthesised in chunks of
    another size); another seed -> other events and waveforms."""
    again = synthesize(scenario_config("teleseismic-p", {**TELE_SIGNAL, "memory.traces_per_chunk": 5}, events=2, seed=2),
                       tmp_path / "again", figure=False, progress=False)
    assert _digest(again) == _digest(tele_noisy)
    pd.testing.assert_frame_equal(Dataset(again).metadata, Dataset(tele_noisy).metadata)
    other = synthesize(scenario_config("teleseismic-p", TELE_SIGNAL, events=2, seed=3), tmp_path / "other",
                       figure=False, progress=False)
    a, b = Dataset(other), Dataset(tele_noisy)
    assert not a.metadata.source_latitude_deg.equals(b.metadata.source_latitude_deg)
    n = min(len(a), len(b))
    assert not np.array_equal(a.get_waveforms(list(range(n))), b.get_waveforms(list(range(n))))


# ----------------------------------------------------------------------------------- config, CLI
def test_overrides_are_type_checked():
    cfg = default_config("local")
    apply_overrides(cfg, ["noise.snr=(2, 20)", "network.code=XX", "propagation.q_p=500", "noise.enabled=false"])
    assert cfg.noise.snr == (2.0, 20.0) and cfg.network.code == "XX" and cfg.propagation.q_p == 500.0
    assert cfg.noise.enabled is False and isinstance(cfg.propagation.q_p, float)
    with pytest.raises(InputError, match="propagation.qp"):
        apply_overrides(cfg, ["propagation.qp=3"])
    with pytest.raises(InputError, match="noise.snr"):
        scenario_config("local", {"noise.snr": (1.0, 2.0, 3.0)})
    with pytest.raises(InputError, match="network.n_stations"):
        apply_overrides(cfg, ["network.n_stations=2.5"])
    with pytest.raises(InputError, match="is a section"):
        apply_overrides(cfg, ["noise=3"])


def test_cli_reports_bad_keys_and_ranges(tmp_path, capsys):
    code = cli_main(["data", "synth", "--scenario", "local", "--out", str(tmp_path / "x"), "--config.noise.snrr=(1,2)"])
    assert code == 2 and "noise.snrr" in capsys.readouterr().err
    code = cli_main(["data", "synth", "--scenario", "teleseismic-p", "--out", str(tmp_path / "y"),
                     "--config.source.depth_km=(600,100)"])
    assert code == 2 and "source.depth_km" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_writes_a_dataset(tmp_path, capsys):
    args = ["data", "synth", "--scenario", "teleseismic-p", "--out", str(tmp_path / "cli"), "--config.events=1",
            "--config.seed", "5", "--no-figure", "--quiet"]
    for key, value in TELE_SMALL.items():
        args += [f"--config.{key}={value}"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "traces of 1 teleseismic-p events" in out
    assert len(Dataset(tmp_path / "cli")) == read_truth(tmp_path / "cli")["attrs"]["n_traces"] > 0
    assert cli_main(args) == 2 and "exists" in capsys.readouterr().err  # no silent overwrite


def test_noise_free_script_rebuilds_a_dataset_config_from_its_json(tmp_path):
    """scripts/stf_noise_free.py re-synthesises a dataset from its config.json: the overrides it
    derives give back the same config, so only the noise it switches off differs."""
    import importlib.util
    import json

    path = Path(__file__).resolve().parents[1] / "scripts" / "stf_noise_free.py"
    spec = importlib.util.spec_from_file_location("stf_noise_free", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    wanted = scenario_config("teleseismic-p", ["noise.snr=(0.2, 2.0)", "stations.n_arrays=3", "window.pre_p_s=80.0"],
                             events=5, seed=4)
    stored = json.loads(json.dumps(wanted.to_dict()))   # as config.json holds it
    quiet = scenario_config("teleseismic-p", script.noise_free_overrides(stored))
    assert quiet.noise.enabled is False
    quiet.noise.enabled = True
    assert quiet.to_dict() == wanted.to_dict()   # nothing else differs
