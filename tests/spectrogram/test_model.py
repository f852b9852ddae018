"""Spectrogram AE / VAE / CVAE: shapes, parameter counts by hand, upsampling modes, sampling, KL, the
convolutions' forms (same function; forward mode with "xla"), and the weight-gradient products that
benchmarks/bench_gemm_forms.py times."""

import importlib.util
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.errors import InputError
from seisjax.spectrogram.model import (
    MODELS,
    UPSAMPLE_MODES,
    SpectrogramAE,
    SpectrogramCVAE,
    SpectrogramEncoder,
    SpectrogramVAE,
    kl_divergence,
    subpixel_conv_impl,
)

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
    model = SpectrogramAE(features=FEATURES, out_channels=C, upsample=upsample)
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
    vae = SpectrogramVAE(features=FEATURES, latent=latent, out_channels=C, upsample=upsample, input_shape=shape)
    v = vae.init(jax.random.PRNGKey(0), x, train=False)
    heads = 2 * (d * latent + latent) + (latent * d + d)
    assert _count(v["params"]) == _conv_stack_by_hand(FEATURES, C, upsample) + heads
    cvae = SpectrogramCVAE(features=FEATURES, latent=latent, out_channels=C, upsample=upsample, input_shape=shape,
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
        model = SpectrogramAE(features=FEATURES, upsample=mode)
        shapes.add(model.apply(model.init(jax.random.PRNGKey(1), x), x)["recon"].shape)
    assert shapes == {x.shape}
    with pytest.raises(InputError, match="multiples of 16"):
        SpectrogramAE(features=FEATURES).init(jax.random.PRNGKey(0), jnp.ones((1, 20, 32, C)))
    with pytest.raises(InputError, match="input_shape"):
        vae = SpectrogramVAE(features=FEATURES, latent=4, input_shape=(16, 32))
        vae.init(jax.random.PRNGKey(0), jnp.ones((1, 32, 32, C)))
    with pytest.raises(InputError, match="upsample"):
        SpectrogramAE(features=FEATURES, upsample="bicubic").init(jax.random.PRNGKey(0), x)


def test_registry_names():
    assert MODELS["spectral_ae"] is SpectrogramAE
    assert MODELS["spectral_vae"] is SpectrogramVAE
    assert MODELS["spectral_cvae"] is SpectrogramCVAE


def test_vae_samples_in_training_and_uses_the_mean_otherwise():
    vae = SpectrogramVAE(features=FEATURES, latent=6, input_shape=(16, 16))
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
    vae = SpectrogramVAE(features=FEATURES, latent=6, input_shape=(16, 16))
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
    ours, ref = SpectrogramEncoder(FEATURES), _FlaxLayersEncoder(FEATURES)
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
    wide = "gemm" if jax.default_backend() == "cpu" else "xla"
    assert [subpixel_conv_impl(cin, w) for cin, w in ((256, 128), (128, 64), (64, 32))] == [wide] * 3
    assert subpixel_conv_impl(32, 3) == "xla"      # 32 -> 4 x 3 channels: the patch matrix is the cost
    assert subpixel_conv_impl(32, 3, "gemm") == "gemm" and subpixel_conv_impl(256, 128, "xla") == "xla"


@pytest.mark.parametrize("upsample", ["subpixel", "transpose"])
def test_conv_impls_compute_the_same_model_and_xla_allows_forward_mode(upsample):
    """model.encoder_conv_impl / decoder_conv_impl change how the convolutions run, not the model: the
    same variables give the same outputs; with "xla" for both, jax.jvp works in evaluation mode."""
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 32, C))
    default = SpectrogramAE(features=FEATURES, upsample=upsample)
    xla = SpectrogramAE(features=FEATURES, upsample=upsample, encoder_conv_impl="xla", decoder_conv_impl="xla")
    variables = default.init(jax.random.PRNGKey(1), x)
    np.testing.assert_allclose(xla.apply(variables, x)["recon"], default.apply(variables, x)["recon"],
                               rtol=1e-5, atol=1e-6)
    _, tangent = jax.jvp(lambda x: xla.apply(variables, x)["recon"], (x,), (jnp.ones_like(x),))
    assert tangent.shape == x.shape and np.isfinite(np.asarray(tangent)).all()
    if jax.default_backend() == "cpu":   # "auto" is the GEMM form there, a custom VJP
        with pytest.raises(TypeError, match="custom_vjp"):
            jax.jvp(lambda x: default.apply(variables, x)["recon"], (x,), (jnp.ones_like(x),))


def _dot_operand_shapes(jaxpr) -> set:
    """``(lhs shape, rhs shape)`` of every ``dot_general`` in a jaxpr and the jaxprs nested in it."""
    found = set()
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.add(tuple(tuple(v.aval.shape) for v in eqn.invars))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found |= _dot_operand_shapes(inner)
    return found


def test_bench_gemm_forms_lists_the_ae_weight_gradient_products():
    """benchmarks/bench_gemm_forms.py times the products the AE's train step computes: each listed
    ``(K, M, N)`` is a weight gradient ``patches^T (M, K) @ dy (K, N)`` in the gradient's jaxpr."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gemm_forms.py"
    spec = importlib.util.spec_from_file_location("bench_gemm_forms", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    batch, shape = 2, (32, 16)
    products = bench.layer_products(batch=batch, shape=shape)
    x = jnp.zeros((batch, *shape, 3), jnp.float32)
    model = SpectrogramAE()
    variables = model.init(jax.random.key(0), x)

    def loss(params):
        out, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
        return jnp.mean(out["recon"] ** 2)

    dots = _dot_operand_shapes(jax.make_jaxpr(jax.grad(loss))(variables["params"]).jaxpr)
    assert len(products) == 7
    for name, k, m, n in products:
        assert ((m, k), (k, n)) in dots, name
