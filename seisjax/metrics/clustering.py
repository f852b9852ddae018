"""Clustering: scores against known labels, k-means, and DEC's soft assignment and target.

Scores (numpy, host side):

- :func:`hungarian_accuracy`: the best one-to-one matching of clusters to classes (Hungarian
  algorithm, ``scipy.optimize.linear_sum_assignment``) and the accuracy under it;
- :func:`per_class_scores`: precision, recall and F1 of each class after that matching;
- :func:`normalized_mutual_info` (arithmetic-mean normalisation) and :func:`adjusted_rand_index`,
  both invariant to relabelling;
- :func:`confusion_matrix` and :func:`plot_confusion` (rows: true class; columns: matched cluster).

k-means (:func:`kmeans`): Lloyd iterations from k-means++ seeds, ``n_init`` restarts run together
in one compiled JAX call (vmapped), the restart with the lowest inertia kept.

Gaussian mixtures: :func:`gmm`, diagonal covariances fitted by EM in one compiled JAX loop, started
from the k-means partition (means, per-cluster variances, fractions); :func:`gmm_full`, full
covariances started from a given partition (e.g. DEC's clusters re-drawn along each cluster's own
spread).

Clustering spaces: :func:`whitening_map` (PCA whitening of embeddings) and :func:`apply_map`.

DEC (Xie, Girshick & Farhadi 2016), as JAX functions used inside the task's traced loss:

- :func:`soft_assignment`: Student's t kernel ``q_ij ∝ (1 + |z_i - mu_j|^2 / alpha)^(-(alpha+1)/2)``;
- :func:`target_distribution`: ``p_ij ∝ q_ij^2 / f_j`` with ``f_j = sum_i q_ij`` over the *whole*
  dataset, normalised per sample;
- :func:`kl_divergence`: ``KL(P || Q)`` per sample;
- :func:`dataset_target`: q, p and hard labels of every embedding in one jitted call.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from matplotlib.figure import Figure
from scipy.optimize import linear_sum_assignment
from scipy.special import logsumexp

from seisjax.errors import InputError

__all__ = ["contingency", "match_clusters", "matched_fraction", "hungarian_accuracy", "per_class_scores", "normalized_mutual_info",
           "adjusted_rand_index", "confusion_matrix", "clustering_scores", "plot_confusion", "kmeans", "gmm",
           "gmm_full", "soft_assignment", "target_distribution", "kl_divergence", "dataset_target", "whitening_map",
           "apply_map"]


# ============================================================================ scores
def _codes(labels, what: str) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InputError(f"{what}: expected a 1-D array of labels, got shape {labels.shape}")
    values, codes = np.unique(labels, return_inverse=True)
    return values, codes.reshape(-1)


def contingency(truth, clusters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(table, classes, cluster_ids)``: ``table[c, k]`` counts rows of class ``c`` in cluster ``k``."""
    truth, clusters = np.asarray(truth), np.asarray(clusters)
    if truth.shape != clusters.shape:
        raise InputError(f"labels of shape {truth.shape} and clusters of shape {clusters.shape} differ")
    if truth.size == 0:
        raise InputError("no labels to score")
    classes, t = _codes(truth, "truth")
    ids, k = _codes(clusters, "clusters")
    table = np.zeros((len(classes), len(ids)), np.int64)
    np.add.at(table, (t, k), 1)
    return table, classes, ids


def match_clusters(table: np.ndarray) -> dict[int, int]:
    """Cluster column -> class row of the matching that maximises matched counts (Hungarian)."""
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {int(c): int(r) for r, c in zip(rows, cols)}


def matched_fraction(table) -> float:
    """Share of a class-by-cluster table (counts or fractions) on the best one-to-one matching."""
    table = np.asarray(table, np.float64)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def hungarian_accuracy(truth, clusters) -> float:
    """Fraction of rows whose cluster maps to their class under the best one-to-one matching."""
    return matched_fraction(contingency(truth, clusters)[0])


