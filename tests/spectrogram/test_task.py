"""The spectral_vae task (seisjax/spectrogram/task.py): the masked loss, config errors, an AE that learns
a toy case, the GSNN prior term, the neighbour prior and the generation floor."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seisjax.config import load_config
from seisjax.errors import InputError
from seisjax.families import task_class
from seisjax.spectrogram.task import SpectrogramTask, masked_mse

FAST_COMPILE = True
CONFIG = "experiments/spectrogram.py"
STEPS = 150


def test_padded_bins_do_not_change_the_loss():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(2, 16, 32, 3)).astype(np.float32)
    recon = rng.uniform(size=x.shape).astype(np.float32)
    mask = np.zeros((2, 16, 32, 1), np.float32)
    mask[:, :, :20] = 1.0
    base = np.asarray(masked_mse(x, recon, mask))
    expected = ((x - recon)[:, :, :20] ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(base, expected, rtol=1e-6)
    x2, recon2 = x.copy(), recon.copy()
    x2[:, :, 20:] = 7.0
    recon2[:, :, 20:] = -3.0
    np.testing.assert_allclose(masked_mse(x2, recon2, mask), base, rtol=1e-6)
    recon2[:, :, 19] += 1.0  # a real bin does change it
    assert np.all(np.asarray(masked_mse(x2, recon2, mask)) > base)


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(InputError, match="unknown config key"):
        load_config(CONFIG + ":toy,ae", {"data.nonsense": 1})
    with pytest.raises(InputError, match="unknown variant"):
        load_config(CONFIG + ":huge")
    task_cls = task_class("spectral_vae")   # the name in configs and every run's config.json
    assert task_cls is SpectrogramTask
    config = load_config(CONFIG + ":toy,ae")
    config.model.name = "spectral_gan"
    with pytest.raises(InputError, match="spectral_ae, spectral_vae, spectral_cvae"):
        task_cls(config, workdir=tmp_path)
    config = load_config(CONFIG + ":toy,ae", {"model.name": "spectral_ae"})
    with config.unlocked():
        config.model.latent = 8  # a VAE parameter given to the AE
    with pytest.raises(InputError, match="model.latent"):
        task_cls(config, workdir=tmp_path)
    with pytest.raises(InputError, match="data.source"):
        task_cls(load_config(CONFIG + ":toy,ae", {"data.source": "ftp"}), workdir=tmp_path)


@pytest.fixture
def optimised_xla():
    """This test runs many steps: compiling with XLA's optimisations pays for itself here."""
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def test_ae_learns_a_toy_case_well_below_the_input_variance(tmp_path, optimised_xla):
    config = load_config(CONFIG + ":toy,ae", {"data.toy_records": 20})
    task = SpectrogramTask(config, workdir=tmp_path)
    try:
        batch = {k: jnp.asarray(v) for k, v in task.data.add_mask(task.data.batch_arrays(task.data.train)).items()}
        variables = task.init_variables(jax.random.PRNGKey(0), batch)
        params, state = variables.pop("params"), variables
        tx = optax.adam(3e-3)
        opt = tx.init(params)

        @jax.jit
        def step(params, state, opt, rng):
            (loss, (_, state)), grads = jax.value_and_grad(
                lambda p: task.loss(p, state, batch, rng, train=True), has_aux=True)(params)
            updates, opt = tx.update(grads, opt)
            return optax.apply_updates(params, updates), state, opt, loss

        for i in range(STEPS):
            params, state, opt, _ = step(params, state, opt, jax.random.PRNGKey(i))
        batch["_valid"] = jnp.ones(len(batch["x"]))
        metrics = task.eval_metrics(params, state, batch, jax.random.PRNGKey(0))
        mse = float(metrics["mse"][0] / metrics["mse"][1])
        x, mask = np.asarray(batch["x"]), np.asarray(batch["mask"]) > 0
        real = np.broadcast_to(mask, x.shape)
        variance = float(x[real].var())
        assert mse < 0.2 * variance, (mse, variance)
    finally:
        task.close()


