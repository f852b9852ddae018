"""The GEMM and one-output convolutions, the transposed convolution and batch norm of seisjax/ops/conv.py
compute what XLA's convolutions and flax's ConvTranspose and BatchNorm compute, values and gradients
(their custom VJPs against jax.grad of the plain operations), with the same variables as flax's
modules; depth-to-space by hand."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.errors import InputError
from seisjax.ops.conv import (
    BatchNormReLU,
    Conv,
    ConvTranspose3x3S2,
    batch_norm_relu,
    col2im,
    conv2d_gemm,
    conv2d_one_output,
    conv_transpose3x3s2_gemm,
    depth_to_space,
    im2col,
    resolve_conv_impl,
    same_padding,
)

FAST_COMPILE = True  # see conftest.py
DIMS = ("NHWC", "HWIO", "NHWC")


def _close(actual, expected, rtol=1e-5):
    """Equal to ``rtol`` relative to the largest magnitude of ``expected`` (float32 sums reorder)."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def _grads(fn, x, kernel, cotangent):
    return jax.grad(lambda x, k: jnp.sum(fn(x, k) * cotangent), argnums=(0, 1))(x, kernel)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("shape,kernel_size", [((2, 7, 5, 3), (3, 3)), ((3, 8, 6, 4), (3, 3)),
                                               ((2, 9, 4, 2), (2, 2)), ((1, 5, 5, 3), (1, 1))])
def test_conv2d_gemm_equals_xla_convolution_and_its_gradients(shape, kernel_size, stride):
    rng = np.random.default_rng(sum(shape) + stride)
    x = rng.normal(size=shape).astype(np.float32)   # odd sizes: "SAME" puts the extra pad after
    kernel = rng.normal(size=(*kernel_size, shape[-1], 5)).astype(np.float32)

    def reference(x, k):
        return jax.lax.conv_general_dilated(x, k, (stride, stride), "SAME", dimension_numbers=DIMS)

    def ours(x, k):
        return conv2d_gemm(x, k, (stride, stride))

    expected = reference(x, kernel)
    _close(ours(x, kernel), expected)
    cotangent = rng.normal(size=expected.shape).astype(np.float32)
    for got, want in zip(_grads(ours, x, kernel, cotangent), _grads(reference, x, kernel, cotangent), strict=True):
        _close(got, want)


def test_conv2d_gemm_explicit_padding():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 7, 3)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    padding = ((2, 0), (1, 2))
    expected = jax.lax.conv_general_dilated(x, kernel, (2, 1), padding, dimension_numbers=DIMS)
    _close(conv2d_gemm(x, kernel, (2, 1), padding), expected)


@pytest.mark.parametrize("shape,kernel_size,padding", [
    ((2, 7, 5, 8), (3, 3), "SAME"), ((3, 6, 9, 1), (3, 3), "SAME"), ((2, 8, 6, 3), (5, 2), "SAME"),
    ((2, 6, 7, 3), (3, 3), ((2, 0), (1, 2))), ((1, 5, 6, 2), (3, 3), ((0, 0), (0, 0)))])
def test_conv2d_one_output_equals_xla_convolution_and_its_gradients(shape, kernel_size, padding):
    rng = np.random.default_rng(sum(shape) + sum(kernel_size))
    x = rng.normal(size=shape).astype(np.float32)
    kernel = rng.normal(size=(*kernel_size, shape[-1], 1)).astype(np.float32)

    def reference(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=DIMS)

    def ours(x, k):
        return conv2d_one_output(x, k, padding)

    expected = reference(x, kernel)
    _close(jax.jit(ours)(x, kernel), expected)
    cotangent = rng.normal(size=expected.shape).astype(np.float32)
    for got, want in zip(_grads(ours, x, kernel, cotangent), _grads(reference, x, kernel, cotangent), strict=True):
        _close(got, want)


def test_one_output_form_is_chosen_only_where_it_applies():
    x = np.ones((1, 5, 5, 2), np.float32)
    with pytest.raises(ValueError, match=r"\(kh, kw, in, 1\)"):
        conv2d_one_output(x, np.ones((3, 3, 2, 4), np.float32))
    with pytest.raises(ValueError, match="features = 1 and stride 1"):
        Conv(1, strides=(2, 2), impl="one_output").init(jax.random.key(0), x)
    ref = nn.Conv(1, (3, 3), padding="SAME")
    variables = jax.tree.map(lambda v: v + 0.1, ref.init(jax.random.key(1), x))
    _close(Conv(1, (3, 3), impl="one_output").apply(variables, x), ref.apply(variables, x))
    if jax.default_backend() == "cpu":
        assert resolve_conv_impl("auto", 1, (1, 1)) == "one_output"
        assert resolve_conv_impl("auto", 1, (2, 2)) == resolve_conv_impl("auto", 4, (1, 1)) == "gemm"


