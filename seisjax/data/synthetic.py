"""Physics-based synthetic seismograms with ground truth: seisjax's built-in data.

``synthesize(scenario, out_dir)`` (or ``python -m seisjax data synth``) writes a SeisBench-format
dataset (``metadata.csv`` + ``waveforms.hdf5``) through :class:`~seisjax.data.dataset.DatasetWriter`,
``truth.h5`` with everything needed to score a method, the resolved ``config.json`` and a figure in
``figures/``. Every physical parameter is in :func:`default_config`; a seed fixes every draw (event
``k`` draws from ``numpy.random.default_rng([seed, k, stream])``, with separate streams for the
source, the path and the noise, so switching the noise off leaves the signal bit-identical). Events
are generated and written one at a time (teleseismic stations in chunks of
``memory.traces_per_chunk``, which does not change the result): memory does not grow with the
number of events (benchmarks/bench_synth_memory.py).

Scenario ``teleseismic-p`` (deep earthquakes for SymAE)
-------------------------------------------------------
- Sources: epicentres uniform on the sphere, depths uniform in ``source.depth_km`` (100-600 km),
  Mw uniform in ``source.magnitude``, M0 = 10^(1.5 Mw + 9.1) N m, random double-couple mechanisms
  (strike and rake uniform, fault normal uniform on the sphere).
- Moment-rate source time function (STF): 1 to 3 sub-events (probabilities
  ``source.subevent_probabilities``), each a triangle or a smoothed (Tukey) boxcar, with moment
  fractions from a Dirichlet draw. The total duration scales as the GCMT half-duration,
  ``T = source.duration_coefficient * M0^(1/3)`` (2 x 1.05e-8 (dyne cm)^(-1/3) s = 4.52e-6 s
  (N m)^(-1/3); Ekstrom et al. 2012), with log-normal scatter. A fraction of the events rupture
  unilaterally along a horizontal azimuth at ``rupture_velocity_fraction`` of the shear speed at the
  source: the STF seen along a ray of horizontal slowness p and azimuth phi is compressed in time by
  ``s = 1 - v_r p cos(phi - phi_r)`` (Haskell directivity; the same for P, pP and sP since they share
  p), so its apparent duration varies with azimuth while its area (M0) does not. The STF is sampled
  as the mean moment rate over each sample interval, so it integrates to M0 exactly.
- Stations: a fixed global network (its own seed, so station codes mean the same in every dataset):
  ``stations.n_scattered`` stations uniform on the sphere plus ``stations.n_arrays`` dense arrays of
  ``stations.array_size`` stations within ``stations.array_radius_deg``, so that HEALPix (nside 4)
  groups of one event's stations hold more than 20 stations. An event is recorded by every station
  at ``stations.distance_deg`` (30-90 degrees). Spherical Earth for distances and azimuths.
- Travel times, ray parameters and take-off angles of P, pP and sP come from
  ``obspy.taup.TauPyModel(velocity_model)`` (iasp91). TauP takes ~10 ms per (depth, distance), so it
  is evaluated once per run on a (depth, distance) grid (``taup.depth_step_km`` x
  ``taup.distance_step_deg``) and interpolated bilinearly (at the default 50 km x 2 degrees the
  error is below 0.1 s, one sample; the tests compare with direct TauP calls).
- Green's function (vertical displacement, per unit moment): spikes at the P, pP and sP times with
  amplitudes from the double-couple radiation pattern at the TauP take-off angles and the station
  azimuth (Aki & Richards eq. 4.84-4.88), so the first-motion polarity of P is physical (positive
  F_P = compression = up; ``trace_polarity``). pP is multiplied by the plane-wave free-surface P->P
  coefficient and sP by the SV->P coefficient (Aki & Richards eq. 5.32, surface velocities of the
  model, horizontal slowness of the ray; PP -> -1 at normal incidence, so pP is reversed relative to
  a P of the same radiation; the sign of sP follows the SV polarisation convention of
  ``physics.ray_vectors`` and is not tested) and by ``(alpha_h / beta_h)^3``, the ratio of the S and
  P far-field source terms at the source. Geometric
  spreading is ``1 / (4 pi rho_h alpha_h^3 R)`` with R the straight-line source-station distance, an
  order-of-magnitude amplitude (ray-tube spreading and the receiver's free-surface factor, common to
  the three phases, are neglected). A scattering coda starts at P: white noise whose energy decays as
  ``exp(-2 t / propagation.coda_decay_s)`` and carries the energy of a direct wave of amplitude
  ``propagation.coda_relative_amplitude`` x the RMS P radiation over the focal sphere (sqrt(4/15)).
  Everything is attenuated with a causal constant-Q operator, ``t* = propagation.t_star_p`` (1 s):
  amplitude ``exp(-pi f t*)`` with its minimum phase (the Futterman/Kjartansson dispersion
  ``(t*/pi) ln(f_max/f)``), shifted so that the attenuated pulse starts (1% of its peak) at the TauP
  time: picks mark onsets, and for t* = 1 s the peak comes ~0.8 s after the onset
  (:func:`seisjax.data.physics.attenuation_response`).
- Record = (apparent STF * Green's function) shifted by a per-trace timing error
  ~ N(0, ``propagation.time_error_std_s``) (unmodelled 3-D structure and clock errors), plus noise.
- Noise: Gaussian, with an acceleration PSD a fraction ``noise.level`` of the way (in dB) from
  Peterson's NLNM to his NHNM (obspy's ``get_nlnm``/``get_nhnm``), converted to displacement
  (divided by (2 pi f)^4) and limited to ``noise.band_hz`` by Butterworth edges (below ~0.01 Hz real
  displacement noise is tides and tilt, which every user removes). Its level is then scaled so that
  the trace has the drawn SNR (log-uniform in ``noise.snr``).
- SNR (``trace_snr_db`` = 20 log10 SNR): RMS of the noise-free signal in ``snr.signal_window_s``
  after the true P onset over the RMS of the (demeaned) noise in ``snr.noise_window_s``: the ratio
  that seisjax.data.quality computes on real records, evaluated on the parts we know separately.
- Samples: ``sampling_rate_hz`` (10 Hz: t* = 1 s leaves nothing above 2.5 Hz), from
  ``window.pre_p_s`` before the predicted P to ``window.post_p_s`` after it; component ``Z``; unit m.
  ``trace_p_arrival_sample`` is the true onset (prediction + timing error);
  ``trace_p_predicted_sample`` the TauP prediction (window around it to leave the alignment to the
  method); ``trace_pp_arrival_sample`` / ``trace_sp_arrival_sample`` the true depth-phase times.
- truth.h5: ``events/`` (source parameters, ``stf`` with ``sampling_rate_hz`` and ``time_start_s``
  attributes, integrating to ``moment_nm``; sub-event onsets, durations, moment fractions and shapes;
  directivity) and ``traces/`` (``green``: the Green's function g in 1/s on the trace's time axis, so
  that the noise-free record is ``dt * (STF_apparent conv g)`` delayed by ``time_error_s``; phase
  delays and amplitudes, ``stf_time_scale``, ``time_error_s``, ``snr``, ``polarity``, ...).

Scenario ``local`` (clustering, spectrogram VAE/CVAE, LSTM AE)
-------------------------------------------------------------
- A fixed network of ``network.n_stations`` stations named ``SJ01``... within ``network.radius_km`` of
  ``network.centre_deg``; each has an instrument family HH (broadband, 100 Hz), BH (broadband,
  40 Hz) or EH (1 Hz short-period geophone, 100 Hz), with analog Butterworth responses from
  ``instruments.<family>`` (high-pass corner and order, anti-alias low-pass) and channels
  ``<family>Z/N/E``, and its own site response fixed by the network seed: a causal resonance
  (gain, frequency, damping), a broadband amplification factor and a near-surface kappa.
- Events (``catalog``): a fraction ``catalog.teleseismic_fraction`` are teleseismic (1000-10000 km
  from the network, Mw 5-7, depth 10-300 km), the rest local (epicentre within
  ``catalog.local.radius_km`` of the centre, recorded only at < ``catalog.local.max_distance_km`` =
  150 km; Mw 0.5-4.5), as in Mousavi et al. (2019). Each station records an event with probability
  ``catalog.record_probability``. Labels: ``path_distance_class`` ("local"/"teleseismic").
- Source: Brune omega-squared moment-rate pulse ``M0 a^2 t exp(-a t)``, a = 2 pi fc,
  ``fc = 0.49 beta_h (stress_drop / M0)^(1/3)`` (Brune 1970; beta_h in m/s at the source depth from
  the velocity model, stress drop log-normal about ``source.stress_drop_mpa``).
- P and S (first arrivals among p/P/Pn and s/S/Sn) times and take-off angles from TauP (iasp91,
  grids as above, each phase name interpolated on its own so branches are not mixed; for the direct
  p and s the grid holds the difference from a straight ray, exact in the uniform upper crust, so
  times stay within 0.05 s of TauP right above the source); P, SV and SH radiation pattern
  amplitudes; P on the vertical and radial, SV on the radial and vertical, SH on the transverse,
  with the incidence angle at the surface (free-surface conversions neglected); spreading
  ``1/(4 pi rho v^3 R)``; attenuation ``t* = T / Q`` (local) or the teleseismic ``t*``, plus the
  station's kappa, with the same constant-Q operator; exponentially decaying scattering codas after
  P and S; then the site response, differentiation to ground velocity and the instrument response
  (unit m/s). First-motion polarity of P on Z = sign(F_P)
  (``trace_polarity``, +1/-1).
- Noise: NLNM-NHNM shaped ground velocity on three components through the same instrument; SNR
  measured on Z with the quality module's windows (-5..0 s, 0..5 s) and drawn log-uniform in
  ``noise.snr`` (1 to 1e5: the log10 SNR bins 0-1 ... >4 of the DEC polarity study are all populated).
- Records of ``instruments.<family>.record_length_s`` (80 s) at the family's rate, P at a random
  ``record.p_offset_s``; ``trace_s_arrival_sample`` is empty when S falls after the window (most
  teleseismic records). Mixed sampling rates: each row has ``trace_sampling_rate_hz``.
- truth.h5: per event magnitude, moment, corner frequency, stress drop, location, mechanism, distance
  class; per trace station, polarity, radiation coefficients, travel times, SNR; per station the
  site response and instrument.

Splits are by event (``split.fractions``, exact counts by largest remainder from a seeded
permutation).
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import ml_collections
import numpy as np
import scipy.fft

from seisjax import config as config_lib
from seisjax.data import physics
from seisjax.errors import InputError

__all__ = ["SCENARIOS", "default_config", "scenario_config", "flatten_config", "synthesize",
           "read_truth", "events_for_traces", "TravelTimeTable"]

SCENARIOS = ("teleseismic-p", "local")

# Independent random streams per event: changing one part (e.g. noise off) leaves the others alone.
_SOURCE, _PATH, _NOISE = 0, 1, 2
_SPLIT_STREAM = 2**31 - 1  # an event index that is never used
_DEG_KM = math.pi / 180.0  # times the Earth radius in km: km per degree


# ========================================================================================= config
def _tele_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.scenario = "teleseismic-p"
    c.events = 10
    c.seed = 0
    c.velocity_model = "iasp91"
    c.sampling_rate_hz = 10.0
    c.window = dict(pre_p_s=120.0, post_p_s=240.0)
    c.source = dict(
        depth_km=(100.0, 600.0), magnitude=(6.0, 7.5),
        origin_time_start="2020-01-01T00:00:00", origin_time_span_days=365.0,
        duration_coefficient=4.52e-6, duration_log10_std=0.1,
        subevent_probabilities=(0.4, 0.35, 0.25),  # P(1), P(2), P(3) sub-events
        subevent_duration_fraction=(0.3, 0.7),  # of the total duration, for multi-pulse events
        subevent_moment_concentration=2.0,  # Dirichlet concentration of the moment fractions
        triangle_probability=0.5,  # else a smoothed boxcar
        boxcar_taper_fraction=0.25,
        directivity_probability=0.3, rupture_velocity_fraction=0.8,
    )
    c.stations = dict(network_code="SY", seed=20240601, n_scattered=400, n_arrays=20, array_size=50,
                      array_radius_deg=5.0, distance_deg=(30.0, 90.0))
    c.propagation = dict(t_star_p=1.0, depth_phases=True,
                         coda_relative_amplitude=0.3, coda_decay_s=20.0, time_error_std_s=1.0)
    c.taup = dict(depth_step_km=50.0, distance_step_deg=2.0)
    c.noise = dict(enabled=True, snr=(0.5, 50.0), level=(0.0, 1.0), band_hz=(0.01, 4.0), band_order=2)
    c.snr = dict(noise_window_s=(-60.0, 0.0), signal_window_s=(0.0, 20.0))
    c.split = dict(fractions=(0.8, 0.1, 0.1))
    c.truth = dict(store_green_functions=True, stf_length_s=120.0)
    c.memory = dict(traces_per_chunk=128)  # stations synthesised at once (bounds memory, not results)
    c.figure = dict(max_section_traces=60, n_stf_events=6)
    return c


def _instrument(rate, highpass_hz, lowpass_hz, length_s=80.0):
    return dict(sampling_rate_hz=rate, highpass_hz=highpass_hz, highpass_order=2, lowpass_hz=lowpass_hz,
                lowpass_order=8, record_length_s=length_s)


def _local_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.scenario = "local"
    c.events = 100
    c.seed = 0
    c.velocity_model = "iasp91"
    c.network = dict(
        code="SJ", seed=20240602, n_stations=30, centre_deg=(38.0, 23.0), radius_km=60.0,
        instrument_fractions=dict(HH=0.5, BH=0.25, EH=0.25),
        site_amplification_log10_std=0.2, resonance_hz=(1.0, 10.0), resonance_gain=(1.5, 5.0),
        resonance_damping=(0.15, 0.4), kappa_s=(0.01, 0.04),
    )
    c.instruments = dict(HH=_instrument(100.0, 1.0 / 120.0, 40.0), BH=_instrument(40.0, 1.0 / 120.0, 16.0),
                         EH=_instrument(100.0, 1.0, 40.0))
    c.record = dict(p_offset_s=(10.0, 20.0))
    c.catalog = dict(
        teleseismic_fraction=0.5, record_probability=0.6,
        origin_time_start="2020-01-01T00:00:00", origin_time_span_days=365.0,
        local=dict(radius_km=80.0, depth_km=(2.0, 20.0), magnitude=(0.5, 4.5), max_distance_km=150.0),
        teleseismic=dict(distance_km=(1000.0, 10000.0), depth_km=(10.0, 300.0), magnitude=(5.0, 7.0)),
    )
    c.source = dict(stress_drop_mpa=3.0, stress_drop_log10_std=0.3, brune_constant=0.49)
    c.propagation = dict(
        q_p=300.0, q_s=150.0, teleseismic_t_star_p=1.0, teleseismic_t_star_s=4.0,
        p_coda_relative_amplitude=0.3, s_coda_relative_amplitude=0.6, local_coda_decay_s=6.0,
        teleseismic_coda_decay_s=25.0,
    )
    c.taup = dict(local_depth_step_km=2.0, local_distance_step_deg=0.05, teleseismic_depth_step_km=50.0,
                  teleseismic_distance_step_deg=2.0)
    c.noise = dict(enabled=True, snr=(1.0, 1.0e5), level=(0.0, 1.0))
    c.snr = dict(noise_window_s=(-5.0, 0.0), signal_window_s=(0.0, 5.0))
    c.split = dict(fractions=(0.8, 0.1, 0.1))
    c.figure = dict(max_section_traces=30, n_spectra=5)
    return c


def default_config(scenario: str) -> ml_collections.ConfigDict:
    """Every physical and numerical parameter of ``scenario`` (see the module docstring)."""
    if scenario == "teleseismic-p":
        return _tele_config()
    if scenario == "local":
        return _local_config()
    raise InputError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")


def flatten_config(tree: Mapping, prefix: str = "") -> dict:
    """A nested config (a ``config.json`` as read, or ``ConfigDict.to_dict()``) as ``{dotted key:
    value}``: the form in which two configs compare key by key."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _check_range(cfg, key: str, low=-math.inf, high=math.inf):
    node = cfg
    for part in key.split("."):
        node = node[part]
    if len(node) != 2:
        raise InputError(f"config key {key!r}: need a pair (min, max), got {tuple(node)}")
    a, b = node
    if not (low <= a <= b <= high):
        raise InputError(f"config key {key!r}: need {low} <= min <= max <= {high}, got {tuple(node)}")


