"""Spectrogram AE / VAE / CVAE: shapes, parameter counts by hand, upsampling modes, sampling, KL."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.errors import InputError
from seisjax.spectrogram.model import (
    UPSAMPLE_MODES,
    SpectralAE,
    SpectralCVAE,
    SpectralEncoder,
    SpectralVAE,
    depth_to_space,
    kl_divergence,
)
from seisjax.spectrogram.model import MODELS

FAST_COMPILE = True
FEATURES = (8, 16, 32, 64)
C = 3


def _count(tree) -> int:
    return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))


def _conv_stack_by_hand(features, channels, upsample):
    """Parameters of the encoder + decoder, counted from the architecture."""
    f = list(features)
    enc_pairs = list(zip([channels] + f[:-1], f))                    # 3x3 convs, no bias (batch norm follows)
    dec_out = f[-2::-1] + [channels]
    dec_pairs = list(zip(f[::-1], dec_out))
    enc = sum(9 * i * o for i, o in enc_pairs) + 2 * sum(f)           # + batch-norm scale and bias
    taps = 16 if upsample == "subpixel" else 9                       # 2x2 conv to 4x channels vs 3x3
    bias = 4 * channels if upsample == "subpixel" else channels      # only the last layer has a bias
    dec = sum(taps * i * o for i, o in dec_pairs) + bias + 2 * sum(dec_out[:-1])
    return enc + dec


@pytest.mark.parametrize("upsample", UPSAMPLE_MODES)
def test_ae_shapes_and_parameter_count(upsample):
    model = SpectralAE(features=FEATURES, out_channels=C, upsample=upsample)
    x = jnp.ones((2, 32, 48, C))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    out = model.apply(variables, x, train=False)
    assert out["recon"].shape == x.shape
    assert _count(variables["params"]) == _conv_stack_by_hand(FEATURES, C, upsample)
    # running mean and variance of every batch norm
    assert _count(variables["batch_stats"]) == 2 * (sum(FEATURES) + sum(FEATURES[:-1]))
    h = model.apply(variables, x, method="encode")
    assert h.shape == (2, 2, 3, FEATURES[-1])  # spatial latent, 16x smaller
    assert float(out["recon"].min()) >= 0.0 and float(out["recon"].max()) <= 1.0


@pytest.mark.parametrize("upsample", UPSAMPLE_MODES)
def test_vae_and_cvae_parameter_counts(upsample):
    shape, latent, n_stations, sd, cd = (32, 48), 12, 5, 4, 10
    d = (shape[0] // 16) * (shape[1] // 16) * FEATURES[-1]           # flattened bottom map
    x = jnp.ones((2, *shape, C))
    vae = SpectralVAE(features=FEATURES, latent=latent, out_channels=C, upsample=upsample, input_shape=shape)
    v = vae.init(jax.random.PRNGKey(0), x, train=False)
    heads = 2 * (d * latent + latent) + (latent * d + d)
    assert _count(v["params"]) == _conv_stack_by_hand(FEATURES, C, upsample) + heads
    cvae = SpectralCVAE(features=FEATURES, latent=latent, out_channels=C, upsample=upsample, input_shape=shape,
                        n_stations=n_stations, station_dim=sd, cond_dim=cd)
    cond, station = jnp.zeros((2, 4)), jnp.array([0, 3], jnp.int32)
    cv = cvae.init(jax.random.PRNGKey(0), x, cond, station, train=False)
    cond_net = (n_stations + 1) * sd + (4 + sd) * cd + cd + cd * cd + cd
    cheads = 2 * ((d + cd) * latent + latent) + ((latent + cd) * d + d) + (cd * 2 * C + 2 * C)
    assert _count(cv["params"]) == _conv_stack_by_hand(FEATURES, C, upsample) + cond_net + cheads
    out = cvae.apply(cv, x, cond, station, train=False)
    assert out["recon"].shape == x.shape and out["mean"].shape == (2, latent)
    assert out["log_scale"].shape == (2, 2, C)


def test_upsample_modes_give_the_same_size_and_bad_sizes_are_named():
    x = jnp.ones((1, 16, 32, C))
    shapes = set()
    for mode in UPSAMPLE_MODES:
        model = SpectralAE(features=FEATURES, upsample=mode)
        shapes.add(model.apply(model.init(jax.random.PRNGKey(1), x), x)["recon"].shape)
    assert shapes == {x.shape}
    with pytest.raises(InputError, match="multiples of 16"):
        SpectralAE(features=FEATURES).init(jax.random.PRNGKey(0), jnp.ones((1, 20, 32, C)))
    with pytest.raises(InputError, match="input_shape"):
        vae = SpectralVAE(features=FEATURES, latent=4, input_shape=(16, 32))
        vae.init(jax.random.PRNGKey(0), jnp.ones((1, 32, 32, C)))
    with pytest.raises(InputError, match="upsample"):
        SpectralAE(features=FEATURES, upsample="bicubic").init(jax.random.PRNGKey(0), x)


def test_registry_names():
    assert MODELS["spectral_ae"] is SpectralAE
    assert MODELS["spectral_vae"] is SpectralVAE
    assert MODELS["spectral_cvae"] is SpectralCVAE


def test_depth_to_space_places_channel_groups_by_hand():
    # channel k of 4 goes to pixel (k // 2, k % 2) of each 2x2 block
    x = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape(1, 2, 3, 4)
    y = np.asarray(depth_to_space(x, 2))[0, :, :, 0]
    assert y.shape == (4, 6)
    for h in range(2):
        for w in range(3):
            block = y[2 * h:2 * h + 2, 2 * w:2 * w + 2].ravel()
            np.testing.assert_array_equal(block, np.asarray(x[0, h, w]))


def test_vae_samples_in_training_and_uses_the_mean_otherwise():
    vae = SpectralVAE(features=FEATURES, latent=6, input_shape=(16, 16))
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, C))
    v = vae.init(jax.random.PRNGKey(1), x, train=False)
    run = lambda key: vae.apply(v, x, train=True, rngs={"sample": key}, mutable=["batch_stats"])[0]["recon"]
    assert not np.allclose(run(jax.random.PRNGKey(2)), run(jax.random.PRNGKey(3)))
    out = vae.apply(v, x, train=False)
    mean, _ = vae.apply(v, x, method="encode")
    np.testing.assert_allclose(out["recon"], vae.apply(v, mean, method="decode"), rtol=1e-6)
    np.testing.assert_array_equal(out["mean"], mean)


def test_heads_hold_dense_variables_and_compute_two_dense_layers():
    """The mean and log-variance heads run as one GEMM but keep ``nn.Dense``'s variables (so that
    checkpoints from before restore) and its function."""
    vae = SpectralVAE(features=FEATURES, latent=6, input_shape=(16, 16))
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, C))
    variables = vae.init(jax.random.PRNGKey(1), x, train=False)
    params = variables["params"]
    flat = FEATURES[-1]   # the 16 x 16 input pools to 1 x 1 x FEATURES[-1]
    expected = nn.Dense(6).init(jax.random.PRNGKey(2), jnp.zeros((1, flat)))["params"]
    for head in ("to_mean", "to_logvar"):
        assert jax.tree_util.tree_map(jnp.shape, params[head]) == jax.tree_util.tree_map(jnp.shape, expected)
    h = vae.apply(variables, x, method=lambda m, x: m._features(x, False))
    mean, logvar = vae.apply(variables, x, method="encode")
    for head, out in (("to_mean", mean), ("to_logvar", logvar)):
        ref = nn.Dense(6).apply({"params": params[head]}, h)
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert not np.allclose(mean, logvar)


def test_kl_divergence_by_hand():
    mean = jnp.array([[0.0, 0.0], [1.0, -2.0]])
    logvar = jnp.array([[0.0, 0.0], [np.log(4.0), 0.0]])
    # 0.5 (sigma^2 + mu^2 - 1 - ln sigma^2) per dimension
    expected = [0.0, 0.5 * (4 + 1 - 1 - np.log(4.0)) + 0.5 * (1 + 4 - 1 - 0)]
    np.testing.assert_allclose(kl_divergence(mean, logvar), expected, rtol=1e-6)


class _FlaxLayersEncoder(nn.Module):
    """The encoder as written with flax's own layers (before seisjax/ops/conv.py)."""

    features: tuple = FEATURES

    @nn.compact
    def __call__(self, x, *, train):
        for i, width in enumerate(self.features):
            x = nn.Conv(width, (3, 3), strides=(2, 2), padding="SAME", use_bias=False, name=f"conv{i}")(x)
            x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, name=f"bn{i}")(x))
        return x


