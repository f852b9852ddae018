"""Host-side batch iterators: deterministic shuffling, per-process sharding, prefetch, resumable position.

Two iterators share one ordering and sharding rule (:class:`BatchSchedule`):

- :class:`BatchIterator` streams from an on-disk :class:`seisjax.data.dataset.Dataset` (lazy HDF5
  reads), turning raw traces into model inputs with a vectorised ``transform``;
- :class:`ArrayBatchIterator` serves arrays that already sit in memory (e.g. SymAE groups prepared in
  advance).

The rule. Epoch ``e`` visits the examples in the order ``np.random.default_rng([seed, e])
.permutation(n)`` (or ``arange(n)`` without shuffling), cut into consecutive global batches of
``global_batch_size``. Every process computes the same order and takes its own contiguous share of
each global batch (``global_batch_size / process_count`` rows), so the rows of global batch ``k``
are, concatenated in process order, exactly the single-process batch ``k``. The order of an epoch
depends only on ``(seed, epoch)``, never on how far earlier epochs ran.

The position (``state()``: seed, epoch, index of the next batch in that epoch) is that of the
batches the consumer has received, not of what the prefetch thread has read ahead, so a checkpoint
that stores it resumes with exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import functools
import math
import queue
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jax
import numpy as np

from seisjax.errors import InputError

__all__ = ["ArrayBatchIterator", "BatchError", "BatchIterator", "BatchSchedule", "Prefetcher", "PrefetchEnd",
           "PrefetchFailed"]

# Most traces per Dataset.get_waveforms call by default: bounds one read (and its memory) when a batch
# is a long run of consecutive rows, as in unshuffled evaluation with big batches.

# How many indices of a failing batch an error message lists when no single example is to blame.
_MAX_LISTED = 16


class BatchError(RuntimeError):
    """A batch could not be produced (a read or the transform failed). The message names the epoch,
    the batch, the process and, when one example alone reproduces the failure, that example."""


# ============================================================================ ordering and sharding
@dataclass(frozen=True)
class _Position:
    """Epoch and index (within that epoch) of the next batch."""

    epoch: int
    index: int


class BatchSchedule:
    """Which examples each process gets in each batch: the one ordering and sharding rule.

    Args:
      num_examples: examples in the data (rows of the dataset or leading length of the arrays).
      global_batch_size: rows of one global batch, summed over processes; divisible by
        ``process_count``.
      seed: non-negative integer; epoch ``e`` uses ``np.random.default_rng([seed, e])``.
      shuffle: permute each epoch; otherwise visit the examples in storage order.
      drop_remainder: drop the last, incomplete global batch of an epoch. When kept, that batch is
        split over processes as evenly as possible (``np.array_split``), so shares may differ by one
        row, and a process may get zero rows when the batch has fewer rows than there are processes.
      num_epochs: stop after this many epochs (counted from epoch 0, so a restored iterator stops
        where an uninterrupted one would); ``None`` runs for ever.
      process_index, process_count: this process and the number of processes.
    """

    def __init__(self, num_examples: int, *, global_batch_size: int, seed: int, shuffle: bool = True,
                 drop_remainder: bool = True, num_epochs: int | None = None, process_index: int = 0,
                 process_count: int = 1):
        self.num_examples = _check_int("number of examples", num_examples, minimum=1)
        self.global_batch_size = _check_int("global_batch_size", global_batch_size, minimum=1)
        self.seed = _check_int("seed", seed, minimum=0)
        self.process_count = _check_int("process_count", process_count, minimum=1)
        self.process_index = _check_int("process_index", process_index, minimum=0)
        if self.process_index >= self.process_count:
            raise InputError(f"process_index {process_index} is not below process_count {process_count}")
        if self.global_batch_size % self.process_count:
            raise InputError(f"global_batch_size {global_batch_size} is not divisible by process_count "
                             f"{process_count}: every process needs the same share of a batch")
        self.num_epochs = None if num_epochs is None else _check_int("num_epochs", num_epochs, minimum=0)
        self.shuffle = bool(shuffle)
        self.drop_remainder = bool(drop_remainder)
        if self.drop_remainder and self.num_examples < self.global_batch_size:
            raise InputError(f"only {num_examples} examples for a global batch of {global_batch_size} with "
                             f"drop_remainder=True: an epoch would have no batch")
        # (epoch, order) replaced as a whole, so the prefetch thread and the consumer never see a mix.
        self._cached_order: tuple[int, np.ndarray] | None = None

    @property
    def local_batch_size(self) -> int:
        """Rows of this process's share of a full global batch."""
        return self.global_batch_size // self.process_count

    @property
    def steps_per_epoch(self) -> int:
        """Global batches per epoch (the same for every process)."""
        if self.drop_remainder:
            return self.num_examples // self.global_batch_size
        return math.ceil(self.num_examples / self.global_batch_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The order in which epoch ``epoch`` visits the examples (int64 indices)."""
        cached = self._cached_order
        if cached is not None and cached[0] == epoch:
            return cached[1]
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
        else:
            order = np.arange(self.num_examples)
        order = order.astype(np.int64, copy=False)
        order.setflags(write=False)
        self._cached_order = (epoch, order)
        return order

    def global_indices(self, epoch: int, index: int) -> np.ndarray:
        """Example indices of global batch ``index`` of epoch ``epoch``, in batch order."""
        start = index * self.global_batch_size
        return self.epoch_order(epoch)[start:start + self.global_batch_size]

    def local_indices(self, epoch: int, index: int) -> np.ndarray:
        """This process's rows of global batch ``index`` of epoch ``epoch``."""
        batch = self.global_indices(epoch, index)
        if len(batch) == self.global_batch_size:  # the usual case: equal contiguous shares
            share = self.local_batch_size
            return batch[self.process_index * share:(self.process_index + 1) * share]
        return np.array_split(batch, self.process_count)[self.process_index]

    def next_position(self, position: _Position) -> _Position:
        if position.index + 1 >= self.steps_per_epoch:
            return _Position(position.epoch + 1, 0)
        return _Position(position.epoch, position.index + 1)

    def finished(self, position: _Position) -> bool:
        return self.num_epochs is not None and position.epoch >= self.num_epochs

    def state(self, position: _Position) -> dict:
        return {"seed": self.seed, "epoch": position.epoch, "index": position.index,
                "global_batch_size": self.global_batch_size, "num_examples": self.num_examples}

    def position_from_state(self, state: Mapping) -> _Position:
        """Check a saved state against this schedule and return its position."""
        if not isinstance(state, Mapping):
            raise InputError(f"batch iterator state must be a dict, got {type(state).__name__}")
        missing = [key for key in ("seed", "epoch", "index") if key not in state]
        if missing:
            raise InputError(f"batch iterator state {dict(state)!r} lacks {', '.join(missing)}")
        for key, mine in (("seed", self.seed), ("global_batch_size", self.global_batch_size),
                          ("num_examples", self.num_examples)):
            if key in state and state[key] != mine:
                raise InputError(f"batch iterator state was saved with {key}={state[key]!r} but this "
                                 f"iterator has {key}={mine!r}: the saved position means other batches")
        epoch = _check_int("state epoch", state["epoch"], minimum=0)
        index = _check_int("state index", state["index"], minimum=0)
        if index > self.steps_per_epoch:
            raise InputError(f"batch iterator state index {index} is beyond the {self.steps_per_epoch} "
                             f"batches of an epoch")
        return _Position(epoch + 1, 0) if index == self.steps_per_epoch else _Position(epoch, index)


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ============================================================================ batch sources
class _Source(Protocol):
    """Turns example indices into a batch in two stages, so that errors can say which stage failed.

    Implementations must not hold a reference to the iterator: the prefetch thread holds the source,
    and the iterator must stay collectable while the thread runs."""

    def load(self, indices: np.ndarray) -> Any: ...

    def apply(self, loaded: Any, indices: np.ndarray) -> Any: ...

    def describe(self, index: int) -> str: ...


class _DatasetSource:
    """Reads traces from a Dataset and applies ``transform(waveforms, metadata_rows)``."""

    def __init__(self, dataset, transform):
        self.dataset = dataset
        self.metadata = dataset.metadata
        self.transform = transform
        self._empty: np.ndarray | None = None

    def load(self, indices: np.ndarray) -> np.ndarray:
        if len(indices) == 0:  # an empty share of a final partial batch: keep C, W and dtype
            if self._empty is None:
                self._empty = np.asarray(self.dataset.get_waveforms([0]))[:0]
            return self._empty
        # Dataset.get_waveforms groups rows by bucket and reads runs of consecutive rows as slices.
        return np.asarray(self.dataset.get_waveforms(indices.tolist()))

    def apply(self, waveforms: np.ndarray, indices: np.ndarray) -> Any:
        rows = self.metadata.iloc[indices]
        if self.transform is None:
            return {"waveforms": waveforms}
        return self.transform(waveforms, rows)

    def describe(self, index: int) -> str:
        if "trace_name" in self.metadata.columns:
            return f"trace {index} ({self.metadata['trace_name'].iat[index]!r})"
        return f"trace {index}"


class _ArraySource:
    """Indexes in-memory arrays and applies ``transform(batch_dict)``."""

    def __init__(self, arrays: dict[str, np.ndarray], transform):
        self.arrays = arrays
        self.transform = transform

    def load(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        return {name: array[indices] for name, array in self.arrays.items()}

    def apply(self, batch: dict[str, np.ndarray], indices: np.ndarray) -> Any:
        return batch if self.transform is None else self.transform(batch)

    def describe(self, index: int) -> str:
        return f"example {index}"


def _produce(source: _Source, schedule: BatchSchedule, position: _Position) -> dict[str, np.ndarray]:
    """This process's batch at ``position``; a failure raises with the epoch, batch and culprit."""
    indices = schedule.local_indices(position.epoch, position.index)
    try:
        loaded = source.load(indices)
    except Exception as exc:
        raise _failure(source, schedule, position, indices, "reading", exc) from exc
    try:
        batch = source.apply(loaded, indices)
    except Exception as exc:
        raise _failure(source, schedule, position, indices, "transform", exc) from exc
    return _check_batch(batch, len(indices), schedule, position)


def _failure(source: _Source, schedule: BatchSchedule, position: _Position, indices: np.ndarray,
             stage: str, exc: Exception) -> Exception:
    """Build the consumer-side error: retry the failing stage one example at a time to name the
    example to blame (only on the failure path, so the cost does not matter)."""
    where = (f"batch {position.index} of epoch {position.epoch} "
             f"(process {schedule.process_index} of {schedule.process_count})")
    culprit = None
    for index in indices:
        single = np.asarray([index])
        try:
            loaded = source.load(single)
            if stage == "transform":
                source.apply(loaded, single)
        except Exception as single_exc:  # noqa: BLE001 - we report it, chained to the batch error
            culprit = (int(index), single_exc)
            break
    if culprit is not None:
        index, single_exc = culprit
        message = (f"{where}: {stage} failed for {source.describe(index)}: "
                   f"{type(single_exc).__name__}: {single_exc}")
    else:
        listed = ", ".join(str(int(i)) for i in indices[:_MAX_LISTED])
        more = f", ... ({len(indices)} in all)" if len(indices) > _MAX_LISTED else ""
        message = (f"{where}: {stage} failed for the batch of examples [{listed}{more}] (no single "
                   f"example fails alone): {type(exc).__name__}: {exc}")
    # A user error stays a user error, so the command line prints it without a traceback.
    return InputError(message) if isinstance(exc, InputError) else BatchError(message)


def _check_batch(batch: Any, rows: int, schedule: BatchSchedule, position: _Position) -> dict:
    where = f"batch {position.index} of epoch {position.epoch}"
    if not isinstance(batch, Mapping):
        raise InputError(f"{where}: transform must return a dict of arrays, got {type(batch).__name__}")
    out = {}
    for name, value in batch.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] != rows:
            raise InputError(f"{where}: transform output {name!r} has shape {value.shape}; its first "
                             f"axis must be the batch of {rows} rows")
        out[name] = value
    return out


# ============================================================================ prefetch thread
class PrefetchEnd:
    """Put in the queue after the last batch."""


@dataclass
class PrefetchFailed:
    error: BaseException


def _schedule_step(source: _Source, schedule: BatchSchedule, position: _Position):
    """The batch at ``position`` and the position after it, or None past the schedule's end."""
    if schedule.finished(position):
        return None
    return _produce(source, schedule, position), schedule.next_position(position)


class Prefetcher:
    """Produces batches from ``start`` in a background thread into a bounded queue of ``depth``.

    ``step(position) -> (batch, next_position)``, or None after the last batch. Each queued batch
    carries the position after it, which the consumer adopts when it takes the batch; the position
    of what was read ahead is never visible outside. :meth:`get` returns ``(batch, position)``,
    :class:`PrefetchEnd` or :class:`PrefetchFailed` (the error raised in the thread)."""

    def __init__(self, step, start, depth: int):
        self._step = step
        self._start = start
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="seisjax-batch-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        position = self._start
        try:
            while not self._stop.is_set():
                item = self._step(position)
                if item is None:
                    self._put(PrefetchEnd())
                    return
                position = item[1]
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - delivered to the consumer, which re-raises it
            self._put(PrefetchFailed(exc))

    def _put(self, item) -> bool:
        """Queue ``item`` unless asked to stop; a timeout so a full queue cannot block close()."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def get(self):
        while True:
            try:
                return self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise BatchError("the batch prefetch thread stopped without a result") from None

    def close(self) -> None:
        self._stop.set()
        # Free the queue so a put in progress returns, then wait for the thread to leave.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if threading.current_thread() is not self._thread:  # garbage collection can run anywhere
            self._thread.join(timeout=60.0)
            if self._thread.is_alive():
                warnings.warn("the batch prefetch thread is still reading after 60 s; leaving it as a "
                              "daemon thread", RuntimeWarning, stacklevel=2)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class _WorkerSlot:
    """The iterator's current prefetcher, reachable from a finaliser that must not hold the iterator."""

    def __init__(self):
        self.worker: Prefetcher | None = None

    def close(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.close()


# ============================================================================ iterators
class _BatchIteratorBase:
    """Iteration, position, prefetch and shutdown shared by the on-disk and in-memory iterators."""

    def __init__(self, source: _Source, num_examples: int, *, global_batch_size: int, seed: int,
                 shuffle: bool, drop_remainder: bool, num_epochs: int | None, process_index: int | None,
                 process_count: int | None, prefetch: int, start_state: Mapping | None):
        if process_index is None or process_count is None:
            process_index = jax.process_index() if process_index is None else process_index
            process_count = jax.process_count() if process_count is None else process_count
        self._schedule = BatchSchedule(
            num_examples, global_batch_size=global_batch_size, seed=seed, shuffle=shuffle,
            drop_remainder=drop_remainder, num_epochs=num_epochs, process_index=process_index,
            process_count=process_count)
        self._prefetch = _check_int("prefetch", prefetch, minimum=0)
        self._source = source
        self._position = _Position(0, 0)
        self._slot = _WorkerSlot()
        self._closed = False
        weakref.finalize(self, self._slot.close)
        if start_state is not None:
            self.restore(start_state)

    # -------------------------------------------------------------- position
    def state(self) -> dict:
        """The position of the next batch the consumer will receive, as a JSON-serialisable dict:
        ``seed``, ``epoch``, ``index`` (batch index within the epoch), plus ``global_batch_size`` and
        ``num_examples``, checked on restore. It is the same on every process."""
        return self._schedule.state(self._position)

    def restore(self, state: Mapping) -> None:
        """Continue from a position saved by :meth:`state` (read-ahead batches are discarded)."""
        position = self._schedule.position_from_state(state)
        self._slot.close()
        self._position = position

    @property
    def epoch(self) -> int:
        """Epoch of the next batch the consumer will receive."""
        return self._position.epoch

    @property
    def steps_per_epoch(self) -> int:
        """Global batches per epoch (the same on every process)."""
        return self._schedule.steps_per_epoch

    @property
    def local_batch_size(self) -> int:
        """Rows of this process's share of a full global batch."""
        return self._schedule.local_batch_size

    @property
    def num_examples(self) -> int:
        return self._schedule.num_examples

    @property
    def schedule(self) -> BatchSchedule:
        """The ordering and sharding rule (e.g. to look up which examples batch k holds)."""
        return self._schedule

    # -------------------------------------------------------------- iteration
    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._closed:
            raise RuntimeError("the batch iterator is closed")
        if self._prefetch == 0:
            if self._schedule.finished(self._position):
                raise StopIteration
            batch = _produce(self._source, self._schedule, self._position)
            self._position = self._schedule.next_position(self._position)
            return batch
        if self._slot.worker is None:
            # a step that does not hold the iterator, so that garbage collection can still close it
            self._slot.worker = Prefetcher(functools.partial(_schedule_step, self._source, self._schedule),
                                           self._position, self._prefetch)
        item = self._slot.worker.get()
        if isinstance(item, PrefetchEnd):
            self._slot.close()
            raise StopIteration
        if isinstance(item, PrefetchFailed):
            # The position stays at the failed batch; a later call would retry it.
            self._slot.close()
            raise item.error
        batch, self._position = item
        return batch

    # -------------------------------------------------------------- shutdown
    def close(self) -> None:
        """Stop and join the prefetch thread. The iterator cannot be used afterwards; the dataset it
        reads is not closed (the caller owns it). Also done on garbage collection."""
        self._closed = True
        self._slot.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class BatchIterator(_BatchIteratorBase):
    """Batches streamed from an on-disk Dataset, for this process's share of each global batch.

    Args:
      dataset: a :class:`seisjax.data.dataset.Dataset` (or a view from ``select``/``split``).
      global_batch_size: rows of a global batch, summed over processes.
      seed: non-negative integer fixing the order of every epoch.
      transform: ``transform(waveforms, metadata) -> dict[str, np.ndarray]``, vectorised over the
        batch: ``waveforms`` is ``(B, C, W)`` in the file's dtype, zero-padded to the longest trace
        of this process's share; ``metadata`` the batch's rows of ``dataset.metadata`` in the same
        order (its index holds the dataset row numbers). Every output's first axis is the batch. For
        traces of unequal length, bring them to a fixed length here (as a model needs anyway), so
        that shapes and values do not depend on how the batch is split over processes. ``None``
        yields ``{"waveforms": waveforms}``.
      shuffle, drop_remainder, num_epochs: see :class:`BatchSchedule`.
      process_index, process_count: default to ``jax.process_index()`` / ``jax.process_count()``.
      prefetch: batches prepared ahead in a background thread; 0 reads in the consumer's thread.
      start_state: a :meth:`state` to start from.

    Iterating yields dicts of numpy arrays. A failed read or transform raises :class:`BatchError`
    (:class:`~seisjax.errors.InputError` when the cause was one) in the consumer, naming the epoch,
    the batch and the trace to blame.
    """

    def __init__(self, dataset, *, global_batch_size: int, seed: int,
                 transform: Callable[[np.ndarray, Any], Mapping[str, np.ndarray]] | None = None,
                 shuffle: bool = True, drop_remainder: bool = True, num_epochs: int | None = None,
                 process_index: int | None = None, process_count: int | None = None, prefetch: int = 2,
                 start_state: Mapping | None = None):
        source = _DatasetSource(dataset, transform)
        super().__init__(source, len(dataset), global_batch_size=global_batch_size, seed=seed,
                         shuffle=shuffle, drop_remainder=drop_remainder, num_epochs=num_epochs,
                         process_index=process_index, process_count=process_count, prefetch=prefetch,
                         start_state=start_state)


class ArrayBatchIterator(_BatchIteratorBase):
    """Batches of in-memory arrays with the same order, sharding, state and prefetch as
    :class:`BatchIterator`.

    Args:
      arrays: name -> array; all share their first axis (the examples).
      transform: ``transform(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]``, vectorised over
        the batch; ``None`` yields the indexed arrays as they are.
      Other arguments as for :class:`BatchIterator`.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], *, global_batch_size: int, seed: int,
                 transform: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None,
                 shuffle: bool = True, drop_remainder: bool = True, num_epochs: int | None = None,
                 process_index: int | None = None, process_count: int | None = None, prefetch: int = 2,
                 start_state: Mapping | None = None):
        arrays = _check_arrays(arrays)
        source = _ArraySource(arrays, transform)
        super().__init__(source, len(next(iter(arrays.values()))), global_batch_size=global_batch_size,
                         seed=seed, shuffle=shuffle, drop_remainder=drop_remainder, num_epochs=num_epochs,
                         process_index=process_index, process_count=process_count, prefetch=prefetch,
                         start_state=start_state)


def _check_arrays(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping) or not arrays:
        raise InputError("ArrayBatchIterator needs a non-empty dict of arrays")
    out = {str(name): np.asarray(value) for name, value in arrays.items()}
    lengths = {name: (value.shape[0] if value.ndim else None) for name, value in out.items()}
    if any(length is None for length in lengths.values()) or len(set(lengths.values())) != 1:
        described = ", ".join(f"{name}: {out[name].shape}" for name in out)
        raise InputError(f"ArrayBatchIterator arrays must share their first axis (examples); got {described}")
    return out
