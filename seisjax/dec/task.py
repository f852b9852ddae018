"""Deep embedded clustering (DEC, Xie et al. 2016; IDEC, Guo et al. 2017) of windows around P.

Two runs, two workdirs, one task:

- ``task.stage = "pretrain"``: the network (``config.model``, e.g. ``mousavi_polarity``) trains as an
  autoencoder (MSE).
- ``task.stage = "dec"``: a fresh run starts from the pretrained run's parameters
  (``task.pretrained`` = its workdir; :meth:`DECTask.initial_state`, called by the engine once) and
  sets the cluster centres (model parameter ``centres``) by k-means (``task.kmeans_n_init``
  restarts; ``task.init = "kmeans"``) or by a diagonal Gaussian mixture started from it (``"gmm"``)
  on the embeddings of the whole training data. Every ``task.update_interval`` steps
  :meth:`DECTask.before_step` recomputes the target P over the WHOLE training data in one compiled
  call; the loss is ``KL(P || Q)`` (``task.variant = "dec"``) or ``MSE + task.gamma * KL``
  (``"idec"``). Training stops when the fraction of hard labels that changed since the previous
  target update falls below ``task.tol``.

Clustering space (``task.cluster_space``): "code" (the paper's) puts the centres and the Student-t
kernel in the embedding itself; "whitened" first maps it by a fixed linear map, set once at the
start of DEC from the pretrained embeddings of the training data (PCA whitening: every principal
direction scaled to unit variance, :func:`seisjax.metrics.clustering.whitening_map`) and kept in the
model state (``cluster_map``, checkpointed; ``cluster`` applies it to new data). Why: k-means and
the Student-t kernel measure Euclidean distance, so they follow the code's largest-variance
directions, which an autoencoder spends on what reconstructs best, not on what separates the
classes (the measured effect: seisjax/dec/README.md). The report names such runs ``dec_whitened`` /
``idec_whitened`` and adds the baseline ``kmeans_pretrained_whitened``.

Exact resume: P is a function of the parameters at the last target update. The loss keeps a copy of
them (model state ``dec_snapshot``, tiny for these networks) which the checkpoint holds, so a run
resumed between updates recomputes the same P, and the label-change test at an update compares the
current parameters with that copy, as an uninterrupted run does.

The data (windows, spectrograms, labels, SNR): :mod:`seisjax.dec.data`.

Evaluation (``python -m seisjax eval``): metrics.json holds the confusion counts as (sum, count)
pairs, the Hungarian accuracy matched over them (``accuracy``; also in the training log when
``train.eval_every_steps`` is set) and the reconstruction MSE; ``clustering.json`` beside it holds
Hungarian-matched accuracy, per-class precision/recall/F1, NMI and ARI overall and per SNR bin, for
DEC and the baselines (k-means on the raw windows, k-means on the pretrained embeddings), with
figures: confusion matrix and the 2-D embedding coloured by cluster and by truth. Rows whose label
is well defined are scored apart as ``unambiguous`` (:meth:`DECTask._unambiguous`), and with
``data.pair_column`` the ``pair_split`` of sign-flipped pairs (:func:`pair_split`).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from seisjax.dec.data import SNR_BINS, DECData, TargetBatches, snr_bin, snr_bin_name
from seisjax.dec.model import MODELS
from seisjax.errors import InputError
from seisjax.metrics import clustering as cl
from seisjax.metrics.embedding import pca_2d
from seisjax.train.loop import restore_trained
from seisjax.train.parallel import to_host
from seisjax.train.task import Task, pairs

__all__ = ["DECTask", "pair_split", "plot_embedding"]

_SNAPSHOT = "dec_snapshot"
_CLUSTER_MAP = "cluster_map"


def pair_split(pairs: np.ndarray, clusters: np.ndarray) -> dict:
    """Of the rows grouped two by two by ``pairs`` (a trace and its sign-flipped copy), the fraction
    of pairs whose two rows fall in different clusters: exact whatever the label of the recorded
    trace, but satisfied by any clustering that is odd under x -> -x. Ids that do not occur
    exactly twice (NaN included) are not counted."""
    pairs, clusters = np.asarray(pairs, np.float64), np.asarray(clusters)
    ok = np.isfinite(pairs)
    _, inverse, counts = np.unique(pairs[ok], return_inverse=True, return_counts=True)
    two = counts[inverse] == 2
    rows = np.flatnonzero(ok)[two]
    order = np.argsort(pairs[rows], kind="stable")
    first, second = rows[order][0::2], rows[order][1::2]
    n = len(first)
    return {"pairs": n, "split": float(np.mean(clusters[first] != clusters[second])) if n else float("nan")}




def plot_embedding(z, clusters, truth, path, *, title: str):
    """The embedding (its first two principal components when wider) coloured by cluster and, when
    ``truth`` is given, by true class, side by side, written to ``path``."""
    if z.shape[1] > 2:
        z = pca_2d(z)
    panels = [("cluster", clusters)] + ([("truth", truth)] if truth is not None else [])
    y = z[:, 1] if z.shape[1] > 1 else np.zeros(len(z))
    # points drawn in a shuffled order, so that no group hides the one drawn before it
    order = np.random.default_rng(0).permutation(len(z))
    fig = Figure(figsize=(4.2 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (what, labels) in zip(axes[0], panels):
        values, group = np.unique(np.asarray(labels), return_inverse=True)
        ax.scatter(z[order, 0], y[order], s=3, alpha=0.5, c=[f"C{j}" for j in group[order]])
        ax.legend(handles=[Line2D([], [], ls="", marker="o", color=f"C{j}", label=f"{what} {value}")
                           for j, value in enumerate(values)], fontsize=8)
        ax.set_title(f"{title}: embedding coloured by {what}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


class DECTask(Task):
    """DEC / IDEC on single-component windows around P; see the module docstring."""

    name = "dec"
    models = MODELS

    def __init__(self, config, *, workdir=None, data_path=None):
        super().__init__(config, workdir=workdir, data_path=data_path)
        task = config.task
        self.stage = str(task.stage)
        if self.stage not in ("pretrain", "dec"):
            raise InputError(f"task.stage = {self.stage!r}: expected 'pretrain' or 'dec'")
        self.variant = str(task.variant)
        if self.variant not in ("dec", "idec"):
            raise InputError(f"task.variant = {self.variant!r}: expected 'dec' or 'idec'")
        self.init = str(task.get("init", "kmeans"))
        if self.init not in ("kmeans", "gmm"):
            raise InputError(f"task.init = {self.init!r}: expected 'kmeans' or 'gmm'")
        self.cluster_space = str(task.get("cluster_space", "code"))
        if self.cluster_space not in ("code", "whitened"):
            raise InputError(f"task.cluster_space = {self.cluster_space!r}: expected 'code' or 'whitened'")
        # report name: "dec", "idec", or with "_whitened" when clustering the whitened code
        self.method_name = self.variant + ("_whitened" if self.cluster_space == "whitened" else "")
        self.update_interval = int(task.update_interval)
        if self.update_interval < 1:
            raise InputError(f"task.update_interval = {self.update_interval}: need at least 1")
        self.data = DECData(config, workdir=workdir, data_path=data_path)
        self._target = None
        self.label_changes: list[tuple[int, float]] = []  # (step, fraction) of every target update

    # ------------------------------------------------------------------ data
    def train_batches(self, *, process_index, process_count):
        inner = self.data.train_batches(process_index=process_index, process_count=process_count)
        return TargetBatches(inner, (lambda: self._target) if self.stage == "dec" else None,
                             int(self.config.task.n_clusters))

    def eval_batches(self, *, process_index, process_count):
        return self.data.eval_batches(process_index=process_index, process_count=process_count)

    def data_info(self) -> dict:
        return self.data.info()

    def close(self):
        self.data.close()

    # ------------------------------------------------------------------ model
    def model_kwargs(self) -> dict:
        kwargs = super().model_kwargs()
        if self.data.input_kind == "stft":
            kwargs.setdefault("input_shape", tuple(self.data.eval["x"].shape[1:3]))
        else:
            kwargs.setdefault("length", self.data.input_window)
        kwargs.setdefault("n_clusters", int(self.config.task.n_clusters))
        return kwargs

    def init_variables(self, rng, batch):
        variables = super().init_variables(rng, batch)
        if self.stage == "dec":
            variables[_SNAPSHOT] = {"params": variables["params"], "counter": jnp.zeros((), jnp.int32)}
            if self.cluster_space == "whitened":  # set by initial_state; here only its shape
                dim = variables["params"]["centres"].shape[1]
                variables[_CLUSTER_MAP] = {"mean": jnp.zeros((dim,), jnp.float32),
                                           "matrix": jnp.eye(dim, dtype=jnp.float32)}
        return variables

    def encode(self, params, x, *, chunk: int = 65536) -> np.ndarray:
        """Embeddings of ``x`` (host arrays), a jitted call per chunk of rows."""
        fn = jax.jit(lambda p, xb: self.model.apply({"params": p}, xb, method="encode"))
        return np.concatenate([np.asarray(fn(params, x[i:i + chunk])) for i in range(0, len(x), chunk)])

    def _pretrained_params(self):
        path = str(self.config.task.pretrained or "")
        if not path:
            raise InputError("task.stage = 'dec' needs task.pretrained = the workdir of a pretraining run")
        if not (Path(path) / "checkpoints").exists():
            raise InputError(f"task.pretrained = {path}: no checkpoints/ there (train the pretrain stage first)")
        _, task, state, _ = restore_trained(type(self), path)
        task.close()
        return jax.tree_util.tree_map(np.asarray, state.params)

    def initial_centres(self, z: np.ndarray) -> np.ndarray:
        """Cluster centres for the start of DEC from embeddings ``z``: k-means (``task.init =
        "kmeans"``) or the means of a diagonal Gaussian mixture started from it (``"gmm"``)."""
        task = self.config.task
        k, n_init, seed = int(task.n_clusters), int(task.kmeans_n_init), int(self.config.seed)
        if self.init == "gmm":
            return cl.gmm(z, k, n_init=n_init, seed=seed)["means"]
        return cl.kmeans(z, k, n_init=n_init, seed=seed)[0]

    @staticmethod
    def cluster_map(model_state) -> dict | None:
        """The fixed linear map from the code to the clustering space (``task.cluster_space =
        "whitened"``), as host arrays, or None (the code itself)."""
        if not model_state or _CLUSTER_MAP not in model_state:
            return None
        return jax.tree_util.tree_map(np.asarray, jax.device_get(model_state[_CLUSTER_MAP]))

    def _host_cluster_map(self, state) -> dict | None:
        """:meth:`cluster_map` of a (possibly multi-host) train state, read at target updates only."""
        if _CLUSTER_MAP not in state.model_state:
            return None
        return self.cluster_map(to_host({_CLUSTER_MAP: state.model_state[_CLUSTER_MAP]}))

    def initial_state(self, state):
        """Fresh DEC run: the pretrained parameters, centres from k-means on their embeddings (in the
        whitened code when ``task.cluster_space = "whitened"``, whose map is fixed here)."""
        if self.stage != "dec":
            return state
        params = self._pretrained_params()
        if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(state.params):
            raise InputError(f"task.pretrained = {self.config.task.pretrained}: its parameters do not fit "
                             f"this model ({self.config.model.name} with {self.model_kwargs()})")
        z = self.encode(params, self.data.train["x"])
        model_state = dict(state.model_state)
        if self.cluster_space == "whitened":
            model_state[_CLUSTER_MAP] = cl.whitening_map(z)
            z = cl.apply_map(z, model_state[_CLUSTER_MAP])
        centres = self.initial_centres(z)
        params = dict(params)
        params["centres"] = centres.astype(params["centres"].dtype)
        model_state[_SNAPSHOT] = {"params": params, "counter": np.zeros((), np.int32)}
        return state.replace(params=params, model_state=model_state)

    # ------------------------------------------------------------------ target update (host)
    def _whole(self, params, cluster_map):
        """q, p and labels of every training window under ``params`` (one compiled call for q/p)."""
        z = cl.apply_map(self.encode(params, self.data.train["x"]), cluster_map)
        q, p, labels = cl.dataset_target(jnp.asarray(z), jnp.asarray(params["centres"]),
                                         alpha=float(self.config.task.alpha))
        return np.asarray(q), np.asarray(p), np.asarray(labels)

    def before_step(self, state, step):
        if self.stage != "dec":
            return None
        if step % self.update_interval == 0:
            cluster_map = self._host_cluster_map(state)
            params = to_host(state.params)
            _, p, labels = self._whole(params, cluster_map)
            self._target = p
            if step > 0:  # the snapshot holds the parameters of the previous update
                snapshot = to_host(state.model_state[_SNAPSHOT]["params"])
                _, _, previous = self._whole(snapshot, cluster_map)
                changed = float(np.mean(labels != previous))
                self.label_changes.append((int(step), changed))
                if changed < float(self.config.task.tol):
                    return f"DEC converged: {changed:.5f} of the labels changed since step " \
                           f"{step - self.update_interval} (tol {self.config.task.tol})"
        elif self._target is None:  # resumed between updates: P from the parameters it came from
            cluster_map = self._host_cluster_map(state)
            _, self._target, _ = self._whole(to_host(state.model_state[_SNAPSHOT]["params"]), cluster_map)
        return None

    # ------------------------------------------------------------------ pure functions
    def loss(self, params, model_state, batch, rng, *, train):
        x = batch["x"]
        recon, z = self.model.apply({"params": params}, x)
        mse = jnp.mean(jnp.square(recon - x))
        if self.stage == "pretrain":
            return mse, ({"mse": mse}, model_state)
        q = cl.soft_assignment(cl.apply_map(z, model_state.get(_CLUSTER_MAP)), params["centres"],
                               float(self.config.task.alpha))
        kl = jnp.mean(cl.kl_divergence(batch["target"], q))
        loss = kl if self.variant == "dec" else mse + float(self.config.task.gamma) * kl
        snap = model_state[_SNAPSHOT]
        is_update = snap["counter"] % self.update_interval == 0  # before_step made P from these params
        kept = jax.tree_util.tree_map(lambda old, new: jnp.where(is_update, jax.lax.stop_gradient(new), old),
                                      snap["params"], params)
        new_state = {**model_state, _SNAPSHOT: {"params": kept, "counter": snap["counter"] + 1}}
        return loss, ({"kl": kl, "mse": mse}, new_state)

    def eval_metrics(self, params, model_state, batch, rng):
        x = batch["x"]
        recon, z = self.model.apply({"params": params}, x)
        per_example = {"loss": jnp.mean(jnp.square(recon - x), axis=tuple(range(1, x.ndim)))}
        if self.stage == "dec" and "label" in batch:
            q = cl.soft_assignment(cl.apply_map(z, model_state.get(_CLUSTER_MAP)), params["centres"],
                                   float(self.config.task.alpha))
            per_example["confidence"] = jnp.max(q, axis=1)
            cluster = jnp.argmax(q, axis=1)
            for c, name in enumerate(self.data.classes):
                for k in range(int(self.config.task.n_clusters)):
                    per_example[f"confusion/{name}_cluster{k}"] = (batch["label"] == c) & (cluster == k)
        return pairs(per_example, batch["_valid"])

    def summarise_eval(self, means):
        """``accuracy``: the Hungarian accuracy of the clusters, from the confusion fractions (DEC
        stage with labels), so that it can be followed during training."""
        keys = [[f"confusion/{name}_cluster{k}" for k in range(int(self.config.task.n_clusters))]
                for name in self.data.classes]
        if not keys or any(key not in means for row in keys for key in row):
            return {}
        return {"accuracy": cl.matched_fraction([[means[key] for key in row] for row in keys])}

    # ------------------------------------------------------------------ clustering report
    def assign(self, params, x, model_state=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(clusters, q, z)`` of windows ``x`` under trained DEC parameters (``z`` = the code; with
        ``task.cluster_space = "whitened"`` the centres live in the whitened code, whose map is in
        ``model_state``)."""
        cluster_map = self.cluster_map(model_state)
        if self.cluster_space == "whitened" and cluster_map is None:
            raise InputError("task.cluster_space = 'whitened': assign needs the run's model state (its cluster map)")
        z = self.encode(params, x)
        q = np.asarray(cl.soft_assignment(jnp.asarray(cl.apply_map(z, cluster_map)), jnp.asarray(params["centres"]),
                                          float(self.config.task.alpha)))
        return q.argmax(1), q, z

    def eval_report(self, params, model_state, out_dir) -> dict:
        """clustering.json + figures: DEC (stage dec), its clusters re-drawn by a full-covariance
        Gaussian mixture started from them (``<method>_gmm_full``) and the k-means baselines, overall
        and per SNR bin. Without labels, only the cluster sizes."""
        out_dir = Path(out_dir)
        data = self.data.eval
        k = int(self.config.task.n_clusters)
        seed, n_init = int(self.config.seed), int(self.config.task.kmeans_n_init)
        x = data["x"]
        methods = {"kmeans_raw": cl.kmeans(x.reshape(len(x), -1), k, n_init=n_init, seed=seed)[1]}

        def pretrained_baselines(z_pre):
            methods["kmeans_pretrained"] = cl.kmeans(z_pre, k, n_init=n_init, seed=seed)[1]
            methods["kmeans_pretrained_whitened"] = cl.kmeans(cl.apply_map(z_pre, cl.whitening_map(z_pre)), k,
                                                              n_init=n_init, seed=seed)[1]

        if self.stage == "dec":
            clusters, _, z = self.assign(params, x, model_state)
            z = cl.apply_map(z, self.cluster_map(model_state))  # the space the clusters live in
            if self.config.task.pretrained and (Path(self.config.task.pretrained) / "checkpoints").exists():
                pretrained_baselines(self.encode(self._pretrained_params(), x))
            methods[self.method_name] = clusters
            # the same code, clusters re-drawn by a full-covariance mixture started from DEC's: a
            # boundary that follows each cluster's own spread (no labels used)
            if np.bincount(clusters, minlength=k).min() >= 2:
                methods[f"{self.method_name}_gmm_full"] = cl.gmm_full(z, clusters)["labels"]
        else:
            z = self.encode(params, x)
            pretrained_baselines(z)
        report = {"stage": self.stage, "examples": int(len(x)), "methods": {}}
        truth = data.get("label")
        if truth is not None and self.config.data.label_column == "trace_polarity":
            truth = np.where(np.asarray(truth) > 0, "up", "down")
        bins = snr_bin(data["log10_snr"]) if "log10_snr" in data else None
        clear = self._unambiguous(data)
        if clear is not None:
            report["unambiguous"] = {"definition": clear[1], "examples": int(clear[0].sum())}
            clear = clear[0]
        for name, labels in methods.items():
            entry = {"cluster_sizes": np.bincount(labels, minlength=k).tolist()}
            if "pair" in data:
                entry["pair_split"] = pair_split(data["pair"], labels)
            if truth is not None:
                entry.update(cl.clustering_scores(truth, labels))
                if clear is not None and clear.any():
                    entry["unambiguous"] = cl.clustering_scores(truth[clear], labels[clear])
                if bins is not None:
                    entry["per_snr_bin"] = {
                        snr_bin_name(b): cl.clustering_scores(truth[bins == b], labels[bins == b])
                        for b in range(len(SNR_BINS)) if (bins == b).any()}
            report["methods"][name] = entry
        main = self.method_name if self.stage == "dec" else "kmeans_pretrained"
        if truth is not None:
            cl.plot_confusion(truth, methods[main], out_dir / "confusion.png", title=f"{main}: accuracy "
                              f"{report['methods'][main]['accuracy']:.3f} ({len(x)} traces)")
        plot_embedding(z, methods[main], truth, out_dir / "embedding.png", title=main)
        (out_dir / "clustering.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return report

    def _unambiguous(self, data) -> tuple[np.ndarray, str] | None:
        """Rows whose polarity label is defined well enough to score (mask, definition), or None.

        Synthetic data (truth.h5 beside it): the direct P is at least ``data.unambiguous_radiation``
        (radiation coefficient F_P) from a nodal plane; nearer, the scattering coda, whose sign is
        random, starts as large as the direct wave and the label sign(F_P) is not what the record
        shows. Real data: the estimated first motion stands at least ``data.min_onset_snr`` noise
        standard deviations above the noise (``data.onset_snr_column``)."""
        cfg = self.config.data
        if "p_radiation" in data:
            threshold = float(cfg.get("unambiguous_radiation", 0.1))
            return np.abs(data["p_radiation"]) >= threshold, f"|p_radiation| >= {threshold:g} (truth.h5)"
        if "onset_snr" in data:
            threshold = float(cfg.get("min_onset_snr", 3.0))
            return (data["onset_snr"] >= threshold,
                    f"{cfg.get('onset_snr_column', 'trace_onset_snr')} >= {threshold:g}")
        return None