def test_encoder_layers_keep_flax_variables_function_and_gradients():
    # the GEMM convolutions and fused batch norm are a drop-in: same variable tree (checkpoints load),
    # same outputs, running averages and parameter gradients as nn.Conv + nn.BatchNorm + relu
    x = jax.random.uniform(jax.random.PRNGKey(0), (3, 32, 48, C))
    ours, ref = SpectralEncoder(FEATURES), _FlaxLayersEncoder(FEATURES)
    variables = jax.jit(lambda x: ref.init(jax.random.PRNGKey(1), x, train=False))(x)
    shapes = jax.eval_shape(lambda x: ours.init(jax.random.PRNGKey(1), x, train=False), x)
    assert jax.tree.map(np.shape, shapes) == jax.tree.map(np.shape, variables)

    def loss(module, params):
        h, new = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                              mutable=["batch_stats"])
        return jnp.mean(jnp.square(h - 0.5)), (h, new["batch_stats"])

    (l1, (h1, s1)), g1 = jax.jit(jax.value_and_grad(lambda p: loss(ours, p), has_aux=True))(variables["params"])
    (l0, (h0, s0)), g0 = jax.jit(jax.value_and_grad(lambda p: loss(ref, p), has_aux=True))(variables["params"])
    np.testing.assert_allclose(h1, h0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    for got, want in zip(jax.tree_util.tree_leaves((s1, g1)), jax.tree_util.tree_leaves((s0, g0)), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(np.abs(want).max()))
    # evaluation mode with the updated running averages
    new_vars = {"params": variables["params"], "batch_stats": s0}
    evaluate = jax.jit(lambda v: (ours.apply(v, x, train=False), ref.apply(v, x, train=False)))
    np.testing.assert_allclose(*evaluate(new_vars), rtol=1e-5, atol=1e-5)


def test_subpixel_stages_use_the_gemm_except_for_a_thin_output():
    import jax

    from seisjax.spectrogram.model import subpixel_conv_impl

    wide = "gemm" if jax.default_backend() == "cpu" else "xla"
    assert [subpixel_conv_impl(cin, w) for cin, w in ((256, 128), (128, 64), (64, 32))] == [wide] * 3
    assert subpixel_conv_impl(32, 3) == "xla"      # 32 -> 4 x 3 channels: the patch matrix is the cost