def _validate(cfg: ml_collections.ConfigDict):
    if cfg.seed < 0:
        raise InputError(f"config key 'seed': need a non-negative integer, got {cfg.seed}")
    if cfg.events < 1:
        raise InputError(f"config key 'events': need at least 1 event, got {cfg.events}")
    fractions = np.asarray(cfg.split.fractions)
    if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise InputError(f"config key 'split.fractions': need 3 non-negative fractions summing to 1, got "
                         f"{tuple(cfg.split.fractions)}")
    _check_range(cfg, "noise.snr", 1e-12)
    _check_range(cfg, "noise.level", 0.0, 1.0)
    _check_range(cfg, "snr.noise_window_s", high=0.0)
    _check_range(cfg, "snr.signal_window_s", 0.0)
    if cfg.scenario == "teleseismic-p":
        _check_range(cfg, "source.depth_km", 0.0, 700.0)
        _check_range(cfg, "stations.distance_deg", 0.0, 180.0)
        _check_range(cfg, "source.subevent_duration_fraction", 0.0, 1.0)
        _check_range(cfg, "noise.band_hz", 0.0)
        probs = np.asarray(cfg.source.subevent_probabilities)
        if np.any(probs < 0) or not np.isclose(probs.sum(), 1.0):
            raise InputError("config key 'source.subevent_probabilities': need 3 non-negative values "
                             f"summing to 1, got {tuple(probs)}")
        if not 0.0 < cfg.source.boxcar_taper_fraction <= 0.5:
            raise InputError("config key 'source.boxcar_taper_fraction': need 0 < value <= 0.5")
        if cfg.window.pre_p_s + cfg.snr.noise_window_s[0] < 0:
            raise InputError("config key 'snr.noise_window_s' starts before the trace (window.pre_p_s)")
        if cfg.memory.traces_per_chunk < 1:
            raise InputError("config key 'memory.traces_per_chunk': need at least 1")
        if cfg.stations.n_scattered + cfg.stations.n_arrays * cfg.stations.array_size < 1:
            raise InputError("config keys 'stations.*': the network has no station")
    else:
        fractions = np.asarray([cfg.network.instrument_fractions[k] for k in cfg.network.instrument_fractions])
        if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
            raise InputError("config key 'network.instrument_fractions': need non-negative values summing to 1")
        for family in cfg.network.instrument_fractions:
            if family not in cfg.instruments:
                raise InputError(f"config key 'network.instrument_fractions.{family}': no 'instruments.{family}'")
        if cfg.network.n_stations < 1:
            raise InputError("config key 'network.n_stations': need at least 1 station")
        _check_range(cfg, "catalog.local.depth_km", 0.0, 700.0)
        _check_range(cfg, "catalog.teleseismic.depth_km", 0.0, 700.0)
        _check_range(cfg, "catalog.teleseismic.distance_km", 0.0, 20000.0)
        _check_range(cfg, "record.p_offset_s", -cfg.snr.noise_window_s[0])
        if not 0.0 <= cfg.catalog.teleseismic_fraction <= 1.0:
            raise InputError("config key 'catalog.teleseismic_fraction': need a value in [0, 1]")
        for family, inst in cfg.instruments.items():
            if inst.record_length_s <= cfg.record.p_offset_s[1] + cfg.snr.signal_window_s[1]:
                raise InputError(f"config key 'instruments.{family}.record_length_s': too short for "
                                 "record.p_offset_s plus the SNR signal window")


# ==================================================================================== geometry
def _distance_azimuth(lat1, lon1, lat2, lon2):
    """Great-circle distance (deg), azimuth at point 1 towards 2 and back-azimuth at 2 towards 1."""
    la1, lo1, la2, lo2 = (np.deg2rad(np.asarray(a, dtype=float)) for a in (lat1, lon1, lat2, lon2))
    dlon = lo2 - lo1
    cos_d = np.sin(la1) * np.sin(la2) + np.cos(la1) * np.cos(la2) * np.cos(dlon)
    dist = np.arccos(np.clip(cos_d, -1.0, 1.0))
    az = np.arctan2(np.sin(dlon) * np.cos(la2), np.cos(la1) * np.sin(la2) - np.sin(la1) * np.cos(la2) * np.cos(dlon))
    baz = np.arctan2(-np.sin(dlon) * np.cos(la1), np.cos(la2) * np.sin(la1) - np.sin(la2) * np.cos(la1) * np.cos(dlon))
    return np.rad2deg(dist), np.rad2deg(az) % 360.0, np.rad2deg(baz) % 360.0


def _destination(lat, lon, dist_deg, az_deg):
    """Point at ``dist_deg`` along azimuth ``az_deg`` from (lat, lon) on the sphere."""
    la, lo, d, az = (np.deg2rad(np.asarray(a, dtype=float)) for a in (lat, lon, dist_deg, az_deg))
    lat2 = np.arcsin(np.clip(np.sin(la) * np.cos(d) + np.cos(la) * np.sin(d) * np.cos(az), -1.0, 1.0))
    lon2 = lo + np.arctan2(np.sin(az) * np.sin(d) * np.cos(la), np.cos(d) - np.sin(la) * np.sin(lat2))
    return np.rad2deg(lat2), (np.rad2deg(lon2) + 180.0) % 360.0 - 180.0


def _uniform_sphere(rng, n):
    return np.rad2deg(np.arcsin(rng.uniform(-1.0, 1.0, n))), rng.uniform(-180.0, 180.0, n)


def _uniform_cap(rng, lat, lon, radius_deg, n):
    """``n`` points uniform in the spherical cap of ``radius_deg`` around (lat, lon)."""
    dist = np.rad2deg(np.arccos(rng.uniform(np.cos(np.deg2rad(radius_deg)), 1.0, n)))
    return _destination(lat, lon, dist, rng.uniform(0.0, 360.0, n))


def _straight_distance_km(radius_km, depth_km, dist_deg):
    """Straight-line distance between a source at ``depth_km`` and a surface station."""
    r1 = radius_km - np.asarray(depth_km, dtype=float)
    return np.sqrt(r1 ** 2 + radius_km ** 2 - 2 * r1 * radius_km * np.cos(np.deg2rad(dist_deg)))


# ================================================================================ travel times
@functools.lru_cache(maxsize=4)
def _taup_model(name: str):
    from obspy.taup import TauPyModel

    try:
        return TauPyModel(name)
    except Exception as err:  # obspy raises several types for an unknown model
        raise InputError(f"config key 'velocity_model': TauP cannot load {name!r} ({err})") from None


def _medium(model_name: str, depth_km: float) -> tuple[float, float, float]:
    """(alpha km/s, beta km/s, rho kg/m^3) just below ``depth_km`` in the TauP velocity model."""
    v_mod = _taup_model(model_name).model.s_mod.v_mod
    alpha, beta, rho = (float(np.ravel(v_mod.evaluate_below(depth_km, k))[0]) for k in ("P", "S", "D"))
    return alpha, beta, rho * 1000.0


