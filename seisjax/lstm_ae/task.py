"""LSTM autoencoding of whole variable-length multichannel records (task ``lstm_ae``): loss, metrics,
evaluation. The records, their normalisation and the length-bucketed batches are
:mod:`seisjax.lstm_ae.data`'s; the model is :mod:`seisjax.lstm_ae.model`'s.

Because the engine compiles ONE train step ahead of time, batches always have ``data.max_length``
steps and say which length bucket they are (``bucket``); the loss picks the bucket's branch with
``jax.lax.switch``, each branch running the model on the first ``bucket_lengths[k]`` steps only, so
short batches cost what their bucket length costs.

Loss: L1 between reconstruction and input over valid steps, summed over channels, divided by the
record's own length, averaged over the batch (:func:`masked_l1`).

Evaluation: ``loss`` and the same error per length bucket (``l1_len_<lo>-<hi>``, (sum, count)
pairs; the all-zero reconstruction's beside it as ``l1_zero_len_<lo>-<hi>``), per channel, and
``l1_zero_baseline``: the error of an all-zero reconstruction (what L1 converges to when the model
predicts nothing); ``eval_report`` writes ``embeddings.json`` with linear probes
(:func:`seisjax.metrics.embedding.linear_probe`: trained on the training split, scored on the
evaluation split, beside the majority-class baseline) for ``path_distance_class``, a magnitude bin
(``eval.magnitude_bins``) and the magnitude bin within each distance class
(``magnitude_bin_within_<class>``), and ``embedding_map.png`` (2-D PCA, and UMAP or t-SNE where
installed, coloured by that metadata).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from seisjax.lstm_ae.data import RecordData, Records
from seisjax.lstm_ae.model import MODELS
from seisjax.metrics.embedding import linear_probe, magnitude_bins, plot_embedding_map
from seisjax.train.task import Task, pairs

__all__ = ["LSTMAETask", "masked_l1"]

LABELS = ("path_distance_class", "source_magnitude")


def masked_l1(recon, x, lengths):
    """Per record: ``sum_{t < length, c} |recon - x| / length`` (``(B,)``; 0 for length 0)."""
    mask = (jnp.arange(x.shape[1])[None, :] < lengths[:, None]).astype(x.dtype)
    total = jnp.sum(jnp.abs(recon - x) * mask[..., None], axis=(1, 2))
    return total / jnp.maximum(lengths, 1).astype(x.dtype)


# ============================================================================ the task
class LSTMAETask(Task):
    """See the module docstring."""

    name = "lstm_ae"
    models = MODELS

    rng_streams = ("dropout",)

    def __init__(self, config, *, workdir=None, data_path=None):
        super().__init__(config, workdir=workdir, data_path=data_path)
        self.data = RecordData(config.data, pools=config.model.get("pools", (2, 2, 2)), workdir=workdir,
                               data_path=data_path)

    # ------------------------------------------------------------------ data
    def train_batches(self, *, process_index, process_count):
        return self.data.train_batches(batch_size=int(self.config.batch_size), seed=int(self.config.seed),
                                       process_index=process_index, process_count=process_count)

    def eval_batches(self, *, process_index, process_count):
        return self.data.eval_batches(batch_size=int(self.config.eval.batch_size), process_index=process_index,
                                      process_count=process_count)

    def data_info(self) -> dict:
        return self.data.data_info()

    def close(self):
        self.data.close()

    # ------------------------------------------------------------------ model
    def model_kwargs(self) -> dict:
        kwargs = super().model_kwargs()
        kwargs.setdefault("out_channels", len(self.data.components))
        return kwargs

    def init_variables(self, rng, batch):
        params_rng, other = jax.random.split(rng)
        return dict(self.model.init({"params": params_rng, **self.rngs(other)}, batch["x"], batch["length"]))

    def _bucketed(self, fn, batch):
        """``fn(x, lengths)`` on the batch's bucket: one branch per bucket length."""
        x, lengths = batch["x"], batch["length"]
        buckets = self.data.bucket_lengths
        bucket = jnp.clip(jnp.max(batch["bucket"]), 0, len(buckets) - 1)
        branches = [lambda x, n, steps=steps: fn(x[:, :steps], n) for steps in buckets]
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
        for c, name in enumerate(self.data.components):
            per_example[f"l1_{name}"] = per_channel[:, c]
        out = pairs(per_example, valid)
        lengths = batch["length"]
        edges = (0,) + self.data.bucket_lengths
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
        out = np.full((len(recs), self.model.embedding_dim), np.nan, np.float32)
        good = recs.good()
        order = good[np.argsort(recs.lengths[good], kind="stable")]
        variables = {"params": params, **model_state}
        encode = jax.jit(lambda v, x, n: self.model.apply(v, x, n, method="encode"))
        for begin in tqdm(range(0, len(order), batch_size), desc="embedding", unit="batch", leave=False,
                          disable=not progress):
            rows = order[begin:begin + batch_size]
            batch = self.data.make_batch(recs, rows)
            steps = self.data.bucket_lengths[int(batch["bucket"][0])]
            rows_padded = batch_size  # one compiled shape per bucket length
            x = np.zeros((rows_padded, steps, batch["x"].shape[2]), np.float32)
            x[:len(rows)] = batch["x"][:, :steps]
            lengths = np.zeros(rows_padded, np.int32)
            lengths[:len(rows)] = batch["length"]
            out[rows] = np.asarray(encode(variables, x, lengths))[:len(rows)]
        return out

    def eval_report(self, params, model_state, out_dir) -> dict:
        """embeddings.json (linear probes with majority baselines) and embedding_map.png."""
        out_dir = Path(out_dir)
        train, test = self.data.records("train"), self.data.records("eval")
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
        """reconstructions.png: the first (at most) four evaluation records and their reconstructions."""
        n = int(min(4, int(np.sum(batch["_valid"]))))
        if n == 0:
            return []
        lengths = np.asarray(batch["length"][:n])
        steps = self.data.bucket_lengths[self.data.bucket_index(int(lengths.max()))]
        x = np.asarray(batch["x"][:n, :steps])
        recon, _ = jax.jit(self.model.apply)({"params": params, **model_state}, jnp.asarray(x), jnp.asarray(lengths))
        recon = np.asarray(recon)
        comps = list(self.data.components)
        fig = Figure(figsize=(3.2 * len(comps), 1.8 * n))
        axes = fig.subplots(n, len(comps), squeeze=False, sharex="row")
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
        return [path]
