"""Scores of source time function (STF) estimates against a known truth (``seisjax eval`` on the
synthetic ``teleseismic-p`` data, whose ``truth.h5`` holds the true STFs, sub-event times and
per-trace timing errors).

- :func:`stf_correlation`: normalised correlation with the true STF at the best sub-sample lag.
- :func:`stf_duration` / :func:`duration_error`: duration measured identically on estimate and
  truth, as the time span between the 5 % and 95 % points of the cumulative ``|x|`` (the moment,
  for a moment-rate STF) or of the cumulative ``x^2`` (energy, for envelopes).
- :func:`detect_subevents`, :func:`match_subevents`, :func:`subevent_timing_error`: peaks of the
  estimate matched one-to-one to the true sub-event times (Hungarian assignment on ``|dt|``).
- :func:`time_shift_rms`: per-trace time shifts against the true timing errors, both demeaned.
- :func:`snr_table`, :func:`format_table`: any metric aggregated by SNR bin.
- :func:`score_stf`: the per-estimate metrics above in one dict.

Time axes: an array sampled at ``sampling_rate`` Hz whose first sample is at ``time_start``
seconds has sample ``n`` at ``time_start + n / sampling_rate``. The synthetic truth STFs hold the
mean moment rate over each sample interval ``[n, n + 1) / fs`` from the STF origin: pass
``truth_time_start = 0.5 / fs`` to date each of their samples at the centre of its interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.signal

from seisjax.errors import InputError
from seisjax.ops.xcorr import correlation_lags, cross_correlate

__all__ = ["resample_to_rate", "stf_correlation", "stf_duration", "duration_error", "subevent_peak_times",
           "truth_subevent_times", "detect_subevents", "match_subevents", "subevent_timing_error",
           "time_shift_rms", "SNR_EDGES", "snr_bin_labels", "snr_table", "format_table", "score_stf"]

SNR_EDGES = (2.0, 5.0, 10.0)  # bins <2, 2-5, 5-10, >=10 (amplitude SNR, not dB)


def _check_rate(rate, what: str) -> float:
    if rate is None or not (np.isfinite(rate) and rate > 0):
        raise InputError(f"{what}: sampling rate must be a positive number of Hz, got {rate}")
    return float(rate)


def _as_signal(x, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] < 2:
        raise InputError(f"{what}: expected an array of shape (..., samples) with >= 2 samples, got {x.shape}")
    if not np.isfinite(x).all():
        raise InputError(f"{what}: holds NaN or inf samples")
    return x


# ------------------------------------------------------------------------------ correlation
def resample_to_rate(x, sampling_rate: float, target_rate: float) -> np.ndarray:
    """Resample ``x`` ``(..., T)`` along its last axis from ``sampling_rate`` to ``target_rate`` Hz
    with a polyphase anti-aliasing filter (:func:`scipy.signal.resample_poly`); sample 0 keeps its
    time. Rates whose ratio is not a fraction with denominator <= 1000 are approximated by one."""
    sampling_rate = _check_rate(sampling_rate, "resample_to_rate")
    target_rate = _check_rate(target_rate, "resample_to_rate target")
    x = np.asarray(x, dtype=np.float64)
    ratio = Fraction(target_rate / sampling_rate).limit_denominator(1000)
    if ratio == 1:
        return x.copy()
    return scipy.signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)


def stf_correlation(estimate, truth, *, sampling_rate: float, truth_sampling_rate: float | None = None,
                    estimate_time_start: float = 0.0, truth_time_start: float = 0.0,
                    max_lag_s: float | None = None, absolute: bool = False,
                    demean: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Correlation coefficient of ``estimate`` ``(..., Te)`` with ``truth`` ``(..., Tt)`` (leading
    dimensions broadcast) at the best lag, and that lag in seconds.

    The estimate is first resampled onto the truth's sampling rate (when they differ); both are
    zero outside their windows. The coefficient is ``sum e(t) s(t - lag) / (|e| |s|)``, the
    normalised cross-correlation without removing means (``demean=False``: the cosine similarity
    of the two zero-padded functions, which does not depend on how much empty window surrounds
    them; ``demean=True`` gives the Pearson-style variant). Lags in both directions are searched,
    within ``max_lag_s`` when given, and the peak is refined to sub-sample precision with a
    parabola. ``lag_s > 0`` means the estimate is late: ``estimate(t) ~ truth(t - lag_s)`` on the
    absolute time axes set by ``estimate_time_start`` and ``truth_time_start``. ``absolute``
    allows an estimate of the opposite sign (largest ``|cc|``; the signed value is returned).
    """
    rate_e = _check_rate(sampling_rate, "stf_correlation estimate")
    rate_t = _check_rate(truth_sampling_rate if truth_sampling_rate is not None else rate_e, "stf_correlation truth")
    estimate = resample_to_rate(_as_signal(estimate, "stf_correlation estimate"), rate_e, rate_t)
    truth = _as_signal(truth, "stf_correlation truth")
    cc = cross_correlate(estimate, truth, normalize=True, demean=demean)
    lags = correlation_lags(estimate.shape[-1], truth.shape[-1]) / rate_t + (estimate_time_start - truth_time_start)
    score = np.abs(cc) if absolute else cc.copy()
    if max_lag_s is not None:
        if max_lag_s < 0:
            raise InputError(f"stf_correlation: max_lag_s must be >= 0, got {max_lag_s}")
        outside = np.abs(lags) > max_lag_s + 1e-9 / rate_t
        if outside.all():
            raise InputError(f"stf_correlation: no lag within max_lag_s = {max_lag_s} s given the time starts")
        score[..., outside] = -np.inf
    peak = np.argmax(score, axis=-1)
    pick = lambda a, k: np.take_along_axis(a, k[..., None], axis=-1)[..., 0]  # noqa: E731
    centre, value = pick(score, peak), pick(cc, peak)
    left = pick(score, np.clip(peak - 1, 0, None))
    right = pick(score, np.clip(peak + 1, None, cc.shape[-1] - 1))
    curvature = left - 2.0 * centre + right
    ok = (peak > 0) & (peak < cc.shape[-1] - 1) & np.isfinite(left) & np.isfinite(right) & (curvature < 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = np.where(ok, 0.5 * (left - right) / np.where(ok, curvature, -1.0), 0.0)
        refined = np.where(ok, centre - 0.25 * (left - right) * delta, centre)
    value = np.sign(value) * refined if absolute else refined
    lag = lags[peak] + delta / rate_t
    return np.minimum(value, 1.0) if not absolute else np.clip(value, -1.0, 1.0), lag


# --------------------------------------------------------------------------------- duration
def stf_duration(stf, sampling_rate: float, *, lower: float = 0.05, upper: float = 0.95, measure: str = "abs",
                 floor: float = 0.0, time_start: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Duration of ``stf`` ``(..., T)``: ``(duration, t_lower, t_upper)`` in seconds.

    Each sample is spread evenly over its interval ``[n, n + 1) / fs`` (how the synthetic truth is
    sampled); ``t_q`` is where the normalised cumulative weight reaches ``q``, interpolated
    linearly inside the interval, and ``duration = t_upper - t_lower``. The weight is ``|x|``
    (``measure="abs"``: the cumulative |moment| of a moment-rate function) or ``x^2``
    (``measure="energy"``: for envelopes and noisy estimates, where it discounts the low-level
    noise). A boxcar of length ``D`` has ``duration = (upper - lower) D``, i.e. ``0.9 D`` by
    default. Samples whose ``|x|`` is below ``floor`` times the maximum are ignored (0 keeps all).
    An all-zero STF has NaN duration.
    """
    rate = _check_rate(sampling_rate, "stf_duration")
    x = _as_signal(stf, "stf_duration input")
    if not 0.0 <= lower < upper <= 1.0:
        raise InputError(f"stf_duration: need 0 <= lower < upper <= 1, got lower={lower}, upper={upper}")
    if measure not in ("abs", "energy"):
        raise InputError(f"stf_duration: measure must be 'abs' or 'energy', got {measure!r}")
    magnitude = np.abs(x)
    magnitude = np.where(magnitude >= floor * magnitude.max(axis=-1, keepdims=True), magnitude, 0.0)
    weight = magnitude if measure == "abs" else magnitude ** 2
    total = weight.sum(axis=-1, keepdims=True)
    cumulative = np.concatenate([np.zeros_like(total), np.cumsum(weight, axis=-1)], axis=-1)
    cumulative = np.divide(cumulative, total, out=np.full_like(cumulative, np.nan), where=total > 0)

    def crossing(q, strict):
        # First interval edge k with C_k > q (lower point) or >= q (upper point): the crossing
        # lies in interval k - 1; strictness puts q = 0 and q = 1 at the ends of the support.
        reached = cumulative > q if strict else cumulative >= q - 1e-12
        k = np.clip(np.argmax(reached, axis=-1), 1, None)
        c0 = np.take_along_axis(cumulative, (k - 1)[..., None], axis=-1)[..., 0]
        c1 = np.take_along_axis(cumulative, k[..., None], axis=-1)[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(c1 > c0, (q - c0) / (c1 - c0), 0.0)
        return time_start + (k - 1 + np.clip(frac, 0.0, 1.0)) / rate

    valid = total[..., 0] > 0
    with np.errstate(invalid="ignore"):  # NaN cumulative of all-zero rows
        t_lo = np.where(valid, crossing(lower, True), np.nan)
        t_hi = np.where(valid, crossing(upper, False), np.nan)
    return t_hi - t_lo, t_lo, t_hi


def duration_error(estimate, truth, *, sampling_rate: float, truth_sampling_rate: float | None = None,
                   **duration_kwargs) -> np.ndarray:
    """Estimated minus true duration (seconds), both measured by :func:`stf_duration` with the same
    ``duration_kwargs`` (each on its own sampling rate)."""
    rate_t = truth_sampling_rate if truth_sampling_rate is not None else sampling_rate
    est, _, _ = stf_duration(estimate, sampling_rate, **duration_kwargs)
    true, _, _ = stf_duration(truth, rate_t, **duration_kwargs)
    return est - true


# ------------------------------------------------------------------------------- sub-events
def subevent_peak_times(onsets, durations) -> np.ndarray:
    """Time of each sub-event's peak: the middle of its support (the apex of a triangle, the centre
    of a boxcar), ``onset + duration / 2``; NaN padding stays NaN."""
    return np.asarray(onsets, dtype=np.float64) + 0.5 * np.asarray(durations, dtype=np.float64)


def truth_subevent_times(events) -> list[np.ndarray]:
    """Per event, the true sub-event peak times (seconds from the STF origin) from the ``events``
    table of :func:`seisjax.data.synthetic.read_truth` (columns ``subevent_onset_s_<j>`` and
    ``subevent_duration_s_<j>``, NaN-padded)."""
    onset_cols = sorted(c for c in events.columns if c.startswith("subevent_onset_s_"))
    duration_cols = [c.replace("onset", "duration") for c in onset_cols]
    missing = [c for c in duration_cols if c not in events.columns]
    if not onset_cols or missing:
        raise InputError("truth events table: need subevent_onset_s_<j> and subevent_duration_s_<j> columns "
                         f"(missing {missing or 'subevent_onset_s_*'})")
    times = subevent_peak_times(events[onset_cols].to_numpy(float), events[duration_cols].to_numpy(float))
    return [row[np.isfinite(row)] for row in times]


def detect_subevents(stf, sampling_rate: float, *, prominence: float = 0.1, time_start: float = 0.0,
                     min_separation_s: float | None = None, orient: bool = True, timing: str = "centre") -> np.ndarray:
    """Times (seconds) of the sub-events of a 1-D ``stf``: its peaks by
    :func:`scipy.signal.find_peaks` with a prominence of at least ``prominence`` times the maximum
    (and at least ``min_separation_s`` apart).

    ``timing="centre"`` (default) dates each peak at the middle of its width at half prominence
    (:func:`scipy.signal.peak_widths`, interpolated): the apex of a triangle, the middle of a
    (smoothed) boxcar whose flat top would make its argmax arbitrary; this matches
    :func:`subevent_peak_times`. ``timing="apex"`` takes the maximum refined with a parabola.
    With ``orient`` a signed estimate whose largest ``|value|`` is negative is flipped first (the
    sign of a stack is a convention)."""
    rate = _check_rate(sampling_rate, "detect_subevents")
    x = _as_signal(stf, "detect_subevents input")
    if x.ndim != 1:
        raise InputError(f"detect_subevents: expected one STF (1-D), got shape {x.shape}")
    if timing not in ("centre", "apex"):
        raise InputError(f"detect_subevents: timing must be 'centre' or 'apex', got {timing!r}")
    if orient and x[np.argmax(np.abs(x))] < 0:
        x = -x
    top = x.max()
    if top <= 0:
        return np.zeros(0)
    distance = None if min_separation_s is None else max(1, int(round(min_separation_s * rate)))
    peaks, _ = scipy.signal.find_peaks(x, prominence=prominence * top, distance=distance)
    if timing == "centre":
        _, _, left, right = scipy.signal.peak_widths(x, peaks, rel_height=0.5)
        return time_start + 0.5 * (left + right) / rate
    inner = (peaks > 0) & (peaks < len(x) - 1)
    left, centre, right = x[np.clip(peaks - 1, 0, None)], x[peaks], x[np.clip(peaks + 1, None, len(x) - 1)]
    curvature = left - 2.0 * centre + right
    ok = inner & (curvature < 0)
    delta = np.where(ok, 0.5 * (left - right) / np.where(ok, curvature, -1.0), 0.0)
    return time_start + (peaks + delta) / rate


def match_subevents(detected, true, *, max_dt: float | None = None) -> dict:
    """One-to-one matching of ``detected`` to ``true`` sub-event times that minimises the total
    ``|dt|`` (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`); a pair further
    apart than ``max_dt`` seconds counts as not found.

    Returns ``mean_abs_dt`` (s, NaN when nothing matched), ``fraction_found`` (matched / true; NaN
    without true sub-events), ``n_true``, ``n_detected``, ``n_matched`` and ``pairs`` (index into
    detected, index into true, dt = detected - true).
    """
    detected = np.asarray(detected, dtype=np.float64).reshape(-1)
    true = np.asarray(true, dtype=np.float64).reshape(-1)
    true = true[np.isfinite(true)]
    pairs: list[tuple[int, int, float]] = []
    if len(detected) and len(true):
        cost = np.abs(detected[:, None] - true[None, :])
        rows, cols = scipy.optimize.linear_sum_assignment(cost)
        pairs = [(int(r), int(c), float(detected[r] - true[c])) for r, c in zip(rows, cols)
                 if max_dt is None or cost[r, c] <= max_dt]
    dts = np.array([abs(p[2]) for p in pairs])
    return {
        "mean_abs_dt": float(dts.mean()) if len(dts) else math.nan,
        "fraction_found": len(pairs) / len(true) if len(true) else math.nan,
        "n_true": len(true), "n_detected": len(detected), "n_matched": len(pairs), "pairs": pairs,
    }


def subevent_timing_error(estimate, true_times, sampling_rate: float, *, time_start: float = 0.0,
                          lag_s: float = 0.0, prominence: float = 0.1, max_dt_s: float | None = None,
                          min_separation_s: float | None = None, timing: str = "centre") -> dict:
    """Sub-event timing of a 1-D ``estimate``: its peaks (:func:`detect_subevents`), moved onto the
    truth's clock by subtracting ``lag_s`` (the lag of :func:`stf_correlation`: the absolute origin
    of an estimate is not known, only its alignment with the truth), matched to ``true_times``
    (:func:`match_subevents`)."""
    detected = detect_subevents(estimate, sampling_rate, prominence=prominence, time_start=time_start,
                                min_separation_s=min_separation_s, timing=timing) - lag_s
    return match_subevents(detected, true_times, max_dt=max_dt_s)


# ------------------------------------------------------------------------------- time shifts
def time_shift_rms(estimated, true, *, axis: int = -1) -> np.ndarray:
    """RMS (seconds) of per-trace estimated time shifts against true timing errors along ``axis``,
    after removing each one's mean (the absolute origin is not recoverable; only relative timing
    is). Entries where either is NaN (masked or missing traces) are left out of both means and the
    RMS; a group with no valid entry gives NaN."""
    est = np.asarray(estimated, dtype=np.float64)
    tru = np.asarray(true, dtype=np.float64)
    try:
        est, tru = np.broadcast_arrays(est, tru)
    except ValueError:
        raise InputError(f"time_shift_rms: shapes {np.shape(estimated)} and {np.shape(true)} do not match") from None
    valid = np.isfinite(est) & np.isfinite(tru)
    count = valid.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(valid, est - tru, 0.0)
        diff = np.where(valid, diff - diff.sum(axis=axis, keepdims=True) / count, 0.0)
        rms = np.sqrt((diff ** 2).sum(axis=axis, keepdims=True) / count)
    return np.squeeze(np.where(count > 0, rms, np.nan), axis=axis)


# -------------------------------------------------------------------------------- SNR table
def snr_bin_labels(edges: Sequence[float] = SNR_EDGES) -> list[str]:
    """Labels of the bins cut by increasing ``edges``: ``<e0``, ``e0-e1``, ..., ``>=e_last``."""
    fmt = lambda v: f"{v:g}"  # noqa: E731
    return ([f"<{fmt(edges[0])}"] + [f"{fmt(a)}-{fmt(b)}" for a, b in zip(edges[:-1], edges[1:])]
            + [f">={fmt(edges[-1])}"])


def snr_table(records, *, snr_key: str = "snr", metrics: Sequence[str] | None = None,
              group_by: str | Sequence[str] | None = None, edges: Sequence[float] = SNR_EDGES,
              statistics: Sequence[str] = ("mean",)) -> list[dict]:
    """Aggregate per-event or per-trace metrics by SNR bin.

    ``records``: a list of dicts, a dict of columns or a pandas DataFrame, one row per scored item,
    with an ``snr_key`` column (amplitude SNR) and metric columns (``metrics``: default every
    numeric column except the SNR and the group keys). ``group_by`` (e.g. ``"method"``) makes one
    block of bins per group. Bins are ``[e_k, e_k+1)`` from :func:`snr_bin_labels`, all listed
    even when empty; rows whose SNR is NaN go to an extra ``"n/a"`` bin instead of being dropped.

    Returns a list of dicts: the group keys, ``snr_bin``, ``count`` (rows in the bin) and, for each
    metric, its mean over the finite values as ``<metric>`` plus ``<metric>_<stat>`` for the other
    ``statistics`` (``median``, ``std``, ``min``, ``max``, ``count``: finite values).
    """
    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(
        records if isinstance(records, Mapping) else list(records))
    edges = [float(e) for e in edges]
    if not edges or any(b <= a for a, b in zip(edges[:-1], edges[1:])):
        raise InputError(f"snr_table: bin edges must be a non-empty increasing sequence, got {edges}")
    if snr_key not in frame.columns:
        raise InputError(f"snr_table: no {snr_key!r} column among {list(frame.columns)}")
    keys = [] if group_by is None else [group_by] if isinstance(group_by, str) else list(group_by)
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise InputError(f"snr_table: group_by columns {missing} not among {list(frame.columns)}")
    if metrics is None:
        metrics = [c for c in frame.columns if c != snr_key and c not in keys
                   and pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    unknown = [m for m in metrics if m not in frame.columns]
    if unknown:
        raise InputError(f"snr_table: metric columns {unknown} not among {list(frame.columns)}")
    known = {"mean", "median", "std", "min", "max", "count"}
    if set(statistics) - known:
        raise InputError(f"snr_table: unknown statistics {sorted(set(statistics) - known)}; use {sorted(known)}")

    snr = pd.to_numeric(frame[snr_key], errors="coerce").to_numpy(float)
    labels = snr_bin_labels(edges)
    bin_index = np.searchsorted(edges, snr, side="right")
    binned = np.array(labels, dtype=object)[np.clip(bin_index, 0, len(labels) - 1)]
    label_of_row = np.where(np.isfinite(snr), binned, "n/a")
    all_labels = labels + (["n/a"] if (label_of_row == "n/a").any() else [])
    if keys:
        indices = frame.groupby(keys, sort=False, dropna=False).indices
        groups = [(g if isinstance(g, tuple) else (g,), idx) for g, idx in indices.items()]
    else:
        groups = [((), np.arange(len(frame)))]
    rows = []
    for key, selection in groups:
        in_group = np.zeros(len(frame), bool)
        in_group[selection] = True
        for label in all_labels:
            sel = in_group & (label_of_row == label)
            row = dict(zip(keys, key))
            row.update(snr_bin=label, count=int(sel.sum()))
            for metric in metrics:
                values = pd.to_numeric(frame[metric], errors="coerce").to_numpy(float)[sel]
                values = values[np.isfinite(values)]
                for stat in statistics:
                    name = metric if stat == "mean" else f"{metric}_{stat}"
                    if stat == "count":
                        row[name] = int(len(values))
                    elif len(values) == 0:
                        row[name] = math.nan
                    else:
                        row[name] = float(getattr(np, stat)(values))
            rows.append(row)
    return rows


def format_table(rows: Sequence[Mapping], *, style: str = "markdown", float_format: str = "{:.3g}") -> str:
    """``rows`` (e.g. from :func:`snr_table`) as aligned plain text (``style="text"``) or a
    Markdown table (``style="markdown"``); columns in first-seen order, floats with ``float_format``."""
    if style not in ("markdown", "text"):
        raise InputError(f"format_table: style must be 'markdown' or 'text', got {style!r}")
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "nan" if not np.isfinite(v) else float_format.format(v)
        return "" if v is None else str(v)

    body = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]
    numeric = [all(_is_number(r[i]) for r in body if r[i]) and any(r[i] for r in body) for i in range(len(columns))]
    just = lambda text, i: text.rjust(widths[i]) if numeric[i] else text.ljust(widths[i])  # noqa: E731
    if style == "text":
        lines = ["  ".join(just(c, i) for i, c in enumerate(columns))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(just(v, i) for i, v in enumerate(r)) for r in body]
        return "\n".join(lines)
    lines = ["| " + " | ".join(just(c, i) for i, c in enumerate(columns)) + " |"]
    lines.append("|" + "|".join((("-" * (w + 1)) + ":") if numeric[i] else ("-" * (w + 2))
                                for i, w in enumerate(widths)) + "|")
    lines += ["| " + " | ".join(just(v, i) for i, v in enumerate(r)) + " |" for r in body]
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------- one score
def score_stf(estimate, truth, *, sampling_rate: float, truth_sampling_rate: float | None = None,
              true_subevent_times=None, estimate_time_start: float = 0.0, truth_time_start: float = 0.0,
              max_lag_s: float | None = None, absolute: bool = False, prominence: float = 0.1,
              max_dt_s: float | None = None, duration_measure: str = "abs", duration_floor: float = 0.0) -> dict:
    """Every per-estimate metric of a 1-D ``estimate`` against a 1-D ``truth`` in one dict:
    ``correlation`` and ``lag_s`` (:func:`stf_correlation`), ``duration_s``, ``true_duration_s``,
    ``duration_error_s`` (:func:`stf_duration`, same settings on both), and with
    ``true_subevent_times`` (seconds on the truth's clock) ``subevent_mean_abs_dt_s``,
    ``subevent_fraction_found`` and ``subevent_n_detected`` (peaks dated on the truth's clock with
    the correlation lag). A negatively correlated estimate (``absolute``) is flipped before the
    duration and peaks are measured."""
    rate_t = truth_sampling_rate if truth_sampling_rate is not None else sampling_rate
    cc, lag = stf_correlation(estimate, truth, sampling_rate=sampling_rate, truth_sampling_rate=rate_t,
                              estimate_time_start=estimate_time_start, truth_time_start=truth_time_start,
                              max_lag_s=max_lag_s, absolute=absolute)
    estimate = np.asarray(estimate, dtype=np.float64) * (-1.0 if cc < 0 else 1.0)
    kwargs = dict(measure=duration_measure, floor=duration_floor)
    est_duration, _, _ = stf_duration(estimate, sampling_rate, **kwargs)
    true_duration, _, _ = stf_duration(truth, rate_t, **kwargs)
    out = {"correlation": float(cc), "lag_s": float(lag), "duration_s": float(est_duration),
           "true_duration_s": float(true_duration), "duration_error_s": float(est_duration - true_duration)}
    if true_subevent_times is not None:
        timing = subevent_timing_error(estimate, true_subevent_times, sampling_rate, time_start=estimate_time_start,
                                       lag_s=float(lag), prominence=prominence, max_dt_s=max_dt_s)
        out.update(subevent_mean_abs_dt_s=timing["mean_abs_dt"], subevent_fraction_found=timing["fraction_found"],
                   subevent_n_detected=timing["n_detected"])
    return out
