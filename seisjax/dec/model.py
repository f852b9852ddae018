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

Mousavi distance network (:class:`MousaviDistance`): input ``(B, 16, 48, 1)``, the log-magnitude
STFT (frequency x time) of the vertical component (see ``experiments/dec_distance.py`` for the STFT
parameters). Encoder Conv2D(4, 3x3, tanh) - MaxPool 2x2 - Conv2D(2) - MaxPool - Conv2D(1) - MaxPool
-> ``(B, 2, 6, 1)``, flattened to a 12-d embedding. Decoder: the mirror, each level an upsampling by
repeating rows and columns then a 3x3 convolution (widths 2, 4, out), linear output.

zClust network (:class:`ZClust`, after Nooshiri's zClust package): input ``(B, 87, 67, 1)``
spectrogram. Five stride-2 3x3 convolutions 1-8-16-32-64-128 ("same" padding, so 87 x 67 -> 44 x 34
-> 22 x 17 -> 11 x 9 -> 6 x 5 -> 3 x 3) with leaky ReLU (slope 0.02), flattened and a Linear layer to
a 9-d embedding. Decoder: Linear back to 3 x 3 x 128 (leaky ReLU), then five levels of (nearest
resize to the encoder's shape at that level, 3x3 convolution) with widths 64-32-16-8-out, leaky ReLU
between, linear output; resize-then-convolve instead of transposed convolutions (slow on XLA's CPU
backend: ``seisjax/ops/conv.py``), the receptive field and parameter count of the package's decoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from seisjax.ops.conv import Conv

__all__ = ["MousaviPolarity", "MousaviDistance", "ZClust"]

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": nn.relu, "elu": nn.elu, "linear": lambda x: x}


def _encoder_activations(activation: str, embedding_activation: str, levels: int) -> list:
    """Activation of each encoder level: ``activation``, the last one ``embedding_activation`` when set."""
    names = [activation] * levels
    if embedding_activation:
        names[-1] = embedding_activation
    unknown = sorted(set(names) - set(_ACTIVATIONS))
    if unknown:
        raise ValueError(f"unknown activation(s) {unknown}; expected one of {sorted(_ACTIVATIONS)}")
    return [_ACTIVATIONS[name] for name in names]


def _upsample(x, factor: int = 2):
    return jnp.repeat(x, factor, axis=1)


class MousaviPolarity(nn.Module):
    """The polarity network (see the module docstring). ``length`` must be divisible by 16."""

    length: int = 32
    out_channels: int = 1
    channels: Sequence[int] = (8, 4, 2, 1)
    kernels: Sequence[int] = (11, 9, 3, 3)
    activation: str = "tanh"
    embedding_activation: str = ""  # of the last encoder convolution; "" = ``activation``
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
        acts = _encoder_activations(self.activation, self.embedding_activation, len(self.encoder))
        for conv, act in zip(self.encoder, acts):
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


class MousaviDistance(nn.Module):
    """The distance network (see the module docstring). Both sides of ``input_shape`` (frequency,
    time) must be divisible by ``2 ** len(channels)``."""

    input_shape: Sequence[int] = (16, 48)
    out_channels: int = 1
    channels: Sequence[int] = (4, 2, 1)
    kernel: Sequence[int] = (3, 3)
    activation: str = "tanh"
    embedding_activation: str = ""  # of the last encoder convolution; "" = ``activation``
    n_clusters: int = 2
    # how every convolution is computed (seisjax.ops.conv.CONV_IMPLS, the same function and variables
    # whatever the choice); "auto": on the CPU GEMMs and, for one-channel outputs, shifted planes,
    # since XLA's own CPU convolutions are slowest for such thin layers (benchmarks/README.md)
    conv_impl: str = "auto"

    def setup(self):
        factor = 2 ** len(self.channels)
        if len(self.input_shape) != 2 or any(side % factor for side in self.input_shape):
            raise ValueError(f"mousavi_distance: input_shape {tuple(self.input_shape)} must be two sides "
                             f"divisible by {factor}")
        kernel = tuple(self.kernel)
        self.encoder = [Conv(c, kernel, impl=self.conv_impl, name=f"enc{i}") for i, c in enumerate(self.channels)]
        widths = list(self.channels[-2::-1]) + [self.out_channels]
        self.decoder = [Conv(c, kernel, impl=self.conv_impl, name=f"dec{i}") for i, c in enumerate(widths)]
        self.code_shape = (self.input_shape[0] // factor, self.input_shape[1] // factor, self.channels[-1])
        self.embedding_dim = self.code_shape[0] * self.code_shape[1] * self.code_shape[2]
        self.centres = self.param("centres", nn.initializers.normal(1.0), (self.n_clusters, self.embedding_dim))

    def encode(self, x):
        acts = _encoder_activations(self.activation, self.embedding_activation, len(self.encoder))
        for conv, act in zip(self.encoder, acts):
            x = nn.max_pool(act(conv(x)), (2, 2), strides=(2, 2))
        return x.reshape(x.shape[0], -1)

    def decode(self, z):
        act = _ACTIVATIONS[self.activation]
        x = z.reshape(z.shape[0], *self.code_shape)
        for i, conv in enumerate(self.decoder):
            x = conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))
            if i < len(self.decoder) - 1:  # linear output
                x = act(x)
        return x

    def __call__(self, x):
        z = self.encode(x)
        _ = self.centres  # created by init whatever method is called first
        return self.decode(z), z


def _halved(side: int, levels: int) -> list[int]:
    """Sides after each of ``levels`` stride-2 "same" convolutions (ceil(side / 2) each time)."""
    sides = [side]
    for _ in range(levels):
        sides.append(-(-sides[-1] // 2))
    return sides


def resize_nearest(x, size_hw: Sequence[int]):
    """``jax.image.resize(x, (B, *size_hw, C), "nearest")`` of an NHWC ``x`` (pixel-centre indices
    ``floor((i + 0.5) * n_in / n_out)``) built from slices and broadcasts: each run of rows (then
    columns) that the resize copies equally often is repeated by a broadcast and a reshape. The
    gradient is then sums over the copies; ``jax.image.resize`` and ``jnp.repeat`` with uneven counts
    gather, and a gather's gradient is a scatter-add, which XLA's CPU backend runs slowly."""
    for axis, (n_in, n_out) in enumerate(zip(x.shape[1:3], size_hw), start=1):
        if n_in == n_out:
            continue
        index = np.floor((np.arange(n_out, dtype=np.float32) + 0.5) * np.float32(n_in) / np.float32(n_out))
        counts = np.bincount(index.astype(np.int64), minlength=n_in)
        starts = np.flatnonzero(np.diff(counts, prepend=-1))   # first row of each run of equal counts
        pieces = []
        for start, stop in zip(starts, [*starts[1:], n_in]):
            if counts[start]:
                run = jax.lax.slice_in_dim(x, int(start), int(stop), axis=axis)
                copies = jnp.expand_dims(run, axis + 1)
                shape = (*run.shape[:axis + 1], int(counts[start]), *run.shape[axis + 1:])
                pieces.append(jnp.broadcast_to(copies, shape).reshape(
                    *run.shape[:axis], (stop - start) * int(counts[start]), *run.shape[axis + 1:]))
        x = jnp.concatenate(pieces, axis=axis)
    return x


class ZClust(nn.Module):
    """The zClust network (see the module docstring): stride-2 3x3 convolutions, leaky ReLU, a
    Linear embedding; the mirror decoder resizes then convolves."""

    input_shape: Sequence[int] = (87, 67)
    out_channels: int = 1
    channels: Sequence[int] = (8, 16, 32, 64, 128)
    embedding_dim: int = 9
    negative_slope: float = 0.02
    n_clusters: int = 2
    # how the convolutions are computed (seisjax.ops.conv.CONV_IMPLS; the same function and variables
    # whatever the choice), chosen by speed on the CPU (benchmarks/README.md): the stride-2 encoder as
    # GEMMs ("auto"), the decoder by XLA, faster there than the GEMM form, and its one-channel output
    # as shifted planes ("auto"), for which XLA's gradients are slowest
    encoder_conv_impl: str = "auto"
    decoder_conv_impl: str = "xla"
    output_conv_impl: str = "auto"

    def setup(self):
        if len(self.input_shape) != 2:
            raise ValueError(f"zclust: input_shape {tuple(self.input_shape)} must be (frequencies, times)")
        levels = len(self.channels)
        self.sides = list(zip(_halved(self.input_shape[0], levels), _halved(self.input_shape[1], levels)))
        self.encoder = [Conv(c, (3, 3), strides=(2, 2), impl=self.encoder_conv_impl, name=f"enc{i}")
                        for i, c in enumerate(self.channels)]
        self.embed = nn.Dense(self.embedding_dim, name="embed")
        self.unembed = nn.Dense(self.sides[-1][0] * self.sides[-1][1] * self.channels[-1], name="unembed")
        widths = list(self.channels[-2::-1]) + [self.out_channels]
        impls = [self.decoder_conv_impl] * (len(widths) - 1) + [self.output_conv_impl]
        self.decoder = [Conv(c, (3, 3), impl=impl, name=f"dec{i}") for i, (c, impl) in enumerate(zip(widths, impls))]
        self.centres = self.param("centres", nn.initializers.normal(1.0), (self.n_clusters, self.embedding_dim))

    def _act(self, x):
        return nn.leaky_relu(x, self.negative_slope)

    def encode(self, x):
        for conv in self.encoder:
            x = self._act(conv(x))
        return self.embed(x.reshape(x.shape[0], -1))

    def decode(self, z):
        h, w = self.sides[-1]
        x = self._act(self.unembed(z)).reshape(z.shape[0], h, w, self.channels[-1])
        for i, conv in enumerate(self.decoder):
            h, w = self.sides[-2 - i]
            x = conv(resize_nearest(x, (h, w)))
            if i < len(self.decoder) - 1:  # linear output
                x = self._act(x)
        return x

    def __call__(self, x):
        z = self.encode(x)
        _ = self.centres
        return self.decode(z), z


#: ``config.model.name`` -> module class
MODELS = {"mousavi_polarity": MousaviPolarity, "mousavi_distance": MousaviDistance, "zclust": ZClust}
