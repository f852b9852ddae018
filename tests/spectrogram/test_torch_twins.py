"""The PyTorch twins of the spectrogram autoencoders (benchmarks/torch_spectrogram.py, timed by
benchmarks/bench_spectrogram.py) are the same networks as seisjax.spectrogram.model: equal parameter counts
for every model and upsampling mode, and, with the Flax weights copied in, the same outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.spectrogram.model import SpectrogramAE, SpectrogramCVAE, SpectrogramVAE
from tests.conftest import load_file

torch = pytest.importorskip("torch")

FAST_COMPILE = True  # see conftest.py

SMALL = {"features": (4, 6, 8, 10)}   # narrow widths: the layers are the same, the test is fast
SHAPE = (32, 48)                       # (F, T), multiples of 16, F != T so transposed axes would show


@pytest.fixture(scope="module")
def twins():
    return load_file("benchmarks/torch_spectrogram.py")


def _flax(name, upsample, **overrides):
    kwargs = dict(SMALL, upsample=upsample, **overrides)
    if name == "spectral_ae":
        return SpectrogramAE(**kwargs), kwargs
    kwargs.update(latent=7, input_shape=SHAPE)
    if name == "spectral_vae":
        return SpectrogramVAE(**kwargs), kwargs
    kwargs.update(n_stations=5, station_dim=3, cond_dim=6)
    return SpectrogramCVAE(**kwargs), kwargs


def _inputs(batch=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(batch, *SHAPE, 3)).astype(np.float32)
    cond = rng.normal(size=(batch, 4)).astype(np.float32)
    station = np.array([0, 2, 5][:batch], dtype=np.int32)
    return x, cond, station


def _args(name, x, cond, station):
    return (x,) if name != "spectral_cvae" else (x, cond, station)


def _init(model, name, x, cond, station):
    variables = jax.jit(lambda *a: model.init({"params": jax.random.key(1), "sample": jax.random.key(2)}, *a,
                                              train=False))(*_args(name, x, cond, station))
    variables = jax.tree_util.tree_map(np.array, variables)
    # non-trivial batch statistics, so that eval mode's use of them is checked
    rng = np.random.default_rng(3)
    variables["batch_stats"] = jax.tree_util.tree_map(
        lambda v: (rng.uniform(0.5, 1.5, v.shape) if v.min() == 1 else rng.normal(0, 0.1, v.shape)).astype(np.float32),
        variables["batch_stats"])
    return variables


def _nchw(a):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2)))


MODELS = ["spectral_ae", "spectral_vae", "spectral_cvae"]
MODES = ["subpixel", "resize", "transpose"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("upsample", MODES)
def test_parameter_counts_equal(twins, name, upsample):
    for features in (SMALL["features"], (32, 64, 128, 256)):   # the study's widths too
        model, kwargs = _flax(name, upsample, features=features)
        x, cond, station = _inputs(1)
        shapes = jax.eval_shape(lambda *a, m=model: m.init({"params": jax.random.key(0), "sample": jax.random.key(0)},
                                                           *a, train=False), *_args(name, x, cond, station))
        flax_count = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(shapes["params"]))
        for exact in (True, False):
            twin = twins.MODELS[name](exact=exact, **kwargs)
            assert sum(p.numel() for p in twin.parameters()) == flax_count, (name, upsample, features, exact)


@pytest.mark.parametrize("name,upsample", [("spectral_ae", m) for m in MODES]
                         + [("spectral_vae", "subpixel"), ("spectral_cvae", "subpixel")])
def test_forward_matches_flax(twins, name, upsample):
    model, kwargs = _flax(name, upsample)
    x, cond, station = _inputs()
    variables = _init(model, name, x, cond, station)
    twin = twins.load_flax_spectrogram(name, twins.MODELS[name](exact=True, **kwargs), variables)
    targs = (_nchw(x),) if name != "spectral_cvae" else (_nchw(x), torch.from_numpy(cond), torch.from_numpy(station))
    extra = {} if name == "spectral_ae" else {"sample": False}

    # eval mode: running statistics, z = mean
    out = jax.jit(lambda v, *a: model.apply(v, *a, train=False))(variables, *_args(name, x, cond, station))
    twin.eval()
    with torch.no_grad():
        tout = twin(*targs, **extra)
    np.testing.assert_allclose(tout["recon"].numpy(), np.asarray(out["recon"]).transpose(0, 3, 1, 2), atol=2e-5)
    assert np.asarray(out["recon"]).std() > 1e-3   # not a constant map that any wiring would match
    for key in ("mean", "logvar", "log_scale"):
        if key in out:
            np.testing.assert_allclose(tout[key].numpy(), np.asarray(out[key]), atol=2e-5, rtol=1e-4)

    # train mode: batch statistics (and, for the AE, the whole reconstruction); the VAEs sample z
    # from their own RNG, so their heads are compared
    out, _ = jax.jit(lambda v, *a: model.apply(v, *a, train=True, rngs={"sample": jax.random.key(4)},
                                                mutable=["batch_stats"]))(variables, *_args(name, x, cond, station))
    twin.train()
    with torch.no_grad():
        tout = twin(*targs, **extra)
    keys = ["recon"] if name == "spectral_ae" else ["mean", "logvar"]
    for key in keys:
        ref = np.asarray(out[key])
        ref = ref.transpose(0, 3, 1, 2) if ref.ndim == 4 else ref
        np.testing.assert_allclose(tout[key].numpy(), ref, atol=5e-5, rtol=1e-4)


@pytest.mark.parametrize("upsample", ["subpixel", "transpose"])
def test_gradients_match_flax(twins, upsample):
    """The AE's loss gradients agree: the backward pass times the same computation (for
    ``transpose``, through the custom backward passes of seisjax/ops/conv.py)."""
    model, kwargs = _flax("spectral_ae", upsample)
    x, _, _ = _inputs()
    variables = _init(model, "spectral_ae", x, None, None)

    def loss(params):
        out, _ = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
                             mutable=["batch_stats"])
        return jnp.mean(jnp.square(out["recon"] - x))

    value, grads = jax.jit(jax.value_and_grad(loss))(variables["params"])
    twin = twins.load_flax_spectrogram("spectral_ae", twins.MODELS["spectral_ae"](exact=True, **kwargs), variables)
    twin.train()
    tloss = twins.spectrogram_loss_torch("spectral_ae", twin(_nchw(x)), _nchw(x))
    tloss.backward()
    np.testing.assert_allclose(float(tloss.detach()), float(value), rtol=1e-5)
    as_torch = twins.flax_spectrogram_to_torch("spectral_ae", twin, {"params": jax.tree_util.tree_map(np.asarray, grads)})
    for pname, p in twin.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), as_torch[pname].numpy(), atol=1e-6, rtol=1e-3, err_msg=pname)


