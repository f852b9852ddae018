"""SeisBench-format datasets: read lazily, write by streaming, select, split.

On disk a dataset is a folder with ``metadata.csv`` (one row per trace, SeisBench column names such
as ``source_magnitude``, ``trace_sampling_rate_hz``, ``trace_p_arrival_sample``, ``split``) and
``waveforms.hdf5`` with two groups:

- ``data/``: the waveforms. A trace named ``"bucket3$17,:3,:6000"`` is row 17 of the array
  ``data/bucket3``, cut to ``[:3, :6000]``; a trace with a plain name is the array ``data/<name>``.
- ``data_format/``: ``dimension_order`` (``"CW"``: components x samples, or ``"WC"``),
  ``component_order`` (e.g. ``"ZNE"``), ``sampling_rate`` and free-form entries (``unit``, ...).

A chunked dataset has ``metadata<C>.csv`` and ``waveforms<C>.hdf5`` per chunk ``C``, listed one per
line in the file ``chunks``. These are the rules SeisBench itself follows, so datasets move both ways.

Reading never loads the whole HDF5 file: traces are read on demand, a batch at a time, grouped by
bucket so that a batch costs one HDF5 read per bucket. Waveforms come back as ``(C, W)`` whatever
the stored dimension order.
"""

from __future__ import annotations

import csv
import json
import numbers
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from seisjax.errors import InputError

__all__ = ["Dataset", "DatasetWriter", "describe", "format_summary", "is_stead_folder", "trace_names"]

_FORMAT_KEYS = ("dimension_order", "component_order", "sampling_rate")
_TRACE_NAME = re.compile(r"^(?P<bucket>[^$]+)\$(?P<index>\d+)(?P<slices>(,[^,]*)*)$")


def _parse_slice(text: str, where: str) -> slice:
    parts = text.split(":")
    if len(parts) > 3:
        raise InputError(f"{where}: bad slice {text!r} in trace name")
    try:
        values = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise InputError(f"{where}: bad slice {text!r} in trace name") from None
    if len(values) == 1:  # a bare index keeps the axis, like SeisBench's own reader
        return slice(values[0], values[0] + 1)
    return slice(*values)


def parse_trace_name(name: str, where: str = "trace") -> tuple[str, int | None, tuple[slice, ...]]:
    """``"bucket0$12,:3,:1200"`` -> ``("bucket0", 12, (slice(None, 3), slice(None, 1200)))``;
    a plain name -> ``(name, None, ())``."""
    match = _TRACE_NAME.match(name)
    if match is None:
        return name, None, ()
    slices = tuple(_parse_slice(s, where) for s in match["slices"].split(",")[1:])
    return match["bucket"], int(match["index"]), slices


