"""A trained run opened for inference from its folder alone: what ``seisjax.load_run`` builds on.

Two things make a run usable without its training data:

- its checkpoint, read here without a target (the arrays as they were saved) and without writing
  anything: :func:`read_checkpoint` opens ``<workdir>/checkpoints`` read-only, so a run on a
  read-only disk or a shared archive opens as it is;
- its **inference data**: what the run needs to treat new inputs as it treated its training data
  (the model's constructor arguments, normalisation constants, condition scalers and their training
  ranges, a station vocabulary, a table of training codes, ...). The engine asks the task for it
  (:meth:`seisjax.train.task.Task.inference_data`) at every checkpoint it keeps and writes it beside
  the checkpoint as ``<workdir>/inference/step_<N>.npz``: arrays, and one JSON entry for the rest.

:class:`Run` is the base of each family's run (``seisjax/<family>/run.py``): the resolved config,
the model, its variables, the step, and a batched, jitted way to apply the model to arrays of any
length with bounded memory.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from seisjax import config as config_lib
from seisjax.errors import InputError
from seisjax.train.task import tupled

__all__ = ["Checkpoint", "read_checkpoint", "INFERENCE_DIR", "inference_path", "write_inference_data",
           "read_inference_data", "prune_inference_data", "Run"]

INFERENCE_DIR = "inference"
_JSON_KEY = "__json__"


# ============================================================================ checkpoints
@dataclass(frozen=True)
class Checkpoint:
    """The model side of a checkpoint: the run's saved config, ``params``, the other variable
    collections (``model_state``, e.g. ``batch_stats``), and the step."""

    config: ml_collections.ConfigDict
    params: dict
    model_state: dict
    step: int


def _read_only_manager(directory: Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
    handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
                "config": ocp.JsonCheckpointHandler()}
    absl_logger = logging.getLogger("absl")   # Orbax warns that read_only changes its options: it is the point
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)
    finally:
        absl_logger.setLevel(level)


def _resolve(manager: ocp.CheckpointManager, directory: Path, step, best_metric: str, best_mode: str) -> int:
    steps = sorted(manager.all_steps())
    if not steps:
        raise InputError(f"{directory}: no checkpoint to restore")
    if step in (None, "latest"):
        return steps[-1]
    if step == "best":
        if not best_metric:
            return steps[-1]
        sign = 1.0 if best_mode == "min" else -1.0
        scored = []
        for s in steps:
            value = (manager.metrics(s) or {}).get(best_metric)
            if value is not None and np.isfinite(value):
                scored.append((sign * float(value), s))
        return min(scored)[1] if scored else steps[-1]
    if isinstance(step, str) and step.isdigit():
        step = int(step)
    if step not in steps:
        raise InputError(f"{directory}: no checkpoint of step {step} (available: {', '.join(map(str, steps))}); "
                         "or ask for 'latest' or 'best'")
    return int(step)


def read_checkpoint(workdir, step: int | str | None = "latest") -> Checkpoint:
    """The checkpoint ``step`` (a number, ``"latest"`` or ``"best"`` by the run's
    ``train.best_metric``) of the run in ``workdir``, read without writing anything."""
    workdir = Path(workdir)
    config = config_lib.load_saved_config(workdir)
    directory = (workdir / "checkpoints").absolute()
    if not directory.is_dir():
        raise InputError(f"{workdir}: no checkpoints/ folder; is it the workdir of a training run?")
    manager = _read_only_manager(directory)
    try:
        resolved = _resolve(manager, directory, step, str(config.train.get("best_metric", "") or ""),
                            str(config.train.get("best_mode", "min")))
        # onto this process's first device, whatever devices wrote it (a 4-device run opens on 1)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                                        manager.item_metadata(resolved)["state"].tree)
        restored = manager.restore(resolved, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    finally:
        manager.close()
    state = restored["state"]["state"]
    return Checkpoint(config=config, params=state["params"], model_state=dict(state.get("model_state") or {}),
                      step=resolved)


# ============================================================================ inference data
def inference_path(workdir, step: int) -> Path:
    return Path(workdir) / INFERENCE_DIR / f"step_{int(step)}.npz"


def write_inference_data(workdir, step: int, data: Mapping) -> Path:
    """Write ``data`` (names -> numpy arrays, or JSON values) for checkpoint ``step``, atomically."""
    arrays, plain = {}, {}
    for name, value in data.items():
        if isinstance(value, (np.ndarray, jax.Array)):
            arrays[name] = np.asarray(value)
        else:
            plain[name] = value
    if _JSON_KEY in arrays:
        raise ValueError(f"inference data may not use the name {_JSON_KEY!r}")
    arrays[_JSON_KEY] = np.array(json.dumps(config_lib.config_to_dict(plain), sort_keys=True, default=_json_value))
    path = inference_path(workdir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path


def _json_value(value):
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"inference data: {type(value).__name__} is neither an array nor a JSON value")


def read_inference_data(workdir, step: int) -> dict | None:
    """The inference data of checkpoint ``step`` (arrays, and the JSON values), or None when the run
    has none for it."""
    path = inference_path(workdir, step)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as stored:
        out = {name: stored[name] for name in stored.files if name != _JSON_KEY}
        out.update(json.loads(str(stored[_JSON_KEY])))
    return out


def prune_inference_data(workdir, kept_steps) -> None:
    """Remove the inference data of checkpoints that are no longer kept."""
    folder = Path(workdir) / INFERENCE_DIR
    keep = {f"step_{int(s)}.npz" for s in kept_steps}
    for path in folder.glob("step_*.npz") if folder.is_dir() else ():
        if path.name not in keep:
            path.unlink(missing_ok=True)


# ============================================================================ the run
class Run:
    """A trained run of one task, opened by ``seisjax.load_run``: ``config``, ``model``,
    ``variables`` (``params`` and the other collections), ``step``, ``workdir`` and ``inference``
    (the run's inference data). Families subclass it with their operations on numpy arrays.

    ``needs``: the inference-data names the family's operations read; a run without them is an
    error that names them and the command that writes them."""

    task_name: str = ""
    models: Mapping[str, type] = {}
    needs: tuple[str, ...] = ("model_kwargs",)

    def __init__(self, workdir, checkpoint: Checkpoint, inference: dict | None):
        self.workdir = Path(workdir)
        self.config = checkpoint.config
        self.step = checkpoint.step
        self.params, self.model_state = checkpoint.params, checkpoint.model_state
        self.variables = {"params": self.params, **self.model_state}
        missing = [name for name in self.needs if inference is None or name not in inference]
        if missing:
            where = inference_path(self.workdir, self.step)
            raise InputError(
                f"{self.workdir}: checkpoint {self.step} has no inference data "
                f"({', '.join(missing)} missing from {where}), which opening a run needs: runs trained before "
                f"seisjax wrote it lack it. `python -m seisjax export --workdir {self.workdir}` writes it "
                "from the run's training data")
        self.inference = inference
        name = str(self.config.model.name)
        if name not in self.models:
            raise InputError(f"model.name = {name!r}: a {self.task_name} run has the models "
                             f"{', '.join(sorted(self.models))}")
        self.model = self.models[name](**tupled(self.inference["model_kwargs"]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.workdir)!r}, step={self.step}, model={self.config.model.name!r})"

    @staticmethod
    def batched(fn: Callable, arrays: Mapping[str, np.ndarray], *, batch_size: int = 256) -> dict[str, np.ndarray]:
        """``fn(batch) -> {name: array}`` (a jitted function of a dict of arrays with the examples on
        the first axis) over ``arrays`` in batches of ``batch_size``, the last one padded to the same
        size (one compilation for any number of examples), as numpy arrays with the padding cut."""
        n = len(next(iter(arrays.values())))
        if n == 0:
            raise InputError("no examples to process")
        size = min(int(batch_size), n)
        parts: dict[str, list] = {}
        for start in range(0, n, size):
            chunk = {k: np.asarray(v[start:start + size]) for k, v in arrays.items()}
            rows = len(next(iter(chunk.values())))
            if rows < size:
                chunk = {k: np.concatenate([v, np.repeat(v[-1:], size - rows, axis=0)]) for k, v in chunk.items()}
            for name, value in jax.device_get(fn(chunk)).items():
                parts.setdefault(name, []).append(np.asarray(value)[:rows])
        return {name: np.concatenate(values) for name, values in parts.items()}

