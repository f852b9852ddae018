"""The conv AE's data: three-component windows around P (:mod:`seisjax.data.windows`) from a dataset,
or small in-memory toy waveforms, and their batch iterators.

Config (``config.data``)::

    source = "synthetic"      # "synthetic": the generator's records (data.synthetic), made in
                              #   <workdir>/data (or data.path) when absent; "dataset": a dataset at
                              #   data.path; "toy": small in-memory waveforms (tests)
    path = ""                 # dataset folder
    sampling_rate = 100.0     # Hz; traces at other rates are resampled to it
    window = 512              # samples per window (divisible by 2**levels of the model)
    pre_p = 128               # samples before the P arrival
    components = "ZNE"
    train_split = "train"
    eval_split = "dev"        # used when the dataset has such rows; else every row
    prefetch = 2
    cache = False             # make the training windows once and keep them in memory
    toy_examples, toy_length, toy_seed   # the toy waveforms (80 % train, 20 % eval)

Batches: ``{"x": (B, window, C) float32}``.
"""

from __future__ import annotations

import warnings

import numpy as np

from seisjax.data.batches import ArrayBatchIterator, BatchIterator
from seisjax.data.dataset import Dataset
from seisjax.data.resolve import resolve_dataset
from seisjax.data.windows import P_COLUMN, dataset_p_windows, missing_p_picks, p_windows, window_and_normalise
from seisjax.errors import InputError
from seisjax.train.task import array_fingerprint, dataset_fingerprint

__all__ = ["ConvAEData", "toy_waveforms"]

#: the most memory that data.cache may fill with windows
_CACHE_LIMIT_BYTES = 4 * 2 ** 30


