"""LSTM autoencoding of whole variable-length multichannel records (task ``lstm_ae``).

Records. Each trace of the dataset becomes one record ``(length, C)`` at ``data.sampling_rate``:

1. components ``data.components`` (e.g. "ZNE") are taken in that order from the dataset's
   component order. A component the dataset lacks, or that a row's ``trace_components`` column
   (written by ``seisjax data build`` converters, e.g. "Z" for PhaseNet's single-channel records)
   does not list, is handled by ``data.missing_components``: "error" (default) raises an
   :class:`~seisjax.errors.InputError` naming the dataset, the component and examples of the traces
   (pick ``data.components = "Z"`` or "zeros" instead); "zeros" keeps the record with that channel
   zero after normalisation, and the record's ``missing`` field names the zero-filled components
   (written by ``embed`` beside the embedding);
2. resampled (polyphase, ``scipy.signal.resample_poly``) from the trace's own rate
   (``trace_sampling_rate_hz``, else the dataset's) to ``data.sampling_rate``;
3. cut from ``data.pre_p`` samples before ``trace_p_arrival_sample`` (the trace start when there is
   no pick) to the record's end: with ``data.end = "s_coda"`` the S pick plus ``data.s_coda_factor``
   times the S-P time (the trace end when there is no S pick), with "record" the trace end. A record
   longer than ``data.max_length`` samples is cropped around P: it keeps ``[P - pre_p, P - pre_p +
   max_length)``;
4. optionally differenced (``data.difference``: ``x[t] - x[t-1]``, first sample 0), each channel
   demeaned, and (``data.record_scale = "peak"``) divided by the record's largest absolute value
   over its channels (keeps the relative amplitudes of the channels; ``"none"`` keeps absolute
   amplitudes);
5. normalised per channel with the mean and standard deviation of every valid sample of the
   training records. These statistics are computed once, written to
   ``<workdir>/normalisation.json`` beside ``checkpoints/`` and read back by ``eval`` and ``embed``
   (also on other data): they belong to the trained model.

A record that cannot be used (non-finite samples, shorter than ``data.min_length``, unreadable,
missing components under "error" at the trace level in ``embed``) is never dropped silently:
training and evaluation leave it out with a warning naming it; ``embed`` writes it with its reason.

In memory or streamed (``data.records_in_memory``: "auto" (default), true or false). One pass over a
split (with a progress bar) finds each row's problem, length and zero-filled components and sums the
normalisation moments (float64); in memory it also keeps every prepared record, streamed it keeps
none and each batch reads and prepares only its own rows again, with the same per-row function
(``_prepare_rows``), so a batch, and the normalisation statistics, are the same arrays bit for bit in
both modes and a resumed run sees the same batches. "auto" keeps a split in memory when ``rows x
data.max_length x channels x 4`` bytes (the float32 records if each were ``max_length`` long: an
upper bound known before reading) is below ``data.memory_limit_mb`` MiB (default 2048), and streams it
otherwise. ``embed`` follows the same rule for the dataset it embeds and keeps only the embeddings.
Toy records are always in memory. A row that the first pass found usable but a batch cannot
prepare, or finds at another length (the files changed meanwhile), raises an
:class:`~seisjax.errors.InputError` naming the trace and saying that the dataset changed since the
first pass: the planned batches no longer exist, so the job stops rather than train on other data.
Training batches are made ``data.prefetch`` ahead in a background thread (reading streamed records
overlaps the training step).

Batches. Records are bucketed by length: each epoch shuffles the records (``seed``, epoch), cuts
the order into chunks of ``data.bucket_chunk`` batches, sorts each chunk by length, cuts it into
batches and shuffles the batches. A batch is padded to the smallest of ``data.bucket_lengths``
(multiples of 8, the last = ``data.max_length``) that holds its longest record. Because the engine
compiles ONE train step ahead of time, arrays always have ``max_length`` steps and the batch says
which bucket it is (``bucket``); the loss picks the bucket's branch with ``jax.lax.switch``, each
branch running the model on the first ``bucket_lengths[k]`` steps only, so short batches cost
what their bucket length costs. Batch: ``{"x": (B, max_length, C), "length": (B,), "bucket": (B,)}``.
The iterator is resumable (``state()``/``restore()`` as in :mod:`seisjax.data.batches`).
``data.max_length`` and the bucket lengths must be multiples of the model's pooling reduction
(``prod(model.pools)``).

Length curriculum (``data.length_schedule``, ``(start_step, max_length)`` pairs, empty by default):
from each start step on, training records are cropped to their first ``max_length`` samples (from
``pre_p`` before P), e.g. ``((0, 128), (250, 256), (500, 512))``; the crop follows the iterator's
position, so a resumed run crops as the uninterrupted one. Evaluation always sees whole records.

Loss: L1 between reconstruction and input over valid steps, summed over channels, divided by the
record's own length, averaged over the batch (:func:`masked_l1`).

Evaluation: ``loss`` and the same error per length bucket (``l1_len_<lo>-<hi>``, (sum, count)
pairs; the all-zero reconstruction's beside it as ``l1_zero_len_<lo>-<hi>``), per channel, and
``l1_zero_baseline``: the error of an all-zero reconstruction (what L1 converges to when the model
predicts nothing); ``eval_report`` writes ``embeddings.json`` with linear probes (multinomial
logistic regression on the embeddings, trained on the training split, scored on the evaluation
split, beside the majority-class baseline) for ``path_distance_class``, a magnitude bin
(``eval.magnitude_bins``) and the magnitude bin within each distance class
(``magnitude_bin_within_<class>``), and ``embedding_map.png`` (2-D PCA, and UMAP or t-SNE where
installed, coloured by that metadata).
"""

