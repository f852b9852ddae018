"""Convolutions and batch norm as GEMMs with hand-written backward passes, for XLA's CPU backend.

Why: on the CPU, XLA runs a convolution's forward pass fast, but its weight gradient (a
backward-filter convolution) and the batch-norm fusions of a train step well below PyTorch, and it
lowers a strided transposed convolution (``nn.ConvTranspose``) to a dilated convolution many times
slower than PyTorch's ``ConvTranspose2d`` (timings: benchmarks/README.md). Here the same functions
are one matrix product each, which XLA hands to its GEMM:

- :func:`conv2d_gemm`: an ``n x n`` convolution (any stride, XLA's "SAME" alignment) as im2col
  patches ``(B*Ho*Wo, kh*kw*Cin) @ (kh*kw*Cin, Cout)``; its backward is the weight gradient as one
  GEMM ``patches^T @ dy`` and the input gradient as ``dy @ W^T`` folded back (col2im).
- :func:`conv2d_one_output`: a stride-1 convolution to a single channel as a sum of shifted planes
  (one ``(kh*kw, C)`` contraction, then ``kh*kw`` shifted adds): XLA's convolution and its
  gradients, and the GEMM (``N = 1``), are slowest for such a thin output.
- :func:`conv_transpose3x3s2_gemm`: the 3x3 stride-2 "SAME" transposed convolution as PyTorch runs
  it: ``x @ W`` to the nine taps of every input pixel, then overlap-added into the four output phases.
- :func:`batch_norm_relu`: training-mode batch norm (one pass: sum and sum of squares in float32)
  fused with the ReLU, with a hand-written backward of two reductions.

The modules :class:`Conv`, :class:`ConvTranspose3x3S2` and :class:`BatchNormReLU` hold the variables
of ``flax.linen.Conv``, ``flax.linen.ConvTranspose`` and ``flax.linen.BatchNorm`` under the same
names and shapes, so checkpoints and the PyTorch twins' weight copy do not depend on the form. A
model picks the form with a config value, ``impl`` (:data:`CONV_IMPLS`): ``"gemm"``,
``"one_output"``, ``"xla"`` (XLA's own convolution), or ``"auto"`` (:func:`resolve_conv_impl`: the
forms above on the CPU backend, XLA's convolution on accelerators, where it is cuDNN's and the GEMM
form only adds the im2col traffic). Activations are NHWC float32.

The models' config keys for the choice: ``model.encoder_conv_impl`` and ``model.decoder_conv_impl``
(spectrogram autoencoders), ``model.conv_impl`` (DEC's distance network), and
``model.encoder_conv_impl``, ``decoder_conv_impl``, ``output_conv_impl`` (zClust).

The GEMM forms are ``jax.custom_vjp`` functions: reverse mode (``jax.grad``, ``jax.vjp``) works,
forward mode (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) raises. Setting those keys to ``"xla"``
avoids them; training-mode :func:`batch_norm_relu` is a custom VJP too, so forward mode through a
spectrogram model works in evaluation mode (running averages) with ``"xla"`` convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from seisjax.errors import InputError

__all__ = [
    "CONV_IMPLS",
    "BatchNormReLU",
    "Conv",
    "ConvTranspose3x3S2",
    "batch_norm_relu",
    "col2im",
    "conv2d_gemm",
    "conv2d_one_output",
    "conv_transpose3x3s2_gemm",
    "depth_to_space",
    "im2col",
    "resolve_conv_impl",
    "same_padding",
]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """XLA's "SAME" padding ``(before, after)`` of one axis: the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pads(size_hw, kernel_size, strides, padding):
    if isinstance(padding, str):
        if padding != "SAME":
            raise ValueError(f"padding = {padding!r}: expected 'SAME' or ((top, bottom), (left, right))")
        return tuple(same_padding(n, k, s) for n, k, s in zip(size_hw, kernel_size, strides, strict=True))
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def _out_size(n, k, s, pad):
    return (n + pad[0] + pad[1] - k) // s + 1


