"""What a task is: the part of an experiment that the engine does not know.

The engine (``seisjax.train.loop``) owns the loop, the optimizer, devices, checkpoints, logging and
evaluation bookkeeping. A task supplies, for one kind of experiment:

- data: a resumable training iterator and a finite evaluation iterator (host side, numpy);
- the model (``config.model.name`` looked up in the task's :attr:`Task.models`) and its initialisation;
- two pure functions that the engine differentiates, jits and shards:
  :meth:`Task.loss` and :meth:`Task.eval_metrics`;
- host-side hooks with defaults that do nothing: :meth:`Task.initial_state` (a data-dependent
  start), :meth:`Task.before_step` (e.g. DEC's periodic whole-dataset target update),
  :meth:`Task.summarise_eval`, :meth:`Task.eval_figures` and :meth:`Task.eval_report`.

Conventions:

- Batches are dicts of arrays with the examples on the first axis. In evaluation the engine pads the
  last batch and adds ``batch["_valid"]`` (1.0 for real rows, 0.0 for padding).
- :meth:`Task.loss` returns ``(loss, (terms, new_model_state))``: ``terms`` maps names to scalar loss
  terms (logged; each is checked for NaN/inf), ``new_model_state`` the updated non-parameter
  collections (e.g. ``batch_stats``; ``{}`` when none).
- :meth:`Task.eval_metrics` returns ``{name: (sum, count)}`` over the valid rows, so that the engine
  can add them over batches, devices and hosts and divide once: the means are exact.
- Randomness comes in as ``rng``, fresh per step (the engine folds the step into the run's key);
  split it with :meth:`Task.rngs` into the named streams that Flax modules ask for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seisjax.errors import InputError

__all__ = ["Task", "pairs", "dataset_fingerprint", "array_fingerprint"]


def pairs(per_example: Mapping[str, jax.Array], weights: jax.Array) -> dict[str, tuple[jax.Array, jax.Array]]:
    """``{name: values (B,)}`` and weights ``(B,)`` -> ``{name: (sum of w*v, sum of w)}``."""
    weights = weights.astype(jnp.float32)
    count = jnp.sum(weights)
    return {name: (jnp.sum(values.astype(jnp.float32) * weights), count) for name, values in per_example.items()}


def tupled(value):
    """JSON lists (of a saved config) back to the tuples that Flax module fields take."""
    if isinstance(value, dict):
        return {k: tupled(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(tupled(v) for v in value)
    return value


def array_fingerprint(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over names, dtypes, shapes and bytes of in-memory arrays."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def dataset_fingerprint(dataset, *, n_sample: int = 8) -> str:
    """sha256 of a Dataset (or view): its metadata files' bytes, the rows it selects and the samples
    of ``n_sample`` evenly spaced traces. Deterministic, and independent of file times."""
    digest = hashlib.sha256()
    for meta in sorted(Path(dataset.path).glob("metadata*.csv")):
        digest.update(meta.name.encode())
        digest.update(meta.read_bytes())
    rows = np.asarray(dataset.metadata.index, dtype=np.int64)
    digest.update(rows.tobytes())
    if len(dataset):
        picks = np.unique(np.linspace(0, len(dataset) - 1, min(n_sample, len(dataset))).astype(int))
        for waveform in dataset.get_waveforms(list(picks), pad=False):
            waveform = np.ascontiguousarray(waveform)
            digest.update(f"{waveform.dtype.str}|{waveform.shape}|".encode())
            digest.update(waveform.tobytes())
    return digest.hexdigest()


class Task:
    """Base class of tasks; see the module docstring for the contract.

    ``config`` is the resolved experiment config; ``workdir`` the run's folder (tasks may keep data
    there); ``data_path`` replaces the config's data location (``eval --data DIR``).
    """

    #: the ``config.task.name`` that selects this task
    name: str = ""
    #: ``config.model.name`` -> Flax module class, the models this task trains
    models: Mapping[str, type] = {}
    #: named RNG streams that :meth:`rngs` makes for ``model.apply`` (e.g. ("dropout", "sample")).
    rng_streams: tuple[str, ...] = ()

    def __init__(self, config, *, workdir: str | Path | None = None, data_path: str | Path | None = None):
        self.config = config
        self.workdir = Path(workdir) if workdir is not None else None
        self.data_path = Path(data_path) if data_path is not None else None
        self._model = None

    # ------------------------------------------------------------------ data (host side)
    def train_batches(self, *, process_index: int, process_count: int):
        """A resumable iterator (``state()``, ``restore()``, ``steps_per_epoch``, ``epoch``) of this
        process's share of each global training batch of ``config.batch_size`` rows."""
        raise NotImplementedError

    def eval_batches(self, *, process_index: int, process_count: int) -> Iterable[dict]:
        """A finite iterator over the evaluation data (every example once, in a fixed order); batches
        may be short at the end (the engine pads them)."""
        raise NotImplementedError

    def data_info(self) -> dict:
        """What the evaluation ran on: ``{"fingerprint": sha256, "split": ..., ...}`` (JSON types)."""
        raise NotImplementedError

    def close(self):
        """Release files the task opened."""

    # ------------------------------------------------------------------ model
    def model_kwargs(self) -> dict:
        """Constructor arguments of the model: ``config.model`` without its ``name``."""
        return {k: tupled(v) for k, v in self.config.model.items() if k != "name"}

    def model_class(self) -> type:
        """The Flax module class that ``config.model.name`` names."""
        name = str(self.config.model.name)
        if name not in self.models:
            raise InputError(f"model.name = {name!r}: the {self.name} task trains "
                             f"{', '.join(sorted(self.models))}")
        return self.models[name]

    @property
    def model(self):
        if self._model is None:
            self._model = self.model_class()(**self.model_kwargs())
        return self._model

    def rngs(self, rng) -> dict:
        """The named RNG streams of one ``apply`` call, derived from ``rng``."""
        if not self.rng_streams:
            return {}
        keys = jax.random.split(rng, len(self.rng_streams))
        return dict(zip(self.rng_streams, keys, strict=True))

    def init_variables(self, rng, batch: Mapping[str, jax.Array]) -> dict:
        """The model's variables (``params`` and any other collection) for an example batch."""
        params_rng, other = jax.random.split(rng)
        return dict(self.model.init({"params": params_rng, **self.rngs(other)}, batch["x"]))

    # ------------------------------------------------------------------ pure functions (traced)
    def loss(self, params, model_state, batch, rng, *, train: bool):
        """``(loss, (terms, new_model_state))`` for one batch; see the module docstring."""
        raise NotImplementedError

    def eval_metrics(self, params, model_state, batch, rng) -> dict:
        """``{name: (sum, count)}`` over the rows with ``batch["_valid"] == 1``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ host-side hooks
    def initial_state(self, state):
        """The state training starts from, given the freshly initialised ``state`` (host arrays).
        Called once, when a run starts without a checkpoint; tasks with a data-dependent start
        (DEC: a pretrained run's parameters and k-means centres) replace parts of it."""
        return state

    def before_step(self, state, step: int) -> None:
        """Called on the host before training step ``step`` (also the first after a restore).
        Tasks with periodic whole-dataset work (DEC's target update) do it here, deriving what they
        need from ``state`` so that a resumed run recomputes it exactly."""

    def summarise_eval(self, means: dict) -> dict:
        """Metrics that need the whole evaluation (e.g. a best matching over its confusion
        fractions), from the means of :meth:`eval_metrics`; logged and saved beside them."""
        return {}

    def eval_figures(self, params, model_state, batch, out_dir: Path) -> list[Path]:
        """Figures of an evaluation from its first batch (host side; numpy arrays)."""
        return []

    def inference_data(self, state) -> dict:
        """What a trained run needs to treat new inputs as this task treats its training data,
        without the data (``seisjax.load_run``): names -> numpy arrays or JSON values, written beside
        every checkpoint (:mod:`seisjax.train.restore`) from its ``state`` (host arrays). The default
        holds the model's constructor arguments; families add their normalisation, scalers,
        vocabularies and the like."""
        return {"model_kwargs": self.model_kwargs()}

    def eval_report(self, params, model_state, out_dir: Path) -> dict | None:
        """Analyses of an evaluation that need more than per-batch sums (e.g. SymAE's STF scores
        against a synthetic truth, DEC's clustering report), written as their own files in
        ``out_dir`` beside ``metrics.json``, which stays reproducible byte for byte."""
        return None