def _planet_radius(model_name: str) -> float:
    return float(_taup_model(model_name).model.radius_of_planet)


def _axis(low: float, high: float, step: float) -> np.ndarray:
    n = max(2, int(math.ceil((high - low) / step - 1e-9)) + 1)
    return np.linspace(low, high if high > low else low + step, n)


_GRID_CACHE: dict = {}


class TravelTimeTable:
    """TauP travel times, take-off angles and ray parameters on a (depth, distance) grid.

    ``phases`` maps a label to the TauP phase names whose earliest arrival it means, e.g.
    ``{"P": ("p", "P", "Pn")}``. TauP is slow, so every phase name is computed once on the grid (cached
    for the process) and interpolated bilinearly; a label is the earliest of its names at the query
    point, so that branches are not interpolated into each other (in a cell where one branch ends and
    another begins, the label's first-arrival grid is interpolated instead). Missing arrivals are NaN.

    ``straight_ray`` (phase name -> ``"P"`` or ``"S"``) is for direct waves at short distances, whose
    time and take-off angle curve sharply above the source: for those names the grid holds the
    differences from a straight ray at the model's surface speed (time R / v, take-off and ray
    parameter towards the station), zero for a direct wave in a uniform top layer and smooth below,
    and the straight-ray part is added back exactly at the query point.
    """

    def __init__(self, model: str, phases: Mapping[str, Sequence[str]], depth_range_km, distance_range_deg,
                 depth_step_km: float, distance_step_deg: float, progress: bool = False,
                 straight_ray: Mapping[str, str] | None = None):
        self.model = model
        self.phases = {label: tuple(names) for label, names in phases.items()}
        self.names = tuple(sorted({n for names in self.phases.values() for n in names}))
        self.straight_ray = dict(straight_ray or {})
        self.depths = _axis(*depth_range_km, depth_step_km)
        self.distances = _axis(*distance_range_deg, distance_step_deg)
        key = (model, self.names, tuple(self.depths), tuple(self.distances))
        if key not in _GRID_CACHE:
            _GRID_CACHE[key] = self._compute(progress)
        raw = _GRID_CACHE[key]  # (name, quantity [time, takeoff, ray_param s/rad], depth, distance)
        # per label, the earliest of its names at each node: continuous in time across branch ends
        self.first = {}
        for label, names in self.phases.items():
            stack = raw[[self.names.index(n) for n in names]]
            times = np.where(np.isfinite(stack[:, 0]), stack[:, 0], np.inf)
            best = np.argmin(times, axis=0)
            first = np.take_along_axis(stack, best[None, None], axis=0)[0]
            first[:, ~np.isfinite(times.min(axis=0))] = np.nan
            self.first[label] = first
        values = raw.copy()
        depth, dist = np.meshgrid(self.depths, self.distances, indexing="ij")
        for name, wave in self.straight_ray.items():
            values[self.names.index(name)] -= np.stack(self._straight(wave, depth, dist))
        self.values = values

    def _straight(self, wave: str, depth_km, distance_deg):
        """Time, take-off angle (from down) and ray parameter (s/rad) of a straight ray from a source
        at ``depth_km`` to a surface station at the model's surface ``wave`` speed."""
        radius = _planet_radius(self.model)
        speed = _medium(self.model, 0.0)[0 if wave == "P" else 1]
        chord = _straight_distance_km(radius, depth_km, distance_deg)
        r_source = radius - np.asarray(depth_km, dtype=float)
        cos_takeoff = (r_source - radius * np.cos(np.deg2rad(distance_deg))) / np.maximum(chord, 1e-9)
        takeoff = np.rad2deg(np.arccos(np.clip(cos_takeoff, -1.0, 1.0)))
        return chord / speed, takeoff, r_source * np.sin(np.deg2rad(takeoff)) / speed

    def _compute(self, progress) -> np.ndarray:
        from tqdm.auto import tqdm

        taup = _taup_model(self.model)
        out = np.full((len(self.names), 3, len(self.depths), len(self.distances)), np.nan)
        for i_d, depth in enumerate(tqdm(self.depths, desc=f"TauP grid ({self.model})", unit="depth",
                                          disable=not progress, leave=False)):
            for i_x, dist in enumerate(self.distances):
                arrivals = taup.get_travel_times(source_depth_in_km=float(depth), distance_in_degree=float(dist),
                                                 phase_list=list(self.names))
                for i_n, name in enumerate(self.names):
                    found = [a for a in arrivals if a.name == name]
                    if found:
                        first = min(found, key=lambda a: a.time)
                        out[i_n, :, i_d, i_x] = first.time, first.takeoff_angle, first.ray_param
        return out

    def __call__(self, label: str, depth_km: float, distance_deg) -> dict[str, np.ndarray]:
        """``{"time", "takeoff", "ray_param"}`` (s, degrees, s/rad) of ``label`` at the distances."""
        dist = np.clip(np.atleast_1d(np.asarray(distance_deg, dtype=float)), self.distances[0], self.distances[-1])
        depth = float(np.clip(depth_km, self.depths[0], self.depths[-1]))
        # bilinear weights of the four grid nodes around each point
        i_d = int(np.clip(np.searchsorted(self.depths, depth) - 1, 0, len(self.depths) - 2))
        i_x = np.clip(np.searchsorted(self.distances, dist) - 1, 0, len(self.distances) - 2)
        w_d = (depth - self.depths[i_d]) / (self.depths[i_d + 1] - self.depths[i_d])
        w_x = (dist - self.distances[i_x]) / (self.distances[i_x + 1] - self.distances[i_x])

        def bilinear(grid):  # grid (quantity, depth, distance) -> (quantity, point); NaN if a node is
            return ((1 - w_d) * ((1 - w_x) * grid[:, i_d, i_x] + w_x * grid[:, i_d, i_x + 1])
                    + w_d * ((1 - w_x) * grid[:, i_d + 1, i_x] + w_x * grid[:, i_d + 1, i_x + 1]))

        candidates = []
        for name in self.phases[label]:
            values = bilinear(self.values[self.names.index(name)])
            if name in self.straight_ray:
                values += np.stack(self._straight(self.straight_ray[name], np.full(dist.shape, depth), dist))
            candidates.append(values)
        candidates = np.stack(candidates)  # (name, quantity, point)
        times = np.where(np.isfinite(candidates[:, 0]), candidates[:, 0], np.inf)
        best = np.argmin(times, axis=0)
        chosen = np.take_along_axis(candidates, best[None, None, :], axis=0)[0]
        # where one branch ends and another begins inside a cell no branch has four nodes: use the
        # first-arrival grid there (its time is continuous across the change of branch)
        missing = ~np.isfinite(times.min(axis=0))
        chosen[:, missing] = bilinear(self.first[label])[:, missing]
        return dict(zip(("time", "takeoff", "ray_param"), chosen))


# ==================================================================================== helpers
def _rng(seed: int, event: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(event), int(stream)])


def _event_splits(n_events: int, fractions, seed: int) -> np.ndarray:
    """'train'/'dev'/'test' per event: exact counts (largest remainder, at least one event in each
    non-empty split when there are enough events), assigned by a seeded permutation."""
    names = np.array(["train", "dev", "test"])
    fractions = np.asarray(fractions, dtype=float)
    raw = fractions * n_events
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[: n_events - counts.sum()]:
        counts[i] += 1
    wanted = np.flatnonzero(fractions > 0)
    if n_events >= len(wanted):
        for i in wanted:
            if counts[i] == 0:
                counts[np.argmax(counts)] -= 1
                counts[i] += 1
    order = np.random.default_rng([int(seed), _SPLIT_STREAM]).permutation(n_events)
    splits = np.empty(n_events, dtype=object)
    splits[order] = np.repeat(names, counts)
    return splits


def _utc(text: str):
    from obspy import UTCDateTime

    try:
        return UTCDateTime(text)
    except Exception:
        raise InputError(f"config key '*.origin_time_start': not a time: {text!r}") from None


def _iso(timestamp: float) -> str:
    from obspy import UTCDateTime

    return UTCDateTime(timestamp).isoformat() + "Z"


def _random_mechanism(rng) -> tuple[float, float, float]:
    """Strike and rake uniform, fault normal uniform on the lower hemisphere (dip = arccos U)."""
    return (float(rng.uniform(0.0, 360.0)), float(np.rad2deg(np.arccos(rng.uniform(0.0, 1.0)))),
            float(rng.uniform(-180.0, 180.0)))


def _delay(freqs, times):
    """Phase factors ``exp(-i 2 pi f t)`` for per-trace times ``(n,)`` -> ``(n, F)``."""
    phase = (-2.0 * np.pi) * np.multiply.outer(np.asarray(times, dtype=float), np.asarray(freqs, dtype=float))
    out = np.empty(phase.shape, dtype=complex)
    np.cos(phase, out=out.real)
    np.sin(phase, out=out.imag)
    return out


def _window_mask(n_samples: int, sampling_rate: float, onset_samples, window_s) -> np.ndarray:
    """Boolean ``(n, n_samples)``: samples within ``window_s`` (s relative to each onset), clipped
    like seisjax.data.quality.window_slice."""
    idx = np.arange(n_samples)[None, :]
    start = np.clip(np.round(onset_samples + window_s[0] * sampling_rate), 0, n_samples)[:, None]
    stop = np.clip(np.round(onset_samples + window_s[1] * sampling_rate), 0, n_samples)[:, None]
    return (idx >= start) & (idx < stop)


def _masked_rms(x: np.ndarray, mask: np.ndarray, demean: bool) -> np.ndarray:
    count = np.maximum(mask.sum(-1), 1)
    if demean:
        mean = (x * mask).sum(-1, keepdims=True) / count[..., None]
        x = x - mean
    return np.sqrt(((x * mask) ** 2).sum(-1) / count)


def _scale_noise_to_snr(signal_z: np.ndarray, noise: np.ndarray, snr: np.ndarray, noise_mask, signal_mask):
    """Scale factor per trace so that RMS(signal in its window) / RMS(noise in its window) = snr;
    ``noise`` is ``(n, W)`` (the component the SNR is defined on)."""
    signal_rms = _masked_rms(signal_z, signal_mask, demean=False)
    noise_rms = _masked_rms(noise, noise_mask, demean=True)
    tiny = np.finfo(float).tiny
    return signal_rms / (np.maximum(snr, tiny) * np.maximum(noise_rms, tiny))


class _TruthWriter:
    """Appends rows to resizable HDF5 datasets, group by group, buffering up to ``buffer_rows`` rows
    per group in memory (HDF5 calls per event would dominate small events)."""

    def __init__(self, path: Path, buffer_rows: int = 2048):
        self.h5 = h5py.File(path, "w")
        self.buffer_rows = buffer_rows
        self._pending: dict[str, list[Mapping[str, np.ndarray]]] = {}
        self._attrs: dict[str, dict] = {}
        self.skipped: list[str] = []  # "source_id station: reason" of stations that could not be made

    def append(self, group: str, columns: Mapping[str, np.ndarray]):
        pending = self._pending.setdefault(group, [])
        pending.append({k: np.asarray(v) for k, v in columns.items()})
        if sum(len(next(iter(c.values()))) for c in pending) >= self.buffer_rows:
            self._flush(group)

    def set_attrs(self, dataset: str, attrs: Mapping[str, object]):
        """Attributes of ``group/name``, written on close (the dataset may still be buffered)."""
        self._attrs.setdefault(dataset, {}).update(attrs)

    def _flush(self, group: str):
        pending = self._pending.pop(group, [])
        if not pending:
            return
        grp = self.h5.require_group(group)
        for name in pending[0]:
            arr = np.concatenate([c[name] for c in pending])
            if arr.dtype.kind in "UO":
                arr = arr.astype(object)
                dtype = h5py.string_dtype("utf-8")
            else:
                dtype = arr.dtype
            if name not in grp:
                chunk_rows = 16 if arr.ndim > 1 else 1024
                grp.create_dataset(name, shape=(0, *arr.shape[1:]), maxshape=(None, *arr.shape[1:]), dtype=dtype,
                                   chunks=(chunk_rows, *arr.shape[1:]))
            ds = grp[name]
            start = ds.shape[0]
            ds.resize(start + arr.shape[0], axis=0)
            ds[start:] = arr

    def close(self):
        if not self.h5:
            return
        for group in list(self._pending):
            self._flush(group)
        for dataset, attrs in self._attrs.items():
            if dataset in self.h5:
                self.h5[dataset].attrs.update(attrs)
        self.h5.close()


