"""The scenario configs: every physical and numerical parameter of the generator, with defaults and
validation. A config fixes the dataset exactly (its seed included); the modules beside this one
document what each section means.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import ml_collections
import numpy as np

from seisjax import config as config_lib
from seisjax.errors import InputError

__all__ = ["SCENARIOS", "default_config", "scenario_config", "flatten_config", "validate"]

SCENARIOS = ("teleseismic-p", "local")


def _scenario_base(scenario: str, events: int) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.scenario = scenario
    c.events = events
    c.seed = 0
    c.velocity_model = "iasp91"
    return c


def _tele_config() -> ml_collections.ConfigDict:
    c = _scenario_base("teleseismic-p", events=10)
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
    c = _scenario_base("local", events=100)
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
    """Every physical and numerical parameter of ``scenario``, at its default."""
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


def scenario_config(scenario: str, overrides=(), **fields) -> ml_collections.ConfigDict:
    """The validated config of ``scenario``: its defaults, then ``overrides`` (``["noise.snr=(1,10)",
    ...]`` parsed as ``--config.`` overrides are, or a mapping ``{"noise.snr": (1, 10)}``), then
    top-level ``fields`` (``events=24, seed=1``)."""
    cfg = default_config(scenario)
    if "scenario" in (overrides if isinstance(overrides, Mapping) else [str(o).partition("=")[0] for o in overrides]):
        raise InputError("config key 'scenario' cannot be overridden; choose the scenario instead")
    config_lib.apply_overrides(cfg, overrides)
    config_lib.apply_overrides(cfg, fields)
    validate(cfg)
    return cfg


def _check_range(cfg, key: str, low=-math.inf, high=math.inf):
    node = cfg
    for part in key.split("."):
        node = node[part]
    if len(node) != 2:
        raise InputError(f"config key {key!r}: need a pair (min, max), got {tuple(node)}")
    a, b = node
    if not (low <= a <= b <= high):
        raise InputError(f"config key {key!r}: need {low} <= min <= max <= {high}, got {tuple(node)}")


def validate(cfg: ml_collections.ConfigDict):
    """Raise :class:`InputError` naming the key of the first value that the generator cannot use."""
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

