"""SymAE training: datapoints of ``ntau`` traces drawn from (event, pixel) groups.

Config (``config.data``; the preparation keys are those of
:data:`seisjax.symae.data.PREP_DEFAULTS`)::

    source = "synthetic"          # "synthetic": teleseismic-p data made in <workdir>/data (or data.path)
                                  #   when absent; "dataset": a dataset at data.path
    path = ""
    synthetic_events = 100        # size, seed and config overrides of generated data
    synthetic_seed = 0
    synthetic_overrides = ()      # e.g. ("stations.n_arrays=12", ...)
    pick_column, component, sampling_rate, window, pre_p, trim_start, taper_alpha, group_by, nside,
    min_stations, test_fraction, split_seed, polarity_max_lag, snr_column, events_split
    ntau = 20                     # traces per datapoint
    draws_per_group = 1           # datapoints per group per epoch
    prefetch = 2

``config.task``: ``gamma`` (100), ``beta_nuisance``, ``beta_coherent``, ``shift_penalty`` (see
:func:`seisjax.symae.model.symae_loss`). ``config.model.nt`` must equal ``window - trim_start``.

Batches. A training datapoint is one group with ``ntau`` traces drawn without replacement from its
train stations; a group with fewer train traces than ``ntau`` gives all of them, in random order,
and the rest of the datapoint is padding with mask 0 (the model's pooling and the loss ignore masked
traces exactly, so no trace counts twice). An epoch visits every group ``draws_per_group`` times in
the order of an :class:`~seisjax.data.batches.ArrayBatchIterator` over group indices (shuffled per
epoch, sharded over processes, checkpointable); the traces of batch ``k`` of epoch ``e`` are drawn
from ``numpy.random.default_rng([seed, 0x5E15, e, k])`` over the global batch, so a resumed run, or
one on more processes, draws the same traces. Batches: ``{"x": (B, ntau, nt) float32, "mask": (B,
ntau) float32, "group": (B,) int32}``.

Evaluation runs on the test stations: each group's test traces, in chunks of at most ``ntau`` per
datapoint (padded with mask 0), so every test trace is scored once. Metrics (means over traces;
(sum, count) pairs): ``loss`` (the negative ELBO per trace: nll + kl_nuisance + kl_coherent, without
the shift penalty, whose "norm" form depends on the batch), its three terms, ``mse`` per sample,
``correlation`` (Pearson, trace against reconstruction), ``shift_mean_square`` (samples^2).

The preparation's report (counts of traces, groups, and of rejected traces per reason) is printed
and, for the run's own data, written to ``<workdir>/symae_data.json``, the rejected traces to
``<workdir>/symae_rejected.csv``. Preparations are cached in the workdir (see
:func:`seisjax.symae.data.prepare_symae_groups`), so evaluation and extraction reuse them.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seisjax.data.resolve import resolve_dataset
from seisjax.errors import InputError
from seisjax.symae.model import MODELS
from seisjax.train.task import Task

__all__ = ["GroupDrawIterator", "SymAETask", "draw_datapoints", "eval_datapoints"]

_DRAW_STREAM = 0x5E15


# ============================================================================ host-side batches
def draw_datapoints(prepared: dict, groups: np.ndarray, uniforms: np.ndarray, ntau: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Traces of datapoints: for each group in ``groups (B,)``, the train traces ranked by
    ``uniforms (B, >= max train count)`` (smallest first), the first ``ntau`` of them. Returns
    ``(x (B, ntau, nt) float32, mask (B, ntau) float32)``; vectorised over the batch."""
    n_train = np.asarray(prepared["group_n_train"])[groups]
    starts = np.asarray(prepared["group_start"])[groups]
    width = uniforms.shape[1]
    keys = np.where(np.arange(width)[None, :] < n_train[:, None], uniforms, np.inf)
    order = np.argsort(keys, axis=1, kind="stable")[:, :ntau]
    if order.shape[1] < ntau:   # fewer candidates than ntau in the whole batch
        order = np.pad(order, ((0, 0), (0, ntau - order.shape[1])))
    valid = np.arange(ntau)[None, :] < np.minimum(n_train, ntau)[:, None]
    index = np.where(valid, starts[:, None] + order, 0)
    x = np.asarray(prepared["trace_x"])[index] * valid[..., None]
    return x.astype(np.float32), valid.astype(np.float32)


