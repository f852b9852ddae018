"""Checkpoints: retention, atomicity, and resuming interrupted runs bit for bit."""

import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.config import load_config
from seisjax.errors import InputError
from seisjax.families import evaluate, restore_trained, train_and_evaluate
from seisjax.train.checkpoint import Checkpointer, abstract_like
from seisjax.train.logging import read_metrics
from tests.conftest import REPO

CONFIG = str(REPO / "experiments" / "conv_ae.py")
RUN = ["model.channels=(8, 8, 8)", "batch_size=16", "eval.batch_size=32", "optim.stages=((100, 3e-3, 0.9),)",
       "train.num_steps=30", "train.log_every_steps=5", "train.checkpoint_every_steps=5",
       "train.checkpoint_every_epochs=None", "train.eval_every_epochs=None", "train.keep_last=2",
       "debug.step_delay_s=0.1"]


FAST_COMPILE = True  # see conftest.py


# ----------------------------------------------------------------------------- retention
def test_keeps_last_k_and_best(tmp_path):
    tree = {"w": jnp.arange(3.0), "step": jnp.int32(0)}
    losses = {1: 3.0, 2: 0.5, 3: 2.0, 4: 4.0, 5: 1.0}
    with Checkpointer(tmp_path / "c", keep_last=2, best_metric="eval/loss", best_mode="min") as ckpt:
        for step, loss in losses.items():
            ckpt.save(step, {**tree, "w": tree["w"] + step}, data_state={"epoch": step}, config={"a": 1},
                      metrics={"eval/loss": loss})
        assert ckpt.save(5, tree, data_state={}, config={}) is False  # an existing step is not rewritten
    with Checkpointer(tmp_path / "c", best_metric="eval/loss") as ckpt:  # a new process sees the same
        assert ckpt.all_steps() == [2, 4, 5]  # the last two and the best
        assert ckpt.best_step() == 2
        state, data, config, step = ckpt.restore(abstract_like(tree), step=2)
        np.testing.assert_array_equal(state["w"], np.arange(3.0) + 2)
        assert data == {"epoch": 2} and config == {"a": 1} and step == 2
        # "best" restores the best kept checkpoint, not the latest
        state, data, _, step = ckpt.restore(abstract_like(tree), step="best")
        assert step == 2 and data == {"epoch": 2}
        np.testing.assert_array_equal(state["w"], np.arange(3.0) + 2)
        assert ckpt.restore(abstract_like(tree))[3] == 5


def test_restore_into_a_changed_model_names_what_differs(tmp_path):
    """A checkpoint from before the model changed fails before Orbax reads it, with the entries that
    differ (shapes, entries on one side only), not with a deserialisation traceback."""
    tree = {"params": {"head": {"kernel": jnp.ones((64, 6)), "bias": jnp.zeros(6)}, "old": jnp.ones(3)},
            "step": jnp.int32(0)}
    with Checkpointer(tmp_path / "c", async_save=False) as ckpt:
        ckpt.save(7, tree, data_state={}, config={})
    changed = {"params": {"head": {"kernel": jnp.ones((32, 6)), "bias": jnp.zeros(6)}, "new": jnp.ones(2)},
               "step": jnp.int32(0)}
    with Checkpointer(tmp_path / "c") as ckpt:
        with pytest.raises(InputError) as err:
            ckpt.restore(abstract_like(changed))
        message = str(err.value)
        assert "checkpoint 7" in message
        assert "params/head/kernel: stored (64, 6), expected (32, 6)" in message
        assert "params/new: not in the checkpoint" in message and "params/old: in the checkpoint only" in message
        assert "bias" not in message   # entries that match are not listed
        state = ckpt.restore(abstract_like(tree))[0]   # the matching tree still restores
        np.testing.assert_array_equal(state["params"]["head"]["kernel"], np.ones((64, 6)))


def test_unfinished_save_is_ignored(tmp_path):
    tree = {"w": jnp.arange(3.0)}
    with Checkpointer(tmp_path / "c", async_save=False) as ckpt:
        ckpt.save(1, tree, data_state={}, config={})
    # What a save killed half-way leaves: Orbax's temporary directory, never renamed to "2".
    partial = tmp_path / "c" / "2.orbax-checkpoint-tmp-1700000000000000"
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "manifest.ocdbt").write_bytes(b"\x00truncated")
    with Checkpointer(tmp_path / "c") as ckpt:
        assert ckpt.latest_step() == 1
        state, *_ = ckpt.restore(abstract_like(tree))
        np.testing.assert_array_equal(state["w"], np.arange(3.0))


# ----------------------------------------------------------------------------- resume
def _config():
    return load_config(f"{CONFIG}:toy", RUN)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The workdir of an uninterrupted run of the same config."""
    workdir = tmp_path_factory.mktemp("reference")
    train_and_evaluate(_config(), workdir)
    return workdir


@pytest.fixture(scope="module")
def reference(reference_run):
    """The uninterrupted run's final state."""
    return restore_trained(reference_run)[2]


def test_a_missing_step_is_named_before_the_data_loads(reference_run):
    """A wrong --step fails at once: the data path given is never opened (it does not exist)."""
    missing = reference_run / "no-such-dataset"
    for restore in (restore_trained, evaluate):
        with pytest.raises(InputError, match=r"no checkpoint of step 7 \(available: 25, 30\)"):
            restore(reference_run, step=7, data_path=missing)


def _interrupted_run(workdir, sig, wait_for_step):
    """Start the CLI run in a subprocess, and send ``sig`` once checkpoint ``wait_for_step`` exists."""
    env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "seisjax", "train", "--config", f"{CONFIG}:toy", "--workdir", str(workdir)]
    cmd += [f"--config.{o}" for o in RUN]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    target = workdir / "checkpoints" / str(wait_for_step)
    deadline = time.monotonic() + 120
    try:
        while not target.exists():
            assert proc.poll() is None, f"training ended before checkpoint {wait_for_step}:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out


def _assert_same_state(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_ctrl_c_saves_and_the_same_command_resumes_bit_for_bit(tmp_path, reference):
    code, out = _interrupted_run(tmp_path, signal.SIGINT, wait_for_step=5)
    assert code == 130, out
    assert "SIGINT at step" in out and "checkpoint saved" in out
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        stopped = ckpt.latest_step()
    assert 5 < stopped < 30  # saved where it stopped, not only at the periodic step
    result = train_and_evaluate(_config(), tmp_path)
    assert result["step"] == 30
    assert read_metrics(tmp_path, kind="compile")[-1]["step"] == stopped
    _assert_same_state(restore_trained(tmp_path)[2], reference)


def test_killed_run_resumes_bit_for_bit_past_a_partial_save(tmp_path, reference):
    code, _ = _interrupted_run(tmp_path, signal.SIGKILL, wait_for_step=10)
    assert code == -signal.SIGKILL
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        last_good = ckpt.latest_step()
    assert 10 <= last_good < 30
    partial = tmp_path / "checkpoints" / f"{last_good + 5}.orbax-checkpoint-tmp-1700000000000000"
    (partial / "state").mkdir(parents=True, exist_ok=True)
    (partial / "state" / "manifest.ocdbt").write_bytes(b"\x00truncated")
    train_and_evaluate(_config(), tmp_path)
    assert read_metrics(tmp_path, kind="compile")[-1]["step"] == last_good
    # The history reads as one run: records past the last checkpoint were dropped on resume.
    steps = [r["step"] for r in read_metrics(tmp_path)]
    assert steps == sorted(set(steps)) == list(range(5, 31, 5))
    _assert_same_state(restore_trained(tmp_path)[2], reference)
