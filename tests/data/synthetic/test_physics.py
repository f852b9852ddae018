"""The generator's physics functions against their definitions."""

import numpy as np

from seisjax.data.synthetic import physics


def test_attenuation_operator_is_causal_constant_q():
    """|H| = exp(-pi f t*) exactly; the impulse response starts at t = 0 (nothing before it above
    1% of the peak), its peak delay grows with t*, and it is the same pulse at 20 and 100 Hz."""
    peaks = {}
    for fs in (20.0, 100.0):
        n = int(400 * fs)
        f = np.fft.rfftfreq(n, 1 / fs)
        for t_star in (0.5, 2.0):
            h_f = physics.attenuation_response(n, fs, t_star)
            np.testing.assert_allclose(np.abs(h_f), np.exp(-np.pi * f * t_star), rtol=1e-9, atol=1e-15)
            h = np.fft.irfft(h_f, n)
            t = np.where(np.arange(n) < n // 2, np.arange(n), np.arange(n) - n) / fs
            assert np.abs(h[t < -1 / fs]).max() < 0.01 * h.max()
            peaks[fs, t_star] = t[np.argmax(h)]
    assert 0 < peaks[20.0, 0.5] < peaks[20.0, 2.0]
    assert abs(peaks[20.0, 2.0] - peaks[100.0, 2.0]) <= 0.05
