"""SymAE training: datapoints of ``ntau`` traces drawn from (event, pixel) groups.

Config (``config.data``; the preparation keys are those of
:data:`seisjax.symae.data.PREP_DEFAULTS`)::

    source = "synthetic"          # "synthetic": teleseismic-p data made in <workdir>/data (or data.path)
                                  #   when absent; "dataset": a dataset at data.path
    path = ""
    synthetic                     # the generator's scenario config (seisjax.data.synthetic.scenario_config)
    pick_column, component, sampling_rate, window, pre_p, trim_start, taper_alpha, group_by, nside,
    min_stations, test_fraction, split_seed, polarity_max_lag, snr_column, events_split
    ntau = 20                     # traces per datapoint
    draws_per_group = 1           # datapoints per group per epoch
    prefetch = 2

``config.task``: ``gamma`` (100), ``beta_nuisance``, ``beta_coherent``, ``shift_penalty`` (see
:func:`seisjax.symae.model.symae_loss`). ``config.model.nt`` must equal ``window - trim_start``.

Batches: training datapoints drawn from each group's train stations, evaluation datapoints holding
every test trace once (:mod:`seisjax.symae.data`). Metrics (means over traces; (sum, count) pairs):
``loss`` (the negative ELBO per trace: nll + kl_nuisance + kl_coherent, without the shift penalty,
whose "norm" form depends on the batch), its three terms, ``mse`` per sample, ``correlation``
(Pearson, trace against reconstruction), ``shift_mean_square`` (samples^2).

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
from matplotlib.figure import Figure

from seisjax.data.batches import ArrayBatchIterator
from seisjax.data.dataset import Dataset
from seisjax.data.resolve import resolve_dataset
from seisjax.errors import InputError
from seisjax.symae.data import GroupDrawIterator, arrays_from_prepared, eval_datapoints, prepare_symae_groups
from seisjax.symae.extraction import ExtractionConfig, extract_coherent
from seisjax.symae.model import MODELS, symae_loss, symae_per_datapoint
from seisjax.symae.stf_eval import evaluate_stfs, write_scores
from seisjax.train.task import Task

__all__ = ["SymAETask"]


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
        outputs = self.model.apply({"params": params, **model_state}, batch["x"], batch["mask"], train=train,
                                   rngs=self.rngs(rng))
        loss, terms = symae_loss(outputs, batch["x"], batch["mask"], **self._loss_options())
        return loss, (terms, model_state)

    def eval_metrics(self, params, model_state, batch, rng):
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
            fig = Figure(figsize=(8, 1.6 * len(panels)))
            axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)
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
        shifts = self.predict_shifts(params, model_state, np.asarray(self.prepared["trace_x"]))
        fig = Figure(figsize=(6, 3.5))
        ax = fig.subplots()
        ax.hist(shifts / rate, bins=50, color="C0")
        ax.set_xlabel("learned shift (s; positive = the trace is late)")
        ax.set_ylabel("traces")
        ax.set_title(f"shift network on all {len(shifts)} prepared traces", fontsize=9)
        fig.tight_layout()
        paths.append(out_dir / "shifts_histogram.png")
        fig.savefig(paths[-1], dpi=100)
        return paths
