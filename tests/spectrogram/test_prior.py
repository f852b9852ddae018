"""The CVAE's learned conditional prior p(z | c) (task.prior = "learned"): the closed-form KL of two
diagonal Gaussians, the standard CVAE left as it was, a prior that learns the conditions, generation
that draws from it, and the key combinations that cannot work."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from seisjax.config import load_config
from seisjax.data.dataset import Dataset
from seisjax.errors import InputError
from seisjax.families import train_and_evaluate
from seisjax.spectrogram.data import renormalise
from seisjax.spectrogram.generation import centroid_stage_trends, generate_from_checkpoint
from seisjax.spectrogram.model import kl_divergence
from seisjax.spectrogram.task import SpectrogramTask

FAST_COMPILE = True
CONFIG = "experiments/spectrogram.py"
TOY = {"data.toy_records": 16}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One workdir for the tasks built here, so the toy data and its spectrograms are made once."""
    return tmp_path_factory.mktemp("prior")


def _task(workdir, **overrides):
    return SpectrogramTask(load_config(f"{CONFIG}:toy,cvae", {**TOY, **overrides}), workdir=workdir)


def _batch(task, n=8):
    arrays = task.data.train
    return task.data.add_mask({"x": arrays["x"][:n], "log_scale": arrays["log_scale"][:n], "cond": arrays["cond"][:n],
                           "station": arrays["station_index"][:n]})


def test_kl_of_diagonal_gaussians_against_the_textbook_formula_and_monte_carlo():
    rng = np.random.default_rng(0)
    mq, mp = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    lq, lp = rng.normal(scale=0.7, size=(3, 4)), rng.normal(scale=0.7, size=(3, 4))
    got = np.asarray(kl_divergence(*(jnp.asarray(a, jnp.float32) for a in (mq, lq, mp, lp))))
    # multivariate form: 0.5 [ln det Sp / det Sq - k + tr(Sp^-1 Sq) + (mp - mq)^T Sp^-1 (mp - mq)]
    vq, vp = np.exp(lq), np.exp(lp)
    textbook = 0.5 * (np.log(vp.prod(1) / vq.prod(1)) - 4 + (vq / vp).sum(1) + ((mp - mq) ** 2 / vp).sum(1))
    np.testing.assert_allclose(got, textbook, rtol=1e-5)
    # Monte Carlo: E_q[ln q(z) - ln p(z)]
    z = mq[:, None] + np.sqrt(vq)[:, None] * rng.standard_normal((3, 200_000, 4))
    log_ratio = (stats.norm.logpdf(z, mq[:, None], np.sqrt(vq)[:, None])
                 - stats.norm.logpdf(z, mp[:, None], np.sqrt(vp)[:, None])).sum(-1)
    stderr = log_ratio.std(1) / np.sqrt(log_ratio.shape[1])
    assert np.all(np.abs(log_ratio.mean(1) - got) < 4 * stderr)
    # against N(0, I) it is the standard CVAE's KL; against itself 0
    zeros = jnp.zeros((3, 4))
    np.testing.assert_allclose(kl_divergence(jnp.asarray(mq), jnp.asarray(lq), zeros, zeros),
                               kl_divergence(jnp.asarray(mq), jnp.asarray(lq)), rtol=1e-6)
    np.testing.assert_allclose(kl_divergence(jnp.asarray(mq), jnp.asarray(lq), jnp.asarray(mq), jnp.asarray(lq)),
                               0.0, atol=1e-6)
    with pytest.raises(InputError, match="prior_logvar"):
        kl_divergence(jnp.asarray(mq), jnp.asarray(lq), zeros)