@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (1, 4, 6, 3), (2, 1, 7, 2)])
def test_conv_transpose_gemm_equals_xla_conv_transpose_and_its_gradients(shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.normal(size=shape).astype(np.float32)
    kernel = rng.normal(size=(3, 3, shape[-1], 6)).astype(np.float32)

    def reference(x, k):
        return jax.lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=DIMS)

    expected = reference(x, kernel)
    got = conv_transpose3x3s2_gemm(x, kernel)
    assert got.shape == (shape[0], 2 * shape[1], 2 * shape[2], 6)
    _close(got, expected)
    cotangent = rng.normal(size=expected.shape).astype(np.float32)
    for g, want in zip(_grads(conv_transpose3x3s2_gemm, x, kernel, cotangent),
                       _grads(reference, x, kernel, cotangent), strict=True):
        _close(g, want)


@pytest.mark.parametrize("stride", [1, 2])
def test_col2im_is_the_adjoint_of_im2col(stride):
    # <im2col(x), p> == <x, col2im(p)> for every x, p: the backward passes rely on it
    rng = np.random.default_rng(stride)
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    patches = im2col(x, (3, 3), (stride, stride))
    p = rng.normal(size=patches.shape).astype(np.float32)
    lhs = np.sum(np.asarray(patches, np.float64) * p)
    rhs = np.sum(np.asarray(x, np.float64) * np.asarray(col2im(p, x.shape[1:3], (stride, stride)), np.float64))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5)
    # and one patch by hand: output pixel (1, 1) sees input rows/cols s-1+i (top pad 1 at stride 1, 0 at 2)
    top = same_padding(7, 3, stride)[0]
    left = same_padding(6, 3, stride)[0]
    expected = x[0, stride - top:stride - top + 3, stride - left:stride - left + 3]
    np.testing.assert_array_equal(np.asarray(patches[0, 1, 1]), expected)


def test_same_padding_matches_xla():
    for size in range(1, 12):
        for kernel in (1, 2, 3):
            for stride in (1, 2, 3):
                out = -(-size // stride)
                lo, hi = same_padding(size, kernel, stride)
                assert (size + lo + hi - kernel) // stride + 1 == out
                assert hi - lo in (0, 1)
                assert [(lo, hi)] == jax.lax.padtype_to_pads((size,), (kernel,), (stride,), "SAME")


def _flax_bn_relu(x, scale, bias):
    stats = {"mean": jnp.zeros(x.shape[-1]), "var": jnp.ones(x.shape[-1])}
    y, new = nn.BatchNorm(use_running_average=False, momentum=0.9).apply(
        {"params": {"scale": scale, "bias": bias}, "batch_stats": stats}, x, mutable=["batch_stats"])
    return jax.nn.relu(y), new["batch_stats"]


@pytest.mark.parametrize("shape", [(3, 5, 7, 4), (2, 9, 3, 6)])
def test_batch_norm_relu_equals_flax_values_statistics_and_gradients(shape):
    rng = np.random.default_rng(sum(shape))
    x = (rng.normal(size=shape) * 2 + 0.7).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, shape[-1]).astype(np.float32)
    bias = rng.normal(size=shape[-1]).astype(np.float32)
    y, mean, var = batch_norm_relu(x, scale, bias)
    y_ref, stats = _flax_bn_relu(x, scale, bias)
    _close(y, y_ref)
    assert 0.2 < float(jnp.mean(y > 0)) < 0.9   # the ReLU cuts somewhere, so its mask is tested
    # flax's running average after one step = 0.9 * init + 0.1 * batch statistic
    _close(mean, (stats["mean"] - 0.0) / 0.1)
    _close(var, (stats["var"] - 0.9) / 0.1)
    _close(mean, x.reshape(-1, shape[-1]).mean(0))
    _close(var, x.reshape(-1, shape[-1]).var(0))
    cotangent = rng.normal(size=shape).astype(np.float32)
    ours = jax.grad(lambda *a: jnp.sum(batch_norm_relu(*a)[0] * cotangent), argnums=(0, 1, 2))(x, scale, bias)
    ref = jax.grad(lambda *a: jnp.sum(_flax_bn_relu(*a)[0] * cotangent), argnums=(0, 1, 2))(x, scale, bias)
    for got, want in zip(ours, ref, strict=True):
        _close(got, want)
    # the statistics are outputs for the running averages, not differentiated
    stat_grad = jax.grad(lambda x: jnp.sum(batch_norm_relu(x, scale, bias)[1]))(x)
    assert float(jnp.abs(stat_grad).max()) == 0.0


def test_batch_norm_relu_rejects_a_middle_channel_axis():
    with pytest.raises(ValueError, match="channel_axis"):
        batch_norm_relu(jnp.ones((2, 3, 4)), jnp.ones(3), jnp.zeros(3), channel_axis=1)