def toy_waveforms(n: int, *, components: int = 3, length: int = 256, seed: int = 0,
                  sampling_rate: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Small synthetic records for tests: noise, then at a random P sample a damped sinusoid with a
    random frequency (4-6 Hz) and per-component amplitude. Returns ``(waveforms (n, C, length),
    p_samples (n,))``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / sampling_rate
    p = rng.integers(length // 4, length // 2, size=n)
    freq = rng.uniform(4.0, 6.0, size=(n, 1, 1))
    decay = rng.uniform(4.0, 6.0, size=(n, 1, 1))
    amp = rng.normal(size=(n, components, 1))
    tau = np.clip(t[None, None, :] - (p / sampling_rate)[:, None, None], 0.0, None)
    onset = (t[None, None, :] >= (p / sampling_rate)[:, None, None])
    signal = amp * onset * np.sin(2 * np.pi * freq * tau) * np.exp(-decay * tau)
    noise = 0.05 * rng.normal(size=(n, components, length))
    return (signal + noise).astype(np.float32), p.astype(np.int64)


def _with_p_picks(dataset, components: str):
    """``dataset`` without the traces that lack a P pick (named in a warning); an error when it has
    no P column or another number of components than the config."""
    missing = missing_p_picks(dataset, reader="the autoencoder")
    if missing.any():
        meta = dataset.metadata
        names = meta.loc[missing, "trace_name"].head(5).tolist() if "trace_name" in meta else []
        warnings.warn(f"{dataset.path}: {int(missing.sum())} trace(s) without {P_COLUMN} are left "
                      f"out (e.g. {', '.join(map(str, names))})", stacklevel=3)
    order = dataset.component_order
    if order and len(order) != len(components):
        raise InputError(f"{dataset.path}: component order {order!r} has {len(order)} components, "
                         f"the config expects {components!r}")
    return dataset.select(~missing) if missing.any() else dataset


class ConvAEData:
    """The windows of one run's config (see the module docstring): its batch iterators and the
    description of its evaluation data. ``data_path`` replaces the config's dataset (``eval --data``)."""

    def __init__(self, config, *, workdir=None, data_path=None):
        self.config = config
        data = config.data
        self.window, self.pre_p = int(data.window), int(data.pre_p)
        self.toy, self.dataset = None, None
        self.source = data.source if data_path is None else "dataset"
        if self.source == "toy":
            waveforms, p = toy_waveforms(int(data.toy_examples), length=int(data.toy_length),
                                         components=len(data.components), seed=int(data.toy_seed))
            n_train = int(round(0.8 * len(p)))
            self.toy = {"train": {"waveforms": waveforms[:n_train], "p": p[:n_train]},
                        "eval": {"waveforms": waveforms[n_train:], "p": p[n_train:]}}
        elif self.source in ("synthetic", "dataset"):
            dataset = Dataset(resolve_dataset(data, workdir=workdir, data_path=data_path))
            self.dataset = _with_p_picks(dataset, str(data.components))
        else:
            raise InputError(f"data.source = {self.source!r}: expected 'synthetic', 'dataset' or 'toy'")

    def _split(self, name: str, *, for_eval: bool):
        ds = self.dataset
        if "split" in ds.metadata.columns and (ds.metadata["split"] == name).any():
            return ds.split(name), name
        if for_eval:
            return ds, "all"
        raise InputError(f"{ds.path}: no rows with split == {name!r} to train on")

    def _dataset_transform(self, waveforms, meta):
        return {"x": p_windows(waveforms, meta, sampling_rate=float(self.config.data.sampling_rate),
                               window=self.window, pre_p=self.pre_p, default_rate=self.dataset.sampling_rate)}

    def _array_transform(self, batch):
        return {"x": window_and_normalise(batch["waveforms"], batch["p"], window=self.window, pre_p=self.pre_p)}

    def _cached_windows(self, dataset) -> dict[str, np.ndarray]:
        """Every window of ``dataset``, made once (data.cache): epochs then read memory, not HDF5.
        The iterator's order is the same as streaming's, so training sees the same batches."""
        size = len(dataset) * self.window * len(self.config.data.components) * 4
        if size > _CACHE_LIMIT_BYTES:
            raise InputError(f"data.cache: the {len(dataset)} windows would take {size / 2 ** 30:.1f} GiB; "
                             "set --config.data.cache=false to stream them")
        return {"x": dataset_p_windows(dataset, sampling_rate=float(self.config.data.sampling_rate),
                                       window=self.window, pre_p=self.pre_p)}

    def train_batches(self, *, process_index, process_count):
        config = self.config
        common = dict(global_batch_size=int(config.batch_size), seed=int(config.seed),
                      shuffle=True, drop_remainder=True, process_index=process_index,
                      process_count=process_count, prefetch=int(config.data.prefetch))
        if self.toy is not None:
            return ArrayBatchIterator(self.toy["train"], transform=self._array_transform, **common)
        split, _ = self._split(config.data.train_split, for_eval=False)
        if config.data.get("cache", False):
            return ArrayBatchIterator(self._cached_windows(split), **common)
        return BatchIterator(split, transform=self._dataset_transform, **common)

    def eval_batches(self, *, process_index, process_count):
        common = dict(global_batch_size=int(self.config.eval.batch_size), seed=0, shuffle=False,
                      drop_remainder=False, num_epochs=1, process_index=process_index,
                      process_count=process_count, prefetch=int(self.config.data.prefetch))
        if self.toy is not None:
            return ArrayBatchIterator(self.toy["eval"], transform=self._array_transform, **common)
        split, _ = self._split(self.config.data.eval_split, for_eval=True)
        return BatchIterator(split, transform=self._dataset_transform, **common)

    def info(self) -> dict:
        """What the evaluation runs on (the Task contract's ``data_info``)."""
        if self.toy is not None:
            return {"source": "toy", "split": "toy-eval", "examples": int(len(self.toy["eval"]["p"])),
                    "fingerprint": array_fingerprint(self.toy["eval"])}
        split, used = self._split(self.config.data.eval_split, for_eval=True)
        return {"source": self.source, "split": used, "examples": len(split),
                "fingerprint": dataset_fingerprint(split)}

    def close(self):
        if self.dataset is not None:
            self.dataset.close()
