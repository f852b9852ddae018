"""The PyTorch twins of DEC's networks (benchmarks/torch_models.py, used by `python -m seisjax bench`
and benchmarks/bench_dec.py) compute what the Flax models compute: same parameter count, same
reconstruction and embedding given the Flax parameters, and the same losses (pretraining's MSE,
DEC's soft assignment, target and KL) and gradients, centres included; and bench_dec.py times equal
work."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.dec.model import MousaviDistance, MousaviPolarity, ZClust
from seisjax.metrics import clustering as cl
from tests.conftest import load_file

torch = pytest.importorskip("torch")

FAST_COMPILE = True  # see conftest.py


@pytest.fixture(scope="module")
def twins():
    return load_file("benchmarks/torch_dec.py")


# ---------------------------------------------------------------------------- the polarity network
# the paper's network, and one with an even kernel (asymmetric "SAME" pad), 3 input channels,
# wider layers (a 2-channel bottom, so the (length, channel) flattening matters) and 3 clusters
VARIANTS = [{"length": 32, "n_clusters": 2},
            {"length": 64, "out_channels": 3, "channels": (6, 5, 3, 2), "kernels": (10, 7, 4, 3), "n_clusters": 3},
            {"length": 32, "n_clusters": 2, "embedding_activation": "linear"}]


def _polarity_pair(twins, kwargs, seed=0):
    model = MousaviPolarity(**kwargs)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(5, kwargs["length"], kwargs.get("out_channels", 1))).astype(np.float32)
    params = jax.jit(model.init)(jax.random.key(seed), x)["params"]
    params = jax.tree_util.tree_map(np.array, params)
    twin, loss_fn = twins.TWINS["mousavi_polarity"](dict(kwargs))
    twins.load_flax_mousavi_polarity(twin, params)
    return model, params, twin, loss_fn, x


@pytest.mark.parametrize("kwargs", VARIANTS)
def test_polarity_parameter_counts_equal(twins, kwargs):
    shapes = jax.eval_shape(MousaviPolarity(**kwargs).init, jax.random.key(0),
                            jnp.zeros((1, kwargs["length"], kwargs.get("out_channels", 1))))
    twin, _ = twins.TWINS["mousavi_polarity"](dict(kwargs))
    flax_count = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(shapes["params"]))
    assert sum(p.numel() for p in twin.parameters()) == flax_count
    assert twin.centres.shape == shapes["params"]["centres"].shape


@pytest.mark.parametrize("kwargs", VARIANTS)
def test_polarity_forward_matches_flax(twins, kwargs):
    model, params, twin, _, x = _polarity_pair(twins, kwargs)
    recon, z = jax.jit(model.apply)({"params": params}, x)
    with torch.no_grad():
        t_recon, t_z = twin(torch.from_numpy(x.transpose(0, 2, 1).copy()))
    np.testing.assert_allclose(t_z.numpy(), np.asarray(z), atol=1e-5)
    np.testing.assert_allclose(t_recon.numpy().transpose(0, 2, 1), np.asarray(recon), atol=1e-5)
    assert np.abs(np.asarray(recon)).max() > 1e-3   # not a vacuous comparison of zeros


def test_dec_loss_and_gradients_match_the_task(twins):
    """KL(P || Q) with P from the whole batch (clustering.dataset_target), as DECTask.loss computes it."""
    kwargs = VARIANTS[1]
    model, params, twin, loss_fn, x = _polarity_pair(twins, kwargs, seed=1)
    z = model.apply({"params": params}, x, method="encode")
    _, target, _ = cl.dataset_target(z, jnp.asarray(params["centres"]))
    target = np.asarray(target)

    def jax_loss(p):
        _, zz = model.apply({"params": p}, x)
        return jnp.mean(cl.kl_divergence(target, cl.soft_assignment(zz, p["centres"])))

    loss, grads = jax.jit(jax.value_and_grad(jax_loss))(params)
    t_loss = loss_fn(twin, {"x": x, "target": target})
    t_loss.backward()
    assert float(loss) > 1e-4
    # float32 sums in different orders: 1e-5 relative failed by a hair under another torch release
    np.testing.assert_allclose(float(t_loss.detach()), float(loss), rtol=1e-4)
    expected = twins.flax_mousavi_polarity_to_torch(grads)
    for name, p in twin.named_parameters():
        if name.startswith("decoder."):   # DEC's KL does not reach the decoder: zero in JAX, None here
            assert p.grad is None and not expected[name].numpy().any(), name
        else:
            np.testing.assert_allclose(p.grad.numpy(), expected[name].numpy(), atol=1e-5, err_msg=name)
    assert np.abs(expected["centres"].numpy()).max() > 1e-6   # the centres train with the encoder


def test_target_update_twins_match_clustering(twins):
    rng = np.random.default_rng(2)
    z, centres = rng.normal(size=(200, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    q, p, labels = (np.asarray(a) for a in cl.dataset_target(jnp.asarray(z), jnp.asarray(centres)))
    t_q = twins.soft_assignment_torch(torch.from_numpy(z), torch.from_numpy(centres))
    t_p = twins.target_distribution_torch(t_q)
    np.testing.assert_allclose(t_q.numpy(), q, atol=1e-6)
    np.testing.assert_allclose(t_p.numpy(), p, atol=1e-6)
    np.testing.assert_array_equal(t_q.argmax(1).numpy(), labels)
    # a hand value: one point at a centre, the other at distance 1 -> q = (1, 1/2) / (3/2)
    q1 = twins.soft_assignment_torch(torch.zeros(1, 1), torch.tensor([[0.0], [1.0]]))
    np.testing.assert_allclose(q1.numpy(), [[2 / 3, 1 / 3]], rtol=1e-6)


def test_pretraining_loss_is_the_reconstruction_mse(twins):
    model, params, twin, loss_fn, x = _polarity_pair(twins, VARIANTS[0])
    recon, _ = model.apply({"params": params}, x)
    assert float(loss_fn(twin, {"x": x}).detach()) == pytest.approx(float(jnp.mean((recon - x) ** 2)), rel=1e-5)


@pytest.fixture(scope="module")
def bench_dec():
    return load_file("benchmarks/bench_dec.py")


@pytest.fixture(scope="module")
def bench_sides(bench_dec):
    return bench_dec.build_sides(seed=3)


@pytest.mark.parametrize("variant", ["dec", "idec"])
def test_bench_dec_steps_train_the_same_parameters_alike(bench_dec, bench_sides, variant):
    """benchmarks/bench_dec.py times equal work: after the same Adam steps from the same parameters,
    JAX and PyTorch reach the same loss, training the same number of parameters."""
    r = bench_dec.bench_step(*bench_sides, variant, batch=16, steps=3, rounds=1, seed=3)
    assert r["trained_params"]["jax"] == r["trained_params"]["torch"] == (425 if variant == "dec" else 846)
    assert r["loss_after_warmup"]["torch"] == pytest.approx(r["loss_after_warmup"]["jax"], rel=1e-3)
    assert r["jax_over_torch"] == pytest.approx(r["jax"]["examples_per_s"] / r["torch"]["examples_per_s"])


def test_bench_dec_target_update_agrees_across_frameworks(bench_dec, bench_sides):
    r = bench_dec.bench_target(*bench_sides, n=300, repeats=1, seed=4)
    e, w = r["from_embeddings"], r["from_windows"]
    assert e["labels_agree"]
    assert max(e["max_abs_diff_p"].values()) < 1e-5 and w["max_abs_diff_p"]["torch"] < 1e-5
    assert r["n"] == 300 and r["embedding_dim"] == 2


# ---------------------------------------------------------------------------- the 2-D networks (distance, zClust)
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


def _pair_2d(twins, case, seed=0, batch=4):
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
def test_2d_parameter_counts_equal(twins, case):
    model, params, twin, _, _, _ = _pair_2d(twins, case)
    assert sum(p.numel() for p in twin.parameters()) == sum(p.size for p in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_2d_forward_matches_flax(twins, case):
    model, params, twin, _, x, _ = _pair_2d(twins, case)
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
    model, params, twin, loss_fn, x, _ = _pair_2d(twins, case, seed=1, batch=6)
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
