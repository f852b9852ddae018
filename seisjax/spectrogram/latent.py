"""Latent codes of the spectrogram autoencoders, as pure functions of a model's variables and
numpy arrays: the straight path between two records' codes (:func:`latent_path`) and the draws of
the neighbour prior (:func:`neighbour_codes`), an empirical conditional prior for generation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from seisjax.spectrogram.model import SpectrogramAE, SpectrogramVAE

__all__ = ["latent_path", "neighbour_codes"]


def latent_path(model, variables, pick: dict, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(weights (steps,), decoded (steps, F, T, C))``: the two records of ``pick`` (rows 0 and 1 of
    its ``x``, and of ``cond`` and ``station_index`` for a CVAE) encoded, the straight line between
    their codes (the AE's spatial code, the VAEs' posterior means) decoded at ``steps`` points; a
    CVAE's conditions move along the same line, its station switches half-way."""
    x = jnp.asarray(pick["x"][:2])
    weights = np.linspace(0.0, 1.0, int(steps))
    if isinstance(model, SpectrogramAE):
        h = model.apply(variables, x, train=False, method="encode")
        path_h = jnp.stack([(1 - w) * h[0] + w * h[1] for w in weights])
        decoded = model.apply(variables, path_h, train=False, method="decode")
    elif isinstance(model, SpectrogramVAE):
        mean, _ = model.apply(variables, x, train=False, method="encode")
        z = jnp.stack([(1 - w) * mean[0] + w * mean[1] for w in weights])
        decoded = model.apply(variables, z, train=False, method="decode")
    else:
        cond, station = jnp.asarray(pick["cond"][:2]), jnp.asarray(pick["station_index"][:2])
        mean, _ = model.apply(variables, x, cond, station, train=False, method="encode")
        z = jnp.stack([(1 - w) * mean[0] + w * mean[1] for w in weights])
        path_cond = jnp.stack([(1 - w) * cond[0] + w * cond[1] for w in weights])
        path_station = jnp.where(jnp.asarray(weights) < 0.5, station[0], station[1]).astype(jnp.int32)
        decoded = model.apply(variables, z, path_cond, path_station, train=False, method="decode")
    return weights, np.asarray(decoded)


def neighbour_codes(keys: np.ndarray, train_keys: np.ndarray, mean: np.ndarray, sigma: np.ndarray, k: int, *,
                    seed: int = 0) -> np.ndarray:
    """Latent codes ``(N, latent)`` for the conditions ``keys`` ``(N, K)``: for each row one of the
    ``k`` training records nearest in the standardised ``train_keys`` ``(M, K)`` is picked at random
    and its posterior N(``mean``, ``sigma``^2) ``(M, latent)`` sampled.

    The decoder takes the spectral shape from z, and z from N(0, I) is independent of the
    conditions, while the training records' codes are not."""
    train_keys = np.asarray(train_keys, np.float64)
    centre, spread = train_keys.mean(axis=0), train_keys.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    keys = (np.asarray(keys, np.float64) - centre) / spread
    train_keys = (train_keys - centre) / spread
    k = min(int(k), len(train_keys))
    nearest = np.concatenate([  # in blocks: memory of one block of rows against the training set
        np.argpartition(((block[:, None, :] - train_keys[None]) ** 2).sum(axis=-1), k - 1, axis=1)[:, :k]
        for block in np.array_split(keys, max(1, -(-len(keys) // 256)))])
    rng = np.random.default_rng(int(seed))
    pick = nearest[np.arange(len(keys)), rng.integers(0, k, len(keys))]
    return mean[pick] + sigma[pick] * rng.standard_normal(mean[pick].shape)
