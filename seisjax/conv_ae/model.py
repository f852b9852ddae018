"""A small 1-D convolutional autoencoder for multi-component waveform windows.

Input ``(batch, samples, components)`` (Flax's channels-last layout). The encoder halves the length
with each stride-2 convolution and ends in a dense latent code; the decoder mirrors it, but
upsamples by repeating samples and then convolving instead of using a strided transposed
convolution, which XLA runs several times slower on CPU (``seisjax/ops/conv.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

__all__ = ["ConvEncoder", "ConvDecoder", "ConvAutoencoder"]


def _gelu(x):
    return nn.gelu(x, approximate=True)  # tanh form: the same function as torch's GELU('tanh')


class ConvEncoder(nn.Module):
    """Stride-2 convolutions ``channels`` wide, then a dense layer to ``latent_dim``."""

    channels: Sequence[int] = (16, 32, 64)
    kernel_size: int = 7
    latent_dim: int = 32

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate(self.channels):
            x = _gelu(nn.Conv(width, (self.kernel_size,), strides=(2,), padding="SAME", name=f"conv{i}")(x))
        return nn.Dense(self.latent_dim, name="to_latent")(x.reshape(x.shape[0], -1))


class ConvDecoder(nn.Module):
    """Dense layer to the encoder's last feature map, then (repeat x2, convolution) per level, and a
    linear convolution to ``out_channels``."""

    channels: Sequence[int] = (16, 32, 64)
    kernel_size: int = 7
    out_channels: int = 3
    length: int = 512

    @nn.compact
    def __call__(self, z):
        levels = len(self.channels)
        bottom = self.length // 2 ** levels
        x = _gelu(nn.Dense(bottom * self.channels[-1], name="from_latent")(z))
        x = x.reshape(z.shape[0], bottom, self.channels[-1])
        widths = list(self.channels[-2::-1]) + [self.channels[0]]
        for i, width in enumerate(widths):
            x = jnp.repeat(x, 2, axis=1)
            x = _gelu(nn.Conv(width, (self.kernel_size,), padding="SAME", name=f"conv{i}")(x))
        return nn.Conv(self.out_channels, (self.kernel_size,), padding="SAME", name="to_output")(x)


class ConvAutoencoder(nn.Module):
    """``__call__(x) -> reconstruction``; ``encode(x) -> latent``; ``decode(z) -> reconstruction``.

    ``length`` must be divisible by ``2 ** len(channels)``."""

    channels: Sequence[int] = (16, 32, 64)
    kernel_size: int = 7
    latent_dim: int = 32
    out_channels: int = 3
    length: int = 512

    def setup(self):
        if self.length % 2 ** len(self.channels):
            raise ValueError(f"conv_ae: length {self.length} is not divisible by 2**{len(self.channels)}")
        self.encoder = ConvEncoder(self.channels, self.kernel_size, self.latent_dim)
        self.decoder = ConvDecoder(self.channels, self.kernel_size, self.out_channels, self.length)

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def __call__(self, x):
        return self.decoder(self.encoder(x))


#: ``config.model.name`` -> module class
MODELS = {"conv_ae": ConvAutoencoder}
