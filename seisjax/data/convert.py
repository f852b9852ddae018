"""Converters from published dataset layouts to seisjax (SeisBench-format) datasets.

STEAD (Mousavi et al. 2019)
    ``waveforms.hdf5`` with one ``(6000, 3)`` array per trace under ``data/<trace_name>`` (full
    release) or ``earthquake/local/<trace_name>`` / ``non_earthquake/noise/<trace_name>`` (the
    EQTransformer sample), channels in **E, N, Z** order, plus ``metadata.csv`` with STEAD columns.
    Output: ``(3, 6000)`` in **Z, N, E** order (rows reversed; samples untouched, dtype kept) and
    SeisBench column names (``STEAD_COLUMNS``). ``snr_db`` becomes ``trace_snr_db`` (text list,
    reordered to Z, N, E) and the linear ``trace_snr_<C> = 10 ** (snr_db / 20)`` of
    ``seisjax.data.quality``.

PhaseNet (Zhu & Beroza 2019)
    ``waveform.csv`` (``fname, itp, its, channels``) and ``waveform_train/<fname>`` npz files with
    ``data`` ``(9001, 3)`` in E, N, Z column order, ``itp``/``its`` (P/S sample) and ``channels``
    (``"EHE_EHN_EHZ"`` or, for single-channel records, ``"EHZ"``; their E and N columns are zero).
    Output: ``(3, 9001)`` in Z, N, E order, dtype kept (float64). Single-channel records: with
    ``single_channel="zeros"`` (default) they are kept with zero N and E rows and
    ``trace_components = "Z"`` (``"ZNE"`` for complete records) so that a model can mask the
    missing rows; with ``"skip"`` they go to ``rejected.csv`` with reason ``single_channel``.

Both write ``rejected.csv`` (``file, trace_id, reason, detail``) for every source record not
converted (unreadable array, wrong shape, NaN/inf, inconsistent picks) and never stop on one bad
record.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from tqdm import tqdm

from seisjax.data.dataset import DatasetWriter
from seisjax.data.ingest import assign_split
from seisjax.errors import InputError

STEAD_COLUMNS = {
    "network_code": "station_network_code",
    "receiver_code": "station_code",
    "receiver_type": "trace_channel",
    "receiver_latitude": "station_latitude_deg",
    "receiver_longitude": "station_longitude_deg",
    "receiver_elevation_m": "station_elevation_m",
    "p_arrival_sample": "trace_p_arrival_sample",
    "p_status": "trace_p_status",
    "p_weight": "trace_p_weight",
    "p_travel_sec": "path_p_travel_s",
    "s_arrival_sample": "trace_s_arrival_sample",
    "s_status": "trace_s_status",
    "s_weight": "trace_s_weight",
    "source_id": "source_id",
    "source_origin_time": "source_origin_time",
    "source_origin_uncertainty_sec": "source_origin_uncertainty_s",
    "source_latitude": "source_latitude_deg",
    "source_longitude": "source_longitude_deg",
    "source_error_sec": "source_error_s",
    "source_gap_deg": "source_gap_deg",
    "source_horizontal_uncertainty_km": "source_horizontal_uncertainty_km",
    "source_depth_km": "source_depth_km",
    "source_depth_uncertainty_km": "source_depth_uncertainty_km",
    "source_magnitude": "source_magnitude",
    "source_magnitude_type": "source_magnitude_type",
    "source_magnitude_author": "source_magnitude_author",
    "source_mechanism_strike_dip_rake": "source_mechanism_strike_dip_rake",
    "source_distance_deg": "path_ep_distance_deg",
    "source_distance_km": "path_ep_distance_km",
    "back_azimuth_deg": "path_back_azimuth_deg",
    "coda_end_sample": "trace_coda_end_sample",
    "trace_start_time": "trace_start_time",
    "trace_category": "trace_category",
    "trace_name": "trace_name_original",
}
STEAD_TO_ZNE = [2, 1, 0]          # column index in the E, N, Z source for each output row Z, N, E
PHASENET_TO_ZNE = [2, 1, 0]


@dataclass
class ConversionReport:
    out_dir: str
    n_read: int = 0
    n_written: int = 0
    rejected_by_reason: dict = field(default_factory=dict)

    def __str__(self):
        reasons = ", ".join(f"{k}: {v}" for k, v in self.rejected_by_reason.items()) or "none"
        return (f"{self.n_written} of {self.n_read} records written to {self.out_dir}; "
                f"rejected: {reasons} (see rejected.csv)")


class _Rejections:
    def __init__(self, path: Path):
        self._file = open(path, "w", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(["file", "trace_id", "reason", "detail"])
        self.counts: dict[str, int] = {}

    def add(self, file, trace_id, reason, detail):
        self._csv.writerow([file, trace_id, reason, detail])
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def close(self):
        self._file.close()


def _clean(value):
    """Metadata cell -> JSON-able value; NaN and STEAD's 'None' text become empty."""
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    text = str(value)
    return None if text.strip() in ("", "None", "nan") else text


