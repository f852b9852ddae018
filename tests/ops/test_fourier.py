"""seisjax.ops.fourier: the differentiable circular Fourier shift (exact rolls, band-limited
sub-sample shifts, broadcasting, gradients) and its zero-padded numpy sibling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.errors import InputError
from seisjax.ops.fourier import delay_padded, fourier_shift

FAST_COMPILE = True  # see conftest.py


@pytest.fixture
def x64():
    previous = jax.config.values["jax_enable_x64"]
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def pulse(t, centre):
    """A smooth, asymmetric, well-sampled wavelet (two Gaussians) centred near ``centre`` samples."""
    return np.exp(-0.5 * ((t - centre) / 3.0) ** 2) - 0.5 * np.exp(-0.5 * ((t - centre - 7.0) / 4.0) ** 2)


# ----------------------------------------------------------------------------- fourier_shift (jax)
@pytest.mark.parametrize("width", [16, 17, 64, 33])
def test_fourier_shift_integer_is_roll(width):
    x = np.random.default_rng(width).normal(size=(5, width)).astype(np.float32)
    shifts = np.array([0, 1, -3, width + 2, -(2 * width + 1)])
    expected = np.stack([np.roll(row, s) for row, s in zip(x, shifts)])
    np.testing.assert_allclose(np.asarray(fourier_shift(x, shifts)), expected, atol=2e-6)
    # broadcasting: one scalar shift for all traces, and time on another axis
    np.testing.assert_allclose(np.asarray(fourier_shift(x, 3)), np.roll(x, 3, axis=-1), atol=2e-6)
    np.testing.assert_allclose(np.asarray(fourier_shift(x.T, shifts, axis=0)), expected.T, atol=2e-6)


def test_fourier_shift_broadcasts_and_checks_shapes():
    x = np.random.default_rng(1).normal(size=(4, 20))
    shifts = np.array([[1.0], [2.0]])                     # (2, 1) against traces (4,): -> (2, 4)
    out = np.asarray(fourier_shift(x, shifts))
    assert out.shape == (2, 4, 20)
    np.testing.assert_allclose(out[1, 3], np.roll(x[3], 2), atol=1e-5)
    with pytest.raises(InputError, match="does not broadcast"):
        fourier_shift(x, np.zeros(3))


@pytest.mark.parametrize("width", [32, 33])
def test_fourier_shift_subsample_of_bandlimited_signal(x64, width):
    """A sum of sinusoids at integer frequencies (up to Nyquist for even widths) shifted by a
    fraction of a sample equals the analytic delayed signal."""
    rng = np.random.default_rng(width)
    t = np.arange(width)
    freqs = np.arange(width // 2 + 1)
    amp, phase = rng.normal(size=freqs.size), rng.uniform(0, 2 * np.pi, size=freqs.size)
    if width % 2 == 0:
        phase[-1] = 0.0  # the samples of a Nyquist sinusoid only see its cosine part

    def signal(delay):
        return np.sum(amp[:, None] * np.cos(2 * np.pi * freqs[:, None] * (t - delay) / width + phase[:, None]), 0)

    delays = np.array([0.3, -1.7, 5.25, 0.5])
    x = np.broadcast_to(signal(0.0), (delays.size, width))
    expected = np.stack([signal(d) for d in delays])
    out = np.asarray(fourier_shift(jnp.asarray(x), jnp.asarray(delays)))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, expected, atol=1e-11 * np.abs(amp).sum())
    out32 = np.asarray(fourier_shift(x.astype(np.float32), delays.astype(np.float32)))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, expected, atol=2e-5 * np.abs(amp).sum())


def test_fourier_shift_gradient_matches_finite_differences(x64):
    rng = np.random.default_rng(2)
    for width in (24, 25):
        x = jnp.asarray(rng.normal(size=(3, width)))
        weights = jnp.asarray(rng.normal(size=(3, width)))

        @jax.jit
        def objective(shifts):
            y = fourier_shift(x, shifts)
            return jnp.sum(weights * y) + 0.5 * jnp.sum(y ** 3)

        gradient = jax.jit(jax.grad(objective))
        for shifts in (np.array([0.0, 1.0, -2.0]), np.array([0.37, -4.6, 11.2])):
            grad = np.asarray(gradient(jnp.asarray(shifts)))
            h = 1e-5
            fd = np.array([(objective(jnp.asarray(shifts + h * e)) - objective(jnp.asarray(shifts - h * e))) / (2 * h)
                           for e in np.eye(3)])
            np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    # analytic: d/ds cos(2 pi k (t - s) / W) = (2 pi k / W) sin(2 pi k (t - s) / W)
    width, k, s = 32, 3, 0.4
    t = np.arange(width)
    x = jnp.asarray(np.cos(2 * np.pi * k * t / width))
    grad = np.asarray(jax.jacfwd(lambda s: fourier_shift(x, s))(jnp.asarray(s)))
    np.testing.assert_allclose(grad, 2 * np.pi * k / width * np.sin(2 * np.pi * k * (t - s) / width), atol=1e-12)


# ----------------------------------------------------------------------------- delay_padded (numpy)
def test_delay_padded_matches_the_analytic_delay_and_an_integer_roll():
    t = np.arange(200)
    x = pulse(t, 80.0)
    shifted = delay_padded(x, 3.37)
    np.testing.assert_allclose(shifted, pulse(t, 83.37), atol=1e-6)
    # Integer shifts are exact rolls; padding keeps what leaves the end from wrapping to the start.
    np.testing.assert_allclose(delay_padded(x, -5.0), np.r_[x[5:], 0, 0, 0, 0, 0], atol=1e-12)
    # Vectorised: one shift per trace.
    batch = delay_padded(np.stack([x, x]), np.array([1.0, -2.0]))
    np.testing.assert_allclose(batch, np.stack([np.r_[0, x[:-1]], np.r_[x[2:], 0, 0]]), atol=1e-12)