def test_without_the_learned_prior_parameters_and_loss_are_todays(workdir):
    standard, learned = _task(workdir), _task(workdir, **{"task.prior": "learned"})
    old = load_config(f"{CONFIG}:toy,cvae", TOY)
    with old.unlocked():
        del old.task["prior"]  # a config saved before task.prior existed
    before = SpectrogramTask(old, workdir=workdir)
    batch = {k: jnp.asarray(v) for k, v in _batch(standard).items()}
    rng = jax.random.PRNGKey(0)
    v_std, v_old, v_learned = (t.init_variables(rng, batch) for t in (standard, before, learned))
    flat = lambda v: dict(jax.tree_util.tree_flatten_with_path(v["params"])[0])
    p_std, p_old, p_learned = flat(v_std), flat(v_old), flat(v_learned)
    assert p_std.keys() == p_old.keys() and not any("prior" in jax.tree_util.keystr(k) for k in p_std)
    for key, value in p_std.items():  # same variables, same values: old checkpoints restore as they are
        np.testing.assert_array_equal(value, p_old[key])
        np.testing.assert_array_equal(value, p_learned[key])
    # the prior network adds a hidden layer and two heads, nothing else
    cond_dim, latent = int(learned.config.model.cond_dim), int(learned.config.model.latent)
    extra = sum(np.size(v) for k, v in p_learned.items() if k not in p_std)
    assert extra == cond_dim * cond_dim + cond_dim + 2 * (cond_dim * latent + latent)

    # the loss, evaluated op by op, equals today's expression bit for bit (training and evaluation)
    params, state = v_std["params"], {"batch_stats": v_std["batch_stats"]}
    for train in (True, False):
        loss, (terms, _) = standard.loss(params, state, batch, rng, train=train)
        loss_old, _ = before.loss(params, state, batch, rng, train=train)
        out, _ = standard.apply(params, state, batch, rng, train=train)
        kl = 0.5 * jnp.sum(jnp.exp(out["logvar"]) + jnp.square(out["mean"]) - 1.0 - out["logvar"], axis=-1)
        mask = batch["mask"]
        err = jnp.sum(jnp.square(out["recon"] - batch["x"]) * mask, axis=(1, 2, 3))
        n_bins = jnp.sum(jnp.broadcast_to(mask, batch["x"].shape), axis=(1, 2, 3))
        mse = err / jnp.maximum(n_bins, 1.0)
        scale_mse = jnp.mean(jnp.square(out["log_scale"] - batch["log_scale"]), axis=(1, 2))
        expected = jnp.mean(mse + 1.0 * kl / jnp.maximum(n_bins, 1.0) + 1.0 * scale_mse)
        assert "prior_mean" not in out
        np.testing.assert_array_equal(np.asarray(loss), np.asarray(expected))
        np.testing.assert_array_equal(np.asarray(loss), np.asarray(loss_old))
        np.testing.assert_array_equal(np.asarray(terms["kl"]), np.asarray(jnp.mean(kl)))


def test_learned_prior_fits_the_conditions_and_generation_draws_from_it(workdir):
    task = _task(workdir, **{"task.prior": "learned", "task.generation_prior": "learned"})
    batch = {k: jnp.asarray(v) for k, v in _batch(task, 16).items()}
    variables = task.init_variables(jax.random.PRNGKey(1), batch)
    model, state = task.model, {"batch_stats": variables["batch_stats"]}
    # posteriors with a known dependence on the magnitude: the prior that minimises KL(q || p) is q itself
    cond, station = batch["cond"], batch["station"]
    latent = int(task.config.model.latent)
    target_mean = (cond[:, :1] - 2.5) * jnp.linspace(-1.0, 1.0, latent)[None]
    target_logvar = jnp.full_like(target_mean, np.log(0.25))

    def kl_loss(params):
        mean, logvar = model.apply({"params": params, **state}, cond, station, method="prior")
        return jnp.mean(kl_divergence(target_mean, target_logvar, mean, logvar))

    optimizer = optax.adam(2e-2)

    @jax.jit
    def fit(params):
        def step(carry, _):
            params, opt = carry
            updates, opt = optimizer.update(jax.grad(kl_loss)(params), opt)
            return (optax.apply_updates(params, updates), opt), None
        return jax.lax.scan(step, (params, optimizer.init(params)), None, length=400)[0][0]

    params = fit(variables["params"])
    mean, logvar = task.learned_prior(params, state, np.asarray(cond), np.asarray(station))
    assert float(kl_loss(params)) < 0.02 * float(kl_loss(variables["params"]))
    np.testing.assert_allclose(mean, target_mean, atol=0.1)
    np.testing.assert_allclose(np.exp(logvar), 0.25, atol=0.05)
    assert np.ptp(mean[:, -1]) > 1.0  # the mean moves with the magnitude

    # "learned" generation draws z ~ N(prior mean, prior variance) at each row's conditions
    n = 4000
    rows = np.array([0, int(np.argmax(np.asarray(cond[:, 0])))])
    draws = task.learned_prior_sample(params, state, np.repeat(np.asarray(cond)[rows], n, 0),
                                      np.repeat(np.asarray(station)[rows], n), seed=3).reshape(2, n, latent)
    sigma = np.exp(0.5 * logvar[rows])
    assert np.all(np.abs(draws.mean(1) - mean[rows]) < 4.5 * sigma / np.sqrt(n))
    np.testing.assert_allclose(draws.std(1), sigma, rtol=0.08)
    # and generate decodes exactly those draws
    x, _, waves = task.generate(params, state, np.asarray(cond)[:3], np.asarray(station)[:3], seed=5,
                                  griffin_lim_iters=1)
    z = task.learned_prior_sample(params, state, np.asarray(cond)[:3], np.asarray(station)[:3], seed=5)
    decoded = model.apply({"params": params, **state}, jnp.asarray(z), cond[:3], station[:3], method="decode")
    np.testing.assert_allclose(x, renormalise(np.asarray(decoded), task.data.mask), atol=1e-6)
    assert waves.shape[0] == 3 and np.isfinite(waves).all()


