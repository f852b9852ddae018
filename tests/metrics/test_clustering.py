"""Clustering: scores against hand computations and identities; k-means on separated blobs; Gaussian
mixtures (diagonal from k-means, full covariances from a partition) against cases k-means gets wrong;
whitening; DEC's q, p and KL against direct numpy formulas."""

import numpy as np
import pytest
from scipy.special import rel_entr

from seisjax.errors import InputError
from seisjax.metrics import clustering as cl


def test_permuted_labels_score_one():
    truth = np.array([0, 0, 1, 1, 2, 2, 2])
    clusters = np.array([5, 5, 3, 3, 9, 9, 9])  # a relabelling
    assert cl.hungarian_accuracy(truth, clusters) == 1.0
    assert cl.normalized_mutual_info(truth, clusters) == pytest.approx(1.0)
    assert cl.adjusted_rand_index(truth, clusters) == pytest.approx(1.0)


def test_hand_computed_small_cases():
    # table: class 0 -> clusters {0: 2}, class 1 -> {1: 1, 2: 1}
    truth, clusters = [0, 0, 1, 1], [0, 0, 1, 2]
    # sum C(n_ij,2) = 1, a = 2, b = 1, E = a b / C(4,2) = 1/3, max = 1.5 -> (1 - 1/3) / (1.5 - 1/3)
    assert cl.adjusted_rand_index(truth, clusters) == pytest.approx((1 - 1 / 3) / (1.5 - 1 / 3))
    # I = ln 2, H(T) = ln 2, H(K) = 1.5 ln 2 -> NMI = 1 / 1.25
    assert cl.normalized_mutual_info(truth, clusters) == pytest.approx(0.8)
    assert cl.hungarian_accuracy(truth, clusters) == pytest.approx(0.75)

    truth, clusters = [0, 0, 0, 1, 1, 1], [1, 1, 0, 0, 0, 0]
    assert cl.hungarian_accuracy(truth, clusters) == pytest.approx(5 / 6)  # 1 -> class 0, 0 -> class 1
    scores = cl.per_class_scores(truth, clusters)
    assert scores["0"]["precision"] == pytest.approx(1.0)
    assert scores["0"]["recall"] == pytest.approx(2 / 3)
    assert scores["0"]["f1"] == pytest.approx(0.8)
    assert scores["1"]["precision"] == pytest.approx(0.75)
    assert scores["1"]["recall"] == pytest.approx(1.0)
    assert scores["1"]["f1"] == pytest.approx(2 * 0.75 / 1.75)
    matrix, classes, cluster_names = cl.confusion_matrix(truth, clusters)
    assert classes == ["0", "1"] and cluster_names == ["1", "0"]  # column c is matched to class c
    np.testing.assert_array_equal(matrix, [[2, 1], [0, 3]])


def test_independent_labels_score_near_zero():
    rng = np.random.default_rng(0)
    truth, clusters = rng.integers(0, 2, 20000), rng.integers(0, 3, 20000)
    assert abs(cl.adjusted_rand_index(truth, clusters)) < 0.002
    assert cl.normalized_mutual_info(truth, clusters) < 0.002
    assert cl.hungarian_accuracy(truth, clusters) < 0.52


def test_bad_input_is_named():
    with pytest.raises(InputError, match="differ"):
        cl.hungarian_accuracy([0, 1], [0, 1, 1])
    with pytest.raises(InputError, match="non-finite.*row"):
        cl.kmeans(np.array([[0.0, 1.0], [np.nan, 0.0]]), 1)


def test_confusion_figure(tmp_path):
    path = cl.plot_confusion([0, 0, 1, 1], [1, 1, 0, 1], tmp_path / "c.png")
    assert path.stat().st_size > 1000


def test_kmeans_recovers_separated_blobs():
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    truth = rng.integers(0, 4, 2000)
    x = centres[truth] + rng.normal(scale=0.5, size=(2000, 2))
    found, labels, inertia = cl.kmeans(x, 4, n_init=5, seed=3)
    assert cl.hungarian_accuracy(truth, labels) == 1.0
    # each found centre is the mean of its members, within the noise of the true centre
    order = np.argmin(((found[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    assert sorted(order) == [0, 1, 2, 3]
    np.testing.assert_allclose(found, centres[order], atol=0.1)
    members_mean = np.stack([x[labels == j].mean(0) for j in range(4)])
    np.testing.assert_allclose(found, members_mean, atol=1e-4)
    assert inertia == pytest.approx(((x - found[labels]) ** 2).sum(), rel=1e-4)


def test_whitening_finds_a_small_variance_class_direction_kmeans_misses():
    rng = np.random.default_rng(4)
    n = 4000
    truth = rng.integers(0, 2, n)
    # classes +-1 apart along a direction of small spread, a broad unimodal nuisance across it,
    # both rotated so that neither lies on a coordinate axis
    z = np.stack([np.where(truth == 1, 1.0, -1.0) + rng.normal(0, 0.3, n), rng.normal(0, 5.0, n)], 1)
    angle = 0.6
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    z = z @ rot.T + np.array([3.0, -2.0])
    cluster_map = cl.whitening_map(z)
    white = cl.apply_map(z, cluster_map)
    np.testing.assert_allclose(white.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(2), atol=1e-4)
    assert cl.hungarian_accuracy(truth, cl.kmeans(z, 2, n_init=5, seed=0)[1]) < 0.7
    assert cl.hungarian_accuracy(truth, cl.kmeans(white, 2, n_init=5, seed=0)[1]) > 0.99
    # a constant code dimension is not blown up into noise; bad input is named
    flat = np.concatenate([z, np.full((n, 1), 0.5) + 1e-9 * rng.normal(size=(n, 1))], 1)
    spread = np.sort(cl.apply_map(flat, cl.whitening_map(flat)).std(axis=0))
    assert spread[0] < 1e-3 and spread[1:] == pytest.approx([1.0, 1.0], abs=1e-3)
    with pytest.raises(InputError, match="NaN"):
        cl.whitening_map(np.where(np.arange(n)[:, None] == 3, np.nan, z))


def test_soft_assignment_target_and_kl_by_hand():
    q = np.asarray(cl.soft_assignment(np.zeros((1, 2), np.float32), np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)))
    np.testing.assert_allclose(q, [[5 / 7, 2 / 7]], rtol=1e-6)  # kernels 1/2 and 1/5

    q = np.array([[0.6, 0.4], [0.3, 0.7], [0.9, 0.1]])
    f = q.sum(0)
    expected = np.array([[q[i, j] ** 2 / f[j] for j in range(2)] for i in range(3)])
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(np.asarray(cl.target_distribution(q)), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(cl.kl_divergence(expected, q)), rel_entr(expected, q).sum(1), rtol=1e-5, atol=1e-7)
    # KL(P||P) = 0 and a zero in p contributes nothing
    np.testing.assert_allclose(np.asarray(cl.kl_divergence(q, q)), 0.0, atol=1e-7)
    assert float(cl.kl_divergence(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]]))[0]) == pytest.approx(np.log(2))


