"""LSTM autoencoder task: masked L1, and a tiny run through the engine (metrics per length bucket,
the all-zero baseline, probes)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.families import evaluate, train_and_evaluate
from seisjax.lstm_ae.data import toy_records
from seisjax.lstm_ae.task import masked_l1
from tests.lstm_ae.conftest import toy_config

FAST_COMPILE = True


def test_masked_l1_against_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 16, 2)).astype(np.float32)
    recon = rng.normal(size=(3, 16, 2)).astype(np.float32)
    lengths = np.array([16, 5, 1])
    expected = np.mean([np.abs(recon[i, :n] - x[i, :n]).sum() / n for i, n in enumerate(lengths)])
    got = float(jnp.mean(masked_l1(jnp.asarray(recon), jnp.asarray(x), jnp.asarray(lengths))))
    assert got == pytest.approx(expected, rel=1e-6)


def test_tiny_run_through_the_engine(tmp_path):
    config = toy_config(bucket_lengths=(32, 64))
    config.train.eval_every_epochs = None
    result = train_and_evaluate(config, tmp_path / "run")
    assert result["step"] == 8 and np.isfinite(result["train"]["loss"])
    assert (tmp_path / "run" / "normalisation.json").exists()
    metrics_path = evaluate(tmp_path / "run")
    record = json.loads(metrics_path.read_text())
    sums = record["sums"]
    buckets = [k for k in sums if k.startswith("l1_len_")]
    assert sorted(buckets) == ["l1_len_1-32", "l1_len_33-64"]
    # the length buckets partition the evaluation records: counts and error add up to the total
    assert sum(sums[k][1] for k in buckets) == sums["loss"][1] == record["data"]["examples"] == 24
    assert sum(sums[k][0] for k in buckets) == pytest.approx(sums["loss"][0], rel=1e-5)
    # the all-zero baseline is the L1 of the normalised evaluation records themselves
    norm = json.loads((tmp_path / "run" / "normalisation.json").read_text())
    toy = toy_records(96, channels=3, seed=0, min_length=16, max_length=64)
    zero = [np.abs((r - norm["mean"]) / np.asarray(norm["std"])).sum() / len(r) for r in toy.records[72:]]
    assert record["metrics"]["l1_zero_baseline"] == pytest.approx(np.mean(zero), rel=1e-4)
    # ... and per length bucket, on the same records as the model's error
    for k in buckets:
        low, high = (int(v) for v in k.removeprefix("l1_len_").split("-"))
        inside = [z for z, r in zip(zero, toy.records[72:]) if low <= len(r) <= high]
        assert sums[k.replace("l1_len_", "l1_zero_len_")][1] == sums[k][1] == len(inside)
        assert record["metrics"][k.replace("l1_len_", "l1_zero_len_")] == pytest.approx(np.mean(inside), rel=1e-4)
    report = json.loads((metrics_path.parent / "embeddings.json").read_text())
    probe = report["probes"]["path_distance_class"]
    assert probe["n_train"] == 72 and probe["n_eval"] == 24
    # the magnitude probe within each distance class sees that class's records alone
    eval_classes = toy.labels["path_distance_class"][72:]
    for cls in ("local", "teleseismic"):
        within = report["probes"][f"magnitude_bin_within_{cls}"]
        assert within["n_eval"] == int((eval_classes == cls).sum())
        assert within["n_train"] == int((toy.labels["path_distance_class"][:72] == cls).sum())
    assert 0.0 <= probe["majority_baseline"] <= 1.0
    assert (metrics_path.parent / "embedding_map.png").stat().st_size > 0
