"""Checkpoints through Orbax (the only module of seisjax that imports it).

A checkpoint of step N holds four items:

- ``state``: the train state pytree (params, model state, optimizer state, step) and the run's RNG key;
- ``data``: the input iterator's position (its ``state()`` dict), so a resumed run sees the batches
  an uninterrupted one would have seen;
- ``config``: the resolved config of the run;
- the metrics it was saved with (Orbax keeps them to rank the best checkpoint).

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a save that
is killed half-way leaves at most a ``*.orbax-checkpoint-tmp-*`` directory, which is never taken for
a checkpoint (and is removed when the next run opens the directory). Restoring goes into an
*abstract* state (shapes, dtypes and shardings of the current run), so a checkpoint written on one
device count restores on another.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from seisjax.errors import InputError

__all__ = ["Checkpointer", "abstract_like", "tree_mismatches"]


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def abstract_like(tree, sharding=None):
    """Shapes, dtypes and shardings of ``tree`` (arrays or ShapeDtypeStructs), the target of a
    restore. With ``sharding`` given every leaf gets it (e.g. replicated over the current mesh)."""
    def leaf(x):
        return jax.ShapeDtypeStruct(np.shape(x), x.dtype,
                                    sharding=sharding if sharding is not None else getattr(x, "sharding", None))

    return jax.tree_util.tree_map(leaf, tree)


def _shapes_by_path(tree) -> dict[str, tuple]:
    """``{"state/params/conv0/kernel": shape, ...}`` of a pytree of arrays, ShapeDtypeStructs or
    Orbax's stored metadata (whose dicts and dataclasses name their entries alike)."""
    def name(entry):
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                return str(getattr(entry, attr))
        return str(entry)

    return {"/".join(name(e) for e in path): tuple(leaf.shape) if hasattr(leaf, "shape") else np.shape(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def tree_mismatches(expected, stored) -> list[str]:
    """How a stored checkpoint's tree differs from the tree a restore expects: entries missing from
    either side and entries whose shapes differ, one line each (empty when they match)."""
    want, have = _shapes_by_path(expected), _shapes_by_path(stored)
    lines = [f"{path}: stored {have[path]}, expected {shape}" for path, shape in want.items()
             if path in have and have[path] != shape]
    lines += [f"{path}: not in the checkpoint" for path in want if path not in have]
    lines += [f"{path}: in the checkpoint only" for path in have if path not in want]
    return lines


class Checkpointer:
    """Periodic and final saves; keeps the last ``keep_last`` and the best by ``best_metric``.

    ``best_mode`` is ``"min"`` (e.g. a loss) or ``"max"``. A checkpoint saved without that metric
    ranks last. Saves are asynchronous when ``async_save`` (the arrays are copied first, written in
    the background); :meth:`wait` blocks until the last one is on disk.
    """

    def __init__(self, directory: str | os.PathLike, *, keep_last: int = 3, best_metric: str | None = None,
                 best_mode: str = "min", async_save: bool = True):
        if best_mode not in ("min", "max"):
            raise InputError(f"checkpoint best_mode {best_mode!r}: expected 'min' or 'max'")
        self.directory = Path(directory).absolute()
        self.best_metric = best_metric or None
        self.best_mode = best_mode
        policies = [pp.LatestN(n=max(1, int(keep_last)))]
        best_fn = None
        if self.best_metric:
            worst = math.inf if best_mode == "min" else -math.inf

            def best_fn(metrics, _name=self.best_metric, _worst=worst):
                value = (metrics or {}).get(_name)
                return _worst if value is None or not math.isfinite(value) else float(value)

            # BestN sorts ascending and keeps the tail: reverse for "lower is better".
            policies.append(pp.BestN(get_metric_fn=best_fn, reverse=best_mode == "min", n=1))
        options = ocp.CheckpointManagerOptions(
            best_fn=best_fn, best_mode=best_mode,
            preservation_policy=pp.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        # handlers named up front, so that a checkpoint's stored shapes can be read before restoring
        handlers = {"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler(),
                    "config": ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    # ------------------------------------------------------------------ queries
    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The best checkpoint's step (the latest when no best_metric is tracked)."""
        return self._manager.best_step()

    # ------------------------------------------------------------------ save / restore
    def save(self, step: int, state, *, data_state: dict | None, config: dict,
             metrics: dict | None = None) -> bool:
        """Save ``state`` (any pytree of arrays) as step ``step``; False if that step exists."""
        if step in self._manager.all_steps():
            return False
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(_jsonable(data_state or {})),
                                  config=ocp.args.JsonSave(_jsonable(config)))
        return bool(self._manager.save(int(step), args=args, metrics=metrics, force=True))

    def resolve_step(self, step: int | str | None = None) -> int:
        """The checkpoint step that ``step`` names: itself if kept, the latest for None, the best by
        ``best_metric`` for ``"best"``; InputError naming the kept steps otherwise."""
        steps = self.all_steps()
        if step in (None, "best"):
            step = self.best_step() if step == "best" else self.latest_step()
            if step is None:
                raise InputError(f"{self.directory}: no checkpoint to restore")
        elif step not in steps:
            raise InputError(f"{self.directory}: no checkpoint of step {step} "
                             f"(available: {', '.join(map(str, steps)) or 'none'})")
        return int(step)

    def restore(self, abstract_state, step: int | str | None = None) -> tuple[object, dict, dict, int]:
        """Restore ``(state, data_state, config, step)``; ``state`` takes the shapes, dtypes and
        shardings of ``abstract_state``. ``step`` defaults to the latest checkpoint; ``"best"`` is the
        best by ``best_metric`` among those kept (the latest when none is tracked)."""
        step = self.resolve_step(step)
        mismatches = tree_mismatches(abstract_state, self._manager.item_metadata(int(step))["state"])
        if mismatches:
            more = f" and {len(mismatches) - 3} more" if len(mismatches) > 3 else ""
            raise InputError(
                f"{self.directory}: checkpoint {step} does not fit the state built from the run's config "
                f"({'; '.join(mismatches[:3])}{more}): the code changed since this run was trained; "
                "retrain it, or restore it with the seisjax version that wrote it")
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                  data=ocp.args.JsonRestore(), config=ocp.args.JsonRestore())
        restored = self._manager.restore(int(step), args=args)
        return restored["state"], dict(restored["data"] or {}), dict(restored["config"] or {}), int(step)

    def wait(self):
        """Block until pending (asynchronous) saves are written."""
        self._manager.wait_until_finished()

    def close(self):
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
