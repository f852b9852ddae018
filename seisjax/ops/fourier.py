"""Differentiable, circular sub-sample time shifts of real traces (jax.numpy).

Convention: a positive ``shift`` is a delay, ``y[t] = x(t - shift)`` with ``x`` read as the
band-limited periodic signal that its samples define. The spectrum is multiplied by the phase ramp
``exp(-i 2 pi f shift)`` (``f = k / W`` cycles per sample). SymAE's description writes the ramp as
``exp(+i 2 pi f s)``: that is the same operation with ``s = -shift`` (an advance), which is what the
Earthquake-SymAE reference applies with its shifts in units of half the window.

For an even length ``W`` the Nyquist bin of a real signal is real, and a real output needs a real
factor there: we use ``cos(pi * shift)``, the real part of the ramp. This is what a full complex FFT
shift followed by taking the real part gives, it is exactly ``(-1) ** shift`` for integer shifts (so
those are exact circular rolls), and it shifts a sampled Nyquist cosine ``cos(pi t)`` exactly (its
sine part vanishes at the samples). It is smooth in ``shift``, so gradients exist everywhere.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft

from seisjax.errors import InputError

__all__ = ["fourier_shift", "delay_padded"]


@partial(jax.jit, static_argnames=("axis",))
def fourier_shift(x, shift, axis: int = -1):
    """Shift real traces ``x`` circularly by ``shift`` samples (positive = delay) along ``axis``.

    ``x``: real array ``(..., W)`` (time on ``axis``); ``shift``: array broadcastable to the shape of
    ``x`` without ``axis`` (e.g. ``(...)`` or a scalar), in samples, possibly fractional.
    Returns an array of the shape and (floating) dtype of ``x``. Integer shifts equal ``np.roll``;
    fractional shifts are band-limited (sinc) interpolation of the periodic signal. Differentiable
    with respect to both ``x`` and ``shift``.
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    x = jnp.moveaxis(x, axis, -1)
    width = x.shape[-1]
    shift = jnp.asarray(shift, dtype=x.dtype)
    try:
        batch_shape = jnp.broadcast_shapes(x.shape[:-1], shift.shape)
    except ValueError:
        raise InputError(f"fourier_shift: shift of shape {shift.shape} does not broadcast against the "
                         f"traces' shape {x.shape[:-1]} (x {x.shape} with time on axis {axis})") from None
    if batch_shape != x.shape[:-1]:
        x = jnp.broadcast_to(x, batch_shape + (width,))
    # Every bin's factor is periodic in the shift with period W, so wrapping the shift into
    # [-W/2, W/2] changes nothing but keeps float32 phases accurate for large shifts.
    shift = shift - width * jnp.round(shift / width)
    spectrum = jnp.fft.rfft(x, axis=-1)
    freqs = jnp.arange(spectrum.shape[-1], dtype=x.dtype) / width   # cycles per sample
    phase = -2.0 * jnp.pi * freqs * shift[..., None]
    ramp = jnp.exp(1j * phase)
    if width % 2 == 0:
        # Nyquist bin: the real part of the ramp, cos(pi * shift) (see the module docstring).
        ramp = ramp.at[..., -1].set(jnp.cos(phase[..., -1]))
    shifted = jnp.fft.irfft(spectrum * ramp, n=width, axis=-1).astype(x.dtype)
    return jnp.moveaxis(shifted, -1, axis)


def delay_padded(x, shift, *, pad: bool = True) -> np.ndarray:
    """Delay ``x`` ``(..., T)`` by ``shift`` samples (broadcast against ``x.shape[:-1]``; fractional
    allowed) by multiplying its spectrum by ``exp(-2 pi i f shift)``: ``y(t) = x(t - shift)``.

    With ``pad`` the trace is zero-padded to at least twice its length first, so what leaves one
    end does not wrap into the other (the shift is then not circular, up to ``T`` samples).
    The host-side (numpy, float64) sibling of :func:`fourier_shift` for the classical baselines,
    where traces must not wrap around and no gradient is needed.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    n_fft = scipy.fft.next_fast_len(2 * n, real=True) if pad else n
    freqs = np.fft.rfftfreq(n_fft)
    shift = np.asarray(shift, dtype=np.float64)[..., None]
    spectrum = scipy.fft.rfft(x, n_fft, axis=-1) * np.exp(-2j * np.pi * freqs * shift)
    return scipy.fft.irfft(spectrum, n_fft, axis=-1)[..., :n]