from __future__ import annotations

import json
import warnings
from fractions import Fraction
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seisjax.data.dataset import trace_names
from seisjax.data.resolve import resolve_dataset
from seisjax.errors import InputError
from seisjax.lstm_ae.model import MODELS
from seisjax.train.task import Task, array_fingerprint, dataset_fingerprint, pairs

__all__ = ["LSTMAETask", "Records", "BucketBatchIterator", "masked_l1", "toy_records", "NORMALISATION_FILE"]

NORMALISATION_FILE = "normalisation.json"
P_COLUMN, S_COLUMN = "trace_p_arrival_sample", "trace_s_arrival_sample"
LABELS = ("path_distance_class", "source_magnitude")


def masked_l1(recon, x, lengths):
    """Per record: ``sum_{t < length, c} |recon - x| / length`` (``(B,)``; 0 for length 0)."""
    mask = (jnp.arange(x.shape[1])[None, :] < lengths[:, None]).astype(x.dtype)
    total = jnp.sum(jnp.abs(recon - x) * mask[..., None], axis=(1, 2))
    return total / jnp.maximum(lengths, 1).astype(x.dtype)


# ============================================================================ records
class Records:
    """Variable-length records ``(length_i, C)`` (before the per-channel normalisation) with their
    trace names, metadata labels, problems ("" for usable records) and zero-filled components.

    In memory, ``records`` is the list of float32 arrays (None for unusable rows). Streamed
    (``records is None``), only the per-row facts found by the first pass are kept (``lengths``,
    ``problems``, ``missing``, labels, the normalisation sums) and :meth:`get` prepares the asked
    rows again from the dataset (``load(dataset_rows, names, lengths)``)."""

    def __init__(self, records: list | None, names, *, problems=None, missing=None, labels=None, lengths=None,
                 load=None, rows=None, moments=None):
        if records is None and load is None:
            raise ValueError("streamed Records need a loader")
        self.records = records
        self.names = np.asarray(names).astype(str)
        n = len(self.names)
        self.problems = np.full(n, "", dtype=object) if problems is None else np.asarray(problems, dtype=object)
        self.missing = np.full(n, "", dtype=object) if missing is None else np.asarray(missing, dtype=object)
        self.labels = dict(labels or {})
        self.lengths = (np.array([len(r) if r is not None else 0 for r in records], np.int64) if lengths is None
                        else np.asarray(lengths, np.int64))
        self.rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)  # dataset rows
        self._load = load
        self._moments = moments

    def __len__(self):
        return len(self.names)

    @property
    def streamed(self) -> bool:
        return self.records is None

    def good(self) -> np.ndarray:
        return np.flatnonzero(self.problems == "")

    def get(self, indices) -> list[np.ndarray]:
        """The float32 arrays of records ``indices`` (prepared from the dataset now when streamed)."""
        indices = np.asarray(indices, np.int64)
        if self.records is not None:
            return [self.records[i] for i in indices]
        return self._load(self.rows[indices], self.names[indices], self.lengths[indices])

    def moments(self) -> tuple[np.ndarray, np.ndarray, int]:
        """Per-channel float64 ``(sum, sum of squares, samples)`` over the usable records, in
        record order (accumulated by the first pass; computed here for records made in memory)."""
        if self._moments is None:
            if self.records is None:
                raise ValueError("the moments of a streamed subset are unknown; take them from the whole split")
            good = [self.records[i] for i in self.good()]
            acc = _Moments(good[0].shape[1] if good else 0)
            for r in good:
                acc.add(r)
            self._moments = acc.result()
        return self._moments

    def subset(self, rows) -> "Records":
        rows = np.asarray(rows, np.int64)
        return Records(None if self.records is None else [self.records[i] for i in rows], self.names[rows],
                       problems=self.problems[rows], missing=self.missing[rows], lengths=self.lengths[rows],
                       labels={k: np.asarray(v)[rows] for k, v in self.labels.items()}, load=self._load,
                       rows=self.rows[rows])


class _Moments:
    """Running per-channel float64 sums of usable records (exact enough for any dataset size); the
    one accumulation both record modes use, so their statistics are equal bit for bit."""

    def __init__(self, channels: int):
        self.total = np.zeros(channels)
        self.total_sq = np.zeros(channels)
        self.count = 0

    def add(self, record: np.ndarray) -> None:
        self.total += record.sum(0, dtype=np.float64)
        self.total_sq += np.square(record, dtype=np.float64).sum(0)
        self.count += len(record)

    def result(self) -> tuple[np.ndarray, np.ndarray, int]:
        return self.total, self.total_sq, self.count


