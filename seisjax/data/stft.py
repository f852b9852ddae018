"""The STFT, its inverse, Griffin-Lim and the Hilbert envelope: numpy/scipy over batches ``(..., W)``.

STFT convention: exactly :func:`scipy.signal.stft` (``boundary="zeros"``, ``padded=True``,
``scaling="spectrum"``: the window is centred on ``t = k * hop / sampling_rate`` with half a window of
zeros added at both ends, and coefficients are divided by the window's sum). The defaults of the seed
study (``nperseg=256, noverlap=192, nfft=256``, Hann) turn ``(..., C, W)`` into
``(..., C, 129, T)`` with ``T = ceil(W / 64) + 1`` (95 for 6000 samples). :func:`istft` inverts it
exactly (:func:`scipy.signal.istft`), :func:`griffin_lim` recovers a waveform from magnitudes alone.

Scalings of magnitudes for networks: :func:`log_scale` (``log1p``, inverted by ``expm1``) and
per-sample, per-channel :func:`minmax_scale`, which returns the scale so that amplitudes can be
restored.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.signal

from seisjax.data.preprocess import check_finite
from seisjax.errors import InputError

__all__ = [
    "stft", "stft_axes", "istft", "log_scale", "MinMax", "minmax_scale", "minmax_unscale",
    "spectral_convergence", "griffin_lim", "hilbert_envelope",
]


def _stft_params(nperseg, noverlap, nfft, window) -> dict:
    if not 0 <= noverlap < nperseg:
        raise InputError(f"STFT: need 0 <= noverlap < nperseg, got noverlap={noverlap}, nperseg={nperseg}")
    if nfft is not None and nfft < nperseg:
        raise InputError(f"STFT: nfft ({nfft}) must be at least nperseg ({nperseg})")
    return {"nperseg": int(nperseg), "noverlap": int(noverlap), "nfft": nfft, "window": window}


def stft(x, sampling_rate: float = 1.0, *, nperseg: int = 256, noverlap: int = 192,
         nfft: int | None = 256, window="hann") -> np.ndarray:
    """Complex STFT of every trace: ``(..., W)`` -> ``(..., nfft // 2 + 1, T)`` (scipy's convention,
    see the module docstring; :func:`stft_axes` gives the frequencies and times)."""
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise InputError(f"stft: expected waveforms of shape (..., samples), got shape {x.shape}")
    check_finite(x, "stft input")
    params = _stft_params(nperseg, noverlap, nfft, window)
    if x.shape[-1] < params["nperseg"]:
        # scipy would silently shrink the window and change the output shape.
        raise InputError(f"stft: traces of {x.shape[-1]} samples are shorter than nperseg={nperseg}")
    _, _, coefficients = scipy.signal.stft(x, fs=sampling_rate, axis=-1, **params)
    return coefficients


def stft_axes(n_samples: int, sampling_rate: float = 1.0, *, nperseg: int = 256, noverlap: int = 192,
              nfft: int | None = 256) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (Hz) and frame times (s) of :func:`stft` for traces of ``n_samples``."""
    params = _stft_params(nperseg, noverlap, nfft, "hann")
    n_fft = params["nfft"] or params["nperseg"]
    hop = params["nperseg"] - params["noverlap"]
    # scipy pads half a window on both sides, then up to a whole number of hops.
    padded = n_samples + 2 * (params["nperseg"] // 2)
    n_frames = -(-max(padded - params["nperseg"], 0) // hop) + 1
    return np.fft.rfftfreq(n_fft, 1.0 / sampling_rate), np.arange(n_frames) * hop / sampling_rate


def istft(coefficients, sampling_rate: float = 1.0, *, n_samples: int | None = None, nperseg: int = 256,
          noverlap: int = 192, nfft: int | None = 256, window="hann") -> np.ndarray:
    """Inverse of :func:`stft` (least-squares overlap-add): ``(..., F, T)`` -> ``(..., n_samples)``
    (trimmed or zero-padded to ``n_samples`` when given)."""
    coefficients = np.asarray(coefficients)
    if coefficients.ndim < 2:
        raise InputError(f"istft: expected (..., frequencies, frames), got shape {coefficients.shape}")
    params = _stft_params(nperseg, noverlap, nfft, window)
    expected = (params["nfft"] or params["nperseg"]) // 2 + 1
    if coefficients.shape[-2] != expected:
        raise InputError(f"istft: {coefficients.shape[-2]} frequency bins, but nfft={nfft} gives {expected}")
    _, x = scipy.signal.istft(coefficients, fs=sampling_rate, time_axis=-1, freq_axis=-2, **params)
    if n_samples is not None:
        if x.shape[-1] >= n_samples:
            x = x[..., :n_samples]
        else:
            x = np.concatenate([x, np.zeros((*x.shape[:-1], n_samples - x.shape[-1]))], axis=-1)
    return x


def log_scale(mag) -> np.ndarray:
    """``log1p``: compresses the dynamic range of magnitudes (>= 0) and keeps zero at zero."""
    mag = np.asarray(mag)
    if np.any(mag < 0):
        raise InputError("log_scale: magnitudes must be >= 0")
    return np.log1p(mag)


class MinMax(NamedTuple):
    """Per-sample, per-channel minimum and maximum (with kept dimensions, so they broadcast)."""
    min: np.ndarray
    max: np.ndarray


def minmax_scale(values, axis: tuple[int, ...] = (-2, -1)) -> tuple[np.ndarray, MinMax]:
    """Scale to [0, 1] over ``axis`` (default: each channel's frequency x time plane of each sample).

    Returns ``(scaled, MinMax(min, max))``; :func:`minmax_unscale` restores the input. A constant
    plane scales to zeros (no NaN) and is restored exactly.
    """
    values = np.asarray(values, dtype=np.float64)
    lo = values.min(axis=axis, keepdims=True)
    hi = values.max(axis=axis, keepdims=True)
    span = hi - lo
    return (values - lo) / np.where(span > 0, span, 1.0), MinMax(lo, hi)


def minmax_unscale(scaled, scale: MinMax) -> np.ndarray:
    """Inverse of :func:`minmax_scale`."""
    return np.asarray(scaled) * (scale.max - scale.min) + scale.min


def spectral_convergence(target_magnitude, estimate_magnitude, axis: tuple[int, ...] = (-2, -1)) -> np.ndarray:
    """``||S - S_hat||_F / ||S||_F`` per spectrogram: 0 for a perfect magnitude match."""
    target = np.asarray(target_magnitude)
    diff = np.sqrt(np.sum((target - np.asarray(estimate_magnitude)) ** 2, axis=axis))
    norm = np.sqrt(np.sum(target ** 2, axis=axis))
    return diff / np.where(norm > 0, norm, 1.0)


def griffin_lim(mag, n_samples: int, sampling_rate: float = 1.0, *, n_iter: int = 100,
                momentum: float = 0.99, init: str = "random", seed: int = 0,
                return_history: bool = False, nperseg: int = 256, noverlap: int = 192,
                nfft: int | None = 256, window="hann"):
    """Waveforms whose STFT magnitude matches ``mag`` ``(..., F, T)``, for the whole batch at once.

    Fast Griffin-Lim (Perraudin, Balazs and Soendergaard 2013): alternate projections between the
    spectrograms with the given magnitude and those of real signals, with an extrapolation
    ``momentum`` (0 gives the classic Griffin and Lim 1984 algorithm, whose spectral convergence never
    increases). Phases start random (``init="random"``, from ``seed``) or zero (``"zeros"``).
    ``n_samples`` is the length of the signals the magnitudes came from.

    Returns ``(..., n_samples)`` waveforms; with ``return_history`` also the spectral convergence
    (:func:`spectral_convergence`) after each iteration, shape ``(n_iter, ...)``.
    """
    mag = np.asarray(mag, dtype=np.float64)
    check_finite(mag, "griffin_lim magnitudes")
    if np.any(mag < 0):
        raise InputError("griffin_lim: magnitudes must be >= 0")
    if n_iter < 0 or not 0 <= momentum < 1:
        raise InputError(f"griffin_lim: need n_iter >= 0 and 0 <= momentum < 1, got {n_iter}, {momentum}")
    params = {"nperseg": nperseg, "noverlap": noverlap, "nfft": nfft, "window": window}
    if init == "random":
        phase = np.exp(2j * np.pi * np.random.default_rng(seed).random(mag.shape))
    elif init == "zeros":
        phase = np.ones(mag.shape, dtype=np.complex128)
    else:
        raise InputError(f"griffin_lim init must be 'random' or 'zeros', not {init!r}")

    def project(spectrum):
        signal = istft(spectrum, sampling_rate, n_samples=n_samples, **params)
        rebuilt = stft(signal, sampling_rate, **params)
        if rebuilt.shape != mag.shape:
            raise InputError(f"griffin_lim: magnitudes {mag.shape} do not come from {n_samples}-sample "
                             f"signals with these STFT parameters (they give {rebuilt.shape})")
        return signal, rebuilt

    history = []
    previous = np.zeros_like(phase)
    for _ in range(n_iter):
        _, rebuilt = project(mag * phase)
        history.append(spectral_convergence(mag, np.abs(rebuilt)))
        accelerated = rebuilt - (momentum / (1.0 + momentum)) * previous
        previous = rebuilt
        phase = accelerated / np.maximum(np.abs(accelerated), 1e-16)
    signal = istft(mag * phase, sampling_rate, n_samples=n_samples, **params)
    if return_history:
        return signal, np.array(history).reshape(n_iter, *mag.shape[:-2])
    return signal


def hilbert_envelope(x, axis: int = -1) -> np.ndarray:
    """Amplitude envelope ``|x + i H(x)|`` (analytic signal via :func:`scipy.signal.hilbert`)."""
    x = np.asarray(x, dtype=np.float64)
    check_finite(np.moveaxis(x, axis, -1), "hilbert_envelope input")
    return np.abs(scipy.signal.hilbert(x, axis=axis))
