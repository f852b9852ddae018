"""Scores of SymAE's source time functions (STFs) and of the baselines against the synthetic truth.

:func:`evaluate_stfs` takes a SymAE extraction (an :class:`~seisjax.symae.extraction.Extraction`,
the HDF5 file of :func:`~seisjax.symae.extraction.write_extraction_hdf5`, or its
:func:`~seisjax.symae.extraction.read_extraction_hdf5` dict), the prepared groups it was made from
(:func:`seisjax.symae.data.prepare_symae_groups`) and the truth of the synthetic
``teleseismic-p`` data (:func:`seisjax.data.synthetic.read_truth`), and scores, per (event, pixel)
group, every method on the same traces:

- ``symae_envelope``: SymAE's ``stf`` (the mean Hilbert envelope of the virtual seismograms);
- ``symae_signed``: SymAE's ``stf_signed`` (a signed stack of the aligned virtual seismograms);
- ``symae_stack``, ``symae_stack_signed``: the envelope of the phase-weighted stack of the input
  traces aligned by SymAE's refined shifts, and the stack itself (SymAE's timing, the data's
  waveforms; NaN for extraction files written before these existed);
- ``mccc_linear``, ``mccc_pws``, ``iccs_linear``, ``iccs_pws``: the Hilbert envelope of the
  baselines' stacks (:func:`seisjax.symae.baselines.baseline_stf`) of the group's windowed,
  polarity-aligned input traces (the very traces SymAE reads, all of the group's stations), and the
  same with ``_signed``: the signed stacks.

Metrics (:mod:`seisjax.symae.stf_scores`), per group and method:

- ``correlation`` with the event's true moment-rate STF at the best sub-sample lag within
  ``max_lag_s`` (envelopes against the positive truth; signed estimates with ``absolute=True``,
  since the sign of a stack is a convention). The estimates (1 sample/s) are resampled onto the
  truth's rate (10 Hz); the truth's samples are interval means, dated at the interval centres
  (``truth_time_start = time_start_s + 0.5 / fs``); the estimate's time 0 is the window's pick
  (the predicted P time), and the truth's is the rupture onset, so a good estimate has a lag near
  the true onset of P in the window (the timing errors are zero-mean).
- Scoring window: each estimate is cut to ``[-window_pre_s, D + window_post_s]`` around the pick
  (``D`` the true STF duration) before it is scored, the same cut for every method, so that the
  depth phases (pP, sP, 25-140 s after P at 100-600 km depth) and the later coda that every
  estimate carries do not count as source (``window_pre_s = None`` scores the whole window).
- ``duration_error_s`` (and its absolute value): 5-95 % duration by the cumulative energy for
  envelopes, by the cumulative ``|x|`` for signed estimates, truth measured the same way.
- ``subevent_mean_abs_dt_s`` and ``subevent_fraction_found``: peaks of the estimate dated on the
  truth's clock with the correlation lag, matched to the true sub-event peak times (pairs further
  apart than ``max_subevent_dt_s`` count as not found).
- ``shift_rms_s``: per-trace time shifts against the true timing errors (``time_error_s``), both
  demeaned over the group: SymAE's refined shifts (``symae_*``), the shift network's prediction
  (``symae_network``, shifts only) and the MCCC / ICCS delays (``mccc_*`` / ``iccs_*``).

SNR: a group's SNR is the median of the true amplitude SNRs of its traces (``truth traces/snr``).
Per-trace SNRs are drawn independently (log-uniform 0.5-50 by default), so group medians cluster
near the middle of that range; the per-trace shift errors are therefore also tabulated by each
trace's own SNR (``shift_by_trace_snr``). The true STF is the event's: directivity (30 % of the
events) makes the apparent STF of a pixel a time-compressed copy, which every method is scored
against alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from seisjax.data.synthetic import read_truth
from seisjax.errors import InputError
from seisjax.symae.baselines import BASELINE_METHODS, baseline_stf
from seisjax.symae.data import padded_groups
from seisjax.symae.extraction import read_extraction_hdf5
from seisjax.symae.stf_scores import (SNR_EDGES, format_table, score_stf, snr_table, stf_duration,
                                      time_shift_rms, truth_subevent_times)

__all__ = ["SYMAE_METHODS", "evaluate_stfs", "goal_by_snr", "goal_comparisons", "goal_rows", "symae_per_group",
           "truth_for_groups", "write_scores", "plot_scores"]

SYMAE_METHODS = ("symae_envelope", "symae_signed", "symae_stack", "symae_stack_signed")
_TABLE_METRICS = ("correlation", "abs_duration_error_s", "subevent_mean_abs_dt_s", "subevent_fraction_found",
                  "shift_rms_s")


# ============================================================================ inputs
_STF_KEYS = ("stf", "stf_signed", "stf_stack", "stf_stack_signed")


def symae_per_group(extraction, prepared: Mapping) -> dict:
    """SymAE's outputs on the prepared groups' padded layout: ``stf``, ``stf_signed``, ``stf_stack``,
    ``stf_stack_signed`` ``(G, nt)`` (NaN where the extraction has no stack),
    ``shifts_s``, ``shifts_initial_s`` ``(G, M)`` (seconds, NaN where no trace), ``time_start``,
    ``sampling_rate``. ``extraction``: an ``Extraction`` (made from these groups, in their order),
    an extraction HDF5 path, or its ``read_extraction_hdf5`` dict (matched by source id and pixel,
    traces by dataset row)."""
    pad = padded_groups(prepared, "all")
    mask, trace_ids = pad["mask"], pad["trace_ids"]
    n_groups, width = mask.shape
    rate = float(prepared["sampling_rate"])
    if isinstance(extraction, (str, Path)):
        extraction = read_extraction_hdf5(extraction)
    if isinstance(extraction, Mapping):
        attrs = extraction.get("attrs", {})
        for key, mine in (("sampling_rate", rate), ("time_start", float(prepared["time_start"]))):
            if key in attrs and not math.isclose(float(attrs[key]), mine, rel_tol=1e-6, abs_tol=1e-9):
                raise InputError(f"extraction file: {key} = {attrs[key]} but the prepared groups have {mine}")
        nt = int(attrs.get("nt", pad["traces"].shape[-1]))
        out = {k: np.full((n_groups, nt), np.nan) for k in _STF_KEYS}
        out.update({k: np.full((n_groups, width), np.nan) for k in ("shifts_s", "shifts_initial_s")})
        events = extraction.get("events", {})
        for g in range(n_groups):
            source = str(prepared["group_source_id"][g])
            pixel = int(prepared["group_pixel"][g])
            item = events.get(source, {}).get("pixels", {}).get(pixel)
            if item is None:
                raise InputError(f"extraction file: no group {source}/{pixel} (the file was made from other data?)")
            for key in _STF_KEYS:
                if key in item:
                    out[key][g] = item[key]
            column = {int(r): j for j, r in enumerate(trace_ids[g][mask[g]])}
            rows = np.asarray(item["trace_ids"], dtype=np.int64)
            unknown = [int(r) for r in rows if int(r) not in column]
            if unknown:
                raise InputError(f"extraction file: group {source}/{pixel} holds dataset rows {unknown[:5]} "
                                 "that the prepared group does not")
            cols = np.array([column[int(r)] for r in rows], dtype=np.int64)
            out["shifts_s"][g, cols] = np.asarray(item["shifts"], dtype=np.float64)
            out["shifts_initial_s"][g, cols] = np.asarray(item["shifts_initial"], dtype=np.float64) / rate
    else:
        stf = np.asarray(extraction.stf, dtype=np.float64)
        if stf.shape[0] != n_groups or extraction.shifts.shape != (n_groups, width):
            raise InputError(f"extraction: {stf.shape[0]} groups of {extraction.shifts.shape[1]} traces, but the "
                             f"prepared data have {n_groups} groups of up to {width}")
        stacks = {k: np.full_like(stf, np.nan) if getattr(extraction, k) is None else
                  np.asarray(getattr(extraction, k), dtype=np.float64) for k in ("stf_stack", "stf_stack_signed")}
        out = {"stf": stf, "stf_signed": np.asarray(extraction.stf_signed, dtype=np.float64), **stacks,
               "shifts_s": np.where(mask, extraction.shifts / rate, np.nan),
               "shifts_initial_s": np.where(mask, extraction.shifts_initial / rate, np.nan)}
    out.update(time_start=float(prepared["time_start"]), sampling_rate=rate)
    return out


def truth_for_groups(truth, prepared: Mapping) -> dict:
    """The truth that scores the prepared groups: per group its event's ``stf`` row (``stf_index
    (G,)``), true sub-event peak times, the per-trace ``time_error_s`` and ``snr`` on the padded
    layout ``(G, M)``; ``stf (E, T)``, ``stf_rate`` and ``stf_time_start`` (interval centres).
    ``truth``: a ``read_truth`` dict, or a dataset folder / truth.h5 path."""
    stf_time_start = 0.0
    if isinstance(truth, (str, Path)):
        path = Path(truth) / "truth.h5" if Path(truth).is_dir() else Path(truth)
        truth = read_truth(path)
        with h5py.File(path, "r") as h5:
            stf_time_start = float(h5["events/stf"].attrs.get("time_start_s", 0.0)) if "events/stf" in h5 else 0.0
    events, traces, stf = truth.get("events"), truth.get("traces"), truth.get("stf")
    if events is None or traces is None or stf is None:
        raise InputError("truth: needs the events and traces tables and the STFs (teleseismic-p truth.h5)")
    for table, name, columns in ((events, "events", ("source_id",)),
                                 (traces, "traces", ("trace_name", "time_error_s", "snr"))):
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise InputError(f"truth: the {name} table lacks {missing}")
    rate = float(truth["attrs"].get("stf_sampling_rate_hz", float("nan")))
    if not rate > 0:
        raise InputError("truth: no STF sampling rate (events/stf attribute sampling_rate_hz)")
    event_row = {str(s): i for i, s in enumerate(events["source_id"])}
    missing = sorted({str(s) for s in prepared["group_source_id"]} - set(event_row))
    if missing:
        raise InputError(f"truth: no true STF for event(s) {missing[:5]} of the prepared data (another dataset's truth?)")
    stf_index = np.array([event_row[str(s)] for s in prepared["group_source_id"]], dtype=np.int64)
    pad = padded_groups(prepared, "all")
    names = np.asarray(prepared["trace_name"]).astype(str)
    trace_row = {str(n): i for i, n in enumerate(traces["trace_name"])}
    safe = np.where(pad["mask"], pad["trace_index"], 0)
    flat_rows = np.array([trace_row.get(n, -1) for n in names], dtype=np.int64)
    rows = np.where(pad["mask"], flat_rows[safe], -1)
    lost = pad["mask"] & (rows < 0)
    if lost.any():
        raise InputError(f"truth: {int(lost.sum())} prepared trace(s) have no truth row, e.g. "
                         f"{names[safe[lost][0]]!r}")
    take = lambda column: np.where(pad["mask"], traces[column].to_numpy(np.float64)[np.maximum(rows, 0)], np.nan)  # noqa: E731
    subevents = truth_subevent_times(events)
    return {"stf": np.asarray(stf, dtype=np.float64), "stf_rate": rate,
            "stf_time_start": stf_time_start + 0.5 / rate, "stf_index": stf_index,
            "subevent_times": [subevents[i] for i in stf_index],
            "time_error_s": take("time_error_s"), "snr": take("snr"), "mask": pad["mask"]}


# ============================================================================ scoring
def _crop(estimate, time_start, rate, start_s, end_s):
    """``estimate`` cut to the samples whose times lie in ``[start_s, end_s]``, and its new start."""
    first = max(int(math.ceil((start_s - time_start) * rate - 1e-9)), 0)
    last = min(int(math.floor((end_s - time_start) * rate + 1e-9)), len(estimate) - 1)
    if last - first < 1:
        raise InputError(f"scoring window [{start_s}, {end_s}] s lies outside the estimate's "
                         f"[{time_start}, {time_start + (len(estimate) - 1) / rate}] s")
    return estimate[first:last + 1], time_start + first / rate


def evaluate_stfs(extraction, prepared: Mapping, truth, *, methods: Sequence[str] | None = None,
                  max_lag_s: float = 10.0, window_pre_s: float | None = 10.0, window_post_s: float = 10.0,
                  max_subevent_dt_s: float = 5.0, prominence: float = 0.1, snr_edges: Sequence[float] | None = None,
                  baseline_kwargs: Mapping | None = None, baseline_max_lag_s: float | None = 10.0) -> dict:
    """Score SymAE and the baselines per (event, pixel) group against the truth (module docstring).

    ``methods``: baseline methods (default all of :data:`~seisjax.symae.baselines.BASELINE_METHODS`);
    ``baseline_kwargs`` go to :func:`~seisjax.symae.baselines.baseline_stf`, whose pair lags are
    searched within ``baseline_max_lag_s`` (10 s: ten times the synthetic timing errors' standard
    deviation; None: a quarter of the window, where noisy pairs skip cycles). Signed estimates are
    scored by ``|correlation|`` (their ``polarity`` is recorded apart). Returns a
    JSON-ready dict (NaN written as null): ``settings``; ``groups`` (one record per group and
    method: ``source_id``, ``pixel``, ``method``, ``snr``, ``n_traces`` and the metrics);
    ``summary`` (per method: means over groups, and medians of the correlation); ``by_snr`` (per
    method and SNR bin); ``shift_by_trace_snr`` (per-trace absolute shift errors, demeaned per
    group, by the trace's SNR); ``goal`` (below and above SNR 5: each SymAE estimate against the
    best baseline of its kind, envelope or signed, with the paired per-group difference; the
    headline keys compare SymAE's envelope with the best baseline envelope); and the Markdown
    tables ``summary_md``, ``table_md`` and ``shift_md``."""
    methods = tuple(BASELINE_METHODS if methods is None else methods)
    unknown = [m for m in methods if m not in BASELINE_METHODS]
    if unknown:
        raise InputError(f"evaluate_stfs: unknown baseline method(s) {unknown}; choose from {BASELINE_METHODS}")
    edges = tuple(SNR_EDGES if snr_edges is None else snr_edges)
    symae = symae_per_group(extraction, prepared)
    true = truth_for_groups(truth, prepared)
    pad = padded_groups(prepared, "all")
    traces, mask = pad["traces"], pad["mask"]
    rate, t0 = symae["sampling_rate"], symae["time_start"]
    n_groups = mask.shape[0]

    # Per-method estimates (G, nt), whether signed, and per-trace shifts (G, M) in seconds.
    estimates: dict[str, tuple[np.ndarray, bool, np.ndarray | None]] = {
        "symae_envelope": (symae["stf"], False, symae["shifts_s"]),
        "symae_signed": (symae["stf_signed"], True, symae["shifts_s"]),
        "symae_stack": (symae["stf_stack"], False, symae["shifts_s"]),
        "symae_stack_signed": (symae["stf_stack_signed"], True, symae["shifts_s"]),
    }
    for method in methods:
        kwargs = {"max_lag_s": baseline_max_lag_s, **dict(baseline_kwargs or {})}
        result = baseline_stf(traces, rate, method, mask=mask, **kwargs)
        estimates[method] = (result["envelope"], False, result["delays"])
        estimates[f"{method}_signed"] = (result["stf"], True, result["delays"])
    network_rms = time_shift_rms(symae["shifts_initial_s"], true["time_error_s"])

    group_snr = np.array([np.median(true["snr"][g][mask[g]]) for g in range(n_groups)])
    duration_true = {}
    records = []
    for g in range(n_groups):
        truth_stf = true["stf"][true["stf_index"][g]]
        key = int(true["stf_index"][g])
        if key not in duration_true:
            duration_true[key] = float(stf_duration(truth_stf, true["stf_rate"])[0] / 0.9)   # 5-95 % -> full
        base = {"group": g, "source_id": str(prepared["group_source_id"][g]), "pixel": int(prepared["group_pixel"][g]),
                "snr": float(group_snr[g]), "n_traces": int(mask[g].sum())}
        for method, (stf, signed, shifts) in estimates.items():
            record = {**base, "method": method}
            estimate = np.asarray(stf[g], dtype=np.float64)
            if not np.isfinite(estimate).all() or not np.any(estimate):
                record.update(correlation=math.nan)   # no estimate for this group (kept, as NaN)
            else:
                start = t0
                if window_pre_s is not None:
                    estimate, start = _crop(estimate, t0, rate, -window_pre_s, duration_true[key] + window_post_s)
                record.update(score_stf(estimate, truth_stf, sampling_rate=rate, truth_sampling_rate=true["stf_rate"],
                                        true_subevent_times=true["subevent_times"][g], estimate_time_start=start,
                                        truth_time_start=true["stf_time_start"], max_lag_s=max_lag_s,
                                        absolute=signed, prominence=prominence, max_dt_s=max_subevent_dt_s,
                                        duration_measure="abs" if signed else "energy"))
                record["abs_duration_error_s"] = abs(record["duration_error_s"])
                if signed:   # the sign of a stack is a convention: score |cc|, keep the sign apart
                    record["polarity"] = 1 if record["correlation"] >= 0 else -1
                    record["correlation"] = abs(record["correlation"])
            record["shift_rms_s"] = float(time_shift_rms(shifts[g], true["time_error_s"][g])) \
                if shifts is not None else math.nan
            records.append(record)
        records.append({**base, "method": "symae_network", "shift_rms_s": float(network_rms[g])})

    frame = pd.DataFrame(records)
    metrics = [m for m in _TABLE_METRICS if m in frame.columns]
    frame_for_table = frame.drop(columns=["group"])
    order = list(estimates) + ["symae_network"]
    summary = []
    for method in order:
        part = frame[frame["method"] == method]
        row = {"method": method, "groups": int(len(part))}
        for metric in metrics:
            values = pd.to_numeric(part[metric], errors="coerce").to_numpy(float)
            values = values[np.isfinite(values)]
            row[metric] = float(values.mean()) if len(values) else math.nan
        values = part["correlation"].to_numpy(float) if "correlation" in part else np.zeros(0)
        values = values[np.isfinite(values)]
        row["correlation_median"] = float(np.median(values)) if len(values) else math.nan
        summary.append(row)
    by_snr = snr_table(frame_for_table, metrics=metrics, group_by="method", edges=edges)

    # Per-trace shift errors by each trace's SNR: |est - true| after removing each group's mean.
    shift_rows = []
    for method, shifts in [("symae_refined", symae["shifts_s"]), ("symae_network", symae["shifts_initial_s"])] + \
            [(m.split("_")[0], estimates[m][2]) for m in methods if m.endswith("_linear")]:
        diff = np.where(mask, shifts - true["time_error_s"], np.nan)
        diff = diff - np.nanmean(diff, axis=1, keepdims=True)
        shift_rows += [{"method": method, "snr": float(s), "abs_shift_error_s": float(abs(d))}
                       for s, d in zip(true["snr"][mask], diff[mask])]
    shift_table = snr_table(shift_rows, metrics=["abs_shift_error_s"], group_by="method", edges=edges,
                            statistics=("mean", "median"))

    goal = goal_by_snr(frame, dict(enumerate(group_snr)), methods)

    settings = {"max_lag_s": max_lag_s, "window_pre_s": window_pre_s, "window_post_s": window_post_s,
                "max_subevent_dt_s": max_subevent_dt_s, "prominence": prominence, "snr_edges": list(edges),
                "snr": "per group: median of its traces' true amplitude SNR", "estimate_rate_hz": rate,
                "truth_rate_hz": true["stf_rate"], "truth_time_start_s": true["stf_time_start"],
                "estimate_time_start_s": t0, "baselines": list(methods),
                "baseline_kwargs": {"max_lag_s": baseline_max_lag_s, **dict(baseline_kwargs or {})}}
    table_rows = [{k: v for k, v in row.items()} for row in by_snr if row["count"] > 0]
    out = {"settings": settings, "n_groups": n_groups, "n_events": len(set(prepared["group_source_id"])),
           "groups": records, "summary": summary, "by_snr": by_snr, "shift_by_trace_snr": shift_table, "goal": goal,
           "summary_md": format_table(summary), "table_md": format_table(table_rows),
           "shift_md": format_table([r for r in shift_table if r["count"] > 0])}
    return _json_ready(out)


def _clustered_standard_error(values: np.ndarray, clusters) -> float:
    """Standard error of ``values.mean()`` when values of one cluster are not independent (the
    groups of one event share its STF): the cluster-robust (sandwich) estimate with the small-sample
    factor ``C / (C - 1)``; NaN with fewer than two clusters."""
    labels = np.unique(np.asarray(clusters), return_inverse=True)[1]
    n_clusters = labels.max() + 1 if len(labels) else 0
    if n_clusters < 2:
        return math.nan
    residual_sums = np.bincount(labels, weights=values - values.mean())
    return float(np.sqrt(n_clusters / (n_clusters - 1) * np.sum(residual_sums ** 2)) / len(values))


def goal_by_snr(frame, group_snr: Mapping, baselines) -> dict:
    """:func:`goal_comparisons` on the groups below SNR 5 (``snr_below_5``) and on the others
    (``snr_5_and_above``); ``group_snr``: each group's SNR by its ``group`` value."""
    groups = np.array(list(group_snr))
    snr = np.array([group_snr[g] for g in groups], dtype=float)
    return {label: goal_comparisons(frame, groups[select], baselines)
            for label, select in (("snr_below_5", snr < 5.0), ("snr_5_and_above", snr >= 5.0))}


def goal_rows(goal: Mapping, **columns) -> list[dict]:
    """The rows of a goal table (``goal``: :func:`goal_by_snr`'s dict), one per SNR part with groups
    and SymAE estimate, each led by ``columns``."""
    return [{**columns, "snr": label, "groups": item["groups"], "symae": row["symae"],
             "correlation": row["symae_correlation"], "best baseline": row["baseline"],
             "its correlation": row["baseline_correlation"],
             "difference": f"{_fmt(row['mean_difference'], '+.3f')} ± {_fmt(row['standard_error'])}",
             "SymAE higher": row["symae_wins"]}
            for label, item in goal.items() if item["groups"] for row in item["comparisons"]]


def goal_comparisons(frame, groups, baselines) -> dict:
    """SymAE against the baselines on ``groups`` (the ``group`` column of ``frame``, a table of
    :func:`evaluate_stfs`'s ``groups`` records: ``group``, ``source_id``, ``method``,
    ``correlation``): per SymAE estimate, the best baseline of the same
    kind (envelope against envelopes, signed against signed stacks; best = highest mean correlation
    on these groups), both means, and the paired per-group difference: its mean, its standard error
    clustered by event (:func:`_clustered_standard_error`) and the fraction of groups where SymAE
    scores higher."""
    chosen = frame[frame["group"].isin(groups)]

    def per_group(method):
        part = chosen[chosen["method"] == method]
        return dict(zip(part["group"], part["correlation"].to_numpy(float))) if len(part) else {}

    event_of = dict(zip(chosen["group"], chosen["source_id"]))

    def mean_cc(method):
        values = np.array([v for v in per_group(method).values() if np.isfinite(v)])
        return float(values.mean()) if len(values) else math.nan

    out = {"groups": int(len(groups)), "comparisons": []}
    for symae, signed in (("symae_envelope", False), ("symae_signed", True), ("symae_stack", False),
                          ("symae_stack_signed", True)):
        rivals = [f"{m}_signed" if signed else m for m in baselines]
        best = max(rivals, key=lambda m: np.nan_to_num(mean_cc(m), nan=-np.inf)) if rivals else None
        row = {"symae": symae, "symae_correlation": mean_cc(symae), "baseline": best,
               "baseline_correlation": mean_cc(best) if best else math.nan,
               "mean_difference": math.nan, "standard_error": math.nan, "symae_wins": math.nan}
        if best:
            mine, theirs = per_group(symae), per_group(best)
            paired = [(g, mine[g] - theirs[g]) for g in mine if g in theirs and np.isfinite(mine[g] - theirs[g])]
            if paired:
                diff = np.array([d for _, d in paired])
                row.update(mean_difference=float(diff.mean()), symae_wins=float(np.mean(diff > 0)),
                           standard_error=_clustered_standard_error(diff, [event_of[g] for g, _ in paired]))
        out["comparisons"].append(row)
    envelope = out["comparisons"][0]   # the reference's estimate: the goal's headline
    out.update(symae_envelope=envelope["symae_correlation"], best_baseline=envelope["baseline"],
               best_baseline_correlation=envelope["baseline_correlation"],
               symae_minus_best=envelope["symae_correlation"] - envelope["baseline_correlation"],
               symae_stack=out["comparisons"][2]["symae_correlation"])
    out["symae_stack_minus_best"] = out["symae_stack"] - envelope["baseline_correlation"]
    return out


def _json_ready(value):
    """NaN/inf -> None and numpy scalars -> Python numbers, recursively (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# ============================================================================ output
def write_scores(scores: Mapping, out_dir, *, figure: bool = True) -> dict:
    """Write ``scores.json`` (everything), ``scores.md`` (the three tables) and, with ``figure``,
    ``scores.png`` (:func:`plot_scores`) into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "scores.json", "markdown": out_dir / "scores.md"}
    paths["json"].write_text(json.dumps(scores, indent=2, allow_nan=False) + "\n")
    goal = scores["goal"]
    lines = ["# STF scores against the synthetic truth", "",
             f"{scores['n_groups']} (event, pixel) groups of {scores['n_events']} events; settings in scores.json.",
             "", "## Per method (means over groups)", "", scores["summary_md"], "",
             "## By SNR (group SNR = median of its traces' true SNR)", "", scores["table_md"], "",
             "## Per-trace time-shift errors by trace SNR (s, demeaned per group)", "", scores["shift_md"], "",
             "## Goal: SymAE vs the best baseline of the same kind (mean correlation; per-group "
             "difference, mean ± standard error clustered by event, and the fraction of groups where "
             "SymAE scores higher)", ""]
    rows = goal_rows(goal)
    lines.append(format_table(rows) if rows else "(no groups)")
    paths["markdown"].write_text("\n".join(lines) + "\n")
    if figure:
        paths["figure"] = plot_scores(scores, out_dir / "scores.png")
    return paths


def _fmt(value, spec: str = ".3f") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def plot_scores(scores: Mapping, path) -> Path:
    """Correlation with the true STF per group against the group's SNR, one colour per method
    (envelopes: dots; signed estimates: crosses)."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    methods = [row["method"] for row in scores["summary"] if row.get("correlation") is not None]
    for i, method in enumerate(methods):
        rows = [r for r in scores["groups"] if r["method"] == method and r.get("correlation") is not None]
        ax.scatter([r["snr"] for r in rows], [r["correlation"] for r in rows], s=14, color=f"C{i % 10}",
                   marker="x" if method.endswith("signed") else "o", label=method, alpha=0.75)
    ax.set_xscale("log")
    ax.set_xlabel("group SNR (median of its traces' true SNR)")
    ax.set_ylabel("correlation with the true STF")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path
