"""The lstm_ae family's records: every trace of a dataset as one whole variable-length record, its
normalisation, and length-bucketed batches.

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
(:meth:`RecordData._prepare_rows`), so a batch, and the normalisation statistics, are the same arrays
bit for bit in both modes and a resumed run sees the same batches. "auto" keeps a split in memory
when ``rows x data.max_length x channels x 4`` bytes (the float32 records if each were
``max_length`` long: an upper bound known before reading) is below ``data.memory_limit_mb`` MiB
(default 2048), and streams it otherwise. ``embed`` follows the same rule for the dataset it embeds
and keeps only the embeddings. Toy records are always in memory. A row that the first pass found
usable but a batch cannot prepare, or finds at another length (the files changed meanwhile), raises
an :class:`~seisjax.errors.InputError` naming the trace and saying that the dataset changed since
the first pass: the planned batches no longer exist, so the job stops rather than train on other
data. Training batches are made ``data.prefetch`` ahead in a background thread (reading streamed
records overlaps the training step).

Batches. Records are bucketed by length: each epoch shuffles the records (``seed``, epoch), cuts
the order into chunks of ``data.bucket_chunk`` batches, sorts each chunk by length, cuts it into
batches and shuffles the batches. A batch is padded to the smallest of ``data.bucket_lengths``
(multiples of the model's pooling reduction ``prod(model.pools)``, the last = ``data.max_length``)
that holds its longest record. Because the engine compiles ONE train step ahead of time, arrays
always have ``max_length`` steps and the batch says which bucket it is (``bucket``): batch
``{"x": (B, max_length, C), "length": (B,), "bucket": (B,)}``. The iterator is resumable
(``state()``/``restore()`` as in :mod:`seisjax.data.batches`).

Length curriculum (``data.length_schedule``, ``(start_step, max_length)`` pairs, empty by default):
from each start step on, training records are cropped to their first ``max_length`` samples (from
``pre_p`` before P), e.g. ``((0, 128), (250, 256), (500, 512))``; the crop follows the iterator's
position, so a resumed run crops as the uninterrupted one. Evaluation always sees whole records.
"""

from __future__ import annotations

import json
import warnings
from fractions import Fraction
from pathlib import Path

import jax
import numpy as np
import pandas as pd
from scipy.signal import resample_poly
from tqdm.auto import tqdm

from seisjax.data.batches import PrefetchEnd, Prefetcher, PrefetchFailed
from seisjax.data.dataset import Dataset, trace_names
from seisjax.data.resolve import resolve_dataset
from seisjax.errors import InputError
from seisjax.train.task import array_fingerprint, dataset_fingerprint

__all__ = ["BucketBatchIterator", "NORMALISATION_FILE", "RecordData", "Records", "toy_records"]

NORMALISATION_FILE = "normalisation.json"
P_COLUMN, S_COLUMN = "trace_p_arrival_sample", "trace_s_arrival_sample"


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
    if column not in meta:
        return np.full(n, np.nan)
    return pd.to_numeric(meta[column], errors="coerce").to_numpy(np.float64)


