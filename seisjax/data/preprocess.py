"""Vectorised preprocessing of batches of traces with numpy/scipy.

Every function takes waveforms of shape ``(..., W)`` (any leading dimensions, e.g. ``(B, C, W)``),
works along the last axis, and returns a new float64 array; the input is never modified. Per-trace
parameters (bandpass corners, pick samples) are arrays whose shape is a *prefix* of the leading
dimensions: for ``x`` of shape ``(B, C, W)`` an array of shape ``(B,)`` applies to all components of a
record and one of shape ``(B, C)`` to each trace separately.

Each step reproduces the obspy method a seismologist would otherwise call trace by trace (the tests
compare them on real records):

===================================  ===========================================================
``demean(x)``                        ``Trace.detrend("demean")``
``detrend(x)``                       ``Trace.detrend("linear")`` (least-squares line)
``taper(x, 0.05)``                   ``Trace.taper(max_percentage=0.05, type="cosine")``
``bandpass(x, fmin, fmax, sr)``      ``Trace.filter("bandpass", freqmin=, freqmax=, corners=4)``
``resample(x, sr, new_sr)``          ``Trace.resample(new_sr)`` (Fourier method, hann window,
                                     no anti-alias pre-filter: obspy's defaults)
===================================  ===========================================================

Waveforms with NaN or inf samples are an :class:`~seisjax.errors.InputError` naming the trace index;
use :func:`finite_mask` to find and set such traces aside before a long job.
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.signal

from seisjax.errors import InputError

__all__ = [
    "BANDPASS_TABLE", "MAGNITUDE_BIN_EDGES", "NYQUIST_FRACTION", "DEFAULT_STEPS", "STEPS",
    "finite_mask", "check_finite", "demean", "detrend", "taper_window", "taper", "bandpass",
    "resample", "window_around_pick", "normalize", "normalise", "instrument_code", "bandpass_band",
    "bandpass_bands", "preprocess_batch", "output_sampling_rate",
]

# --------------------------------------------------------------------------- seed study's bands
#: Butterworth band (fmin, fmax) in Hz per instrument code (first two letters of the channel code)
#: and magnitude bin, from the Marmara spectrogram study. Rows follow MAGNITUDE_BIN_EDGES.
BANDPASS_TABLE: Mapping[str, tuple[tuple[float, float], ...]] = types.MappingProxyType({
    "HH": ((2.0, 25.0), (1.0, 20.0), (0.5, 15.0), (0.3, 10.0), (0.1, 8.0)),
    "BH": ((0.5, 10.0), (0.5, 8.0), (0.5, 5.0), (0.3, 5.0), (0.1, 3.0)),
    "EH": ((3.0, 40.0), (2.0, 35.0), (1.0, 25.0), (0.5, 20.0), (0.3, 15.0)),
})
#: Inner edges of the magnitude bins [-inf, 1), [1, 2), [2, 3), [3, 4), [4, inf): negative magnitudes
#: fall in the first bin.
MAGNITUDE_BIN_EDGES = (1.0, 2.0, 3.0, 4.0)
#: fmax is clipped to this fraction of the Nyquist frequency: a Butterworth corner at Nyquist is not
#: realisable (obspy silently switches to a highpass there).
NYQUIST_FRACTION = 0.9


# --------------------------------------------------------------------------- input checking
def _describe_index(flat_index: int, lead_shape: tuple[int, ...], records=None):
    index = [int(i) for i in np.unravel_index(flat_index, lead_shape)]
    if records is not None:  # a block of a larger batch: report the caller's record index
        index[0] = int(records[index[0]])
    return index[0] if len(index) == 1 else tuple(index)


def _bad_traces_message(bad_flat: np.ndarray, lead_shape: tuple[int, ...], what: str,
                        records=None) -> str:
    shown = ", ".join(str(_describe_index(i, lead_shape, records)) for i in bad_flat[:5])
    more = f" and {len(bad_flat) - 5} more" if len(bad_flat) > 5 else ""
    count = "" if records is not None else f" ({len(bad_flat)} of {math.prod(lead_shape)})"
    return f"trace {shown}{more}{count}: {what}"


def finite_mask(x) -> np.ndarray:
    """Boolean array of shape ``x.shape[:-1]``: True where a trace has only finite samples."""
    return np.isfinite(np.asarray(x)).all(axis=-1)


def check_finite(x, what: str = "waveforms") -> None:
    """Raise InputError naming the traces of ``x`` (shape ``(..., W)``) that hold NaN or inf."""
    _check_finite(x, what)


def _check_finite(x, what: str, records=None) -> None:
    x = np.asarray(x)
    ok = finite_mask(x)
    if not ok.all():
        lead = x.shape[:-1] or (1,)
        bad = np.flatnonzero(~ok.reshape(-1))
        raise InputError(f"{what}: " + _bad_traces_message(
            bad, lead, "NaN or inf samples; set them aside first with "
            "seisjax.data.preprocess.finite_mask", records))


def _as_batch(x, check: bool, what: str = "waveforms") -> np.ndarray:
    """A new float64 C-contiguous copy of ``x`` that the caller may modify in place."""
    arr = np.asarray(x)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise InputError(f"{what}: expected an array of shape (..., samples), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise InputError(f"{what}: expected real numbers, got dtype {arr.dtype}")
    out = np.array(arr, dtype=np.float64, order="C", copy=True)
    if check:
        check_finite(out, what)
    return out


def _per_trace(values, lead_shape: tuple[int, ...], name: str) -> np.ndarray:
    """Broadcast a scalar or a per-trace array (shape a prefix of ``lead_shape``) to ``lead_shape``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim > len(lead_shape) or arr.shape != lead_shape[:arr.ndim]:
        raise InputError(f"{name}: shape {arr.shape} does not match the traces' leading shape "
                         f"{lead_shape} (give a scalar or an array of shape a prefix of it)")
    return np.broadcast_to(arr.reshape(arr.shape + (1,) * (len(lead_shape) - arr.ndim)), lead_shape)