def _decode(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _chunk_names(path: Path) -> list[str]:
    """'' for a plain dataset, else the chunk names from ``chunks`` or the file names."""
    if (path / "metadata.csv").exists():
        return [""]
    chunks_file = path / "chunks"
    if chunks_file.exists():
        names = [line.strip() for line in chunks_file.read_text().splitlines() if line.strip()]
        if names:
            return names
    names = sorted(m.group(1) for f in path.glob("metadata*.csv")
                   if (m := re.fullmatch(r"metadata(.+)\.csv", f.name)))
    if names:
        return names
    raise FileNotFoundError(f"{path}: not a dataset (no metadata.csv, metadata<chunk>.csv or chunks file)")


class _Store:
    """The HDF5 files of a dataset, opened on first use and shared by all views of it."""

    def __init__(self, path: Path, chunks: list[str]):
        self.path = path
        self.chunks = chunks
        self._files: dict[str, h5py.File] = {}
        self.arrays: dict[tuple[str, str], h5py.Dataset] = {}
        self.formats = {c: self._read_format(c) for c in chunks}

    def waveform_file(self, chunk: str) -> Path:
        return self.path / f"waveforms{chunk}.hdf5"

    def file(self, chunk: str) -> h5py.File:
        handle = self._files.get(chunk)
        if handle is None:
            path = self.waveform_file(chunk)
            try:
                handle = h5py.File(path, "r")
            except FileNotFoundError:
                raise FileNotFoundError(f"{path}: waveform file missing") from None
            except OSError as err:
                raise InputError(f"{path}: cannot open as HDF5 ({err})") from None
            self._files[chunk] = handle
        return handle

    def _read_format(self, chunk: str) -> dict:
        fmt = {}
        group = self.file(chunk).get("data_format")
        if group is not None:
            for key in group:
                fmt[key] = _decode(group[key][()])
        fmt.setdefault("dimension_order", "CW")
        if fmt["dimension_order"] not in ("CW", "WC"):
            raise InputError(f"{self.waveform_file(chunk)}: dimension_order {fmt['dimension_order']!r} "
                             "is not supported (expected 'CW' or 'WC')")
        return fmt

    def close(self):
        self.arrays.clear()
        for handle in self._files.values():
            handle.close()
        self._files.clear()


def trace_names(metadata: pd.DataFrame) -> np.ndarray:
    """Each row's ``trace_name`` as a str (object array), or ``"row i"`` where the metadata has none:
    how messages and outputs name a record."""
    if "trace_name" in metadata:
        return metadata["trace_name"].astype(str).to_numpy()
    return np.array([f"row {i}" for i in range(len(metadata))], dtype=object)


def is_stead_folder(path: str | os.PathLike) -> bool:
    """True for a folder in STEAD's original layout (``p_arrival_sample``, ``receiver_code``
    columns; E, N, Z arrays under ``data/``), which is converted
    (:func:`seisjax.data.convert.convert_stead`) before it is read as a dataset."""
    meta = Path(path) / "metadata.csv"
    if not meta.is_file():
        return False
    with meta.open() as handle:
        header = handle.readline().strip().split(",")
    return "p_arrival_sample" in header and "receiver_code" in header and "trace_p_arrival_sample" not in header


class Dataset:
    """A SeisBench-format dataset (plain or chunked), read lazily.

    ``metadata`` is a ``pandas.DataFrame`` with one row per trace (a ``trace_chunk`` column is added
    for chunked datasets). ``get_waveforms`` reads traces on demand. ``select`` and ``split`` return
    views that share the open files.
    """

    def __init__(self, path: str | os.PathLike, *, chunks: Sequence[str] | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: dataset folder does not exist")
        if is_stead_folder(self.path):
            raise InputError(f"{self.path}: a folder in STEAD's original layout (no component order, STEAD's "
                             "column names); convert it first: python scripts/convert_stead.py "
                             f"{self.path} --out DIR (the spectral models' data.path converts it by itself)")
        names = list(chunks) if chunks is not None else _chunk_names(self.path)
        self._store = _Store(self.path, names)
        frames = []
        for chunk in names:
            meta_path = self.path / f"metadata{chunk}.csv"
            try:
                frame = pd.read_csv(meta_path, low_memory=False)
            except FileNotFoundError:
                raise FileNotFoundError(f"{meta_path}: metadata file missing") from None
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
                raise InputError(f"{meta_path}: unreadable metadata CSV ({err})") from None
            if "trace_name" not in frame.columns:
                raise InputError(f"{meta_path}: no 'trace_name' column; columns are {list(frame.columns)}")
            if chunk:
                frame["trace_chunk"] = chunk
            frames.append(frame)
        self._metadata = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        first = self._store.formats[names[0]]
        for chunk in names[1:]:
            other = self._store.formats[chunk]
            for key in ("component_order", "dimension_order"):
                if other.get(key) != first.get(key):
                    raise InputError(f"{self.path}: chunk {chunk!r} has {key} {other.get(key)!r}, "
                                     f"chunk {names[0]!r} has {first.get(key)!r}")

    @classmethod
    def _view(cls, parent: "Dataset", metadata: pd.DataFrame) -> "Dataset":
        view = cls.__new__(cls)
        view.path = parent.path
        view._store = parent._store
        view._metadata = metadata.reset_index(drop=True)
        return view

    # --------------------------------------------------------------------------- properties
    @property
    def metadata(self) -> pd.DataFrame:
        return self._metadata

    def __len__(self) -> int:
        return len(self._metadata)

    def __repr__(self) -> str:
        return f"Dataset({str(self.path)!r}, traces={len(self)}, components={self.component_order!r})"

    @property
    def data_format(self) -> dict:
        return dict(self._store.formats[self._store.chunks[0]])

    @property
    def component_order(self) -> str | None:
        return self.data_format.get("component_order")

    @property
    def sampling_rate(self) -> float | None:
        rate = self.data_format.get("sampling_rate")
        return None if rate is None else float(rate)

    def sampling_rates(self) -> np.ndarray:
        """Per-trace sampling rate: ``trace_sampling_rate_hz`` where given, else the file's."""
        default = np.nan if self.sampling_rate is None else self.sampling_rate
        if "trace_sampling_rate_hz" in self._metadata:
            return self._metadata["trace_sampling_rate_hz"].fillna(default).to_numpy(float)
        return np.full(len(self), default)

    # --------------------------------------------------------------------------- selection
    def select(self, selection) -> "Dataset":
        """A view of some rows: a boolean mask, integer indices, or a ``DataFrame.query`` string
        (``"source_magnitude > 2 and split == 'train'"``)."""
        meta = self._metadata
        if isinstance(selection, str):
            try:
                return Dataset._view(self, meta.query(selection))
            except Exception as err:  # pandas raises many kinds for a bad expression
                raise InputError(f"bad selection {selection!r}: {err}") from None
        selection = np.asarray(selection)
        if selection.dtype == bool:
            if selection.shape != (len(meta),):
                raise InputError(f"selection mask has shape {selection.shape}, dataset has {len(meta)} traces")
            return Dataset._view(self, meta[selection])
        if selection.size and (selection.min() < -len(meta) or selection.max() >= len(meta)):
            raise InputError(f"selection index out of range for {len(meta)} traces")
        return Dataset._view(self, meta.iloc[selection.astype(int)])

    def split(self, name: str) -> "Dataset":
        """The rows whose ``split`` column equals ``name`` (``train``, ``dev``, ``test``)."""
        if "split" not in self._metadata:
            raise InputError(f"{self.path}: no 'split' column in the metadata")
        return self.select((self._metadata["split"] == name).to_numpy())

    def train(self) -> "Dataset":
        return self.split("train")

    def dev(self) -> "Dataset":
        return self.split("dev")

    def test(self) -> "Dataset":
        return self.split("test")

    # --------------------------------------------------------------------------- waveforms
    def _locate(self, row: int) -> tuple[str, str, int | None, tuple[slice, ...]]:
        locations = self.__dict__.get("_locations")
        if locations is None:  # parsed once per dataset or view: a per-row pandas lookup costs ~0.5 ms
            names = self._metadata["trace_name"].astype(str).tolist()
            chunks = (self._metadata["trace_chunk"].astype(str).tolist() if "trace_chunk" in self._metadata
                      else [self._store.chunks[0]] * len(names))
            locations = self._locations = [
                (chunk, *parse_trace_name(name, where=f"{self.path} row {i}"))
                for i, (chunk, name) in enumerate(zip(chunks, names))]
        return locations[row]

    def _array(self, chunk: str, bucket: str, row: int) -> h5py.Dataset:
        arrays = self._store.arrays
        array = arrays.get((chunk, bucket))
        if array is None:
            try:
                array = arrays[(chunk, bucket)] = self._store.file(chunk)["data"][bucket]
            except KeyError:
                name = self._metadata["trace_name"].iat[row]
                raise InputError(f"{self._store.waveform_file(chunk)}: trace {name!r} (row {row}): "
                                 f"no array data/{bucket}") from None
        return array

    def _to_cw(self, chunk: str, waveform: np.ndarray) -> np.ndarray:
        if self._store.formats[chunk]["dimension_order"] == "WC":
            return np.ascontiguousarray(waveform.T)
        return waveform

    def get_waveforms(self, index, *, pad: bool = True):
        """One trace ``(C, W)`` for an integer; for a sequence, ``(B, C, W)`` zero-padded to the
        longest trace (``pad=False`` gives a list). Reads are grouped per bucket."""
        if isinstance(index, numbers.Integral):
            return self._read([int(index)])[0]
        rows = [int(i) for i in np.asarray(index).ravel()]
        traces = self._read(rows)
        if not pad:
            return traces
        if not traces:
            return np.zeros((0, 0, 0))
        n_comp = max(t.shape[0] for t in traces)
        n_samp = max(t.shape[1] for t in traces)
        if all(t.shape == (n_comp, n_samp) for t in traces):
            return np.stack(traces)
        out = np.zeros((len(traces), n_comp, n_samp), dtype=np.result_type(*traces))
        for k, trace in enumerate(traces):
            out[k, : trace.shape[0], : trace.shape[1]] = trace
        return out

    def _read(self, rows: list[int]) -> list[np.ndarray]:
        n = len(self)
        rows = [r + n if r < 0 else r for r in rows]
        if any(not 0 <= r < n for r in rows):
            raise IndexError(f"trace index out of range for {n} traces")
        out: list[np.ndarray | None] = [None] * len(rows)
        groups: dict[tuple[str, str], list[tuple[int, int, tuple[slice, ...]]]] = {}
        for pos, row in enumerate(rows):
            chunk, bucket, index, slices = self._locate(row)
            if index is None:
                out[pos] = self._to_cw(chunk, self._array(chunk, bucket, row)[()])
            else:
                groups.setdefault((chunk, bucket), []).append((pos, index, slices))
        for (chunk, bucket), members in groups.items():
            array = self._array(chunk, bucket, rows[members[0][0]])
            wanted = sorted({index for _, index, _ in members})
            if wanted[-1] >= array.shape[0]:
                raise InputError(f"{self._store.waveform_file(chunk)}: data/{bucket} has {array.shape[0]} rows, "
                                 f"metadata asks for row {wanted[-1]}")
            # One slice per run of consecutive rows: h5py's list indexing is far slower than slicing.
            runs = np.split(np.asarray(wanted), np.flatnonzero(np.diff(wanted) != 1) + 1)
            block = np.concatenate([array[run[0]: run[-1] + 1] for run in runs])
            where = {index: k for k, index in enumerate(wanted)}
            for pos, index, slices in members:
                out[pos] = self._to_cw(chunk, block[where[index]][slices])
        return out  # type: ignore[return-value]

    def __getitem__(self, index):
        return self.get_waveforms(index)

    # --------------------------------------------------------------------------- lifetime
    def close(self):
        self._store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __getstate__(self):
        # h5py handles do not pickle; a worker process reopens the files on first read.
        state = self.__dict__.copy()
        store = _Store.__new__(_Store)
        store.__dict__.update(self._store.__dict__, _files={}, arrays={})
        state["_store"] = store
        return state


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)  # timestamps (obspy UTCDateTime, datetime) keep their ISO text


class DatasetWriter:
    """Writes a SeisBench-format dataset one trace at a time, in bounded memory.

    Traces with the same number of components and dtype, and lengths within a factor of
    ``2**(1/4)`` of each other, share a bucket array of up to ``bucket_size`` rows, zero-padded to
    its longest trace (the slice in each ``trace_name`` gives the trace's own length). So the number
    of open buckets stays small even when every record has its own length, and padding wastes at
    most a fifth. Traces wait in memory until ``flush_every`` of a bucket, or ``max_pending_bytes``
    over all buckets, are pending. Rows of metadata go to a temporary JSON-lines file and become
    ``metadata.csv`` (with the union of all columns) on ``close``. ``chunk="0"`` writes
    ``metadata0.csv`` + ``waveforms0.hdf5`` and lists the chunk in ``chunks``.
    """

    def __init__(self, path: str | os.PathLike, *, component_order: str = "ZNE",
                 sampling_rate: float | None = None, dimension_order: str = "CW",
                 data_format_attrs: Mapping[str, object] | None = None, bucket_size: int = 1024,
                 chunk: str | None = None, overwrite: bool = False, flush_every: int = 64,
                 max_pending_bytes: int = 32 * 2**20):
        if dimension_order not in ("CW", "WC"):
            raise InputError(f"dimension_order must be 'CW' or 'WC', not {dimension_order!r}")
        self.path = Path(path)
        self.chunk = "" if chunk is None else str(chunk)
        self.component_order = component_order
        self.sampling_rate = sampling_rate
        self.dimension_order = dimension_order
        self.bucket_size = int(bucket_size)
        self.flush_every = int(flush_every)
        self.max_pending_bytes = int(max_pending_bytes)
        self._pending_bytes = 0
        self._sample_axis = 1 if dimension_order == "CW" else 0
        meta_path = self.path / f"metadata{self.chunk}.csv"
        wave_path = self.path / f"waveforms{self.chunk}.hdf5"
        if meta_path.exists() or wave_path.exists():
            if not overwrite:
                raise InputError(f"{self.path}: a dataset exists there already (pass overwrite=True "
                                 "or --overwrite to replace it)")
            for p in (meta_path, wave_path):
                p.unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)
        self._meta_path = meta_path
        self._rows_path = self.path / f".metadata{self.chunk}.jsonl.tmp"
        self._rows = open(self._rows_path, "w")
        self._columns: dict[str, None] = {"trace_name": None}
        self._h5 = h5py.File(wave_path, "w")
        self._data = self._h5.create_group("data")
        fmt = self._h5.create_group("data_format")
        fmt["dimension_order"] = dimension_order
        fmt["component_order"] = component_order
        if sampling_rate is not None:
            fmt["sampling_rate"] = sampling_rate
        for key, value in (data_format_attrs or {}).items():
            if key in _FORMAT_KEYS:
                raise InputError(f"data_format_attrs: {key!r} is set by its own argument")
            fmt[key] = value
        self._open_buckets: dict[tuple, dict] = {}
        self._n_buckets = 0
        self.n_traces = 0
        self._closed = False

    def _bucket_for(self, key: tuple, shape: tuple[int, int], dtype) -> dict:
        bucket = self._open_buckets.get(key)
        if bucket is None or bucket["rows"] + len(bucket["pending"]) >= self.bucket_size:
            if bucket is not None:
                self._flush(bucket)
            name = f"bucket{self._n_buckets}"
            self._n_buckets += 1
            maxshape = list(shape)
            maxshape[self._sample_axis] = None
            array = self._data.create_dataset(name, shape=(0, *shape), maxshape=(self.bucket_size, *maxshape),
                                              dtype=dtype, chunks=(1, *shape))
            bucket = {"name": name, "array": array, "rows": 0, "pending": []}
            self._open_buckets[key] = bucket
        width = bucket["array"].shape[1 + self._sample_axis]
        if shape[self._sample_axis] > width:
            self._flush(bucket)
            bucket["array"].resize(shape[self._sample_axis], axis=1 + self._sample_axis)
        return bucket

    def _flush(self, bucket: dict):
        pending = bucket["pending"]
        if not pending:
            return
        array = bucket["array"]
        start = bucket["rows"]
        block = np.zeros((len(pending), *array.shape[1:]), dtype=array.dtype)
        for k, trace in enumerate(pending):
            block[(k, *(slice(0, n) for n in trace.shape))] = trace
            self._pending_bytes -= trace.nbytes
        array.resize(start + len(pending), axis=0)
        array[start:] = block
        bucket["rows"] += len(pending)
        pending.clear()

    def _flush_all(self):
        for bucket in self._open_buckets.values():
            self._flush(bucket)

    def add(self, waveform: np.ndarray, metadata: Mapping[str, object] | None = None) -> str:
        """Append one trace ``(C, W)`` with its metadata (SeisBench column names); returns its
        ``trace_name``."""
        if self._closed:
            raise InputError(f"{self.path}: writer is closed")
        waveform = np.asarray(waveform)
        if waveform.ndim != 2:
            raise InputError(f"trace {self.n_traces}: waveform must be (components, samples), "
                             f"got shape {waveform.shape}")
        n_comp, n_samp = waveform.shape
        if self.component_order and n_comp != len(self.component_order):
            raise InputError(f"trace {self.n_traces}: {n_comp} components, but component_order is "
                             f"{self.component_order!r}")
        stored = waveform if self.dimension_order == "CW" else waveform.T
        length_class = int(np.ceil(4 * np.log2(max(n_samp, 1))))
        bucket = self._bucket_for((n_comp, length_class, stored.dtype.str), stored.shape, stored.dtype)
        index = bucket["rows"] + len(bucket["pending"])
        bucket["pending"].append(np.array(stored))
        self._pending_bytes += stored.nbytes
        if len(bucket["pending"]) >= self.flush_every:
            self._flush(bucket)
        elif self._pending_bytes > self.max_pending_bytes:
            self._flush_all()
        dims = ",".join(f":{d}" for d in stored.shape)
        name = f"{bucket['name']}${index},{dims}"
        row = {k: _jsonable(v) for k, v in (metadata or {}).items()}
        if "trace_name" in row:
            row["trace_name_original"] = row.pop("trace_name")
        row["trace_name"] = name
        if self.sampling_rate is not None:
            row.setdefault("trace_sampling_rate_hz", self.sampling_rate)
        for key in row:
            self._columns.setdefault(key, None)
        self._rows.write(json.dumps(row) + "\n")
        self.n_traces += 1
        return name

    def add_batch(self, waveforms: Iterable[np.ndarray], metadata: Iterable[Mapping[str, object]]) -> list[str]:
        return [self.add(w, m) for w, m in zip(waveforms, metadata, strict=True)]

    def close(self):
        if self._closed:
            return
        self._closed = True
        self._flush_all()
        self._h5.close()
        self._rows.close()
        columns = list(self._columns)
        with open(self._rows_path) as rows, open(self._meta_path, "w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=columns, restval="")
            writer.writeheader()
            for line in rows:
                writer.writerow({k: ("" if v is None else v) for k, v in json.loads(line).items()})
        self._rows_path.unlink()
        if self.chunk:
            chunks_file = self.path / "chunks"
            names = chunks_file.read_text().split() if chunks_file.exists() else []
            if self.chunk not in names:
                chunks_file.write_text("\n".join([*names, self.chunk]) + "\n")

    def abort(self):
        """Close and delete what this writer wrote (used when a build fails before finishing)."""
        self.close()
        self._meta_path.unlink(missing_ok=True)
        (self.path / f"waveforms{self.chunk}.hdf5").unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close()


def copy_dataset(src: Dataset, out: str | os.PathLike, **writer_kwargs) -> Path:
    """Write the rows of ``src`` (a dataset or a view) as a new plain dataset."""
    kwargs = dict(component_order=src.component_order or "", sampling_rate=src.sampling_rate)
    kwargs.update(writer_kwargs)
    with DatasetWriter(out, **kwargs) as writer:
        records = src.metadata.drop(columns=["trace_chunk"], errors="ignore").to_dict("records")
        for i, row in enumerate(records):
            row = {k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}
            row.pop("trace_name", None)
            writer.add(src.get_waveforms(i), row)
    return Path(out)


# ------------------------------------------------------------------------------- summary
def describe(path: str | os.PathLike, *, figure: str | os.PathLike | None = None, n_traces: int = 6,
             max_traces_for_ranges: int = 2000) -> dict:
    """A summary of a dataset (counts, components, rates, splits, value ranges) and an overview
    figure. Value ranges come from up to ``max_traces_for_ranges`` traces spread evenly over the
    dataset, so that the summary of a large dataset stays quick; the summary says how many."""
    ds = Dataset(path)
    meta = ds.metadata
    summary: dict = {
        "path": str(ds.path),
        "traces": len(ds),
        "chunks": [c for c in ds._store.chunks if c] or None,
        "component_order": ds.component_order,
        "dimension_order": ds.data_format.get("dimension_order"),
        "data_format": {k: v for k, v in ds.data_format.items() if k not in _FORMAT_KEYS},
    }
    rates = ds.sampling_rates()
    known = rates[~np.isnan(rates)]
    summary["sampling_rates_hz"] = {f"{r:g}": int(c) for r, c in zip(*np.unique(known, return_counts=True))}
    if len(known) < len(rates):
        summary["sampling_rates_hz"]["unknown"] = int(len(rates) - len(known))
    summary["splits"] = ({str(k): int(v) for k, v in meta["split"].fillna("none").value_counts().sort_index().items()}
                         if "split" in meta else None)
    if len(ds):
        rows = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), max_traces_for_ranges)).astype(int))
        lengths, mins, maxs, stds, bad = [], [], [], [], 0
        for start in range(0, len(rows), 256):
            for trace in ds.get_waveforms(rows[start:start + 256], pad=False):
                trace = trace.astype(np.float64)
                lengths.append(trace.shape[1])
                finite = np.isfinite(trace)
                bad += int((~finite).sum())
                trace = np.where(finite, trace, np.nan)
                mins.append(np.nanmin(trace, axis=1))
                maxs.append(np.nanmax(trace, axis=1))
                stds.append(np.nanstd(trace, axis=1))
        comps = ds.component_order or "".join(str(i) for i in range(len(mins[0])))
        width = min(len(m) for m in mins)
        mins, maxs, stds = (np.stack([m[:width] for m in a]) for a in (mins, maxs, stds))
        summary["samples_per_trace"] = {"min": int(min(lengths)), "max": int(max(lengths))}
        summary["value_ranges"] = {
            comps[c]: {"min": float(np.nanmin(mins[:, c])), "max": float(np.nanmax(maxs[:, c])),
                       "median_std": float(np.nanmedian(stds[:, c]))} for c in range(width)}
        summary["value_ranges_from_traces"] = int(len(rows))
        summary["non_finite_samples"] = bad
    columns = [c for c in ("source_magnitude", "path_ep_distance_km", "source_depth_km") if c in meta]
    summary["columns"] = list(meta.columns)
    summary["metadata_ranges"] = {c: {"min": float(meta[c].min()), "max": float(meta[c].max())}
                                  for c in columns if pd.api.types.is_numeric_dtype(meta[c])}
    if len(ds) and n_traces > 0:
        summary["figure"] = str(plot_traces(ds, figure, n_traces=n_traces))
    ds.close()
    return summary


