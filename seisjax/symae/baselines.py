"""What a seismologist does without SymAE: align the traces of a group, stack them, read the STF.

- :func:`mccc`: multi-channel cross-correlation (VanDecar & Crosson 1990). Every pair of traces is
  cross-correlated, the sub-sample lag of each peak (within ``max_lag``) gives one equation
  ``t_i - t_j = tau_ij``, and the per-trace delays are the least-squares solution with the
  constraint that they sum to zero (the absolute origin is not in the data). The residuals
  ``r_ij = tau_ij - (t_i - t_j)`` give each trace's error
  ``sigma_i = sqrt(sum_j r_ij^2 / (n_i - 1))`` (n_i pairs used; ``n - 2`` in the paper).
- :func:`iccs`: iterative cross-correlation and stack: correlate every trace with the current stack,
  shift it by the sub-sample lag (Fourier shift), restack, until the lags stop changing.
- :func:`linear_stack`, :func:`phase_weighted_stack` (Schimmel & Paulssen 1997).
- :func:`baseline_stf`: align + stack + normalised Hilbert envelope: the baseline STF estimates that
  ``seisjax stf`` and ``seisjax eval`` put beside SymAE's.

Shapes: traces are ``(..., N, T)``: any leading dimensions are independent groups (e.g. (event,
pixel)) processed together. Groups with different numbers of traces are padded to a common ``N``
and described by a boolean ``mask`` ``(..., N)``; masked traces take no part and get NaN delays.

Sign convention (as :mod:`seisjax.ops.xcorr`): a delay ``d_i > 0`` means trace ``i`` arrives
later than the group's mean; the aligned trace is the input shifted by ``-d_i``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.signal

from seisjax.data.stft import hilbert_envelope
from seisjax.errors import InputError
from seisjax.ops.fourier import delay_padded
from seisjax.ops.xcorr import xcorr_max

__all__ = ["MCCCResult", "mccc", "ICCSResult", "iccs", "linear_stack",
           "phase_weighted_stack", "BASELINE_METHODS", "baseline_stf"]

BASELINE_METHODS = ("mccc_linear", "mccc_pws", "iccs_linear", "iccs_pws")

# Pair cross-correlations are computed in chunks of groups holding about this many samples, so
# memory stays bounded for many (event, pixel) groups of many traces.
_PAIR_SAMPLES_PER_CHUNK = 4_000_000


# ------------------------------------------------------------------------------------- helpers
def _prepare(traces, mask, what: str) -> tuple[np.ndarray, np.ndarray]:
    """float64 traces ``(..., N, T)`` with masked traces zeroed, and the boolean mask ``(..., N)``."""
    x = np.asarray(traces)
    if x.ndim < 2 or x.shape[-1] < 2 or x.shape[-2] < 1:
        raise InputError(f"{what}: expected traces of shape (..., N traces, T samples), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise InputError(f"{what}: expected real traces, got dtype {x.dtype}")
    x = x.astype(np.float64)
    if mask is None:
        mask = np.ones(x.shape[:-1], dtype=bool)
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape[:-1]:
            raise InputError(f"{what}: mask has shape {mask.shape}, expected {x.shape[:-1]} (traces without samples)")
    finite = np.isfinite(x).all(axis=-1)
    bad = np.argwhere(mask & ~finite)
    if len(bad):
        raise InputError(f"{what}: trace {tuple(int(i) for i in bad[0])} holds NaN or inf samples "
                         f"({len(bad)} such traces); mask them out with the mask argument")
    x = np.where(mask[..., None], x, 0.0)
    return x, mask


def _polarity_from_signs(correlation: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-trace polarity (+1/-1) whose products best explain the signs of the pair correlations:
    the signs of the leading eigenvector of the correlation matrix, oriented so that most valid
    traces keep their sign."""
    c = np.where(mask[..., :, None] & mask[..., None, :], correlation, 0.0)
    _, vectors = np.linalg.eigh(c)
    lead = vectors[..., -1]
    polarity = np.where(lead < 0, -1.0, 1.0)
    majority = np.sum(np.where(mask, polarity, 0.0), axis=-1, keepdims=True)
    polarity = polarity * np.where(majority < 0, -1.0, 1.0)
    return np.where(mask, polarity, 1.0)