def read_truth(path, *, green: bool = False) -> dict:
    """Read ``truth.h5`` (or the dataset folder holding it): ``{"attrs", "events", "traces",
    "stations", "stf", "green"}`` with pandas DataFrames for the per-row tables and the STF (and,
    with ``green=True``, Green's function) arrays; absent parts are None."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "truth.h5"
    if not path.exists():
        raise InputError(f"{path}: no truth file (written by `seisjax data synth`)")
    out = {"attrs": None, "events": None, "traces": None, "stations": None, "stf": None, "green": None}
    with h5py.File(path, "r") as h5:
        out["attrs"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
        for group in ("events", "traces", "stations"):
            if group not in h5:
                continue
            table = {}
            for name, ds in h5[group].items():
                if ds.ndim == 1:
                    values = ds[()]
                    table[name] = ([v.decode() if isinstance(v, bytes) else v for v in values]
                                   if ds.dtype.kind == "O" else values)
                elif ds.ndim == 2 and name not in ("stf", "green"):
                    for j in range(ds.shape[1]):
                        table[f"{name}_{j}"] = ds[:, j]
            out[group] = pd.DataFrame(table)
        if "events/stf" in h5:
            ds = h5["events/stf"]
            out["stf"] = ds[()]
            out["attrs"]["stf_sampling_rate_hz"] = float(ds.attrs["sampling_rate_hz"])
        if green and "traces/green" in h5:
            out["green"] = h5["traces/green"][()]
    return out


# ========================================================================= teleseismic-p scenario
def _global_network(cfg) -> dict[str, np.ndarray]:
    st = cfg.stations
    rng = np.random.default_rng(int(st.seed))
    lat, lon = _uniform_sphere(rng, st.n_scattered)
    lats, lons = [lat], [lon]
    centre_lat, centre_lon = _uniform_sphere(rng, st.n_arrays)
    for clat, clon in zip(centre_lat, centre_lon):
        a, b = _uniform_cap(rng, clat, clon, st.array_radius_deg, st.array_size)
        lats.append(a)
        lons.append(b)
    lat, lon = np.concatenate(lats), np.concatenate(lons)
    codes = np.array([f"T{i:04d}" for i in range(len(lat))])
    return {"latitude": lat, "longitude": lon, "code": codes}


def _band_code(sampling_rate: float) -> str:
    """SEED band code of a broadband channel at ``sampling_rate`` (H >= 80 Hz, B >= 10, M > 1, L)."""
    return "H" if sampling_rate >= 80 else "B" if sampling_rate >= 10 else "M" if sampling_rate > 1 else "L"


def _subevents(src, rng, duration):
    """Onsets, durations, moment fractions and shapes (1 = triangle, 0 = smoothed boxcar)."""
    n_sub = int(rng.choice(3, p=np.asarray(src.subevent_probabilities))) + 1
    if n_sub == 1:
        durations = np.array([duration])
        onsets = np.zeros(1)
    else:
        durations = duration * rng.uniform(*src.subevent_duration_fraction, n_sub)
        onsets = rng.uniform(0.0, 1.0, n_sub) * (duration - durations)
        onsets -= onsets.min()
        order = np.argsort(onsets)
        onsets, durations = onsets[order], durations[order]
    fractions = rng.dirichlet(np.full(n_sub, src.subevent_moment_concentration)) if n_sub > 1 else np.ones(1)
    triangles = rng.uniform(size=n_sub) < src.triangle_probability
    return onsets, durations, fractions, triangles


def _stf_cumulative(t, event) -> np.ndarray:
    """Cumulative moment (N m) of the event's STF at times ``t`` (any shape)."""
    total = np.zeros(np.shape(t))
    for onset, dur, frac, tri in zip(event["sub_onset"], event["sub_duration"], event["sub_fraction"],
                                     event["sub_triangle"]):
        u = (np.asarray(t) - onset) / dur
        shape = physics.triangle_cumulative(u) if tri else physics.smoothed_boxcar_cumulative(u, event["taper"])
        total = total + frac * shape
    return event["moment_nm"] * total


def _tele_event(cfg, seed: int, k: int, origin_start: float) -> dict:
    src = cfg.source
    rng = _rng(seed, k, _SOURCE)
    lat, lon = _uniform_sphere(rng, 1)
    depth = float(rng.uniform(*src.depth_km))
    mw = float(rng.uniform(*src.magnitude))
    m0 = float(physics.moment_from_magnitude(mw))
    strike, dip, rake = _random_mechanism(rng)
    scatter = 10.0 ** (src.duration_log10_std * rng.standard_normal())
    duration = float(src.duration_coefficient * m0 ** (1.0 / 3.0) * scatter)
    onsets, durations, fractions, triangles = _subevents(src, rng, duration)
    directivity = bool(rng.uniform() < src.directivity_probability)
    rupture_az = float(rng.uniform(0.0, 360.0))
    alpha_h, beta_h, rho_h = _medium(cfg.velocity_model, depth)
    return dict(
        index=k, source_id=f"tele{k:06d}", latitude=float(lat[0]), longitude=float(lon[0]), depth_km=depth,
        magnitude=mw, moment_nm=m0, strike=strike, dip=dip, rake=rake,
        origin_time=origin_start + float(rng.uniform(0.0, src.origin_time_span_days * 86400.0)),
        duration_s=float(np.max(onsets + durations)), sub_onset=onsets, sub_duration=durations,
        sub_fraction=fractions, sub_triangle=triangles, taper=src.boxcar_taper_fraction,
        directivity=directivity, rupture_azimuth_deg=rupture_az if directivity else np.nan,
        rupture_velocity_km_s=src.rupture_velocity_fraction * beta_h if directivity else 0.0,
        alpha_h=alpha_h, beta_h=beta_h, rho_h=rho_h,
    )


def _tele_geometry(cfg, event, network, table, geo_skipped: list) -> dict | None:
    """Stations in range, TauP arrivals, amplitudes per unit moment and directivity of one event
    (cheap per-trace scalars); None when no station is in range. Stations without a P arrival (none
    at the default distances) are left out and listed in ``geo_skipped``."""
    prop = cfg.propagation
    model = cfg.velocity_model
    radius = _planet_radius(model)
    dist, az, baz = _distance_azimuth(event["latitude"], event["longitude"], network["latitude"], network["longitude"])
    keep = np.flatnonzero((dist >= cfg.stations.distance_deg[0]) & (dist <= cfg.stations.distance_deg[1]))
    if len(keep) == 0:
        return None
    dist, az, baz = dist[keep], az[keep], baz[keep]
    depth = event["depth_km"]
    p_arr = table("P", depth, dist)
    has_p = np.isfinite(p_arr["time"])
    if not has_p.all():
        skipped = [f"{event['source_id']} {network['code'][i]}: no TauP P arrival" for i in keep[~has_p]]
        geo_skipped.extend(skipped)
        keep, dist, az, baz = keep[has_p], dist[has_p], az[has_p], baz[has_p]
        if len(keep) == 0:
            return None
        p_arr = table("P", depth, dist)
    pp_arr, sp_arr = table("pP", depth, dist), table("sP", depth, dist)
    mech = (event["strike"], event["dip"], event["rake"])
    # radiation x free surface x spreading
    alpha0, beta0, _ = _medium(model, 0.0)
    alpha_h, beta_h, rho_h = event["alpha_h"], event["beta_h"], event["rho_h"]
    fp_p, _, _ = physics.radiation_pattern(*mech, p_arr["takeoff"], az)
    fp_pp, _, _ = physics.radiation_pattern(*mech, pp_arr["takeoff"], az)
    _, fsv_sp, _ = physics.radiation_pattern(*mech, sp_arr["takeoff"], az)
    coef_pp, _ = physics.free_surface_coefficients(pp_arr["ray_param"] / radius, alpha0, beta0)
    _, coef_sp = physics.free_surface_coefficients(sp_arr["ray_param"] / radius, alpha0, beta0)
    spreading = 1.0 / (4 * np.pi * rho_h * (alpha_h * 1e3) ** 3 * _straight_distance_km(radius, depth, dist) * 1e3)
    use_depth = prop.depth_phases
    # directivity: the apparent STF is the true one compressed by 1 - v_r p cos(az - az_r)
    p_km = p_arr["ray_param"] / (radius - depth)
    stretch = (1.0 - event["rupture_velocity_km_s"] * p_km * np.cos(np.deg2rad(az - event["rupture_azimuth_deg"]))
               if event["directivity"] else np.ones(len(keep)))
    return dict(
        keep=keep, distance=dist, azimuth=az, back_azimuth=baz, p=p_arr, pp=pp_arr, sp=sp_arr, fp_p=fp_p,
        spreading=spreading, amp_p=fp_p * spreading,
        amp_pp=np.where(use_depth & np.isfinite(pp_arr["time"]), fp_pp * coef_pp * spreading, 0.0),
        amp_sp=np.where(use_depth & np.isfinite(sp_arr["time"]),
                        fsv_sp * coef_sp * (alpha_h / beta_h) ** 3 * spreading, 0.0),
        pp_delay=pp_arr["time"] - p_arr["time"], sp_delay=sp_arr["time"] - p_arr["time"], stretch=stretch,
    )


def _take(geo: dict, rows: slice) -> dict:
    return {k: (_take(v, rows) if isinstance(v, dict) else v[rows]) for k, v in geo.items()}


