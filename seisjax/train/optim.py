"""Learning-rate schedules and optimizers from config data.

Config (``config.optim``)::

    optimizer = "adam"          # "adam" | "adamw" | "sgd"
    schedule = "stages"         # "stages" | "cosine" | "constant"
    stages = ((50, 1e-3, 0.99), (50, 1e-4, 0.99), (100, 1e-5, 0.99))  # (epochs, lr, decay/epoch)
    lr = 1e-3                   # peak lr of "cosine" and "constant"
    warmup_steps = 0            # or warmup_epochs; multiplies the schedule by step/warmup at start
    cosine_final_fraction = 0.0 # cosine ends at lr * this
    clip_norm = 0.0             # global-norm gradient clipping (0: off)
    weight_decay = 0.0          # decoupled (adamw) or L2 added to the gradient (adam, sgd); kernels only
    frozen = ("encoder/*",)     # parameter-path patterns (fnmatch) whose updates are zero

Durations in a config are written once, as ``<name>_steps`` or ``<name>_epochs``; :func:`to_steps`
is the one place that converts epochs to steps.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seisjax.errors import InputError

__all__ = ["to_steps", "stage_boundaries", "make_schedule", "make_optimizer", "param_paths",
           "frozen_mask", "total_train_steps"]


# ----------------------------------------------------------------------------- durations
def _get(section, key):
    return section.get(key) if hasattr(section, "get") else getattr(section, key, None)


def to_steps(section, name: str, steps_per_epoch: int, *, default: int | None = None,
             where: str = "config") -> int | None:
    """``section.<name>_steps`` or ``section.<name>_epochs * steps_per_epoch`` (rounded).

    Exactly one of the two may be set (not None); neither gives ``default``."""
    steps, epochs = _get(section, f"{name}_steps"), _get(section, f"{name}_epochs")
    if steps is not None and epochs is not None:
        raise InputError(f"{where}: set {name}_steps or {name}_epochs, not both "
                         f"({name}_steps={steps}, {name}_epochs={epochs})")
    if steps is not None:
        return int(steps)
    if epochs is not None:
        return int(round(float(epochs) * steps_per_epoch))
    return default


def _stages(optim_cfg) -> list[tuple[float, float, float]]:
    stages = _get(optim_cfg, "stages") or ()
    out = []
    for i, stage in enumerate(stages):
        if len(stage) != 3:
            raise InputError(f"optim.stages[{i}] = {stage!r}: expected (epochs, lr, decay_per_epoch)")
        epochs, lr, decay = (float(v) for v in stage)
        if epochs <= 0 or lr < 0 or not 0 < decay <= 1:
            raise InputError(f"optim.stages[{i}] = {stage!r}: need epochs > 0, lr >= 0, 0 < decay <= 1")
        out.append((epochs, lr, decay))
    if not out:
        raise InputError("optim.schedule = 'stages' but optim.stages is empty")
    return out


def stage_boundaries(optim_cfg, steps_per_epoch: int) -> list[int]:
    """Cumulative step at which each stage ends (the last one is the stages' total length)."""
    lengths = [max(1, int(round(e * steps_per_epoch))) for e, _, _ in _stages(optim_cfg)]
    return list(np.cumsum(lengths).astype(int))


def total_train_steps(config, steps_per_epoch: int) -> int:
    """Training length from ``train.num_steps`` / ``train.num_epochs``; for a staged schedule with
    neither set, the stages' total."""
    total = to_steps(config.train, "num", steps_per_epoch, where="train")
    if total is None:
        if config.optim.schedule != "stages":
            raise InputError("train: set num_steps or num_epochs (only a staged schedule implies a length)")
        total = stage_boundaries(config.optim, steps_per_epoch)[-1]
    if total <= 0:
        raise InputError(f"train: the run has {total} steps; need at least 1")
    return total


# ----------------------------------------------------------------------------- schedules
def make_schedule(optim_cfg, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """The learning rate as a function of the step, from config data (see the module docstring)."""
    if steps_per_epoch <= 0:
        raise InputError(f"steps_per_epoch = {steps_per_epoch}: the training data gives no full batch")
    kind = optim_cfg.schedule
    if kind == "stages":
        stages = _stages(optim_cfg)
        pieces = [optax.exponential_decay(init_value=lr, transition_steps=steps_per_epoch,
                                          decay_rate=decay, staircase=True)
                  for _, lr, decay in stages]
        base = optax.join_schedules(pieces, boundaries=stage_boundaries(optim_cfg, steps_per_epoch)[:-1])
    elif kind == "cosine":
        warm = to_steps(optim_cfg, "warmup", steps_per_epoch, default=0, where="optim")
        base_cos = optax.cosine_decay_schedule(
            init_value=float(optim_cfg.lr), decay_steps=max(1, total_steps - warm),
            alpha=float(_get(optim_cfg, "cosine_final_fraction") or 0.0))
        # The cosine starts after warmup so that it still reaches its end value at total_steps.
        base = optax.join_schedules([optax.constant_schedule(float(optim_cfg.lr)), base_cos], [warm])
    elif kind == "constant":
        base = optax.constant_schedule(float(optim_cfg.lr))
    else:
        raise InputError(f"optim.schedule = {kind!r}: expected 'stages', 'cosine' or 'constant'")

    warmup = to_steps(optim_cfg, "warmup", steps_per_epoch, default=0, where="optim")
    if not warmup:
        return base

    def schedule(step):
        ramp = jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / warmup)
        return base(step) * ramp

    return schedule


# ----------------------------------------------------------------------------- parameter groups
def _key_name(entry) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def param_paths(params) -> list[str]:
    """``"encoder/Conv_0/kernel"``-style path of every leaf, in tree-flatten order."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return ["/".join(_key_name(k) for k in path) for path, _ in leaves]


def frozen_mask(params, patterns: Sequence[str]):
    """A tree of bools: True where a leaf's path matches one of the fnmatch ``patterns``.

    A pattern that matches no parameter is an InputError (a typo would otherwise train everything)."""
    patterns = tuple(patterns or ())
    paths = param_paths(params)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(p, pattern) for p in paths):
            raise InputError(f"optim.frozen pattern {pattern!r} matches no parameter "
                             f"(parameters: {', '.join(paths[:12])}{' ...' if len(paths) > 12 else ''})")
    flags = [any(fnmatch.fnmatchcase(p, pat) for pat in patterns) for p in paths]
    treedef = jax.tree_util.tree_structure(params)
    return jax.tree_util.tree_unflatten(treedef, flags)


def _kernel_mask(params):
    """Weight decay on matrices and convolution kernels only, not on biases or scales."""
    return jax.tree_util.tree_map(lambda p: jnp.ndim(p) >= 2, params)


# ----------------------------------------------------------------------------- optimizer
def make_optimizer(optim_cfg, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Clipping -> optimizer with the schedule -> zero updates for frozen parameter groups."""
    name = _get(optim_cfg, "optimizer") or "adam"
    b1, b2 = float(_get(optim_cfg, "b1") or 0.9), float(_get(optim_cfg, "b2") or 0.999)
    eps = float(_get(optim_cfg, "eps") or 1e-8)
    weight_decay = float(_get(optim_cfg, "weight_decay") or 0.0)
    clip_norm = float(_get(optim_cfg, "clip_norm") or 0.0)

    parts = []
    if clip_norm > 0:
        parts.append(optax.clip_by_global_norm(clip_norm))
    if name == "adamw":
        parts.append(optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                                 mask=_kernel_mask))
    elif name in ("adam", "sgd"):
        if weight_decay > 0:
            parts.append(optax.add_decayed_weights(weight_decay, mask=_kernel_mask))
        if name == "adam":
            parts.append(optax.adam(schedule, b1=b1, b2=b2, eps=eps))
        else:
            momentum = _get(optim_cfg, "momentum")
            parts.append(optax.sgd(schedule, momentum=float(momentum) if momentum else None))
    else:
        raise InputError(f"optim.optimizer = {name!r}: expected 'adam', 'adamw' or 'sgd'")
    tx = optax.chain(*parts)

    patterns = tuple(_get(optim_cfg, "frozen") or ())
    if not patterns:
        return tx

    def labels(params):
        mask = frozen_mask(params, patterns)
        return jax.tree_util.tree_map(lambda frozen: "frozen" if frozen else "trainable", mask)

    # set_to_zero keeps no state for the frozen group, so freezing also saves optimizer memory.
    return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, labels)
