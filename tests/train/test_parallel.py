"""Data parallelism: 4 simulated devices and 2 processes give what 1 device gives.

The multi-device runs are CLI subprocesses (a process's device count is fixed when JAX starts);
the 1-device reference runs in this process with the same config and global batch."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from seisjax.config import load_config
from seisjax.families import evaluate, restore_trained, train_and_evaluate
from seisjax.train.logging import read_metrics
from tests.conftest import REPO

CONFIG = str(REPO / "experiments" / "conv_ae.py")
RUN = ["model.channels=(8, 8, 8)", "batch_size=16", "eval.batch_size=32", "train.num_steps=6",
       "train.log_every_steps=1", "train.checkpoint_every_epochs=None", "train.eval_every_epochs=None"]


FAST_COMPILE = True  # see conftest.py


def _command(workdir):
    return [sys.executable, "-m", "seisjax", "train", "--config", f"{CONFIG}:toy", "--workdir", str(workdir),
            *[f"--config.{o}" for o in RUN]]


def _env(**extra):
    env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1", **extra)
    env.pop("XLA_FLAGS", None) if "XLA_FLAGS" not in extra else None
    return env


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one_device")
    train_and_evaluate(load_config(f"{CONFIG}:toy", RUN), workdir)
    return workdir


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("four_devices")
    out = subprocess.run(_command(workdir), cwd=REPO, capture_output=True, text=True, timeout=300,
                         env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "on 4 device(s)" in out.stdout
    return workdir


def _losses(workdir):
    return np.array([r["train/loss"] for r in read_metrics(workdir)])


def _assert_close_params(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2e-6)


def test_four_devices_match_one(one_device, four_devices):
    reference = _losses(one_device)
    assert len(reference) == 6
    np.testing.assert_allclose(_losses(four_devices), reference, rtol=1e-5)
    # Restoring the 4-device checkpoint here also shows a restore onto another device count.
    _, _, state4, step4 = restore_trained(four_devices)
    _, _, state1, _ = restore_trained(one_device)
    assert step4 == 6
    _assert_close_params(state4.params, state1.params)
    _assert_close_params(state4.opt_state, state1.opt_state)
    # The parameters did move: equality is not that of two untrained models.
    assert not np.allclose(reference[0], reference[-1])


def test_eval_of_4_device_checkpoint_on_1_device(one_device, four_devices):
    metrics4 = json.loads(evaluate(four_devices, figures=False).read_text())
    metrics1 = json.loads(evaluate(one_device, figures=False).read_text())
    assert metrics4["checkpoint_step"] == 6
    assert metrics4["data"] == metrics1["data"]
    assert metrics4["config_hash"] == metrics1["config_hash"]  # the same resolved config
    for name, value in metrics1["metrics"].items():
        assert metrics4["metrics"][name] == pytest.approx(value, rel=1e-4)
    assert metrics4["sums"]["loss"][1] == 64.0  # every one of the 64 evaluation examples, once


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(one_device, tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen(_command(tmp_path), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=_env(SEISJAX_COORDINATOR_ADDRESS=address, SEISJAX_NUM_PROCESSES="2",
                                                  SEISJAX_PROCESS_ID=str(i)))
             for i in range(2)]
    outs = []
    try:
        for proc in procs:
            outs.append(proc.communicate(timeout=300)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outs)
    assert "on 2 device(s)" in outs[0]  # one CPU device per process, one global mesh
    np.testing.assert_allclose(_losses(tmp_path), _losses(one_device), rtol=1e-5)
    _assert_close_params(restore_trained(tmp_path)[2].params, restore_trained(one_device)[2].params)