def _tele_records(cfg, event, geo, seed):
    """Noise-free and noisy records, Green's functions and per-trace truth of one event, yielded in
    chunks of ``memory.traces_per_chunk`` stations so that memory does not grow with the network. The
    random draws are the same whatever the chunk size (each stream is consumed in station order)."""
    fs = cfg.sampling_rate_hz
    dt = 1.0 / fs
    prop = cfg.propagation
    n_tr = len(geo["keep"])
    n = int(round((cfg.window.pre_p_s + cfg.window.post_p_s) * fs))
    n_stf = int(round(cfg.truth.stf_length_s * fs))
    if _stf_cumulative(np.array([n_stf * dt]) / geo["stretch"].min(), event)[0] < event["moment_nm"] * (1 - 1e-9):
        raise InputError(f"event {event['source_id']}: its STF (duration {event['duration_s']:.1f} s) does not fit in "
                         f"truth.stf_length_s = {cfg.truth.stf_length_s}; increase it")
    n_fft = scipy.fft.next_fast_len(n + n_stf + int(8 * prop.time_error_std_s * fs) + 2)
    freqs = np.fft.rfftfreq(n_fft, dt)
    t = np.arange(n_fft) * dt
    t_p = cfg.window.pre_p_s  # the trace starts window.pre_p_s before the predicted P
    attenuation = physics.attenuation_response(n_fft, fs, prop.t_star_p)
    # scattering coda: energy envelope exp(-2 (t - tP) / decay), zero before P and after the record
    coda_envelope = (prop.coda_relative_amplitude * math.sqrt(physics.mean_square_radiation()[0])
                     * np.sqrt(2.0 * fs / prop.coda_decay_s) * np.exp(-np.clip(t - t_p, 0.0, None) / prop.coda_decay_s)
                     * (t >= t_p) * (t < n * dt))
    edges = np.arange(n_stf + 1) * dt
    path_rng = _rng(seed, event["index"], _PATH)
    time_error = prop.time_error_std_s * path_rng.standard_normal(n_tr)
    noise_rng = _rng(seed, event["index"], _NOISE)
    snr = np.exp(noise_rng.uniform(*np.log(cfg.noise.snr), n_tr))
    level = noise_rng.uniform(*cfg.noise.level, n_tr)
    f_noise = np.fft.rfftfreq(n, dt)
    band = (np.abs(physics.butterworth_response(f_noise, cfg.noise.band_hz[0], cfg.noise.band_order, "highpass"))
            * np.abs(physics.butterworth_response(f_noise, cfg.noise.band_hz[1], cfg.noise.band_order, "lowpass"))) ** 2
    with np.errstate(divide="ignore"):
        to_displacement = band / np.where(f_noise > 0, (2 * np.pi * f_noise) ** 4, np.inf)
    chunk = cfg.memory.traces_per_chunk
    for start in range(0, n_tr, chunk):
        rows = slice(start, min(start + chunk, n_tr))
        g = _take(geo, rows)
        m = rows.stop - rows.start
        # Green's function: spikes + coda (continuous-time spectrum), attenuated
        tp = np.full(m, t_p)
        green_f = (g["amp_p"][:, None] * _delay(freqs, tp)
                   + g["amp_pp"][:, None] * _delay(freqs, tp + np.nan_to_num(g["pp_delay"]))
                   + g["amp_sp"][:, None] * _delay(freqs, tp + np.nan_to_num(g["sp_delay"])))
        coda = (g["spreading"][:, None] * coda_envelope) * path_rng.standard_normal((m, n_fft))
        green_f += dt * np.fft.rfft(coda, axis=-1)
        del coda
        green_f *= attenuation
        # apparent STF per station, sampled as the mean rate per interval
        stf_app = physics.rate_from_cumulative(_stf_cumulative(edges[None, :] / g["stretch"][:, None], event), dt)
        spectrum = np.fft.rfft(stf_app, n=n_fft, axis=-1) * green_f * _delay(freqs, time_error[rows])
        signal = np.fft.irfft(spectrum, n=n_fft, axis=-1)[:, :n]
        del spectrum
        green = np.fft.irfft(green_f, n=n_fft, axis=-1)[:, :n] * fs if cfg.truth.store_green_functions else None
        del green_f
        # noise at the drawn SNR
        p_true = (t_p + time_error[rows]) * fs
        psd = 10.0 ** (physics.peterson_psd_db(f_noise, level[rows, None]) / 10.0) * to_displacement
        noise = physics.colored_noise(noise_rng, (m,), n, fs, psd)
        scale = _scale_noise_to_snr(signal, noise, snr[rows], _window_mask(n, fs, p_true, cfg.snr.noise_window_s),
                                    _window_mask(n, fs, p_true, cfg.snr.signal_window_s))
        record = signal + noise * scale[:, None] if cfg.noise.enabled else signal
        yield dict(g, time_error=time_error[rows], snr=snr[rows], noise_level=level[rows], noise_scale=scale,
                   record=record, green=green, p_predicted=np.full(m, t_p * fs), p_true=p_true)


def _tele_rows(cfg, event, rec, network, split) -> list[dict]:
    fs = cfg.sampling_rate_hz
    noise_on = cfg.noise.enabled
    radius = _planet_radius(cfg.velocity_model)
    n = rec["record"].shape[-1]
    start = event["origin_time"] + rec["p"]["time"] - cfg.window.pre_p_s
    codes = network["code"][rec["keep"]]
    rows = []
    for j in range(len(rec["keep"])):
        def sample(delay):
            s = rec["p_true"][j] + delay * fs
            return round(float(s), 3) if np.isfinite(s) and 0 <= s < n else None

        rows.append({
            "source_id": event["source_id"], "source_origin_time": _iso(event["origin_time"]),
            "source_latitude_deg": round(event["latitude"], 5), "source_longitude_deg": round(event["longitude"], 5),
            "source_depth_km": round(event["depth_km"], 3), "source_magnitude": round(event["magnitude"], 3),
            "source_magnitude_type": "Mw", "source_strike_deg": round(event["strike"], 3),
            "source_dip_deg": round(event["dip"], 3), "source_rake_deg": round(event["rake"], 3),
            "station_network_code": cfg.stations.network_code, "station_code": str(codes[j]),
            "station_location_code": "", "station_channel_code": _band_code(fs) + "H",
            "station_latitude_deg": round(float(network["latitude"][rec["keep"][j]]), 5),
            "station_longitude_deg": round(float(network["longitude"][rec["keep"][j]]), 5),
            "station_elevation_m": 0.0,
            "path_ep_distance_deg": round(float(rec["distance"][j]), 5),
            "path_ep_distance_km": round(float(rec["distance"][j]) * radius * _DEG_KM, 3),
            "path_azimuth_deg": round(float(rec["azimuth"][j]), 4),
            "path_back_azimuth_deg": round(float(rec["back_azimuth"][j]), 4),
            "path_p_travel_sec": round(float(rec["p"]["time"][j]), 4),
            "trace_start_time": _iso(float(start[j])), "trace_sampling_rate_hz": fs, "trace_npts": n,
            "trace_component_order": "Z", "trace_category": "earthquake",
            "trace_p_arrival_sample": round(float(rec["p_true"][j]), 3),
            "trace_p_predicted_sample": round(float(rec["p_predicted"][j]), 3),
            "trace_p_status": "synthetic", "trace_polarity": int(np.sign(rec["fp_p"][j]) or 1),
            "trace_pp_arrival_sample": sample(rec["pp_delay"][j]),
            "trace_sp_arrival_sample": sample(rec["sp_delay"][j]),
            "trace_snr_db": round(float(20 * np.log10(rec["snr"][j])), 4) if noise_on else None, "split": split,
        })
    return rows


def _tele_event_truth(cfg, event, n_traces: int, split: str) -> dict:
    fs = cfg.sampling_rate_hz
    n_stf = int(round(cfg.truth.stf_length_s * fs))
    edges = np.arange(n_stf + 1) / fs
    stf = physics.rate_from_cumulative(_stf_cumulative(edges, event), 1.0 / fs)
    pad = lambda a, fill=np.nan: np.concatenate([np.asarray(a, float), np.full(3 - len(a), fill)])  # noqa: E731
    shapes = ["triangle" if t else "smoothed_boxcar" for t in event["sub_triangle"]]
    shapes = np.array(shapes + [""] * (3 - len(shapes)))
    events = {
        "source_id": [event["source_id"]], "origin_time": [_iso(event["origin_time"])],
        "latitude_deg": [event["latitude"]], "longitude_deg": [event["longitude"]], "depth_km": [event["depth_km"]],
        "magnitude": [event["magnitude"]], "moment_nm": [event["moment_nm"]], "strike_deg": [event["strike"]],
        "dip_deg": [event["dip"]], "rake_deg": [event["rake"]], "duration_s": [event["duration_s"]],
        "n_subevents": [len(event["sub_onset"])], "subevent_onset_s": [pad(event["sub_onset"])],
        "subevent_duration_s": [pad(event["sub_duration"])],
        "subevent_moment_fraction": [pad(event["sub_fraction"], 0.0)],
        "subevent_shape": [shapes], "directivity": [event["directivity"]],
        "rupture_azimuth_deg": [event["rupture_azimuth_deg"]],
        "rupture_velocity_km_s": [event["rupture_velocity_km_s"]],
        "n_traces": [n_traces], "split": [split], "stf": stf[None, :],
    }
    return events


def _tele_trace_truth(cfg, event, rec, rows, names) -> dict:
    traces = {
        "trace_name": names, "source_id": [event["source_id"]] * len(rows),
        "station_code": [r["station_code"] for r in rows], "distance_deg": rec["distance"],
        "azimuth_deg": rec["azimuth"], "p_travel_time_s": rec["p"]["time"], "p_takeoff_deg": rec["p"]["takeoff"],
        "p_ray_param_s_per_rad": rec["p"]["ray_param"],
        "pp_delay_s": rec["pp_delay"], "sp_delay_s": rec["sp_delay"], "pp_takeoff_deg": rec["pp"]["takeoff"],
        "sp_takeoff_deg": rec["sp"]["takeoff"], "p_radiation": rec["fp_p"], "amplitude_p": rec["amp_p"],
        "amplitude_pp": rec["amp_pp"], "amplitude_sp": rec["amp_sp"],
        "polarity": np.where(rec["fp_p"] < 0, -1, 1).astype(np.int8),
        "time_error_s": rec["time_error"], "stf_time_scale": rec["stretch"],
        "apparent_duration_s": event["duration_s"] * rec["stretch"],
        "snr": rec["snr"] if cfg.noise.enabled else np.full(len(rows), np.inf), "noise_level": rec["noise_level"],
        "p_predicted_sample": rec["p_predicted"], "p_arrival_sample": rec["p_true"],
    }
    if rec["green"] is not None:
        traces["green"] = rec["green"].astype(np.float32)
    return traces


# ================================================================================ local scenario
def _local_network(cfg) -> dict[str, np.ndarray]:
    net = cfg.network
    rng = np.random.default_rng(int(net.seed))
    radius = net.radius_km * np.sqrt(rng.uniform(size=net.n_stations))
    km_per_deg = _planet_radius(cfg.velocity_model) * _DEG_KM
    lat, lon = _destination(net.centre_deg[0], net.centre_deg[1], radius / km_per_deg,
                            rng.uniform(0.0, 360.0, net.n_stations))
    families = list(net.instrument_fractions)
    probs = np.asarray([net.instrument_fractions[f] for f in families])
    family = np.asarray(families)[rng.choice(len(families), size=net.n_stations, p=probs)]
    width = len(str(net.n_stations))
    return {
        "code": np.array([f"{net.code}{i + 1:0{max(2, width)}d}" for i in range(net.n_stations)]),
        "latitude": lat, "longitude": lon, "family": family,
        "amplification": 10.0 ** (net.site_amplification_log10_std * rng.standard_normal(net.n_stations)),
        "resonance_hz": np.exp(rng.uniform(*np.log(net.resonance_hz), net.n_stations)),
        "resonance_gain": rng.uniform(*net.resonance_gain, net.n_stations),
        "resonance_damping": rng.uniform(*net.resonance_damping, net.n_stations),
        "kappa_s": rng.uniform(*net.kappa_s, net.n_stations),
    }


def _local_event(cfg, seed: int, k: int, origin_start: float) -> dict:
    spec = cfg.catalog
    rng = _rng(seed, k, _SOURCE)
    radius = _planet_radius(cfg.velocity_model)
    teleseismic = bool(rng.uniform() < spec.teleseismic_fraction)
    centre = cfg.network.centre_deg
    if teleseismic:
        sub = spec.teleseismic
        dist_deg = rng.uniform(*sub.distance_km) / (radius * _DEG_KM)
    else:
        sub = spec.local
        dist_deg = sub.radius_km * math.sqrt(rng.uniform()) / (radius * _DEG_KM)
    lat, lon = _destination(centre[0], centre[1], dist_deg, rng.uniform(0.0, 360.0))
    depth = float(rng.uniform(*sub.depth_km))
    mw = float(rng.uniform(*sub.magnitude))
    m0 = float(physics.moment_from_magnitude(mw))
    strike, dip, rake = _random_mechanism(rng)
    stress_drop = cfg.source.stress_drop_mpa * 1e6 * 10.0 ** (cfg.source.stress_drop_log10_std * rng.standard_normal())
    alpha_h, beta_h, rho_h = _medium(cfg.velocity_model, depth)
    fc = float(physics.brune_corner_frequency(m0, stress_drop, beta_h * 1e3, cfg.source.brune_constant))
    return dict(
        index=k, source_id=f"local{k:06d}", latitude=float(lat), longitude=float(lon), depth_km=depth, magnitude=mw,
        moment_nm=m0, strike=strike, dip=dip, rake=rake, stress_drop_pa=float(stress_drop), corner_frequency_hz=fc,
        distance_class="teleseismic" if teleseismic else "local",
        origin_time=origin_start + float(rng.uniform(0.0, spec.origin_time_span_days * 86400.0)),
        alpha_h=alpha_h, beta_h=beta_h, rho_h=rho_h,
    )