# ---------------------------------------------------------------------------------------- MCCC
class MCCCResult(NamedTuple):
    """Output of :func:`mccc` (all in samples; leading dimensions are the groups)."""

    delays: np.ndarray  # (..., N) zero mean over the valid traces; NaN for masked traces
    errors: np.ndarray  # (..., N) residual-based standard error (VanDecar & Crosson eq. 10)
    correlation: np.ndarray  # (..., N, N) signed peak correlation of each pair, 1 on the diagonal
    lags: np.ndarray  # (..., N, N) measured pair lags tau_ij (trace i later than j when > 0)
    polarity: np.ndarray  # (..., N) +1/-1 (all +1 unless absolute=True)


def mccc(traces, *, max_lag: float | None = None, absolute: bool = False,
         min_correlation: float | None = None, mask=None) -> MCCCResult:
    """Multi-channel cross-correlation delays of ``traces`` ``(..., N, T)`` (VanDecar & Crosson 1990).

    ``max_lag`` (samples, default ``T // 4``) bounds the pair lag search. ``absolute`` takes the
    peak of ``|cc|`` so that traces of opposite polarity align too; the polarity of each trace is
    then estimated from the signs of the pair correlations. Pairs whose ``|cc|`` is below
    ``min_correlation`` are left out of the least squares (a trace that loses all its pairs gets a
    zero delay and a NaN error). ``mask`` ``(..., N)`` marks the traces that exist (padding for
    groups of different sizes).

    The solution minimises ``sum_{i<j} (t_i - t_j - tau_ij)^2`` subject to ``sum_i t_i = 0``: the
    normal equations ``L t = b`` (L the Laplacian of the pair graph, ``b_i = sum_j tau_ij``) plus
    the constraint row give ``(L + m m^T) t = b``; with every pair used this is
    ``t_i = mean_j tau_ij`` (the paper's closed form).
    """
    x, mask = _prepare(traces, mask, "mccc traces")
    *lead, n, length = x.shape
    if n < 2:
        raise InputError(f"mccc: need at least 2 traces per group, got {n}")
    if max_lag is None:
        max_lag = length // 4
    if max_lag < 0:
        raise InputError(f"mccc: max_lag must be >= 0 samples, got {max_lag}")
    iu, ju = np.triu_indices(n, 1)
    flat = x.reshape(-1, n, length)
    groups = flat.shape[0]
    chunk = max(1, _PAIR_SAMPLES_PER_CHUNK // (len(iu) * 2 * length))
    pair_lag = np.empty((groups, len(iu)))
    pair_cc = np.empty((groups, len(iu)))
    for start in range(0, groups, chunk):
        block = flat[start:start + chunk]
        # A peak on the max_lag edge (e.g. zero padding traces) makes xcorr_max compute inf * 0
        # in a branch it then discards: silence that warning.
        with np.errstate(invalid="ignore"):
            pair_lag[start:start + chunk], pair_cc[start:start + chunk] = xcorr_max(
                block[:, iu], block[:, ju], max_lag=max_lag, absolute=absolute)
    pair_lag = pair_lag.reshape(*lead, len(iu))
    pair_cc = pair_cc.reshape(*lead, len(iu))

    lags = np.zeros((*lead, n, n))
    lags[..., iu, ju], lags[..., ju, iu] = pair_lag, -pair_lag
    correlation = np.zeros((*lead, n, n))
    correlation[..., iu, ju] = correlation[..., ju, iu] = pair_cc
    both = mask[..., :, None] & mask[..., None, :]
    used = both & ~np.eye(n, dtype=bool)
    if min_correlation is not None:
        used &= np.abs(correlation) >= min_correlation
    weight = used.astype(np.float64)
    correlation = np.where(both, correlation, np.nan)
    correlation[..., np.arange(n), np.arange(n)] = np.where(mask, 1.0, np.nan)

    m = mask.astype(np.float64)
    laplacian = np.eye(n) * weight.sum(axis=-1)[..., None] - weight
    # Masked traces get an identity row so the system stays regular and their delay is 0.
    system = laplacian + m[..., :, None] * m[..., None, :] + np.eye(n) * (1.0 - m)[..., None]
    rhs = np.sum(weight * lags, axis=-1)
    # pinv rather than solve: a pair graph split by min_correlation is singular.
    delays = np.einsum("...ij,...j->...i", np.linalg.pinv(system), rhs)

    residual = lags - (delays[..., :, None] - delays[..., None, :])
    n_pairs = weight.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        errors = np.sqrt(np.sum(weight * residual ** 2, axis=-1) / (n_pairs - 1.0))
    errors = np.where(n_pairs > 1, errors, np.nan)
    polarity = _polarity_from_signs(np.nan_to_num(correlation), mask) if absolute else np.ones_like(m)
    return MCCCResult(delays=np.where(mask, delays, np.nan), errors=np.where(mask, errors, np.nan),
                      correlation=correlation, lags=np.where(both, lags, np.nan), polarity=polarity)


# ---------------------------------------------------------------------------------------- ICCS
class ICCSResult(NamedTuple):
    """Output of :func:`iccs` (samples; leading dimensions are the groups)."""

    delays: np.ndarray  # (..., N) zero mean over the valid traces; NaN for masked traces
    stack: np.ndarray  # (..., T) linear stack of the aligned, polarity-corrected traces
    aligned: np.ndarray  # (..., N, T) traces shifted by -delays (masked traces are zeros)
    correlation: np.ndarray  # (..., N) peak correlation of each trace with the final stack
    polarity: np.ndarray  # (..., N) +1/-1 (all +1 unless absolute=True)
    n_iter: np.ndarray  # (...) iterations until the group's lags changed by less than tol


def iccs(traces, *, reference: str | int = "stack", max_lag: float | None = None, absolute: bool = False,
         max_iter: int = 20, tol: float = 0.01, mask=None) -> ICCSResult:
    """Iterative cross-correlation and stack of ``traces`` ``(..., N, T)``.

    Starts from ``reference``: ``"stack"`` (the mean of the input traces) or the index of a trace
    (taken from every group). Each iteration correlates every input trace with the current stack
    (lag search within ``max_lag`` samples, default ``T // 4``; parabolic sub-sample peak),
    removes the mean of the lags over the valid traces (the origin is arbitrary; this keeps the
    stack from drifting), shifts the traces by minus their lag with a Fourier shift and restacks.
    Each group stops when none of its lags changes by more than ``tol`` samples (it then drops out
    of the computation), or after ``max_iter`` iterations (``n_iter == max_iter``: not converged;
    at low SNR the lags can keep jittering by a fraction of a sample). ``absolute`` aligns on
    ``|cc|`` and flips traces whose correlation with the stack is negative (start from a trace
    then: the plain stack of mixed polarities may cancel).
    """
    x, mask = _prepare(traces, mask, "iccs traces")
    *lead, n, length = x.shape
    if max_lag is None:
        max_lag = length // 4
    if max_iter < 1:
        raise InputError(f"iccs: max_iter must be >= 1, got {max_iter}")
    m = mask.astype(np.float64)
    count = np.maximum(m.sum(axis=-1), 1.0)
    if isinstance(reference, str):
        if reference != "stack":
            raise InputError(f"iccs: reference must be 'stack' or a trace index, got {reference!r}")
        stack = x.sum(axis=-2) / count[..., None]
    else:
        index = int(reference)
        if not -n <= index < n:
            raise InputError(f"iccs: reference trace {index} out of range for groups of {n} traces")
        if not mask[..., index].all():
            raise InputError(f"iccs: reference trace {index} is masked out in some group")
        stack = x[..., index, :].copy()  # a view would let the restacking overwrite that trace
    # Groups are iterated on until each converges: finished groups drop out of the work.
    x, m, mask = x.reshape(-1, n, length), m.reshape(-1, n), mask.reshape(-1, n)
    count, stack = count.reshape(-1), stack.reshape(-1, length)
    groups = x.shape[0]
    delays, value = np.zeros((groups, n)), np.zeros((groups, n))
    polarity = np.ones((groups, n))
    aligned = np.zeros_like(x)
    n_iter = np.zeros(groups, dtype=int)
    active = np.ones(groups, dtype=bool)
    for iteration in range(1, max_iter + 1):
        idx = np.flatnonzero(active)
        traces_now, weight = x[idx], m[idx]
        with np.errstate(invalid="ignore"):  # see mccc
            lag, val = xcorr_max(traces_now, stack[idx][:, None, :], max_lag=max_lag, absolute=absolute)
        lag = lag - np.sum(lag * weight, axis=-1, keepdims=True) / count[idx, None]
        lag = np.where(mask[idx], lag, 0.0)
        change = np.max(np.abs(lag - delays[idx]), axis=-1)
        delays[idx], value[idx], n_iter[idx] = lag, val, iteration
        if absolute:
            polarity[idx] = np.where(mask[idx] & (val < 0), -1.0, 1.0)
        aligned[idx] = delay_padded(traces_now, -lag) * polarity[idx, :, None]
        stack[idx] = aligned[idx].sum(axis=-2) / count[idx, None]
        active[idx[change < tol]] = False
        if not active.any():
            break
    correlation = np.where(mask, np.abs(value) if absolute else value, np.nan)
    shape = tuple(lead)
    return ICCSResult(delays=np.where(mask, delays, np.nan).reshape(*shape, n), stack=stack.reshape(*shape, length),
                      aligned=aligned.reshape(*shape, n, length), correlation=correlation.reshape(*shape, n),
                      polarity=polarity.reshape(*shape, n), n_iter=n_iter.reshape(shape))


# -------------------------------------------------------------------------------------- stacks
def linear_stack(aligned, *, mask=None) -> np.ndarray:
    """Mean over the traces (axis -2) of ``aligned`` ``(..., N, T)``, counting only masked-in traces."""
    x, mask = _prepare(aligned, mask, "linear_stack traces")
    return x.sum(axis=-2) / np.maximum(mask.sum(axis=-1), 1)[..., None]


def phase_weighted_stack(aligned, *, nu: float = 2.0, mask=None, return_coherence: bool = False):
    """Phase-weighted stack (Schimmel & Paulssen 1997) of ``aligned`` ``(..., N, T)``.

    The linear stack times ``c(t)^nu``, where ``c(t) = |mean_j exp(i phi_j(t))|`` is the coherence
    of the instantaneous phases of the traces' analytic signals: 1 where all traces are in phase,
    about ``1/sqrt(N)`` for incoherent noise, so the weight keeps the common signal and suppresses
    the rest. With ``return_coherence`` returns ``(stack, c)``.
    """
    x, mask = _prepare(aligned, mask, "phase_weighted_stack traces")
    if nu < 0:
        raise InputError(f"phase_weighted_stack: nu must be >= 0, got {nu}")
    analytic = scipy.signal.hilbert(x, axis=-1)
    amplitude = np.abs(analytic)
    # A zero sample (or a masked trace) has no phase: it contributes nothing to the phase sum.
    phasor = np.divide(analytic, amplitude, out=np.zeros_like(analytic), where=amplitude > 0)
    count = np.maximum(mask.sum(axis=-1), 1)[..., None]
    coherence = np.abs(phasor.sum(axis=-2)) / count
    stack = x.sum(axis=-2) / count * coherence ** nu
    return (stack, coherence) if return_coherence else stack


# ------------------------------------------------------------------------------ baseline STF
def baseline_stf(traces, sampling_rate: float, method: str = "mccc_pws", *, max_lag_s: float | None = None,
                 absolute: bool = False, nu: float = 2.0, min_correlation: float | None = None,
                 mask=None, iccs_reference: str | int = "stack", iccs_max_iter: int = 20) -> dict:
    """Baseline STF estimate of each group of ``traces`` ``(..., N, T)`` sampled at ``sampling_rate`` Hz.

    ``method`` is ``"<alignment>_<stack>"`` with alignment ``mccc`` (:func:`mccc`, then a Fourier
    shift of each trace by minus its delay) or ``iccs`` (:func:`iccs`), and stack ``linear`` or
    ``pws`` (:func:`phase_weighted_stack` with exponent ``nu``). ``max_lag_s`` (seconds, default a
    quarter of the window) bounds the lags; ``absolute`` lets traces of opposite polarity align
    (flipped before stacking).

    Returns a dict of arrays (leading dimensions are the groups):
    ``stf`` ``(..., T)``: the stack with its sign, divided by its maximum ``|value|``;
    ``envelope`` ``(..., T)``: the Hilbert envelope of the stack divided by its maximum;
    ``delays`` ``(..., N)``: per-trace delays in seconds (zero mean, NaN for masked traces);
    ``errors`` ``(..., N)``: MCCC standard errors in seconds (NaN for ICCS);
    ``polarity`` ``(..., N)``; ``aligned`` ``(..., N, T)``: the aligned, polarity-corrected traces;
    ``time`` ``(T,)``: seconds from the window start.
    """
    if method not in BASELINE_METHODS:
        raise InputError(f"baseline_stf: unknown method {method!r}; choose one of {', '.join(BASELINE_METHODS)}")
    if not (np.isfinite(sampling_rate) and sampling_rate > 0):
        raise InputError(f"baseline_stf: sampling_rate must be a positive number of Hz, got {sampling_rate}")
    x, mask = _prepare(traces, mask, "baseline_stf traces")
    max_lag = None if max_lag_s is None else max_lag_s * sampling_rate
    alignment, stacking = method.split("_")
    if alignment == "mccc":
        result = mccc(x, max_lag=max_lag, absolute=absolute, min_correlation=min_correlation, mask=mask)
        delays, errors, polarity = result.delays, result.errors, result.polarity
        aligned = delay_padded(x, -np.nan_to_num(delays)) * polarity[..., None]
    else:
        result = iccs(x, reference=iccs_reference, max_lag=max_lag, absolute=absolute,
                      max_iter=iccs_max_iter, mask=mask)
        delays, polarity, aligned = result.delays, result.polarity, result.aligned
        errors = np.full_like(delays, np.nan)
    aligned = np.where(mask[..., None], aligned, 0.0)
    stack = linear_stack(aligned, mask=mask) if stacking == "linear" else \
        phase_weighted_stack(aligned, nu=nu, mask=mask)
    envelope = hilbert_envelope(stack)
    peak = np.max(np.abs(stack), axis=-1, keepdims=True)
    env_peak = np.max(envelope, axis=-1, keepdims=True)
    return {
        "stf": np.divide(stack, peak, out=np.zeros_like(stack), where=peak > 0),
        "envelope": np.divide(envelope, env_peak, out=np.zeros_like(envelope), where=env_peak > 0),
        "delays": delays / sampling_rate,
        "errors": errors / sampling_rate,
        "polarity": polarity,
        "aligned": aligned,
        "time": np.arange(x.shape[-1]) / sampling_rate,
    }
