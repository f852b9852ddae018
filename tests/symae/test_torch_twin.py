"""The PyTorch twin of SymAE (benchmarks/torch_models.py, used by `python -m seisjax bench`) computes
what the Flax model computes: same parameter count, same Fourier shift, same deterministic forward
and, with the same sampling noise, the same loss terms and gradients, given the Flax parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.ops.fourier import fourier_shift
from seisjax.symae.model import SymAE, count_params, symae_loss
from tests.conftest import load_file

torch = pytest.importorskip("torch")

NT, P, Q, B, NTAU = 64, 5, 7, 3, 4   # p != q, so a swapped code or head cannot pass
PENALTIES = ("norm", "mean_square")


FAST_COMPILE = True  # see conftest.py


@pytest.fixture(scope="module")
def twins():
    return load_file("benchmarks/torch_symae.py")


@pytest.fixture(scope="module")
def pair(twins):
    """A small Flax SymAE with shifts of a few samples (its zero-initialised last shift layer replaced
    by random values), its twin with the same parameters, and a batch whose last datapoint has a
    padded (zero, masked) trace."""
    model = SymAE(nt=NT, p=P, q=Q)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, NTAU, NT)).astype(np.float32)
    mask = np.ones((B, NTAU), np.float32)
    mask[-1, -1] = 0.0
    x[-1, -1] = 0.0
    params = jax.jit(model.init)(jax.random.key(0), x)["params"]
    params = jax.tree_util.tree_map(np.array, params)   # writable copies
    out = params["shift_network"]["out"]
    out["kernel"] = (0.02 * rng.normal(size=out["kernel"].shape)).astype(np.float32)
    out["bias"] = np.full(out["bias"].shape, 0.01, np.float32)
    twin, _ = twins.TWINS["symae"](dict(nt=NT, p=P, q=Q))
    twins.load_flax_symae(twin, params)
    return model, params, twin, x, mask


def test_fourier_shift_twin_matches_jax(twins):
    rng = np.random.default_rng(1)
    for width in (16, 15):   # even (the Nyquist convention) and odd
        x = rng.normal(size=(7, width)).astype(np.float32)
        shift = np.array([0.0, 1.0, -3.0, 0.37, -2.71, width / 2 + 0.4, 3.0 * width + 1.3], np.float32)
        expected = np.asarray(fourier_shift(jnp.asarray(x), jnp.asarray(shift)))
        got = twins.fourier_shift_torch(torch.from_numpy(x), torch.from_numpy(shift)).numpy()
        np.testing.assert_allclose(got, expected, atol=2e-5)
        np.testing.assert_allclose(got[1], np.roll(x[1], 1), atol=1e-5)   # an integer shift is a roll


def test_parameter_counts_equal_at_the_reference_size(twins):
    for kwargs in ({"nt": 192, "p": 30, "q": 30}, {"nt": NT, "p": P, "q": Q},
                   {"nt": 96, "p": 4, "q": 6, "use_shifts": False}):
        shapes = jax.eval_shape(SymAE(**kwargs).init, jax.random.key(0), jnp.zeros((1, 2, kwargs["nt"])))
        twin, _ = twins.TWINS["symae"](kwargs)
        assert sum(p.numel() for p in twin.parameters()) == count_params(shapes["params"]), kwargs
    twin, _ = twins.TWINS["symae"]({"nt": 192, "p": 30, "q": 30})
    assert twin.shift_network["out"].weight.abs().sum() == 0   # shifts start at 0, as in Flax


def test_deterministic_forward_matches_flax(pair):
    model, params, twin, x, mask = pair
    expected = jax.jit(lambda v, x, m: model.apply(v, x, m))({"params": params}, x, mask)
    with torch.no_grad():
        got = twin(torch.from_numpy(x), torch.from_numpy(mask))
    shifts = np.asarray(expected["shifts"])
    assert 0.3 < np.abs(shifts).mean() < 20   # the shift path is exercised
    for path in (("shifts",), ("aligned",), ("coherent", "trace_mean"), ("coherent", "trace_log_precision"),
                 ("coherent", "mean"), ("coherent", "log_precision"), ("nuisance", "mean"), ("nuisance", "logvar"),
                 ("reconstruction_aligned",), ("reconstruction",)):
        want, have = expected, got
        for key in path:
            want, have = want[key], have[key]
        np.testing.assert_allclose(have.numpy(), np.asarray(want), rtol=1e-5, atol=1e-5, err_msg=str(path))


@pytest.fixture(scope="module")
def flax_sampled(pair):
    """Loss, terms, outputs and gradients of the Flax model in training mode, for both shift
    penalties (one compiled program)."""
    model, params, _, x, mask = pair

    def flax_loss(params, rng, shift_penalty):
        outputs = model.apply({"params": params}, x, mask, train=True, rngs={"sample": rng})
        loss, terms = symae_loss(outputs, x, mask, shift_penalty=shift_penalty)
        return loss, (terms, outputs)

    def both(params, rng):
        return {penalty: jax.value_and_grad(flax_loss, has_aux=True)(params, rng, penalty) for penalty in PENALTIES}

    return jax.tree_util.tree_map(np.array, jax.jit(both)(params, jax.random.key(3)))


@pytest.mark.parametrize("shift_penalty", PENALTIES)
def test_loss_terms_and_gradients_match_flax_with_the_same_noise(twins, pair, flax_sampled, shift_penalty):
    _, _, twin, x, mask = pair
    (loss, (terms, outputs)), grads = flax_sampled[shift_penalty]
    # the standard normal draws that Flax used, recovered from its samples
    coherent, nuisance = outputs["coherent"], outputs["nuisance"]
    eps_c = (coherent["sample"] - coherent["mean"]) * np.exp(0.5 * coherent["log_precision"])
    eps_n = (nuisance["sample"] - nuisance["mean"]) * np.exp(-0.5 * nuisance["logvar"])
    assert np.abs(eps_c).max() > 0.1 and np.abs(eps_n).max() > 0.1   # it did sample

    twin.zero_grad(set_to_none=True)
    xt, mt = torch.from_numpy(x), torch.from_numpy(mask)
    out_t = twin(xt, mt, sample=True, noise=(torch.from_numpy(eps_c), torch.from_numpy(eps_n)))
    loss_t, terms_t = twins.symae_loss_torch(out_t, xt, mt, shift_penalty=shift_penalty)
    loss_t.backward()
    np.testing.assert_allclose(out_t["nuisance"]["sample"].detach().numpy(), np.asarray(nuisance["sample"]),
                               rtol=1e-5, atol=1e-5)
    for name in ("nll", "kl_nuisance", "kl_coherent", "shift", "mse", "shift_rms"):
        np.testing.assert_allclose(terms_t[name].item(), float(terms[name]), rtol=1e-5, atol=1e-5, err_msg=name)
    assert float(terms["shift"]) > 0.1 and float(terms["kl_coherent"]) > 0   # the terms are not trivially 0
    np.testing.assert_allclose(loss_t.item(), float(loss), rtol=1e-5)

    expected_grads = twins.flax_symae_to_torch(twin, grads)
    for name, param in twin.named_parameters():
        want = expected_grads[name].numpy()
        scale = max(np.abs(want).max(), 1e-3)
        np.testing.assert_allclose(param.grad.numpy() / scale, want / scale, atol=2e-4, err_msg=name)


def test_bench_loss_samples_coherent_then_nuisance_noise(twins, pair):
    """The registered loss (what the bench times) is the sampled loss with the mask applied: with
    the same seed it equals the loss with explicit noise drawn in that order."""
    _, _, twin, x, mask = pair
    _, loss_fn = twins.TWINS["symae"](dict(nt=NT, p=P, q=Q))
    batch = {"x": x, "mask": mask, "group": np.arange(B, dtype=np.int32)}
    torch.manual_seed(7)
    with torch.no_grad():
        bench_loss = float(loss_fn(twin, batch))
    torch.manual_seed(7)
    eps_c, eps_n = torch.randn(B, P), torch.randn(B, NTAU, Q)
    xt, mt = torch.from_numpy(x), torch.from_numpy(mask)
    with torch.no_grad():
        explicit = float(twins.symae_loss_torch(twin(xt, mt, sample=True, noise=(eps_c, eps_n)), xt, mt)[0])
        unmasked = float(twins.symae_loss_torch(twin(xt, None, sample=True, noise=(eps_c, eps_n)), xt, None)[0])
    assert bench_loss == pytest.approx(explicit, rel=1e-6)
    assert abs(unmasked - explicit) > 1e-3   # the padded trace would count without the mask

    # a fresh twin starts with every shift at 0, where the norm penalty's sqrt has no derivative:
    # its first step must have finite gradients (as the Flax model's subgradient 0)
    fresh, loss_fn = twins.TWINS["symae"](dict(nt=NT, p=P, q=Q))
    loss_fn(fresh, batch).backward()
    assert all(torch.isfinite(param.grad).all() for param in fresh.parameters())
