"""Waveform autoencoding: mean-squared reconstruction of the windows around P that
:mod:`seisjax.conv_ae.data` makes (``{"x": (B, window, C)}``); evaluation reports the MSE per
component and the correlation of each window with its reconstruction."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from seisjax.conv_ae.data import ConvAEData
from seisjax.conv_ae.model import MODELS
from seisjax.train.task import Task, pairs

__all__ = ["AutoencoderTask"]


class AutoencoderTask(Task):
    """Mean-squared reconstruction of normalised windows (``config.model``: any model mapping
    ``(B, W, C)`` to ``(B, W, C)``, by default ``conv_ae``)."""

    name = "autoencoder"
    models = MODELS

    def __init__(self, config, *, workdir=None, data_path=None):
        super().__init__(config, workdir=workdir, data_path=data_path)
        self.data = ConvAEData(config, workdir=workdir, data_path=data_path)
        self.window, self.pre_p = self.data.window, self.data.pre_p

    # ------------------------------------------------------------------ data
    def train_batches(self, *, process_index, process_count):
        return self.data.train_batches(process_index=process_index, process_count=process_count)

    def eval_batches(self, *, process_index, process_count):
        return self.data.eval_batches(process_index=process_index, process_count=process_count)

    def data_info(self) -> dict:
        return self.data.info()

    def close(self):
        self.data.close()

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
        n = int(min(4, int(np.sum(batch["_valid"]))))
        if n == 0:
            return []
        x = np.asarray(batch["x"][:n])
        recon = np.asarray(jax.jit(self.model.apply)({"params": params, **model_state}, jnp.asarray(x)))
        comps = list(self.config.data.components)
        fig = Figure(figsize=(3.2 * len(comps), 1.8 * n))
        axes = fig.subplots(n, len(comps), squeeze=False, sharex=True, sharey=True)
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
        return [path]
