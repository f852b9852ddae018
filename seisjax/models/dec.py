"""Networks of deep embedded clustering (Mousavi, Zhu, Ellsworth & Beroza 2019, IEEE GRSL).

Every network here is an autoencoder with ``encode(x) -> z``, ``decode(z) -> x_hat`` and
``__call__(x) -> (x_hat, z)``, and owns the cluster centres as a parameter ``centres``
``(n_clusters, embedding_dim)``: pretraining leaves them untouched (they get no gradient), DEC
initialises them by k-means on the pretrained embeddings and trains them with the encoder.

Mousavi polarity network (:class:`MousaviPolarity`): input ``(B, 32, 1)``, the vertical component
around P. Encoder Conv1D(8, k11) - MaxPool 2 - Conv1D(4, k9) - MaxPool 2 - Conv1D(2, k3) - MaxPool 2
- Conv1D(1, k3) - MaxPool 2 -> ``(B, 2, 1)``, flattened to a 2-d embedding. Decoder: the mirror,
each level an upsampling by repeating samples then a convolution (kernels 3, 3, 9, 11; widths 2, 4,
8, out), linear output. "Same" padding throughout; tanh activations (the paper's).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from seisjax.registry import register_model

__all__ = ["MousaviPolarity"]

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": nn.relu, "elu": nn.elu, "linear": lambda x: x}


def _upsample(x, factor: int = 2):
    return jnp.repeat(x, factor, axis=1)


@register_model("mousavi_polarity")
class MousaviPolarity(nn.Module):
    """The polarity network (see the module docstring). ``length`` must be divisible by 16."""

    length: int = 32
    out_channels: int = 1
    channels: Sequence[int] = (8, 4, 2, 1)
    kernels: Sequence[int] = (11, 9, 3, 3)
    activation: str = "tanh"
    n_clusters: int = 2

    def setup(self):
        if len(self.channels) != len(self.kernels):
            raise ValueError(f"mousavi_polarity: {len(self.channels)} channels but {len(self.kernels)} kernels")
        if self.length % 2 ** len(self.channels):
            raise ValueError(f"mousavi_polarity: length {self.length} is not divisible by {2 ** len(self.channels)}")
        self.encoder = [nn.Conv(c, (k,), padding="SAME", name=f"enc{i}")
                        for i, (c, k) in enumerate(zip(self.channels, self.kernels))]
        widths = list(self.channels[-2::-1]) + [self.out_channels]
        self.decoder = [nn.Conv(c, (k,), padding="SAME", name=f"dec{i}")
                        for i, (c, k) in enumerate(zip(widths, self.kernels[::-1]))]
        self.embedding_dim = self.length // 2 ** len(self.channels) * self.channels[-1]
        self.centres = self.param("centres", nn.initializers.normal(1.0), (self.n_clusters, self.embedding_dim))

    def encode(self, x):
        act = _ACTIVATIONS[self.activation]
        for conv in self.encoder:
            x = nn.max_pool(act(conv(x)), (2,), strides=(2,))
        return x.reshape(x.shape[0], -1)

    def decode(self, z):
        act = _ACTIVATIONS[self.activation]
        x = z.reshape(z.shape[0], -1, self.channels[-1])
        for i, conv in enumerate(self.decoder):
            x = conv(_upsample(x))
            if i < len(self.decoder) - 1:  # linear output
                x = act(x)
        return x

    def __call__(self, x):
        z = self.encode(x)
        # touch the centres so that init creates them whatever method is called first
        _ = self.centres
        return self.decode(z), z
