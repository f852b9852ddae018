"""SymAE's data: (event, pixel) groups of windowed, normalised, polarity-aligned traces, the
datapoints drawn from them for training and evaluation, and the padded group arrays that
extraction reads.

``prepare_symae_groups(dataset, config)`` turns a SeisBench-format dataset into what SymAE trains on
and what coherent-information extraction reads, following the Earthquake-SymAE reference:

1. **Groups.** Per earthquake (``source_id``), every trace gets the HEALPix pixel (``nside`` 4) of
   its station's direction seen from the source (:func:`seisjax.data.grouping.assign_pixels`); an
   (event, pixel) group is used when it holds at least ``min_stations`` distinct stations (21: the
   reference's "more than 20"), counted after bad traces are set aside. ``group_by = "event"`` makes
   one group per event instead (pixel -1), for data sets with few stations. ``events_split``
   (e.g. ``"train"``) uses only the rows of that ``split``; by default every row is used, as in the
   reference, which splits stations rather than events.
2. **Windows.** Each trace's ``component`` (Z) is cut at its original rate around the pick
   (``pick_column``), linearly detrended, and resampled to ``sampling_rate`` (1 Hz) with
   ``scipy.signal.resample_poly``: a zero-phase polyphase FIR with a Kaiser window, i.e. an
   anti-aliasing low-pass before decimation (unlike obspy's Fourier resample, which does not
   filter). The cut carries a margin of at least 16 output samples on each side, so the filter's
   edge effects fall outside the window. The window holds ``window`` (200) samples, ``pre_p`` of
   them before the pick; it is multiplied by a Tukey taper (``taper_alpha`` 0.1,
   ``scipy.signal.windows.tukey``), cut to samples ``[trim_start:]`` (the reference's samples 9-200,
   ``nt = 192``), and normalised to zero mean and unit standard deviation over those ``nt`` samples
   (the reference normalises the 200 before the cut; the 8 dropped samples lie in the taper, so the
   two differ by a fraction of a percent, and ours gives the model exactly standardised inputs).
   The window starts at the original-rate sample nearest to its nominal time, so windows are placed
   to within half an original sample, not half an output sample.
3. **Polarity.** Every trace is multiplied by the sign of the peak of its cross-correlation with the
   event's reference trace (:func:`seisjax.ops.xcorr.xcorr_max`, ``absolute=True``, lags up to
   ``polarity_max_lag`` output samples). The reference trace is the event's trace with the highest
   SNR (column ``snr_column``; ``"auto"`` tries ``trace_snr_db``, ``trace_snr_<component>``,
   ``trace_snr_max``), or its first trace (lowest dataset row) when no SNR is known.
4. **Split.** The stations of each group are split ``1 - test_fraction`` / ``test_fraction`` (90/10)
   into train and test: a permutation of the sorted station codes drawn from
   ``numpy.random.default_rng([split_seed, crc32("<source_id>/<pixel>")])``, so a group's split
   depends only on the seed and the group, not on the rest of the data set. At least one station
   goes to test when ``test_fraction > 0`` and at least one stays in train.
5. **Bad traces** never stop the job and are never dropped silently: they are counted per reason
   (:data:`REJECTION_REASONS`) in ``report["rejected"]`` and listed in ``report["rejected_rows"]``.

Picks: windows go around ``pick_column``. On the synthetic ``teleseismic-p`` data that is
``trace_p_predicted_sample`` (the travel-time prediction), so the per-trace timing errors stay in
the windows for the shift network to find; on real data it is ``trace_p_arrival_sample``.

The result is cached (``cache_dir``) as ``symae_groups_<fingerprint>.npz``; the fingerprint covers the
dataset (:func:`seisjax.train.task.dataset_fingerprint`), the preparation settings and
:data:`PREP_VERSION`, so training and extraction share one preparation and a change of either
makes a new one.

Returned dict (``N`` traces, ``G`` groups, ``E`` events; traces are ordered by group, then train
before test, then station):

- ``trace_x (N, nt)`` float32, ``trace_row`` (row in ``dataset``), ``trace_group``, ``trace_is_test``,
  ``trace_station`` (``network.station``), ``trace_name``, ``trace_snr`` (NaN if unknown),
  ``trace_polarity_flip`` (+1/-1 applied), ``trace_window_start_s`` (time of model sample 0 after
  the trace's first sample), ``trace_pick_in_window_s`` (the pick's time in the model window: about
  ``(pre_p - trim_start) / sampling_rate``) and ``trace_p_in_window_s`` (the ``trace_p_arrival_sample``
  time in the model window, NaN without that column; on synthetic data it differs from the pick
  by the true timing error);
- ``group_source_id``, ``group_pixel``, ``group_event``, ``group_start`` (first trace),
  ``group_n_train``, ``group_n_test``, ``group_n_stations``;
- ``event_source_id``, ``event_reference_row``;
- padded per-group arrays for extraction (every trace of a group, train and test): ``traces (G, M,
  nt)``, ``mask (G, M)``, ``trace_ids (G, M)`` (dataset rows, -1 for padding), ``stations (G, M)``,
  ``pixels``, ``source_ids`` (= ``event_source_id``), ``n_stations``, ``sampling_rate`` and
  ``time_start`` (time of model sample 0 relative to the pick, in seconds: ``-(pre_p - trim_start) /
  sampling_rate``);
- ``fingerprint`` (str) and ``report`` (dict: settings, counts, rejections).

Datapoints. A training datapoint is one group with ``ntau`` traces drawn without replacement from its
train stations (:func:`draw_datapoints`); a group with fewer train traces than ``ntau`` gives all of
them, in random order, and the rest of the datapoint is padding with mask 0 (the model's pooling and
the loss ignore masked traces exactly, so no trace counts twice). An epoch visits every group
``draws_per_group`` times in the order of an :class:`~seisjax.data.batches.ArrayBatchIterator` over
group indices (shuffled per epoch, sharded over processes, checkpointable); the traces of batch ``k``
of epoch ``e`` are drawn from ``numpy.random.default_rng([seed, 0x5E15, e, k])`` over the global
batch, so a resumed run, or one on more processes, draws the same traces
(:class:`GroupDrawIterator`). Batches: ``{"x": (B, ntau, nt) float32, "mask": (B, ntau) float32,
"group": (B,) int32}``. Evaluation runs on the test stations: each group's test traces, in chunks of
at most ``ntau`` per datapoint (padded with mask 0), so every test trace is scored once
(:func:`eval_datapoints`).

Extraction reads every group at once as :class:`GroupArrays` (:func:`arrays_from_prepared`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.signal
from tqdm.auto import tqdm

from seisjax.data.batches import ArrayBatchIterator
from seisjax.data.grouping import COORDINATE_COLUMNS, assign_pixels
from seisjax.data.preprocess import detrend
from seisjax.errors import InputError
from seisjax.ops.xcorr import xcorr_max
from seisjax.train.task import dataset_fingerprint

__all__ = [
    "PREP_DEFAULTS",
    "PREP_VERSION",
    "REJECTION_REASONS",
    "GroupArrays",
    "GroupDrawIterator",
    "arrays_from_prepared",
    "cache_path",
    "draw_datapoints",
    "eval_datapoints",
    "padded_groups",
    "prep_fingerprint",
    "prep_settings",
    "prepare_symae_groups",
    "window_traces",
]

#: Bumped whenever the preparation's output changes for the same inputs (invalidates caches).
PREP_VERSION = 1

#: Preparation settings and their defaults (the reference's values); ``config`` may hold more keys.
PREP_DEFAULTS = {
    "component": "Z",
    "pick_column": "trace_p_arrival_sample",
    "sampling_rate": 1.0,
    "window": 200,
    "pre_p": 50,
    "trim_start": 8,
    "taper_alpha": 0.1,
    "group_by": "healpix",
    "nside": 4,
    "min_stations": 21,
    "test_fraction": 0.1,
    "split_seed": 0,
    "polarity_max_lag": 10,
    "snr_column": "auto",
    "events_split": "",
}

REJECTION_REASONS = {
    "no_event": "no source_id",
    "no_coordinates": "source or station coordinates missing (no HEALPix pixel)",
    "small_group": "in an (event, pixel) group with fewer than min_stations stations",
    "no_pick": "the pick column is empty",
    "no_sampling_rate": "no valid sampling rate",
    "too_short": "the trace does not cover the window",
    "nan_or_inf": "NaN or inf samples in the window",
    "zero_std": "the window is constant (zero standard deviation)",
    "small_group_after_rejection": "its group fell below min_stations once bad traces were set aside",
}

_MARGIN = 16          # output samples of padding on each side of the window (filter edge effects)
_READ_CHUNK = 1024    # traces read and processed at once (bounds memory)
_MAX_LISTED = 200     # rejected rows listed in the report
_DRAW_STREAM = 0x5E15  # the datapoint draws' own random stream (see GroupDrawIterator)


# ============================================================================ settings
def prep_settings(config: Mapping | None = None) -> dict:
    """The preparation settings: :data:`PREP_DEFAULTS` updated from ``config`` (a ConfigDict or
    mapping: ``config.data`` or a whole experiment config; other keys are ignored), type-checked."""
    settings = dict(PREP_DEFAULTS)
    if config is not None and "data" in config and not any(key in config for key in PREP_DEFAULTS):
        config = config["data"]   # a whole experiment config
    if config is not None:
        for key in PREP_DEFAULTS:
            if key in config and config[key] is not None:
                settings[key] = config[key]
    for key in ("window", "pre_p", "trim_start", "nside", "min_stations", "split_seed", "polarity_max_lag"):
        settings[key] = int(settings[key])
    for key in ("sampling_rate", "taper_alpha", "test_fraction"):
        settings[key] = float(settings[key])
    for key in ("component", "pick_column", "group_by", "snr_column", "events_split"):
        settings[key] = str(settings[key])
    problems = []
    if not settings["sampling_rate"] > 0:
        problems.append(f"sampling_rate must be > 0 (got {settings['sampling_rate']})")
    if not 0 <= settings["trim_start"] < settings["window"]:
        problems.append(f"need 0 <= trim_start < window (got {settings['trim_start']}, {settings['window']})")
    if not 0 <= settings["pre_p"] <= settings["window"]:
        problems.append(f"need 0 <= pre_p <= window (got {settings['pre_p']})")
    if not 0 <= settings["taper_alpha"] <= 1:
        problems.append(f"taper_alpha must be in [0, 1] (got {settings['taper_alpha']})")
    if not 0 <= settings["test_fraction"] < 1:
        problems.append(f"test_fraction must be in [0, 1) (got {settings['test_fraction']})")
    if settings["min_stations"] < 1:
        problems.append(f"min_stations must be >= 1 (got {settings['min_stations']})")
    if settings["group_by"] not in ("healpix", "event"):
        problems.append(f"group_by must be 'healpix' or 'event' (got {settings['group_by']!r})")
    if settings["polarity_max_lag"] < 0:
        problems.append(f"polarity_max_lag must be >= 0 (got {settings['polarity_max_lag']})")
    if problems:
        raise InputError("symae data settings: " + "; ".join(problems))
    return settings


def prep_fingerprint(dataset, settings: Mapping) -> str:
    """sha256 of the dataset (metadata, rows, sample traces), the settings and :data:`PREP_VERSION`."""
    digest = hashlib.sha256()
    digest.update(f"symae-prep-v{PREP_VERSION}|".encode())
    digest.update(json.dumps(dict(settings), sort_keys=True).encode())
    digest.update(dataset_fingerprint(dataset).encode())
    return digest.hexdigest()


def cache_path(cache_dir, fingerprint: str) -> Path:
    return Path(cache_dir) / f"symae_groups_{fingerprint[:16]}.npz"


# ============================================================================ windows
def _resample_ratio(rate: float, target: float) -> tuple[int, int]:
    """``(up, down)`` with ``rate * up / down == target`` (to 1e-6 relative)."""
    ratio = Fraction(target / rate).limit_denominator(100000)
    if ratio == 0 or abs(float(ratio) * rate - target) > 1e-6 * target:
        raise InputError(f"cannot resample {rate} Hz to {target} Hz by a rational factor")
    return ratio.numerator, ratio.denominator


def window_traces(traces: list[np.ndarray], picks: np.ndarray, rate: float, settings: Mapping
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut, resample, taper, trim and standardise the windows of traces sharing one sampling rate.

    ``traces``: 1-D arrays (their own lengths) at ``rate`` Hz; ``picks``: the pick of each, in
    samples of its trace. Returns ``(x (n, nt) float64, start_sample (n,), reason (n,) object)``:
    ``start_sample`` is the original-rate sample where the 200-sample window begins and ``reason``
    None for good traces, else a key of :data:`REJECTION_REASONS` (their rows of ``x`` are zeros).
    Vectorised over the traces: one detrend, one ``resample_poly``, one taper for the batch.
    """
    target = settings["sampling_rate"]
    window, pre_p, trim = settings["window"], settings["pre_p"], settings["trim_start"]
    up, down = _resample_ratio(rate, target)
    margin_out = up * math.ceil(_MARGIN / up)          # a multiple of up: an integer input margin
    margin_in = margin_out * down // up
    window_in = math.ceil(window * down / up)
    seg_len = window_in + 2 * margin_in
    n = len(traces)
    start = np.rint(np.asarray(picks, np.float64) - pre_p * rate / target).astype(np.int64)
    reason = np.full(n, None, dtype=object)
    segments = np.zeros((n, seg_len))
    partial = []   # segments whose margins reach beyond the trace
    for i, trace in enumerate(traces):
        s = start[i]
        if s < 0 or s + window_in > len(trace):
            reason[i] = "too_short"
            continue
        lo, hi = max(s - margin_in, 0), min(s + window_in + margin_in, len(trace))
        piece = np.asarray(trace[lo:hi], np.float64)
        if not np.isfinite(piece).all():
            reason[i] = "nan_or_inf"
            continue
        inside = slice(lo - (s - margin_in), hi - (s - margin_in))
        segments[i, inside] = piece
        if hi - lo < seg_len:
            partial.append((i, inside))
    whole = np.ones(n, bool)
    whole[[i for i, _ in partial]] = False
    segments[whole] = detrend(segments[whole], "linear", check_finite=False)
    for i, inside in partial:   # detrend the part inside the trace; the zero fill stays zero
        segments[i, inside] = detrend(segments[i, inside], "linear", check_finite=False)
    scale = np.abs(segments).max(axis=1)
    if up == down == 1:
        resampled = segments
    else:
        resampled = scipy.signal.resample_poly(segments, up, down, axis=1)
    cut = resampled[:, margin_out: margin_out + window]
    cut = cut * scipy.signal.windows.tukey(window, settings["taper_alpha"])
    x = cut[:, trim:]
    x = x - x.mean(axis=1, keepdims=True)
    std = x.std(axis=1)
    flat = (std <= 1e-10 * np.maximum(scale, np.finfo(np.float64).tiny)) | (scale == 0)
    reason[flat & pd.isna(reason)] = "zero_std"
    good = pd.isna(reason)
    x = np.where(good[:, None], x / np.where(good, std, 1.0)[:, None], 0.0)
    return x, start, reason


