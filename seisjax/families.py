"""The model families, found by the task name a config gives (``config.task.name``).

The engine (:mod:`seisjax.train.loop`) takes a task class and imports no family; this module sits
above the families and gives the entry points that start from a config or a run's folder:
:func:`train_and_evaluate`, :func:`evaluate` and :func:`restore_trained`.
"""

from __future__ import annotations

from pathlib import Path

from seisjax import config as config_lib
from seisjax.conv_ae.task import AutoencoderTask
from seisjax.dec.task import DECTask
from seisjax.errors import InputError
from seisjax.lstm_ae.task import LSTMAETask
from seisjax.spectrogram.task import SpectrogramTask
from seisjax.symae.task import SymAETask
from seisjax.train import loop
from seisjax.train.task import Task

__all__ = ["TASKS", "task_class", "train_and_evaluate", "evaluate", "restore_trained"]

#: ``config.task.name`` -> task class
TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (
    SymAETask, SpectrogramTask, LSTMAETask, DECTask, AutoencoderTask)}


def task_class(name: str) -> type[Task]:
    """The task class that ``config.task.name`` names."""
    try:
        return TASKS[str(name)]
    except KeyError:
        raise InputError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})") from None


def _run_task(workdir) -> type[Task]:
    return task_class(config_lib.load_saved_config(Path(workdir)).task.name)


def train_and_evaluate(config, workdir) -> dict:
    """Train ``config`` in ``workdir`` (see :func:`seisjax.train.loop.train_and_evaluate`)."""
    return loop.train_and_evaluate(task_class(config.task.name), config, workdir)


def evaluate(workdir, **kwargs) -> Path:
    """Evaluate a trained run (see :func:`seisjax.train.loop.evaluate`)."""
    return loop.evaluate(_run_task(workdir), workdir, **kwargs)


def restore_trained(workdir, **kwargs):
    """``(config, task, state, step)`` of a trained run (see :func:`seisjax.train.loop.restore_trained`)."""
    return loop.restore_trained(_run_task(workdir), workdir, **kwargs)
