"""The SymAE task: a short run of the real quick config through the engine on the tiny synthetic
set (conftest.py), its checkpoint, its loss on the fixed test datapoints and its data report."""

import json

import jax
import numpy as np
import pytest

from seisjax.config import load_config
from seisjax.errors import InputError
from seisjax.families import restore_trained, train_and_evaluate
from seisjax.symae.data import eval_datapoints
from seisjax.symae.task import SymAETask
from seisjax.train.checkpoint import Checkpointer
from seisjax.train.logging import read_metrics
from tests.conftest import REPO

CONFIG = str(REPO / "experiments" / "symae.py")
FAST_COMPILE = True  # see conftest.py


def test_quick_config_trains_through_the_engine(tele, tmp_path):
    dataset, _ = tele
    overrides = ["data.source=dataset", f"data.path={dataset.path}", "batch_size=4", "data.ntau=6",
                 "eval.batch_size=8", "optim.stages=((100, 1e-2, 1.0),)", "train.num_steps=4",
                 "train.log_every_steps=1", "train.eval_every_epochs=None", "train.checkpoint_every_epochs=None",
                 "train.async_checkpointing=false"]
    config = load_config(f"{CONFIG}:quick", overrides)
    with pytest.raises(InputError, match="model.nt"):
        SymAETask(load_config(f"{CONFIG}:quick", overrides + ["model.nt=176"]), workdir=tmp_path / "bad")
    result = train_and_evaluate(config, tmp_path / "run")
    losses = [r["train/loss"] for r in read_metrics(tmp_path / "run")]
    assert result["step"] == 4 and len(losses) == 4 and np.isfinite(losses).all()
    ckpt = Checkpointer(tmp_path / "run" / "checkpoints")
    try:
        assert ckpt.latest_step() == 4
    finally:
        ckpt.close()
    # The loss on the fixed test datapoints (code means, no sampling): the restored checkpoint against
    # the initial parameters (the engine's: the first half of the seed's key).
    saved, task, state, step = restore_trained(tmp_path / "run")
    batch = {k: jax.numpy.asarray(v) for k, v in eval_datapoints(task.prepared, 6).items()}
    initial = task.init_variables(jax.random.split(jax.random.PRNGKey(saved.seed))[0], batch)
    loss = jax.jit(lambda params: task.loss(params, {}, batch, jax.random.PRNGKey(0), train=False)[0])
    before, after = float(loss(initial["params"])), float(loss(state.params))
    assert step == 4 and after < before - 1.0
    report = json.loads((tmp_path / "run" / "symae_data.json").read_text())
    assert report["n_groups"] >= 3 and report["rejected"]["small_group"] > 0