# --------------------------------------------------------------------------- demean / detrend
def _demean_(y: np.ndarray) -> np.ndarray:
    y -= y.mean(axis=-1, keepdims=True)
    return y


def _detrend_(y: np.ndarray, kind: str) -> np.ndarray:
    if kind in ("constant", "demean"):
        return _demean_(y)
    n = y.shape[-1]
    if kind == "linear":
        # Closed-form least squares on a centred time axis: same line as scipy.signal.detrend,
        # one matrix-vector product for the whole batch.
        t = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        tt = float(t @ t)
        slope = (y @ t) / tt if tt > 0 else np.zeros(y.shape[:-1])
        y -= y.mean(axis=-1, keepdims=True)
        y -= slope[..., None] * t
        return y
    if kind == "simple":
        # obspy's "simple": the line through the first and the last sample.
        ramp = np.arange(n, dtype=np.float64) / max(n - 1, 1)
        first = y[..., :1].copy()
        y -= first + ramp * (y[..., -1:] - first)
        return y
    raise InputError(f"detrend type {kind!r} unknown: use 'linear', 'constant' (or 'demean') or 'simple'")


def demean(x, *, check_finite: bool = True) -> np.ndarray:
    """Subtract each trace's mean (obspy ``detrend("demean")``)."""
    return _demean_(_as_batch(x, check_finite))


def detrend(x, type: str = "linear", *, check_finite: bool = True) -> np.ndarray:
    """Remove a trend from each trace: ``"linear"`` (least-squares line, obspy/scipy ``"linear"``),
    ``"constant"``/``"demean"`` (the mean) or ``"simple"`` (line through first and last sample)."""
    return _detrend_(_as_batch(x, check_finite), type)


# --------------------------------------------------------------------------- taper
def _obspy_cosine_sides(n: int) -> np.ndarray:
    """obspy ``cosine_taper(n, p=1.0)`` (half-cosine rising over the first half, falling over the
    second), which ``Trace.taper(type="cosine")`` cuts its two sides from."""
    frac = n // 2
    i1, i2, i3, i4 = 0, frac - 1, n - frac, n - 1
    if i1 == i2:
        i2 += 1
    if i3 == i4:
        i3 -= 1
    win = np.zeros(n)
    k = np.arange(i1, i2 + 1, dtype=np.float64)
    win[i1:i2 + 1] = 0.5 * (1.0 - np.cos(np.pi * (k - i1) / (i2 - i1)))
    win[i2 + 1:i3] = 1.0
    k = np.arange(i3, i4 + 1, dtype=np.float64)
    win[i3:i4 + 1] = 0.5 * (1.0 + np.cos(np.pi * (i3 - k) / (i4 - i3)))
    return win