# ============================================================================ preparation
def _snr_values(meta: pd.DataFrame, settings: Mapping) -> tuple[np.ndarray, str | None]:
    column = settings["snr_column"]
    if column == "auto":
        candidates = ["trace_snr_db", f"trace_snr_{settings['component']}", "trace_snr_max"]
    elif column:
        candidates = [column]
    else:
        candidates = []
    for name in candidates:
        if name in meta.columns:
            return pd.to_numeric(meta[name], errors="coerce").to_numpy(np.float64), name
    if column not in ("auto", ""):
        raise InputError(f"symae data: snr_column {column!r} is not in the metadata")
    return np.full(len(meta), np.nan), None


def _stations(meta: pd.DataFrame) -> np.ndarray:
    """``network.station`` per row (as grouping.group_traces counts stations), else the row number."""
    present = [c for c in ("station_network_code", "station_code") if c in meta.columns]
    if not present:
        return np.array([f"row{i}" for i in range(len(meta))])
    out = meta[present[0]].fillna("").astype(str).to_numpy()
    for column in present[1:]:
        out = out + "." + meta[column].fillna("").astype(str).to_numpy()
    return out.astype(str)


def _pixels(meta: pd.DataFrame, settings: Mapping) -> np.ndarray:
    if settings["group_by"] == "event":
        return np.full(len(meta), -1, np.int64)
    if all(c in meta.columns for c in COORDINATE_COLUMNS):
        return assign_pixels(*(pd.to_numeric(meta[c], errors="coerce").to_numpy(np.float64)
                               for c in COORDINATE_COLUMNS), nside=settings["nside"])
    if "healpix_pixel" in meta.columns:  # datasets imported from Earthquake-SymAE HDF5 files
        values = pd.to_numeric(meta["healpix_pixel"], errors="coerce").to_numpy(np.float64)
        return np.where(np.isfinite(values), values, -2).astype(np.int64)
    missing = [c for c in COORDINATE_COLUMNS if c not in meta.columns]
    raise InputError(f"symae data: the metadata has neither the coordinate columns {missing} nor "
                     "a healpix_pixel column; use group_by='event' to make one group per event")


