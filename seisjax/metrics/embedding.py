"""Measures of learned embeddings, shared by the families that learn one (LSTM AE, DEC): linear
probes, magnitude bins, 2-D maps.

:func:`linear_probe` is a multinomial logistic regression (L2-regularised, solved to convergence) on
standardised embeddings: trained on one split, scored on another, beside the majority-class
baseline (the most frequent training class predicted for every evaluation record).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import minimize
from scipy.special import logsumexp

from seisjax.errors import InputError

__all__ = ["linear_probe", "linear_probe_predictions", "magnitude_bins", "nonlinear_2d", "pca_2d", "plot_embedding_map"]


def magnitude_bins(magnitude, edges) -> np.ndarray:
    """Magnitudes -> bin names ("<2", "2-3", ..., ">=5" for edges (2, 3, 4, 5)); "" when unknown."""
    magnitude = np.asarray(magnitude, np.float64)
    edges = list(edges)
    names = [f"<{edges[0]:g}"] + [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:])] + [f">={edges[-1]:g}"]
    index = np.searchsorted(edges, magnitude, side="right")
    out = np.array(names, dtype=object)[np.clip(index, 0, len(names) - 1)]
    out[~np.isfinite(magnitude)] = ""
    return out.astype(str)


def pca_2d(z: np.ndarray) -> np.ndarray:
    """First two principal coordinates of ``z`` (N, D)."""
    zc = z - z.mean(0)
    if len(z) < 2:
        return np.zeros((len(z), 2))
    vt = np.linalg.svd(zc, full_matrices=False)[2]
    out = zc @ vt[:2].T
    return out if out.shape[1] == 2 else np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def nonlinear_2d(z: np.ndarray, *, seed: int = 0) -> tuple[str, np.ndarray] | None:
    """A 2-D non-linear map of ``z`` (N, D) where a library for it is installed: UMAP (``umap-learn``)
    first, else t-SNE (scikit-learn); ``None`` when neither is (seisjax does not depend on them)."""
    if len(z) < 5:
        return None
    try:
        import umap  # optional: seisjax does not require umap-learn

        return "UMAP", umap.UMAP(n_components=2, random_state=seed).fit_transform(z)
    except ImportError:
        pass
    try:
        from sklearn.manifold import TSNE  # optional: seisjax does not require scikit-learn
    except ImportError:
        return None
    perplexity = float(min(30.0, (len(z) - 1) / 3))
    return "t-SNE", TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(z)


def _fit_logistic(x: np.ndarray, codes: np.ndarray, n_classes: int, *, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """``(w, b)`` minimising the mean cross-entropy + ``l2 * |w|^2`` (bias free of the penalty), solved
    to convergence (L-BFGS in float64). The problem is strictly convex in ``w``, so its optimum, and
    the probe's accuracy, do not depend on the machine's rounding, which a fixed number of first-order
    steps did on heavy-tailed embeddings (seisjax/lstm_ae/README.md, "Probes")."""
    n, d = x.shape
    onehot = np.eye(n_classes)[codes]

    def loss_and_grad(theta):
        w, b = theta[:d * n_classes].reshape(d, n_classes), theta[d * n_classes:]
        logits = x @ w + b
        lse = logsumexp(logits, axis=1)
        loss = np.mean(lse - logits[np.arange(n), codes]) + l2 * np.sum(w ** 2)
        residual = (np.exp(logits - lse[:, None]) - onehot) / n
        return loss, np.concatenate([(x.T @ residual + 2.0 * l2 * w).ravel(), residual.sum(0)])

    result = minimize(loss_and_grad, np.zeros(d * n_classes + n_classes), jac=True, method="L-BFGS-B",
                      options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-8})
    return result.x[:d * n_classes].reshape(d, n_classes), result.x[d * n_classes:]


def linear_probe_predictions(z_train, y_train, z_eval, *, l2: float = 1e-3) -> np.ndarray:
    """The labels that a logistic regression fitted on ``(z_train, y_train)`` predicts for ``z_eval``
    (features standardised with the training mean and std; see :func:`linear_probe`)."""
    z_train, z_eval = np.asarray(z_train, np.float64), np.asarray(z_eval, np.float64)
    if len(z_train) == 0 or len(z_eval) == 0:
        raise InputError("linear_probe: empty training or evaluation set")
    classes, codes = np.unique(np.asarray(y_train).astype(str), return_inverse=True)
    mean, std = z_train.mean(0), z_train.std(0)
    std = np.where(std > 0, std, 1.0)
    w, b = _fit_logistic((z_train - mean) / std, codes, len(classes), l2=l2)
    return classes[np.argmax(((z_eval - mean) / std) @ w + b, axis=1)]


def linear_probe(z_train, y_train, z_eval, y_eval, *, l2: float = 1e-3) -> dict:
    """Logistic-regression probe of labels from embeddings: fit on ``(z_train, y_train)``, score on
    ``(z_eval, y_eval)``. Features are standardised with the training mean and std. Returns
    ``{"accuracy", "majority_baseline" (the training majority class predicted for every evaluation
    record), "best_constant_on_eval" (the evaluation set's own most frequent class: an upper bound of
    any constant guess), "majority_class", "classes", "n_train", "n_eval", "eval_class_counts"}``;
    evaluation labels unseen in training count as errors. Deterministic: a convex fit solved to
    convergence."""
    y_train, y_eval = np.asarray(y_train).astype(str), np.asarray(y_eval).astype(str)
    predicted = linear_probe_predictions(z_train, y_train, z_eval, l2=l2)
    classes, codes = np.unique(y_train, return_inverse=True)
    majority = classes[np.bincount(codes).argmax()]
    eval_classes, eval_counts = np.unique(y_eval, return_counts=True)
    return {"accuracy": float(np.mean(predicted == y_eval)), "majority_baseline": float(np.mean(y_eval == majority)),
            "best_constant_on_eval": float(eval_counts.max() / len(y_eval)),
            "majority_class": str(majority), "classes": classes.tolist(), "n_train": int(len(z_train)),
            "n_eval": int(len(z_eval)), "eval_class_counts": dict(zip(eval_classes.tolist(), eval_counts.tolist()))}


def plot_embedding_map(z: np.ndarray, colours: dict, path, *, title: str = "") -> Path:
    """2-D maps of ``z``, one panel per ``{name: labels}`` (a plain panel when there are none): a row
    for PCA, and a row for UMAP or t-SNE where installed (:func:`nonlinear_2d`)."""
    z = np.asarray(z, np.float64)
    maps = [("PC", pca_2d(z))]
    other = nonlinear_2d(z)
    if other is not None:
        maps.append(other)
    panels = list(colours.items()) or [("records", np.full(len(z), "all"))]
    fig = Figure(figsize=(4.4 * len(panels), 4 * len(maps)))
    axes = fig.subplots(len(maps), len(panels), squeeze=False)
    for row, (method, xy) in zip(axes, maps):
        for ax, (name, labels) in zip(row, panels):
            labels = np.asarray(labels).astype(str)
            for j, value in enumerate(np.unique(labels)):
                sel = labels == value
                ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.6, color=f"C{j % 10}", label=value or "unknown")
            ax.set_xlabel(f"{method} 1")
            ax.set_ylabel(f"{method} 2")
            ax.legend(fontsize=7, markerscale=3, title=name, title_fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
