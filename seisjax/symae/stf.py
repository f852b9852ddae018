"""The ``stf`` command's body: restore a trained SymAE run, extract the source time functions of
every (event, pixel) group of its data (:mod:`seisjax.symae.extraction`), and write them with
figures (:mod:`seisjax.symae.plots`)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from seisjax.data.dataset import Dataset
from seisjax.errors import InputError
from seisjax.symae.data import arrays_from_prepared
from seisjax.symae.extraction import ExtractionConfig, extract_coherent, write_extraction_hdf5
from seisjax.symae.plots import mean_displacement_envelope, write_figures
from seisjax.symae.task import SymAETask
from seisjax.train.loop import restore_trained

__all__ = ["restore_for_inference", "run_stf"]


def restore_for_inference(workdir, *, step: int | str | None = None, data_path=None):
    """``(model, params, config, step, task)`` of a trained SymAE run, through the engine's
    :func:`seisjax.train.loop.restore_trained` (``data_path``: prepare that dataset instead of the
    run's own). The caller closes ``task``."""
    config, task, state, step = restore_trained(SymAETask, workdir, step=step, data_path=data_path)
    return task.model, jax.device_get(state.params), config, step, task


def _integrates(dataset_path, input_kind: str) -> tuple[bool, str]:
    """Whether the displacement envelope integrates the traces, and why."""
    if input_kind in ("velocity", "displacement"):
        return input_kind == "velocity", f"--input-kind {input_kind}"
    unit = ""
    if dataset_path is not None:
        with Dataset(dataset_path) as ds:
            unit = str(ds.data_format.get("unit", "") or "")
    if unit.strip().lower() in ("m", "nm", "um", "displacement"):
        return False, f"data unit {unit!r}: displacement"
    return True, f"data unit {unit or 'unknown'!r}: taken as velocity and integrated"


def run_stf(workdir, out, *, data_path=None, step: int | None = None, config: ExtractionConfig | None = None,
            figures: bool = True, max_figure_events: int = 6, input_kind: str = "auto",
            log=print) -> dict:
    """The ``stf`` command: restore the SymAE run in ``workdir`` (checkpoint ``step``, default the
    latest), take the task's preparation of its data (or of ``data_path``), extract every event and
    pixel at once, write the HDF5 ``out`` and figures in ``<out stem>_figures/`` beside it. Returns
    ``{"hdf5", "figures", "events", "groups", "traces", "checkpoint_step", "compile_and_run_s"}``."""
    out = Path(out)
    if input_kind not in ("auto", "velocity", "displacement"):
        raise InputError(f"input_kind = {input_kind!r}: expected auto, velocity or displacement")
    model, params, _, ckpt_step, task = restore_for_inference(workdir, step=step, data_path=data_path)
    try:
        groups = arrays_from_prepared(task.prepared)
        dataset_path = task.dataset_path
    finally:
        task.close()
    config = dataclasses.replace(config or ExtractionConfig(), sampling_rate=groups.sampling_rate)
    log(f"stf: checkpoint step {ckpt_step} of {workdir}; {groups.n_events} events, {len(groups.pixels)} "
        f"(event, pixel) groups, {int(groups.mask.sum())} traces of {groups.traces.shape[-1]} samples at "
        f"{groups.sampling_rate:g} Hz; N = {config.n_best}, {config.steps} steps (lr {config.lr}, alpha {config.alpha})")
    start = time.perf_counter()
    result = extract_coherent(model, params, groups, config)
    elapsed = time.perf_counter() - start
    log(f"stf: extraction of all events and pixels at once (compile + run) took {elapsed:.1f} s")
    integrate, why = _integrates(dataset_path, input_kind)
    envelope = mean_displacement_envelope(groups.traces, groups.mask, groups.sampling_rate, integrate=integrate)
    write_extraction_hdf5(out, groups, result, checkpoint_step=ckpt_step, displacement_envelope=envelope,
                          extra_attrs={"workdir": str(workdir), "displacement_envelope": why})
    paths = []
    if figures:
        paths = write_figures(out.parent / f"{out.stem}_figures", groups, result, max_events=max_figure_events,
                              displacement_envelope=envelope)
    return {"hdf5": out, "figures": paths, "events": groups.n_events, "groups": len(groups.pixels),
            "traces": int(groups.mask.sum()), "checkpoint_step": ckpt_step, "compile_and_run_s": elapsed,
            "final_loss": np.nanmean(result.loss_history[:, -1]), "initial_loss": np.nanmean(result.loss_history[:, 0])}
