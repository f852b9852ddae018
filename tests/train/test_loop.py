"""Training through the engine: the real conv_ae config shrunk to a few steps (flax examples'
train_test style), what a run writes for watching it, and the NaN guard."""

import json
import struct

import jax
import numpy as np
import pytest

from seisjax.cli import main
from seisjax.config import load_config
from seisjax.errors import InputError
from seisjax.families import restore_trained, task_class, train_and_evaluate
from seisjax.train.checkpoint import Checkpointer
from seisjax.train.logging import read_metrics
from tests.conftest import REPO

CONFIG = str(REPO / "experiments" / "conv_ae.py")
# The real config, shrunk: in-memory toy waveforms, a narrow model, a constant learning rate.
SMALL = ["model.channels=(8, 8, 8)", "batch_size=16", "eval.batch_size=32",
         "optim.stages=((100, 3e-3, 1.0),)", "train.eval_every_epochs=None",
         "train.checkpoint_every_epochs=None", "train.async_checkpointing=false"]


FAST_COMPILE = True  # see conftest.py


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("conv_ae")
    config = load_config(f"{CONFIG}:toy", SMALL + [
        "train.num_steps=60", "train.log_every_steps=5", "train.eval_every_steps=20",
        "train.checkpoint_every_steps=20", "train.figure_every_steps=20"])
    result = train_and_evaluate(config, workdir)
    return workdir, config, result


def test_loss_decreases(run):
    workdir, _, result = run
    train = read_metrics(workdir)
    evals = read_metrics(workdir, kind="eval")
    assert [r["step"] for r in evals] == [20, 40, 60]
    # On the fixed evaluation data (single training batches are too noisy to compare).
    losses = [r["eval/loss"] for r in evals]
    assert losses[2] < losses[1] < losses[0]
    assert losses[2] < 0.95 * losses[0]
    assert evals[-1]["eval/correlation"] > evals[0]["eval/correlation"] + 0.05
    assert len(train) == 12
    assert result["step"] == 60 and result["interrupted"] is None
    assert result["eval"]["loss"] == pytest.approx(losses[2])


def _tensorboard_scalars(logdir):
    from seisjax.train.logging import _summary_writer_class

    _summary_writer_class()  # imports tensorboardX without torch
    from tensorboardX.proto import event_pb2

    scalars = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):  # TFRecord framing: length, crc, payload, crc
            (length,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
            i += 16 + length
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def test_run_writes_what_a_user_watches(run):
    workdir, config, _ = run
    train = read_metrics(workdir)
    assert [r["step"] for r in train] == list(range(5, 61, 5))
    for record in train:
        for key in ("train/loss", "train/mse", "train/lr", "train/grad_norm", "train/param_norm",
                    "train/update_norm", "examples_per_s", "epoch"):
            assert key in record, key
        assert record["train/lr"] == pytest.approx(3e-3)
        assert record["train/loss"] == record["train/mse"]  # the task's only term is the loss
        assert record["examples_per_s"] > 0
        assert record["epoch"] == record["step"] // 16  # 256 toy training examples / 16
    (compile_record,) = read_metrics(workdir, kind="compile")
    assert compile_record["compile_time_s"] > 0
    scalars = _tensorboard_scalars(workdir / "tensorboard")
    assert sorted(scalars["train/loss"]) == list(range(5, 61, 5))
    assert scalars["train/loss"][60] == pytest.approx(train[-1]["train/loss"], rel=1e-6)
    assert sorted(scalars["eval/loss"]) == [20, 40, 60]
    figure = (workdir / "figures" / "loss.png").read_bytes()
    assert figure[:8] == b"\x89PNG\r\n\x1a\n" and len(figure) > 5000
    assert json.loads((workdir / "config.json").read_text())["model"]["channels"] == [8, 8, 8]


def test_checkpoints_keep_last_and_best(run):
    workdir, _, _ = run
    with Checkpointer(workdir / "checkpoints", best_metric="eval/loss") as ckpt:
        assert ckpt.all_steps() == [20, 40, 60]  # keep_last = 3
        evals = {r["step"]: r["eval/loss"] for r in read_metrics(workdir, kind="eval")}
        assert ckpt.best_step() == min(evals, key=evals.get)


def test_restored_state_has_the_trained_parameters(run):
    workdir, _, _ = run
    config, task, state, step = restore_trained(workdir)
    assert step == 60 and int(state.step) == 60
    assert config.task.name == "autoencoder" and task.window == 256
    _, _, earlier, _ = restore_trained(workdir, step=20)
    moved = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b), state.params, earlier.params)
    assert all(jax.tree_util.tree_leaves(moved))
    # step "best": the checkpoint with the lowest eval/loss (the config's best_metric)
    evals = {r["step"]: r["eval/loss"] for r in read_metrics(workdir, kind="eval")}
    assert restore_trained(workdir, step="best")[3] == min(evals, key=evals.get)


def test_step_argument_takes_a_number_or_best(capsys):
    from seisjax.cli import build_parser

    for command in ("eval", "stf", "embed", "cluster"):
        parse = build_parser().parse_args
        assert parse([command, "--workdir", "w", "--data", "d", "--out", "o", "--step", "best"]).step == "best"
        assert parse([command, "--workdir", "w", "--data", "d", "--out", "o", "--step", "40"]).step == 40
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--workdir", "w", "--step", "last"])
    assert "expected a checkpoint step (an integer) or 'best'" in capsys.readouterr().err


def test_changed_config_in_same_workdir_is_refused(run):
    workdir, _, _ = run
    config = load_config(f"{CONFIG}:toy", SMALL + [
        "train.num_steps=60", "train.log_every_steps=5", "train.eval_every_steps=20",
        "train.checkpoint_every_steps=20", "train.figure_every_steps=20", "seed=1"])
    with pytest.raises(InputError, match=r"differs in: seed"):
        train_and_evaluate(config, workdir)


def test_nan_stops_the_run_naming_step_and_term_and_keeps_last_good_checkpoint(tmp_path, capsys):
    workdir = tmp_path / "nan"
    args = ["train", "--config", f"{CONFIG}:toy", "--workdir", str(workdir), "--config.debug.nan_at_step=7",
            "--config.train.num_steps=12", "--config.train.checkpoint_every_steps=5"]
    args += [f"--config.{o}" for o in SMALL]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 3
    message = capsys.readouterr().err
    assert "non-finite values at step 7: loss=nan" in message
    assert "grad_norm=nan" in message
    with Checkpointer(workdir / "checkpoints") as ckpt:
        assert ckpt.all_steps() == [5]
    _, _, state, step = restore_trained(workdir)
    assert step == 5
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree_util.tree_leaves(state.params))
    assert [r["step"] for r in read_metrics(workdir)] == [5]  # log_every 5: step 10 never logged


def test_unknown_task_is_named():
    with pytest.raises(InputError, match=r"unknown task 'nosuch' \(known: .*autoencoder"):
        task_class("nosuch")