def _station_count(frame: pd.DataFrame) -> pd.Series:
    return frame.groupby(["event", "pixel"], sort=True)["station"].nunique()


def _split_group(stations: np.ndarray, key: str, settings: Mapping) -> np.ndarray:
    """Boolean ``is_test`` per distinct station of a group (``stations`` sorted, unique)."""
    n = len(stations)
    fraction = settings["test_fraction"]
    n_test = 0 if fraction <= 0 else min(max(1, round(fraction * n)), n - 1)
    rng = np.random.default_rng([settings["split_seed"], zlib.crc32(key.encode("utf-8"))])
    is_test = np.zeros(n, bool)
    is_test[rng.permutation(n)[:n_test]] = True
    return is_test


def prepare_symae_groups(dataset, config: Mapping | None = None, *, cache_dir=None,
                         progress: bool = False) -> dict:
    """SymAE groups of ``dataset`` (a :class:`~seisjax.data.dataset.Dataset` or view) with the
    settings in ``config`` (see :data:`PREP_DEFAULTS` and the module docstring for what happens and
    what comes back). With ``cache_dir``, a preparation with the same fingerprint is loaded from
    there, and a new one is written there. Raises InputError when no group survives."""
    settings = prep_settings(config)
    fingerprint = prep_fingerprint(dataset, settings)
    path = cache_path(cache_dir, fingerprint) if cache_dir is not None else None
    if path is not None and path.exists():
        flat = _load(path, fingerprint)
        if flat is not None:
            return _with_padded(flat, settings)
    flat = _prepare(dataset, settings, progress)
    flat["fingerprint"] = fingerprint
    flat["report"]["fingerprint"] = fingerprint
    if path is not None:
        _save(path, flat)
        flat["report"]["cache"] = str(path)
    return _with_padded(flat, settings)


