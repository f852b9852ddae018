"""The engine: ``train_and_evaluate(task_cls, config, workdir)`` and ``evaluate(task_cls, workdir, ...)``.

The engine knows tasks only through the :class:`~seisjax.train.task.Task` contract: the caller
passes the task class (``seisjax.families`` finds it from ``config.task.name``), so that the
engine imports no model family.

Engine config keys (task-specific ones live in ``config.data``, ``config.model``, ``config.task``)::

    seed, batch_size (global)
    task.name, model.name                     # the task (seisjax.families) and its model
    optim.*                                   # see seisjax.train.optim
    train.num_steps | train.num_epochs        # run length (a staged schedule implies one)
    train.log_every_steps                     # metrics.jsonl / TensorBoard cadence
    train.eval_every_steps | _epochs          # evaluation during training (None: off)
    train.checkpoint_every_steps | _epochs    # periodic saves (the final one is always made)
    train.keep_last, train.best_metric, train.best_mode, train.async_checkpointing
    train.figure_every_steps                  # loss figure refresh
    eval.batch_size
    distributed.*                             # see seisjax.train.parallel
    debug.nan_at_step                         # make the loss NaN at that step (tests the guard)
    debug.step_delay_s                        # host sleep per step (tests interrupting a run)

A run resumes from the latest checkpoint of ``<workdir>/checkpoints`` when there is one, with the
same config (a changed config is an error that names the keys): state, RNG and the data position
come back, so the resumed run ends bit for bit where an uninterrupted one would on CPU.
"""

from __future__ import annotations

import collections
import importlib.metadata
import json
import signal
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from seisjax import config as config_lib
from seisjax.errors import InputError
from seisjax.train import optim, parallel
from seisjax.train.checkpoint import Checkpointer, abstract_like
from seisjax.train.logging import MetricLogger, check_finite
from seisjax.train.restore import inference_path, prune_inference_data, read_checkpoint, write_inference_data
from seisjax.train.state import TrainState

__all__ = ["make_train_step", "make_eval_step", "train_and_evaluate", "evaluate", "restore_trained",
           "versions"]

_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
VERSIONED = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


