"""The fast 3x3 stride-2 transposed convolution (seisjax/ops/upsample.py) is nn.ConvTranspose, in
each of its forms (GEMM + overlap-add, phases, masked)."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from seisjax.ops.conv import conv_transpose3x3s2_gemm
from seisjax.ops.upsample import (
    CONV_TRANSPOSE_IMPLS,
    ConvTranspose3x3S2,
    conv_transpose_masked,
    conv_transpose_phases,
    depth_to_space,
)

DIMS = ("NHWC", "HWIO", "NHWC")


def _gemm_with_bias(x, kernel, bias=None):
    y = conv_transpose3x3s2_gemm(x, kernel)
    return y if bias is None else y + bias


@pytest.mark.parametrize("fast", [conv_transpose_phases, conv_transpose_masked, _gemm_with_bias])
def test_fast_forms_equal_xla_conv_transpose(fast):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)   # odd sizes: every phase boundary shows
    kernel = rng.normal(size=(3, 3, 4, 6)).astype(np.float32)
    bias = rng.normal(size=6).astype(np.float32)
    ref = jax.lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=DIMS) + bias
    np.testing.assert_allclose(np.asarray(fast(x, kernel, bias)), np.asarray(ref), atol=1e-5, rtol=1e-5)
    # and the gradients, which are what training runs
    grad_ref = jax.grad(lambda k: (jax.lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=DIMS) ** 2).sum())
    grad_fast = jax.grad(lambda k: (fast(x, k) ** 2).sum())
    np.testing.assert_allclose(np.asarray(grad_fast(kernel)), np.asarray(grad_ref(kernel)), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("impl", CONV_TRANSPOSE_IMPLS)
@pytest.mark.parametrize("features", [3, 24])
def test_module_loads_nn_conv_transpose_variables(features, impl):
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


def test_depth_to_space_by_hand():
    x = np.arange(2 * 2 * 4, dtype=np.float32).reshape(1, 2, 2, 4)   # one channel out, block 2
    out = np.asarray(depth_to_space(x, 2))[0, :, :, 0]
    # input pixel (h, w) channel (i*2 + j) -> output pixel (2h + i, 2w + j)
    expected = np.empty((4, 4), np.float32)
    for h in range(2):
        for w in range(2):
            for i in range(2):
                for j in range(2):
                    expected[2 * h + i, 2 * w + j] = x[0, h, w, 2 * i + j]
    np.testing.assert_array_equal(out, expected)


def test_module_rejects_an_unknown_form():
    with pytest.raises(ValueError, match="impl"):
        ConvTranspose3x3S2(4, impl="dilated").init(jax.random.key(0), np.ones((1, 2, 2, 3), np.float32))
