"""Helpers of the DEC tests: datasets of clean first-motion pulses and the family's scripts."""


import numpy as np
import pytest

from seisjax.data.dataset import DatasetWriter
from tests.conftest import load_file


def _write_pulses(path, *, rate=100.0, n=24, length=1200, p=600, seed=0, bad_rows=()):
    """Clean first-motion pulses on Z (noise on N/E), half labelled local and half teleseismic;
    returns their signs."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / rate
    signs = rng.choice([-1, 1], size=n)
    with DatasetWriter(path, component_order="ZNE", sampling_rate=rate) as writer:
        for i in range(n):
            tau = np.clip(t - p / rate, 0, None)
            z = signs[i] * (tau > 0) * np.sin(2 * np.pi * 5 * tau) * np.exp(-3 * tau) + 0.001 * rng.normal(size=length)
            w = np.stack([z, 0.01 * rng.normal(size=length), 0.01 * rng.normal(size=length)]).astype(np.float32)
            if i in bad_rows:
                w[0, 5] = np.nan
            writer.add(w, {"trace_p_arrival_sample": p, "trace_polarity": int(signs[i]), "trace_snr_db": 40.0,
                           "path_distance_class": "local" if i % 2 == 0 else "teleseismic",
                           "station_code": f"S{i:02d}"})
    return signs


def _load_script(name):
    return load_file(f"scripts/{name}.py")


@pytest.fixture
def write_pulses():
    """``write_pulses(path, *, rate, n, length, p, seed, bad_rows) -> signs``: a three-component
    dataset of clean first-motion pulses (see :func:`_write_pulses`)."""
    return _write_pulses


@pytest.fixture
def load_script():
    """``load_script(name)``: ``scripts/<name>.py`` as a module."""
    return _load_script