def taper_window(n_samples: int, max_percentage: float | None = 0.05, type: str = "cosine", *,
                 max_length: float | None = None, sampling_rate: float | None = None,
                 side: str = "both") -> np.ndarray:
    """The taper that obspy's ``Trace.taper`` multiplies a trace of ``n_samples`` with.

    Each tapered side is ``int(max_percentage * n_samples)`` samples long (obspy's rule: the
    percentage is per side, so 0.05 tapers 5% at each end), shortened to ``max_length`` seconds and
    to half the trace. ``type`` is ``"cosine"`` (obspy's half-cosine) or any symmetric scipy window
    name (``"hann"``, ``"hamming"``, ...), as in obspy.
    """
    n = int(n_samples)
    if side not in ("both", "left", "right"):
        raise InputError(f"taper side must be 'both', 'left' or 'right', not {side!r}")
    if max_percentage is None and max_length is None:
        raise InputError("taper: give max_percentage or max_length")
    half_lengths = []
    if max_percentage is not None:
        if not 0 <= max_percentage <= 0.5:
            raise InputError(f"taper max_percentage must be in [0, 0.5] (it is per side), got {max_percentage}")
        half_lengths.append(int(max_percentage * n))
    if max_length is not None:
        if sampling_rate is None:
            raise InputError("taper: max_length (seconds) needs sampling_rate")
        half_lengths.append(int(max_length * sampling_rate))
    half_lengths.append(int(n / 2))
    wlen = min(half_lengths)
    if wlen <= 0:
        return np.ones(n)
    n_sides = 2 * wlen if 2 * wlen == n else 2 * wlen + 1
    if type == "cosine":
        sides = _obspy_cosine_sides(n_sides)
    else:
        try:
            sides = scipy.signal.get_window(type, n_sides, fftbins=False)
        except ValueError as err:
            raise InputError(f"taper type {type!r} unknown: {err}") from None
    window = np.ones(n)
    if side in ("both", "left"):
        window[:wlen] = sides[:wlen]
    if side in ("both", "right"):
        window[n - wlen:] = sides[len(sides) - wlen:]
    return window


def _taper_(y: np.ndarray, **kwargs) -> np.ndarray:
    window = taper_window(y.shape[-1], **kwargs)
    edge = np.flatnonzero(window != 1.0)
    y[..., edge] *= window[edge]  # only the tapered ends cost anything
    return y


def taper(x, max_percentage: float | None = 0.05, type: str = "cosine", *,
          max_length: float | None = None, sampling_rate: float | None = None, side: str = "both",
          check_finite: bool = True) -> np.ndarray:
    """Taper both ends of each trace exactly as obspy ``Trace.taper`` (see :func:`taper_window`)."""
    return _taper_(_as_batch(x, check_finite), max_percentage=max_percentage, type=type,
                   max_length=max_length, sampling_rate=sampling_rate, side=side)