def _prepare(dataset, settings: Mapping, progress: bool) -> dict:
    meta = dataset.metadata
    n_rows = len(meta)
    reason = np.full(n_rows, None, dtype=object)
    if "source_id" not in meta.columns:
        raise InputError(f"{dataset.path}: the metadata has no source_id column; SymAE groups the traces "
                         "of each earthquake")
    # events_split keeps the rows of one split; row numbers stay those of ``dataset``.
    in_scope = np.ones(n_rows, bool)
    if settings["events_split"]:
        if "split" not in meta.columns:
            raise InputError(f"{dataset.path}: data.events_split = {settings['events_split']!r} but the metadata "
                             "has no split column")
        in_scope = (meta["split"] == settings["events_split"]).to_numpy()
    events = meta["source_id"]
    reason[in_scope & events.isna().to_numpy()] = "no_event"
    pixels = _pixels(meta, settings)
    unplaced = (pixels < -1) | ((pixels == -1) & (settings["group_by"] == "healpix"))
    reason[in_scope & unplaced & pd.isna(reason)] = "no_coordinates"
    stations = _stations(meta)
    table = pd.DataFrame({"event": events.astype(str).to_numpy(), "pixel": pixels, "station": stations,
                          "row": np.arange(n_rows)})

    # Groups with enough stations before any trace is read (reading the others would be wasted).
    candidate = table[in_scope & pd.isna(reason)]
    counts = _station_count(candidate)
    big = counts[counts >= settings["min_stations"]].index
    in_big = pd.MultiIndex.from_frame(candidate[["event", "pixel"]]).isin(big)
    reason[candidate["row"].to_numpy()[~in_big]] = "small_group"
    rows = candidate["row"].to_numpy()[in_big]

    # Picks, sampling rates, then the windows themselves.
    pick_col = settings["pick_column"]
    if pick_col not in meta.columns:
        raise InputError(f"{dataset.path}: no {pick_col!r} column for the windows (data.pick_column); "
                         f"columns: {list(meta.columns)}")
    picks = pd.to_numeric(meta[pick_col], errors="coerce").to_numpy(np.float64)
    rates = dataset.sampling_rates()
    bad_pick = ~np.isfinite(picks[rows])
    reason[rows[bad_pick]] = "no_pick"
    rows = rows[~bad_pick]
    bad_rate = ~(np.isfinite(rates[rows]) & (rates[rows] > 0))
    reason[rows[bad_rate]] = "no_sampling_rate"
    rows = rows[~bad_rate]
    order = dataset.component_order
    component = settings["component"]
    if order:
        if component not in order:
            raise InputError(f"{dataset.path}: component {component!r} (data.component) is not in the "
                             f"dataset's component order {order!r}")
        channel = order.index(component)
    else:
        channel = 0

    nt = settings["window"] - settings["trim_start"]
    # Windows only for the rows read (not the whole dataset): slot[row] is the row's window.
    slot = np.full(n_rows, -1, np.int64)
    slot[rows] = np.arange(len(rows))
    windows = np.zeros((len(rows), nt), np.float32)
    start_s = np.full(n_rows, np.nan)
    done = np.zeros(n_rows, bool)
    chunks = [rows[i:i + _READ_CHUNK] for i in range(0, len(rows), _READ_CHUNK)]
    for chunk in tqdm(chunks, desc="symae windows", unit="chunk", disable=not progress):
        waveforms = dataset.get_waveforms(chunk, pad=False)
        for rate in np.unique(rates[chunk]):
            sel = np.flatnonzero(rates[chunk] == rate)
            traces = []
            for k in sel:
                w = waveforms[k]
                traces.append(w[channel] if w.shape[0] > channel else np.zeros(0))
            x, start, why = window_traces(traces, picks[chunk[sel]], float(rate), settings)
            which = chunk[sel]
            reason[which] = np.where(pd.isna(why), reason[which], why)
            good = pd.isna(why)
            windows[slot[which[good]]] = x[good]
            start_s[which[good]] = start[good] / rate + settings["trim_start"] / settings["sampling_rate"]
            done[which[good]] = True

    # Groups again, now on the good traces only.
    good_table = table[done]
    counts = _station_count(good_table)
    keep = counts[counts >= settings["min_stations"]]
    in_keep = pd.MultiIndex.from_frame(good_table[["event", "pixel"]]).isin(keep.index)
    reason[good_table["row"].to_numpy()[~in_keep]] = "small_group_after_rejection"
    kept = good_table[in_keep]
    report = _report(meta, reason, settings, dataset)
    report["n_rows_in_scope"] = int(in_scope.sum())
    if kept.empty:
        raise InputError(f"{dataset.path}: no (event, pixel) group has {settings['min_stations']} or more "
                         f"usable stations (data.min_stations); rejected: {report['rejected'] or 'none'}")

    # Polarity: sign of the cross-correlation peak with the event's reference trace.
    snr, snr_name = _snr_values(meta, settings)
    kept = kept.assign(snr=snr[kept["row"].to_numpy()])
    ranked = kept.assign(rank=np.where(np.isfinite(kept["snr"]), kept["snr"], -np.inf)).sort_values(
        ["event", "rank", "row"], ascending=[True, False, True], kind="stable")
    reference = ranked.groupby("event", sort=True)["row"].first()
    flip = _polarity(windows, slot, kept, reference, settings)
    windows[slot[kept["row"].to_numpy()]] *= flip[:, None].astype(np.float32)

    flat = _assemble(kept.assign(flip=flip), reference, windows, slot, start_s, meta, picks, rates, settings)
    report.update({"n_traces": len(flat["trace_row"]), "n_groups": len(flat["group_pixel"]),
                   "n_events": len(flat["event_source_id"]), "n_train": int((~flat["trace_is_test"]).sum()),
                   "n_test": int(flat["trace_is_test"].sum()), "snr_column": snr_name,
                   "polarity_flipped": int((flat["trace_polarity_flip"] < 0).sum())})
    flat["report"] = report
    return flat


