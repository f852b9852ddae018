"""Differentiable, circular sub-sample time shifts of real traces (jax.numpy).

Convention: a positive ``shift`` is a delay, ``y[t] = x(t - shift)`` with ``x`` read as the
band-limited periodic signal that its samples define. The spectrum is multiplied by the phase ramp
``exp(-i 2 pi f shift)`` (``f = k / W`` cycles per sample). The SymAE issue writes the ramp as
``exp(+i 2 pi f s)``: that is the same operation with ``s = -shift`` (an advance), which is what the
reference code applies with its shifts in units of half the window.

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

from seisjax.errors import InputError

__all__ = ["fourier_shift"]


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

