"""DEC's networks: the polarity, distance and zClust networks' sizes by hand, the linear embedding
option, zClust's resize, and the convolution form chosen by config."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.config import load_config
from seisjax.dec.model import MODELS, MousaviDistance, MousaviPolarity, ZClust, resize_nearest

FAST_COMPILE = True


def test_polarity_network_parameter_count():
    model = MODELS["mousavi_polarity"]()
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 32, 1)))
    params = variables["params"]
    count = lambda prefix: sum(x.size for k, v in params.items() if k.startswith(prefix)
                               for x in jax.tree_util.tree_leaves(v))
    # encoder (kernel*in*out + out): 11*1*8+8, 9*8*4+4, 3*4*2+2, 3*2*1+1
    assert count("enc") == 96 + 292 + 26 + 7
    # decoder: 3*1*2+2, 3*2*4+4, 9*4*8+8, 11*8*1+1
    assert count("dec") == 8 + 28 + 296 + 89
    assert params["centres"].shape == (2, 2)
    recon, z = model.apply(variables, jnp.ones((2, 32, 1)))
    assert recon.shape == (2, 32, 1) and z.shape == (2, 2)


def _counts(params):
    return {name: sum(x.size for x in jax.tree_util.tree_leaves(v)) for name, v in params.items()}


def test_distance_network_parameter_count_and_shapes():
    model = MODELS["mousavi_distance"]()
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 16, 48, 1)))
    counts = _counts(variables["params"])
    # 3x3 kernels: 9 * in * out + out
    assert [counts[f"enc{i}"] for i in range(3)] == [9 * 1 * 4 + 4, 9 * 4 * 2 + 2, 9 * 2 * 1 + 1]
    assert [counts[f"dec{i}"] for i in range(3)] == [9 * 1 * 2 + 2, 9 * 2 * 4 + 4, 9 * 4 * 1 + 1]
    assert variables["params"]["centres"].shape == (2, 12)  # (16 / 8) x (48 / 8) x 1
    # one batch shape throughout: eager ops compile once per shape
    recon, z = model.apply(variables, jnp.ones((2, 16, 48, 1)))
    assert recon.shape == (2, 16, 48, 1) and z.shape == (2, 12)
    with pytest.raises(ValueError, match="divisible by 8"):
        MODELS["mousavi_distance"](input_shape=(15, 48)).init(jax.random.PRNGKey(0), jnp.zeros((1, 15, 48, 1)))


def test_zclust_network_parameter_count_and_shapes():
    model = MODELS["zclust"]()
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 87, 67, 1)))
    counts = _counts(variables["params"])
    widths = [1, 8, 16, 32, 64, 128]
    assert [counts[f"enc{i}"] for i in range(5)] == [9 * a * b + b for a, b in zip(widths, widths[1:])]
    # stride 2 "same": 87 -> 44 -> 22 -> 11 -> 6 -> 3 and 67 -> 34 -> 17 -> 9 -> 5 -> 3
    flat = 3 * 3 * 128
    assert counts["embed"] == flat * 9 + 9 and counts["unembed"] == 9 * flat + flat
    back = widths[::-1]
    assert [counts[f"dec{i}"] for i in range(5)] == [9 * a * b + b for a, b in zip(back, back[1:])]
    assert variables["params"]["centres"].shape == (2, 9)
    recon, z = model.apply(variables, jnp.ones((2, 87, 67, 1)))
    assert recon.shape == (2, 87, 67, 1) and z.shape == (2, 9)
    # leaky ReLU slope 0.02 on the first layer: the encoder's output responds to negative inputs
    assert not np.allclose(model.apply(variables, -jnp.ones((2, 87, 67, 1)), method="encode"),
                           model.apply(variables, jnp.zeros((2, 87, 67, 1)), method="encode"))


def test_zclust_parameter_count_and_shapes_by_hand():
    config = load_config("experiments/dec_zclust.py:quick")
    model = ZClust(input_shape=(87, 67), **{k: v for k, v in config.model.items() if k != "name"})
    x = jax.ShapeDtypeStruct((2, 87, 67, 1), np.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)  # shapes only: nothing to compile
    recon, z = jax.eval_shape(model.apply, variables, x)
    assert recon.shape == x.shape and z.shape == (2, 9)
    def conv(cin, cout):  # 3x3 kernel and bias
        return (9 * cin + 1) * cout

    widths = [1, 8, 16, 32, 64, 128]
    encoder = sum(conv(a, b) for a, b in itertools.pairwise(widths))  # 98,240
    embed = 3 * 3 * 128 * 9 + 9  # 87 x 67 -> 44 x 34 -> 22 x 17 -> 11 x 9 -> 6 x 5 -> 3 x 3
    unembed = 9 * 3 * 3 * 128 + 3 * 3 * 128
    decoder = sum(conv(a, b) for a, b in zip(widths[:0:-1], widths[-2::-1]))  # 128-64-32-16-8-1
    centres = 2 * 9
    counts = jax.tree_util.tree_map(lambda a: a.size, variables["params"])
    assert sum(jax.tree_util.tree_leaves(counts)) == encoder + embed + unembed + decoder + centres == 218_268


def test_linear_embedding_is_the_tanh_embedding_before_its_tanh():
    """Max-pooling commutes with the monotonic tanh, so with the same weights the tanh network's
    embedding is exactly tanh of the linear-embedding network's."""
    x = 3.0 * jax.random.normal(jax.random.PRNGKey(0), (16, 32, 1))
    tanh_net, linear_net = MousaviPolarity(), MousaviPolarity(embedding_activation="linear")
    params = jax.tree_util.tree_map(np.asarray, tanh_net.init(jax.random.PRNGKey(1), x))
    params["params"]["enc3"]["kernel"] = 10.0 * params["params"]["enc3"]["kernel"]  # drive the last tanh into saturation
    z_tanh = tanh_net.apply(params, x, method="encode")
    z_linear = linear_net.apply(params, x, method="encode")
    np.testing.assert_allclose(np.tanh(z_linear), z_tanh, atol=1e-6)
    assert np.abs(z_linear).max() > 1.0  # unbounded, where the tanh layer saturates
    with pytest.raises(ValueError, match="unknown activation"):
        MousaviPolarity(embedding_activation="sigmoid").init(jax.random.PRNGKey(1), x)


