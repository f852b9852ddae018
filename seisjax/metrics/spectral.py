"""Metrics for spectrogram autoencoders: reconstruction quality and generation trends (numpy).

Reconstruction (one value per example, vectorised over the batch; axis 0 is the batch):

- :func:`log_spectral_distance` (dB): per frame, the RMS over frequency of the level difference
  ``10 log10(P_ref / P_est) = 20 log10(|S_ref| / |S_est|)`` between the powers ``P = |S|^2``,
  averaged over frames and channels;
- :func:`spectral_convergence`: ``||S_ref - S_est||_F / ||S_ref||_F`` over the whole spectrogram;
- :func:`envelope_correlation`: Pearson correlation of the Hilbert envelopes of the waveforms
  (e.g. after Griffin-Lim), averaged over channels.

Generation (:func:`generation_trends`, :func:`trend_figure`): how log10 peak amplitude and the
spectral centroid (:func:`spectral_centroid`) scale with magnitude and log10 distance, fitted jointly
by least squares for the real and the generated records, and their differences. A CVAE that learned
the physics reproduces the real slopes (amplitude grows with magnitude and decays with distance; the
centroid falls with magnitude). Where magnitude and distance are strongly correlated (a few held-out
events, the large ones recorded far away) the joint fit cannot separate their slopes; with event ids
the distance slope is also fitted within events (each event's records against each other), which
magnitude cannot confound.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from seisjax.data.stft import hilbert_envelope
from seisjax.data.stft import spectral_convergence as _spectral_convergence
from seisjax.errors import InputError

__all__ = [
    "LSD_EPS",
    "TREND_COVARIATES",
    "TREND_TARGETS",
    "centroid_trends",
    "envelope_correlation",
    "generation_trends",
    "log_spectral_distance",
    "spectral_centroid",
    "spectral_convergence",
    "trend_figure",
]

#: Power floor of the log-spectral distance, relative to each reference example's peak power
#: (-100 dB): bins far below the signal (and exact zeros) count as equal instead of as infinite.
LSD_EPS = 1e-10

#: Fitted quantities and regressors of :func:`generation_trends`.
TREND_TARGETS = ("log10_peak_amplitude", "centroid_hz")
TREND_COVARIATES = ("magnitude", "log10_distance")


def _bad_rows_message(bad_rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in bad_rows[:10])
    more = f" and {len(bad_rows) - 10} more" if len(bad_rows) > 10 else ""
    return f"row{'s' if len(bad_rows) > 1 else ''} {shown}{more}"


def _batch_array(x, what: str, min_ndim: int = 2) -> np.ndarray:
    """``x`` as float64 with a batch axis; InputError naming the rows that hold NaN or inf."""
    arr = np.asarray(x)
    if arr.ndim < min_ndim:
        raise InputError(f"{what}: expected a batch of shape (B, ...) with at least {min_ndim} axes, "
                         f"got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{what}: expected real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1)
    if not finite.all():
        raise InputError(f"{what}: NaN or inf in {_bad_rows_message(np.flatnonzero(~finite))}")
    return arr


def _pair(ref, est, what: str, *, magnitudes: bool, min_ndim: int = 2) -> tuple[np.ndarray, np.ndarray]:
    ref = _batch_array(ref, f"{what} reference", min_ndim)
    est = _batch_array(est, f"{what} estimate", min_ndim)
    if ref.shape != est.shape:
        raise InputError(f"{what}: reference {ref.shape} and estimate {est.shape} differ in shape")
    if magnitudes:
        for arr, side in ((ref, "reference"), (est, "estimate")):
            negative = (arr < 0).reshape(arr.shape[0], -1).any(axis=1)
            if negative.any():
                raise InputError(f"{what} {side}: negative magnitudes in {_bad_rows_message(np.flatnonzero(negative))} "
                                 "(pass linear |STFT|, not scaled values shifted below 0)")
    return ref, est


def log_spectral_distance(ref_mag, est_mag, *, freq_axis: int = -2, eps: float = LSD_EPS) -> np.ndarray:
    """Log-spectral distance in dB, one value per example: ``(B, ...)`` magnitudes -> ``(B,)``.

    With powers ``P = |S|^2`` and a floor ``e_b = eps * max(P_ref[b])`` per example::

        d[b, t, c] = sqrt( mean_f ( 10 log10( (P_ref + e_b) / (P_est + e_b) ) )^2 )
        LSD[b]     = mean_{t, c} d[b, t, c]

    ``freq_axis`` names the frequency axis (``-2`` for ``(B, C, F, T)`` as
    :func:`seisjax.data.stft.stft` gives, ``1`` for the models' ``(B, F, T, C)``); every other
    axis but the batch is averaged. Identical spectrograms give 0; a uniform gain ``g`` on the
    magnitudes gives ``|10 log10 g^2| = |20 log10 g|`` (up to the floor). Magnitudes must be linear
    ``|STFT|`` (undo ``log1p`` and the min-max scaling first).
    """
    ref, est = _pair(ref_mag, est_mag, "log_spectral_distance", magnitudes=True)
    ref_pow, est_pow = ref ** 2, est ** 2
    batch = ref.shape[0]
    floor = eps * ref_pow.reshape(batch, -1).max(axis=1)
    floor = np.where(floor > 0, floor, np.finfo(np.float64).tiny).reshape((batch,) + (1,) * (ref.ndim - 1))
    level_db = 10.0 * (np.log10(ref_pow + floor) - np.log10(est_pow + floor))
    per_frame = np.sqrt(np.mean(level_db ** 2, axis=freq_axis))
    return per_frame.reshape(batch, -1).mean(axis=1)


def spectral_convergence(ref_mag, est_mag) -> np.ndarray:
    """``||S_ref - S_est||_F / ||S_ref||_F`` per example over all its channels, frequencies and
    frames: ``(B, ...)`` -> ``(B,)``. 0 for a perfect match; ``|1 - g|`` for ``S_est = g S_ref``.
    An all-zero reference gives ``||S_est||_F`` (the norm is not divided by 0)."""
    ref, est = _pair(ref_mag, est_mag, "spectral_convergence", magnitudes=True)
    return _spectral_convergence(ref, est, axis=tuple(range(1, ref.ndim)))


def envelope_correlation(ref_wave, est_wave) -> np.ndarray:
    """Pearson correlation of the Hilbert envelopes, averaged over channels: ``(B, C, W)`` (or
    ``(B, W)``) waveforms -> ``(B,)``.

    ``r[b, c] = cov(e_ref, e_est) / (std(e_ref) std(e_est))`` over time, with
    ``e = |x + i H(x)|`` (:func:`seisjax.data.stft.hilbert_envelope`). It compares where the
    energy arrives and how it decays, not the phase that Griffin-Lim cannot recover: 1 for identical
    waveforms and for any constant gain. A channel whose estimated envelope is constant (e.g. a
    silent output) correlates 0; a constant reference envelope is an InputError (nothing to compare).
    """
    ref, est = _pair(ref_wave, est_wave, "envelope_correlation", magnitudes=False)
    if ref.ndim == 2:
        ref, est = ref[:, None], est[:, None]
    if ref.shape[-1] < 2:
        raise InputError(f"envelope_correlation: need at least 2 samples per trace, got shape {ref.shape}")
    raw_ref, raw_est = hilbert_envelope(ref), hilbert_envelope(est)
    env_ref = raw_ref - raw_ref.mean(axis=-1, keepdims=True)
    env_est = raw_est - raw_est.mean(axis=-1, keepdims=True)
    norm_ref = np.sqrt(np.sum(env_ref ** 2, axis=-1))
    norm_est = np.sqrt(np.sum(env_est ** 2, axis=-1))
    # "constant" relative to the envelope's size: rounding leaves ~1e-16 of it after centring
    tiny = np.finfo(np.float64).tiny
    size = np.sqrt(ref.shape[-1])
    constant_ref = norm_ref <= 1e-12 * np.maximum(raw_ref.max(axis=-1) * size, tiny)
    if constant_ref.any():
        rows = np.flatnonzero(constant_ref.reshape(ref.shape[0], -1).any(axis=1))
        raise InputError(f"envelope_correlation reference: {_bad_rows_message(rows)} have a channel with a "
                         "constant envelope (silent or pure tone); the correlation is undefined")
    flat_est = norm_est <= 1e-12 * np.maximum(raw_est.max(axis=-1) * size, tiny)
    r = np.sum(env_ref * env_est, axis=-1) / (norm_ref * np.where(flat_est, 1.0, norm_est))
    r = np.where(flat_est, 0.0, r)
    return r.reshape(ref.shape[0], -1).mean(axis=1)


def spectral_centroid(mag, freqs, *, freq_axis: int = -2) -> np.ndarray:
    """Magnitude-weighted mean frequency of each example: ``(B, ...)`` magnitudes -> ``(B,)`` in the
    units of ``freqs``.

    ``S(f) = sum of |S| over every axis but the batch and frequency`` (channels and frames pooled),
    ``centroid = sum_f f S(f) / sum_f S(f)``. ``freqs`` has one value per bin of ``freq_axis``
    (``stft_axes(...)[0]``). An all-zero example is an InputError (no centroid).
    """
    mag = _batch_array(mag, "spectral_centroid magnitudes")
    freqs = np.asarray(freqs, dtype=np.float64)
    axis = freq_axis % mag.ndim
    if axis == 0:
        raise InputError("spectral_centroid: freq_axis cannot be the batch axis 0")
    if freqs.ndim != 1 or freqs.shape[0] != mag.shape[axis]:
        raise InputError(f"spectral_centroid: {freqs.shape} frequencies for {mag.shape[axis]} bins on axis "
                         f"{freq_axis} of magnitudes {mag.shape}")
    if (mag < 0).any():
        raise InputError("spectral_centroid: magnitudes must be >= 0")
    pooled = np.moveaxis(mag, axis, -1).reshape(mag.shape[0], -1, freqs.shape[0]).sum(axis=1)   # (B, F)
    total = pooled.sum(axis=1)
    if (total <= 0).any():
        raise InputError(f"spectral_centroid: {_bad_rows_message(np.flatnonzero(total <= 0))} are all zero")
    return pooled @ freqs / total


# ----------------------------------------------------------------------------- generation trends
def _trend_design(records: dict, what: str) -> tuple[np.ndarray, dict]:
    """Targets and the design matrix ``[1, magnitude, log10 distance]`` of one record set."""
    required = ("peak_amplitude", "centroid_hz", "magnitude", "distance_km")
    missing = [k for k in required if k not in records]
    if missing:
        raise InputError(f"generation_trends {what}: missing {missing} (need {list(required)})")
    columns = {}
    for key in required:
        col = np.asarray(records[key], dtype=np.float64)
        if col.ndim != 1:
            raise InputError(f"generation_trends {what}: {key} must be 1-D, got shape {col.shape}")
        columns[key] = col
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) != 1:
        raise InputError(f"generation_trends {what}: columns differ in length {lengths}")
    for key, col in columns.items():
        bad = ~np.isfinite(col)
        if key in ("peak_amplitude", "distance_km"):
            bad |= ~(col > 0)
        if bad.any():
            need = "positive finite" if key in ("peak_amplitude", "distance_km") else "finite"
            raise InputError(f"generation_trends {what}: {key} of {_bad_rows_message(np.flatnonzero(bad))} "
                             f"is not {need}")
    n = lengths["magnitude"]
    if n < 4:
        raise InputError(f"generation_trends {what}: {n} records; the joint fit needs at least 4")
    design = np.column_stack([np.ones(n), columns["magnitude"], np.log10(columns["distance_km"])])
    if np.linalg.matrix_rank(design) < 3:
        raise InputError(f"generation_trends {what}: magnitude and log10 distance are constant or collinear; "
                         "their slopes cannot be separated")
    targets = {"log10_peak_amplitude": np.log10(columns["peak_amplitude"]), "centroid_hz": columns["centroid_hz"]}
    return design, targets


def _fit(design: np.ndarray, y: np.ndarray) -> dict:
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    dof = design.shape[0] - design.shape[1]
    sigma2 = resid @ resid / dof if dof > 0 else np.nan
    stderr = np.sqrt(np.diag(sigma2 * np.linalg.inv(design.T @ design)))
    return {"intercept": float(coef[0]), "magnitude": float(coef[1]), "log10_distance": float(coef[2]),
            "stderr": {"intercept": float(stderr[0]), "magnitude": float(stderr[1]),
                       "log10_distance": float(stderr[2])},
            "residual_std": float(np.sqrt(sigma2))}


def _within_event_fit(design: np.ndarray, y: np.ndarray, event: np.ndarray) -> dict:
    """Slope of ``y`` against log10 distance with one intercept per event (both demeaned per event)."""
    _, idx = np.unique(event, return_inverse=True)
    counts = np.bincount(idx)
    log_d = design[:, 2]
    y_c = y - (np.bincount(idx, y) / counts)[idx]
    d_c = log_d - (np.bincount(idx, log_d) / counts)[idx]
    sxx = d_c @ d_c
    informative = int(np.sum(counts > 1))
    dof = len(y) - len(counts) - 1
    if sxx <= 1e-12 * max(len(y), 1) or dof < 1:
        return {"log10_distance": float("nan"), "stderr": float("nan"), "events": informative}
    slope = (d_c @ y_c) / sxx
    resid = y_c - slope * d_c
    return {"log10_distance": float(slope), "stderr": float(np.sqrt(resid @ resid / dof / sxx)),
            "events": informative}


def _event_ids(records: dict, what: str, n: int) -> np.ndarray | None:
    if "event" not in records:
        return None
    event = np.asarray(records["event"]).astype(str)
    if event.shape != (n,):
        raise InputError(f"generation_trends {what}: event must be 1-D with one id per record ({n}), "
                         f"got shape {event.shape}")
    return event


def generation_trends(real: dict, generated: dict) -> dict:
    """Joint least-squares trends of real and generated records, and their differences.

    ``real`` and ``generated``: dicts of 1-D arrays ``peak_amplitude`` (> 0, any unit, the same for
    both), ``centroid_hz``, ``magnitude``, ``distance_km`` (> 0). For each set and each target
    ``y`` in ``log10(peak_amplitude)``, ``centroid_hz`` the multiple regression::

        y = a + b_M * magnitude + b_D * log10(distance_km)

    gives ``{"intercept": a, "magnitude": b_M, "log10_distance": b_D, "stderr": {...},
    "residual_std": ...}`` (standard errors from the residual variance). Returns
    ``{"real": {target: fit, "n": N}, "generated": {...}, "difference": {target: {coef: generated -
    real}}, "difference_z": {target: {coef: difference / sqrt(se_real^2 + se_gen^2)}}}``; ``|z| < 2``
    means the generated slope agrees with the real one within the sampling noise.

    Each set also reports ``magnitude_log10_distance_correlation``: near +-1 the two joint slopes
    trade off against each other and only their combination along the data is determined. With an
    ``event`` column (one id per record) in both sets, ``within_event`` gives per target the slope
    against log10 distance with one intercept per event (``{"log10_distance", "stderr", "events"}``,
    events with one record add nothing; NaN when no event has two distances), and
    ``within_event_difference_z`` compares them.
    """
    out = {}
    events = {}
    for name, records in (("real", real), ("generated", generated)):
        design, targets = _trend_design(records, name)
        out[name] = {target: _fit(design, targets[target]) for target in TREND_TARGETS}
        out[name]["n"] = int(design.shape[0])
        out[name]["magnitude_log10_distance_correlation"] = float(np.corrcoef(design[:, 1], design[:, 2])[0, 1])
        events[name] = _event_ids(records, name, design.shape[0])
        if events[name] is not None:
            out[name]["within_event"] = {t: _within_event_fit(design, targets[t], events[name]) for t in TREND_TARGETS}
    coefs = ("intercept",) + TREND_COVARIATES
    out["difference"] = {t: {c: out["generated"][t][c] - out["real"][t][c] for c in coefs} for t in TREND_TARGETS}
    out["difference_z"] = {
        t: {c: out["difference"][t][c] / np.hypot(out["real"][t]["stderr"][c], out["generated"][t]["stderr"][c])
            for c in TREND_COVARIATES} for t in TREND_TARGETS}
    if all(e is not None for e in events.values()):
        out["within_event_difference_z"] = {
            t: (out["generated"]["within_event"][t]["log10_distance"] - out["real"]["within_event"][t]["log10_distance"])
            / np.hypot(out["real"]["within_event"][t]["stderr"], out["generated"]["within_event"][t]["stderr"])
            for t in TREND_TARGETS}
    return out


def centroid_trends(mag, freqs, magnitude, distance_km, event) -> dict:
    """The spectral centroid's (Hz) trends of records with magnitudes ``mag`` ``(N, C, F, T)``: the
    joint least-squares slopes against magnitude and log10 distance, the within-event slope against
    log10 distance (NaN when no event has two records) with its standard error, the mean centroid and
    the correlation of magnitude with log10 distance. A silent channel (e.g. a generated one whose
    predicted maximum fell below its minimum) gets a tiny floor that keeps its centroid defined."""
    centroid = spectral_centroid(np.asarray(mag) + 1e-12, freqs)
    records = {"peak_amplitude": np.ones(len(centroid)), "centroid_hz": centroid, "magnitude": magnitude,
               "distance_km": distance_km, "event": event}
    with np.errstate(divide="ignore", invalid="ignore"):  # the placeholder amplitudes fit exactly
        fit = generation_trends(records, records)["real"]
    return {"magnitude": fit["centroid_hz"]["magnitude"], "log10_distance": fit["centroid_hz"]["log10_distance"],
            "within_event_log10_distance": fit["within_event"]["centroid_hz"]["log10_distance"],
            "within_event_stderr": fit["within_event"]["centroid_hz"]["stderr"], "mean_hz": float(centroid.mean()),
            "magnitude_log10_distance_correlation": fit["magnitude_log10_distance_correlation"]}


def trend_figure(real: dict, generated: dict, path) -> Path:
    """Scatter of real and generated log10 peak amplitude and spectral centroid against magnitude and
    log10 distance, with the jointly fitted lines of :func:`generation_trends` (each drawn at the
    set's mean of the other regressor). Writes a PNG at ``path`` and returns its Path."""
    trends = generation_trends(real, generated)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(10, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    labels = {"log10_peak_amplitude": "log10 peak amplitude", "centroid_hz": "spectral centroid (Hz)",
              "magnitude": "magnitude", "log10_distance": "log10 distance (km)"}
    styles = {"real": {"color": "0.3", "marker": "o"}, "generated": {"color": "tab:red", "marker": "x"}}
    for name, records in (("real", real), ("generated", generated)):
        design, targets = _trend_design(records, name)
        for row, target in enumerate(TREND_TARGETS):
            fit = trends[name][target]
            for col, covariate in enumerate(TREND_COVARIATES):
                ax = axes[row, col]
                x = design[:, 1 + col]
                other = design[:, 2 - col].mean()
                ax.scatter(x, targets[target], s=10, alpha=0.5, label=f"{name} (n={len(x)})", **styles[name])
                grid = np.linspace(x.min(), x.max(), 50)
                slope, other_slope = fit[covariate], fit[TREND_COVARIATES[1 - col]]
                ax.plot(grid, fit["intercept"] + slope * grid + other_slope * other, color=styles[name]["color"],
                        lw=2, label=f"{name} slope {slope:.3g} ± {fit['stderr'][covariate]:.2g}")
                ax.set_xlabel(labels[covariate])
                ax.set_ylabel(labels[target])
    for ax in axes.ravel():
        ax.legend(fontsize=8)
    fig.suptitle("Trends with magnitude and distance (joint least squares): real vs generated")
    fig.savefig(path, dpi=110)
    return path