def _local_stations_for(cfg, event, network, seed):
    """Stations that record the event (a random subset; local events only within the maximum distance)."""
    spec = cfg.catalog
    radius = _planet_radius(cfg.velocity_model)
    dist, az, baz = _distance_azimuth(event["latitude"], event["longitude"], network["latitude"], network["longitude"])
    rng = _rng(seed, event["index"], _PATH)
    u = rng.uniform(size=len(dist))
    allowed = np.ones(len(dist), bool)
    if event["distance_class"] == "local":
        allowed = dist * radius * _DEG_KM <= spec.local.max_distance_km
    chosen = allowed & (u < spec.record_probability)
    if not chosen.any() and allowed.any():
        chosen[np.flatnonzero(allowed)[np.argmin(u[allowed])]] = True
    keep = np.flatnonzero(chosen)
    return keep, dist[keep], az[keep], baz[keep], rng


_BRUNE_COMPLETE_AT = 24.0
# Linear responses ring for several time constants; the FFT length leaves this many of the slowest
# one after the record so that nothing wraps around into the pre-P noise window (exp(-12) ~ 6e-6).
_RING_TIME_CONSTANTS = 12.0


def _ring_time_s(inst, network, keep) -> float:
    """Seconds for the instrument high-pass and the site resonances of ``keep`` to ring down."""
    constants = [0.0]
    if inst.highpass_hz > 0:
        constants.append(1.0 / (2 * np.pi * inst.highpass_hz * np.sin(np.pi / (2 * max(inst.highpass_order, 1)))))
    zeta_w0 = 2 * np.pi * network["resonance_hz"][keep] * network["resonance_damping"][keep]
    constants.append(float(np.max(1.0 / zeta_w0)))
    return _RING_TIME_CONSTANTS * max(constants)


def _local_family_records(cfg, event, network, keep, dist, az, baz, tables, family, path_rng, noise_rng):
    """Three-component records of the stations ``keep`` (one instrument family)."""
    inst = cfg.instruments[family]
    prop = cfg.propagation
    fs = inst.sampling_rate_hz
    dt = 1.0 / fs
    n = int(round(inst.record_length_s * fs))
    n_tr = len(keep)
    model = cfg.velocity_model
    radius = _planet_radius(model)
    tele = event["distance_class"] == "teleseismic"
    table = tables["teleseismic" if tele else "local"]
    depth = event["depth_km"]
    p_arr, s_arr = table("P", depth, dist), table("S", depth, dist)
    mech = (event["strike"], event["dip"], event["rake"])
    fp, _, _ = physics.radiation_pattern(*mech, p_arr["takeoff"], az)
    _, fsv, fsh = physics.radiation_pattern(*mech, s_arr["takeoff"], az)
    alpha0, beta0, _ = _medium(model, 0.0)
    alpha_h, beta_h, rho_h = event["alpha_h"], event["beta_h"], event["rho_h"]
    r_m = _straight_distance_km(radius, depth, dist) * 1e3
    spread_p = 1.0 / (4 * np.pi * rho_h * (alpha_h * 1e3) ** 3 * r_m)
    spread_s = 1.0 / (4 * np.pi * rho_h * (beta_h * 1e3) ** 3 * r_m)
    sin_i0 = np.clip(p_arr["ray_param"] / radius * alpha0, 0.0, 1.0)
    sin_j0 = np.clip(s_arr["ray_param"] / radius * beta0, 0.0, 1.0)
    cos_i0, cos_j0 = np.sqrt(1 - sin_i0 ** 2), np.sqrt(1 - sin_j0 ** 2)
    # (Z up, R away from the source, T = R turned clockwise) -> (Z, N, E)
    phi_r = np.deg2rad(baz + 180.0)
    def zne(z, r, tr):  # noqa: E306
        return np.stack([z, r * np.cos(phi_r) - tr * np.sin(phi_r), r * np.sin(phi_r) + tr * np.cos(phi_r)], axis=1)

    amp_p = zne(fp * cos_i0, fp * sin_i0, np.zeros(n_tr)) * spread_p[:, None]
    amp_s = zne(-fsv * sin_j0, fsv * cos_j0, fsh) * spread_s[:, None]

    # ---- times in the trace: P at a random offset
    p_offset = path_rng.uniform(*cfg.record.p_offset_s, n_tr)
    t_p = p_offset
    t_s = p_offset + (s_arr["time"] - p_arr["time"])
    # Brune pulse until its cumulative moment is complete to 1e-9 ((1 + a t) exp(-a t) = 1e-9 at a t ~ 24)
    n_stf = int(math.ceil(_BRUNE_COMPLETE_AT / (2 * np.pi * event["corner_frequency_hz"]) * fs)) + 1
    n_fft = scipy.fft.next_fast_len(n + n_stf + int(math.ceil(_ring_time_s(inst, network, keep) * fs)))
    freqs = np.fft.rfftfreq(n_fft, dt)
    kappa = network["kappa_s"][keep]
    if tele:
        tstar_p = np.full(n_tr, prop.teleseismic_t_star_p)
        tstar_s = np.full(n_tr, prop.teleseismic_t_star_s)
        decay = prop.teleseismic_coda_decay_s
    else:
        tstar_p = p_arr["time"] / prop.q_p
        tstar_s = s_arr["time"] / prop.q_s
        decay = prop.local_coda_decay_s
    att_p = physics.attenuation_response(n_fft, fs, tstar_p + kappa)
    att_s = physics.attenuation_response(n_fft, fs, tstar_s + kappa)

    t = np.arange(n_fft) * dt
    ms_p, ms_s = physics.mean_square_radiation()

    def coda(onset, rel_amp, spread, rms_radiation):
        # scattering within the record only (beyond it, it could not reach the record anyway)
        t_rec = t[None, :n]
        std = (rel_amp * rms_radiation * spread[:, None] * np.sqrt(2.0 * fs / decay)
               * np.exp(-np.clip(t_rec - onset[:, None], 0.0, None) / decay) * (t_rec >= onset[:, None]))
        # one independent scattered wavefield per component, shared normalisation over the 3 components
        white = path_rng.standard_normal((n_tr, 3, n))
        return dt * np.fft.rfft(std[:, None, :] * white / math.sqrt(3.0), n=n_fft, axis=-1)

    s_valid = np.isfinite(t_s) & (t_s < n * dt)  # a later S cannot reach the record (and must not wrap around)
    green_p = (amp_p[:, :, None] * _delay(freqs, t_p)[:, None, :]
               + coda(t_p, prop.p_coda_relative_amplitude, spread_p, math.sqrt(ms_p))) * att_p[:, None, :]
    green_s = (np.nan_to_num(amp_s)[:, :, None] * _delay(freqs, np.where(s_valid, t_s, 0.0))[:, None, :]
               + coda(np.where(s_valid, t_s, n_fft * dt), prop.s_coda_relative_amplitude, spread_s,
                      math.sqrt(ms_s))) * att_s[:, None, :]
    green_f = green_p + green_s * s_valid[:, None, None]

    site = (network["amplification"][keep][:, None]
            * physics.resonance_response(freqs, network["resonance_gain"][keep][:, None],
                                         network["resonance_hz"][keep][:, None],
                                         network["resonance_damping"][keep][:, None]))
    instrument = (physics.butterworth_response(freqs, inst.highpass_hz, inst.highpass_order, "highpass")
                  * physics.butterworth_response(freqs, inst.lowpass_hz, inst.lowpass_order, "lowpass"))
    edges = np.arange(n_stf + 1) * dt
    cumulative = physics.brune_cumulative(edges, event["corner_frequency_hz"])
    stf = event["moment_nm"] * physics.rate_from_cumulative(cumulative, dt)
    stf_f = np.fft.rfft(stf, n=n_fft)
    velocity_f = stf_f[None, None, :] * green_f * site[:, None, :] * (2j * np.pi * freqs) * instrument
    signal = np.fft.irfft(velocity_f, n=n_fft, axis=-1)[..., :n]

    # ---- noise: NLNM-NHNM ground velocity through the instrument, scaled to the SNR on Z
    snr = np.exp(noise_rng.uniform(*np.log(cfg.noise.snr), n_tr))
    level = noise_rng.uniform(*cfg.noise.level, n_tr)
    f_noise = np.fft.rfftfreq(n, dt)
    with np.errstate(divide="ignore"):
        vel_psd = 10.0 ** (physics.peterson_psd_db(f_noise, level[:, None]) / 10.0) / np.where(
            f_noise > 0, (2 * np.pi * f_noise) ** 2, np.inf)
    inst_noise = (physics.butterworth_response(f_noise, inst.highpass_hz, inst.highpass_order, "highpass")
                  * physics.butterworth_response(f_noise, inst.lowpass_hz, inst.lowpass_order, "lowpass"))
    noise = physics.colored_noise(noise_rng, (n_tr, 3), n, fs, (vel_psd * np.abs(inst_noise) ** 2)[:, None, :])
    p_sample = t_p * fs
    noise_mask = _window_mask(n, fs, p_sample, cfg.snr.noise_window_s)
    signal_mask = _window_mask(n, fs, p_sample, cfg.snr.signal_window_s)
    scale = _scale_noise_to_snr(signal[:, 0], noise[:, 0], snr, noise_mask, signal_mask)
    record = signal + noise * scale[:, None, None] if cfg.noise.enabled else signal.copy()
    s_sample = t_s * fs
    return dict(
        family=family, sampling_rate=fs, n=n, record=record, noise_on=cfg.noise.enabled, signal=signal,
        noise_level=level,
        p=p_arr, s=s_arr, fp=fp, fsv=fsv, fsh=fsh, p_sample=p_sample, s_sample=s_sample, snr=snr, noise_scale=scale,
        t_star_p=tstar_p, t_star_s=tstar_s, stf=stf,
    )


def _local_rows(cfg, event, network, keep, dist, az, baz, rec, split) -> list[dict]:
    noise_on = cfg.noise.enabled
    radius = _planet_radius(cfg.velocity_model)
    start = event["origin_time"] + rec["p"]["time"] - rec["p_sample"] / rec["sampling_rate"]
    hyp = _straight_distance_km(radius, event["depth_km"], dist)
    rows = []
    for j, st in enumerate(keep):
        s = rec["s_sample"][j]
        rows.append({
            "source_id": event["source_id"], "source_origin_time": _iso(event["origin_time"]),
            "source_latitude_deg": round(event["latitude"], 5), "source_longitude_deg": round(event["longitude"], 5),
            "source_depth_km": round(event["depth_km"], 3), "source_magnitude": round(event["magnitude"], 3),
            "source_magnitude_type": "Mw", "source_strike_deg": round(event["strike"], 3),
            "source_dip_deg": round(event["dip"], 3), "source_rake_deg": round(event["rake"], 3),
            "station_network_code": cfg.network.code, "station_code": str(network["code"][st]),
            "station_location_code": "", "station_channel_code": rec["family"],
            "station_latitude_deg": round(float(network["latitude"][st]), 5),
            "station_longitude_deg": round(float(network["longitude"][st]), 5), "station_elevation_m": 0.0,
            "path_ep_distance_deg": round(float(dist[j]), 6),
            "path_ep_distance_km": round(float(dist[j]) * radius * _DEG_KM, 3),
            "path_hyp_distance_km": round(float(hyp[j]), 3),
            "path_azimuth_deg": round(float(az[j]), 4), "path_back_azimuth_deg": round(float(baz[j]), 4),
            "path_distance_class": event["distance_class"],
            "path_p_travel_sec": round(float(rec["p"]["time"][j]), 4),
            "path_s_travel_sec": round(float(rec["s"]["time"][j]), 4),
            "trace_start_time": _iso(float(start[j])), "trace_sampling_rate_hz": rec["sampling_rate"],
            "trace_npts": rec["n"], "trace_component_order": "ZNE", "trace_category": "earthquake",
            "trace_channel": ",".join(f"{rec['family']}{c}" for c in "ZNE"),
            "trace_p_arrival_sample": round(float(rec["p_sample"][j]), 3),
            "trace_s_arrival_sample": round(float(s), 3) if np.isfinite(s) and s < rec["n"] else None,
            "trace_p_status": "synthetic", "trace_s_status": "synthetic",
            "trace_polarity": int(-1 if rec["fp"][j] < 0 else 1),
            "trace_snr_db": round(float(20 * np.log10(rec["snr"][j])), 4) if noise_on else None, "split": split,
        })
    return rows