def im2col(x: jax.Array, kernel_size: Sequence[int], strides: Sequence[int] = (1, 1),
           padding: str | Sequence[tuple[int, int]] = "SAME") -> jax.Array:
    """NHWC ``x`` -> patches ``(B, Ho, Wo, kh, kw, C)``: ``patch[p, q, i, j] = x[s*p + i - top,
    s*q + j - left]`` (zero outside), the layout of an HWIO kernel's first three axes.

    Gathered one axis at a time (the kw column taps, then the kh row taps of those), so the second
    pass copies contiguous rows."""
    (kh, kw), (sh, sw) = kernel_size, strides
    (pt, pb), (pl, pr) = _pads(x.shape[1:3], kernel_size, strides, padding)
    ho, wo = _out_size(x.shape[1], kh, sh, (pt, pb)), _out_size(x.shape[2], kw, sw, (pl, pr))
    xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (pt, pb, 0), (pl, pr, 0), (0, 0, 0)))
    b, hp, _, c = xp.shape
    cols = jnp.stack([lax.slice(xp, (0, 0, j, 0), (b, hp, j + sw * (wo - 1) + 1, c), (1, 1, sw, 1))
                      for j in range(kw)], axis=3)                                   # (B, Hp, Wo, kw, C)
    return jnp.stack([lax.slice(cols, (0, i, 0, 0, 0), (b, i + sh * (ho - 1) + 1, wo, kw, c), (1, sh, 1, 1, 1))
                      for i in range(kh)], axis=3)                                   # (B, Ho, Wo, kh, kw, C)


def _shift2(a: jax.Array, dh: int, dw: int, size_h: int, size_w: int) -> jax.Array:
    """``out[m, n] = a[m - dh, n - dw]`` on axes 1, 2 for ``m < size_h``, ``n < size_w`` (zero outside)."""
    zero = jnp.zeros((), a.dtype)
    return lax.pad(a, zero, ((0, 0, 0), (dh, size_h - a.shape[1] - dh, 0), (dw, size_w - a.shape[2] - dw, 0),
                             (0, 0, 0)))


