"""Reproducible evaluation: byte-identical metrics.json, exact means over padded batches, and
evaluation on another dataset (resampled and windowed around P)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.config import config_hash, load_config, load_saved_config
from seisjax.conv_ae.data import toy_waveforms
from seisjax.data.dataset import DatasetWriter
from seisjax.data.windows import window_and_normalise
from seisjax.families import evaluate, restore_trained, task_class, train_and_evaluate
from seisjax.train.logging import read_metrics
from tests.conftest import REPO

CONFIG = str(REPO / "experiments" / "conv_ae.py")
# eval.batch_size 48 over 64 evaluation examples: the second batch is padded with 32 empty rows.
RUN = ["model.channels=(8, 8, 8)", "batch_size=16", "eval.batch_size=48", "train.num_steps=10",
       "train.log_every_steps=5", "train.checkpoint_every_steps=5", "train.checkpoint_every_epochs=None",
       "train.eval_every_steps=10", "train.eval_every_epochs=None"]


FAST_COMPILE = True  # see conftest.py


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    config = load_config(f"{CONFIG}:toy", RUN)
    train_and_evaluate(config, workdir)
    return workdir, config


def test_eval_twice_gives_byte_identical_metrics(run):
    workdir, config = run
    path = evaluate(workdir)
    first = path.read_bytes()
    assert path == workdir / "eval" / "step_10" / "metrics.json"
    assert (path.parent / "reconstructions.png").read_bytes()[:4] == b"\x89PNG"
    assert evaluate(workdir, figures=False).read_bytes() == first
    record = json.loads(first)
    assert record["checkpoint_step"] == 10
    assert record["config_hash"] == config_hash(config) == config_hash(load_saved_config(workdir))
    assert len(record["data"]["fingerprint"]) == 64 and record["data"]["examples"] == 64
    assert set(record["versions"]) == {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"}
    assert record["versions"]["jax"] == jax.__version__
    for name, (total, count) in record["sums"].items():
        assert count == 64.0
        assert record["metrics"][name] == total / count
    # The same numbers as the evaluation during training at that step.
    (during,) = read_metrics(workdir, kind="eval")
    assert record["metrics"]["loss"] == pytest.approx(during["eval/loss"], rel=1e-6)


def test_means_are_exact_over_padded_batches(run):
    workdir, config = run
    record = json.loads(evaluate(workdir, figures=False).read_text())
    _, task, state, _ = restore_trained(workdir)
    waveforms, p = toy_waveforms(int(config.data.toy_examples), length=int(config.data.toy_length),
                                 seed=int(config.data.toy_seed))
    x = window_and_normalise(waveforms[256:], p[256:], window=task.window, pre_p=task.pre_p)
    recon = jax.jit(task.model.apply)({"params": state.params}, jnp.asarray(x))
    per_example = np.mean((np.asarray(recon, np.float64) - x) ** 2, axis=(1, 2))
    assert record["metrics"]["loss"] == pytest.approx(per_example.mean(), rel=1e-5)


def test_eval_of_an_earlier_step(run):
    workdir, _ = run
    record = json.loads(evaluate(workdir, step=5, figures=False).read_text())
    final = json.loads((workdir / "eval" / "step_10" / "metrics.json").read_text())
    assert record["checkpoint_step"] == 5
    assert record["metrics"]["loss"] != final["metrics"]["loss"]


def _write_dataset(path):
    """Two 100 Hz and two 40 Hz three-component records of 10 s, each a 3 Hz sine, P at 4.0-4.5 s."""
    rows = []
    with DatasetWriter(path, component_order="ZNE", sampling_rate=None) as writer:
        for i, rate in enumerate((100.0, 40.0, 100.0, 40.0)):
            t = np.arange(int(10 * rate)) / rate
            amp = np.array([1.0, 0.5, -0.25])[:, None] * (i + 1)
            waveform = (amp * np.sin(2 * np.pi * 3.0 * t)).astype(np.float32)
            p_time = 4.0 + 0.1 * i
            writer.add(waveform, {"trace_sampling_rate_hz": rate, "trace_npts": len(t),
                                  "trace_p_arrival_sample": p_time * rate, "station_code": f"S{i}"})
            rows.append(p_time)
    return rows


def test_eval_on_another_dataset_windows_and_resamples(run, tmp_path):
    workdir, config = run
    data = tmp_path / "other"
    p_times = _write_dataset(data)
    config_other = load_config(f"{CONFIG}:toy", RUN + ["data.source=dataset", f"data.path={data}"])
    task = task_class("autoencoder")(config_other)
    (batch,) = list(task.eval_batches(process_index=0, process_count=1))
    task.close()
    # Every record, resampled to the config's 50 Hz, is the 3 Hz sine from P - pre_p samples on.
    rate, window, pre = float(config.data.sampling_rate), task.window, task.pre_p
    for i, p_time in enumerate(p_times):
        t = p_time - pre / rate + np.arange(window) / rate
        expected = np.array([1.0, 0.5, -0.25])[None, :] * np.sin(2 * np.pi * 3.0 * t)[:, None]
        expected -= expected.mean(axis=0)
        expected /= np.abs(expected).max()
        np.testing.assert_allclose(batch["x"][i], expected, atol=2e-3)

    out = tmp_path / "eval_other"
    record = json.loads(evaluate(workdir, data_path=data, out_dir=out, figures=False).read_text())
    assert record["data"]["examples"] == 4 and record["data"]["split"] == "all"
    assert record["sums"]["loss"][1] == 4.0
    own = json.loads(evaluate(workdir, figures=False).read_text())
    assert record["data"]["fingerprint"] != own["data"]["fingerprint"]
    # The fingerprint is of content, not of file times.
    before = (out / "metrics.json").read_bytes()
    for f in data.iterdir():
        os.utime(f, (1e9, 1e9))
    assert evaluate(workdir, data_path=data, out_dir=out, figures=False).read_bytes() == before


def test_cached_windows_give_the_streamed_batches(tmp_path):
    """data.cache makes each window once; the batches (order, content) are those of streaming."""
    path = tmp_path / "split"
    rng = np.random.default_rng(1)
    with DatasetWriter(path, component_order="ZNE", sampling_rate=None) as writer:
        for i in range(20):
            rate = (100.0, 40.0)[i % 2]
            n = int(12 * rate)
            writer.add(rng.normal(size=(3, n)).astype(np.float32),
                       {"trace_sampling_rate_hz": rate, "trace_npts": n, "split": "train",
                        "trace_p_arrival_sample": rate * rng.uniform(4.0, 6.0)})
    batches = {}
    for cache in (False, True):
        config = load_config(f"{CONFIG}:toy", RUN + ["data.source=dataset", f"data.path={path}",
                                                     "batch_size=8", f"data.cache={cache}"])
        task = task_class("autoencoder")(config)
        iterator = task.train_batches(process_index=0, process_count=1)
        batches[cache] = [next(iterator)["x"] for _ in range(5)]  # 2 batches per epoch: 3 epochs
        iterator.close()
        task.close()
    for streamed, cached in zip(batches[False], batches[True], strict=True):
        np.testing.assert_array_equal(streamed, cached)
