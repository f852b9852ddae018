"""2x upsampling by a 3x3 stride-2 transposed convolution without XLA's CPU transposed convolution.

``flax.linen.ConvTranspose(features, (3, 3), strides=(2, 2), padding="SAME")`` is the decoder layer
of the spectrogram autoencoders' seed study. XLA lowers it on CPU to a dilated convolution that runs
20-50x slower than PyTorch's ``ConvTranspose2d`` (benchmarks/README.md). The same function, with the
same parameters, is four small stride-1 convolutions at the input's resolution (its output phases),
interleaved: per axis, with the unflipped kernel ``w``, ``y[2p] = x[p-1] w[0] + x[p] w[2]`` and
``y[2p+1] = x[p] w[1]``, or one 2x2 convolution to ``4 x out`` channels with the phases' taps (zeros
where a phase has fewer) followed by depth-to-space ("masked"). Fastest of all on the CPU, and the
default, is PyTorch's own scheme: one GEMM to the nine taps of every input pixel, overlap-added, with
GEMM backward passes (:func:`seisjax.ops.conv.conv_transpose3x3s2_gemm`; 1.3-1.9x PyTorch per layer
except the 64 -> 32 one, against 0.3-1.0x for the phases: ``bench_spectral.py --what layers``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from seisjax.ops.conv import conv_transpose3x3s2_gemm

__all__ = ["CONV_TRANSPOSE_IMPLS", "ConvTranspose3x3S2", "conv_transpose_masked", "conv_transpose_phases",
           "depth_to_space"]

CONV_TRANSPOSE_IMPLS = ("gemm", "phases", "masked")

_DIMS = ("NHWC", "HWIO", "NHWC")


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
    """``(B, H, W, block*block*C)`` -> ``(B, block*H, block*W, C)``; channel ``(i*block + j)*C + c``
    goes to pixel ``(block*h + i, block*w + j)``."""
    b, h, w, c = x.shape
    out = c // (block * block)
    x = x.reshape(b, h, w, block, block, out).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * block, w * block, out)


def conv_transpose_phases(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """``ConvTranspose(3x3, stride 2, "SAME")`` of NHWC ``x`` with an HWIO ``kernel (3, 3, in, out)``
    as its four output phases (2x2, 2x1, 1x2 and 1x1 convolutions), interleaved."""

    def conv(k, pad):
        return jax.lax.conv_general_dilated(x, k, (1, 1), pad, dimension_numbers=_DIMS)

    even_even = conv(kernel[::2, ::2], ((1, 0), (1, 0)))
    even_odd = conv(kernel[::2, 1:2], ((1, 0), (0, 0)))
    odd_even = conv(kernel[1:2, ::2], ((0, 0), (1, 0)))
    odd_odd = conv(kernel[1:2, 1:2], ((0, 0), (0, 0)))
    b, h, w, c = even_even.shape
    y = jnp.stack([jnp.stack([even_even, even_odd], axis=3), jnp.stack([odd_even, odd_odd], axis=3)], axis=2)
    y = y.reshape(b, 2 * h, 2 * w, c)
    return y if bias is None else y + bias


def conv_transpose_masked(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """The same function as :func:`conv_transpose_phases` as one 2x2 convolution (padded one before)
    to ``4 * out`` channels, then depth-to-space: 16 multiply-adds per pixel pair instead of 9, but one
    convolution instead of four (better where the layer is thin)."""
    zero = jnp.zeros_like(kernel[0, 0])
    # taps over the input window (p-1, p) of each phase (row parity, column parity)
    phases = ([[kernel[0, 0], kernel[0, 2]], [kernel[2, 0], kernel[2, 2]]],
              [[zero, kernel[0, 1]], [zero, kernel[2, 1]]],
              [[zero, zero], [kernel[1, 0], kernel[1, 2]]],
              [[zero, zero], [zero, kernel[1, 1]]])
    k = jnp.stack([jnp.stack([jnp.stack([ph[a][b] for ph in phases], axis=-2) for b in range(2)])
                   for a in range(2)])                               # (2, 2, in, 4, out)
    k = k.reshape(2, 2, kernel.shape[2], 4 * kernel.shape[3])
    y = jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 0), (1, 0)), dimension_numbers=_DIMS)
    y = depth_to_space(y, 2)
    return y if bias is None else y + bias


class ConvTranspose3x3S2(nn.Module):
    """Drop-in for ``nn.ConvTranspose(features, (3, 3), strides=(2, 2), padding="SAME")``: the same
    parameters (``kernel (3, 3, in, features)``, lecun-normal; ``bias``) and function. ``impl`` picks
    the computation: ``"gemm"`` (default; one GEMM to the nine taps and an overlap-add, with a GEMM
    backward, :func:`seisjax.ops.conv.conv_transpose3x3s2_gemm`), ``"phases"`` or ``"masked"``."""

    features: int
    use_bias: bool = True
    impl: str = "gemm"

    @nn.compact
    def __call__(self, x):
        if self.impl not in CONV_TRANSPOSE_IMPLS:
            raise ValueError(f"impl = {self.impl!r}: expected one of {CONV_TRANSPOSE_IMPLS}")
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,)) if self.use_bias else None
        if self.impl == "gemm":
            y = conv_transpose3x3s2_gemm(x, kernel)
            return y if bias is None else y + bias
        fast = conv_transpose_masked if self.impl == "masked" else conv_transpose_phases
        return fast(x, kernel, bias)
