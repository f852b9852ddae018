"""Waveform autoencoding: reconstruct fixed-length, per-trace normalised windows around P.

Config (``config.data``)::

    source = "synthetic"      # "synthetic": the generator's `local` data, made in <workdir>/data
                              #   (or data.path) when absent; "dataset": a dataset at data.path;
                              #   "toy": small in-memory waveforms (tests)
    path = ""                 # dataset folder
    synthetic_events = 200    # size and seed of generated synthetic data
    synthetic_seed = 0
    sampling_rate = 100.0     # Hz; traces at other rates are resampled to it
    window = 512              # samples per window (divisible by 2**levels of the model)
    pre_p = 128               # samples before the P arrival
    train_split = "train"
    eval_split = "dev"        # used when the dataset has such rows; else every row
    prefetch = 2
    cache = False             # make the training windows once and keep them in memory

Each trace is resampled (polyphase) to ``sampling_rate`` when its own rate differs (``trace_sampling_rate_hz``;
the synthetic `local` data mixes 100 Hz and 40 Hz instruments), then a window is cut at
``trace_p_arrival_sample - pre_p`` (clipped into the trace),
each component is demeaned and the three together divided by their largest absolute value, so the
relative amplitudes of the components stay. Batches: ``{"x": (B, window, C) float32}``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seisjax.data.dataset import trace_names
from seisjax.data.resolve import resolve_dataset
from seisjax.errors import InputError
from seisjax.conv_ae.model import MODELS
from seisjax.train.task import Task, array_fingerprint, dataset_fingerprint, pairs

__all__ = ["AutoencoderTask", "window_and_normalise", "toy_waveforms"]

P_COLUMN = "trace_p_arrival_sample"


# ----------------------------------------------------------------------------- host-side data
def window_and_normalise(waveforms: np.ndarray, p_samples: np.ndarray, *, window: int, pre_p: int,
                         names=None) -> np.ndarray:
    """``(B, C, W)`` traces and P samples -> ``(B, window, C)`` float32 windows, demeaned per
    component and scaled by the trace's largest absolute value. Vectorised over the batch.

    A trace with NaN/inf samples becomes zeros, with a warning naming it (one bad trace never
    stops a run, and never passes unnoticed)."""
    waveforms = np.asarray(waveforms, dtype=np.float32)
    batch, _, length = waveforms.shape
    if length < window:
        raise InputError(f"traces of {length} samples are shorter than the window of {window}")
    starts = np.clip(np.round(np.asarray(p_samples, dtype=np.float64)).astype(np.int64) - pre_p, 0, length - window)
    idx = starts[:, None, None] + np.arange(window)[None, None, :]
    cut = np.take_along_axis(waveforms, np.broadcast_to(idx, (batch, waveforms.shape[1], window)), axis=2)
    bad = ~np.isfinite(cut).all(axis=(1, 2))
    if bad.any():
        which = [str(names[i]) if names is not None else f"row {i}" for i in np.flatnonzero(bad)]
        warnings.warn(f"non-finite samples in trace(s) {', '.join(which)}: replaced by zeros", stacklevel=2)
        cut[bad] = 0.0
    cut -= cut.mean(axis=2, keepdims=True)
    scale = np.abs(cut).max(axis=(1, 2), keepdims=True)
    cut /= np.where(scale > 0, scale, 1.0)
    return np.ascontiguousarray(cut.transpose(0, 2, 1))


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


# ----------------------------------------------------------------------------- the task
class AutoencoderTask(Task):
    """Mean-squared reconstruction of normalised windows (``config.model``: any model mapping
    ``(B, W, C)`` to ``(B, W, C)``, by default ``conv_ae``)."""

    name = "autoencoder"
    models = MODELS

    def __init__(self, config, *, workdir=None, data_path=None):
        super().__init__(config, workdir=workdir, data_path=data_path)
        data = config.data
        self.window, self.pre_p = int(data.window), int(data.pre_p)
        self._toy = None
        self._dataset = None
        self._eval_split_used = None
        source = data.source if data_path is None else "dataset"
        if source == "toy":
            waveforms, p = toy_waveforms(int(data.toy_examples), length=int(data.toy_length),
                                         components=len(data.components), seed=int(data.toy_seed))
            n_train = int(round(0.8 * len(p)))
            self._toy = {"train": {"waveforms": waveforms[:n_train], "p": p[:n_train]},
                         "eval": {"waveforms": waveforms[n_train:], "p": p[n_train:]}}
        elif source in ("synthetic", "dataset"):
            from seisjax.data.dataset import Dataset

            self._dataset = Dataset(resolve_dataset(data, workdir=workdir, data_path=data_path))
            self._check_dataset(self._dataset)
        else:
            raise InputError(f"data.source = {source!r}: expected 'synthetic', 'dataset' or 'toy'")
        self.source = source

    # ------------------------------------------------------------------ data
    def _check_dataset(self, dataset):
        meta = dataset.metadata
        if P_COLUMN not in meta.columns:
            raise InputError(f"{dataset.path}: metadata has no {P_COLUMN} column; the autoencoder "
                             "windows each trace around its P arrival")
        missing = meta[P_COLUMN].isna()
        if missing.any():
            names = meta.loc[missing, "trace_name"].head(5).tolist() if "trace_name" in meta else []
            warnings.warn(f"{dataset.path}: {int(missing.sum())} trace(s) without {P_COLUMN} are left "
                          f"out (e.g. {', '.join(map(str, names))})", stacklevel=2)
            self._dataset = dataset.select(~missing.to_numpy())
        order = dataset.component_order
        if order and len(order) != len(self.config.data.components):
            raise InputError(f"{dataset.path}: component order {order!r} has {len(order)} components, "
                             f"the config expects {self.config.data.components!r}")

    def _split(self, name: str, *, for_eval: bool):
        ds = self._dataset
        if "split" in ds.metadata.columns and (ds.metadata["split"] == name).any():
            return ds.split(name), name
        if for_eval:
            return ds, "all"
        raise InputError(f"{ds.path}: no rows with split == {name!r} to train on")

    def _dataset_transform(self, waveforms, meta):
        """Raw traces (zero-padded to the batch's longest) -> windows at data.sampling_rate.

        Traces are grouped by sampling rate (one vectorised call per group, usually one or two per
        batch). A group at another rate has only a segment around P resampled (the window plus a
        quarter window each side, so the filter's edge effects fall outside the window),
        not the whole trace."""
        target = float(self.config.data.sampling_rate)
        n = len(meta)
        rates = (meta["trace_sampling_rate_hz"].to_numpy(dtype=np.float64) if "trace_sampling_rate_hz" in meta
                 else np.full(n, self._dataset.sampling_rate or target, dtype=np.float64))
        names = trace_names(meta)
        bad = ~np.isfinite(rates) | (rates <= 0)
        if bad.any():
            raise InputError(f"trace(s) {', '.join(map(str, names[bad][:5]))}: no valid sampling rate")
        p = meta[P_COLUMN].to_numpy(dtype=np.float64)
        out = np.empty((n, self.window, waveforms.shape[1]), np.float32)
        for rate in np.unique(rates):
            rows = np.flatnonzero(rates == rate)
            group, p_group = waveforms[rows], p[rows]
            if rate != target:
                group, p_group = self._resampled_segment(group, p_group, float(rate), target)
            out[rows] = window_and_normalise(group, p_group, window=self.window, pre_p=self.pre_p,
                                             names=names[rows])
        return {"x": out}

    def _resampled_segment(self, waveforms, p, rate: float, target: float):
        """Cut ``[P - pre - margin, P - pre + window + margin)`` (in target samples) at the trace's
        own rate, zero outside the trace, and resample it to ``target`` (polyphase filter, exact
        output length). Returns the resampled segments and the P sample within them."""
        from fractions import Fraction

        from scipy.signal import resample_poly  # imported only when a dataset needs it

        ratio = Fraction(rate / target).limit_denominator(1000)  # original samples per target sample
        den = ratio.denominator
        margin = max(self.window // 4, den)
        # Lengths and offsets in target samples are multiples of `den`, so that they are whole
        # numbers of original samples and P falls on the resampled grid.
        length = -(-(self.window + 2 * margin) // den) * den
        lead = int(round((self.pre_p + margin) / den)) * den  # target samples from segment start to P
        n_orig = int(length * ratio)
        start = np.rint(p).astype(np.int64) - int(lead * ratio)
        index = start[:, None] + np.arange(n_orig)
        inside = (index >= 0) & (index < waveforms.shape[-1])
        segment = np.take_along_axis(waveforms, np.clip(index, 0, waveforms.shape[-1] - 1)[:, None, :], axis=2)
        segment = np.where(inside[:, None, :], segment, 0.0)
        resampled = resample_poly(segment, ratio.denominator, ratio.numerator, axis=-1)[..., :length]
        return resampled, np.full(len(p), float(lead)) + (p - np.rint(p)) / float(ratio)

    def _array_transform(self, batch):
        return {"x": window_and_normalise(batch["waveforms"], batch["p"], window=self.window, pre_p=self.pre_p)}

    def train_batches(self, *, process_index, process_count):
        from seisjax.data.batches import ArrayBatchIterator, BatchIterator

        common = dict(global_batch_size=int(self.config.batch_size), seed=int(self.config.seed),
                      shuffle=True, drop_remainder=True, process_index=process_index,
                      process_count=process_count, prefetch=int(self.config.data.prefetch))
        if self._toy is not None:
            return ArrayBatchIterator(self._toy["train"], transform=self._array_transform, **common)
        split, _ = self._split(self.config.data.train_split, for_eval=False)
        if self.config.data.get("cache", False):
            return ArrayBatchIterator(self._windows(split), **common)
        return BatchIterator(split, transform=self._dataset_transform, **common)

    def _windows(self, dataset, chunk: int = 1024) -> dict[str, np.ndarray]:
        """Every window of ``dataset``, made once (data.cache): epochs then read memory, not HDF5.
        The iterator's order is the same as streaming's, so training sees the same batches."""
        from tqdm.auto import tqdm

        n = len(dataset)
        size = n * self.window * len(self.config.data.components) * 4
        if size > 4 * 2 ** 30:
            raise InputError(f"data.cache: the {n} windows would take {size / 2 ** 30:.1f} GiB; "
                             "set --config.data.cache=false to stream them")
        parts = []
        for begin in tqdm(range(0, n, chunk), desc="caching windows", unit="chunk", leave=False,
                          disable=n <= chunk):
            rows = list(range(begin, min(begin + chunk, n)))
            parts.append(self._dataset_transform(dataset.get_waveforms(rows), dataset.metadata.iloc[rows])["x"])
        return {"x": np.concatenate(parts)}

    def eval_batches(self, *, process_index, process_count):
        from seisjax.data.batches import ArrayBatchIterator, BatchIterator

        common = dict(global_batch_size=int(self.config.eval.batch_size), seed=0, shuffle=False,
                      drop_remainder=False, num_epochs=1, process_index=process_index,
                      process_count=process_count, prefetch=int(self.config.data.prefetch))
        if self._toy is not None:
            self._eval_split_used = "toy-eval"
            return ArrayBatchIterator(self._toy["eval"], transform=self._array_transform, **common)
        split, self._eval_split_used = self._split(self.config.data.eval_split, for_eval=True)
        return BatchIterator(split, transform=self._dataset_transform, **common)

    def data_info(self) -> dict:
        if self._toy is not None:
            return {"source": "toy", "split": "toy-eval", "examples": int(len(self._toy["eval"]["p"])),
                    "fingerprint": array_fingerprint(self._toy["eval"])}
        split, used = self._split(self.config.data.eval_split, for_eval=True)
        return {"source": self.source, "split": used, "examples": len(split),
                "fingerprint": dataset_fingerprint(split)}

    def close(self):
        if self._dataset is not None:
            self._dataset.close()

    # ------------------------------------------------------------------ model
    def model_kwargs(self) -> dict:
        kwargs = super().model_kwargs()
        kwargs.setdefault("length", self.window)
        kwargs.setdefault("out_channels", len(self.config.data.components))
        return kwargs

    # ------------------------------------------------------------------ pure functions
    def loss(self, params, model_state, batch, rng, *, train):
        x = batch["x"]
        recon = self.model.apply({"params": params, **model_state}, x, rngs=self.rngs(rng))
        mse = jnp.mean(jnp.square(recon - x))
        return mse, ({"mse": mse}, model_state)

    def eval_metrics(self, params, model_state, batch, rng):
        x = batch["x"]
        recon = self.model.apply({"params": params, **model_state}, x, rngs=self.rngs(rng))
        err = jnp.square(recon - x)
        per_example = {"loss": err.mean(axis=(1, 2))}
        for c, name in enumerate(self.config.data.components):
            per_example[f"mse_{name}"] = err[..., c].mean(axis=1)
        # Pearson correlation of each trace with its reconstruction (components concatenated).
        xc = x - x.mean(axis=(1, 2), keepdims=True)
        rc = recon - recon.mean(axis=(1, 2), keepdims=True)
        denom = jnp.sqrt(jnp.sum(xc ** 2, axis=(1, 2)) * jnp.sum(rc ** 2, axis=(1, 2)))
        per_example["correlation"] = jnp.sum(xc * rc, axis=(1, 2)) / jnp.maximum(denom, 1e-12)
        return pairs(per_example, batch["_valid"])

    # ------------------------------------------------------------------ figures
    def eval_figures(self, params, model_state, batch, out_dir):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = int(min(4, int(np.sum(batch["_valid"]))))
        if n == 0:
            return []
        x = np.asarray(batch["x"][:n])
        recon = np.asarray(jax.jit(self.model.apply)({"params": params, **model_state}, jnp.asarray(x)))
        comps = list(self.config.data.components)
        fig, axes = plt.subplots(n, len(comps), figsize=(3.2 * len(comps), 1.8 * n), squeeze=False,
                                 sharex=True, sharey=True)
        for i in range(n):
            for c, name in enumerate(comps):
                ax = axes[i, c]
                ax.plot(x[i, :, c], color="0.3", lw=0.8, label="input")
                ax.plot(recon[i, :, c], color="C3", lw=0.8, label="reconstruction")
                if i == 0:
                    ax.set_title(name)
        axes[0, 0].legend(fontsize=7, loc="upper right")
        for ax in axes[-1]:
            ax.set_xlabel("sample")
        fig.subplots_adjust(left=0.06, right=0.98, bottom=0.1, top=0.92, wspace=0.08, hspace=0.12)
        path = Path(out_dir) / "reconstructions.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return [path]
