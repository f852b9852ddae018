"""The conv AE's network: its size by hand, its shapes, and the length it needs."""

import jax
import jax.numpy as jnp
import pytest

from seisjax.config import load_config
from seisjax.conv_ae.model import MODELS, ConvAutoencoder

FAST_COMPILE = True


def test_parameter_count_and_shapes_by_hand():
    config = load_config("experiments/conv_ae.py:quick")
    kwargs = {k: v for k, v in config.model.items() if k != "name"}
    model = MODELS[config.model.name](length=256, out_channels=3, **kwargs)
    x = jax.ShapeDtypeStruct((2, 256, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)

    def conv(k, cin, cout):
        return k * cin * cout + cout

    widths = [3, 8, 16, 32]
    encoder = sum(conv(7, a, b) for a, b in zip(widths, widths[1:])) + (256 // 8 * 32) * 16 + 16
    # dense back to 32 x 32, then (repeat, conv) 32 -> 16 -> 8 -> 8, and a linear conv to 3 components
    decoder = 16 * 32 * 32 + 32 * 32 + conv(7, 32, 16) + conv(7, 16, 8) + conv(7, 8, 8) + conv(7, 8, 3)
    counts = jax.tree_util.tree_map(lambda a: a.size, variables["params"])
    assert sum(jax.tree_util.tree_leaves(counts["encoder"])) == encoder
    assert sum(jax.tree_util.tree_leaves(counts["decoder"])) == decoder
    assert jax.eval_shape(model.apply, variables, x).shape == x.shape
    assert jax.eval_shape(lambda v, x: model.apply(v, x, method="encode"), variables, x).shape == (2, 16)


def test_length_must_halve_at_every_level():
    with pytest.raises(ValueError, match="not divisible by 2\\*\\*3"):
        ConvAutoencoder(length=100).init(jax.random.PRNGKey(0), jnp.zeros((1, 100, 3)))
