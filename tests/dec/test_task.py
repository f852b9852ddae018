"""DEC through the engine: pretrain -> DEC -> eval on clean up/down pulses and on two clearly
different spectral shapes (known truth), the whole-dataset target and its exact recomputation after a
resume, the whitened clustering space, the centres' initialisation, and the report's scores."""

import json

import jax
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from seisjax.config import load_config
from seisjax.data.dataset import Dataset
from seisjax.dec.data import tone_waveforms
from seisjax.dec.task import pair_split
from seisjax.errors import InputError
from seisjax.families import evaluate, restore_trained, task_class, train_and_evaluate
from seisjax.metrics import clustering as cl
from tests.metrics.test_clustering import _anisotropic_blobs

FAST_COMPILE = True
CONFIG = "experiments/dec_polarity.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dec")
    pre, dec = root / "pre", root / "dec"
    train_and_evaluate(load_config(f"{CONFIG}:pulses,pretrain"), pre)
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
    x = task.data.train["x"]
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
    x = task.data.train["x"]
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


def test_tones_cluster_by_spectral_shape_through_the_engine(tmp_path):
    pre, dec = tmp_path / "pre", tmp_path / "dec"
    distance = "experiments/dec_distance.py"
    train_and_evaluate(load_config(f"{distance}:tones,pretrain"), pre)
    train_and_evaluate(load_config(f"{distance}:tones", {"task.pretrained": str(pre)}), dec)
    metrics_path = evaluate(dec)
    report = json.loads((metrics_path.parent / "clustering.json").read_text())
    config = load_config(f"{distance}:tones")
    assert set(report["methods"]) == {"dec", "dec_gmm_full", "kmeans_raw", "kmeans_pretrained",
                                      "kmeans_pretrained_whitened"}
    assert report["examples"] == config.data.toy_examples
    assert report["methods"]["dec"]["accuracy"] > 0.9
    assert report["methods"]["dec"]["per_class"]["teleseismic"]["f1"] > 0.9
    truth = tone_waveforms(config.data.toy_examples, length=1204, p=232, seed=config.data.toy_seed)["label"]
    assert sorted(report["methods"]["dec"]["cluster_sizes"]) == pytest.approx(
        sorted(np.unique(truth, return_counts=True)[1]), abs=0.1 * len(truth))


def test_dec_init_gmm_puts_the_centres_on_the_blobs():
    x, _ = _anisotropic_blobs(seed=1)
    centres = {}
    for init in ("kmeans", "gmm"):
        config = load_config("experiments/dec_polarity.py:pulses", {"task.init": init, "data.toy_examples": 64})
        centres[init] = task_class("dec")(config).initial_centres(x.astype(np.float32))
    np.testing.assert_allclose(np.sort(centres["gmm"][:, 1]), [-1.0, 1.0], atol=0.05)
    assert np.abs(centres["kmeans"][:, 1]).max() < 0.5  # k-means splits along the long axis instead
    with pytest.raises(InputError, match="task.init"):
        task_class("dec")(load_config("experiments/dec_polarity.py:pulses", {"task.init": "spectral"}))


def test_eval_scores_clear_onsets_apart(tmp_path, write_pulses, load_script):
    script = load_script("dec_polarity_flips")
    write_pulses(tmp_path / "src", n=8, length=800, p=400)
    script.make_polarity_flips([tmp_path / "src"], tmp_path / "flips", band=None, progress=False)
    with Dataset(tmp_path / "flips") as ds:  # make the first two pairs noise-dominated: onset SNR < 3
        meta = ds.metadata.copy()
    meta.loc[:3, "trace_onset_snr"] = [0.5, 0.5, 2.0, 2.0]
    meta.to_csv(tmp_path / "flips" / "metadata.csv", index=False)
    config = load_config("experiments/dec_polarity.py:real,pretrain", {"data.path": str(tmp_path / "flips")})
    task = task_class("dec")(config)
    variables = task.model.init(jax.random.PRNGKey(0), task.data.eval["x"][:2])
    report = task.eval_report(variables["params"], {}, tmp_path)
    assert report["unambiguous"] == {"definition": "trace_onset_snr >= 3", "examples": 12}
    raw = report["methods"]["kmeans_raw"]
    assert raw["unambiguous"]["examples"] == 12 and raw["accuracy"] == 1.0 and raw["pair_split"]["split"] == 1.0
    task.close()


def test_pair_split_counts_pairs_in_different_clusters():
    pairs = np.array([0, 0, 1, 1, 2, 2, 3, np.nan, 4, 4, 4])
    clusters = np.array([0, 1, 1, 1, 1, 0, 0, 1, 0, 1, 0])
    # pairs 0 and 2 split, 1 not; 3 (one row), NaN and 4 (three rows) not counted
    assert pair_split(pairs, clusters) == {"pairs": 3, "split": pytest.approx(2 / 3)}
