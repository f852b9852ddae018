"""Fixed-length windows around the P arrival, one per trace (the conv AE and DEC families).

A window of ``window`` samples at the target ``sampling_rate`` starts ``pre_p`` samples before
``trace_p_arrival_sample`` (clipped into the trace). A trace at another rate
(``trace_sampling_rate_hz``; the synthetic `local` data mixes 100 Hz and 40 Hz instruments) has only
a segment around P resampled (polyphase), the window plus a quarter window each side, so that the
filter's edge effects fall outside the window. Each component is demeaned and the components
together divided by their largest absolute value, so that their relative amplitudes stay.
"""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly
from tqdm.auto import tqdm

from seisjax.data.dataset import trace_names
from seisjax.errors import InputError

__all__ = ["P_COLUMN", "missing_p_picks", "window_and_normalise", "resampled_segment", "p_windows",
           "dataset_p_windows"]

P_COLUMN = "trace_p_arrival_sample"


def missing_p_picks(dataset, *, reader: str) -> np.ndarray:
    """The rows of ``dataset`` without a P pick (boolean); an InputError naming ``reader`` (what
    windows the traces) when the metadata has no P column at all."""
    meta = dataset.metadata
    if P_COLUMN not in meta.columns:
        raise InputError(f"{dataset.path}: metadata has no {P_COLUMN} column; {reader} windows each trace "
                         "around its P arrival")
    return meta[P_COLUMN].isna().to_numpy()


def window_and_normalise(waveforms: np.ndarray, p_samples: np.ndarray, *, window: int, pre_p: int,
                         names=None) -> np.ndarray:
    """``(B, C, W)`` traces and P samples -> ``(B, window, C)`` float32 windows, demeaned per
    component and scaled by the trace's largest absolute value. Vectorised over the batch.

    A trace with NaN/inf samples becomes zeros, with a warning naming it (one bad trace never
    stops a run, and never passes unnoticed)."""
    waveforms = np.asarray(waveforms, dtype=np.float32)
    batch, _, length = waveforms.shape
    if length < window:
        raise InputError(f"traces of {length} samples are shorter than the window of {window}")
    starts = np.clip(np.round(np.asarray(p_samples, dtype=np.float64)).astype(np.int64) - pre_p, 0, length - window)
    idx = starts[:, None, None] + np.arange(window)[None, None, :]
    cut = np.take_along_axis(waveforms, np.broadcast_to(idx, (batch, waveforms.shape[1], window)), axis=2)
    bad = ~np.isfinite(cut).all(axis=(1, 2))
    if bad.any():
        which = [str(names[i]) if names is not None else f"row {i}" for i in np.flatnonzero(bad)]
        warnings.warn(f"non-finite samples in trace(s) {', '.join(which)}: replaced by zeros", stacklevel=2)
        cut[bad] = 0.0
    cut -= cut.mean(axis=2, keepdims=True)
    scale = np.abs(cut).max(axis=(1, 2), keepdims=True)
    cut /= np.where(scale > 0, scale, 1.0)
    return np.ascontiguousarray(cut.transpose(0, 2, 1))


def resampled_segment(waveforms: np.ndarray, p: np.ndarray, *, rate: float, target: float, window: int,
                      pre_p: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``[P - pre_p - margin, P - pre_p + window + margin)`` (in target samples) at the traces'
    own ``rate``, zero outside the trace, and resample it to ``target`` (polyphase filter, exact
    output length). Returns the resampled segments and the P sample within them."""
    ratio = Fraction(rate / target).limit_denominator(1000)  # original samples per target sample
    den = ratio.denominator
    margin = max(window // 4, den)
    # Lengths and offsets in target samples are multiples of `den`, so that they are whole
    # numbers of original samples and P falls on the resampled grid.
    length = -(-(window + 2 * margin) // den) * den
    lead = int(round((pre_p + margin) / den)) * den  # target samples from segment start to P
    n_orig = int(length * ratio)
    start = np.rint(p).astype(np.int64) - int(lead * ratio)
    index = start[:, None] + np.arange(n_orig)
    inside = (index >= 0) & (index < waveforms.shape[-1])
    segment = np.take_along_axis(waveforms, np.clip(index, 0, waveforms.shape[-1] - 1)[:, None, :], axis=2)
    segment = np.where(inside[:, None, :], segment, 0.0)
    resampled = resample_poly(segment, ratio.denominator, ratio.numerator, axis=-1)[..., :length]
    return resampled, np.full(len(p), float(lead)) + (p - np.rint(p)) / float(ratio)


def p_windows(waveforms: np.ndarray, meta, *, sampling_rate: float, window: int, pre_p: int,
              default_rate: float | None = None) -> np.ndarray:
    """Raw traces ``(B, C, W)`` (zero-padded to the batch's longest) and their metadata rows ->
    ``(B, window, C)`` windows at ``sampling_rate`` (see the module docstring).

    Each row's rate is its ``trace_sampling_rate_hz``, else ``default_rate`` (the dataset's), else
    ``sampling_rate``. Traces are grouped by rate: one vectorised call per group, usually one or two
    per batch."""
    target = float(sampling_rate)
    n = len(meta)
    rates = (meta["trace_sampling_rate_hz"].to_numpy(dtype=np.float64) if "trace_sampling_rate_hz" in meta
             else np.full(n, default_rate or target, dtype=np.float64))
    names = trace_names(meta)
    bad = ~np.isfinite(rates) | (rates <= 0)
    if bad.any():
        raise InputError(f"trace(s) {', '.join(map(str, names[bad][:5]))}: no valid sampling rate")
    p = meta[P_COLUMN].to_numpy(dtype=np.float64)
    out = np.empty((n, window, waveforms.shape[1]), np.float32)
    for rate in np.unique(rates):
        rows = np.flatnonzero(rates == rate)
        group, p_group = waveforms[rows], p[rows]
        if rate != target:
            group, p_group = resampled_segment(group, p_group, rate=float(rate), target=target, window=window,
                                               pre_p=pre_p)
        out[rows] = window_and_normalise(group, p_group, window=window, pre_p=pre_p, names=names[rows])
    return out


def dataset_p_windows(dataset, *, sampling_rate: float, window: int, pre_p: int, chunk: int = 1024) -> np.ndarray:
    """Every row of ``dataset`` (a Dataset or a view) as :func:`p_windows` makes them, read
    ``chunk`` traces at a time: ``(N, window, C)`` float32."""
    n = len(dataset)
    parts = []
    for begin in tqdm(range(0, n, chunk), desc="windowing traces", unit="chunk", leave=False, disable=n <= chunk):
        rows = list(range(begin, min(begin + chunk, n)))
        parts.append(p_windows(dataset.get_waveforms(rows), dataset.metadata.iloc[rows], sampling_rate=sampling_rate,
                               window=window, pre_p=pre_p, default_rate=dataset.sampling_rate))
    return np.concatenate(parts)
