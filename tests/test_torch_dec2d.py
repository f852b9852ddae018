"""The PyTorch twins of the 2-D DEC networks (Mousavi distance, zClust; benchmarks/torch_models.py,
used by `python -m seisjax bench`) compute what the Flax models compute: same parameter count, same
reconstruction and embedding given the Flax parameters, and the same DEC loss and gradients."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.metrics import clustering as cl
from seisjax.dec.model import MousaviDistance, ZClust

torch = pytest.importorskip("torch")

FAST_COMPILE = True  # see conftest.py

# each network as its experiment builds it, and one with odd sides (uneven "SAME" pads and resizes),
# more input channels and three clusters
CASES = [
    ("mousavi_distance", MousaviDistance, {"input_shape": (16, 48)}),
    ("mousavi_distance", MousaviDistance, {"input_shape": (8, 24), "out_channels": 2, "channels": (3, 2),
                                           "embedding_activation": "linear", "n_clusters": 3}),
    ("zclust", ZClust, {"input_shape": (87, 67)}),
    ("zclust", ZClust, {"input_shape": (21, 30), "out_channels": 3, "channels": (4, 6, 5), "embedding_dim": 4,
                        "n_clusters": 3}),
]
IDS = ["distance", "distance-odd", "zclust", "zclust-odd"]


@pytest.fixture(scope="module")
def twins():
    from seisjax.bench import TWINS_FILE

    spec = importlib.util.spec_from_file_location("torch_twins_dec2d", TWINS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pair(twins, case, seed=0, batch=4):
    name, flax_class, kwargs = case
    model = flax_class(**kwargs)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, *kwargs["input_shape"], kwargs.get("out_channels", 1))).astype(np.float32)
    params = jax.tree_util.tree_map(np.array, jax.jit(model.init)(jax.random.key(seed), x)["params"])
    twin, loss_fn = twins.TWINS[name](dict(kwargs))
    state = getattr(twins, f"flax_{name}_to_torch")(params)
    twin.load_state_dict(state, strict=True)
    return model, params, twin, loss_fn, x, state


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_parameter_counts_equal(twins, case):
    model, params, twin, _, _, _ = _pair(twins, case)
    assert sum(p.numel() for p in twin.parameters()) == sum(p.size for p in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_matches_flax(twins, case):
    model, params, twin, _, x, _ = _pair(twins, case)
    recon, z = jax.jit(model.apply)({"params": params}, x)
    with torch.no_grad():
        t_recon, t_z = twin(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_allclose(t_z.numpy(), np.asarray(z), atol=2e-5)
    np.testing.assert_allclose(t_recon.numpy().transpose(0, 2, 3, 1), np.asarray(recon), atol=2e-5)
    assert np.abs(np.asarray(recon)).max() > 1e-3   # not a vacuous comparison of zeros


@pytest.mark.parametrize("case", [CASES[1], CASES[3]], ids=["distance-odd", "zclust-odd"])
@pytest.mark.parametrize("with_target", [False, True], ids=["pretrain", "dec"])
def test_losses_and_gradients_match_the_task(twins, case, with_target):
    """Pretraining's MSE, and DEC's KL(P || Q) with P from the whole batch, as DECTask.loss."""
    model, params, twin, loss_fn, x, _ = _pair(twins, case, seed=1, batch=6)
    target = None
    if with_target:
        z = model.apply({"params": params}, x, method="encode")
        target = np.asarray(cl.dataset_target(z, jnp.asarray(params["centres"]))[1])

    def jax_loss(p):
        recon, zz = model.apply({"params": p}, x)
        if target is None:
            return jnp.mean((recon - x) ** 2)
        return jnp.mean(cl.kl_divergence(target, cl.soft_assignment(zz, p["centres"])))

    loss, grads = jax.jit(jax.value_and_grad(jax_loss))(params)
    t_loss = loss_fn(twin, {"x": x} if target is None else {"x": x, "target": target})
    t_loss.backward()
    assert float(loss) > 1e-4
    np.testing.assert_allclose(float(t_loss.detach()), float(loss), rtol=1e-4)
    expected = getattr(twins, f"flax_{case[0]}_to_torch")(grads)
    for name, p in twin.named_parameters():
        if p.grad is None:   # the KL does not reach the decoder, pretraining's MSE not the centres
            assert not expected[name].numpy().any(), name
        else:
            np.testing.assert_allclose(p.grad.numpy(), expected[name].numpy(), atol=2e-5, err_msg=name)
    trained = {name for name, p in twin.named_parameters() if p.grad is not None}
    assert ("centres" in trained) == with_target
    assert any(name.startswith("decoder.") for name in trained) != with_target