# ============================================================================ the pure steps
def make_train_step(task, tx: optax.GradientTransformation, schedule, *, nan_at_step: int = -1):
    """``train_step(state, batch, rng) -> (state, metrics)``: one optimizer update.

    ``rng`` is the run's key; the step folds its own number into it, so every step draws fresh,
    reproducible randomness. ``metrics`` holds ``loss``, every loss term, ``lr``, ``grad_norm``,
    ``param_norm`` and ``update_norm`` (scalars of the global batch)."""

    def train_step(state: TrainState, batch, rng):
        step_rng = jax.random.fold_in(rng, state.step)

        def loss_fn(params):
            loss, (terms, new_model_state) = task.loss(params, state.model_state, batch, step_rng, train=True)
            if nan_at_step >= 0:  # debugging aid: the update numbered nan_at_step gets a NaN loss
                loss = loss * jnp.where(state.step + 1 == nan_at_step, jnp.nan, 1.0)
            return loss, (terms, new_model_state)

        (loss, (terms, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, **terms, "lr": jnp.asarray(schedule(state.step), jnp.float32),
                   "grad_norm": optax.tree.norm(grads), "param_norm": optax.tree.norm(params),
                   "update_norm": optax.tree.norm(updates)}
        new_state = state.replace(step=state.step + 1, params=params, model_state=new_model_state,
                                  opt_state=opt_state)
        return new_state, metrics

    return train_step


def make_eval_step(task):
    """``eval_step(state, batch, rng) -> {name: (sum, count)}`` over the valid rows of ``batch``."""

    def eval_step(state: TrainState, batch, rng):
        return task.eval_metrics(state.params, state.model_state, batch, rng)

    return eval_step


# ============================================================================ helpers
def versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _pad(batch: dict, rows: int) -> dict:
    """Pad a (possibly short or empty) host batch to ``rows`` and add ``_valid`` weights."""
    n = len(next(iter(batch.values())))
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        if n < rows:
            v = np.concatenate([v, np.zeros((rows - n,) + v.shape[1:], v.dtype)])
        out[k] = v
    out["_valid"] = (np.arange(rows) < n).astype(np.float32)
    return out


class _Setup:
    """What training and evaluation build the same way: task, mesh, optimizer, shardings, steps."""

    def __init__(self, task_cls, config, workdir: Path, *, data_path=None, train_iter: bool = True):
        parallel.initialize_distributed(config.get("distributed"))
        self.config = config
        self.process_index, self.process_count = jax.process_index(), jax.process_count()
        self.task = task_cls(config, workdir=workdir, data_path=data_path)
        self.mesh = parallel.make_mesh()
        self.repl = parallel.replicated(self.mesh)
        self.data_sharding = parallel.batch_sharded(self.mesh)
        parallel.local_batch_size(int(config.batch_size), self.mesh)  # checks divisibility
        self.eval_local_rows = parallel.local_batch_size(int(config.eval.batch_size), self.mesh)
        self.train_iter = None
        if train_iter:
            self.train_iter = self.task.train_batches(process_index=self.process_index,
                                                      process_count=self.process_count)
            self.steps_per_epoch = self.train_iter.steps_per_epoch
            self.total_steps = optim.total_train_steps(config, self.steps_per_epoch)
            self.schedule = optim.make_schedule(config.optim, self.steps_per_epoch, self.total_steps)
        else:  # evaluation: the schedule's values do not matter, only the optimizer state's structure
            self.schedule = lambda step: jnp.zeros((), jnp.float32)
        self.tx = optim.make_optimizer(config.optim, self.schedule)
        self.eval_rng = jax.random.fold_in(jax.random.PRNGKey(int(config.seed)), 0x5E15)

    def init_fn(self, batch):
        """(state, rng) from the seed; jitted with replicated outputs so every host agrees."""
        init_rng, train_rng = jax.random.split(jax.random.PRNGKey(int(self.config.seed)))
        variables = self.task.init_variables(init_rng, batch)
        return {"state": TrainState.create(variables, self.tx), "rng": train_rng}

    def abstract(self, example_global_batch):
        shapes = jax.eval_shape(self.init_fn, example_global_batch)
        return abstract_like(shapes, self.repl)

    def initial(self, example_global_batch):
        shapes = jax.eval_shape(self.init_fn, example_global_batch)
        out_shardings = jax.tree_util.tree_map(lambda _: self.repl, shapes)
        init = jax.jit(self.init_fn, out_shardings=out_shardings).lower(example_global_batch)
        # Initialisation runs once: compile it without XLA's optimisations, which on CPU take
        # seconds per random initialiser (threefry) and buy nothing here.
        return init.compile(compiler_options=_FAST_COMPILE)(example_global_batch)

    def shard(self, batch: dict) -> dict:
        return parallel.shard_batch(batch, self.mesh)

    def jit_eval_step(self, abstract_state):
        state_sh = jax.tree_util.tree_map(lambda _: self.repl, abstract_state)
        return jax.jit(make_eval_step(self.task), in_shardings=(state_sh, self.data_sharding, self.repl),
                       out_shardings=self.repl)

    def run_eval(self, eval_step, state) -> tuple[dict, dict, dict | None]:
        """Means, ``{name: [sum, count]}`` and the first (host) batch, over the whole eval data."""
        totals: dict[str, list[float]] = {}
        first = None
        batches = self.task.eval_batches(process_index=self.process_index, process_count=self.process_count)
        try:
            for batch in batches:
                padded = _pad(batch, self.eval_local_rows)
                if first is None:
                    first = padded
                pair_metrics = parallel.to_host(eval_step(state, self.shard(padded), self.eval_rng))
                for name, (total, count) in pair_metrics.items():
                    acc = totals.setdefault(name, [0.0, 0.0])
                    acc[0] += float(total)
                    acc[1] += float(count)
        finally:
            if hasattr(batches, "close"):
                batches.close()
        # a metric that no example counted (e.g. an empty length bucket) has no mean: kept in totals only
        means = {k: s / c for k, (s, c) in totals.items() if c}
        means.update(self.task.summarise_eval(means))
        return means, totals, first


class _Interrupts:
    """SIGINT/SIGTERM set a flag that the loop checks after each step (so the state, the data
    position and the checkpoint stay consistent); a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.flag = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.flag = signal.Signals(signum).name
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _check_saved_config(config, workdir: Path):
    path = workdir / config_lib.CONFIG_FILE
    if not path.exists():
        return
    saved = config_lib.load_saved_config(workdir)
    changed = config_lib.diff_configs(saved, config)
    if changed:
        raise InputError(f"{workdir} holds a run with another config (differs in: {', '.join(changed)}); "
                         f"use a new --workdir, or delete {path} to continue this run with the new config")


# ============================================================================ training
def train_and_evaluate(task_cls, config, workdir) -> dict:
    """Train ``config`` (a task of class ``task_cls``) in ``workdir`` (resuming from its latest checkpoint), evaluating and
    checkpointing along the way. Returns ``{"step", "train", "eval", "interrupted"}``.

    Raises :class:`~seisjax.train.logging.NonFiniteError` when a loss term or the gradient norm
    turns NaN/inf (the last good checkpoint is kept)."""
    workdir = Path(workdir)
    setup = _Setup(task_cls, config, workdir)
    task, train_iter, total = setup.task, setup.train_iter, setup.total_steps
    cfg_train = config.train
    spe = setup.steps_per_epoch
    is_chief = setup.process_index == 0
    if is_chief:
        _check_saved_config(config, workdir)
        config_lib.save_config(config, workdir)

    log_every = max(1, int(cfg_train.log_every_steps))
    eval_every = optim.to_steps(cfg_train, "eval_every", spe, where="train")
    ckpt_every = optim.to_steps(cfg_train, "checkpoint_every", spe, default=total, where="train")
    ckpt = _checkpointer(workdir, cfg_train)
    config_dict = config_lib.config_to_dict(config)

    # ------------------------------------------------------------------ state: restore or init
    start_position = train_iter.state()
    example = setup.shard(next(train_iter))
    train_iter.restore(start_position)
    abstract = setup.abstract(example)
    if ckpt.latest_step() is not None:
        tree, data_state, _, start_step = ckpt.restore(abstract)
        train_iter.restore(data_state)
    else:
        tree, start_step = setup.initial(example), 0
        # a data-dependent start (e.g. DEC: a pretrained run + k-means); the default keeps the state
        tree["state"] = jax.device_put(task.initial_state(parallel.to_host(tree["state"])), setup.repl)
    state, rng = tree["state"], tree["rng"]
    if is_chief and start_step and not inference_path(workdir, start_step).is_file():
        # a run stopped between a checkpoint and its inference data, or trained before it existed
        write_inference_data(workdir, start_step, task.inference_data(parallel.to_host(state)))
    if start_step >= total:
        ckpt.close()
        train_iter.close()
        task.close()
        if is_chief:
            print(f"{workdir}: already trained to step {start_step} of {total}; nothing to do", flush=True)
        return {"step": start_step, "train": None, "eval": None, "interrupted": None, "compile_time_s": 0.0}

    state_sh = jax.tree_util.tree_map(lambda _: setup.repl, abstract["state"])
    train_step = jax.jit(make_train_step(task, setup.tx, setup.schedule,
                                         nan_at_step=int(config.debug.nan_at_step)),
                         in_shardings=(state_sh, setup.data_sharding, setup.repl),
                         out_shardings=(state_sh, setup.repl), donate_argnums=(0,))
    eval_step = setup.jit_eval_step(abstract["state"])

    logger = MetricLogger(workdir, total_steps=total, start_step=start_step, enabled=is_chief,
                          figure_every_steps=int(cfg_train.figure_every_steps))
    t0 = time.perf_counter()
    compiled = train_step.lower(state, example, rng).compile()
    compile_s = time.perf_counter() - t0
    logger.write(start_step, "compile", {}, compile_time_s=round(compile_s, 4))
    logger.message(f"train step compiled in {compile_s:.2f} s; {total} steps of {config.batch_size} "
                   f"examples on {setup.mesh.devices.size} device(s), {spe} steps per epoch"
                   + (f"; resumed from step {start_step}" if start_step else ""))

    guarded = None  # loss + terms + grad_norm: the keys the NaN guard checks
    pending: collections.deque = collections.deque()
    window = {"t": time.perf_counter(), "step": start_step}
    last = {"train": None, "eval": None}
    delay = float(config.debug.step_delay_s)

    def drain(keep: int):
        """Fetch metrics of finished steps (keeping ``keep`` in flight), check them, log them."""
        nonlocal guarded
        while len(pending) > keep:
            step_n, metrics = pending.popleft()
            host = {k: float(v) for k, v in parallel.to_host(metrics).items()}
            if guarded is None:
                terms = sorted(k for k in host if k not in ("loss", "lr", "grad_norm", "param_norm", "update_norm"))
                guarded = ["loss", *terms, "grad_norm"]  # the message names loss terms first
            check_finite(host, step_n, keys=guarded)
            last["train"] = host
            logger.progress(step_n, epoch=step_n // spe, loss=host["loss"])
            if step_n % log_every == 0 or step_n == total:
                now = time.perf_counter()
                rate = (step_n - window["step"]) * int(config.batch_size) / max(now - window["t"], 1e-9)
                window.update(t=now, step=step_n)
                logger.write(step_n, "train", host, epoch=step_n // spe, examples_per_s=round(rate, 2))

    def do_eval(step_n: int):
        means, _, _ = setup.run_eval(eval_step, state)
        last["eval"] = means
        logger.write(step_n, "eval", means)
        logger.message(f"step {step_n}: " + ", ".join(f"eval/{k}={v:.5g}" for k, v in sorted(means.items())))
        window.update(t=time.perf_counter(), step=step_n)  # throughput counts training only

    def save(step_n: int):
        drain(0)  # never save a state whose metrics were not checked
        metrics = {f"train/{k}": v for k, v in (last["train"] or {}).items()}
        if (cfg_train.best_metric or "").startswith("eval/") and last["eval"] is not None:
            metrics.update({f"eval/{k}": v for k, v in last["eval"].items()})
        ckpt.save(step_n, {"state": state, "rng": rng}, data_state=train_iter.state(), config=config_dict, metrics=metrics)
        if is_chief:   # what load_run needs beside the checkpoint (seisjax.train.restore)
            write_inference_data(workdir, step_n, task.inference_data(parallel.to_host(state)))
            prune_inference_data(workdir, {*ckpt.all_steps(), step_n})
        window.update(t=time.perf_counter(), step=step_n)

    interrupted = None
    step_n = start_step
    try:
        with _Interrupts() as interrupts:
            while step_n < total:
                stop = task.before_step(state, step_n)
                if stop:  # the task is done early (e.g. DEC's label-change tolerance): a reason
                    drain(0)
                    if ckpt.latest_step() != step_n:
                        save(step_n)
                    logger.message(f"step {step_n}: {stop}; stopping")
                    break
                batch = setup.shard(next(train_iter))
                state, metrics = compiled(state, batch, rng)
                step_n += 1
                pending.append((step_n, metrics))
                drain(1)  # the previous step's metrics: the device keeps one step ahead
                if delay:
                    time.sleep(delay)
                if eval_every and step_n % eval_every == 0:
                    drain(0)
                    do_eval(step_n)
                if step_n % ckpt_every == 0 or step_n == total:
                    save(step_n)
                if interrupts.flag:
                    interrupted = interrupts.flag
                    save(step_n)
                    logger.message(f"{interrupted} at step {step_n}: checkpoint saved; run the same "
                                   "command again to resume")
                    break
            drain(0)
            if eval_every and not interrupted and (last["eval"] is None or step_n % eval_every):
                do_eval(step_n)
    finally:
        if is_chief:   # the last saves may have retired older checkpoints
            ckpt.wait()
            prune_inference_data(workdir, ckpt.all_steps())
        ckpt.close()
        logger.close()
        train_iter.close()
        task.close()
    return {"step": step_n, "train": last["train"], "eval": last["eval"], "interrupted": interrupted,
            "compile_time_s": compile_s}


# ============================================================================ evaluation
def restore_trained(task_cls, workdir, *, step: int | str | None = None, data_path=None):
    """``(config, task, state, step)`` of a trained run of ``task_cls``, restored onto this process's devices
    (any device count). For analyses that use a trained model (extraction, clustering, embedding).
    ``step``: a checkpoint step, ``"best"`` (by the run's ``train.best_metric``) or None (the latest)."""
    workdir = Path(workdir)
    config = _saved_config(task_cls, workdir)
    with _checkpointer(workdir, config.train) as ckpt:
        step = ckpt.resolve_step(step)   # a wrong step fails before the task loads its data
        setup = _Setup(task_cls, config, workdir, data_path=data_path, train_iter=False)
        try:
            state = _restore_state(setup, ckpt, step)
        except BaseException:   # the caller gets no task to close
            setup.task.close()
            raise
    return config, setup.task, state, step


def export_inference_data(task_cls, workdir, *, steps=None, log=print) -> list[Path]:
    """Write the inference data (:mod:`seisjax.train.restore`) of the checkpoints ``steps`` (default:
    every one kept) of a run of ``task_cls``, from its training data: for runs trained before seisjax
    wrote it beside each checkpoint."""
    workdir = Path(workdir)
    config = _saved_config(task_cls, workdir)
    with _checkpointer(workdir, config.train) as ckpt:
        wanted = [ckpt.resolve_step(s) for s in steps] if steps else ckpt.all_steps()
        if not wanted:
            raise InputError(f"{workdir}: no checkpoint to export")
        setup = _Setup(task_cls, config, workdir, train_iter=False)
        written = []
        try:
            for step in wanted:
                state = parallel.to_host(_restore_state(setup, ckpt, step))
                written.append(write_inference_data(workdir, step, setup.task.inference_data(state)))
                log(f"export: wrote {written[-1]}")
        finally:
            setup.task.close()
    return written


def _saved_config(task_cls, workdir: Path):
    """The run's saved config, checked to be a run of ``task_cls``."""
    config = config_lib.load_saved_config(workdir)
    if str(config.task.name) != task_cls.name:
        raise InputError(f"{workdir} is a run of the {config.task.name!r} task, not {task_cls.name!r}")
    return config


def _example_eval_batch(setup: _Setup) -> dict:
    batches = setup.task.eval_batches(process_index=setup.process_index, process_count=setup.process_count)
    try:
        batch = next(iter(batches))
    except StopIteration:
        raise InputError("the evaluation data is empty") from None
    finally:
        if hasattr(batches, "close"):
            batches.close()
    return setup.shard(_pad(batch, setup.eval_local_rows))


def _checkpointer(workdir: Path, cfg_train) -> Checkpointer:
    """The run's checkpoints as its ``train`` config keeps and ranks them."""
    return Checkpointer(workdir / "checkpoints", keep_last=int(cfg_train.keep_last),
                        best_metric=cfg_train.best_metric or None, best_mode=cfg_train.best_mode,
                        async_save=bool(cfg_train.async_checkpointing))


def _restore_state(setup: _Setup, ckpt: Checkpointer, step: int):
    """The train state of checkpoint ``step``, in the structure and on the devices of ``setup``."""
    example = _example_eval_batch(setup)
    example.pop("_valid")
    return ckpt.restore(setup.abstract(example), step)[0]["state"]


def evaluate(task_cls, workdir, *, step: int | str | None = None, data_path=None, out_dir=None,
             figures: bool = True) -> Path:
    """Evaluate a checkpoint of a run of ``task_cls`` (the latest by default; ``"best"`` or a step)
    on the data of the run's config, or on the dataset at ``data_path``; writes
    ``<workdir>/eval/step_<N>/metrics.json`` and figures and returns the metrics file's path
    (``figures=False`` skips the figures). The model side is read from the checkpoint alone
    (:func:`seisjax.train.restore.read_checkpoint`); the task supplies the data.

    ``metrics.json`` is byte-identical for the same checkpoint, data and software: it holds the
    checkpoint step, the resolved config's hash, the data's fingerprint, library versions, and
    each metric's mean with the (sum, count) it comes from."""
    workdir = Path(workdir)
    _saved_config(task_cls, workdir)
    checkpoint = read_checkpoint(workdir, "latest" if step is None else step)   # fails before the data loads
    setup = _Setup(task_cls, checkpoint.config, workdir, data_path=data_path, train_iter=False)
    try:
        state = TrainState(step=np.asarray(checkpoint.step, np.int32), params=checkpoint.params,
                           model_state=checkpoint.model_state, opt_state=())
        state = jax.device_put(state, setup.repl)
        return _write_evaluation(setup, state, checkpoint.step, workdir, out_dir, figures)
    finally:
        setup.task.close()


def _write_evaluation(setup: _Setup, state, step: int, workdir: Path, out_dir, figures: bool) -> Path:
    """``evaluate``'s metrics.json, figures and task report for a restored ``state``."""
    config = setup.config
    eval_step = setup.jit_eval_step(abstract_like(state))
    means, totals, first = setup.run_eval(eval_step, state)
    out = Path(out_dir) if out_dir is not None else workdir / "eval" / f"step_{step}"
    record = {
        "checkpoint_step": int(step),
        "config_hash": config_lib.config_hash(config),
        "task": config.task.name,
        "model": config.model.name,
        "data": setup.task.data_info(),
        "metrics": {k: means[k] for k in sorted(means)},
        "sums": {k: totals[k] for k in sorted(totals)},
        "versions": versions(),
    }
    if setup.process_index == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        host_state = parallel.to_host(state)
        if figures and first is not None:
            setup.task.eval_figures(host_state.params, host_state.model_state, first, out)
        setup.task.eval_report(host_state.params, host_state.model_state, out)
    return out / "metrics.json"