@pytest.mark.parametrize("size_in, size_out", [((3, 3), (6, 5)), ((44, 34), (87, 67)), ((6, 5), (11, 9)),
                                               ((9, 7), (4, 7)), ((5, 5), (5, 5))])
def test_zclust_resize_is_jax_nearest_resize(size_in, size_out):
    """The decoder's repeat-based resize picks the pixels jax.image.resize("nearest") picks, up and
    down, and its gradient sums the copies of each pixel."""
    x = np.random.default_rng(0).normal(size=(2, *size_in, 3)).astype(np.float32)
    shape = (2, *size_out, 3)
    np.testing.assert_array_equal(np.asarray(resize_nearest(x, size_out)),
                                  np.asarray(jax.image.resize(x, shape, "nearest")))
    w = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    grad = jax.grad(lambda a: jnp.sum(resize_nearest(a, size_out) * w))(x)
    expected = jax.grad(lambda a: jnp.sum(jax.image.resize(a, shape, "nearest") * w))(x)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("model, kwargs, choices", [
    (MousaviDistance, {"input_shape": (8, 16)}, [{"conv_impl": "xla"}, {"conv_impl": "gemm"}]),
    (ZClust, {"input_shape": (13, 11), "channels": (4, 6), "embedding_dim": 3},
     [{"encoder_conv_impl": "xla", "decoder_conv_impl": "gemm", "output_conv_impl": "xla"}, {"output_conv_impl": "one_output"}]),
])
def test_the_convolution_form_is_a_config_value_that_changes_how_not_what(model, kwargs, choices):
    """model.conv_impl (zClust: encoder_conv_impl, decoder_conv_impl, output_conv_impl) picks how the convolutions
    are computed: the same variables, and the same reconstruction and embedding."""
    x = np.random.default_rng(0).normal(size=(3, *kwargs["input_shape"], 1)).astype(np.float32)
    default = model(**kwargs)
    variables = default.init(jax.random.PRNGKey(0), x)
    recon, z = default.apply(variables, x)
    for choice in choices:
        other = model(**kwargs, **choice)
        shapes = jax.eval_shape(other.init, jax.random.PRNGKey(0), x)
        assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(variables)
        other_recon, other_z = other.apply(variables, x)
        np.testing.assert_allclose(other_recon, recon, atol=1e-5)
        np.testing.assert_allclose(other_z, z, atol=1e-5)
    with pytest.raises(Exception, match="impl"):
        model(**kwargs, **{next(iter(choices[0])): "fast"}).init(jax.random.PRNGKey(0), x)
