"""Cross-correlation of trace pairs (numpy, FFT based, vectorised over any leading dimensions).

Convention (numpy's ``np.correlate(a, b, "full")``): ``cc[k] = sum_n a[n + k] * b[n]`` for lags
``k = -(Wb - 1) ... Wa - 1``. A positive lag means ``a`` is a delayed copy of ``b``:
``a(t) = b(t - lag)``.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from seisjax.errors import InputError

__all__ = ["correlation_lags", "cross_correlate", "xcorr_max"]


def correlation_lags(n_a: int, n_b: int) -> np.ndarray:
    """Lags (samples) of the entries of :func:`cross_correlate` for traces of ``n_a`` and ``n_b``."""
    return np.arange(-(n_b - 1), n_a)


def _as_traces(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise InputError(f"{name}: expected traces of shape (..., samples), got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x).all(axis=-1)) if x.ndim > 1 else np.array([[0]])
        raise InputError(f"{name}: trace {tuple(int(i) for i in bad[0])} holds NaN or inf samples")
    return x


def cross_correlate(a, b, *, normalize: bool = True, demean: bool = True) -> np.ndarray:
    """Full cross-correlation of ``a`` ``(..., Wa)`` with ``b`` ``(..., Wb)`` (leading dimensions
    broadcast: one trace against many, or pair by pair) -> ``(..., Wa + Wb - 1)``; lags from
    :func:`correlation_lags`.

    With ``normalize`` the result is divided by ``sqrt(sum a^2 * sum b^2)`` (after removing the
    means when ``demean``), so it lies in [-1, 1] and equals 1 at the lag where ``a`` is a
    scaled, shifted copy of ``b``. A zero trace correlates to zeros, not NaN.
    """
    a, b = _as_traces(a, "cross_correlate a"), _as_traces(b, "cross_correlate b")
    if demean:
        a = a - a.mean(axis=-1, keepdims=True)
        b = b - b.mean(axis=-1, keepdims=True)
    n_a, n_b = a.shape[-1], b.shape[-1]
    n_fft = scipy.fft.next_fast_len(n_a + n_b - 1, real=True)
    spectrum = scipy.fft.rfft(a, n_fft, axis=-1) * np.conj(scipy.fft.rfft(b, n_fft, axis=-1))
    circular = scipy.fft.irfft(spectrum, n_fft, axis=-1)
    # Negative lags wrap to the end of the circular correlation.
    cc = np.concatenate([circular[..., n_fft - (n_b - 1):], circular[..., :n_a]], axis=-1)
    if normalize:
        energy = np.sqrt(np.sum(a * a, axis=-1) * np.sum(b * b, axis=-1))[..., None]
        cc = np.divide(cc, energy, out=np.zeros_like(cc), where=energy > 0)
    return cc


def xcorr_max(a, b, *, sampling_rate: float | None = None, max_lag: float | None = None,
              subsample: bool = True, absolute: bool = False, normalize: bool = True,
              demean: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Lag and value of the correlation maximum for every pair.

    ``lag > 0`` means ``a`` is delayed with respect to ``b``. The lag is in samples, or in seconds
    when ``sampling_rate`` is given (so is ``max_lag``, which limits the search to
    ``|lag| <= max_lag``). ``subsample`` refines the peak with a parabola through it and its two
    neighbours; ``absolute`` looks for the largest ``|cc|`` (polarity-blind) and returns the signed
    value there.
    """
    cc = cross_correlate(a, b, normalize=normalize, demean=demean)
    n_a, n_b = np.shape(a)[-1], np.shape(b)[-1]
    lags = correlation_lags(n_a, n_b).astype(np.float64)
    score = np.abs(cc) if absolute else cc.copy()
    if max_lag is not None:
        limit = max_lag * sampling_rate if sampling_rate is not None else max_lag
        if limit < 0:
            raise InputError(f"xcorr_max: max_lag must be >= 0, got {max_lag}")
        score[..., np.abs(lags) > limit + 1e-9] = -np.inf
    peak = np.argmax(score, axis=-1)
    value = np.take_along_axis(cc, peak[..., None], axis=-1)[..., 0]
    lag = lags[peak]
    if subsample:
        inner = (peak > 0) & (peak < cc.shape[-1] - 1)
        left = np.take_along_axis(score, np.clip(peak - 1, 0, None)[..., None], axis=-1)[..., 0]
        right = np.take_along_axis(score, np.clip(peak + 1, None, cc.shape[-1] - 1)[..., None], axis=-1)[..., 0]
        centre = np.take_along_axis(score, peak[..., None], axis=-1)[..., 0]
        inner &= np.isfinite(left) & np.isfinite(right)
        curvature = left - 2.0 * centre + right
        ok = inner & (curvature < 0)
        safe = np.where(ok, curvature, -1.0)
        delta = np.where(ok, 0.5 * (left - right) / safe, 0.0)
        refined = centre - 0.25 * (left - right) * delta
        lag = lag + delta
        value = np.where(ok, np.sign(value) * refined if absolute else refined, value)
    if sampling_rate is not None:
        lag = lag / sampling_rate
    return lag, value