def col2im(patches: jax.Array, size_hw: Sequence[int], strides: Sequence[int] = (1, 1),
           padding: str | Sequence[tuple[int, int]] = "SAME") -> jax.Array:
    """The transpose of :func:`im2col`: ``(B, Ho, Wo, kh, kw, C)`` overlap-added into ``(B, H, W, C)``
    (``size_hw = (H, W)``), one output phase ``(s*m + r)`` per stride offset, then interleaved."""
    b, _, _, kh, kw, c = patches.shape
    (sh, sw), (h, w) = strides, size_hw
    (pt, _), (pl, _) = _pads(size_hw, (kh, kw), strides, padding)
    mh, mw = -(-h // sh), -(-w // sw)
    rows = []
    for rh in range(sh):
        cols = []
        for rw in range(sw):
            terms = [_shift2(patches[:, :, :, i, j], (i - pt - rh) // sh, (j - pl - rw) // sw, mh, mw)
                     for i in range(kh) if (i - pt - rh) % sh == 0
                     for j in range(kw) if (j - pl - rw) % sw == 0]
            cols.append(sum(terms[1:], terms[0]) if terms else jnp.zeros((b, mh, mw, c), patches.dtype))
        rows.append(jnp.stack(cols, axis=3))
    out = jnp.stack(rows, axis=2).reshape(b, mh * sh, mw * sw, c)
    return out[:, :h, :w]


def _gemm(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.dot(a, b, preferred_element_type=jnp.float32)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_gemm(x, kernel, strides, padding):
    return _conv_gemm_fwd(x, kernel, strides, padding)[0]


def _conv_gemm_fwd(x, kernel, strides, padding):
    kh, kw, cin, cout = kernel.shape
    patches = im2col(x, (kh, kw), strides, padding)
    b, ho, wo = patches.shape[:3]
    cols = patches.reshape(b * ho * wo, kh * kw * cin)
    y = _gemm(cols, kernel.reshape(kh * kw * cin, cout)).reshape(b, ho, wo, cout)
    return y, (cols, kernel, x.shape)


def _conv_gemm_bwd(strides, padding, res, dy):
    cols, kernel, x_shape = res
    kh, kw, cin, cout = kernel.shape
    dy2 = dy.reshape(-1, cout)
    dkernel = _gemm(cols.T, dy2).reshape(kernel.shape)
    dcols = _gemm(dy2, kernel.reshape(kh * kw * cin, cout).T)
    dx = col2im(dcols.reshape(*dy.shape[:3], kh, kw, cin), x_shape[1:3], strides, padding)
    return dx, dkernel


_conv_gemm.defvjp(_conv_gemm_fwd, _conv_gemm_bwd)


def conv2d_gemm(x: jax.Array, kernel: jax.Array, strides: Sequence[int] = (1, 1),
                padding: str | Sequence[tuple[int, int]] = "SAME") -> jax.Array:
    """``lax.conv_general_dilated(x, kernel, strides, padding)`` (NHWC, HWIO, float32) as im2col and
    one GEMM; its backward is ``patches^T @ dy`` (weights) and ``col2im(dy @ W^T)`` (input). The
    patches are kept for the backward pass: ``kh*kw / (sh*sw)`` times the input's memory."""
    strides = tuple(int(s) for s in strides)
    padding = padding if isinstance(padding, str) else tuple(tuple(int(v) for v in p) for p in padding)
    return _conv_gemm(x, kernel, strides, padding)


def _one_output_pads(size_hw, kernel_size, padding):
    pads = _pads(size_hw, kernel_size, (1, 1), padding)
    out_hw = tuple(_out_size(n, k, 1, pad) for n, k, pad in zip(size_hw, kernel_size, pads, strict=True))
    return pads, out_hw


def _shifted_sum(planes, kernel_size, pads, out_hw):
    """``sum_ij pad(planes[i*kw + j])[:, i:i+Ho, j:j+Wo]`` over tap-major ``planes (kh*kw, B, H, W)``."""
    (kh, kw), (ho, wo) = kernel_size, out_hw
    padded = lax.pad(planes, jnp.zeros((), planes.dtype), ((0, 0, 0), (0, 0, 0), (*pads[0], 0), (*pads[1], 0)))
    return sum(padded[i * kw + j, :, i:i + ho, j:j + wo] for i in range(kh) for j in range(kw))


def _tap_planes_of_dy(dy, size_hw, kernel_size, pads):
    """``S[i*kw + j, b, p, q] = dy[b, p + top - i, q + left - j]`` (0 outside): the output gradient
    seen from each input pixel through each tap, ``(kh*kw, B, H, W)``."""
    (kh, kw), (h, w) = kernel_size, size_hw
    lo_hi = [(k - 1 - before, k - 1 - after, 0) for k, (before, after) in zip(kernel_size, pads, strict=True)]
    dyp = lax.pad(dy, jnp.zeros((), dy.dtype), ((0, 0, 0), *lo_hi))
    return jnp.stack([dyp[:, kh - 1 - i:kh - 1 - i + h, kw - 1 - j:kw - 1 - j + w]
                      for i in range(kh) for j in range(kw)])


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_one(x, kernel, padding):
    return _conv_one_fwd(x, kernel, padding)[0]


def _conv_one_fwd(x, kernel, padding):
    kh, kw, cin, _ = kernel.shape
    pads, out_hw = _one_output_pads(x.shape[1:3], (kh, kw), padding)
    taps = jnp.einsum("bhwc,tc->tbhw", x, kernel.reshape(kh * kw, cin), preferred_element_type=jnp.float32)
    return _shifted_sum(taps, (kh, kw), pads, out_hw)[..., None], (x, kernel)


def _conv_one_bwd(padding, res, dy):
    x, kernel = res
    kh, kw, cin, _ = kernel.shape
    b, h, w, _ = x.shape
    pads, _ = _one_output_pads((h, w), (kh, kw), padding)
    planes = _tap_planes_of_dy(dy[..., 0], (h, w), (kh, kw), pads)       # (kh*kw, B, H, W)
    taps = kernel.reshape(kh * kw, cin)
    dx = sum(planes[t][..., None] * taps[t] for t in range(kh * kw))
    dkernel = _gemm(planes.reshape(kh * kw, -1), x.reshape(-1, cin)).reshape(kernel.shape)
    return dx.astype(x.dtype), dkernel


_conv_one.defvjp(_conv_one_fwd, _conv_one_bwd)


def conv2d_one_output(x: jax.Array, kernel: jax.Array,
                      padding: str | Sequence[tuple[int, int]] = "SAME") -> jax.Array:
    """``lax.conv_general_dilated(x, kernel, (1, 1), padding)`` (NHWC, HWIO, float32) for a kernel with
    one output channel: the input contracted with every tap at once (``(kh*kw, B, H, W)``), then the
    ``kh*kw`` planes shifted and added. Its backward builds the output gradient's ``kh*kw`` shifted
    planes once: the input gradient is their weighted sum, the kernel's one GEMM with the input."""
    if kernel.ndim != 4 or kernel.shape[-1] != 1:
        raise ValueError(f"conv2d_one_output: kernel shape {kernel.shape} must be (kh, kw, in, 1)")
    padding = padding if isinstance(padding, str) else tuple(tuple(int(v) for v in p) for p in padding)
    return _conv_one(x, kernel, padding)


@jax.custom_vjp
def conv_transpose3x3s2_gemm(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """``lax.conv_transpose(x, kernel, (2, 2), "SAME")`` (NHWC, HWIO ``(3, 3, in, out)``, unflipped) as
    PyTorch computes a transposed convolution: one GEMM to the nine taps of every input pixel, overlap-
    added (:func:`col2im` of the stride-2 "SAME" geometry, of which this is the transpose)."""
    return _convt_fwd(x, kernel)[0]


def _flipped_matrix(kernel):
    """``(3, 3, in, out)`` -> ``(in, 9*out)``, taps flipped: tap ``(a, b)`` of an input pixel lands at
    output ``(2p + a, 2q + b)`` with weight ``kernel[2 - a, 2 - b]``."""
    cin, cout = kernel.shape[2:]
    return kernel[::-1, ::-1].transpose(2, 0, 1, 3).reshape(cin, 9 * cout)


def _convt_fwd(x, kernel):
    b, h, w, cin = x.shape
    cout = kernel.shape[-1]
    x2 = x.reshape(b * h * w, cin)
    taps = _gemm(x2, _flipped_matrix(kernel)).reshape(b, h, w, 3, 3, cout)
    return col2im(taps, (2 * h, 2 * w), (2, 2), "SAME"), (x2, kernel)


def _convt_bwd(res, dy):
    x2, kernel = res
    cin, cout = kernel.shape[2:]
    dtaps = im2col(dy, (3, 3), (2, 2), "SAME")
    b, h, w = dtaps.shape[:3]
    dtaps = dtaps.reshape(b * h * w, 9 * cout)
    dx = _gemm(dtaps, _flipped_matrix(kernel).T).reshape(b, h, w, cin)
    dmat = _gemm(x2.T, dtaps)   # (in, 9*out), flipped taps
    dkernel = dmat.reshape(cin, 3, 3, cout).transpose(1, 2, 0, 3)[::-1, ::-1]
    return dx, dkernel


conv_transpose3x3s2_gemm.defvjp(_convt_fwd, _convt_bwd)


def _as_rows(x: jax.Array, channel_axis: int) -> jax.Array:
    """``x`` as a matrix with channels on one axis: ``(C, N)`` for channel-major, else ``(N, C)``."""
    return x.reshape(x.shape[0], -1) if channel_axis == 0 else x.reshape(-1, x.shape[-1])


def _per_channel(v: jax.Array, x: jax.Array, channel_axis: int) -> jax.Array:
    """A ``(C,)`` vector broadcastable against ``x``."""
    return v.reshape((-1,) + (1,) * (x.ndim - 1)) if channel_axis == 0 else v


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _bn_relu(x, scale, bias, epsilon, channel_axis):
    return _bn_relu_fwd(x, scale, bias, epsilon, channel_axis)[0]


def _bn_relu_fwd(x, scale, bias, epsilon, channel_axis):
    rows = _as_rows(x, channel_axis)
    reduce_axis = 1 if channel_axis == 0 else 0
    n = rows.shape[reduce_axis]
    mean = jnp.sum(rows, axis=reduce_axis, dtype=jnp.float32) / n
    mean_sq = jnp.sum(jnp.square(rows), axis=reduce_axis, dtype=jnp.float32) / n
    var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)   # as flax's use_fast_variance
    inv = lax.rsqrt(var + epsilon)
    mul = inv * scale
    y = jax.nn.relu((x - _per_channel(mean, x, channel_axis)) * _per_channel(mul, x, channel_axis)
                    + _per_channel(bias, x, channel_axis))
    return (y, mean, var), (x, mean, inv, scale, bias)


def _bn_relu_bwd(epsilon, channel_axis, res, cotangents):
    # the batch statistics are outputs for the running averages only (the public wrapper stops their
    # gradient), so their cotangents are zero and ignored here
    x, mean, inv, scale, bias = res
    dy = cotangents[0]
    c = x.shape[channel_axis]
    n = x.size // c
    xhat = (x - _per_channel(mean, x, channel_axis)) * _per_channel(inv, x, channel_axis)
    dz = jnp.where(xhat * _per_channel(scale, x, channel_axis) + _per_channel(bias, x, channel_axis) > 0, dy, 0.0)
    reduce_axis = 1 if channel_axis == 0 else 0
    dbias = jnp.sum(_as_rows(dz, channel_axis), axis=reduce_axis, dtype=jnp.float32)
    dscale = jnp.sum(_as_rows(dz * xhat, channel_axis), axis=reduce_axis, dtype=jnp.float32)
    dx = _per_channel(inv * scale, x, channel_axis) * (
        dz - (_per_channel(dbias, x, channel_axis) + xhat * _per_channel(dscale, x, channel_axis)) / n)
    return dx.astype(x.dtype), dscale, dbias


_bn_relu.defvjp(_bn_relu_fwd, _bn_relu_bwd)


def batch_norm_relu(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float = 1e-5,
                    channel_axis: int = -1):
    """Training-mode ``relu(batch_norm(x))`` over all axes but ``channel_axis`` (-1: NHWC, 0:
    channel-major CBHW): ``(y, mean, var)``, the batch statistics as flax's ``BatchNorm`` computes
    them (one pass, ``E[x^2] - E[x]^2`` clipped at 0) and with their gradient stopped (they feed the
    running averages). The backward is hand-written: two per-channel reductions (of ``dz`` and
    ``dz * xhat``) and one elementwise pass."""
    if channel_axis not in (0, -1, x.ndim - 1):
        raise ValueError(f"channel_axis = {channel_axis}: expected 0 (channel-major) or -1 (channels last)")
    axis = 0 if channel_axis == 0 else -1
    y, mean, var = _bn_relu(x, scale, bias, float(epsilon), axis)
    return y, lax.stop_gradient(mean), lax.stop_gradient(var)


_DIMS = ("NHWC", "HWIO", "NHWC")


def _conv_xla(x, kernel, strides, padding):
    return lax.conv_general_dilated(x, kernel, tuple(strides), padding, dimension_numbers=_DIMS)


CONV_IMPLS = ("auto", "gemm", "one_output", "xla")


def resolve_conv_impl(impl: str, features: int = 0, strides: Sequence[int] = (1, 1)) -> str:
    """``"auto"`` -> on the CPU backend ``"one_output"`` for a stride-1 convolution to ``features == 1``
    channel, else ``"gemm"``; ``"xla"`` elsewhere. Other choices unchanged."""
    if impl not in CONV_IMPLS:
        raise InputError(f"impl = {impl!r}: expected one of {', '.join(CONV_IMPLS)}")
    if impl != "auto":
        return impl
    if jax.default_backend() != "cpu":
        return "xla"
    return "one_output" if features == 1 and all(int(s) == 1 for s in strides) else "gemm"


class Conv(nn.Module):
    """``flax.linen.Conv`` (NHWC, "SAME" or explicit padding, no dilation or groups) with the same
    parameters (``kernel (kh, kw, in, features)`` lecun-normal, ``bias`` zeros) and function, computed
    by :func:`conv2d_gemm` (``impl="gemm"``), :func:`conv2d_one_output` (``"one_output"``: stride 1,
    one feature), XLA's convolution (``"xla"``) or as :func:`resolve_conv_impl` chooses (``"auto"``)."""

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    padding: str | Sequence[tuple[int, int]] = "SAME"
    use_bias: bool = True
    impl: str = "gemm"

    @nn.compact
    def __call__(self, x):
        impl = resolve_conv_impl(self.impl, self.features, self.strides)   # a bad choice fails first
        if impl == "one_output" and (self.features != 1 or any(int(s) != 1 for s in self.strides)):
            raise InputError(f"impl = 'one_output' needs features = 1 and stride 1, not {self.features} "
                             f"and {tuple(self.strides)}")
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
        if impl == "gemm":
            y = conv2d_gemm(x, kernel, self.strides, self.padding)
        elif impl == "one_output":
            y = conv2d_one_output(x, kernel, self.padding)
        else:
            y = _conv_xla(x, kernel, self.strides, self.padding)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        return y


class ConvTranspose3x3S2(nn.Module):
    """``flax.linen.ConvTranspose(features, (3, 3), strides=(2, 2), padding="SAME")`` with the same
    parameters (``kernel (3, 3, in, features)`` lecun-normal, ``bias`` zeros) and function, computed by
    :func:`conv_transpose3x3s2_gemm` (``impl="gemm"``), XLA's ``conv_transpose`` (``"xla"``) or as
    :func:`resolve_conv_impl` chooses (``"auto"``)."""

    features: int
    use_bias: bool = True
    impl: str = "gemm"

    @nn.compact
    def __call__(self, x):
        impl = resolve_conv_impl(self.impl)
        if impl not in ("gemm", "xla"):
            raise InputError(f"impl = {self.impl!r}: a transposed convolution runs as 'gemm' or 'xla' (or 'auto')")
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features))
        if impl == "gemm":
            y = conv_transpose3x3s2_gemm(x, kernel)
        else:
            y = lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=_DIMS)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return y


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
    """``(B, H, W, block*block*C)`` -> ``(B, block*H, block*W, C)``; channel ``(i*block + j)*C + c``
    goes to pixel ``(block*h + i, block*w + j)`` (the sub-pixel upsampling's shuffle)."""
    b, h, w, c = x.shape
    out = c // (block * block)
    x = x.reshape(b, h, w, block, block, out).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * block, w * block, out)


class BatchNormReLU(nn.Module):
    """``relu(flax.linen.BatchNorm(...)(x))`` over the last axis, with BatchNorm's variables
    (``params``: ``scale``, ``bias``; ``batch_stats``: ``mean``, ``var``) and its running-average rule
    ``ra = momentum * ra + (1 - momentum) * batch`` (not updated while initialising); training mode
    runs :func:`batch_norm_relu`."""

    use_running_average: bool = False
    momentum: float = 0.99
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x):
        features = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones_init(), (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (features,), jnp.float32)
        if self.use_running_average:
            mul = lax.rsqrt(ra_var.value + self.epsilon) * scale
            return jax.nn.relu((x - ra_mean.value) * mul + bias)
        y, mean, var = batch_norm_relu(x, scale, bias, self.epsilon)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * var
        return y