# ============================================================================ batches
class BucketBatchIterator:
    """Length-bucketed batches of :class:`Records`, resumable and sharded like
    :class:`seisjax.data.batches.BatchIterator` (see the module docstring for the order).

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


def _length_schedule(schedule, max_length: int) -> tuple[tuple[int, int], ...]:
    """Validated ``data.length_schedule``: ``(start_step, max_length)`` pairs, increasing steps."""
    pairs_ = tuple((int(a), int(b)) for a, b in (schedule or ()))
    starts = [a for a, _ in pairs_]
    if starts != sorted(set(starts)) or any(a < 0 for a in starts) or any(
            not 0 < n <= max_length for _, n in pairs_):
        raise InputError(f"data.length_schedule {pairs_}: (start_step, max_length) pairs with increasing "
                         f"start steps >= 0 and lengths in (0, data.max_length = {max_length}]")
    return pairs_


# ============================================================================ a config's records
class RecordData:
    """The records of a config's ``data`` section (module docstring): the dataset it resolves to, or
    toy records; each split's prepared :class:`Records`, the normalisation statistics and batches.
    ``pools``: the model's pooling factors, whose product the bucket lengths must be a multiple of;
    ``workdir``: where ``normalisation.json`` is kept; ``data_path``: a dataset replacing the
    config's (``eval --data``)."""

    def __init__(self, data, *, pools, workdir=None, data_path=None):
        self.settings = data
        self.workdir = None if workdir is None else Path(workdir)
        self.components = str(data.components)
        self.max_length = int(data.max_length)
        self.bucket_lengths = tuple(int(b) for b in data.bucket_lengths)
        pools = tuple(int(p) for p in pools)
        unit = int(np.prod(pools))  # input steps per pooled step
        if self.max_length % unit or any(b % unit for b in self.bucket_lengths) or list(
                self.bucket_lengths) != sorted(set(self.bucket_lengths)) or self.bucket_lengths[-1] != self.max_length:
            raise InputError(f"data.bucket_lengths {self.bucket_lengths}: increasing multiples of {unit} (the "
                             f"product of model.pools {pools}) ending at data.max_length = {self.max_length}")
        self.length_schedule = _length_schedule(data.get("length_schedule", ()), self.max_length)
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
        self.dataset = None
        self._records: dict[str, Records] = {}
        if self.source == "toy":
            toy = toy_records(int(data.toy_examples), channels=len(self.components), seed=int(data.toy_seed),
                              min_length=int(data.min_length), max_length=self.max_length)
            n_train = int(round(0.75 * len(toy)))
            self._records = {"train": toy.subset(np.arange(n_train)), "eval": toy.subset(np.arange(n_train, len(toy)))}
        elif self.source in ("synthetic", "dataset"):
            self.dataset = Dataset(resolve_dataset(data, workdir=workdir, data_path=data_path))
            self._check_components(self.dataset)
        else:
            raise InputError(f"data.source = {self.source!r}: expected 'synthetic', 'dataset' or 'toy'")
        self._norm = None

    # ------------------------------------------------------------------ records
    def _component_index(self, dataset) -> list[int | None]:
        order = dataset.component_order or ""
        return [order.index(c) if c in order else None for c in self.components]

    def _check_components(self, dataset):
        """Dataset-level and per-trace (``trace_components``) missing components under "error"."""
        if str(self.settings.missing_components) != "error":
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
        data = self.settings
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
        data = self.settings
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
        ds = self.dataset
        if split and "split" in ds.metadata.columns and (ds.metadata["split"] == split).any():
            return ds.split(split), split
        if for_eval or not split:
            return ds, "all"
        raise InputError(f"{ds.path}: no rows with split == {split!r} to train on")

    def records(self, which: str) -> Records:
        """The prepared records of the training ("train") or evaluation ("eval") split (made once)."""
        if which not in self._records:
            split = self.settings.train_split if which == "train" else self.settings.eval_split
            ds, _ = self._split_dataset(str(split), for_eval=which == "eval")
            recs = self.prepare(ds)
            bad = recs.problems != ""
            if bad.any():
                shown = "; ".join(f"{nm}: {pr}" for nm, pr in list(zip(recs.names[bad], recs.problems[bad]))[:5])
                warnings.warn(f"{self.dataset.path}: {int(bad.sum())} of {len(recs)} {which} record(s) left out "
                              f"({shown}{'; ...' if bad.sum() > 5 else ''})", stacklevel=2)
            self._records[which] = recs
        return self._records[which]

    # ------------------------------------------------------------------ normalisation
    def normalisation(self) -> dict:
        """Per-channel ``mean`` and ``std`` over every valid sample of the training records, read from
        ``<workdir>/normalisation.json`` when there, else computed and written there."""
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

    def train_batches(self, *, batch_size: int, seed: int, process_index: int, process_count: int):
        """The resumable, prefetched, length-cropped training batches of the usable training records."""
        recs = self.records("train")
        good = recs.good()
        sub = recs.subset(good)
        self.normalisation()

        def make(rows, glob, position):
            return self.make_batch(sub, rows, glob, limit=self.length_limit(position))

        return BucketBatchIterator(sub.lengths, global_batch_size=batch_size, seed=seed, make_batch=make,
                                   chunk_batches=int(self.settings.bucket_chunk),
                                   process_index=process_index, process_count=process_count,
                                   prefetch=int(self.settings.get("prefetch", 2)))

    def eval_batches(self, *, batch_size: int, process_index: int, process_count: int):
        """Every usable evaluation record once, in length order."""
        recs = self.records("eval")
        sub = recs.subset(recs.good())
        self.normalisation()
        if len(sub) == 0:
            raise InputError("no usable evaluation records")
        return BucketBatchIterator(sub.lengths, global_batch_size=batch_size, seed=0,
                                   shuffle=False, num_epochs=1, chunk_batches=10 ** 9, drop_remainder=False,
                                   make_batch=lambda rows, glob, position: self.make_batch(sub, rows, glob),
                                   process_index=process_index, process_count=process_count)

    def data_info(self) -> dict:
        recs = self.records("eval")
        if self.dataset is None:
            return {"source": self.source, "split": "toy-eval", "examples": len(recs),
                    "fingerprint": array_fingerprint({"lengths": recs.lengths,
                                                      "x": np.concatenate([r for r in recs.records if r is not None])})}
        ds, used = self._split_dataset(str(self.settings.eval_split), for_eval=True)
        return {"source": self.source, "split": used, "examples": len(ds), "usable": int(len(recs.good())),
                "fingerprint": dataset_fingerprint(ds)}

    def close(self):
        if self.dataset is not None:
            self.dataset.close()