@pytest.fixture(scope="module")
def toy_cvae(tmp_path_factory):
    """An initialised (untrained) toy CVAE task with the GSNN term and the generation options on."""
    config = load_config(CONFIG + ":toy,cvae", {"data.toy_records": 24, "task.prior_weight": 0.5,
                                                "task.generation_floor": "train_median"})
    task = SpectrogramTask(config, workdir=tmp_path_factory.mktemp("toy_cvae"))
    batch = {k: jnp.asarray(v) for k, v in task.data.add_mask(task.data.batch_arrays(task.data.train)).items()}
    variables = task.init_variables(jax.random.PRNGKey(0), batch)
    params = variables.pop("params")
    yield task, params, variables, batch
    task.close()


def test_prior_term_decodes_prior_draws_independent_of_the_input(toy_cvae):
    task, params, state, batch = toy_cvae
    rng = jax.random.PRNGKey(3)
    out, _ = task.apply(params, state, batch, rng, train=True)
    blank = dict(batch, x=jnp.zeros_like(batch["x"]))
    out_blank, _ = task.apply(params, state, blank, rng, train=True)
    # the prior path sees only z ~ N(0, I) and the conditions; the posterior path sees the record
    np.testing.assert_allclose(np.asarray(out_blank["prior_recon"]), np.asarray(out["prior_recon"]), atol=1e-6)
    assert np.abs(np.asarray(out_blank["recon"]) - np.asarray(out["recon"])).max() > 1e-3
    loss, (terms, _) = task.loss(params, state, batch, rng, train=True)
    expected = float(masked_mse(batch["x"], out["prior_recon"], batch["mask"]).mean())
    np.testing.assert_allclose(float(terms["prior_mse"]), expected, rtol=1e-5)
    task.prior_weight = 0.0
    try:
        loss0, (terms0, _) = task.loss(params, state, batch, rng, train=True)
    finally:
        task.prior_weight = 0.5
    assert "prior_mse" not in terms0
    np.testing.assert_allclose(float(loss) - float(loss0), 0.5 * expected, rtol=1e-4)
    with pytest.raises(InputError, match="prior_weight"):
        SpectrogramTask(load_config(CONFIG + ":toy,cvae", {"task.prior_weight": -1.0}),
                                 workdir=task.workdir)


def test_neighbour_prior_samples_the_posterior_of_the_nearest_training_record(toy_cvae):
    task, params, state, _ = toy_cvae
    train = task.data.train
    mean, logvar = (np.asarray(a) for a in task.model.apply({"params": params, **state}, train["x"], train["cond"],
                                                           train["station_index"], method="encode"))
    task.prior_neighbours = 1
    try:
        target = 5
        cond = np.repeat(train["cond"][target:target + 1], 3000, axis=0)
        z = task.neighbour_prior(params, state, cond, seed=1)
    finally:
        task.prior_neighbours = 8
    keys = train["cond"][:, [0, -1]]
    assert np.sum(np.all(np.isclose(keys, keys[target]), axis=1)) == 1   # the record's own keys are unique
    standard = (z - mean[target]) / np.exp(0.5 * logvar[target])
    np.testing.assert_allclose(standard.mean(axis=0), 0.0, atol=0.1)
    np.testing.assert_allclose(standard.std(axis=0), 1.0, atol=0.1)


def test_train_median_floor_sets_the_emptiest_bin_of_generated_records(toy_cvae):
    task, params, state, _ = toy_cvae
    cond, station = task.data.eval["cond"][:4], task.data.eval["station_index"][:4]
    x, mag, _ = task.generate(params, state, cond, station, seed=0, griffin_lim_iters=1)
    frames = task.data.spec.stft_shape[1]
    fm = task.data.spec.model_shape[0]
    floor = np.log1p(mag[:, :, :fm, :frames]).min(axis=(2, 3))                      # (N, C)
    np.testing.assert_allclose(floor, np.broadcast_to(np.median(task.data.train["log_scale"][:, 0], axis=0),
                                                      floor.shape), rtol=1e-4, atol=1e-7)
    # and renormalised decodes span [0, 1] per channel, so the predicted max sets the loudest bin
    np.testing.assert_allclose(x[:, :, :frames].min(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(x[:, :, :frames].max(axis=(1, 2)), 1.0, atol=1e-6)
