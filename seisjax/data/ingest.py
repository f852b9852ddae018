"""Real recordings -> a SeisBench-format dataset: `python -m seisjax data build`.

Inputs: any waveform files obspy reads (miniSEED, SAC, GSE2, ...; format autodetected), an optional
event catalog, optional station coordinates and optional phase picks (formats: see
``seisjax.data.sources``). SAC headers stand in for a catalog (``evla/evlo/evdp/mag/o``, event name
``kevnm``), for station coordinates (``stla/stlo/stel``) and for picks (``a`` = P and ``t0`` = S,
or any ``tN`` whose label ``ktN`` starts with P or S; labels naming a velocity model, such as
``P_iasp91``, are theoretical times and are ignored).

How the build streams (memory stays bounded by a few files and one record):

1. **Index** every file from its headers only (``obspy.read(headonly=True)``): one row per trace
   with file, id, start, end, sampling rate and any SAC header coordinates.
2. **Group** traces into *records*: one per (event, network, station, location, instrument), where the
   instrument is the channel code without its component letter (``BH`` of ``BHZ``). Traces of one
   station and instrument that touch in time (within ``join_tolerance_s``) form a cluster; a cluster
   is matched to the catalog events whose origin lies in ``[start - max_lag_s, end]``. Without
   windows the best single event is taken (one with a P pick at the station first, then the latest
   origin before the start, then the earliest); with ``window_before``/``window_after`` every
   candidate event gives a record (continuous data).
3. **Process** records one at a time, sorted by file so that each file is read once: checks
   (NaN/inf, components, sampling rates, gaps), station coordinates, distance and azimuths
   (``obspy.geodetics``), P and S (picks; else TauP first arrivals, flagged ``theoretical``), the
   window, SNR; then the record goes to the ``DatasetWriter`` or every trace of it to the rejection
   report.

Every trace read is either part of a written record or a row of ``rejected.csv`` (columns ``file``,
``trace_id``, ``reason``, ``detail``, ``starttime``); unreadable files are a row with an empty trace
id. Reasons: see ``REASONS``. ``build_report.json`` holds the counts.

Metadata columns of each record: ``source_id``, ``source_origin_time``, ``source_latitude_deg``,
``source_longitude_deg``, ``source_depth_km``, ``source_magnitude``, ``source_magnitude_type``,
``station_network_code``, ``station_code``, ``station_location_code``, ``station_latitude_deg``,
``station_longitude_deg``, ``station_elevation_m``, ``trace_channel`` (instrument, e.g. ``BH``),
``trace_components`` (the components holding real data, e.g. ``ZNE``, or ``Z`` when the others
were zero-filled), ``trace_start_time``, ``trace_sampling_rate_hz``, ``trace_npts``,
``path_ep_distance_km``, ``path_ep_distance_deg``, ``path_azimuth_deg`` (source to station),
``path_back_azimuth_deg``, ``trace_p_arrival_sample`` and ``trace_s_arrival_sample`` (fractional
sample index from the record start), ``trace_p_status``/``trace_s_status`` (``manual``,
``automatic``, ``picked`` or ``theoretical``; theoretical S only with ``theoretical_s``), the quality
columns of ``seisjax.data.quality`` (``trace_snr_<C>``, ``trace_snr_max``, ``trace_gaps``, ``trace_overlaps``, ``trace_gap_s``),
``trace_source_files`` and ``split``.
"""

from __future__ import annotations

import collections
import csv
import functools
import glob
import hashlib
import json
import math
import os
import time
import warnings
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from sys import intern

import h5py
import numpy as np
import pandas as pd
from obspy import Catalog, Inventory, Stream, UTCDateTime, read
from obspy.geodetics import gps2dist_azimuth, locations2degrees
from obspy.taup import TauPyModel
from tqdm import tqdm

from seisjax.data import quality
from seisjax.data.dataset import DatasetWriter
from seisjax.data.sources import (PickTable, StationTable, events_from_catalog, picks_from_catalog,
                                  read_catalog, read_picks, read_stations, stations_from_inventory)
from seisjax.errors import InputError

REASONS = {
    "unreadable_file": "obspy cannot read the file, or it is corrupt/truncated",
    "nan_or_inf": "the trace holds NaN or infinite samples",
    "gaps": "more gaps than max_gaps on a component",
    "overlaps": "more overlapping segments than max_overlaps on a component",
    "missing_component": "a configured component has no trace (and fill_missing is 'reject')",
    "unused_component": "the channel's component letter is not in the configured order",
    "inconsistent_sampling_rate": "components of one record have different sampling rates",
    "no_event": "no catalog event (or SAC header event) matches the trace's time",
    "no_station": "no station coordinates for the trace (stations file or SAC header)",
    "no_p_arrival": "no P pick and no theoretical P (TauP off or failed)",
    "too_short": "the record does not cover the window, the P arrival or the SNR windows",
    "low_snr": "max SNR over components <= snr_min",
    "error": "an unexpected error while processing the record (the message says which)",
}

_SAC_MAGTYPES = {52: "mb", 53: "Ms", 54: "ML", 55: "Mw", 56: "Md", 57: ""}
_MODEL_WORDS = ("iasp", "ak135", "prem", "taup", "theor", "synt")