def _local_event_truth(event, n_traces: int, split: str) -> dict:
    keys = ("source_id", "latitude", "longitude", "depth_km", "magnitude", "moment_nm", "strike", "dip", "rake",
            "stress_drop_pa", "corner_frequency_hz", "distance_class")
    events = {k: [event[k]] for k in keys}
    events.update(origin_time=[_iso(event["origin_time"])], n_traces=[n_traces], split=[split])
    return events


def _local_trace_truth(event, rec, rows, names, keep) -> dict:
    return {
        "trace_name": names, "source_id": [event["source_id"]] * len(rows), "station_index": keep,
        "station_code": [r["station_code"] for r in rows], "channel_code": [rec["family"]] * len(rows),
        "sampling_rate_hz": np.full(len(rows), rec["sampling_rate"]),
        "distance_class": [event["distance_class"]] * len(rows),
        "distance_km": [r["path_ep_distance_km"] for r in rows], "azimuth_deg": [r["path_azimuth_deg"] for r in rows],
        "p_travel_time_s": rec["p"]["time"], "s_travel_time_s": rec["s"]["time"],
        "p_takeoff_deg": rec["p"]["takeoff"], "s_takeoff_deg": rec["s"]["takeoff"],
        "p_radiation": rec["fp"], "sv_radiation": rec["fsv"], "sh_radiation": rec["fsh"],
        "polarity": np.where(rec["fp"] < 0, -1, 1).astype(np.int8), "p_arrival_sample": rec["p_sample"],
        "s_arrival_sample": rec["s_sample"], "t_star_p_s": rec["t_star_p"], "t_star_s_s": rec["t_star_s"],
        "snr": rec["snr"] if rec["noise_on"] else np.full(len(rows), np.inf), "noise_level": rec["noise_level"],
    }


# ====================================================================================== figures
class _FigureData:
    """The few traces kept for the overview figure (memory: one event)."""

    def __init__(self):
        self.section = None
        self.stfs = []
        self.spectra = []
        self.noise = []


def _noise_psd_panel(ax, noise_examples):
    """Welch PSD of ground noise drawn by the generator's own noise model (before the band limits,
    the instrument and the SNR scaling), converted to acceleration, against Peterson's models."""
    import scipy.signal

    periods, low, high = physics.peterson_models()
    ax.fill_between(periods, low, high, color="0.9", label="NLNM-NHNM")
    ax.semilogx(periods, low, "k-", lw=0.8)
    ax.semilogx(periods, high, "k-", lw=0.8)
    rng = np.random.default_rng(0)
    for level, fs, n, power in noise_examples:
        f = np.fft.rfftfreq(n, 1.0 / fs)
        with np.errstate(divide="ignore"):
            psd = 10.0 ** (physics.peterson_psd_db(f, level) / 10.0) / np.where(f > 0, (2 * np.pi * f) ** power, np.inf)
        trace = physics.colored_noise(rng, (), n, fs, psd)
        fw, pxx = scipy.signal.welch(trace, fs=fs, nperseg=min(n, int(128 * fs)))
        good = fw > 0
        ax.semilogx(1 / fw[good], 10 * np.log10(pxx[good] * (2 * np.pi * fw[good]) ** power), lw=1,
                    label=f"synthetic {'displacement' if power == 4 else 'velocity'}, level {level:.2f}")
    ax.set_xlim(1.0 / 50.0, 1000)
    ax.set_ylim(-200, -80)
    ax.set_xlabel("period (s)")
    ax.set_ylabel("acceleration PSD (dB re 1 m²/s⁴/Hz)")
    ax.set_title("generator's ground noise vs Peterson (1993)")
    ax.legend(fontsize=7)