def test_dataset_target_normalises_over_the_whole_dataset():
    rng = np.random.default_rng(2)
    # 100,000 embeddings, most near the first centre: f_j differs a lot between clusters
    z = np.concatenate([rng.normal(0, 1, (90000, 2)), rng.normal(5, 1, (10000, 2))]).astype(np.float32)
    centres = np.array([[0.0, 0.0], [5.0, 5.0]], np.float32)
    q, p, labels = (np.asarray(a) for a in cl.dataset_target(z, centres))
    d2 = ((z[:, None, :] - centres[None]) ** 2).sum(-1).astype(np.float64)
    q_ref = 1 / (1 + d2)
    q_ref /= q_ref.sum(1, keepdims=True)
    p_ref = q_ref ** 2 / q_ref.sum(0)
    p_ref /= p_ref.sum(1, keepdims=True)
    np.testing.assert_allclose(q, q_ref, atol=1e-5)
    np.testing.assert_allclose(p, p_ref, atol=1e-5)
    np.testing.assert_array_equal(labels, q_ref.argmax(1))
    # a target computed from a part only would differ: the normalisation is dataset-wide
    p_part = np.asarray(cl.target_distribution(q[85000:95000]))
    assert np.abs(p_part - p[85000:95000]).max() > 0.01


# ---------------------------------------------------------------------------- Gaussian mixtures
def _anisotropic_blobs(seed=0, sizes=(300, 500)):
    """Two axis-aligned elongated blobs (std 5 along x, 0.3 along y) 2 apart in y: k-means cuts
    them across x, a diagonal Gaussian mixture separates them."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=(n, 2)) * [5.0, 0.3] + [0.0, y] for n, y in zip(sizes, (-1.0, 1.0))]
    return np.concatenate(parts), np.repeat([0, 1], sizes)


def test_gmm_beats_kmeans_on_anisotropic_blobs_and_recovers_them():
    x, truth = _anisotropic_blobs()
    assert cl.hungarian_accuracy(truth, cl.kmeans(x, 2, n_init=10)[1]) < 0.75
    fit = cl.gmm(x, 2, n_init=10)
    assert cl.hungarian_accuracy(truth, fit["labels"]) > 0.97
    order = np.argsort(fit["means"][:, 1])  # component of the lower blob first
    np.testing.assert_allclose(fit["means"][order, 1], [-1.0, 1.0], atol=0.05)
    np.testing.assert_allclose(np.sqrt(fit["variances"][order]), [[5.0, 0.3], [5.0, 0.3]], rtol=0.12)
    np.testing.assert_allclose(fit["weights"][order], [300 / 800, 500 / 800], atol=0.02)
    np.testing.assert_allclose(fit["responsibilities"].sum(1), 1.0, atol=1e-5)


def test_full_covariance_mixture_redraws_a_boundary_that_equal_spreads_get_wrong():
    """A tight cluster beside a wide one: k-means cuts halfway between the centres and gives the tight
    cluster a third of the wide one; the full-covariance mixture, started from that partition, follows
    each cluster's own spread."""
    rng = np.random.default_rng(0)
    tight = rng.normal(size=(600, 2)) * 0.3
    wide = rng.normal(size=(600, 2)) * 3.0 + [3.0, 0.0]
    x, truth = np.concatenate([tight, wide]), np.repeat([0, 1], 600)
    start = cl.kmeans(x, 2, n_init=5, seed=0)[1]
    fit = cl.gmm_full(x, start)
    assert cl.hungarian_accuracy(truth, start) < 0.85
    assert cl.hungarian_accuracy(truth, fit["labels"]) > 0.95
    wide_component = int(np.argmax(fit["covariances"][:, 0, 0]))
    np.testing.assert_allclose(np.diag(fit["covariances"][wide_component]), [9.0, 9.0], rtol=0.25)
    np.testing.assert_allclose(fit["responsibilities"].sum(1), 1.0, atol=1e-9)
    with pytest.raises(InputError, match="at least 2"):
        cl.gmm_full(x, np.r_[np.zeros(len(x) - 1, int), 1])
    with pytest.raises(InputError, match="NaN"):
        cl.gmm_full(np.where(np.arange(len(x))[:, None] == 3, np.nan, x), start)
