"""seisjax.data.stft: the STFT against scipy, the inverse STFT and Griffin-Lim, scalings, and the
Hilbert envelope, with known answers."""

import h5py
import numpy as np
import obspy
import pandas as pd
import pytest
import scipy.signal

from seisjax.data import stft as sp
from seisjax.errors import InputError


def stead_record(shared_data, row=0):
    meta = pd.read_csv(shared_data / "stead50" / "metadata.csv")
    with h5py.File(shared_data / "stead50" / "waveforms.hdf5", "r") as f:
        return f["earthquake/local"][meta["trace_name"].iat[row]][()].T.astype(np.float64)  # (3, 6000)


def chirp(n=3000, sampling_rate=100.0):
    t = np.arange(n) / sampling_rate
    return scipy.signal.chirp(t, 1.0, t[-1], 20.0) * scipy.signal.windows.tukey(n, 0.1)


# ----------------------------------------------------------------------------- STFT
def test_stft_matches_scipy_on_stead_record(shared_data):
    x = stead_record(shared_data)[None]  # (1, 3, 6000)
    ours = sp.stft(x, 100.0)
    freqs, times, reference = scipy.signal.stft(x, fs=100.0, nperseg=256, noverlap=192, nfft=256)
    assert ours.shape == (1, 3, 129, 95)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12 * np.abs(reference).max())
    our_freqs, our_times = sp.stft_axes(6000, 100.0)
    np.testing.assert_allclose(our_freqs, freqs)
    np.testing.assert_allclose(our_times, times)


def test_istft_inverts_stft_on_obspy_example():
    x = np.stack([tr.data for tr in obspy.read()])  # (3, 3000)
    coefficients = sp.stft(x, 100.0)
    assert coefficients.shape == (3, 129, sp.stft_axes(3000)[1].size)
    back = sp.istft(coefficients, 100.0, n_samples=3000)
    np.testing.assert_allclose(back, x, rtol=0, atol=1e-10 * np.abs(x).max())


def test_log_and_minmax_scalings_restore_amplitudes():
    rng = np.random.default_rng(0)
    mag = np.abs(rng.standard_normal((2, 3, 129, 40))) * rng.uniform(1, 1e4, (2, 3, 1, 1))
    mag[1, 2] = 5.0  # a constant plane
    logged = sp.log_scale(mag)
    np.testing.assert_allclose(np.expm1(logged), mag, rtol=1e-12)
    scaled, scale = sp.minmax_scale(logged)
    assert scale.min.shape == (2, 3, 1, 1)
    assert np.isfinite(scaled).all()
    assert np.all(scaled[1, 2] == 0)
    for b, c in [(0, 0), (0, 2), (1, 1)]:  # each sample and channel spans [0, 1] on its own
        assert scaled[b, c].min() == 0.0 and scaled[b, c].max() == 1.0
    np.testing.assert_allclose(np.expm1(sp.minmax_unscale(scaled, scale)), mag, rtol=1e-9)
    with pytest.raises(InputError):
        sp.log_scale(-mag)


# ----------------------------------------------------------------------------- Griffin-Lim
def test_griffin_lim_recovers_a_chirp_magnitude():
    sr = 100.0
    x = np.stack([chirp(), 0.3 * np.roll(chirp(), 400)])
    target = np.abs(sp.stft(x, sr))
    classic, classic_history = sp.griffin_lim(target, 3000, sr, n_iter=60, momentum=0.0,
                                              return_history=True)
    assert classic_history.shape == (60, 2)
    # Classic Griffin-Lim never increases the spectral convergence ...
    assert np.all(np.diff(classic_history, axis=0) <= 1e-9)
    assert np.all(classic_history[-1] < 0.5 * classic_history[0])
    # ... and the fast variant reaches a close magnitude match for the whole batch.
    fast = sp.griffin_lim(target, 3000, sr, n_iter=100)
    final = sp.spectral_convergence(target, np.abs(sp.stft(fast, sr)))
    assert np.all(final < 0.05)
    assert np.all(final < sp.spectral_convergence(target, np.abs(sp.stft(classic, sr))))
    # Magnitude-only recovery fixes the waveform up to sign: compare envelopes.
    env_true, env_rec = sp.hilbert_envelope(x), sp.hilbert_envelope(fast)
    assert np.all(np.linalg.norm(env_rec - env_true, axis=-1) < 0.1 * np.linalg.norm(env_true, axis=-1))


def test_griffin_lim_rejects_mismatched_length():
    target = np.abs(sp.stft(chirp(), 100.0))
    with pytest.raises(InputError, match="do not come from"):
        sp.griffin_lim(target, 1000, 100.0, n_iter=2)


# ----------------------------------------------------------------------------- envelope
def test_hilbert_envelope_of_modulated_sinusoid_is_the_modulation():
    sr, n = 100.0, 4000
    t = np.arange(n) / sr
    modulation = np.stack([1.0 + 0.5 * np.cos(2 * np.pi * 0.25 * t), 2.0 + np.sin(2 * np.pi * 0.1 * t)])
    x = modulation * np.cos(2 * np.pi * 8.0 * t)  # carrier far above the modulation's band
    envelope = sp.hilbert_envelope(x[None])[0]
    inner = slice(n // 10, -n // 10)  # away from the ends, where the FFT's periodicity shows
    np.testing.assert_allclose(envelope[:, inner], modulation[:, inner], rtol=0, atol=1e-6)