def _plot_teleseismic(cfg, fig_data, table, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 10))
    sec = fig_data.section
    ax = axes[0, 0]
    if sec is not None:
        order = np.argsort(sec["distance"])
        pick = order[np.linspace(0, len(order) - 1, min(len(order), cfg.figure.max_section_traces)).astype(int)]
        spacing = (sec["distance"].max() - sec["distance"].min()) / max(len(pick), 1)
        d = np.linspace(sec["distance"].min(), sec["distance"].max(), 100)
        p_time = table("P", sec["depth"], d)["time"]
        delays = {label: table(label, sec["depth"], d)["time"] - p_time for label in ("pP", "sP")}
        t_max = float(np.nanmax(delays["sP"])) + 60.0
        for j in pick:
            tr = sec["record"][j]
            t = np.arange(len(tr)) / sec["fs"] - cfg.window.pre_p_s
            shown = (t >= -30.0) & (t <= t_max)
            scale = np.abs(tr[shown]).max() or 1.0
            ax.plot(t[shown], sec["distance"][j] + 1.2 * spacing * tr[shown] / scale, "k-", lw=0.4)
        ax.axvline(0.0, color="C3", ls="--", lw=1.2, label="TauP P")
        for (label, delay), colour in zip(delays.items(), ("C0", "C2")):
            ax.plot(delay, d, "--", color=colour, lw=1.2, label=f"TauP {label}")
        ax.set_xlabel("time after the TauP P arrival (s); records include their timing errors")
        ax.set_ylabel("epicentral distance (°)")
        ax.set_title(f"{sec['source_id']}: Mw {sec['magnitude']:.1f}, depth {sec['depth']:.0f} km (Z displacement)")
        ax.legend(loc="lower right", fontsize=8)
    ax = axes[0, 1]
    for ev, stf, fs in fig_data.stfs:
        t = np.arange(len(stf)) / fs
        ax.plot(t, stf / ev["moment_nm"], lw=1.2,
                label=f"{ev['source_id']} Mw {ev['magnitude']:.1f}, {len(ev['sub_onset'])} sub-event(s)"
                      f"{', directivity' if ev['directivity'] else ''}")
    ax.set_xlim(0, max([ev["duration_s"] for ev, _, _ in fig_data.stfs] + [1.0]) * 1.15)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("moment rate / M0 (1/s)")
    ax.set_title("true source time functions")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    for ev, stf, fs in fig_data.stfs:
        spec = np.abs(np.fft.rfft(stf / ev["moment_nm"], n=8 * len(stf))) / fs
        f = np.fft.rfftfreq(8 * len(stf), 1 / fs)
        line, = ax.loglog(f[1:], spec[1:], lw=1)
        ax.axvline(1.0 / ev["duration_s"], color=line.get_color(), ls=":", lw=1)
    ax.set_ylim(1e-5, 2)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("|STF(f)| / M0")
    ax.set_title("source spectra (dotted: 1 / duration, the corner)")
    _noise_psd_panel(axes[1, 1], fig_data.noise)
    fig.suptitle("seisjax synthetic teleseismic-p data", fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_local(cfg, fig_data, tables, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 10))
    sec = fig_data.section
    ax = axes[0, 0]
    if sec is not None:
        order = np.argsort(sec["distance_km"])[: cfg.figure.max_section_traces]
        spacing = max((sec["distance_km"].max() - sec["distance_km"].min()) / max(len(order), 1), 1.0)
        for j in order:
            tr = sec["records"][j]
            ax.plot(sec["t0"][j] + np.arange(len(tr)) / sec["fs"][j],
                    sec["distance_km"][j] + 1.5 * spacing * tr / (np.abs(tr).max() or 1), "k-", lw=0.4)
        radius = _planet_radius(cfg.velocity_model) * _DEG_KM
        d = np.linspace(sec["distance_km"].min(), sec["distance_km"].max(), 100)
        for label, colour in (("P", "C3"), ("S", "C0")):
            ax.plot(tables["local"](label, sec["depth"], d / radius)["time"], d, "--", color=colour, lw=1.2,
                    label=f"TauP {label}")
        ax.set_xlabel("time after origin (s)")
        ax.set_ylabel("epicentral distance (km)")
        ax.set_title(f"{sec['source_id']}: local Mw {sec['magnitude']:.1f}, depth {sec['depth']:.1f} km (Z velocity)")
        ax.legend(loc="lower right", fontsize=8)
    ax = axes[0, 1]
    for ev, stf, fs in fig_data.stfs:
        t = np.arange(len(stf)) / fs
        ax.semilogx(t[1:], stf[1:] / ev["moment_nm"] / (2 * np.pi * ev["corner_frequency_hz"]), lw=1.2,
                    label=f"{ev['distance_class']} Mw {ev['magnitude']:.1f}, fc {ev['corner_frequency_hz']:.2f} Hz")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("moment rate / (M0 2π fc)")
    ax.set_title("true source time functions (Brune pulses)")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    for ev, disp, fs in fig_data.spectra:
        spec = np.abs(np.fft.rfft(disp)) / fs
        f = np.fft.rfftfreq(len(disp), 1 / fs)
        line, = ax.loglog(f[1:], spec[1:], lw=0.8, alpha=0.8, label=f"Mw {ev['magnitude']:.1f}")
        fc = ev["corner_frequency_hz"]
        model = spec[1:][np.argmin(np.abs(f[1:] - 0.1 * fc))] / (1 + (f[1:] / fc) ** 2)
        ax.loglog(f[1:], model, "--", color=line.get_color(), lw=1)
        ax.axvline(ev["corner_frequency_hz"], color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("|U(f)| (m s)")
    ax.set_title("noise-free Z displacement spectra; dashed Brune ω², dotted fc")
    ax.legend(fontsize=7)
    _noise_psd_panel(axes[1, 1], fig_data.noise)
    fig.suptitle("seisjax synthetic local data", fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ================================================================================== the driver
def scenario_config(scenario: str, overrides=(), **fields) -> ml_collections.ConfigDict:
    """The validated config of ``scenario``: its defaults, then ``overrides`` (``["noise.snr=(1,10)",
    ...]`` parsed as ``--config.`` overrides are, or a mapping ``{"noise.snr": (1, 10)}``), then
    top-level ``fields`` (``events=24, seed=1``)."""
    cfg = default_config(scenario)
    if "scenario" in (overrides if isinstance(overrides, Mapping) else [str(o).partition("=")[0] for o in overrides]):
        raise InputError("config key 'scenario' cannot be overridden; choose the scenario instead")
    config_lib.apply_overrides(cfg, overrides)
    config_lib.apply_overrides(cfg, fields)
    _validate(cfg)
    return cfg


def _clean(row: dict) -> dict:
    return {k: v for k, v in row.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


def synthesize(config: ml_collections.ConfigDict, out_dir, *, figure: bool = True, progress: bool = True,
               overwrite: bool = False) -> Path:
    """Write the synthetic dataset that ``config`` (a scenario config, :func:`scenario_config`)
    describes to ``out_dir`` and return its path.

    ``out_dir`` receives ``metadata.csv`` + ``waveforms.hdf5`` (SeisBench format), ``truth.h5``,
    ``config.json`` (the config) and ``figures/synthetic_<scenario>.png``. The same config gives
    identical waveforms.
    """
    from tqdm.auto import tqdm

    from seisjax.data.dataset import DatasetWriter

    cfg = config
    _validate(cfg)
    scenario, seed = str(cfg.scenario), int(cfg.seed)
    out = Path(out_dir)
    truth_path = out / "truth.h5"
    if truth_path.exists() and not overwrite:
        raise InputError(f"{out}: a synthetic dataset exists there already (pass overwrite=True or --overwrite)")
    tele = scenario == "teleseismic-p"
    writer_kwargs = dict(component_order="Z", sampling_rate=cfg.sampling_rate_hz) if tele else dict(
        component_order="ZNE", sampling_rate=None)
    writer_kwargs["data_format_attrs"] = {"unit": "m" if tele else "m/s",
                                          "quantity": "displacement" if tele else "velocity",
                                          "generator": f"seisjax synthetic {scenario}", "seed": int(seed)}
    writer = DatasetWriter(out, overwrite=overwrite, **writer_kwargs)
    truth = _TruthWriter(truth_path)
    fig_data = _FigureData()
    splits = _event_splits(cfg.events, cfg.split.fractions, seed)
    counts = {"train": 0, "dev": 0, "test": 0}
    origin_start = float(_utc(cfg.source.origin_time_start if tele else cfg.catalog.origin_time_start).timestamp)
    try:
        if tele:
            network = _global_network(cfg)
            model_depth = cfg.source.depth_km
            tables = TravelTimeTable(
                cfg.velocity_model, {"P": ("P",), "pP": ("pP",), "sP": ("sP",)}, model_depth,
                (max(cfg.stations.distance_deg[0] - cfg.taup.distance_step_deg, 0.0),
                 min(cfg.stations.distance_deg[1] + cfg.taup.distance_step_deg, 180.0)),
                cfg.taup.depth_step_km, cfg.taup.distance_step_deg, progress)
        else:
            network = _local_network(cfg)
            radius = _planet_radius(cfg.velocity_model) * _DEG_KM
            spec = cfg.catalog
            p_names = {"P": ("p", "P", "Pn"), "S": ("s", "S", "Sn")}
            tables = {}
            if spec.teleseismic_fraction < 1.0:
                tables["local"] = TravelTimeTable(
                    cfg.velocity_model, p_names, spec.local.depth_km,
                    (0.0, (spec.local.radius_km + cfg.network.radius_km) / radius + cfg.taup.local_distance_step_deg),
                    cfg.taup.local_depth_step_km, cfg.taup.local_distance_step_deg, progress,
                    straight_ray={"p": "P", "s": "S"})
            if spec.teleseismic_fraction > 0.0:
                tables["teleseismic"] = TravelTimeTable(
                    cfg.velocity_model, p_names, spec.teleseismic.depth_km,
                    (max(spec.teleseismic.distance_km[0] / radius - 1.0, 0.0),
                     spec.teleseismic.distance_km[1] / radius + 1.0),
                    cfg.taup.teleseismic_depth_step_km, cfg.taup.teleseismic_distance_step_deg, progress)
            truth.append("stations", {k: network[k] for k in network})
        bar = tqdm(range(cfg.events), desc=f"synth {scenario}", unit="event", disable=not progress)
        n_traces = 0
        for k in bar:
            split = str(splits[k])
            write_event = _write_tele_event if tele else _write_local_event
            n_traces += write_event(cfg, k, seed, origin_start, network, tables, split, writer, truth, fig_data)
            counts[split] += 1
            bar.set_postfix(traces=n_traces)
        bar.close()
        if n_traces == 0:
            raise InputError(f"no station recorded any of the {cfg.events} events: check the station and "
                             "distance settings of the config")
        if truth.skipped:
            warnings.warn(f"{len(truth.skipped)} station record(s) could not be made (listed in truth.h5 "
                          f"attribute 'skipped'), e.g. {truth.skipped[0]}", stacklevel=2)
        truth.h5.attrs.update({
            "skipped": json.dumps(truth.skipped),
            "scenario": scenario, "seed": int(seed), "n_events": int(cfg.events), "n_traces": int(n_traces),
            "config_json": cfg.to_json(), "events_per_split": json.dumps(counts),
            "stf_convention": "moment rate in N m/s, mean over each sample interval; sums times dt to moment_nm",
            "green_convention": "noise-free record = dt * (apparent STF conv green) delayed by time_error_s; "
                                "apparent STF(t) = STF(t / stf_time_scale) / stf_time_scale",
        })
    except BaseException:
        writer.abort()
        truth.close()
        truth_path.unlink(missing_ok=True)
        raise
    writer.close()
    truth.close()
    (out / "config.json").write_text(json.dumps(config_lib.config_to_dict(cfg), indent=2) + "\n")
    if figure:
        fig_dir = out / "figures"
        fig_dir.mkdir(exist_ok=True)
        fig_path = fig_dir / f"synthetic_{scenario}.png"
        if tele:
            _plot_teleseismic(cfg, fig_data, tables, fig_path)
        else:
            _plot_local(cfg, fig_data, tables, fig_path)
    return out


def events_for_traces(cfg: ml_collections.ConfigDict, n_traces: int) -> tuple[int, int]:
    """Smallest number of events whose records reach ``n_traces`` with this scenario config (its seed
    included), and the number of traces they give (drawn exactly as :func:`synthesize` draws them,
    without waveforms)."""
    scenario, seed = str(cfg.scenario), int(cfg.seed)
    network = _global_network(cfg) if scenario == "teleseismic-p" else _local_network(cfg)
    total, k = 0, 0
    while total < n_traces:
        if scenario == "teleseismic-p":
            event = _tele_event(cfg, seed, k, 0.0)
            dist, _, _ = _distance_azimuth(event["latitude"], event["longitude"], network["latitude"],
                                           network["longitude"])
            low, high = cfg.stations.distance_deg
            total += int(np.count_nonzero((dist >= low) & (dist <= high)))
        else:
            total += len(_local_stations_for(cfg, _local_event(cfg, seed, k, 0.0), network, seed)[0])
        k += 1
    return k, total


def _write_tele_event(cfg, k, seed, origin_start, network, table, split, writer, truth, fig_data) -> int:
    event = _tele_event(cfg, seed, k, origin_start)
    geo = _tele_geometry(cfg, event, network, table, truth.skipped)
    n_traces = 0 if geo is None else len(geo["keep"])
    events = _tele_event_truth(cfg, event, n_traces, split)  # an event no station records stays, with 0 traces
    truth.append("events", events)
    truth.set_attrs("events/stf", {"sampling_rate_hz": cfg.sampling_rate_hz, "time_start_s": 0.0, "unit": "N m / s"})
    fs = cfg.sampling_rate_hz
    if len(fig_data.stfs) < cfg.figure.n_stf_events:
        fig_data.stfs.append((event, events["stf"][0], fs))
    if geo is None:
        return 0
    section = []
    for rec in _tele_records(cfg, event, geo, seed):
        rows = _tele_rows(cfg, event, rec, network, split)
        record32 = rec["record"].astype(np.float32)
        names = [writer.add(record32[j][None, :], _clean(row)) for j, row in enumerate(rows)]
        truth.append("traces", _tele_trace_truth(cfg, event, rec, rows, names))
        if fig_data.section is None:
            section.append((rec["distance"], record32, rec["p"]["time"] - cfg.window.pre_p_s))
        if not fig_data.noise:
            n = rec["record"].shape[-1]
            fig_data.noise = [(float(rec["noise_level"].min()), fs, n, 4), (float(rec["noise_level"].max()), fs, n, 4)]
    truth.set_attrs("traces/green", {"sampling_rate_hz": fs, "time_start_s": 0.0,
                                     "unit": "1/s (displacement in m per N m of moment)",
                                     "time_axis": "the trace's own samples"})
    if section:
        fig_data.section = {"distance": np.concatenate([s[0] for s in section]),
                            "record": np.concatenate([s[1] for s in section]),
                            "t0": np.concatenate([s[2] for s in section]), "fs": fs, "depth": event["depth_km"],
                            "magnitude": event["magnitude"], "source_id": event["source_id"]}
    return n_traces


def _write_local_event(cfg, k, seed, origin_start, network, tables, split, writer, truth, fig_data) -> int:
    event = _local_event(cfg, seed, k, origin_start)
    keep, dist, az, baz, path_rng = _local_stations_for(cfg, event, network, seed)
    table = tables[event["distance_class"]]
    has_p = np.isfinite(table("P", event["depth_km"], dist)["time"]) if len(keep) else np.ones(0, bool)
    if not has_p.all():
        truth.skipped.extend(f"{event['source_id']} {network['code'][i]}: no TauP P arrival" for i in keep[~has_p])
        keep, dist, az, baz = keep[has_p], dist[has_p], az[has_p], baz[has_p]
    noise_rng = _rng(seed, event["index"], _NOISE)
    truth.append("events", _local_event_truth(event, len(keep), split))
    n_written = 0
    section = []
    for family in sorted(cfg.instruments.keys()):
        sel = network["family"][keep] == family
        if not sel.any():
            continue
        rec = _local_family_records(cfg, event, network, keep[sel], dist[sel], az[sel], baz[sel], tables, family,
                                    path_rng, noise_rng)
        rows = _local_rows(cfg, event, network, keep[sel], dist[sel], az[sel], baz[sel], rec, split)
        record32 = rec["record"].astype(np.float32)
        names = [writer.add(record32[j], _clean(row)) for j, row in enumerate(rows)]
        truth.append("traces", _local_trace_truth(event, rec, rows, names, keep[sel]))
        n_written += len(rows)
        radius = _planet_radius(cfg.velocity_model) * _DEG_KM
        for j in range(len(rows)):
            start = rec["p"]["time"][j] - rec["p_sample"][j] / rec["sampling_rate"]
            section.append((dist[sel][j] * radius, record32[j, 0], start, rec["sampling_rate"]))
        new_magnitude = not fig_data.spectra or abs(fig_data.spectra[-1][0]["magnitude"] - event["magnitude"]) > 0.5
        if len(fig_data.spectra) < cfg.figure.n_spectra and new_magnitude:
            j = 0
            fs = rec["sampling_rate"]
            p0 = int(rec["p_sample"][j])
            s_sample = rec["s_sample"][j]
            stop = int(s_sample) if np.isfinite(s_sample) and s_sample < rec["n"] else rec["n"]
            disp = np.cumsum(rec["signal"][j, 0]) / fs
            seg = disp[max(p0 - int(0.5 * fs), 0): max(stop - int(0.2 * fs), p0 + 8)]
            fig_data.spectra.append((event, seg - seg[0], fs))
        if not fig_data.noise:
            fig_data.noise = [(float(rec["noise_level"].min()), rec["sampling_rate"], rec["n"], 2),
                              (float(rec["noise_level"].max()), rec["sampling_rate"], rec["n"], 2)]
        seen = any(abs(e["magnitude"] - event["magnitude"]) < 0.4 for e, _, _ in fig_data.stfs)
        if len(fig_data.stfs) < 6 and not seen:
            fig_data.stfs.append((event, rec["stf"], rec["sampling_rate"]))
    if fig_data.section is None and event["distance_class"] == "local" and len(section) >= 3:
        fig_data.section = {"distance_km": np.array([s[0] for s in section]), "records": [s[1] for s in section],
                            "t0": np.array([s[2] for s in section]), "fs": np.array([s[3] for s in section]),
                            "depth": event["depth_km"], "magnitude": event["magnitude"],
                            "source_id": event["source_id"]}
    return n_written