class GroupDrawIterator:
    """Training batches of drawn datapoints; position, sharding and resume of an inner
    :class:`~seisjax.data.batches.ArrayBatchIterator` over group indices (see the module docstring)."""

    def __init__(self, prepared: dict, *, ntau: int, global_batch_size: int, seed: int,
                 draws_per_group: int = 1, process_index: int = 0, process_count: int = 1,
                 prefetch: int = 2):
        from seisjax.data.batches import ArrayBatchIterator

        self._prepared = prepared
        self._ntau = int(ntau)
        self._seed = int(seed)
        self._global_batch = int(global_batch_size)
        self._process_index = int(process_index)
        groups = np.flatnonzero(np.asarray(prepared["group_n_train"]) > 0)
        examples = np.tile(groups, max(int(draws_per_group), 1)).astype(np.int32)
        if len(examples) < self._global_batch:
            raise InputError(f"symae: {len(groups)} group(s) x data.draws_per_group = {draws_per_group} give "
                             f"{len(examples)} datapoints per epoch, fewer than batch_size = {global_batch_size}; "
                             "raise data.draws_per_group or lower batch_size")
        self._width = int(np.asarray(prepared["group_n_train"]).max())
        self._inner = ArrayBatchIterator({"group": examples}, global_batch_size=global_batch_size, seed=seed,
                                         shuffle=True, drop_remainder=True, process_index=process_index,
                                         process_count=process_count, prefetch=prefetch)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        position = self._inner.state()
        batch = next(self._inner)
        rng = np.random.default_rng([self._seed, _DRAW_STREAM, position["epoch"], position["index"]])
        uniforms = rng.random((self._global_batch, self._width))   # the global batch's draws
        local = len(batch["group"])
        rows = uniforms[self._process_index * local:(self._process_index + 1) * local]
        x, mask = draw_datapoints(self._prepared, batch["group"], rows, self._ntau)
        return {"x": x, "mask": mask, "group": batch["group"]}

    def state(self) -> dict:
        return self._inner.state()

    def restore(self, state) -> None:
        self._inner.restore(state)

    @property
    def steps_per_epoch(self) -> int:
        return self._inner.steps_per_epoch

    @property
    def epoch(self) -> int:
        return self._inner.epoch

    def close(self) -> None:
        self._inner.close()


