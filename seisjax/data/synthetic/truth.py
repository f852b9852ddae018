"""``truth.h5``: everything needed to score a method on the synthetic data, written row by row as the
events are generated, and read back as tables.

- ``teleseismic-p``: ``events/`` (source parameters, ``stf`` with ``sampling_rate_hz`` and
  ``time_start_s`` attributes, integrating to ``moment_nm``; sub-event onsets, durations, moment
  fractions and shapes; directivity) and ``traces/`` (``green``: the Green's function g in 1/s on the
  trace's time axis, so that the noise-free record is ``dt * (STF_apparent conv g)`` delayed by
  ``time_error_s``; phase delays and amplitudes, ``stf_time_scale``, ``time_error_s``, ``snr``,
  ``polarity``, ...).
- ``local``: per event magnitude, moment, corner frequency, stress drop, location, mechanism,
  distance class; per trace station, polarity, radiation coefficients, travel times, SNR; per station
  the site response and instrument.

The file's attributes hold the scenario, seed, counts, the config as JSON and the stations that could
not be made (``skipped``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from seisjax.errors import InputError

__all__ = ["TruthWriter", "read_truth"]


class TruthWriter:
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