def per_class_scores(truth, clusters) -> dict[str, dict[str, float]]:
    """``{class: {precision, recall, f1, support}}`` after Hungarian matching; a class left without
    a cluster (more classes than clusters) has precision and recall 0."""
    table, classes, _ = contingency(truth, clusters)
    mapping = match_clusters(table)
    out = {}
    for c, name in enumerate(classes):
        cols = [k for k, r in mapping.items() if r == c]
        tp = float(table[c, cols].sum()) if cols else 0.0
        predicted = float(table[:, cols].sum()) if cols else 0.0
        support = float(table[c].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[str(name)] = {"precision": precision, "recall": recall, "f1": f1, "support": int(support)}
    return out


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_info(truth, clusters) -> float:
    """``I(T; K) / mean(H(T), H(K))`` (natural logs; 1 for identical partitions up to relabelling,
    0 for independent ones). Two single-cluster partitions score 1."""
    table, _, _ = contingency(truth, clusters)
    n = table.sum()
    pij = table / n
    outer = pij.sum(1, keepdims=True) * pij.sum(0, keepdims=True)
    nz = pij > 0
    mi = float((pij[nz] * np.log(pij[nz] / outer[nz])).sum())
    h = 0.5 * (_entropy(table.sum(1)) + _entropy(table.sum(0)))
    if h == 0:
        return 1.0
    return float(max(0.0, mi) / h)


def adjusted_rand_index(truth, clusters) -> float:
    """Hubert & Arabie's adjusted Rand index (1: identical partitions; ~0: chance agreement)."""
    table, _, _ = contingency(truth, clusters)

    def pairs_(x):
        x = np.asarray(x, np.float64)
        return (x * (x - 1) / 2).sum()

    n = table.sum()
    index = pairs_(table)
    a, b = pairs_(table.sum(1)), pairs_(table.sum(0))
    expected = a * b / (n * (n - 1) / 2) if n > 1 else 0.0
    maximum = 0.5 * (a + b)
    if maximum == expected:  # both partitions trivial (all in one or all singletons)
        return 1.0
    return float((index - expected) / (maximum - expected))


def confusion_matrix(truth, clusters) -> tuple[np.ndarray, list[str], list[str]]:
    """``(matrix, class_names, cluster_names)`` with clusters reordered so that cluster column ``c``
    is the one matched to class ``c`` (unmatched clusters last)."""
    table, classes, ids = contingency(truth, clusters)
    mapping = match_clusters(table)
    order = sorted(range(len(ids)), key=lambda k: (mapping.get(k, len(classes) + k)))
    return table[:, order], [str(c) for c in classes], [str(ids[k]) for k in order]


def clustering_scores(truth, clusters) -> dict:
    """Every score of one clustering against its truth, as JSON types."""
    matrix, class_names, cluster_names = confusion_matrix(truth, clusters)
    return {"accuracy": hungarian_accuracy(truth, clusters), "nmi": normalized_mutual_info(truth, clusters),
            "ari": adjusted_rand_index(truth, clusters), "per_class": per_class_scores(truth, clusters),
            "confusion": matrix.tolist(), "classes": class_names, "clusters": cluster_names,
            "examples": int(np.asarray(truth).size)}


def plot_confusion(truth, clusters, path, *, title: str = "") -> Path:
    """The confusion matrix (counts and row fractions) as a figure at ``path``."""
    matrix, class_names, cluster_names = confusion_matrix(truth, clusters)
    fractions = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig = Figure(figsize=(1.2 * len(cluster_names) + 2.2, 1.0 * len(class_names) + 1.6))
    ax = fig.subplots()
    ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, f"{count}\n{fractions[i, j]:.3f}", ha="center", va="center",
                color="white" if fractions[i, j] > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(len(cluster_names)), [f"cluster {c}" for c in cluster_names])
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("cluster (matched to the class of its column)")
    ax.set_ylabel("true class")
    ax.set_title(title or f"accuracy {hungarian_accuracy(truth, clusters):.3f}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


# ============================================================================ k-means
def _sq_dist(x, centres):
    return jnp.maximum(jnp.sum(x * x, 1)[:, None] - 2 * x @ centres.T + jnp.sum(centres * centres, 1)[None], 0.0)


def _kmeans_pp(key, x, k: int):
    """k-means++ seeds: the first uniform, each next one drawn with probability ∝ D(x)^2."""
    n = x.shape[0]
    keys = jax.random.split(key, k)
    first = x[jax.random.randint(keys[0], (), 0, n)]
    centres = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
    d2 = jnp.sum((x - first) ** 2, 1)

    def body(j, carry):
        centres, d2 = carry
        # All points coincide with chosen seeds: fall back to uniform choice.
        logits = jnp.where(jnp.sum(d2) > 0, jnp.log(jnp.maximum(d2, 1e-30)), jnp.zeros_like(d2))
        idx = jax.random.categorical(keys[j], logits)
        centres = centres.at[j].set(x[idx])
        return centres, jnp.minimum(d2, jnp.sum((x - x[idx]) ** 2, 1))

    centres, _ = jax.lax.fori_loop(1, k, body, (centres, d2))
    return centres


def _lloyd(x, centres, max_iter: int, tol: float):
    """Lloyd iterations until the centres move less than ``tol`` (squared, summed) or ``max_iter``.
    An empty cluster keeps its centre."""

    def step(centres):
        labels = jnp.argmin(_sq_dist(x, centres), 1)
        onehot = jax.nn.one_hot(labels, centres.shape[0], dtype=x.dtype)
        counts = onehot.sum(0)
        sums = onehot.T @ x
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None], centres)

    def cond(carry):
        i, _, shift = carry
        return (i < max_iter) & (shift > tol)

    def body(carry):
        i, centres, _ = carry
        new = step(centres)
        return i + 1, new, jnp.sum((new - centres) ** 2)

    _, centres, _ = jax.lax.while_loop(cond, body, (0, centres, jnp.asarray(jnp.inf, x.dtype)))
    d2 = _sq_dist(x, centres)
    return centres, jnp.argmin(d2, 1), jnp.sum(jnp.min(d2, 1))