# --------------------------------------------------------------------------- bandpass
def _group_rows(keys: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Unique rows of ``keys`` (N, k) and the indices of the rows holding each."""
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(unique) == 1:
        return [(unique[0], slice(None))]
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1]
    return list(zip(unique, np.split(order, bounds)))


@functools.lru_cache(maxsize=256)
def _butter_sos(corners: int, low: float, high: float) -> np.ndarray:
    """Cached design: iirfilter costs about a millisecond, far more than filtering a small group."""
    return scipy.signal.iirfilter(corners, [low, high], btype="band", ftype="butter", output="sos")


def _bandpass_(y: np.ndarray, fmin, fmax, sampling_rate, corners: int, zerophase: bool,
               records=None) -> np.ndarray:
    lead = y.shape[:-1]
    nyquist = 0.5 * _per_trace(sampling_rate, lead, "sampling_rate").reshape(-1)
    lo = _per_trace(fmin, lead, "fmin").reshape(-1)
    hi = _per_trace(fmax, lead, "fmax").reshape(-1)
    # Same arithmetic as obspy (f / (0.5 * df)) so that the designed filters are identical.
    low, high = lo / nyquist, hi / nyquist
    problems = [
        (~(np.isfinite(low) & np.isfinite(high)), "bandpass corner is NaN or inf"),
        (~(nyquist > 0), "sampling rate must be positive"),
        (~(lo > 0), "fmin must be > 0 Hz"),
        (~(lo < hi), "fmin must be below fmax"),
        (~(high < 1.0 - 1e-6), "fmax must be below the Nyquist frequency (use bandpass_band to clip it)"),
    ]
    for bad, why in problems:
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise InputError("bandpass: " + _bad_traces_message(
                np.flatnonzero(bad), lead or (1,),
                f"{why} (first: fmin={lo[first]} Hz, fmax={hi[first]} Hz, "
                f"Nyquist={nyquist[first]} Hz)", records))
    flat = y.reshape(-1, y.shape[-1])  # a view: groups are disjoint rows, filtered in place
    for (band_low, band_high), rows in _group_rows(np.stack([low, high], axis=1)):
        sos = _butter_sos(int(corners), float(band_low), float(band_high))
        filtered = scipy.signal.sosfilt(sos, flat[rows], axis=-1)
        if zerophase:
            # obspy's zero phase: a second causal pass over the reversed output, no padding
            # (unlike sosfiltfilt).
            filtered = scipy.signal.sosfilt(sos, filtered[:, ::-1], axis=-1)[:, ::-1]
        if isinstance(rows, slice):
            return np.ascontiguousarray(filtered).reshape(y.shape)
        flat[rows] = filtered
    return y


def bandpass(x, fmin, fmax, sampling_rate, *, corners: int = 4, zerophase: bool = False,
             check_finite: bool = True) -> np.ndarray:
    """Butterworth bandpass, identical to obspy ``Trace.filter("bandpass", freqmin=fmin,
    freqmax=fmax, corners=corners, zerophase=zerophase)``.

    ``fmin``, ``fmax`` and ``sampling_rate`` may differ per trace (scalars or arrays shaped like a
    prefix of ``x.shape[:-1]``): traces are grouped by band and each group is filtered in one call.
    ``fmax`` at or above Nyquist is an error (obspy would switch to a highpass); clip it with
    :func:`bandpass_band`.
    """
    return _bandpass_(_as_batch(x, check_finite), fmin, fmax, sampling_rate, corners, zerophase)


# --------------------------------------------------------------------------- resample
def resample(x, sampling_rate: float, new_sampling_rate: float, *, window: str | None = "hann",
             check_finite: bool = True) -> np.ndarray:
    """Fourier resampling, identical to obspy ``Trace.resample(new_sampling_rate, window=window)``
    with its default ``no_filter=True``.

    As obspy: the real spectrum is multiplied by the (periodic) ``window`` centred on zero frequency,
    linearly interpolated onto the new frequency grid, and transformed back to
    ``int(W / (sampling_rate / new_sampling_rate))`` samples. Downsampling applies no anti-alias
    filter beyond the window: bandpass first.
    """
    y = _as_batch(x, check_finite)
    if not (sampling_rate > 0 and new_sampling_rate > 0):
        raise InputError(f"resample: sampling rates must be positive, got {sampling_rate} -> {new_sampling_rate}")
    n = y.shape[-1]
    factor = sampling_rate / float(new_sampling_rate)
    num = max(int(n / factor), 1)
    spectrum = np.fft.rfft(y, axis=-1)
    if window is not None:
        weights = np.fft.ifftshift(scipy.signal.get_window(window, n))[: n // 2 + 1]
        spectrum *= weights
    freqs = (1.0 / (n / sampling_rate)) * np.arange(n // 2 + 1)
    new_freqs = (1.0 / num * new_sampling_rate) * np.arange(num // 2 + 1)
    if len(freqs) == 1:
        new_spectrum = np.repeat(spectrum, len(new_freqs), axis=-1)
    else:
        # Linear interpolation (np.interp semantics: clamp beyond the last frequency) as one gather
        # and blend for the whole batch.
        position = np.interp(new_freqs, freqs, np.arange(len(freqs), dtype=np.float64))
        left = np.minimum(np.floor(position).astype(np.int64), len(freqs) - 2)
        weight = position - left
        new_spectrum = spectrum[..., left] * (1.0 - weight) + spectrum[..., left + 1] * weight
    return np.fft.irfft(new_spectrum, n=num, axis=-1) * (num / float(n))


# --------------------------------------------------------------------------- window around a pick
def _window_(y: np.ndarray, pick_sample, before, after, sampling_rate, out_of_range: str,
             fill_value: float, records=None) -> np.ndarray:
    if out_of_range not in ("zero", "error"):
        raise InputError(f"window out_of_range must be 'zero' or 'error', not {out_of_range!r}")
    if sampling_rate is not None:
        n_before, n_after = round(before * sampling_rate), round(after * sampling_rate)
    else:
        n_before, n_after = before, after
        if int(n_before) != n_before or int(n_after) != n_after:
            raise InputError(f"window: before/after are samples when no sampling_rate is given, "
                             f"got {before}, {after}")
        n_before, n_after = int(n_before), int(n_after)
    length = n_before + n_after
    if length <= 0:
        raise InputError(f"window: empty window (before={before}, after={after})")
    lead, n = y.shape[:-1], y.shape[-1]
    picks = _per_trace(pick_sample, lead, "pick_sample")
    missing = ~np.isfinite(picks).reshape(-1)
    if missing.any():
        raise InputError("window: " + _bad_traces_message(np.flatnonzero(missing), lead or (1,),
                                                          "no pick (NaN)", records))
    start = np.rint(picks).astype(np.int64) - n_before
    index = start[..., None] + np.arange(length)
    inside = (index >= 0) & (index < n)
    if out_of_range == "error":
        outside = ~inside.all(axis=-1).reshape(-1)
        if outside.any():
            first = int(np.flatnonzero(outside)[0])
            raise InputError("window: " + _bad_traces_message(
                np.flatnonzero(outside), lead or (1,),
                f"window reaches outside the trace (first: samples {start.reshape(-1)[first]} to "
                f"{start.reshape(-1)[first] + length - 1} of 0..{n - 1}); use out_of_range='zero' "
                "to zero-fill", records))
    out = np.take_along_axis(y, np.clip(index, 0, n - 1), axis=-1)
    out[~inside] = fill_value
    return out


def window_around_pick(x, pick_sample, before, after, *, sampling_rate: float | None = None,
                       out_of_range: str = "zero", fill_value: float = 0.0,
                       check_finite: bool = True) -> np.ndarray:
    """Cut ``[pick - before, pick + after)`` from every trace, with per-trace picks.

    ``pick_sample`` is the pick's sample index per trace (rounded to the nearest sample; shape a
    prefix of ``x.shape[:-1]``). ``before``/``after`` are seconds when ``sampling_rate`` is given,
    samples otherwise. Samples outside the trace are ``fill_value`` (``out_of_range="zero"``) or an
    InputError naming the trace (``"error"``). Returns ``(..., before + after)`` samples.
    """
    return _window_(_as_batch(x, check_finite), pick_sample, before, after, sampling_rate,
                    out_of_range, fill_value)


# --------------------------------------------------------------------------- normalise
def normalize(x, method: str = "std", *, axis: int | tuple[int, ...] = -1, return_scale: bool = False,
              check_finite: bool = True):
    """Divide each trace by its standard deviation (``"std"``) or its peak absolute value
    (``"peak"``).

    ``axis=-1`` scales every trace alone; ``axis=(-2, -1)`` scales the components of a record
    together and keeps their relative amplitudes. All-zero (or constant, for ``"std"``) traces get a
    scale of 1, so the output never holds NaN. With ``return_scale`` the scale (keepdims) comes back
    too: ``normalized * scale`` restores the input.
    """
    y = _as_batch(x, check_finite)
    y, scale = _normalize_(y, method, axis)
    return (y, scale) if return_scale else y


def _normalize_(y: np.ndarray, method: str, axis) -> tuple[np.ndarray, np.ndarray]:
    if method == "std":
        scale = y.std(axis=axis, keepdims=True)
    elif method == "peak":
        scale = np.abs(y).max(axis=axis, keepdims=True)
    else:
        raise InputError(f"normalize method {method!r} unknown: use 'std' or 'peak'")
    # A zero scale means nothing to normalise; relative tolerance keeps float noise on a constant
    # trace from being blown up to unit amplitude.
    peak = np.abs(y).max(axis=axis, keepdims=True)
    scale = np.where(scale > 1e-12 * np.maximum(peak, np.finfo(np.float64).tiny), scale, 1.0)
    y /= scale
    return y, scale


normalise = normalize


# --------------------------------------------------------------------------- bandpass table
def instrument_code(channel_code) -> str:
    """The instrument code of a SEED channel code: its first two letters (``"HHZ"`` -> ``"HH"``)."""
    if not isinstance(channel_code, str) or len(channel_code.strip()) < 2:
        raise InputError(f"channel code {channel_code!r}: need at least two letters (band and "
                         "instrument code, e.g. 'HH' or 'HHZ')")
    return channel_code.strip()[:2].upper()


def _magnitude_bin(magnitude) -> np.ndarray:
    return np.searchsorted(np.asarray(MAGNITUDE_BIN_EDGES), magnitude, side="right")


def _clip_band(fmin, fmax, sampling_rate, nyquist_fraction):
    rate = np.asarray(sampling_rate, dtype=np.float64)
    if rate.ndim > 1 or (rate.ndim == 1 and len(rate) != len(fmin)):
        raise InputError(f"sampling_rate: give one rate or one per trace ({len(fmin)}), got shape {rate.shape}")
    if not np.all(rate > 0):
        raise InputError(f"sampling_rate must be positive, got {rate.ravel()[:5].tolist()}")
    return fmin, np.minimum(fmax, nyquist_fraction * 0.5 * rate)


def bandpass_band(channel_code: str, magnitude: float, sampling_rate: float, *,
                  table: Mapping[str, Sequence[tuple[float, float]]] = BANDPASS_TABLE,
                  default: tuple[float, float] | None = None,
                  nyquist_fraction: float = NYQUIST_FRACTION) -> tuple[float, float]:
    """The seed study's band (fmin, fmax) in Hz for one trace.

    ``channel_code`` is a SEED channel code or its first two letters (``"HHZ"``, ``"BH"``); the
    magnitude picks the row ([-inf, 1), [1, 2), [2, 3), [3, 4), [4, inf)). ``fmax`` is clipped to
    ``nyquist_fraction`` (0.9) times the Nyquist frequency. An instrument missing from ``table`` is an
    InputError unless a ``default`` band is given.
    """
    fmin, fmax = bandpass_bands([channel_code], [magnitude], sampling_rate, table=table,
                                default=default, nyquist_fraction=nyquist_fraction)
    return float(fmin[0]), float(fmax[0])


def bandpass_bands(channel_codes, magnitudes, sampling_rate, *,
                   table: Mapping[str, Sequence[tuple[float, float]]] = BANDPASS_TABLE,
                   default: tuple[float, float] | None = None,
                   nyquist_fraction: float = NYQUIST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`bandpass_band`: arrays of channel codes and magnitudes (and a scalar or
    per-trace sampling rate) -> arrays ``(fmin, fmax)`` to pass to :func:`bandpass`."""
    codes = np.asarray(channel_codes, dtype=object).reshape(-1)
    mags = np.asarray(magnitudes, dtype=np.float64).reshape(-1)
    if len(codes) != len(mags):
        raise InputError(f"bandpass_bands: {len(codes)} channel codes but {len(mags)} magnitudes")
    bad_mag = ~np.isfinite(mags)
    if bad_mag.any():
        raise InputError("bandpass_bands: " + _bad_traces_message(
            np.flatnonzero(bad_mag), (len(mags),), "magnitude is missing (NaN) or infinite"))
    if len(codes) == 0:
        return np.zeros(0), np.zeros(0)
    unique_codes, inverse = np.unique([instrument_code(c) for c in codes], return_inverse=True)
    lookup = np.empty((len(unique_codes), len(MAGNITUDE_BIN_EDGES) + 1, 2))
    for i, code in enumerate(unique_codes):
        if code in table:
            rows = np.asarray(table[code], dtype=np.float64)
            if rows.shape != lookup.shape[1:]:
                raise InputError(f"bandpass table entry {code!r}: need {lookup.shape[1]} (fmin, fmax) "
                                 f"rows, one per magnitude bin, got shape {rows.shape}")
            lookup[i] = rows
        elif default is not None:
            lookup[i] = np.asarray(default, dtype=np.float64)
        else:
            first = int(np.flatnonzero(inverse == i)[0])
            raise InputError(f"bandpass table: instrument code {code!r} (channel {codes[first]!r}, "
                             f"trace {first}) is not in the table {sorted(table)}; pass default=(fmin, "
                             "fmax) to use one band for unknown instruments")
    band = lookup[inverse.reshape(-1), _magnitude_bin(mags)]
    fmin, fmax = _clip_band(band[:, 0], band[:, 1], sampling_rate, nyquist_fraction)
    fmax = np.broadcast_to(fmax, fmin.shape).astype(np.float64)
    empty = ~(fmin < fmax)
    if empty.any():
        first = int(np.flatnonzero(empty)[0])
        raise InputError("bandpass_bands: " + _bad_traces_message(
            np.flatnonzero(empty), (len(mags),),
            f"fmin is not below fmax after clipping to {nyquist_fraction} x Nyquist (first: "
            f"channel {codes[first]!r}, band {band[first, 0]}-{band[first, 1]} Hz, "
            f"sampling rate {np.broadcast_to(sampling_rate, fmin.shape)[first]} Hz)"))
    return fmin.copy(), fmax