def _polarity(windows: np.ndarray, slot: np.ndarray, kept: pd.DataFrame, reference: pd.Series,
              settings: Mapping) -> np.ndarray:
    rows = slot[kept["row"].to_numpy()]
    refs = slot[reference.loc[kept["event"]].to_numpy()]
    flip = np.ones(len(rows), np.int8)
    for start in range(0, len(rows), _READ_CHUNK):   # bounded memory for the FFTs
        part = slice(start, start + _READ_CHUNK)
        _, value = xcorr_max(windows[rows[part]], windows[refs[part]], max_lag=settings["polarity_max_lag"],
                             absolute=True, subsample=False)
        flip[part] = np.where(value < 0, -1, 1)
    return flip


def _assemble(kept: pd.DataFrame, reference: pd.Series, windows, slot, start_s, meta, picks, rates,
              settings) -> dict:
    """Split each group's stations, order the kept traces (group, train before test, station, row)
    and build the index tables."""
    kept = kept.assign(group=kept.groupby(["event", "pixel"], sort=True).ngroup().to_numpy())
    stations = kept[["group", "event", "pixel", "station"]].drop_duplicates().sort_values(["group", "station"])
    test_flags = [_split_group(frame["station"].to_numpy(), f"{event}/{pixel}", settings)
                  for (event, pixel), frame in stations.groupby(["event", "pixel"], sort=True)]
    stations = stations.assign(is_test=np.concatenate(test_flags))
    kept = kept.merge(stations[["group", "station", "is_test"]], on=["group", "station"], how="left")
    kept = kept.sort_values(["group", "is_test", "station", "row"], kind="stable")
    heads = stations.drop_duplicates("group").sort_values("group")
    rows = kept["row"].to_numpy()
    event_ids = np.array(sorted(kept["event"].unique()))
    event_index = {e: i for i, e in enumerate(event_ids)}
    g_of = kept["group"].to_numpy()
    is_test = kept["is_test"].to_numpy(bool)
    n_groups = len(heads)
    n_train = np.bincount(g_of[~is_test], minlength=n_groups)
    n_test = np.bincount(g_of[is_test], minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(n_train + n_test)[:-1]])
    rate = settings["sampling_rate"]
    window_start = start_s[rows]
    if "trace_p_arrival_sample" in meta.columns:
        arrival = pd.to_numeric(meta["trace_p_arrival_sample"], errors="coerce").to_numpy(np.float64)
        p_in_window = arrival[rows] / rates[rows] - window_start
    else:
        p_in_window = np.full(len(rows), np.nan)
    names = (meta["trace_name"].astype(str).to_numpy()[rows] if "trace_name" in meta.columns
             else np.array([str(r) for r in rows]))
    return {
        "trace_x": np.ascontiguousarray(windows[slot[rows]]),
        "trace_row": rows.astype(np.int64),
        "trace_group": g_of.astype(np.int32),
        "trace_is_test": is_test,
        "trace_station": kept["station"].to_numpy().astype(str),
        "trace_name": names.astype(str),
        "trace_snr": kept["snr"].to_numpy(np.float64),
        "trace_polarity_flip": kept["flip"].to_numpy(np.int8),
        "trace_window_start_s": window_start,
        "trace_pick_in_window_s": picks[rows] / rates[rows] - window_start,
        "trace_p_in_window_s": p_in_window,
        "group_source_id": heads["event"].to_numpy().astype(str),
        "group_pixel": heads["pixel"].to_numpy(np.int64),
        "group_event": np.array([event_index[e] for e in heads["event"]], np.int32),
        "group_start": starts.astype(np.int64),
        "group_n_train": n_train.astype(np.int64),
        "group_n_test": n_test.astype(np.int64),
        "group_n_stations": stations.groupby("group")["station"].size().to_numpy(np.int64),
        "event_source_id": event_ids.astype(str),
        "event_reference_row": reference.loc[event_ids].to_numpy(np.int64),
        "sampling_rate": float(rate),
        "time_start": -(settings["pre_p"] - settings["trim_start"]) / rate,
    }


