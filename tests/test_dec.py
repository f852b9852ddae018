"""DEC: the polarity network's size by hand, SNR bins, and pretrain -> DEC -> eval through the engine
on clean up/down pulses (known truth), with the whole-dataset target and its exact recomputation
after a resume."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from seisjax.metrics import clustering as cl
from seisjax.config import load_config
from seisjax.errors import InputError
from seisjax.families import task_class
from seisjax.dec.model import MODELS
from seisjax.dec.task import snr_bin
from seisjax.families import evaluate, restore_trained, train_and_evaluate

FAST_COMPILE = True
CONFIG = "experiments/dec_polarity.py"


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


def test_snr_bins():
    np.testing.assert_array_equal(snr_bin([0.0, 0.99, 1.0, 2.5, 3.99, 4.0, 7.0, -0.5, np.nan]),
                                  [0, 0, 1, 2, 3, 4, 4, -1, -1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dec")
    pre, dec = root / "pre", root / "dec"
    train_and_evaluate(load_config(f"{CONFIG}:pulses_pretrain"), pre)
    result = train_and_evaluate(load_config(f"{CONFIG}:pulses", {"task.pretrained": str(pre)}), dec)
    return pre, dec, result


def test_pulses_cluster_by_polarity_through_the_engine(runs):
    pre, dec, result = runs
    config = load_config(f"{CONFIG}:pulses")
    # stopped by the label-change tolerance at a target update, before the schedule's end
    assert result["step"] % config.task.update_interval == 0
    assert result["step"] < 4 * 10
    metrics = json.loads(evaluate(dec).read_text())
    confusion = {k: v for k, v in metrics["metrics"].items() if k.startswith("confusion/")}
    assert len(confusion) == 4 and sum(confusion.values()) == pytest.approx(1.0)
    report = json.loads((evaluate(dec).parent / "clustering.json").read_text())
    assert set(report["methods"]) == {"dec", "dec_gmm_full", "kmeans_raw", "kmeans_pretrained",
                                      "kmeans_pretrained_whitened"}
    for method in report["methods"].values():
        for key in ("accuracy", "nmi", "ari"):
            assert 0.0 <= method[key] <= 1.0 + 1e-9
        assert sum(method["cluster_sizes"]) == config.data.toy_examples
    assert report["methods"]["dec"]["accuracy"] > 0.9
    assert report["methods"]["dec"]["per_class"]["up"]["f1"] > 0.9
    # the Hungarian accuracy from metrics.json's confusion pairs agrees with the report, and the
    # engine's eval (also run during training) reports that accuracy
    table = np.array([[confusion[f"confusion/{c}_cluster{k}"] for k in range(2)] for c in ("-1", "1")])
    accuracy = table[tuple(np.array(linear_sum_assignment(table, maximize=True)))].sum()
    assert accuracy == pytest.approx(report["methods"]["dec"]["accuracy"], abs=1e-6)
    assert metrics["metrics"]["accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert (evaluate(dec).parent / "confusion.png").exists() and (evaluate(dec).parent / "embedding.png").exists()


def test_target_is_whole_dataset_and_recomputed_exactly_after_resume(runs):
    pre, dec, _ = runs
    config, task, state, step = restore_trained(dec)
    x = task.windows("train")["x"]
    params = jax.tree_util.tree_map(np.asarray, state.params)
    # at an update step: P over every training window from the current parameters
    task.before_step(state, 0)
    z = task.encode(params, x)
    d2 = ((z[:, None] - params["centres"][None]) ** 2).sum(-1)
    q = 1 / (1 + d2)
    q /= q.sum(1, keepdims=True)
    p = q ** 2 / q.sum(0)
    p /= p.sum(1, keepdims=True)
    assert task._target.shape == (len(x), 2)
    np.testing.assert_allclose(task._target, p, atol=1e-5)
    # resumed between updates: P from the parameters of the last update (the snapshot), i.e. the
    # start of the DEC run here: the pretrained encoder with k-means centres
    task._target = None
    task.before_step(state, step + 3)
    start = task.initial_state(state)
    expected = np.asarray(cl.dataset_target(task.encode(start.params, x), start.params["centres"])[1])
    np.testing.assert_allclose(task._target, expected, atol=1e-6)
    assert not np.allclose(task._target, p, atol=1e-4)  # and not the current parameters' P
    task.close()


def test_whitened_cluster_space_is_fixed_at_init_and_kept_in_the_checkpoint(runs, tmp_path):
    pre, _, _ = runs
    run = tmp_path / "dec_whitened"
    train_and_evaluate(load_config(f"{CONFIG}:pulses", {"task.pretrained": str(pre),
                                                        "task.cluster_space": "whitened"}), run)
    report = json.loads((evaluate(run).parent / "clustering.json").read_text())
    assert set(report["methods"]) == {"dec_whitened", "dec_whitened_gmm_full", "kmeans_raw", "kmeans_pretrained",
                                      "kmeans_pretrained_whitened"}
    assert report["methods"]["dec_whitened"]["accuracy"] > 0.9
    config, task, state, step = restore_trained(run)
    x = task.windows("train")["x"]
    # the map is the whitening of the pretrained code over the training windows, unchanged by training
    z_pre = task.encode(task._pretrained_params(), x)
    expected = cl.whitening_map(z_pre)
    stored = task.cluster_map(state.model_state)
    np.testing.assert_allclose(stored["mean"], expected["mean"], atol=1e-5)
    np.testing.assert_allclose(stored["matrix"], expected["matrix"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.cov(cl.apply_map(z_pre, stored), rowvar=False, bias=True), np.eye(2), atol=1e-3)
    # assignments and the target are Student-t kernels in that space, not in the code
    params = jax.tree_util.tree_map(np.asarray, state.params)
    clusters, q, z = task.assign(params, x, state.model_state)
    np.testing.assert_allclose(q, np.asarray(cl.soft_assignment(cl.apply_map(z, stored), params["centres"])),
                               atol=1e-6)
    task.before_step(state, 0)
    np.testing.assert_allclose(task._target, np.asarray(cl.target_distribution(q)), atol=1e-5)
    with pytest.raises(InputError, match="model state"):
        task.assign(params, x)
    task.close()
    with pytest.raises(InputError, match="cluster_space"):
        task_class("dec")(load_config(f"{CONFIG}:pulses", {"task.cluster_space": "pca"}))