# --------------------------------------------------------------------------- pipeline
#: The seed study's chain: demean, linear detrend, 5% cosine taper, bandpass (bands per trace).
DEFAULT_STEPS = ("demean", "detrend", {"name": "taper", "max_percentage": 0.05}, "bandpass")
STEPS = ("demean", "detrend", "taper", "bandpass", "resample", "window", "normalize")
_ALIASES = {"normalise": "normalize", "window_around_pick": "window"}


def _parse_step(step) -> tuple[str, dict]:
    if isinstance(step, str):
        name, params = step, {}
    elif isinstance(step, (tuple, list)) and len(step) == 2 and isinstance(step[0], str):
        name, params = step[0], dict(step[1])
    elif hasattr(step, "items"):  # dict, ConfigDict
        params = dict(step.items())
        name = params.pop("name", None)
        if not isinstance(name, str):
            raise InputError(f"preprocessing step {step!r}: needs a 'name'")
    else:
        raise InputError(f"preprocessing step {step!r}: give a name, (name, params) or a mapping "
                         "with 'name'")
    name = _ALIASES.get(name, name)
    if name not in STEPS:
        raise InputError(f"preprocessing step {name!r} unknown; known steps: {', '.join(STEPS)}")
    return name, params


def output_sampling_rate(sampling_rate: float, steps=DEFAULT_STEPS) -> float:
    """The sampling rate after ``steps`` (changed only by ``resample``)."""
    for step in steps:
        name, params = _parse_step(step)
        if name == "resample":
            sampling_rate = float(params["sampling_rate"])
    return sampling_rate