def _default_figure_path(ds: Dataset) -> Path:
    # The working directory, not the dataset folder: datasets are often shared and read-only.
    return Path.cwd() / f"{ds.path.resolve().name}_overview.png"


def plot_traces(ds: Dataset, figure: str | os.PathLike | None = None, *, n_traces: int = 6) -> Path:
    """A figure of ``n_traces`` traces spread over the dataset, one panel per trace, components
    offset, P and S picks marked where the metadata has them."""
    out = Path(figure) if figure is not None else _default_figure_path(ds)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = np.unique(np.linspace(0, len(ds) - 1, min(n_traces, len(ds))).astype(int))
    rates = ds.sampling_rates()
    meta = ds.metadata
    comps = ds.component_order or ""
    fig = Figure(figsize=(10, 1.6 * len(rows) + 0.6))
    axes = fig.subplots(len(rows), 1, squeeze=False)
    for ax, row in zip(axes[:, 0], rows):
        trace = ds.get_waveforms(int(row)).astype(np.float64)
        rate = rates[row] if np.isfinite(rates[row]) else 1.0
        t = np.arange(trace.shape[1]) / rate
        scale = np.nanmax(np.abs(trace)) or 1.0
        for c in range(trace.shape[0]):
            label = comps[c] if c < len(comps) else str(c)
            ax.plot(t, trace[c] / scale - 2.2 * c, lw=0.5, label=label)
        for column, color in (("trace_p_arrival_sample", "tab:red"), ("trace_s_arrival_sample", "tab:blue")):
            if column in meta and pd.notna(meta[column].iat[row]):
                ax.axvline(float(meta[column].iat[row]) / rate, color=color, lw=0.8, ls="--")
        parts = [str(meta[c].iat[row]) for c in ("station_network_code", "station_code") if c in meta]
        if "source_magnitude" in meta and pd.notna(meta["source_magnitude"].iat[row]):
            parts.append(f"M{float(meta['source_magnitude'].iat[row]):.1f}")
        if "path_ep_distance_km" in meta and pd.notna(meta["path_ep_distance_km"].iat[row]):
            parts.append(f"{float(meta['path_ep_distance_km'].iat[row]):.0f} km")
        ax.set_title(f"row {row}: " + " ".join(parts), fontsize=8, loc="left")
        ax.set_yticks([])
        ax.legend(loc="upper right", fontsize=6, ncol=trace.shape[0])
    axes[-1, 0].set_xlabel("time (s)" if np.isfinite(rates).any() else "sample")
    fig.suptitle(f"{ds.path.name}: {len(ds)} traces (dashed: P red, S blue)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return out


def format_summary(summary: dict) -> str:
    """The summary as aligned text for the terminal."""
    lines = [f"dataset            {summary['path']}", f"traces             {summary['traces']}"]
    if summary.get("chunks"):
        lines.append(f"chunks             {', '.join(summary['chunks'])}")
    lines.append(f"components         {summary['component_order']} (stored {summary['dimension_order']})")
    rates = ", ".join(f"{r} Hz x {n}" for r, n in summary["sampling_rates_hz"].items())
    lines.append(f"sampling rates     {rates or 'unknown'}")
    if summary.get("samples_per_trace"):
        s = summary["samples_per_trace"]
        lines.append(f"samples per trace  {s['min']}" + (f" to {s['max']}" if s["max"] != s["min"] else ""))
    splits = summary.get("splits")
    lines.append("splits             " + (", ".join(f"{k} {v}" for k, v in splits.items()) if splits else "none"))
    for comp, r in (summary.get("value_ranges") or {}).items():
        lines.append(f"values {comp:<11} min {r['min']:.4g}, max {r['max']:.4g}, median std {r['median_std']:.4g}")
    if "value_ranges_from_traces" in summary and summary["value_ranges_from_traces"] < summary["traces"]:
        lines.append(f"                   (value ranges from {summary['value_ranges_from_traces']} traces "
                     "spread over the dataset)")
    if summary.get("non_finite_samples"):
        lines.append(f"WARNING            {summary['non_finite_samples']} NaN/inf samples")
    for col, r in summary.get("metadata_ranges", {}).items():
        lines.append(f"{col:<18} {r['min']:.4g} to {r['max']:.4g}")
    if summary.get("figure"):
        lines.append(f"figure             {summary['figure']}")
    return "\n".join(lines)
