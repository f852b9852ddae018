"""Ground noise and the signal-to-noise ratio of the synthetic records.

- Noise is Gaussian, with an acceleration PSD a fraction ``noise.level`` (drawn per trace) of the way
  (in dB) from Peterson's NLNM to his NHNM (obspy's ``get_nlnm``/``get_nhnm``), converted to the
  record's quantity: displacement (divided by (2 pi f)^4) and limited to ``noise.band_hz`` by
  Butterworth edges for ``teleseismic-p`` (below ~0.01 Hz real displacement noise is tides and tilt,
  which every user removes); ground velocity on three components through the station's instrument
  for ``local``. Its level is then scaled so that the trace has the drawn SNR (log-uniform in
  ``noise.snr``; for ``local``, 1 to 1e5 so that the log10 SNR bins 0-1 ... >4 of the DEC polarity
  study are all populated).
- SNR (``trace_snr_db`` = 20 log10 SNR): RMS of the noise-free signal in ``snr.signal_window_s``
  after the true P onset over the RMS of the (demeaned) noise in ``snr.noise_window_s`` (on Z for
  ``local``): the ratio that :mod:`seisjax.data.quality` computes on real records, evaluated on the
  parts we know separately.
"""

from __future__ import annotations

import functools

import numpy as np
from obspy.signal.spectral_estimation import get_nhnm, get_nlnm

__all__ = ["peterson_models", "peterson_psd_db", "colored_noise", "window_mask", "scale_noise_to_snr"]


@functools.lru_cache(maxsize=1)
def peterson_models() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peterson's (1993) new low and high noise models as shipped by obspy: ``(periods_s, nlnm_db,
    nhnm_db)`` on a common period axis, in dB of acceleration PSD (m^2 s^-4 / Hz)."""
    p_low, low = get_nlnm()
    p_high, high = get_nhnm()
    periods = np.union1d(p_low, p_high)  # sorted ascending; obspy's arrays run from long to short periods
    low_order, high_order = np.argsort(p_low), np.argsort(p_high)
    return (periods, np.interp(periods, p_low[low_order], low[low_order]),
            np.interp(periods, p_high[high_order], high[high_order]))


def peterson_psd_db(freqs, level) -> np.ndarray:
    """Acceleration PSD in dB at ``freqs``, a fraction ``level`` (0 = NLNM, 1 = NHNM; broadcasts, e.g.
    ``(n, 1)``) of the way from the low to the high noise model in dB. Outside the models' period range
    (0.1 to 1e5 s) the nearest model value is used."""
    periods, low, high = peterson_models()
    f = np.asarray(freqs, dtype=float)
    with np.errstate(divide="ignore"):
        log_period = np.log10(1.0 / np.where(f > 0, f, np.inf))
    log_period = np.clip(log_period, np.log10(periods[0]), np.log10(periods[-1]))
    low_f = np.interp(log_period, np.log10(periods), low)
    high_f = np.interp(log_period, np.log10(periods), high)
    return low_f + np.asarray(level, dtype=float) * (high_f - low_f)


def colored_noise(rng: np.random.Generator, shape: tuple[int, ...], n_samples: int, sampling_rate: float,
                  psd: np.ndarray) -> np.ndarray:
    """Gaussian noise ``shape + (n_samples,)`` whose one-sided PSD is ``psd`` (units^2 / Hz, on the
    ``rfftfreq(n_samples, 1 / sampling_rate)`` axis; broadcasts against ``shape + (n_freq,)``).

    White noise of unit variance has E|X_k|^2 = n in the rFFT; multiplying by ``sqrt(psd * fs / 2)``
    gives the requested one-sided PSD (the estimate ``2 |Y_k|^2 / (fs n)``).
    """
    white = rng.standard_normal((*shape, n_samples))
    spectrum = np.fft.rfft(white, axis=-1) * np.sqrt(np.asarray(psd) * sampling_rate / 2.0)
    return np.fft.irfft(spectrum, n=n_samples, axis=-1)


def window_mask(n_samples: int, sampling_rate: float, onset_samples, window_s) -> np.ndarray:
    """Boolean ``(n, n_samples)``: samples within ``window_s`` (s relative to each onset), clipped
    like seisjax.data.quality.window_slice."""
    idx = np.arange(n_samples)[None, :]
    start = np.clip(np.round(onset_samples + window_s[0] * sampling_rate), 0, n_samples)[:, None]
    stop = np.clip(np.round(onset_samples + window_s[1] * sampling_rate), 0, n_samples)[:, None]
    return (idx >= start) & (idx < stop)


def _masked_rms(x: np.ndarray, mask: np.ndarray, demean: bool) -> np.ndarray:
    count = np.maximum(mask.sum(-1), 1)
    if demean:
        mean = (x * mask).sum(-1, keepdims=True) / count[..., None]
        x = x - mean
    return np.sqrt(((x * mask) ** 2).sum(-1) / count)


def scale_noise_to_snr(signal_z: np.ndarray, noise: np.ndarray, snr: np.ndarray, noise_mask, signal_mask):
    """Scale factor per trace so that RMS(signal in its window) / RMS(noise in its window) = snr;
    ``noise`` is ``(n, W)`` (the component the SNR is defined on)."""
    signal_rms = _masked_rms(signal_z, signal_mask, demean=False)
    noise_rms = _masked_rms(noise, noise_mask, demean=True)
    tiny = np.finfo(float).tiny
    return signal_rms / (np.maximum(snr, tiny) * np.maximum(noise_rms, tiny))