def test_batch_norm_relu_module_has_flax_variables_and_running_averages():
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(4, 6, 5, 3)) + 1.0).astype(np.float32)
    ref = nn.BatchNorm(use_running_average=False, momentum=0.8)
    ours = BatchNormReLU(use_running_average=False, momentum=0.8)
    variables = ref.init(jax.random.key(0), x)
    assert jax.tree.map(np.shape, ours.init(jax.random.key(0), x)) == jax.tree.map(np.shape, variables)
    # initialising does not move the running averages (as flax)
    init = ours.init(jax.random.key(0), x)["batch_stats"]
    np.testing.assert_array_equal(init["mean"], np.zeros(3))
    np.testing.assert_array_equal(init["var"], np.ones(3))
    variables = jax.tree.map(lambda v: v + rng.uniform(0.1, 0.5, v.shape).astype(np.float32), variables)
    y, new = ours.apply(variables, x, mutable=["batch_stats"])
    y_ref, new_ref = ref.apply(variables, x, mutable=["batch_stats"])
    _close(y, jax.nn.relu(y_ref))
    for key in ("mean", "var"):
        _close(new["batch_stats"][key], new_ref["batch_stats"][key])
    # evaluation mode uses the running averages
    y_eval = BatchNormReLU(use_running_average=True).apply(variables, x)
    _close(y_eval, jax.nn.relu(nn.BatchNorm(use_running_average=True).apply(variables, x)))


@pytest.mark.parametrize("impl", ["gemm", "xla", "auto"])
def test_conv_module_loads_nn_conv_variables(impl):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    ref = nn.Conv(5, (3, 3), strides=(2, 2), padding="SAME")
    variables = jax.tree.map(lambda v: v + 0.1, ref.init(jax.random.key(1), x))   # a non-zero bias too
    ours = Conv(5, (3, 3), strides=(2, 2), impl=impl)
    assert jax.tree.map(np.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(np.shape, variables)
    _close(ours.apply(variables, x), ref.apply(variables, x))
    with pytest.raises(InputError, match="impl"):
        Conv(5, impl="fft").init(jax.random.key(1), x)


@pytest.mark.parametrize("impl", ["gemm", "xla", "auto"])
@pytest.mark.parametrize("features", [3, 24])
def test_conv_transpose_module_loads_nn_conv_transpose_variables(features, impl):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 6, 8)).astype(np.float32)
    reference = nn.ConvTranspose(features, (3, 3), strides=(2, 2), padding="SAME")
    variables = reference.init(jax.random.key(1), x)
    variables = jax.tree.map(lambda v: v + 0.1, variables)   # a non-zero bias too
    ours = ConvTranspose3x3S2(features, impl=impl)
    assert jax.tree.map(np.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(np.shape, variables)
    out = ours.apply(variables, x)
    assert out.shape == (2, 8, 12, features)
    np.testing.assert_allclose(np.asarray(out), np.asarray(reference.apply(variables, x)), atol=1e-5)


def test_conv_transpose_module_rejects_an_unknown_form():
    x = np.ones((1, 2, 2, 3), np.float32)
    with pytest.raises(InputError, match="impl"):
        ConvTranspose3x3S2(4, impl="dilated").init(jax.random.key(0), x)
    with pytest.raises(InputError, match="'gemm' or 'xla'"):
        ConvTranspose3x3S2(4, impl="one_output").init(jax.random.key(0), x)


def test_depth_to_space_by_hand():
    # input pixel (h, w) channel (i*2 + j) -> output pixel (2h + i, 2w + j)
    x = np.arange(2 * 2 * 4, dtype=np.float32).reshape(1, 2, 2, 4)   # one channel out, block 2
    out = np.asarray(depth_to_space(x, 2))[0, :, :, 0]
    expected = np.empty((4, 4), np.float32)
    for h in range(2):
        for w in range(2):
            for i in range(2):
                for j in range(2):
                    expected[2 * h + i, 2 * w + j] = x[0, h, w, 2 * i + j]
    np.testing.assert_array_equal(out, expected)
    # a wider input: channel k of 4 goes to pixel (k // 2, k % 2) of each 2x2 block
    x = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape(1, 2, 3, 4)
    y = np.asarray(depth_to_space(x, 2))[0, :, :, 0]
    assert y.shape == (4, 6)
    for h in range(2):
        for w in range(3):
            block = y[2 * h:2 * h + 2, 2 * w:2 * w + 2].ravel()
            np.testing.assert_array_equal(block, np.asarray(x[0, h, w]))


def test_forward_mode_works_with_the_xla_form_only():
    """The GEMM forms are custom VJPs: jax.jvp through them raises, through impl="xla" it works
    (the reason the model's conv impls are config values)."""
    x = np.random.default_rng(4).normal(size=(1, 6, 6, 2)).astype(np.float32)
    for impl, works in (("xla", True), ("gemm", False)):
        module = Conv(3, (3, 3), strides=(2, 2), impl=impl)
        variables = module.init(jax.random.key(0), x)
        run = lambda x, m=module, v=variables: m.apply(v, x)
        if works:
            _, tangent = jax.jvp(run, (x,), (np.ones_like(x),))
            assert tangent.shape == (1, 3, 3, 3)
        else:
            with pytest.raises(TypeError, match="custom_vjp"):
                jax.jvp(run, (x,), (np.ones_like(x),))