def _report(meta: pd.DataFrame, reason: np.ndarray, settings: Mapping, dataset) -> dict:
    bad = np.flatnonzero(~pd.isna(reason))
    counts = pd.Series(reason[bad], dtype=object).value_counts()
    names = meta["trace_name"].astype(str).to_numpy() if "trace_name" in meta.columns else None
    listed = [{"row": int(r), "trace_name": None if names is None else str(names[r]), "reason": str(reason[r])}
              for r in bad if reason[r] not in ("small_group",)][:_MAX_LISTED]
    return {
        "dataset": str(dataset.path), "n_rows": len(meta), "settings": dict(settings),
        "rejected": {str(k): int(v) for k, v in counts.items()},
        "rejected_rows": listed, "reasons": REJECTION_REASONS, "prep_version": PREP_VERSION,
    }


# ============================================================================ cache
_SCALARS = ("sampling_rate", "time_start")


def _save(path: Path, flat: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in flat.items() if isinstance(v, np.ndarray)}
    arrays.update({k: np.asarray(flat[k]) for k in _SCALARS})
    arrays["fingerprint"] = np.asarray(flat["fingerprint"])
    arrays["report_json"] = np.asarray(json.dumps(flat["report"], default=str))
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)   # readers never see a half-written cache


def _load(path: Path, fingerprint: str) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint:
                return None
            flat = {k: data[k] for k in data.files if k not in ("fingerprint", "report_json", *_SCALARS)}
            flat.update({k: float(data[k]) for k in _SCALARS})
            flat["fingerprint"] = str(data["fingerprint"])
            flat["report"] = json.loads(str(data["report_json"]))
    except (OSError, KeyError, ValueError):
        return None   # unreadable: prepare again (and overwrite it)
    flat["report"]["cache"] = str(path)
    return flat


# ============================================================================ padded views
def padded_groups(prepared: Mapping, subset: str = "all") -> dict:
    """Per-group padded arrays of ``prepared``'s traces: ``traces (G, M, nt)`` float32, ``mask (G,
    M)`` bool, ``trace_ids`` (dataset rows, -1 for padding), ``stations`` ('' for padding),
    ``trace_index`` (positions in the flat ``trace_*`` arrays, -1 for padding). ``subset``:
    ``"all"``, ``"train"`` or ``"test"`` traces of each group; ``M`` is the largest count."""
    if subset not in ("all", "train", "test"):
        raise InputError(f"padded_groups: subset must be 'all', 'train' or 'test', not {subset!r}")
    n_train, n_test = np.asarray(prepared["group_n_train"]), np.asarray(prepared["group_n_test"])
    starts = np.asarray(prepared["group_start"])
    first = starts + (n_train if subset == "test" else 0)
    counts = {"all": n_train + n_test, "train": n_train, "test": n_test}[subset]
    width = max(int(counts.max()) if len(counts) else 0, 1)
    col = np.arange(width)
    mask = col[None, :] < counts[:, None]
    index = np.where(mask, first[:, None] + col[None, :], -1)
    safe = np.where(mask, index, 0)
    x = np.asarray(prepared["trace_x"])
    traces = np.where(mask[..., None], x[safe], 0.0).astype(np.float32)
    return {
        "traces": traces, "mask": mask, "trace_index": index,
        "trace_ids": np.where(mask, np.asarray(prepared["trace_row"])[safe], -1),
        "stations": np.where(mask, np.asarray(prepared["trace_station"])[safe], ""),
    }