def test_bad_prior_key_combinations_are_named(workdir):
    with pytest.raises(InputError, match="task.prior = 'gaussian'"):
        _task(workdir, **{"task.prior": "gaussian"})
    with pytest.raises(InputError, match=r"task.generation_prior = 'learned' but task.prior = 'standard'"):
        _task(workdir, **{"task.generation_prior": "learned"})
    config = load_config(f"{CONFIG}:toy,cvae", TOY)
    with config.unlocked():
        config.model.learned_prior = True  # set by hand rather than through task.prior
    with pytest.raises(InputError, match="model.learned_prior = True but task.prior = 'standard'"):
        SpectrogramTask(config, workdir=workdir)
    config = load_config(f"{CONFIG}:toy,ae", {**TOY, "task.prior": "learned"})
    with pytest.raises(InputError, match="task.prior = 'learned' with model.name = 'spectral_ae'"):
        SpectrogramTask(config, workdir=workdir)
    task = _task(workdir)
    with pytest.raises(InputError, match="task.generation_prior = 'uniform'"):
        task.set_generation_prior("uniform")
    with pytest.raises(InputError, match="task.prior = 'standard'"):
        task.set_generation_prior("learned")  # what centroid_stage_trends(..., generation_prior="learned") calls


def test_a_learned_prior_run_generates_from_it_through_the_commands(tmp_path):
    workdir = tmp_path / "run"
    config = load_config(f"{CONFIG}:toy,cvae", {"data.toy_records": 24, "train.num_steps": 2, "batch_size": 8,
                                                 "train.eval_every_steps": 2, "train.checkpoint_every_steps": 2,
                                                 "train.eval_every_epochs": None,
                                                 "train.checkpoint_every_epochs": None,
                                                 "task.prior": "learned", "task.generation_prior": "learned"})
    train_and_evaluate(config, workdir)
    kwargs = {"magnitude": 3.0, "lat": 38.1, "lon": 23.2, "depth": 8, "station": "T02", "n": 3, "seed": 2,
              "log": lambda *_: None}
    generate_from_checkpoint(workdir, out=tmp_path / "run_default", **kwargs)
    generate_from_checkpoint(workdir, out=tmp_path / "learned", generation_prior="learned", **kwargs)
    generate_from_checkpoint(workdir, out=tmp_path / "standard", generation_prior="standard", **kwargs)
    waves = {}
    for name in ("run_default", "learned", "standard"):
        with Dataset(tmp_path / name) as ds:
            waves[name] = ds.get_waveforms([0, 1, 2])
            prior = set(ds.metadata["generation_prior"])
        assert prior == {"standard" if name == "standard" else "learned"}
    np.testing.assert_array_equal(waves["run_default"], waves["learned"])  # the run's config is honoured
    assert not np.allclose(waves["learned"], waves["standard"])
    with pytest.raises(InputError, match="generation_prior = 'uniform'"):
        centroid_stage_trends(workdir, split="train", generation_prior="uniform")