def preprocess_batch(x, sampling_rate: float, steps=DEFAULT_STEPS, *, fmin=None, fmax=None,
                     pick_sample=None, dtype=np.float64, block_bytes: int = 2 << 20) -> np.ndarray:
    """Run a chain of preprocessing steps over a batch ``(..., W)``, vectorised.

    ``steps`` is a sequence of step names or ``{"name": ..., **params}`` mappings (also
    ``(name, params)`` pairs or ConfigDicts), run in order:

    - ``demean``; ``detrend`` (``type``); ``taper`` (``max_percentage``, ``type``, ``max_length``,
      ``side``);
    - ``bandpass`` (``fmin``, ``fmax``, ``corners``, ``zerophase``): corners missing from the step
      come from the per-trace ``fmin``/``fmax`` arguments (e.g. from :func:`bandpass_bands`);
    - ``resample`` (``sampling_rate``, ``window``): later steps, and ``pick_sample``, follow the new
      rate;
    - ``window`` (``before``, ``after``, ``unit`` = ``"seconds"`` or ``"samples"``, ``out_of_range``,
      ``fill_value``) around ``pick_sample``;
    - ``normalize`` (``method``, ``axis``).

    The batch is processed in blocks of records (first axis) of about ``block_bytes``, sorted by
    band: every step is one numpy/scipy call over a block, and a block small enough to stay in cache
    runs the whole chain several times faster than full-batch temporaries would. Results do not
    depend on the blocking.

    NaN or inf in ``x`` is an InputError naming the trace (see :func:`finite_mask`). Returns the
    processed batch as ``dtype``; :func:`output_sampling_rate` gives its sampling rate.
    """
    arr = np.asarray(x)
    if arr.ndim == 0 or arr.shape[-1] == 0:
        raise InputError(f"waveforms: expected an array of shape (..., samples), got shape {arr.shape}")
    if arr.ndim > 1 and arr.shape[0] == 0:
        raise InputError(f"waveforms: empty batch (shape {arr.shape})")
    parsed = [_parse_step(step) for step in steps]
    per_trace = {"fmin": fmin, "fmax": fmax, "pick_sample": pick_sample}
    for name, value in per_trace.items():
        if value is not None:
            _per_trace(value, arr.shape[:-1], name)  # shape errors before any work
    if arr.ndim == 1:
        return _run_steps(arr, float(sampling_rate), parsed, per_trace, None).astype(dtype, copy=False)

    n_records = arr.shape[0]
    record_bytes = 8 * math.prod(arr.shape[1:])
    block = max(1, int(block_bytes // max(record_bytes, 1)))
    if block >= n_records:
        blocks = [slice(None)]
    else:
        order = np.arange(n_records)
        if np.ndim(fmin) == 1 and np.ndim(fmax) == 1:
            # Records with equal bands side by side: each block then filters few, larger groups.
            order = np.lexsort((np.asarray(fmax, dtype=np.float64), np.asarray(fmin, dtype=np.float64)))
        blocks = [order[start:start + block] for start in range(0, n_records, block)]
    out = None
    for rows in blocks:
        block_params = {k: (v if v is None or np.ndim(v) == 0 else np.asarray(v)[rows])
                        for k, v in per_trace.items()}
        result = _run_steps(arr[rows], float(sampling_rate), parsed, block_params,
                            np.arange(n_records)[rows])
        if out is None:
            out = np.empty((n_records, *result.shape[1:]), dtype=dtype)
        out[rows] = result
    return out


def _run_steps(x: np.ndarray, rate: float, parsed, per_trace: dict, records) -> np.ndarray:
    y = _as_batch(x, check=False)
    _check_finite(y, "waveforms", records)
    picks = per_trace["pick_sample"]
    picks = None if picks is None else np.asarray(picks, dtype=np.float64)
    for name, params in parsed:
        try:
            if name == "demean":
                _expect(params, name, ())
                y = _demean_(y)
            elif name == "detrend":
                _expect(params, name, ("type",))
                y = _detrend_(y, params.get("type", "linear"))
            elif name == "taper":
                _expect(params, name, ("max_percentage", "type", "max_length", "side"))
                y = _taper_(y, sampling_rate=rate, **{"max_percentage": 0.05, **params})
            elif name == "bandpass":
                _expect(params, name, ("fmin", "fmax", "corners", "zerophase"))
                lo = params.get("fmin", per_trace["fmin"])
                hi = params.get("fmax", per_trace["fmax"])
                if lo is None or hi is None:
                    raise InputError("no band; put fmin/fmax in the step or pass per-trace fmin=, "
                                     "fmax= (see bandpass_bands)")
                y = _bandpass_(y, lo, hi, rate, int(params.get("corners", 4)),
                               bool(params.get("zerophase", False)), records)
            elif name == "resample":
                _expect(params, name, ("sampling_rate", "window"), required=("sampling_rate",))
                new_rate = float(params["sampling_rate"])
                y = resample(y, rate, new_rate, window=params.get("window", "hann"), check_finite=False)
                if picks is not None:
                    picks = picks * (new_rate / rate)  # same time, new sample grid
                rate = new_rate
            elif name == "window":
                _expect(params, name, ("before", "after", "unit", "out_of_range", "fill_value"),
                        required=("before", "after"))
                if picks is None:
                    raise InputError("pass pick_sample= (one pick per trace)")
                unit = params.get("unit", "seconds")
                if unit not in ("seconds", "samples"):
                    raise InputError(f"window unit must be 'seconds' or 'samples', not {unit!r}")
                y = _window_(y, picks, params["before"], params["after"],
                             rate if unit == "seconds" else None, params.get("out_of_range", "zero"),
                             float(params.get("fill_value", 0.0)), records)
            elif name == "normalize":
                _expect(params, name, ("method", "axis"))
                axis = params.get("axis", -1)
                y, _ = _normalize_(y, params.get("method", "std"),
                                   tuple(axis) if isinstance(axis, (list, tuple)) else axis)
        except InputError as err:
            raise InputError(f"preprocessing step {name!r}: {err}") from None
    return y


def _expect(params: Mapping, name: str, allowed: Sequence[str], required: Sequence[str] = ()):
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InputError(f"unknown parameter(s) {unknown} (allowed: {list(allowed)})")
    missing = [k for k in required if k not in params]
    if missing:
        raise InputError(f"missing parameter(s) {missing}")