@functools.partial(jax.jit, static_argnames=("k", "n_init", "max_iter"))
def _kmeans_jit(x, key, k: int, n_init: int, max_iter: int, tol):
    keys = jax.random.split(key, n_init)
    seeds = jax.vmap(lambda kk: _kmeans_pp(kk, x, k))(keys)
    centres, labels, inertia = jax.vmap(lambda c: _lloyd(x, c, max_iter, tol))(seeds)
    best = jnp.argmin(inertia)
    return centres[best], labels[best], inertia[best], inertia


def kmeans(x, k: int, *, n_init: int = 20, max_iter: int = 300, tol: float = 1e-8, seed: int = 0):
    """k-means of ``x`` (N, D): ``(centres (k, D), labels (N,), inertia)`` of the best of ``n_init``
    k-means++-seeded Lloyd runs (all restarts in one compiled call). Tolerance is relative to the
    data's variance, as in scikit-learn."""
    x = np.asarray(x, np.float32)
    if x.ndim != 2:
        raise InputError(f"kmeans: expected (N, D) points, got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).all(1))
        raise InputError(f"kmeans: non-finite values in row(s) {bad[:10].tolist()}")
    if not 1 <= k <= len(x):
        raise InputError(f"kmeans: k = {k} needs 1 <= k <= number of points ({len(x)})")
    scaled_tol = float(tol) * float(np.mean(np.var(x, axis=0)))
    centres, labels, inertia, _ = _kmeans_jit(jnp.asarray(x), jax.random.PRNGKey(seed), k=int(k),
                                              n_init=int(n_init), max_iter=int(max_iter),
                                              tol=jnp.float32(scaled_tol))
    return np.asarray(centres), np.asarray(labels), float(inertia)


# ============================================================================ Gaussian mixture
def _gmm_log_resp(x, means, variances, log_weights):
    """Per-point log joint ``log w_k + log N(x | mu_k, diag var_k)`` (N, K)."""
    log_det = jnp.sum(jnp.log(variances), 1)
    maha = jnp.sum(jnp.square(x[:, None, :] - means[None]) / variances[None], -1)
    return log_weights[None] - 0.5 * (x.shape[1] * jnp.log(2 * jnp.pi) + log_det[None] + maha)


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _gmm_jit(x, means, variances, weights, reg, max_iter: int, tol):
    def e_step(means, variances, weights):
        joint = _gmm_log_resp(x, means, variances, jnp.log(weights))
        norm = jax.scipy.special.logsumexp(joint, axis=1, keepdims=True)
        return jnp.exp(joint - norm), jnp.mean(norm)

    def m_step(resp):
        counts = resp.sum(0) + 10 * jnp.finfo(x.dtype).eps  # an emptied component keeps finite values
        means = resp.T @ x / counts[:, None]
        variances = resp.T @ jnp.square(x) / counts[:, None] - jnp.square(means) + reg
        return means, jnp.maximum(variances, reg), counts / x.shape[0]

    def cond(carry):
        i, _, _, _, gain = carry
        return (i < max_iter) & (gain > tol)

    def body(carry):
        i, means, variances, weights, _ = carry
        resp, before = e_step(means, variances, weights)
        means, variances, weights = m_step(resp)
        _, after = e_step(means, variances, weights)
        return i + 1, means, variances, weights, after - before

    i, means, variances, weights, _ = jax.lax.while_loop(
        cond, body, (0, means, variances, weights, jnp.asarray(jnp.inf, x.dtype)))
    resp, mean_log_likelihood = e_step(means, variances, weights)
    return means, variances, weights, resp, mean_log_likelihood, i


def gmm(x, k: int, *, n_init: int = 20, max_iter: int = 300, tol: float = 1e-6, reg_covar: float = 1e-6,
        seed: int = 0) -> dict:
    """Gaussian mixture with diagonal covariances fitted by EM, started from :func:`kmeans`
    (``n_init`` restarts there): each component's mean, variances and weight from its k-means cluster.

    EM stops when the mean log-likelihood per point gains less than ``tol`` or after ``max_iter``
    iterations; ``reg_covar`` times the data's mean variance is added to every variance (no
    component collapses onto one point). Returns ``{"means" (k, D), "variances" (k, D),
    "weights" (k,), "labels" (N,), "responsibilities" (N, k), "mean_log_likelihood", "iterations"}``.
    """
    x = np.asarray(x, np.float32)
    _, labels, _ = kmeans(x, k, n_init=n_init, seed=seed)
    onehot = np.eye(k, dtype=np.float64)[labels]
    counts = np.maximum(onehot.sum(0), 1.0)
    spread = float(np.mean(np.var(x, axis=0))) or 1.0
    reg = reg_covar * spread
    means = (onehot.T @ x) / counts[:, None]
    variances = np.maximum((onehot.T @ np.square(x.astype(np.float64))) / counts[:, None] - means ** 2, 0) + reg
    # a singleton cluster has zero variance: give it the data's spread rather than a spike
    variances = np.where(onehot.sum(0)[:, None] > 1, variances, spread)
    means, variances, weights, resp, mll, iters = _gmm_jit(
        jnp.asarray(x), jnp.asarray(means, jnp.float32), jnp.asarray(variances, jnp.float32),
        jnp.asarray(counts / len(x), jnp.float32), jnp.float32(reg), max_iter=int(max_iter), tol=jnp.float32(tol))
    resp = np.asarray(resp)
    return {"means": np.asarray(means), "variances": np.asarray(variances), "weights": np.asarray(weights),
            "labels": resp.argmax(1), "responsibilities": resp, "mean_log_likelihood": float(mll),
            "iterations": int(iters)}


def gmm_full(x, labels, *, max_iter: int = 200, tol: float = 1e-6, reg_covar: float = 1e-6) -> dict:
    """Gaussian mixture with full covariances fitted by EM, started from a partition ``labels (N,)``
    (e.g. DEC's clusters): each component's mean, covariance and weight from its cluster.

    Unlike k-means and the Student-t kernel, which cut between centres as if every cluster had the
    same round spread, the mixture's boundary follows each cluster's own covariance. Stops when the
    mean log-likelihood per point gains less than ``tol`` or after ``max_iter`` iterations;
    ``reg_covar`` times the data's mean variance is added to every covariance's diagonal. Returns
    ``{"means" (k, D), "covariances" (k, D, D), "weights" (k,), "labels" (N,), "responsibilities"
    (N, k), "mean_log_likelihood", "iterations"}``."""
    x = np.asarray(x, np.float64)
    labels = np.asarray(labels)
    if x.ndim != 2 or labels.shape != (len(x),):
        raise InputError(f"gmm_full: expected x (N, D) and labels (N,), got {x.shape} and {labels.shape}")
    if not np.isfinite(x).all():
        raise InputError("gmm_full: x contains NaN or infinite values")
    n, d = x.shape
    k = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=k)
    if sizes.min() < 2:
        raise InputError(f"gmm_full: the starting partition has a cluster of {sizes.min()} point(s); "
                         "each needs at least 2")
    reg = reg_covar * (float(np.mean(np.var(x, axis=0))) or 1.0)
    resp = np.eye(k)[labels]
    previous, mll, iterations = -np.inf, -np.inf, 0
    for iterations in range(1, int(max_iter) + 1):
        counts = resp.sum(0)
        means = (resp.T @ x) / counts[:, None]
        covariances = np.stack([((resp[:, j, None] * (x - means[j])).T @ (x - means[j])) / counts[j]
                                + reg * np.eye(d) for j in range(k)])
        log_p = np.empty((n, k))
        for j in range(k):
            chol = np.linalg.cholesky(covariances[j])
            solved = scipy.linalg.solve_triangular(chol, (x - means[j]).T, lower=True)
            log_p[:, j] = (np.log(counts[j] / n) - 0.5 * np.square(solved).sum(0)
                           - np.log(np.diag(chol)).sum() - 0.5 * d * np.log(2 * np.pi))
        norm = logsumexp(log_p, axis=1, keepdims=True)
        resp = np.exp(log_p - norm)
        mll = float(norm.mean())
        if mll - previous < tol:
            break
        previous = mll
    return {"means": means, "covariances": covariances, "weights": counts / n, "labels": resp.argmax(1),
            "responsibilities": resp, "mean_log_likelihood": mll, "iterations": iterations}


