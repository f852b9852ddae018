"""Measures of embeddings: the linear probe on known truth, magnitude bins, PCA and the non-linear map."""

import importlib.util

import numpy as np
import pytest

from seisjax.metrics.embedding import (_fit_logistic, linear_probe, linear_probe_predictions, magnitude_bins,
                                       nonlinear_2d, pca_2d)


def test_probe_recovers_a_linear_label_and_not_a_shuffled_one():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(600, 12))
    w = rng.normal(size=12)
    y = np.where(z @ w > 0.3, "far", "near")
    fit = linear_probe(z[:400], y[:400], z[400:], y[400:])
    assert fit["accuracy"] > 0.9
    assert fit["majority_baseline"] < 0.75 and set(fit["classes"]) == {"far", "near"}
    assert fit["best_constant_on_eval"] == max(np.mean(y[400:] == "far"), np.mean(y[400:] == "near"))
    # three classes, linear in two directions
    y3 = np.select([z[:, 0] > 0.5, z[:, 1] > 0.0], ["a", "b"], "c")
    assert linear_probe(z[:400], y3[:400], z[400:], y3[400:])["accuracy"] > 0.9
    # labels unrelated to the embeddings: accuracy about chance (majority baseline +- sampling error)
    shuffled = rng.permutation(y)
    fit = linear_probe(z[:400], shuffled[:400], z[400:], shuffled[400:])
    assert abs(fit["accuracy"] - 0.5) < 0.1


def test_probe_is_solved_to_its_optimum_on_heavy_tailed_embeddings():
    """The probe's answer must not depend on rounding: at the returned weights the penalised loss is
    stationary, and perturbing the embeddings by 1e-4 (relative) changes no prediction."""
    rng = np.random.default_rng(1)
    z = rng.standard_t(1.5, size=(900, 40))        # heavy tails, as LSTM cell states have
    y = np.select([z[:, 0] + 0.1 * rng.normal(size=900) > 0.5, z[:, 1] > 0.0], ["a", "b"], "c")
    x = (z - z.mean(0)) / z.std(0)
    classes, codes = np.unique(y, return_inverse=True)
    w, b = _fit_logistic(x, codes, len(classes), l2=1e-3)
    logits = x @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    residual = (p - np.eye(len(classes))[codes]) / len(x)
    assert np.abs(x.T @ residual + 2e-3 * w).max() < 1e-6 and np.abs(residual.sum(0)).max() < 1e-6
    base = linear_probe_predictions(z[:600], y[:600], z[600:])
    nudged = linear_probe_predictions(z[:600] * (1 + 1e-4 * rng.normal(size=(600, 40))), y[:600], z[600:])
    most_frequent = np.unique(y[600:], return_counts=True)[1].max() / 300
    assert np.mean(base == y[600:]) > most_frequent + 0.25 and np.array_equal(base, nudged)


def test_magnitude_bins_and_pca():
    names = magnitude_bins([1.0, 2.0, 2.5, 4.99, 5.0, np.nan], (2, 3, 4, 5))
    assert names.tolist() == ["<2", "2-3", "2-3", "4-5", ">=5", ""]
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200, 5)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1])
    xy = pca_2d(z)
    # the two leading axes of an axis-aligned cloud are the first two coordinates (up to sign)
    assert abs(np.corrcoef(xy[:, 0], z[:, 0])[0, 1]) > 0.99 and abs(np.corrcoef(xy[:, 1], z[:, 1])[0, 1]) > 0.99


def test_nonlinear_map_separates_two_clusters_where_installed():
    """UMAP or t-SNE are optional: without them the map is PCA only (None here); with one, two
    well-separated groups in 16-D stay apart in its 2-D map."""
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 1, (40, 16)), rng.normal(0, 1, (40, 16)) + 8.0])
    result = nonlinear_2d(z)
    installed = any(importlib.util.find_spec(m) is not None for m in ("umap", "sklearn"))
    if not installed:
        assert result is None
        pytest.skip("neither umap-learn nor scikit-learn is installed: the embedding map is PCA only")
    name, xy = result
    assert name in ("UMAP", "t-SNE") and xy.shape == (80, 2)
    a, b = xy[:40], xy[40:]
    gap = np.linalg.norm(a.mean(0) - b.mean(0))
    assert gap > 2 * max(a.std(0).max(), b.std(0).max())