def eval_datapoints(prepared: dict, ntau: int) -> dict:
    """Every group's test traces in datapoints of at most ``ntau`` (in the prepared order), as
    ``{"x": (D, ntau, nt), "mask": (D, ntau), "group": (D,)}``; a deterministic evaluation set."""
    n_train = np.asarray(prepared["group_n_train"])
    n_test = np.asarray(prepared["group_n_test"])
    chunks = np.where(n_test > 0, -(-n_test // ntau), 0)
    group = np.repeat(np.arange(len(n_test)), chunks)
    first_chunk = np.concatenate([[0], np.cumsum(chunks)[:-1]])
    chunk_in_group = np.arange(len(group)) - np.repeat(first_chunk, chunks)
    offset = chunk_in_group * ntau
    count = np.minimum(n_test[group] - offset, ntau)
    start = np.asarray(prepared["group_start"])[group] + n_train[group] + offset
    valid = np.arange(ntau)[None, :] < count[:, None]
    index = np.where(valid, start[:, None] + np.arange(ntau)[None, :], 0)
    x = np.asarray(prepared["trace_x"])[index] * valid[..., None]
    return {"x": x.astype(np.float32), "mask": valid.astype(np.float32), "group": group.astype(np.int32)}


# ============================================================================ the task
class SymAETask(Task):
    """SymAE on (event, pixel) groups (``config.model``: ``symae``)."""

    name = "symae"
    models = MODELS

    rng_streams = ("sample",)

    def __init__(self, config, *, workdir=None, data_path=None):
        super().__init__(config, workdir=workdir, data_path=data_path)
        data = config.data
        nt = int(data.window) - int(data.trim_start)
        if int(config.model.get("nt", nt)) != nt:
            raise InputError(f"symae: model.nt = {config.model.nt} but the windows give data.window - "
                             f"data.trim_start = {nt} samples")
        self.ntau = int(data.ntau)
        if self.ntau < 1:
            raise InputError(f"symae: data.ntau must be >= 1, got {self.ntau}")
        self.source = "dataset" if data_path is not None else str(data.source)
        if self.source not in ("synthetic", "dataset"):
            raise InputError(f"data.source = {self.source!r}: expected 'synthetic' or 'dataset'")
        from seisjax.data.dataset import Dataset
        from seisjax.symae.data import prepare_symae_groups

        self.dataset_path = resolve_dataset(data, workdir=workdir, data_path=data_path, scenario="teleseismic-p")
        with Dataset(self.dataset_path) as dataset:
            self.prepared = prepare_symae_groups(dataset, data, cache_dir=self.workdir,
                                                 progress=jax.process_index() == 0)
        self._eval = eval_datapoints(self.prepared, self.ntau)
        self._announce()

    # ------------------------------------------------------------------ data
    def _announce(self):
        """Say what the preparation kept and rejected (stdout) and write it down in the workdir."""
        report = self.prepared["report"]
        rejected = ", ".join(f"{k}={v}" for k, v in sorted(report["rejected"].items())) or "none"
        if jax.process_index() != 0:
            return
        where = ""
        if self.workdir is not None and self.data_path is None:   # the run's own data, not `eval --data`
            self.workdir.mkdir(parents=True, exist_ok=True)
            (self.workdir / "symae_data.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
            lines = ["row,trace_name,reason"] + [f"{r['row']},{r['trace_name']},{r['reason']}"
                                                 for r in report["rejected_rows"]]
            (self.workdir / "symae_rejected.csv").write_text("\n".join(lines) + "\n")
            where = f" (details: {self.workdir / 'symae_data.json'})"
        print(f"symae data: {report['n_traces']} traces ({report['n_train']} train, {report['n_test']} test) in "
              f"{report['n_groups']} groups of {report['n_events']} events from {report['n_rows']} rows; "
              f"rejected: {rejected}{where}", flush=True)

    def train_batches(self, *, process_index, process_count):
        return GroupDrawIterator(self.prepared, ntau=self.ntau, global_batch_size=int(self.config.batch_size),
                                 seed=int(self.config.seed), draws_per_group=int(self.config.data.draws_per_group),
                                 process_index=process_index, process_count=process_count,
                                 prefetch=int(self.config.data.prefetch))

    def eval_batches(self, *, process_index, process_count):
        from seisjax.data.batches import ArrayBatchIterator

        if len(self._eval["group"]) == 0:
            raise InputError("symae: no test stations to evaluate on (data.test_fraction is 0?)")
        return ArrayBatchIterator(self._eval, global_batch_size=int(self.config.eval.batch_size), seed=0,
                                  shuffle=False, drop_remainder=False, num_epochs=1, process_index=process_index,
                                  process_count=process_count, prefetch=0)

    def data_info(self) -> dict:
        report = self.prepared["report"]
        return {"source": self.source, "split": "test stations of every group", "path": str(self.dataset_path),
                "fingerprint": self.prepared["fingerprint"], "groups": report["n_groups"],
                "test_traces": report["n_test"], "datapoints": len(self._eval["group"]),
                "rejected": report["rejected"]}

    # ------------------------------------------------------------------ model
    def model_kwargs(self) -> dict:
        kwargs = super().model_kwargs()
        kwargs.setdefault("nt", int(self.config.data.window) - int(self.config.data.trim_start))
        return kwargs

    def init_variables(self, rng, batch) -> dict:
        params_rng, other = jax.random.split(rng)
        return dict(self.model.init({"params": params_rng, **self.rngs(other)}, batch["x"], batch.get("mask")))

    def _loss_options(self) -> dict:
        task = self.config.task
        return {"gamma": float(task.get("gamma", 100.0)), "beta_nuisance": float(task.get("beta_nuisance", 1.0)),
                "beta_coherent": float(task.get("beta_coherent", 1.0)),
                "shift_penalty": str(task.get("shift_penalty", "norm"))}

    # ------------------------------------------------------------------ pure functions
    def loss(self, params, model_state, batch, rng, *, train):
        from seisjax.symae.model import symae_loss

        outputs = self.model.apply({"params": params, **model_state}, batch["x"], batch["mask"], train=train,
                                   rngs=self.rngs(rng))
        loss, terms = symae_loss(outputs, batch["x"], batch["mask"], **self._loss_options())
        return loss, (terms, model_state)

    def eval_metrics(self, params, model_state, batch, rng):
        from seisjax.symae.model import symae_per_datapoint

        x = batch["x"]
        mask = batch["mask"] * batch["_valid"][:, None]
        outputs = self.model.apply({"params": params, **model_state}, x, mask, train=False)
        per = symae_per_datapoint(outputs, x, mask)
        traces, samples = jnp.sum(per["traces"]), jnp.sum(per["samples"])
        recon = outputs["reconstruction"]
        xc = x - x.mean(axis=-1, keepdims=True)
        rc = recon - recon.mean(axis=-1, keepdims=True)
        denom = jnp.sqrt(jnp.sum(xc ** 2, axis=-1) * jnp.sum(rc ** 2, axis=-1))
        corr = jnp.sum(xc * rc, axis=-1) / jnp.maximum(denom, 1e-12)
        shift_sq = jnp.sum(jnp.square(outputs["shifts"]) * mask)
        nll, kl_n, kl_c = (jnp.sum(per[k]) for k in ("nll", "kl_nuisance", "kl_coherent"))
        return {
            "loss": (nll + kl_n + kl_c, traces), "nll": (nll, traces), "kl_nuisance": (kl_n, traces),
            "kl_coherent": (kl_c, traces), "mse": (jnp.sum(per["sq_err"]), samples),
            "correlation": (jnp.sum(corr * mask), traces), "shift_mean_square": (shift_sq, traces),
        }

    # ------------------------------------------------------------------ STF scores (synthetic truth)
    def eval_report(self, params, model_state, out_dir) -> dict | None:
        """With a ``truth.h5`` beside the dataset (the synthetic ``teleseismic-p`` data): extract the
        STFs of every (event, pixel) group (:func:`seisjax.symae.extraction.extract_coherent`, its
        default settings; ``config.eval.stf_steps`` overrides the number of gradient steps) and
        score them and the baselines against the truth
        (:func:`seisjax.symae.stf_eval.evaluate_stfs`) into ``out_dir/scores.json``,
        ``scores.md`` and ``scores.png``. ``config.eval.stf_scores = False`` skips it. Returns the
        scores, or None without truth."""
        truth = Path(self.dataset_path) / "truth.h5"
        if not truth.exists() or not bool(self.config.eval.get("stf_scores", True)):
            return None
        from seisjax.symae.extraction import ExtractionConfig, arrays_from_prepared, extract_coherent
        from seisjax.symae.stf_eval import evaluate_stfs, write_scores

        groups = arrays_from_prepared(self.prepared)
        steps = self.config.eval.get("stf_steps", None)
        config = ExtractionConfig(sampling_rate=groups.sampling_rate,
                                  **({} if steps is None else {"steps": int(steps)}))
        result = extract_coherent(self.model, params, groups, config)
        scores = evaluate_stfs(result, self.prepared, truth)
        paths = write_scores(scores, out_dir)
        print(f"symae: STF scores against {truth} in {paths['markdown']}\n{scores['summary_md']}", flush=True)
        return scores

    # ------------------------------------------------------------------ figures
    def predict_shifts(self, params, model_state, traces: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Shifts (samples) that the shift network predicts for ``traces (N, nt)``."""
        shift_fn = jax.jit(lambda v, t: self.model.apply(v, t, method="predict_shifts"))
        variables = {"params": params, **model_state}
        out = [np.asarray(shift_fn(variables, jnp.asarray(traces[i:i + chunk])))
               for i in range(0, len(traces), chunk)]
        return np.concatenate(out) if out else np.zeros(0)

    def eval_figures(self, params, model_state, batch, out_dir):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out_dir = Path(out_dir)
        paths = []
        rate = float(self.prepared["sampling_rate"])
        valid_rows = np.flatnonzero(np.asarray(batch["_valid"]) > 0)[:3]
        if len(valid_rows):
            x, mask = np.asarray(batch["x"])[valid_rows], np.asarray(batch["mask"])[valid_rows]
            outputs = jax.jit(lambda v, x, m: self.model.apply(v, x, m))(
                {"params": params, **model_state}, jnp.asarray(x), jnp.asarray(mask))
            recon, shifts = np.asarray(outputs["reconstruction"]), np.asarray(outputs["shifts"])
            panels = [(d, t) for d in range(len(valid_rows)) for t in np.flatnonzero(mask[d] > 0)[:2]]
            t_axis = self.prepared["time_start"] + np.arange(x.shape[-1]) / rate
            fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.6 * len(panels)), sharex=True, squeeze=False)
            groups = np.asarray(batch["group"])[valid_rows]
            for ax, (d, t) in zip(axes[:, 0], panels):
                g = int(groups[d])
                ax.plot(t_axis, x[d, t], color="0.3", lw=0.8, label="input")
                ax.plot(t_axis, recon[d, t], color="C3", lw=0.8, label="reconstruction")
                ax.set_title(f"{self.prepared['group_source_id'][g]} pixel {self.prepared['group_pixel'][g]}, "
                             f"test trace {t}: shift {shifts[d, t]:+.2f} samples", fontsize=8)
            axes[0, 0].legend(fontsize=7, loc="upper right")
            axes[-1, 0].set_xlabel("time after the pick (s)")
            fig.tight_layout()
            paths.append(out_dir / "reconstructions.png")
            fig.savefig(paths[-1], dpi=100)
            plt.close(fig)
        shifts = self.predict_shifts(params, model_state, np.asarray(self.prepared["trace_x"]))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(shifts / rate, bins=50, color="C0")
        ax.set_xlabel("learned shift (s; positive = the trace is late)")
        ax.set_ylabel("traces")
        ax.set_title(f"shift network on all {len(shifts)} prepared traces", fontsize=9)
        fig.tight_layout()
        paths.append(out_dir / "shifts_histogram.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
        return paths