# ============================================================================ DEC
def whitening_map(z, *, floor: float = 1e-6) -> dict[str, np.ndarray]:
    """PCA whitening of embeddings ``z (N, D)``: ``{"mean" (D,), "matrix" (D, D)}`` such that
    ``(z - mean) @ matrix`` has identity covariance (principal directions, each scaled to unit variance).

    Directions with a variance below ``floor`` times the largest are scaled as if they had that
    variance, so that an unused (near-constant) code dimension is not blown up into noise."""
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or len(z) < 2:
        raise InputError(f"whitening_map: expected (N >= 2, D) embeddings, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise InputError("whitening_map: the embeddings contain NaN or infinite values")
    mean = z.mean(axis=0)
    variances, directions = np.linalg.eigh(np.cov(z - mean, rowvar=False, bias=True).reshape(z.shape[1], -1))
    variances = np.maximum(variances, floor * max(float(variances.max()), np.finfo(np.float64).tiny))
    return {"mean": mean.astype(np.float32), "matrix": (directions / np.sqrt(variances)).astype(np.float32)}


def apply_map(z, cluster_map):
    """Embeddings in the clustering space: ``(z - mean) @ matrix``, or ``z`` when ``cluster_map`` is None."""
    if cluster_map is None:
        return z
    return (z - cluster_map["mean"]) @ cluster_map["matrix"]


def soft_assignment(z, centres, alpha: float = 1.0):
    """Student's t soft assignment ``q (N, K)`` of embeddings ``z (N, D)`` to ``centres (K, D)``."""
    d2 = jnp.sum((z[:, None, :] - centres[None, :, :]) ** 2, -1)
    # log-space kernel: no overflow for far points, and rows still sum to one exactly-ish.
    logits = -(alpha + 1.0) / 2.0 * jnp.log1p(d2 / alpha)
    return jax.nn.softmax(logits, axis=1)


def target_distribution(q):
    """DEC's target ``p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j')`` with ``f_j = sum_i q_ij``
    over all rows of ``q`` (pass the whole dataset's q)."""
    weight = q ** 2 / jnp.sum(q, axis=0, keepdims=True)
    return weight / jnp.sum(weight, axis=1, keepdims=True)


def kl_divergence(p, q, eps: float = 1e-12):
    """``KL(P || Q)`` of each row, ``sum_j p_ij log(p_ij / q_ij)`` (0 log 0 = 0)."""
    return jnp.sum(jnp.where(p > 0, p * (jnp.log(jnp.maximum(p, eps)) - jnp.log(jnp.maximum(q, eps))), 0.0), axis=1)


@functools.partial(jax.jit, static_argnames=("alpha",))
def dataset_target(z, centres, alpha: float = 1.0):
    """``(q, p, labels)`` of the whole dataset's embeddings in one compiled call."""
    q = soft_assignment(z, centres, alpha)
    return q, target_distribution(q), jnp.argmax(q, axis=1)