def _parse_snr_db(text) -> np.ndarray:
    """STEAD's '[56.8 55.4 47.4]' (E, N, Z) -> array, NaN when absent."""
    if not isinstance(text, str) or not text.strip("[] "):
        return np.full(3, np.nan)
    values = np.array(text.strip("[] ").replace(",", " ").split(), dtype=np.float64)
    return values if values.size == 3 else np.full(3, np.nan)


def _stead_array(h5, name: str):
    for group in ("data", "earthquake/local", "non_earthquake/noise"):
        key = f"{group}/{name}"
        if key in h5:
            return h5[key]
    raise KeyError(f"no array named {name!r} under data/, earthquake/local/ or non_earthquake/noise/")


def _sample_problem(array: np.ndarray) -> tuple[str, str] | None:
    """(reason, detail) when a converter's (N, 3) sample array cannot be taken, else None."""
    if array.ndim != 2 or array.shape[1] != 3:
        return "wrong_shape", f"shape {array.shape}, expected (N, 3)"
    if not np.isfinite(array).all():
        return "nan_or_inf", f"{int((~np.isfinite(array)).sum())} NaN/inf sample(s)"
    return None


def convert_stead(source, out_dir, *, hdf5=None, metadata=None, split: dict | None = None,
                  split_salt: str = "", overwrite: bool = False, progress: bool = True,
                  chunk_rows: int = 10000) -> ConversionReport:
    """STEAD folder (``waveforms.hdf5`` + ``metadata.csv``, or the paths given) -> dataset in
    ``out_dir`` with components Z, N, E. Streams: metadata in chunks, one trace at a time."""
    source = Path(source) if source is not None else None
    hdf5 = Path(hdf5) if hdf5 else source / "waveforms.hdf5"
    metadata = Path(metadata) if metadata else source / "metadata.csv"
    for p in (hdf5, metadata):
        if not p.is_file():
            raise InputError(f"STEAD input {p}: no such file")
    if split is None:
        split = {"train": 0.8, "dev": 0.1, "test": 0.1}
    out_dir = Path(out_dir)
    report = ConversionReport(str(out_dir))
    with h5py.File(hdf5, "r") as h5, DatasetWriter(out_dir, component_order="ZNE", sampling_rate=100.0,
                                                   dimension_order="CW", data_format_attrs={"unit": "counts"},
                                                   overwrite=overwrite) as writer:
        rejections = _Rejections(out_dir / "rejected.csv")
        try:
            chunks = pd.read_csv(metadata, chunksize=chunk_rows, low_memory=False)
            bar = tqdm(desc="STEAD", unit="trace", disable=not progress)
            for chunk in chunks:
                if "trace_name" not in chunk:
                    raise InputError(f"{metadata}: no trace_name column; is this STEAD metadata?")
                for rec in chunk.to_dict("records"):
                    report.n_read += 1
                    bar.update()
                    name = str(rec["trace_name"])
                    try:
                        array = _stead_array(h5, name)[()]
                    except Exception as err:
                        rejections.add(str(hdf5), name, "unreadable", f"{type(err).__name__}: {err}")
                        continue
                    problem = _sample_problem(array)
                    if problem:
                        rejections.add(str(hdf5), name, *problem)
                        continue
                    meta = {new: _clean(rec.get(old)) for old, new in STEAD_COLUMNS.items() if old in rec}
                    snr_db = _parse_snr_db(rec.get("snr_db"))[STEAD_TO_ZNE]
                    meta["trace_snr_db"] = "[" + " ".join(f"{v:g}" for v in snr_db) + "]"
                    for c, v in zip("ZNE", snr_db):
                        meta[f"trace_snr_{c}"] = None if math.isnan(v) else float(10 ** (v / 20))
                    meta.update(trace_sampling_rate_hz=100.0, trace_npts=int(array.shape[0]),
                                trace_components="ZNE")
                    group = assign_split(meta.get("source_id") or name, split, split_salt)
                    if group is not None:
                        meta["split"] = group
                    writer.add(np.ascontiguousarray(array[:, STEAD_TO_ZNE].T), meta)
                    report.n_written += 1
            bar.close()
        finally:
            rejections.close()
    report.rejected_by_reason = rejections.counts
    if report.n_written == 0:
        raise InputError(f"STEAD conversion wrote nothing: {report}")
    return report


