"""seisjax.ops.xcorr: cross-correlation against numpy, and the correlation peak's lag (sub-sample,
sign, polarity, limits) on a real P wave and on pulses with known shifts."""

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.signal

from seisjax.errors import InputError
from seisjax.ops.xcorr import correlation_lags, cross_correlate, xcorr_max


def stead_record(shared_data, row=0):
    meta = pd.read_csv(shared_data / "stead50" / "metadata.csv")
    with h5py.File(shared_data / "stead50" / "waveforms.hdf5", "r") as f:
        return f["earthquake/local"][meta["trace_name"].iat[row]][()].T.astype(np.float64)  # (3, 6000)


def spectral_delay(x, shift):
    """Delay x by ``shift`` samples (fractional) through the phase of its spectrum."""
    freqs = np.fft.rfftfreq(x.shape[-1])
    return np.fft.irfft(np.fft.rfft(x) * np.exp(-2j * np.pi * freqs * shift), n=x.shape[-1])


def test_cross_correlation_matches_numpy_correlate():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal(37), rng.standard_normal(20)
    cc = cross_correlate(a, b, normalize=False, demean=False)
    np.testing.assert_allclose(cc, np.correlate(a, b, "full"), rtol=0, atol=1e-12)
    assert len(correlation_lags(37, 20)) == cc.size and correlation_lags(37, 20)[0] == -19
    normalised = cross_correlate(a, b)
    a0, b0 = a - a.mean(), b - b.mean()
    np.testing.assert_allclose(normalised, np.correlate(a0, b0, "full") / np.sqrt(a0 @ a0 * (b0 @ b0)),
                               atol=1e-12)


def test_xcorr_recovers_subsample_shifts_vectorised(shared_data):
    record = stead_record(shared_data, row=3)
    p = 700
    reference = record[2, p - 200:p + 800] * scipy.signal.windows.tukey(1000, 0.2)  # a real P wave
    shifts = np.array([-7.25, 0.0, 2.5, 12.6, 0.4])
    shifted = np.stack([spectral_delay(reference, s) for s in shifts])
    lag, value = xcorr_max(shifted, reference)  # pairs: each shifted copy against the reference
    np.testing.assert_allclose(lag, shifts, atol=0.02)
    assert np.all(value > 0.9)
    lag_s, _ = xcorr_max(shifted, reference, sampling_rate=100.0)
    np.testing.assert_allclose(lag_s, lag / 100.0)


def test_xcorr_known_shift_sign_polarity_and_limits():
    n = 512
    t = np.arange(n)
    pulse = np.exp(-0.5 * ((t - 200) / 6.0) ** 2)
    delayed = spectral_delay(pulse, 3.3)  # a(t) = b(t - 3.3)
    lag, value = xcorr_max(delayed, pulse)
    assert abs(lag - 3.3) < 0.05 and value > 0.99
    lag, value = xcorr_max(-delayed, pulse, absolute=True)  # polarity-blind search, signed value
    assert abs(lag - 3.3) < 0.05 and value < -0.99
    lag, _ = xcorr_max(delayed, pulse, max_lag=2, subsample=False)  # the true lag is out of reach
    assert abs(lag) <= 2
    self_cc = cross_correlate(pulse, pulse)
    assert np.argmax(self_cc) == n - 1 and abs(self_cc.max() - 1.0) < 1e-12
    zero = cross_correlate(np.zeros(n), pulse)
    assert np.all(zero == 0)
    with pytest.raises(InputError, match="NaN"):
        cross_correlate(np.full(8, np.nan), pulse)
