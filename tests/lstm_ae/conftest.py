"""Helpers of the lstm_ae tests: the toy config and a small dataset of records with known problems."""

import numpy as np

from experiments import lstm_ae
from seisjax.data.dataset import DatasetWriter


def toy_config(**data):
    """``experiments/lstm_ae.py:toy`` with ``data`` keys replaced."""
    config = lstm_ae.get_config("toy")
    config.data.update(data)
    return config


def write_records_dataset(path, *, seed=0):
    """8 records: Z/N/E, 100 and 40 Hz, P and S picks, one NaN, one too short, two Z-only."""
    rng = np.random.default_rng(seed)
    rows = []
    with DatasetWriter(path, component_order="ZNE", sampling_rate=None) as writer:
        for i in range(8):
            rate = 100.0 if i % 2 == 0 else 40.0
            npts = int(rate * rng.uniform(8, 14))
            wave = rng.normal(size=(3, npts)).astype(np.float32)
            comps = "ZNE"
            if i in (5, 6):
                wave[1:] = 0.0
                comps = "Z"
            if i == 3:
                wave[0, 10] = np.nan
            p = rate * 2.0
            s = rate * (3.0 if i != 4 else 2.05)  # row 4: S right after P -> a record too short
            meta = dict(trace_sampling_rate_hz=rate, trace_p_arrival_sample=p, trace_s_arrival_sample=s,
                        trace_components=comps, split="train" if i < 6 else "dev",
                        path_distance_class="local" if i % 3 else "teleseismic", source_magnitude=1.0 + i / 2)
            writer.add(wave, meta)
            rows.append((rate, npts, p, s))
    return rows