def toy_records(n: int, *, channels: int = 3, min_length: int = 24, max_length: int = 64, seed: int = 0,
                sampling_rate: float = 20.0) -> Records:
    """Small in-memory records for tests: noise then a damped sinusoid, two classes ("near": 6 Hz,
    short; "far": 2 Hz, long), a random amplitude as the magnitude and a random length."""
    rng = np.random.default_rng(seed)
    records, cls, mag = [], [], []
    for i in range(n):
        length = int(rng.integers(min_length, max_length + 1))
        far = bool(rng.integers(2))
        t = np.arange(length) / sampling_rate
        onset = rng.integers(2, 6) / sampling_rate
        tau = np.clip(t - onset, 0, None)
        freq, decay = (2.0, 1.0) if far else (6.0, 3.0)
        amp = rng.normal(size=(1, channels))
        wave = np.sin(2 * np.pi * freq * tau)[:, None] * np.exp(-decay * tau)[:, None] * amp * (t >= onset)[:, None]
        records.append((wave + 0.05 * rng.normal(size=(length, channels))).astype(np.float32))
        cls.append("teleseismic" if far else "local")
        mag.append(float(np.log10(np.abs(amp).max() + 1e-3) + 3))
    return Records(records, [f"toy{i}" for i in range(n)],
                   labels={"path_distance_class": np.array(cls), "source_magnitude": np.array(mag)})


