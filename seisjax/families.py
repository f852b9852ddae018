"""The model families, found by the task name a config gives (``config.task.name``).

The engine (:mod:`seisjax.train.loop`) takes a task class and imports no family; this module sits
above the families and gives the entry points that start from a config or a run's folder:
:func:`train_and_evaluate`, :func:`evaluate`, :func:`restore_trained`, :func:`load_run` (a trained
run for inference, from its folder alone) and :func:`export` (what :func:`load_run` needs, for runs
trained before seisjax wrote it).
"""

from __future__ import annotations

from pathlib import Path

from seisjax import config as config_lib
from seisjax.conv_ae.run import ConvAERun
from seisjax.conv_ae.task import AutoencoderTask
from seisjax.dec.run import DECRun
from seisjax.dec.task import DECTask
from seisjax.errors import InputError
from seisjax.lstm_ae.run import LSTMAERun
from seisjax.lstm_ae.task import LSTMAETask
from seisjax.spectrogram.run import SpectrogramRun
from seisjax.spectrogram.task import SpectrogramTask
from seisjax.symae.run import SymAERun
from seisjax.symae.task import SymAETask
from seisjax.train import loop
from seisjax.train.restore import Run, read_checkpoint, read_inference_data
from seisjax.train.task import Task

__all__ = ["TASKS", "RUNS", "task_class", "train_and_evaluate", "evaluate", "restore_trained", "load_run", "export"]

#: ``config.task.name`` -> task class
TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (
    SymAETask, SpectrogramTask, LSTMAETask, DECTask, AutoencoderTask)}


#: ``config.task.name`` -> the family's run class (``seisjax.load_run``)
RUNS: dict[str, type[Run]] = {cls.task_name: cls for cls in (
    SymAERun, SpectrogramRun, LSTMAERun, DECRun, ConvAERun)}


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


def load_run(workdir, step: int | str = "latest") -> Run:
    """The trained run in ``workdir`` at checkpoint ``step`` (a number, ``"latest"`` or ``"best"``),
    with its family's operations on numpy arrays: reads the run's folder and nothing else, writes
    nothing. ``help(run)`` lists the operations."""
    config = config_lib.load_saved_config(Path(workdir))
    name = str(config.task.name)
    if name not in RUNS:
        raise InputError(f"{workdir}: a run of the unknown task {name!r} (known: {', '.join(sorted(RUNS))})")
    checkpoint = read_checkpoint(workdir, step)
    return RUNS[name](workdir, checkpoint, read_inference_data(workdir, checkpoint.step))


def export(workdir, *, steps=None, log=print) -> list[Path]:
    """Write what :func:`load_run` needs beside each kept checkpoint of a run trained before seisjax
    wrote it, from the run's training data (see :func:`seisjax.train.loop.export_inference_data`)."""
    return loop.export_inference_data(_run_task(workdir), workdir, steps=steps, log=log)