def _with_padded(flat: dict, settings: Mapping) -> dict:
    """The flat tables plus the padded per-group arrays that extraction reads."""
    out = dict(flat)
    out.update(padded_groups(flat, "all"))
    out.update({"pixels": flat["group_pixel"], "source_ids": flat["event_source_id"],
                "n_stations": flat["group_n_stations"], "settings": dict(settings)})
    return out


# ============================================================================ datapoints (training and evaluation)
def draw_datapoints(prepared: dict, groups: np.ndarray, uniforms: np.ndarray, ntau: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Traces of datapoints: for each group in ``groups (B,)``, the train traces ranked by
    ``uniforms (B, >= max train count)`` (smallest first), the first ``ntau`` of them. Returns
    ``(x (B, ntau, nt) float32, mask (B, ntau) float32)``; vectorised over the batch."""
    n_train = np.asarray(prepared["group_n_train"])[groups]
    starts = np.asarray(prepared["group_start"])[groups]
    width = uniforms.shape[1]
    keys = np.where(np.arange(width)[None, :] < n_train[:, None], uniforms, np.inf)
    order = np.argsort(keys, axis=1, kind="stable")[:, :ntau]
    if order.shape[1] < ntau:   # fewer candidates than ntau in the whole batch
        order = np.pad(order, ((0, 0), (0, ntau - order.shape[1])))
    valid = np.arange(ntau)[None, :] < np.minimum(n_train, ntau)[:, None]
    index = np.where(valid, starts[:, None] + order, 0)
    x = np.asarray(prepared["trace_x"])[index] * valid[..., None]
    return x.astype(np.float32), valid.astype(np.float32)


class GroupDrawIterator:
    """Training batches of drawn datapoints; position, sharding and resume of an inner
    :class:`~seisjax.data.batches.ArrayBatchIterator` over group indices (see the module docstring)."""

    def __init__(self, prepared: dict, *, ntau: int, global_batch_size: int, seed: int,
                 draws_per_group: int = 1, process_index: int = 0, process_count: int = 1,
                 prefetch: int = 2):
        self._prepared = prepared
        self._ntau = int(ntau)
        self._seed = int(seed)
        self._global_batch = int(global_batch_size)
        self._process_index = int(process_index)
        groups = np.flatnonzero(np.asarray(prepared["group_n_train"]) > 0)
        examples = np.tile(groups, max(int(draws_per_group), 1)).astype(np.int32)
        if len(examples) < self._global_batch:
            raise InputError(f"symae: {len(groups)} group(s) x data.draws_per_group = {draws_per_group} give "
                             f"{len(examples)} datapoints per epoch, fewer than batch_size = {global_batch_size}; "
                             "raise data.draws_per_group or lower batch_size")
        self._width = int(np.asarray(prepared["group_n_train"]).max())
        self._inner = ArrayBatchIterator({"group": examples}, global_batch_size=global_batch_size, seed=seed,
                                         shuffle=True, drop_remainder=True, process_index=process_index,
                                         process_count=process_count, prefetch=prefetch)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        position = self._inner.state()
        batch = next(self._inner)
        rng = np.random.default_rng([self._seed, _DRAW_STREAM, position["epoch"], position["index"]])
        uniforms = rng.random((self._global_batch, self._width))   # the global batch's draws
        local = len(batch["group"])
        rows = uniforms[self._process_index * local:(self._process_index + 1) * local]
        x, mask = draw_datapoints(self._prepared, batch["group"], rows, self._ntau)
        return {"x": x, "mask": mask, "group": batch["group"]}

    def state(self) -> dict:
        return self._inner.state()

    def restore(self, state) -> None:
        self._inner.restore(state)

    @property
    def steps_per_epoch(self) -> int:
        return self._inner.steps_per_epoch

    @property
    def epoch(self) -> int:
        return self._inner.epoch

    def close(self) -> None:
        self._inner.close()


def eval_datapoints(prepared: dict, ntau: int) -> dict:
    """Every group's test traces in datapoints of at most ``ntau`` (in the prepared order), as
    ``{"x": (D, ntau, nt), "mask": (D, ntau), "group": (D,)}``; a deterministic evaluation set."""
    n_train = np.asarray(prepared["group_n_train"])
    n_test = np.asarray(prepared["group_n_test"])
    chunks = np.where(n_test > 0, -(-n_test // ntau), 0)
    group = np.repeat(np.arange(len(n_test)), chunks)
    first_chunk = np.concatenate([[0], np.cumsum(chunks)[:-1]])
    chunk_in_group = np.arange(len(group)) - np.repeat(first_chunk, chunks)
    offset = chunk_in_group * ntau
    count = np.minimum(n_test[group] - offset, ntau)
    start = np.asarray(prepared["group_start"])[group] + n_train[group] + offset
    valid = np.arange(ntau)[None, :] < count[:, None]
    index = np.where(valid, start[:, None] + np.arange(ntau)[None, :], 0)
    x = np.asarray(prepared["trace_x"])[index] * valid[..., None]
    return {"x": x.astype(np.float32), "mask": valid.astype(np.float32), "group": group.astype(np.int32)}


# ============================================================================ per-group arrays for extraction
@dataclass
class GroupArrays:
    """The traces of every (event, pixel) group, padded to fixed shapes.

    ``traces (G, M, nt)`` (windowed, normalised, polarity-aligned; masked entries may hold
    anything), ``mask (G, M)`` bool, ``group_event (G,)`` the event index of each group into
    ``source_ids (E,)``, ``pixels (G,)`` HEALPix pixel of each group, ``trace_ids (G, M)`` row indices
    of the traces in the dataset (-1 where masked), ``n_stations (G,)`` stations per group (default:
    valid traces), ``stations (G, M)`` station codes (optional), ``time_start`` the time (s) of the
    first sample relative to the P pick, ``sampling_rate`` (Hz)."""

    traces: np.ndarray
    mask: np.ndarray
    group_event: np.ndarray
    source_ids: np.ndarray
    pixels: np.ndarray
    trace_ids: np.ndarray
    n_stations: np.ndarray | None = None
    stations: np.ndarray | None = None
    time_start: float = 0.0
    sampling_rate: float = 1.0

    def __post_init__(self):
        self.traces = np.asarray(self.traces, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=bool)
        self.group_event = np.asarray(self.group_event, dtype=np.int64)
        self.source_ids = np.asarray(self.source_ids).astype(str)
        self.pixels = np.asarray(self.pixels, dtype=np.int64)
        self.trace_ids = np.asarray(self.trace_ids, dtype=np.int64)
        if self.traces.ndim != 3:
            raise InputError(f"group arrays: traces must be (groups, traces, samples), got shape {self.traces.shape}")
        g, m, _ = self.traces.shape
        for name, value, shape in (("mask", self.mask, (g, m)), ("group_event", self.group_event, (g,)),
                                   ("pixels", self.pixels, (g,)), ("trace_ids", self.trace_ids, (g, m))):
            if value.shape != shape:
                raise InputError(f"group arrays: {name} has shape {value.shape}; expected {shape} for traces "
                                 f"of shape {self.traces.shape}")
        if self.n_stations is not None:
            self.n_stations = np.asarray(self.n_stations, dtype=np.int64)
            if self.n_stations.shape != (g,):
                raise InputError(f"group arrays: n_stations has shape {self.n_stations.shape}; expected {(g,)}")
        if self.stations is not None:
            self.stations = np.asarray(self.stations).astype(str)
            if self.stations.shape != (g, m):
                raise InputError(f"group arrays: stations has shape {self.stations.shape}; expected {(g, m)}")
        n_events = len(self.source_ids)
        if g and (self.group_event.min() < 0 or self.group_event.max() >= n_events):
            raise InputError(f"group arrays: group_event holds indices outside [0, {n_events}) "
                             f"(min {self.group_event.min()}, max {self.group_event.max()})")
        valid = self.traces[self.mask]
        bad = ~np.isfinite(valid).all(axis=-1)
        if bad.any():
            where = np.argwhere(self.mask)[np.flatnonzero(bad)[0]]
            gi, ti = int(where[0]), int(where[1])
            raise InputError(f"group arrays: trace {ti} of group {gi} (event {self.source_ids[self.group_event[gi]]}, "
                             f"pixel {self.pixels[gi]}, dataset row {self.trace_ids[gi, ti]}) holds NaN or inf; "
                             f"{int(bad.sum())} such trace(s) in all")

    @property
    def n_events(self) -> int:
        return len(self.source_ids)

    def select_events(self, events) -> GroupArrays:
        """The groups of the given event indices (renumbered in the given order)."""
        events = np.asarray(events, dtype=np.int64)
        remap = np.full(self.n_events, -1)
        remap[events] = np.arange(len(events))
        keep = np.flatnonzero(remap[self.group_event] >= 0)
        pick = lambda a: None if a is None else a[keep]
        return GroupArrays(self.traces[keep], self.mask[keep], remap[self.group_event[keep]], self.source_ids[events],
                           self.pixels[keep], self.trace_ids[keep], pick(self.n_stations), pick(self.stations),
                           self.time_start, self.sampling_rate)


def arrays_from_prepared(prepared: dict) -> GroupArrays:
    """:class:`GroupArrays` from :func:`seisjax.symae.data.prepare_symae_groups`'s output."""
    required = ("traces", "mask", "group_event", "source_ids", "pixels", "trace_ids")
    missing = [k for k in required if k not in prepared]
    if missing:
        raise InputError(f"prepared SymAE groups lack {missing} (have: {sorted(prepared)})")
    return GroupArrays(prepared["traces"], prepared["mask"], prepared["group_event"], prepared["source_ids"],
                       prepared["pixels"], prepared["trace_ids"], prepared.get("n_stations"),
                       prepared.get("stations"), float(prepared.get("time_start", 0.0)),
                       float(prepared.get("sampling_rate", 1.0)))