def _records_in_memory(value) -> bool | None:
    """``data.records_in_memory``: True, False, or None for "auto" (also the strings "true", "false"
    as a command-line override of the string field gives them)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("auto", "true", "false"):
        return None if text == "auto" else text == "true"
    raise InputError(f"data.records_in_memory = {value!r}: expected 'auto', true or false")


def _numeric(meta, column, n):
    import pandas as pd

    if column not in meta:
        return np.full(n, np.nan)
    return pd.to_numeric(meta[column], errors="coerce").to_numpy(np.float64)


# ============================================================================ batches
class BucketBatchIterator:
    """Length-bucketed batches of :class:`Records`, resumable and sharded like
    :class:`seisjax.data.batches.BatchIterator` (see the task docstring for the order).

    ``make_batch(rows, global_rows, position) -> dict`` makes one process's batch: ``rows`` = this
    process's contiguous share of the global batch, ``global_rows`` = the whole global batch (so that
    every process pads to the same bucket), ``position`` = the batch's index since the start (the
    training step it is for). With ``prefetch`` > 0 a background thread makes up to that many
    batches ahead (reading streamed records overlaps the training step); :meth:`state` is always the
    position of the next batch the consumer receives."""

    def __init__(self, lengths, *, global_batch_size, seed, make_batch, shuffle=True, num_epochs=None,
                 chunk_batches=16, process_index=0, process_count=1, drop_remainder=True, prefetch=0):
        self.lengths = np.asarray(lengths, np.int64)
        self.n = len(self.lengths)
        self.batch = int(global_batch_size)
        if self.batch % process_count:
            raise InputError(f"batch size {self.batch} is not divisible by {process_count} processes")
        if drop_remainder and self.n < self.batch:
            raise InputError(f"only {self.n} usable records for a batch of {self.batch}")
        self.seed, self.shuffle, self.num_epochs = int(seed), bool(shuffle), num_epochs
        self.chunk = max(1, int(chunk_batches)) * self.batch
        self.process_index, self.process_count = int(process_index), int(process_count)
        self.drop_remainder = bool(drop_remainder)
        self.make_batch = make_batch
        self._epoch, self._index = 0, 0
        self._cache = None
        self.prefetch = int(prefetch)
        if self.prefetch < 0:
            raise InputError(f"prefetch = {prefetch}: need >= 0 batches")
        self._worker = None  # a seisjax.data.batches.Prefetcher while reading ahead

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch if self.drop_remainder else -(-self.n // self.batch)

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def position(self) -> int:
        """Index of the next batch since the start (the training step it is for)."""
        return self._epoch * self.steps_per_epoch + self._index

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The global batches (record indices) of ``epoch``: a function of (seed, epoch) only."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        batches = []
        for start in range(0, self.n, self.chunk):
            part = order[start:start + self.chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches.extend(part[i:i + self.batch] for i in range(0, len(part), self.batch))
        if self.drop_remainder:
            # a chunk's short tail joins the next chunk's rather than being dropped: regroup tails
            full = [b for b in batches if len(b) == self.batch]
            tail = np.concatenate([b for b in batches if len(b) < self.batch] or [np.zeros(0, np.int64)])
            tail = tail[np.argsort(self.lengths[tail], kind="stable")]
            full += [tail[i:i + self.batch] for i in range(0, len(tail) - self.batch + 1, self.batch)]
            batches = full
        if self.shuffle:
            batches = [batches[i] for i in np.random.default_rng([self.seed, epoch, 1]).permutation(len(batches))]
        self._cache = (epoch, batches)
        return batches

    def __iter__(self):
        return self

    def _after(self, epoch: int, index: int) -> tuple[int, int]:
        index += 1
        return (epoch + 1, 0) if index >= self.steps_per_epoch else (epoch, index)

    def _produce(self, epoch: int, index: int):
        """The batch at (epoch, index), or None past the last epoch."""
        if self.num_epochs is not None and epoch >= self.num_epochs:
            return None
        rows = self.epoch_batches(epoch)[index]
        shares = np.array_split(rows, self.process_count)
        return self.make_batch(shares[self.process_index], rows, epoch * self.steps_per_epoch + index)

    def _step(self, position):
        """Prefetcher step: the batch at ``position`` = (epoch, index) and the position after it."""
        batch = self._produce(*position)
        return None if batch is None else (batch, self._after(*position))

    def __next__(self):
        if self.prefetch == 0:
            batch = self._produce(self._epoch, self._index)
            if batch is None:
                raise StopIteration
            self._epoch, self._index = self._after(self._epoch, self._index)
            return batch
        from seisjax.data.batches import PrefetchEnd, PrefetchFailed, Prefetcher

        if self._worker is None:  # the step holds this iterator: the engine's close() stops the thread
            self._worker = Prefetcher(self._step, (self._epoch, self._index), self.prefetch)
        item = self._worker.get()
        if isinstance(item, (PrefetchEnd, PrefetchFailed)):
            self.close()
            if isinstance(item, PrefetchFailed):
                raise item.error
            raise StopIteration
        batch, (self._epoch, self._index) = item
        return batch

    def state(self) -> dict:
        return {"seed": self.seed, "epoch": self._epoch, "index": self._index, "global_batch_size": self.batch,
                "num_examples": self.n}

    def restore(self, state) -> None:
        for key, mine in (("seed", self.seed), ("global_batch_size", self.batch), ("num_examples", self.n)):
            if key in state and int(state[key]) != mine:
                raise InputError(f"batch iterator state was saved with {key}={state[key]!r}, this iterator "
                                 f"has {mine!r}: the saved position means other batches")
        self.close()  # batches read ahead from the old position are dropped
        self._epoch, self._index = int(state["epoch"]), int(state["index"])

    def close(self):
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()


# ============================================================================ the task
class LSTMAETask(Task):
    """See the module docstring."""

    name = "lstm_ae"
    models = MODELS

    rng_streams = ("dropout",)

    def __init__(self, config, *, workdir=None, data_path=None):
        super().__init__(config, workdir=workdir, data_path=data_path)
        data = config.data
        self.components = str(data.components)
        self.max_length = int(data.max_length)
        self.bucket_lengths = tuple(int(b) for b in data.bucket_lengths)
        pools = tuple(int(p) for p in config.model.get("pools", (2, 2, 2)))
        unit = int(np.prod(pools))  # input steps per pooled step
        if self.max_length % unit or any(b % unit for b in self.bucket_lengths) or list(
                self.bucket_lengths) != sorted(set(self.bucket_lengths)) or self.bucket_lengths[-1] != self.max_length:
            raise InputError(f"data.bucket_lengths {self.bucket_lengths}: increasing multiples of {unit} (the "
                             f"product of model.pools {pools}) ending at data.max_length = {self.max_length}")
        self.length_schedule = self._length_schedule(data.get("length_schedule", ()))
        if str(data.missing_components) not in ("error", "zeros"):
            raise InputError(f"data.missing_components = {data.missing_components!r}: expected 'error' or 'zeros'")
        if str(data.end) not in ("s_coda", "record"):
            raise InputError(f"data.end = {data.end!r}: expected 's_coda' or 'record'")
        if str(data.record_scale) not in ("peak", "none"):
            raise InputError(f"data.record_scale = {data.record_scale!r}: expected 'peak' or 'none'")
        self.in_memory = _records_in_memory(data.get("records_in_memory", "auto"))
        limit = data.get("memory_limit_mb", 2048)
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
            raise InputError(f"data.memory_limit_mb = {limit!r}: expected a positive number of MiB")
        self.memory_limit_mb = float(limit)
        self.source = data.source if data_path is None else "dataset"
        self._dataset = None
        self._records: dict[str, Records] = {}
        self._eval_split_used = None
        if self.source == "toy":
            toy = toy_records(int(data.toy_examples), channels=len(self.components), seed=int(data.toy_seed),
                              min_length=int(data.min_length), max_length=self.max_length)
            n_train = int(round(0.75 * len(toy)))
            self._records = {"train": toy.subset(np.arange(n_train)), "eval": toy.subset(np.arange(n_train, len(toy)))}
        elif self.source in ("synthetic", "dataset"):
            from seisjax.data.dataset import Dataset

            self._dataset = Dataset(resolve_dataset(data, workdir=workdir, data_path=data_path))
            self._check_components(self._dataset)
        else:
            raise InputError(f"data.source = {self.source!r}: expected 'synthetic', 'dataset' or 'toy'")
        self._norm = None

    # ------------------------------------------------------------------ data
    def _component_index(self, dataset) -> list[int | None]:
        order = dataset.component_order or ""
        return [order.index(c) if c in order else None for c in self.components]

    def _check_components(self, dataset):
        """Dataset-level and per-trace (``trace_components``) missing components under "error"."""
        if str(self.config.data.missing_components) != "error":
            return
        index = self._component_index(dataset)
        absent = [c for c, i in zip(self.components, index) if i is None]
        if absent:
            raise InputError(f"{dataset.path}: component(s) {''.join(absent)} requested by data.components = "
                             f"{self.components!r} are not in the dataset's component order "
                             f"{dataset.component_order!r}; choose data.components or set "
                             "data.missing_components = 'zeros'")
        meta = dataset.metadata
        if "trace_components" in meta:
            have = meta["trace_components"].fillna("").astype(str)
            lacking = ~have.apply(lambda s: all(c in s for c in self.components)).to_numpy() & (have != "").to_numpy()
            if lacking.any():
                names = (meta["trace_name"].astype(str).to_numpy()[lacking] if "trace_name" in meta
                         else np.flatnonzero(lacking))
                raise InputError(f"{dataset.path}: {int(lacking.sum())} trace(s) lack some of the components "
                                 f"{self.components!r} (column trace_components; e.g. "
                                 f"{', '.join(map(str, names[:3]))}); "
                                 "set data.components (e.g. 'Z') or data.missing_components = 'zeros' "
                                 "(zero-filled, flagged)")

    def keep_in_memory(self, rows: int) -> bool:
        """Whether a split of ``rows`` traces is prepared into memory (``data.records_in_memory``):
        under "auto", when ``rows * data.max_length * channels * 4`` bytes (the float32 records if
        every one were ``max_length`` long: an upper bound known before reading anything) is below
        ``data.memory_limit_mb`` MiB; otherwise the records are streamed."""
        if self.in_memory is not None:
            return self.in_memory
        return rows * self.max_length * len(self.components) * 4 < self.memory_limit_mb * 2 ** 20

    def _row_plan(self, dataset) -> dict:
        """Per-row metadata that :meth:`_prepare_rows` needs, read once per dataset (view)."""
        meta = dataset.metadata
        n = len(meta)
        rates = _numeric(meta, "trace_sampling_rate_hz", n)
        index = self._component_index(dataset)
        return {
            "names": trace_names(meta),
            "rates": np.where(np.isfinite(rates), rates, dataset.sampling_rate or np.nan),
            "p": _numeric(meta, P_COLUMN, n), "s": _numeric(meta, S_COLUMN, n), "index": index,
            "absent": "".join(c for c, i in zip(self.components, index) if i is None),
            "trace_components": (meta["trace_components"].fillna("").astype(str).to_numpy()
                                 if "trace_components" in meta else np.full(n, "")),
        }

    def _prepare_rows(self, dataset, plan: dict, rows) -> tuple[list, list[str], list[str]]:
        """Steps 1-4 of the module docstring for rows ``rows`` of ``dataset`` (any order): the float32
        records (None when unusable), their problems ("" when usable) and zero-filled components.
        The one per-row preparation behind the first pass, streamed batches and ``embed``."""
        from scipy.signal import resample_poly

        data = self.config.data
        target = float(data.sampling_rate)
        zeros_ok = str(data.missing_components) == "zeros"
        pre_p, min_length = int(data.pre_p), int(data.min_length)
        rows = [int(r) for r in rows]
        records: list = [None] * len(rows)
        problems, missing = [""] * len(rows), [""] * len(rows)
        try:
            raw = dataset.get_waveforms(rows, pad=False)
        except Exception:  # noqa: BLE001 - find the unreadable trace(s), keep the others
            raw = []
            for k, row in enumerate(rows):
                try:
                    raw.append(dataset.get_waveforms([row], pad=False)[0])
                except Exception as err:  # noqa: BLE001
                    raw.append(None)
                    problems[k] = f"unreadable: {err}"
        comps = plan["trace_components"]
        for k, (row, trace) in enumerate(zip(rows, raw)):
            if trace is None:
                continue
            lacking = plan["absent"] + "".join(
                c for c in self.components if comps[row] and c not in comps[row] and c not in plan["absent"])
            if lacking and not zeros_ok:
                problems[k] = f"missing component(s) {lacking}"
                continue
            missing[k] = lacking
            rate = plan["rates"][row]
            if not (np.isfinite(rate) and rate > 0):
                problems[k] = "no valid sampling rate"
                continue
            x = np.stack([trace[i].astype(np.float64) if i is not None else np.zeros(trace.shape[-1])
                          for i in plan["index"]])
            if not np.isfinite(x).all():
                problems[k] = "non-finite samples"
                continue
            ratio = Fraction(target / rate).limit_denominator(1000)
            if ratio != 1:
                x = resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)
            factor = target / rate
            p, s = plan["p"][row] * factor, plan["s"][row] * factor
            start = int(max(0, np.round(p) - pre_p)) if np.isfinite(p) else 0
            end = x.shape[-1]
            if str(data.end) == "s_coda" and np.isfinite(p) and np.isfinite(s) and s > p:
                end = int(min(end, np.ceil(s + float(data.s_coda_factor) * (s - p))))
            end = min(end, start + self.max_length)
            if end - start < min_length:
                problems[k] = f"too short ({max(end - start, 0)} samples < data.min_length {min_length})"
                continue
            records[k] = self._condition(x[:, start:end].T, lacking)
        return records, problems, missing

    def _stream_loader(self, dataset, plan: dict):
        """``load(rows, names, lengths)`` for streamed :class:`Records`: prepares those rows again and
        checks them against the first pass. A row that is no longer usable, or no longer has its
        length, raises InputError: the dataset changed since the first pass (the job cannot
        reproduce the batches it planned; restart it so the first pass sees the new data)."""
        where = getattr(dataset, "path", "dataset")

        def load(rows, names, lengths):
            records, problems, _ = self._prepare_rows(dataset, plan, rows)
            for record, problem, name, length in zip(records, problems, names, lengths):
                if problem or len(record) != length:
                    now = problem or f"{len(record)} samples, {int(length)} at the first pass"
                    raise InputError(f"{where}: trace {str(name)!r} ({now}): the dataset changed since the first pass "
                                     "over it; restart the job")
            return records

        return load

    def prepare(self, dataset, *, chunk: int = 256, progress: bool = True, in_memory: bool | None = None) -> Records:
        """Every row of ``dataset`` (any Dataset) as a record (see the module docstring); rows that
        cannot be used are kept with their reason in ``problems``. One pass: it finds each row's
        problem, length and zero-filled components and sums the normalisation moments; it keeps the
        records in memory or streams them (``in_memory``, default :meth:`keep_in_memory`)."""
        from tqdm.auto import tqdm

        meta = dataset.metadata
        n = len(meta)
        keep = self.keep_in_memory(n) if in_memory is None else bool(in_memory)
        plan = self._row_plan(dataset)
        records: list | None = [None] * n if keep else None
        lengths = np.zeros(n, np.int64)
        problems = np.full(n, "", dtype=object)
        missing = np.full(n, "", dtype=object)
        moments = _Moments(len(self.components))
        for begin in tqdm(range(0, n, chunk), desc="preparing records", unit="chunk", leave=False,
                          disable=not progress or n <= chunk):
            rows = np.arange(begin, min(begin + chunk, n))
            prepared, row_problems, row_missing = self._prepare_rows(dataset, plan, rows)
            problems[rows], missing[rows] = row_problems, row_missing
            for row, record in zip(rows, prepared):
                if record is None:
                    continue
                lengths[row] = len(record)
                moments.add(record)
                if keep:
                    records[row] = record
        labels = {}
        if "path_distance_class" in meta:
            labels["path_distance_class"] = meta["path_distance_class"].fillna("").astype(str).to_numpy()
        if "source_magnitude" in meta:
            labels["source_magnitude"] = _numeric(meta, "source_magnitude", n)
        return Records(records, plan["names"], problems=problems, missing=missing, labels=labels, lengths=lengths,
                       load=None if keep else self._stream_loader(dataset, plan), moments=moments.result())

    def _condition(self, x: np.ndarray, lacking: str) -> np.ndarray:
        """``(length, C)`` float64 -> differenced, demeaned, scaled float32 (step 4)."""
        data = self.config.data
        if data.difference:
            x = np.concatenate([np.zeros((1, x.shape[1])), np.diff(x, axis=0)])
        x = x - x.mean(axis=0, keepdims=True)
        if str(data.record_scale) == "peak":
            peak = np.abs(x).max()
            x = x / (peak if peak > 0 else 1.0)
        for c in lacking:
            x[:, self.components.index(c)] = 0.0
        return x.astype(np.float32)

    def _split_dataset(self, split: str, *, for_eval: bool):
        ds = self._dataset
        if split and "split" in ds.metadata.columns and (ds.metadata["split"] == split).any():
            return ds.split(split), split
        if for_eval or not split:
            return ds, "all"
        raise InputError(f"{ds.path}: no rows with split == {split!r} to train on")

    def records(self, which: str) -> Records:
        """The prepared records of the training ("train") or evaluation ("eval") split (made once)."""
        if which not in self._records:
            split = self.config.data.train_split if which == "train" else self.config.data.eval_split
            ds, used = self._split_dataset(str(split), for_eval=which == "eval")
            if which == "eval":
                self._eval_split_used = used
            recs = self.prepare(ds)
            bad = recs.problems != ""
            if bad.any():
                shown = "; ".join(f"{nm}: {pr}" for nm, pr in list(zip(recs.names[bad], recs.problems[bad]))[:5])
                warnings.warn(f"{self._dataset.path}: {int(bad.sum())} of {len(recs)} {which} record(s) left out "
                              f"({shown}{'; ...' if bad.sum() > 5 else ''})", stacklevel=2)
            self._records[which] = recs
        return self._records[which]

    # ------------------------------------------------------------------ normalisation
    def normalisation(self) -> dict:
        """Per-channel ``mean`` and ``std`` over every valid sample of the training records: read
        from ``<workdir>/normalisation.json`` when there, else computed and written there."""
        if self._norm is not None:
            return self._norm
        path = self.workdir / NORMALISATION_FILE if self.workdir is not None else None
        if path is not None and path.exists():
            stored = json.loads(path.read_text())
            if stored.get("components") != self.components:
                raise InputError(f"{path}: statistics for components {stored.get('components')!r}, the config "
                                 f"has {self.components!r}")
            self._norm = {k: np.asarray(stored[k], np.float32) for k in ("mean", "std")}
            return self._norm
        recs = self.records("train")
        total, total_sq, count = recs.moments()
        if count == 0:
            raise InputError("no usable training records to compute the normalisation statistics from")
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
        std = np.where(std > 0, std, 1.0)
        self._norm = {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}
        if path is not None and jax.process_index() == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"components": self.components, "mean": mean.tolist(), "std": std.tolist(),
                                        "records": len(recs.good()), "samples": int(count)}, indent=2) + "\n")
        return self._norm

    def bucket_index(self, longest: int) -> int:
        return int(np.searchsorted(self.bucket_lengths, longest))

    def _length_schedule(self, schedule) -> tuple[tuple[int, int], ...]:
        """Validated ``data.length_schedule``: ``(start_step, max_length)`` pairs, increasing steps."""
        pairs_ = tuple((int(a), int(b)) for a, b in (schedule or ()))
        starts = [a for a, _ in pairs_]
        if starts != sorted(set(starts)) or any(a < 0 for a in starts) or any(
                not 0 < n <= self.max_length for _, n in pairs_):
            raise InputError(f"data.length_schedule {pairs_}: (start_step, max_length) pairs with increasing "
                             f"start steps >= 0 and lengths in (0, data.max_length = {self.max_length}]")
        return pairs_

    def length_limit(self, step: int) -> int:
        """Training records are cropped to this many samples at ``step`` (``data.length_schedule``: a
        curriculum from short crops to whole records; ``data.max_length`` without one)."""
        limit = self.max_length
        for start, length in self.length_schedule:
            if step >= start:
                limit = length
        return limit

    def make_batch(self, recs: Records, rows: np.ndarray, global_rows: np.ndarray | None = None, *,
                   limit: int | None = None) -> dict:
        """``{"x" (b, max_length, C), "length" (b,), "bucket" (b,)}`` of records ``rows``, normalised
        and cropped to their first ``limit`` samples (default: none); the bucket is that of
        ``global_rows`` (the whole global batch)."""
        norm = self.normalisation()
        global_rows = rows if global_rows is None else global_rows
        limit = self.max_length if limit is None else int(limit)
        lengths = np.minimum(recs.lengths, limit)
        bucket = self.bucket_index(int(lengths[global_rows].max()) if len(global_rows) else 0)
        x = np.zeros((len(rows), self.max_length, len(self.components)), np.float32)
        for j, (i, record) in enumerate(zip(rows, recs.get(rows))):
            r = record[:limit]
            x[j, :len(r)] = (r - norm["mean"]) / norm["std"]
            for c in recs.missing[i]:
                x[j, :len(r), self.components.index(c)] = 0.0
        return {"x": x, "length": lengths[rows].astype(np.int32),
                "bucket": np.full(len(rows), bucket, np.int32)}

    def train_batches(self, *, process_index, process_count):
        recs = self.records("train")
        good = recs.good()
        sub = recs.subset(good)
        self.normalisation()

        def make(rows, glob, position):
            return self.make_batch(sub, rows, glob, limit=self.length_limit(position))

        return BucketBatchIterator(sub.lengths, global_batch_size=int(self.config.batch_size),
                                   seed=int(self.config.seed), make_batch=make,
                                   chunk_batches=int(self.config.data.bucket_chunk),
                                   process_index=process_index, process_count=process_count,
                                   prefetch=int(self.config.data.get("prefetch", 2)))

    def eval_batches(self, *, process_index, process_count):
        recs = self.records("eval")
        sub = recs.subset(recs.good())
        self.normalisation()
        if len(sub) == 0:
            raise InputError("no usable evaluation records")
        return BucketBatchIterator(sub.lengths, global_batch_size=int(self.config.eval.batch_size), seed=0,
                                   shuffle=False, num_epochs=1, chunk_batches=10 ** 9, drop_remainder=False,
                                   make_batch=lambda rows, glob, position: self.make_batch(sub, rows, glob),
                                   process_index=process_index, process_count=process_count)

    def data_info(self) -> dict:
        recs = self.records("eval")
        if self._dataset is None:
            return {"source": self.source, "split": "toy-eval", "examples": len(recs),
                    "fingerprint": array_fingerprint({"lengths": recs.lengths,
                                                      "x": np.concatenate([r for r in recs.records if r is not None])})}
        ds, used = self._split_dataset(str(self.config.data.eval_split), for_eval=True)
        return {"source": self.source, "split": used, "examples": len(ds), "usable": int(len(recs.good())),
                "fingerprint": dataset_fingerprint(ds)}

    def close(self):
        if self._dataset is not None:
            self._dataset.close()

    # ------------------------------------------------------------------ model
    def model_kwargs(self) -> dict:
        kwargs = super().model_kwargs()
        kwargs.setdefault("out_channels", len(self.components))
        return kwargs

    def init_variables(self, rng, batch):
        params_rng, other = jax.random.split(rng)
        return dict(self.model.init({"params": params_rng, **self.rngs(other)}, batch["x"], batch["length"]))

    def _bucketed(self, fn, batch):
        """``fn(x, lengths)`` on the batch's bucket: one branch per bucket length."""
        x, lengths = batch["x"], batch["length"]
        bucket = jnp.clip(jnp.max(batch["bucket"]), 0, len(self.bucket_lengths) - 1)
        branches = [lambda x, n, steps=steps: fn(x[:, :steps], n) for steps in self.bucket_lengths]
        return jax.lax.switch(bucket, branches, x, lengths)

    # ------------------------------------------------------------------ pure functions
    def loss(self, params, model_state, batch, rng, *, train):
        rngs = self.rngs(rng)

        def fn(x, lengths):
            (recon, _), new_state = self.model.apply({"params": params, **model_state}, x, lengths, train=train,
                                                     rngs=rngs, mutable=["batch_stats"])
            return jnp.mean(masked_l1(recon, x, lengths)), new_state

        l1, new_state = self._bucketed(fn, batch)
        return l1, ({"l1": l1}, {**model_state, **new_state})

    def eval_metrics(self, params, model_state, batch, rng):
        def fn(x, lengths):
            recon, _ = self.model.apply({"params": params, **model_state}, x, lengths)
            mask = (jnp.arange(x.shape[1])[None, :] < lengths[:, None]).astype(x.dtype)[..., None]
            per_channel = jnp.sum(jnp.abs(recon - x) * mask, axis=1) / jnp.maximum(lengths, 1)[:, None]
            return masked_l1(recon, x, lengths), per_channel, masked_l1(jnp.zeros_like(x), x, lengths)

        l1, per_channel, l1_zero = self._bucketed(fn, batch)
        valid = batch["_valid"]
        # the trivial reconstruction (all zeros, the L1 optimum when nothing is predictable) beside it
        per_example = {"loss": l1, "l1_zero_baseline": l1_zero}
        for c, name in enumerate(self.components):
            per_example[f"l1_{name}"] = per_channel[:, c]
        out = pairs(per_example, valid)
        lengths = batch["length"]
        edges = (0,) + self.bucket_lengths
        for lo, hi in zip(edges[:-1], edges[1:]):
            inside = ((lengths > lo) & (lengths <= hi)).astype(jnp.float32) * valid
            out[f"l1_len_{lo + 1}-{hi}"] = (jnp.sum(l1 * inside), jnp.sum(inside))
            out[f"l1_zero_len_{lo + 1}-{hi}"] = (jnp.sum(l1_zero * inside), jnp.sum(inside))
        return out

    # ------------------------------------------------------------------ embeddings and report
    def embed_records(self, params, model_state, recs: Records, *, batch_size: int = 256,
                      progress: bool = False) -> np.ndarray:
        """Embeddings of the usable records of ``recs`` (NaN rows for the others), in record order.
        Records are batched by length (sorted), each batch padded to its bucket length."""
        from tqdm.auto import tqdm

        dim = 2 * int(self.model.hidden) * int(self.model.lstm_layers)
        out = np.full((len(recs), dim), np.nan, np.float32)
        good = recs.good()
        order = good[np.argsort(recs.lengths[good], kind="stable")]
        variables = {"params": params, **model_state}
        encode = jax.jit(lambda v, x, n: self.model.apply(v, x, n, method="encode"))
        for begin in tqdm(range(0, len(order), batch_size), desc="embedding", unit="batch", leave=False,
                          disable=not progress):
            rows = order[begin:begin + batch_size]
            batch = self.make_batch(recs, rows)
            steps = self.bucket_lengths[int(batch["bucket"][0])]
            rows_padded = batch_size  # one compiled shape per bucket length
            x = np.zeros((rows_padded, steps, batch["x"].shape[2]), np.float32)
            x[:len(rows)] = batch["x"][:, :steps]
            lengths = np.zeros(rows_padded, np.int32)
            lengths[:len(rows)] = batch["length"]
            out[rows] = np.asarray(encode(variables, x, lengths))[:len(rows)]
        return out

    def eval_report(self, params, model_state, out_dir) -> dict:
        """embeddings.json (linear probes with majority baselines) and embedding_map.png."""
        from seisjax.metrics.embedding import linear_probe, magnitude_bins, plot_embedding_map

        out_dir = Path(out_dir)
        train, test = self.records("train"), self.records("eval")
        size = min(256, max(len(train), len(test)))
        z_train = self.embed_records(params, model_state, train, batch_size=size)
        z_test = self.embed_records(params, model_state, test, batch_size=size)
        ok_train, ok_test = train.problems == "", test.problems == ""
        report = {"mode": str(self.model.mode), "embedding_dim": int(z_test.shape[1]),
                  "train_records": int(ok_train.sum()), "eval_records": int(ok_test.sum()), "probes": {}}
        edges = tuple(float(e) for e in self.config.eval.magnitude_bins)
        colour = {}

        def probe(key, y_train, y_test, ok_train, ok_test):
            keep_train, keep_test = ok_train & (y_train != ""), ok_test & (y_test != "")
            if len(np.unique(y_train[keep_train])) < 2 or not keep_test.any():
                report["probes"][key] = {"skipped": "fewer than two classes in the training records"}
                return
            report["probes"][key] = linear_probe(z_train[keep_train], y_train[keep_train], z_test[keep_test],
                                                 y_test[keep_test])

        for name in LABELS:
            if name not in train.labels or name not in test.labels:
                continue
            y_train, y_test = train.labels[name], test.labels[name]
            if name == "source_magnitude":
                y_train, y_test = magnitude_bins(y_train, edges), magnitude_bins(y_test, edges)
                key = "magnitude_bin"
            else:
                key = name
            colour[key] = y_test[ok_test]
            probe(key, y_train, y_test, ok_train, ok_test)
        if "magnitude_bin" in colour and "path_distance_class" in colour:
            # magnitude within each distance class: where a class holds one magnitude range (the synthetic
            # teleseismic events are all M >= 5), the plain magnitude probe partly repeats the distance probe
            y_train, y_test = (magnitude_bins(recs.labels["source_magnitude"], edges) for recs in (train, test))
            for cls in np.unique(test.labels["path_distance_class"][ok_test]):
                if cls:
                    probe(f"magnitude_bin_within_{cls}", y_train, y_test,
                          ok_train & (train.labels["path_distance_class"] == cls),
                          ok_test & (test.labels["path_distance_class"] == cls))
        plot_embedding_map(z_test[ok_test], colour, out_dir / "embedding_map.png",
                           title=f"lstm_ae ({self.model.mode}) embeddings, {int(ok_test.sum())} eval records")
        (out_dir / "embeddings.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return report

    def eval_figures(self, params, model_state, batch, out_dir):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = int(min(4, int(np.sum(batch["_valid"]))))
        if n == 0:
            return []
        lengths = np.asarray(batch["length"][:n])
        steps = self.bucket_lengths[self.bucket_index(int(lengths.max()))]
        x = np.asarray(batch["x"][:n, :steps])
        recon, _ = jax.jit(self.model.apply)({"params": params, **model_state}, jnp.asarray(x), jnp.asarray(lengths))
        recon = np.asarray(recon)
        comps = list(self.components)
        fig, axes = plt.subplots(n, len(comps), figsize=(3.2 * len(comps), 1.8 * n), squeeze=False, sharex="row")
        for i in range(n):
            for c, name in enumerate(comps):
                ax = axes[i, c]
                ax.plot(x[i, :lengths[i], c], color="0.3", lw=0.7, label="input")
                ax.plot(recon[i, :lengths[i], c], color="C3", lw=0.7, label="reconstruction")
                if i == 0:
                    ax.set_title(name)
        axes[0, 0].legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        path = Path(out_dir) / "reconstructions.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return [path]