# ----------------------------------------------------------------------------- configuration
@dataclass
class BuildConfig:
    """Everything ``build_dataset`` can be told. Times in seconds."""

    components: str = "ZNE"                 # order of the output components (e.g. "ZRT" for R/T/Z files)
    component_aliases: dict = field(default_factory=dict)   # channel letter -> component, e.g. {"1": "N"}
    fill_missing: str = "reject"            # "reject" a record with a missing component, or "zeros"
    snr_min: float | None = 1.5             # max SNR over components must exceed this (None: off)
    max_gaps: int | None = 0                # per component (None: off)
    max_overlaps: int | None = 0            # per component (None: off)
    noise_window: tuple = quality.DEFAULT_NOISE_WINDOW     # relative to P
    signal_window: tuple = quality.DEFAULT_SIGNAL_WINDOW   # relative to P
    window_before: float | None = None      # record starts at P - window_before (None: span start)
    window_after: float | None = None       # record ends at P + window_after (None: span end)
    min_duration_s: float = 0.0             # shorter records are 'too_short'
    theoretical_arrivals: bool = True       # TauP P when no pick
    theoretical_s: bool = False             # TauP S too when no S pick (about 25 ms per record)
    velocity_model: str = "iasp91"
    max_lag_s: float = 1800.0               # longest origin-to-data delay that still matches an event
    join_tolerance_s: float = 60.0          # segments closer than this belong to one record
    sac_reference_is_origin: bool = False   # SAC files without 'o': their reference time is the origin
    split: dict | None = field(default_factory=lambda: {"train": 0.8, "dev": 0.1, "test": 0.1})
    split_salt: str = ""                    # changes the event-hash split deterministically
    dtype: str = "float32"
    unit: str = "counts"
    overwrite: bool = False
    file_cache_size: int = 4                # parsed files kept in memory at once
    progress: bool = True

    def validate(self):
        if not self.components or len(set(self.components)) != len(self.components):
            raise InputError(f"components must be distinct letters, got {self.components!r}")
        if self.fill_missing not in ("reject", "zeros"):
            raise InputError(f"fill_missing must be 'reject' or 'zeros', got {self.fill_missing!r}")
        for name in ("noise_window", "signal_window"):
            w = getattr(self, name)
            if len(w) != 2 or not w[0] < w[1]:
                raise InputError(f"{name} must be (start, end) seconds relative to P with start < end, got {w}")
        for name in ("window_before", "window_after"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise InputError(f"{name} must be a finite number of seconds, got {v}")
        if self.window_before is not None and self.window_after is not None and \
                -self.window_before >= self.window_after:
            raise InputError("the window [P - window_before, P + window_after] is empty")
        if self.split is not None:
            total = sum(self.split.values())
            if not self.split or any(v < 0 for v in self.split.values()) or abs(total - 1) > 1e-6:
                raise InputError(f"split fractions must be >= 0 and sum to 1, got {self.split}")
        np.dtype(self.dtype)
        return self

    @property
    def windowed(self) -> bool:
        return self.window_before is not None or self.window_after is not None


def parse_split(text: str) -> dict | None:
    """``"train=0.8,dev=0.1,test=0.1"`` -> dict; ``"none"`` -> None."""
    if text.strip().lower() == "none":
        return None
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--split: expected NAME=FRACTION[,...] or 'none', got {text!r}") from None
        if not sep or not name.strip():
            raise InputError(f"--split: expected NAME=FRACTION[,...] or 'none', got {text!r}")
    return out


def assign_split(event_id: str, fractions: dict | None, salt: str = "") -> str | None:
    """Deterministic split of an event: a uniform number from the SHA-256 of its id picks the bin,
    so every record of one event lands in the same split and reruns agree."""
    if not fractions:
        return None
    u = int.from_bytes(hashlib.sha256((salt + str(event_id)).encode()).digest()[:8], "big") / 2.0**64
    edge = 0.0
    for name, fraction in fractions.items():
        edge += fraction
        if u < edge:
            return name
    return list(fractions)[-1]


# ----------------------------------------------------------------------------- report
@dataclass
class BuildReport:
    out_dir: str
    n_files: int = 0
    n_files_unreadable: int = 0
    n_traces: int = 0                 # traces indexed (readable file headers)
    n_traces_accepted: int = 0        # traces in at least one written record
    n_traces_rejected: int = 0        # traces in rejected.csv
    n_records: int = 0                # dataset rows written
    n_records_rejected: int = 0       # (event, station) candidates that were not written
    rejected_by_reason: dict = field(default_factory=dict)         # rows of rejected.csv
    records_rejected_by_reason: dict = field(default_factory=dict)
    seconds: float = 0.0

    def top_reasons(self, k: int = 5) -> str:
        items = sorted(self.rejected_by_reason.items(), key=lambda kv: -kv[1])[:k]
        return ", ".join(f"{reason}: {n}" for reason, n in items) or "none"

    def __str__(self) -> str:
        return (f"{self.n_records} records written to {self.out_dir} from {self.n_traces_accepted} of "
                f"{self.n_traces} traces in {self.n_files} files ({self.seconds:.1f} s); rejected: "
                f"{self.n_traces_rejected} traces and {self.n_files_unreadable} unreadable files "
                f"({self.top_reasons()}); see rejected.csv")


# ----------------------------------------------------------------------------- inputs
def expand_waveform_paths(patterns) -> list[str]:
    """Files named by paths, directories (their files, not recursing) and glob patterns, in order,
    without duplicates. A pattern that matches nothing is an error."""
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    files: dict[str, None] = {}
    for pattern in patterns:
        pattern = str(pattern)
        if os.path.isdir(pattern):
            found = sorted(str(p) for p in Path(pattern).iterdir() if p.is_file() and not p.name.startswith("."))
        elif os.path.isfile(pattern):
            found = [pattern]
        else:
            found = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not found:
            raise InputError(f"--waveforms {pattern}: no such file, or the pattern matches no file")
        files.update(dict.fromkeys(found))
    return list(files)


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def load_side_inputs(catalog=None, stations=None, picks=None):
    """(events DataFrame or None, StationTable, list of pick DataFrames) from paths or obspy objects
    (``Catalog``, ``Inventory``)."""
    event_frames, pick_frames, station_frames = [], [], []
    for item in _as_list(catalog):
        if isinstance(item, Catalog):
            event_frames.append(events_from_catalog(item))
            pick_frames.append(picks_from_catalog(item))
        else:
            ev, pk = read_catalog(item)
            event_frames.append(ev)
            pick_frames.append(pk)
    for item in _as_list(stations):
        station_frames.append(stations_from_inventory(item) if isinstance(item, Inventory)
                              else read_stations(item))
    for item in _as_list(picks):
        pick_frames.append(picks_from_catalog(item) if isinstance(item, Catalog) else read_picks(item))
    events = None
    if event_frames:
        events = pd.concat(event_frames, ignore_index=True).drop_duplicates("event_id", ignore_index=True)
    return events, StationTable(station_frames), pick_frames


# ----------------------------------------------------------------------------- index
_INDEX_COLUMNS = ["file_id", "pos", "network", "station", "location", "channel", "instrument", "component",
                  "start", "end", "sampling_rate", "npts", "sac_event_id", "sac_origin", "sac_evla", "sac_evlo",
                  "sac_evdp", "sac_mag", "sac_magtype", "sac_stla", "sac_stlo", "sac_stel", "sac_p",
                  "sac_s"]


def _corruption_warning(caught) -> str | None:
    for w in caught:
        text = str(w.message)
        if any(word in text.lower() for word in ("corrupt", "not enough", "truncat", "invalid")) or \
                "mseed" in w.category.__name__.lower():
            return text
    return None


def _read(path: str, headonly: bool):
    """obspy.read with warnings that mean 'corrupt file' turned into errors."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = read(path, headonly=headonly)
    problem = _corruption_warning(caught)
    if problem:
        raise ValueError(f"corrupt: {problem}")
    if len(stream) == 0:
        raise ValueError("no traces in file")
    return stream


def _sac_fields(stats, reference_is_origin: bool = False) -> tuple:
    """Event, station and pick information of a SAC header (NaN where absent). Without an origin
    time ``o`` the header names no event, unless ``reference_is_origin`` (files whose reference time
    is the origin, as MTUQ writes them)."""
    sac = stats.get("sac")
    nan = math.nan
    if not sac:
        return ("", nan, nan, nan, nan, nan, "", nan, nan, nan, nan, nan)
    reference = stats.starttime.timestamp - float(sac.get("b", 0.0))
    origin = reference + float(sac["o"]) if "o" in sac else (reference if reference_is_origin else nan)
    has_event = "evla" in sac and "evlo" in sac and math.isfinite(origin)
    event_id = ""
    if has_event:
        event_id = str(sac.get("kevnm", "")).strip()
        if not event_id or event_id == "-12345":
            event_id = UTCDateTime(origin).strftime("%Y%m%dT%H%M%S.%f")[:-4]
    depth = float(sac.get("evdp", nan))
    if depth > 1000.0:  # old SAC files give depth in metres
        depth /= 1000.0
    p_time = s_time = nan
    for key in ("a", "t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"):
        if key not in sac:
            continue
        label = str(sac.get("k" + key, "")).strip()
        if any(word in label.lower() for word in _MODEL_WORDS):
            continue  # a theoretical time; TauP gives ours
        phase = label[:1].upper() if label[:1].upper() in ("P", "S") else {"a": "P", "t0": "S"}.get(key, "")
        t = reference + float(sac[key])
        if phase == "P" and math.isnan(p_time):
            p_time = t
        elif phase == "S" and math.isnan(s_time):
            s_time = t
    return (event_id, origin if has_event else nan,
            float(sac["evla"]) if has_event else nan, float(sac["evlo"]) if has_event else nan,
            depth if has_event else nan, float(sac.get("mag", nan)),
            _SAC_MAGTYPES.get(int(sac.get("imagtyp", 57)), ""),
            float(sac.get("stla", nan)), float(sac.get("stlo", nan)), float(sac.get("stel", 0.0)),
            p_time, s_time)


def index_waveforms(files: list[str], progress: bool = False, sac_reference_is_origin: bool = False):
    """Header index of every trace: (DataFrame with ``_INDEX_COLUMNS``, list of (file, detail) for
    files obspy cannot read)."""
    # typed arrays for numbers: a Python float in a list costs 32 bytes, here 8
    columns = {name: [] if name in _TEXT_COLUMNS else array("q" if name in ("file_id", "pos", "npts") else "d")
               for name in _INDEX_COLUMNS}
    unreadable = []
    for file_id, path in enumerate(tqdm(files, desc="index", unit="file", disable=not progress)):
        try:
            stream = _read(path, headonly=True)
        except Exception as err:
            unreadable.append((path, f"{type(err).__name__}: {err}"))
            continue
        for pos, tr in enumerate(stream):
            s = tr.stats
            sac = _sac_fields(s, sac_reference_is_origin)
            # interned codes: 100,000 traces share a few hundred strings instead of holding copies
            values = (file_id, pos, intern(s.network), intern(s.station), intern(s.location), intern(s.channel),
                      intern(s.channel[:-1]), intern(s.channel[-1:].upper()), s.starttime.timestamp,
                      s.endtime.timestamp, float(s.sampling_rate), int(s.npts), intern(sac[0]), *sac[1:6],
                      intern(sac[6]), *sac[7:])
            for name, value in zip(_INDEX_COLUMNS, values):
                columns[name].append(value)
    index = pd.DataFrame({name: pd.Series(values, dtype=object) if name in _TEXT_COLUMNS else np.asarray(values)
                          for name, values in columns.items()})
    return index, unreadable


_TEXT_COLUMNS = ("network", "station", "location", "channel", "instrument", "component", "sac_event_id",
                 "sac_magtype")
_Row = collections.namedtuple("_Row", _INDEX_COLUMNS)


class _IndexRows:
    """Row ``r`` of the index as a namedtuple, built on demand from numpy columns (a list of 100,000
    tuples would cost far more memory than the columns)."""

    def __init__(self, index: pd.DataFrame):
        self._columns = [index[name].to_numpy() for name in _INDEX_COLUMNS]

    def __getitem__(self, r) -> _Row:
        return _Row(*(column[r] for column in self._columns))


# ----------------------------------------------------------------------------- grouping
def _clusters(index: pd.DataFrame, tolerance: float) -> np.ndarray:
    """Cluster id per trace: traces of one (net, sta, loc, instrument) that touch in time."""
    keys = ["network", "station", "location", "instrument"]
    order = index.sort_values(keys + ["start"]).index
    sorted_idx = index.loc[order]
    same_key = (sorted_idx[keys] == sorted_idx[keys].shift()).all(axis=1).to_numpy()
    group = np.cumsum(~same_key)
    # latest end so far within the key; across a key boundary the value is unused (same_key is False)
    prev_end = pd.Series(sorted_idx["end"].to_numpy()).groupby(group).cummax().shift().to_numpy()
    with np.errstate(invalid="ignore"):
        new = ~same_key | (sorted_idx["start"].to_numpy() > prev_end + tolerance)
    cluster = np.empty(len(index), dtype=np.int64)
    cluster[order.to_numpy()] = np.cumsum(new) - 1
    return cluster


def _events_from_sac(index: pd.DataFrame) -> pd.DataFrame:
    rows = index[index.sac_event_id != ""].drop_duplicates("sac_event_id")
    return pd.DataFrame({"event_id": rows.sac_event_id, "origin_time": rows.sac_origin,
                         "latitude": rows.sac_evla, "longitude": rows.sac_evlo, "depth_km": rows.sac_evdp,
                         "magnitude": rows.sac_mag, "magnitude_type": rows.sac_magtype}).reset_index(drop=True)


def group_records(index: pd.DataFrame, events: pd.DataFrame, picks: PickTable, config: BuildConfig,
                  use_sac_events: bool):
    """(records: {(event_row, net, sta, loc, instrument): [index rows]}, no_event: index rows)."""
    cluster = _clusters(index, config.join_tolerance_s)
    order = np.argsort(events.origin_time.to_numpy(), kind="stable")
    origins = events.origin_time.to_numpy()[order]
    event_row_of = {eid: i for i, eid in enumerate(events.event_id)}
    records: dict[tuple, list[int]] = collections.defaultdict(list)
    no_event: list[int] = []
    starts, ends = index.start.to_numpy(), index.end.to_numpy()
    sac_ids = index.sac_event_id.to_numpy()
    rows = _IndexRows(index)
    by_cluster = np.argsort(cluster, kind="stable")
    for members in np.split(by_cluster, np.flatnonzero(np.diff(cluster[by_cluster])) + 1):
        members = members.tolist()
        first = rows[members[0]]
        key = (first.network, first.station, first.location, first.instrument)
        if use_sac_events:
            # one cluster of SAC files may hold several events when their windows overlap in time
            for r in members:
                if sac_ids[r]:
                    records[(event_row_of[sac_ids[r]], *key)].append(r)
                else:
                    no_event.append(r)
            continue
        start, end = starts[members].min(), ends[members].max()
        lo = np.searchsorted(origins, start - config.max_lag_s, side="left")
        hi = np.searchsorted(origins, end, side="right")
        candidates = order[lo:hi]
        if len(candidates) == 0:
            no_event.extend(members)
            continue
        if not config.windowed and len(candidates) > 1:
            candidates = [_best_event(candidates, events, picks, first, start, config)]
        for ev in candidates:
            records[(int(ev), *key)].extend(members)
    return records, no_event


def _best_event(candidates, events, picks, trace, start, config) -> int:
    origins = events.origin_time.to_numpy()

    def has_pick(ev):
        return picks.find("P", events.event_id.iat[ev], origins[ev], trace.network, trace.station,
                          trace.location, config.max_lag_s) is not None

    picked = [ev for ev in candidates if has_pick(ev)]
    pool = picked or list(candidates)
    before = [ev for ev in pool if origins[ev] <= start]
    if before:
        return max(before, key=lambda ev: origins[ev])
    return min(pool, key=lambda ev: origins[ev])


# ----------------------------------------------------------------------------- arrivals
@functools.lru_cache(maxsize=4)
def _taup_model(name: str):
    return TauPyModel(model=name)


_FIRST_PHASES = {"P": ("p", "P", "Pn", "Pg", "Pdiff"), "S": ("s", "S", "Sn", "Sg", "Sdiff")}


@functools.lru_cache(maxsize=65536)
def theoretical_arrival(phase: str, depth_km: float, distance_deg: float, model: str = "iasp91") -> float | None:
    """Travel time (s) of the first P or S arrival from TauP, or None when TauP finds none."""
    try:
        arrivals = _taup_model(model).get_travel_times(
            source_depth_in_km=max(float(depth_km), 0.0), distance_in_degree=float(distance_deg),
            phase_list=_FIRST_PHASES[phase])
    except Exception:
        return None
    return min((a.time for a in arrivals), default=None)


# ----------------------------------------------------------------------------- processing
class _Reject(Exception):
    def __init__(self, reason: str, detail: str, rows=None):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.rows = reason, detail, rows


class _FileCache:
    """The last few fully read files (records are processed in file order, so this is enough)."""

    def __init__(self, files: list[str], size: int):
        self.files, self.size = files, max(int(size), 1)
        self._streams: collections.OrderedDict = collections.OrderedDict()
        self.failed: dict[int, str] = {}

    def get(self, file_id: int):
        if file_id in self.failed:
            raise _Reject("unreadable_file", self.failed[file_id])
        if file_id in self._streams:
            self._streams.move_to_end(file_id)
            return self._streams[file_id]
        try:
            stream = _read(self.files[file_id], headonly=False)
        except Exception as err:
            self.failed[file_id] = f"{type(err).__name__}: {err}"
            raise _Reject("unreadable_file", self.failed[file_id]) from None
        self._streams[file_id] = stream
        while len(self._streams) > self.size:
            self._streams.popitem(last=False)
        return stream


def _trace_for(cache: _FileCache, row) -> object:
    stream = cache.get(row.file_id)
    candidates = [stream[row.pos]] if row.pos < len(stream) else []
    tr = candidates[0] if candidates else None
    if tr is None or tr.id != f"{row.network}.{row.station}.{row.location}.{row.channel}" or \
            abs(tr.stats.starttime.timestamp - row.start) > 1e-3:
        matches = [t for t in stream if t.id == f"{row.network}.{row.station}.{row.location}.{row.channel}"
                   and abs(t.stats.starttime.timestamp - row.start) <= 1e-3]
        if not matches:
            raise _Reject("unreadable_file", "trace found in the header pass is missing on reading the data")
        tr = matches[0]
    if len(tr.data) != row.npts:
        raise _Reject("unreadable_file", f"corrupt: header says {row.npts} samples, data holds {len(tr.data)}")
    return tr


class _Builder:
    def __init__(self, files, index, events, stations, picks, config, out_dir):
        self.files, self.index, self.events = files, index, events
        self.stations, self.picks, self.config = stations, picks, config
        self.out_dir = Path(out_dir)
        self.cache = _FileCache(files, config.file_cache_size)
        self.filter = quality.QualityFilter(config.snr_min, config.max_gaps, config.max_overlaps)
        n = len(index)
        self.rows = _IndexRows(index)
        self.event_rows = list(events.itertuples(index=False))
        self.accepted = np.zeros(n, dtype=bool)
        self.reason: list[tuple[str, str] | None] = [None] * n
        self.record_reasons: collections.Counter = collections.Counter()
        self.writer = None
        self.sampling_rates: set[float] = set()
        self.n_records = 0

    # -- bookkeeping
    def reject(self, rows, reason: str, detail: str):
        for r in rows:
            if self.reason[r] is None:
                self.reason[r] = (reason, detail)

    def _open_writer(self, sampling_rate: float):
        self.writer = DatasetWriter(self.out_dir, component_order=self.config.components,
                                    sampling_rate=sampling_rate, dimension_order="CW",
                                    data_format_attrs={"unit": self.config.unit},
                                    overwrite=self.config.overwrite)

    # -- one record
    def process(self, key, rows: list[int]):
        try:
            waveform, metadata, used = self._record(key, rows)
        except _Reject as rej:
            self.record_reasons[rej.reason] += 1
            self.reject(rej.rows if rej.rows is not None else rows, rej.reason, rej.detail)
            if rej.rows is not None:  # trace-level problem: the rest of the record is rejected with it
                self.reject(rows, rej.reason, f"another trace of this record: {rej.detail}")
            return
        except Exception as err:  # never let one record stop the build; report it instead
            self.record_reasons["error"] += 1
            self.reject(rows, "error", f"{type(err).__name__}: {err}")
            return
        if self.writer is None:
            self._open_writer(metadata["trace_sampling_rate_hz"])
        self.writer.add(waveform, metadata)
        self.sampling_rates.add(metadata["trace_sampling_rate_hz"])
        self.accepted[used] = True
        self.n_records += 1

    def _record(self, key, rows):
        cfg = self.config
        event_row, net, sta, loc, inst = key
        idx = self.rows
        # components: letters outside the configured order are not used
        comp_of = {r: cfg.component_aliases.get(idx[r].component, idx[r].component) for r in rows}
        unused = [r for r in rows if comp_of[r] not in cfg.components]
        if unused:
            self.reject(unused, "unused_component",
                        f"component {comp_of[unused[0]]!r} is not in the configured order {cfg.components!r}")
        rows = [r for r in rows if r not in set(unused)]
        if not rows:
            raise _Reject("unused_component", "no trace with a configured component", rows=[])
        traces = {}
        for r in rows:
            row = idx[r]
            try:
                tr = _trace_for(self.cache, row)
            except _Reject as rej:
                raise _Reject(rej.reason, f"{self.files[row.file_id]}: {rej.detail}", rows=[r]) from None
            if not np.isfinite(tr.data).all():
                bad = int((~np.isfinite(tr.data)).sum())
                raise _Reject("nan_or_inf", f"{tr.id} has {bad} NaN/inf sample(s)", rows=[r])
            traces[r] = tr
        by_comp = collections.defaultdict(list)
        for r in rows:
            by_comp[comp_of[r]].append(r)
        present = [c for c in cfg.components if c in by_comp]
        missing = [c for c in cfg.components if c not in by_comp]
        if missing and cfg.fill_missing == "reject":
            raise _Reject("missing_component", f"{net}.{sta}.{loc}.{inst}?: has {''.join(present)}, "
                                               f"missing {''.join(missing)} of {cfg.components}")
        rates = sorted({float(traces[r].stats.sampling_rate) for r in rows})
        if rates[-1] - rates[0] > 1e-6 * rates[-1]:
            raise _Reject("inconsistent_sampling_rate",
                          f"{net}.{sta}.{loc}.{inst}?: " + ", ".join(
                              f"{traces[r].stats.channel} {traces[r].stats.sampling_rate:g} Hz" for r in rows))
        sr = rates[0]
        streams = {c: Stream([traces[r] for r in by_comp[c]]) for c in present}
        stats = {c: quality.gap_stats(s) for c, s in streams.items()}
        problem = self.filter.check_gaps(stats)
        if problem:
            raise _Reject(*problem)
        merged = {}
        for c, s in streams.items():
            s = s.copy() if len(s) > 1 else s
            if len(s) > 1:
                s.merge(method=1, fill_value=0)
            merged[c] = s[0]
        # event, station, geometry
        ev = self.event_rows[event_row]
        first = traces[by_comp[present[0]][0]]
        coords = self.stations.lookup(net, sta, loc, first.stats.channel, first.stats.starttime.timestamp) \
            if len(self.stations) else None
        if coords is None:
            sac_rows = [idx[r] for r in rows if math.isfinite(idx[r].sac_stla) and math.isfinite(idx[r].sac_stlo)]
            if sac_rows:
                coords = (float(sac_rows[0].sac_stla), float(sac_rows[0].sac_stlo), float(sac_rows[0].sac_stel))
        if coords is None:
            raise _Reject("no_station", f"{net}.{sta}.{loc}: not in the stations file(s) and no SAC stla/stlo")
        stla, stlo, stel = coords
        dist_m, az, baz = gps2dist_azimuth(ev.latitude, ev.longitude, stla, stlo)
        dist_deg = locations2degrees(ev.latitude, ev.longitude, stla, stlo)
        arrivals = self._arrivals(ev, net, sta, loc, rows, dist_deg)
        p_time = arrivals["P"][0]
        waveform, record_start, n = self._cut(merged, p_time, sr)
        p_sample = (p_time - record_start) * sr
        if not 0 <= p_sample < n:
            raise _Reject("too_short", f"P ({arrivals['P'][1]}) at {p_time - record_start:.2f} s is outside "
                                       f"the record of {n / sr:.2f} s")
        s_sample = math.nan
        if arrivals["S"] is not None:
            s_sample = (arrivals["S"][0] - record_start) * sr
            if not 0 <= s_sample < n:
                s_sample = math.nan
        # quality
        snr = quality.snr(waveform, p_sample, sr, noise_window=cfg.noise_window, signal_window=cfg.signal_window)
        snr[[i for i, c in enumerate(cfg.components) if c not in merged]] = np.nan
        problem = self.filter.check_snr(snr, cfg.components)
        if problem:
            raise _Reject(*problem)
        split = assign_split(ev.event_id, cfg.split, cfg.split_salt)
        metadata = {
            "source_id": ev.event_id,
            "source_origin_time": str(UTCDateTime(ev.origin_time)),
            "source_latitude_deg": float(ev.latitude), "source_longitude_deg": float(ev.longitude),
            "source_depth_km": float(ev.depth_km), "source_magnitude": _num(ev.magnitude),
            "source_magnitude_type": ev.magnitude_type or None,
            "station_network_code": net, "station_code": sta, "station_location_code": loc,
            "station_latitude_deg": stla, "station_longitude_deg": stlo, "station_elevation_m": stel,
            "trace_channel": inst, "trace_components": "".join(present),
            "trace_start_time": str(UTCDateTime(record_start)),
            "trace_sampling_rate_hz": sr, "trace_npts": n,
            "path_ep_distance_km": dist_m / 1000.0, "path_ep_distance_deg": dist_deg,
            "path_azimuth_deg": az, "path_back_azimuth_deg": baz,
            "trace_p_arrival_sample": round(p_sample, 3), "trace_p_status": arrivals["P"][1],
            "trace_s_arrival_sample": None if math.isnan(s_sample) else round(s_sample, 3),
            "trace_s_status": None if math.isnan(s_sample) else arrivals["S"][1],
            **{f"trace_snr_{c}": _num(v) for c, v in zip(cfg.components, snr)},
            "trace_snr_max": _num(np.nanmax(snr)) if np.isfinite(snr).any() else None,
            "trace_gaps": sum(s.gaps for s in stats.values()),
            "trace_overlaps": sum(s.overlaps for s in stats.values()),
            "trace_gap_s": sum(s.gap_seconds for s in stats.values()),
            "trace_source_files": ";".join(sorted({self.files[idx[r].file_id] for r in rows})),
        }
        if split is not None:
            metadata["split"] = split
        return waveform, metadata, rows

    def _arrivals(self, ev, net, sta, loc, rows, dist_deg) -> dict:
        """{'P': (time, status), 'S': (time, status) or None}: picks, then SAC header picks, then TauP."""
        cfg, idx = self.config, self.rows
        arrivals = {}
        for phase in ("P", "S"):
            found = self.picks.find(phase, ev.event_id, ev.origin_time, net, sta, loc, cfg.max_lag_s)
            if found is None:
                sac_times = [t for t in (idx[r].sac_p if phase == "P" else idx[r].sac_s for r in rows)
                             if math.isfinite(t)]
                if sac_times:
                    found = (float(sac_times[0]), "picked")
            wanted = cfg.theoretical_arrivals if phase == "P" else cfg.theoretical_s
            if found is None and wanted and math.isfinite(ev.depth_km):
                tt = theoretical_arrival(phase, round(float(ev.depth_km), 4), round(float(dist_deg), 6),
                                         cfg.velocity_model)
                if tt is not None:
                    found = (ev.origin_time + tt, "theoretical")
            arrivals[phase] = found
        if arrivals["P"] is None:
            raise _Reject("no_p_arrival", f"{net}.{sta}.{loc} event {ev.event_id}: no P pick"
                          + ("" if cfg.theoretical_arrivals else " (theoretical arrivals are off)"))
        return arrivals

    def _cut(self, merged: dict, p_time: float, sr: float):
        """(waveform (C, n) in the configured order, start time of its first sample, n): the common
        span of the components, or [P - before, P + after] inside it."""
        cfg = self.config
        span_start = max(tr.stats.starttime.timestamp for tr in merged.values())
        span_end = min(tr.stats.endtime.timestamp for tr in merged.values())
        half = 0.5 / sr
        w_start = span_start if cfg.window_before is None else p_time - cfg.window_before
        w_end = span_end if cfg.window_after is None else p_time + cfg.window_after
        if w_start < span_start - half or w_end > span_end + half or w_end <= w_start:
            raise _Reject("too_short", f"window {w_start - p_time:+.2f}..{w_end - p_time:+.2f} s around P "
                                       f"is not inside the common span {span_start - p_time:+.2f}.."
                                       f"{span_end - p_time:+.2f} s of the components")
        if cfg.window_before is not None and cfg.window_after is not None:
            n = int(round((cfg.window_before + cfg.window_after) * sr))
        else:
            n = int(round((w_end - w_start) * sr)) + 1  # components may be offset by < half a sample
        if n / sr < cfg.min_duration_s or n < 2:
            raise _Reject("too_short", f"{n} samples ({n / sr:.2f} s) < min_duration_s {cfg.min_duration_s}")
        waveform = np.zeros((len(cfg.components), n), dtype=cfg.dtype)
        record_start = None
        for ci, c in enumerate(cfg.components):
            tr = merged.get(c)
            if tr is None:
                continue  # zero-filled (fill_missing="zeros")
            i0 = int(round((w_start - tr.stats.starttime.timestamp) * sr))
            segment = tr.data[max(i0, 0):i0 + n]
            if i0 < 0 or len(segment) < n:
                raise _Reject("too_short", f"component {c} holds {len(segment)} of the {n} samples of the window")
            waveform[ci] = segment
            if record_start is None:
                record_start = tr.stats.starttime.timestamp + i0 / sr
        return waveform, record_start, n


def _num(value):
    value = float(value)
    return value if math.isfinite(value) else None


# ----------------------------------------------------------------------------- build
def build_dataset(waveforms, out_dir, *, catalog=None, stations=None, picks=None,
                  config: BuildConfig | None = None) -> BuildReport:
    """Build a SeisBench-format dataset in ``out_dir`` from waveform files.

    ``waveforms``: paths, directories or glob patterns. ``catalog``, ``stations``, ``picks``: a path,
    a list of paths, or obspy ``Catalog`` / ``Inventory`` objects (see ``seisjax.data.sources`` for
    the formats). Without a catalog, events come from SAC headers. Writes ``metadata.csv`` +
    ``waveforms.hdf5``, ``rejected.csv`` and ``build_report.json``; returns the report. Raises
    ``InputError`` when no record passes (the message gives the top rejection reasons).
    """
    config = (config or BuildConfig()).validate()
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if not config.overwrite and ((out_dir / "metadata.csv").exists() or (out_dir / "waveforms.hdf5").exists()):
        raise InputError(f"{out_dir}: a dataset exists there already (use --overwrite to replace it)")
    files = expand_waveform_paths(waveforms)
    events, station_table, pick_frames = load_side_inputs(catalog, stations, picks)
    index, unreadable = index_waveforms(files, progress=config.progress,
                                        sac_reference_is_origin=config.sac_reference_is_origin)
    use_sac_events = events is None
    if use_sac_events:
        events = _events_from_sac(index) if len(index) else pd.DataFrame(
            columns=["event_id", "origin_time", "latitude", "longitude", "depth_km", "magnitude", "magnitude_type"])
    pick_table = PickTable(pick_frames, known_event_ids=events.event_id)
    builder = _Builder(files, index, events, station_table, pick_table, config, out_dir)
    records, no_event = ({}, []) if len(index) == 0 else group_records(index, events, pick_table, config,
                                                                      use_sac_events)
    if use_sac_events:
        detail = ("no --catalog given and no event in the trace's SAC header (evla, evlo and origin time o; "
                  "see --sac-reference-is-origin)")
    else:
        detail = f"no catalog event with its origin within [start - {config.max_lag_s:g} s, end] of the trace"
    builder.reject(no_event, "no_event", detail)

    file_ids = index.file_id.to_numpy()
    keys = sorted(records, key=lambda k: (int(file_ids[records[k]].min()), k[1:], k[0]))
    try:
        for key in tqdm(keys, desc="build", unit="record", disable=not config.progress):
            builder.process(key, records[key])
    except BaseException:
        if builder.writer is not None:
            builder.writer.abort()
        raise
    if builder.writer is not None:
        builder.writer.close()
        if len(builder.sampling_rates) > 1:
            _drop_dataset_sampling_rate(out_dir)

    report = BuildReport(out_dir=str(out_dir), n_files=len(files), n_files_unreadable=len(unreadable),
                         n_traces=len(index), n_records=builder.n_records,
                         n_records_rejected=sum(builder.record_reasons.values()),
                         records_rejected_by_reason=dict(builder.record_reasons))
    report.n_traces_accepted = int(builder.accepted.sum())
    out_dir.mkdir(parents=True, exist_ok=True)
    reasons = _write_rejections(out_dir / "rejected.csv", files, index, unreadable, builder)
    report.n_traces_rejected = sum(reasons.values()) - len(unreadable)
    report.rejected_by_reason = dict(reasons)
    report.seconds = time.perf_counter() - started
    (out_dir / "build_report.json").write_text(json.dumps({**asdict(report), "config": _config_json(config)},
                                                          indent=2, default=str))
    if builder.n_records == 0:
        raise InputError(f"data build: no record passed: {report.n_traces} traces in {report.n_files} files, "
                         f"{report.n_traces_rejected} traces and {report.n_files_unreadable} files rejected "
                         f"(top reasons: {report.top_reasons()}); see {out_dir / 'rejected.csv'}")
    return report


def _config_json(config: BuildConfig) -> dict:
    return json.loads(json.dumps(asdict(config), default=str))


def _drop_dataset_sampling_rate(out_dir: Path):
    """Mixed sampling rates: the per-row column is the truth, so the dataset-wide value must go."""
    with h5py.File(out_dir / "waveforms.hdf5", "a") as f:
        if "data_format/sampling_rate" in f:
            del f["data_format/sampling_rate"]


def _write_rejections(path: Path, files, index, unreadable, builder) -> collections.Counter:
    counts = collections.Counter()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "trace_id", "reason", "detail", "starttime"])
        for file, detail in unreadable:
            writer.writerow([file, "", "unreadable_file", detail, ""])
            counts["unreadable_file"] += 1
        for r in np.flatnonzero(~builder.accepted):
            reason, detail = builder.reason[r] or ("error", "trace was indexed but not processed")
            row = builder.rows[r]
            writer.writerow([files[row.file_id], f"{row.network}.{row.station}.{row.location}.{row.channel}",
                             reason, detail, str(UTCDateTime(row.start))])
            counts[reason] += 1
    return counts