def _phasenet_names(fname: str) -> tuple[str, str]:
    """'NC_MEM_2017100709282692.npz' -> ('NC', 'MEM')."""
    parts = Path(fname).stem.split("_")
    return (parts[0], parts[1]) if len(parts) >= 3 else ("", "")


def convert_phasenet(source, out_dir, *, csv_file=None, waveform_dir=None, single_channel: str = "zeros",
                     split: dict | None = None, split_salt: str = "", overwrite: bool = False,
                     progress: bool = True) -> ConversionReport:
    """PhaseNet folder (``waveform.csv`` + ``waveform_train/*.npz``) -> dataset with Z, N, E rows.

    The split is by file name (PhaseNet lists no event ids)."""
    if single_channel not in ("zeros", "skip"):
        raise InputError(f"single_channel must be 'zeros' or 'skip', got {single_channel!r}")
    source = Path(source) if source is not None else None
    csv_file = Path(csv_file) if csv_file else source / "waveform.csv"
    waveform_dir = Path(waveform_dir) if waveform_dir else source / "waveform_train"
    if not csv_file.is_file():
        raise InputError(f"PhaseNet list {csv_file}: no such file")
    if not waveform_dir.is_dir():
        raise InputError(f"PhaseNet waveform folder {waveform_dir}: no such folder")
    table = pd.read_csv(csv_file, dtype={"fname": str, "channels": str})
    missing = {"fname", "itp", "its"} - set(table.columns)
    if missing:
        raise InputError(f"{csv_file}: missing column(s) {sorted(missing)}")
    if split is None:
        split = {"train": 0.8, "dev": 0.1, "test": 0.1}
    out_dir = Path(out_dir)
    report = ConversionReport(str(out_dir))
    with DatasetWriter(out_dir, component_order="ZNE", sampling_rate=100.0, dimension_order="CW",
                       data_format_attrs={"unit": "counts"}, overwrite=overwrite) as writer:
        rejections = _Rejections(out_dir / "rejected.csv")
        try:
            for rec in tqdm(table.to_dict("records"), desc="PhaseNet", unit="trace", disable=not progress):
                report.n_read += 1
                fname = str(rec["fname"])
                path = waveform_dir / fname
                try:
                    with np.load(path) as npz:
                        data, itp, its = npz["data"], int(npz["itp"]), int(npz["its"])
                        channels = str(npz["channels"]) if "channels" in npz.files else str(rec.get("channels", ""))
                except Exception as err:
                    rejections.add(str(path), fname, "unreadable", f"{type(err).__name__}: {err}")
                    continue
                problem = _sample_problem(data)
                if problem:
                    rejections.add(str(path), fname, *problem)
                    continue
                if (itp, its) != (int(rec["itp"]), int(rec["its"])):
                    rejections.add(str(path), fname, "inconsistent_picks",
                                   f"npz itp/its {itp}/{its} but waveform.csv {rec['itp']}/{rec['its']}")
                    continue
                codes = [c for c in channels.split("_") if c]
                present = "".join(c for c in "ZNE" if any(code[-1:].upper() == c for code in codes))
                if not present:
                    rejections.add(str(path), fname, "unknown_channels", f"channels {channels!r}")
                    continue
                if present != "ZNE" and single_channel == "skip":
                    rejections.add(str(path), fname, "single_channel", f"only {channels}; single_channel='skip'")
                    continue
                waveform = np.ascontiguousarray(data[:, PHASENET_TO_ZNE].T)
                real = np.array([c in present for c in "ZNE"])
                if np.any(waveform[~real]):
                    rejections.add(str(path), fname, "inconsistent_channels",
                                   f"channels {channels!r} but data in a column of a missing component")
                    continue
                network, station = _phasenet_names(fname)
                meta = dict(trace_name_original=fname, station_network_code=network, station_code=station,
                            trace_channel=codes[0][:-1], trace_channels=channels, trace_components=present,
                            trace_p_arrival_sample=itp, trace_s_arrival_sample=its,
                            trace_sampling_rate_hz=100.0, trace_npts=int(data.shape[0]))
                group = assign_split(fname, split, split_salt)
                if group is not None:
                    meta["split"] = group
                writer.add(waveform, meta)
                report.n_written += 1
        finally:
            rejections.close()
    report.rejected_by_reason = rejections.counts
    if report.n_written == 0:
        raise InputError(f"PhaseNet conversion wrote nothing: {report}")
    return report
