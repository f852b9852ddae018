"""Opening a trained run from its folder alone (seisjax/train/restore.py, seisjax.load_run): the
checkpoint read without writing, the inference data kept beside each checkpoint, the clear error
and `export` for runs without it."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import seisjax
from seisjax.cli import main as cli_main
from seisjax.config import load_config
from seisjax.errors import InputError
from seisjax.families import export, restore_trained, train_and_evaluate
from seisjax.train.restore import (Run, inference_path, prune_inference_data, read_checkpoint, read_inference_data,
                                   write_inference_data)
from tests.conftest import REPO

FAST_COMPILE = True  # see conftest.py

CONFIG = str(REPO / "experiments" / "conv_ae.py")
RUN = ["model.channels=(8, 8, 8)", "batch_size=16", "eval.batch_size=32", "train.num_steps=12",
       "train.checkpoint_every_steps=4", "train.checkpoint_every_epochs=None", "train.keep_last=2",
       "train.eval_every_steps=4", "train.eval_every_epochs=None", "train.async_checkpointing=false"]


def _snapshot(folder):
    """Every file's path, size, modification time and bytes: what 'unchanged' means."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    train_and_evaluate(load_config(f"{CONFIG}:toy", RUN), workdir)
    return workdir


def test_the_engine_keeps_inference_data_beside_every_kept_checkpoint(run):
    kept = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == [8, 12]   # keep_last 2 (best by eval/loss is one of them here)
    assert sorted((p.name for p in (run / "inference").iterdir()), key=len) == [f"step_{s}.npz" for s in kept]
    data = read_inference_data(run, 12)
    assert data["model_kwargs"]["channels"] == [8, 8, 8] and data["model_kwargs"]["out_channels"] == 3


def test_a_checkpoint_reads_as_the_engine_restores_it_and_writes_nothing(run):
    before = _snapshot(run)
    checkpoint = read_checkpoint(run, "latest")
    _, task, state, step = restore_trained(run)
    task.close()
    assert checkpoint.step == step == 12
    for a, b in zip(jax.tree_util.tree_leaves(checkpoint.params), jax.tree_util.tree_leaves(state.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert read_checkpoint(run, 8).step == 8 and read_checkpoint(run, "8").step == 8
    assert read_checkpoint(run, "best").step == restore_trained(run, step="best")[3]
    with pytest.raises(InputError, match=r"no checkpoint of step 5 \(available: 8, 12\)"):
        read_checkpoint(run, 5)
    assert _snapshot(run) == before


def test_load_run_gives_the_model_and_its_trained_function(run):
    loaded = seisjax.load_run(run)
    assert loaded.step == 12 and loaded.config.model.name == "conv_ae" and "ConvAERun" in repr(loaded)
    x = np.random.default_rng(0).normal(size=(5, loaded.model.length, 3)).astype(np.float32)
    recon = loaded.model.apply(loaded.variables, x)
    _, task, state, _ = restore_trained(run)
    task.close()
    np.testing.assert_allclose(recon, task.model.apply({"params": state.params}, x), rtol=1e-6)


def test_batched_covers_any_number_of_examples_with_one_program(run):
    loaded = seisjax.load_run(run)
    traced = []

    @jax.jit
    def double(batch):
        traced.append(batch["x"].shape)
        return {"y": 2 * batch["x"], "n": jnp.sum(batch["x"], axis=1)}

    x = np.arange(23 * 4, dtype=np.float32).reshape(23, 4)
    out = loaded.batched(double, {"x": x}, batch_size=10)
    np.testing.assert_array_equal(out["y"], 2 * x)
    np.testing.assert_array_equal(out["n"], x.sum(1))
    assert traced == [(10, 4)]   # the short last chunk was padded, not recompiled
    with pytest.raises(InputError, match="no examples"):
        loaded.batched(double, {"x": x[:0]})


def test_inference_data_round_trips_arrays_and_json(tmp_path):
    data = {"mean": np.arange(3, dtype=np.float32), "names": ["a", "b"], "rate": np.float64(40.0),
            "shape": (87, 67), "nested": {"k": np.int64(3)}}
    path = write_inference_data(tmp_path, 7, data)
    assert path == inference_path(tmp_path, 7) and not list(tmp_path.rglob(".*.tmp"))
    back = read_inference_data(tmp_path, 7)
    np.testing.assert_array_equal(back["mean"], data["mean"])
    assert back["mean"].dtype == np.float32
    assert back["names"] == ["a", "b"] and back["rate"] == 40.0 and back["shape"] == [87, 67]
    assert back["nested"] == {"k": 3}
    assert read_inference_data(tmp_path, 8) is None
    write_inference_data(tmp_path, 9, {})
    prune_inference_data(tmp_path, [9])
    assert sorted(p.name for p in (tmp_path / "inference").iterdir()) == ["step_9.npz"]


def test_a_run_without_inference_data_names_what_is_missing_and_export_adds_it(run, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(run, old)
    shutil.rmtree(old / "inference")   # as a run trained before seisjax wrote it
    with pytest.raises(InputError, match=r"no inference data \(model_kwargs missing.*python -m seisjax export"):
        seisjax.load_run(old)
    assert cli_main(["export", "--workdir", str(old), "--step", "12"]) == 0
    assert "export: wrote" in capsys.readouterr().out
    assert seisjax.load_run(old).step == 12
    with pytest.raises(InputError, match="checkpoint 8 has no inference data"):
        seisjax.load_run(old, 8)
    assert [p.name for p in export(old, log=lambda _: None)] == ["step_8.npz", "step_12.npz"]   # every kept one
    assert seisjax.load_run(old, 8).step == 8


def test_run_checks_its_needs_and_model():
    class Needy(Run):
        task_name, models, needs = "test", {"m": dict}, ("model_kwargs", "mean")

    config = load_config(f"{CONFIG}:toy", {"model.name": "m"})
    checkpoint = type("C", (), {"config": config, "params": {}, "model_state": {}, "step": 3})()
    with pytest.raises(InputError, match=r"\(mean missing"):
        Needy("somewhere", checkpoint, {"model_kwargs": {}})
    assert Needy("somewhere", checkpoint, {"model_kwargs": {"a": [1, 2]}, "mean": 0}).model == {"a": (1, 2)}
    config = load_config(f"{CONFIG}:toy")
    checkpoint.config = config
    with pytest.raises(InputError, match="model.name = 'conv_ae': a test run has the models m"):
        Needy("somewhere", checkpoint, {"model_kwargs": {}, "mean": 0})


def test_load_run_names_an_unknown_task(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"task": {"name": "nosuch"}}))
    with pytest.raises(InputError, match="unknown task 'nosuch'"):
        seisjax.load_run(tmp_path)
