"""Spectrogram autoencoders of the Marmara study: AE, beta-VAE and CVAE on ``(B, F, T, C)`` inputs.

Encoder (all three): four 3x3 stride-2 convolutions ``features`` wide (32-64-128-256), each followed
by batch normalisation and ReLU, so the input's height and width must be multiples of 16.

Decoder: four 2x upsampling stages mirroring the encoder (256 -> 128 -> 64 -> 32 -> ``out_channels``),
batch normalisation and ReLU after all but the last, and a sigmoid at the end: the inputs are
min-max scaled to [0, 1], and an output in [0, 1] un-scales to magnitudes >= 0. ``upsample`` picks
how a stage doubles the size:

- ``"subpixel"`` (default): a 2x2 convolution to 4x the channels at the low resolution, then
  depth-to-space. Each output pixel sees a 2x2 low-resolution neighbourhood, which holds every tap
  of a 3x3 stride-2 transposed convolution, so this stage can express exactly what ``"transpose"``
  does, with 16 against 9 weights per channel pair;
- ``"resize"``: nearest-neighbour 2x, then a 3x3 convolution (as many weights as ``"transpose"``);
- ``"transpose"``: the seed's layer, a 3x3 stride-2 transposed convolution with
  ``nn.ConvTranspose``'s parameters.

Which is faster and which made the better models: the family's page (README.md in this folder).

How the layers compute (same variables and function either way): the encoder's convolutions and
every batch norm + ReLU hold ``nn.Conv``'s and ``nn.BatchNorm``'s variables but run as GEMMs and a
fused one-pass batch norm with hand-written backward passes (:mod:`seisjax.ops.conv`, which says
why). ``encoder_conv_impl`` and ``decoder_conv_impl`` (``"auto"`` | ``"gemm"`` | ``"xla"``) choose
the form of the encoder's and the decoder's (sub-pixel or transposed) convolutions; ``"auto"`` is
the GEMM form on the CPU, except XLA's convolution for the last sub-pixel stage, whose output is
thin (:func:`subpixel_conv_impl`), and XLA's convolution on accelerators. ``"xla"`` for both is what
forward-mode differentiation (``jax.jvp``) needs.

Latents: the AE keeps the spatial map ``(F/16, T/16, features[-1])``; the VAE and CVAE flatten it
to mean and log-variance heads of ``latent`` dimensions and sample ``z = mean + exp(logvar/2) eps``
with the ``"sample"`` RNG stream when ``train=True`` (the mean when ``train=False``, so evaluation is
deterministic); their decoders start from a dense projection of ``z`` back to that map and need the
input size (``input_shape`` = (F, T)) to do so.

CVAE conditions: ``cond`` ``(B, n_conditions)`` = magnitude and normalised latitude, longitude, depth
(and, with the task's ``distance_condition``, the standardised log10 hypocentral distance);
``station`` ``(B,)`` int32, where 0 is the "unknown station" embedding and known stations are
1..``n_stations``. The station embedding (``station_dim``) and ``cond`` pass through a two-layer MLP
to a ``cond_dim`` vector that joins the flattened encoder features before the mean/log-variance
heads and ``z`` before the decoder's projection. The CVAE also predicts, from the condition vector,
the per-channel minimum and maximum of the ``log1p`` magnitudes (output ``"log_scale"``, ``(B, 2,
C)``), so that a spectrogram generated for new conditions can be un-scaled to amplitudes.

Learned conditional prior (``learned_prior=True``; the CVAE of Sohn, Lee & Yan 2015): a prior
network from the same condition vector (a hidden ReLU layer ``cond_dim`` wide, then mean and
log-variance heads) gives p(z | c) = N(prior_mean, exp(prior_logvar)) (method :meth:`SpectrogramCVAE.prior`,
outputs ``"prior_mean"``, ``"prior_logvar"``), and the task's KL is then KL(q(z | x, c) || p(z | c))
(:func:`kl_divergence` with both Gaussians). Without it the CVAE creates no prior variables, so runs
trained without it restore as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from seisjax.errors import InputError
from seisjax.ops.conv import BatchNormReLU, Conv, ConvTranspose3x3S2, depth_to_space, resolve_conv_impl

__all__ = [
    "UPSAMPLE_MODES",
    "SpectrogramAE",
    "SpectrogramCVAE",
    "SpectrogramDecoder",
    "SpectrogramEncoder",
    "SpectrogramVAE",
    "kl_divergence",
    "subpixel_conv_impl",
]

UPSAMPLE_MODES = ("subpixel", "resize", "transpose")


def kl_divergence(mean: jax.Array, logvar: jax.Array, prior_mean: jax.Array | None = None,
                  prior_logvar: jax.Array | None = None) -> jax.Array:
    """``KL(N(mean, exp(logvar)) || N(prior_mean, exp(prior_logvar)))`` of diagonal Gaussians, summed
    over the latent dimensions: ``(B, L)`` -> ``(B,)``; without a prior, against N(0, I)."""
    if prior_mean is None and prior_logvar is None:
        return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)
    if prior_mean is None or prior_logvar is None:
        raise InputError("kl_divergence: give both prior_mean and prior_logvar, or neither (for N(0, I))")
    # the variance ratio and the scaled squared distance in one exp each: exact for any log-variances
    return 0.5 * jnp.sum(prior_logvar - logvar - 1.0 + jnp.exp(logvar - prior_logvar)
                         + jnp.square(mean - prior_mean) * jnp.exp(-prior_logvar), axis=-1)


def _check_input(x, *, levels: int, input_shape=None):
    if x.ndim != 4:
        raise InputError(f"spectrogram models take (batch, frequencies, frames, channels), got shape {x.shape}")
    if x.shape[1] % 2 ** levels or x.shape[2] % 2 ** levels:
        raise InputError(f"spectrogram of {x.shape[1]} x {x.shape[2]}: both must be multiples of {2 ** levels} "
                         f"for {levels} stride-2 levels (pad or crop the input)")
    if input_shape is not None and tuple(x.shape[1:3]) != tuple(input_shape):
        raise InputError(f"spectrogram of {x.shape[1]} x {x.shape[2]}, but the model was built for "
                         f"input_shape={tuple(input_shape)}")


class SpectrogramEncoder(nn.Module):
    """Stride-2 3x3 convolutions + batch norm + ReLU: ``(B, F, T, C)`` -> ``(B, F/16, T/16, features[-1])``."""

    features: Sequence[int] = (32, 64, 128, 256)
    bn_momentum: float = 0.9
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, x, *, train: bool):
        for i, width in enumerate(self.features):
            x = Conv(width, (3, 3), strides=(2, 2), use_bias=False, impl=self.conv_impl, name=f"conv{i}")(x)
            x = BatchNormReLU(use_running_average=not train, momentum=self.bn_momentum, name=f"bn{i}")(x)
        return x


def subpixel_conv_impl(in_channels: int, width: int, impl: str = "auto") -> str:
    """How a sub-pixel stage from ``in_channels`` to ``width`` computes its 2x2 convolution to
    ``4 * width`` channels: ``impl`` resolved (:func:`seisjax.ops.conv.resolve_conv_impl`), except
    that ``"auto"`` takes XLA's convolution for a thin output (the last stage, 32 -> 4 x 3), where
    building the patch matrix costs more than the product."""
    if impl == "auto" and 4 * width < in_channels:
        return "xla"
    return resolve_conv_impl(impl)


class _Upsample(nn.Module):
    width: int
    mode: str
    use_bias: bool
    conv_impl: str

    @nn.compact
    def __call__(self, x):
        if self.mode == "subpixel":
            impl = subpixel_conv_impl(x.shape[-1], self.width, self.conv_impl)
            x = Conv(4 * self.width, (2, 2), use_bias=self.use_bias, impl=impl, name="conv")(x)
            return depth_to_space(x, 2)
        if self.mode == "resize":
            # XLA's convolution whatever conv_impl says: its GEMM form was slower here
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
            return nn.Conv(self.width, (3, 3), padding="SAME", use_bias=self.use_bias, name="conv")(x)
        if self.mode == "transpose":
            return ConvTranspose3x3S2(self.width, use_bias=self.use_bias, impl=self.conv_impl, name="conv")(x)
        raise InputError(f"upsample = {self.mode!r}: expected one of {', '.join(UPSAMPLE_MODES)}")


class SpectrogramDecoder(nn.Module):
    """Mirror of :class:`SpectrogramEncoder`: ``(B, F/16, T/16, features[-1])`` -> ``(B, F, T, out_channels)``
    in [0, 1]."""

    features: Sequence[int] = (32, 64, 128, 256)
    out_channels: int = 3
    upsample: str = "subpixel"
    bn_momentum: float = 0.9
    conv_impl: str = "auto"

    @nn.compact
    def __call__(self, h, *, train: bool):
        widths = list(self.features[-2::-1]) + [self.out_channels]
        for i, width in enumerate(widths):
            last = i == len(widths) - 1
            h = _Upsample(width, self.upsample, use_bias=last, conv_impl=self.conv_impl, name=f"up{i}")(h)
            if not last:
                h = BatchNormReLU(use_running_average=not train, momentum=self.bn_momentum, name=f"bn{i}")(h)
        return nn.sigmoid(h)


def _check_upsample(upsample: str):
    if upsample not in UPSAMPLE_MODES:
        raise InputError(f"upsample = {upsample!r}: expected one of {', '.join(UPSAMPLE_MODES)}")


class SpectrogramAE(nn.Module):
    """Convolutional autoencoder with a spatial latent; see the module docstring."""

    features: Sequence[int] = (32, 64, 128, 256)
    out_channels: int = 3
    upsample: str = "subpixel"
    bn_momentum: float = 0.9
    encoder_conv_impl: str = "auto"
    decoder_conv_impl: str = "auto"

    def setup(self):
        _check_upsample(self.upsample)
        self.encoder = SpectrogramEncoder(tuple(self.features), self.bn_momentum, self.encoder_conv_impl)
        self.decoder = SpectrogramDecoder(tuple(self.features), self.out_channels, self.upsample, self.bn_momentum,
                                          self.decoder_conv_impl)

    def encode(self, x, *, train: bool = False):
        _check_input(x, levels=len(self.features))
        return self.encoder(x, train=train)

    def decode(self, h, *, train: bool = False):
        return self.decoder(h, train=train)

    def __call__(self, x, *, train: bool = False):
        return {"recon": self.decode(self.encode(x, train=train), train=train)}


class _DenseVariables(nn.Module):
    """``nn.Dense``'s variables (same names, shapes and initialisers) without its product, so that
    dense layers reading the same input can run as one GEMM."""

    features: int

    @nn.compact
    def __call__(self, in_features: int):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (in_features, self.features))
        return kernel, self.param("bias", nn.initializers.zeros_init(), (self.features,))


class _Variational(nn.Module):
    """Shared pieces of the VAE and the CVAE (not registered)."""

    features: Sequence[int] = (32, 64, 128, 256)
    latent: int = 128
    out_channels: int = 3
    upsample: str = "subpixel"
    input_shape: Sequence[int] = (128, 112)
    bn_momentum: float = 0.9
    encoder_conv_impl: str = "auto"
    decoder_conv_impl: str = "auto"

    def _setup_common(self):
        _check_upsample(self.upsample)
        levels = len(self.features)
        f, t = (int(v) for v in self.input_shape)
        if f % 2 ** levels or t % 2 ** levels:
            raise InputError(f"input_shape = {tuple(self.input_shape)}: both must be multiples of {2 ** levels}")
        self.bottom = (f // 2 ** levels, t // 2 ** levels, int(self.features[-1]))
        self.encoder = SpectrogramEncoder(tuple(self.features), self.bn_momentum, self.encoder_conv_impl)
        self.decoder = SpectrogramDecoder(tuple(self.features), self.out_channels, self.upsample, self.bn_momentum,
                                          self.decoder_conv_impl)
        self.to_mean = _DenseVariables(self.latent)
        self.to_logvar = _DenseVariables(self.latent)
        self.from_latent = nn.Dense(self.bottom[0] * self.bottom[1] * self.bottom[2])

    def _features(self, x, train):
        _check_input(x, levels=len(self.features), input_shape=self.input_shape)
        h = self.encoder(x, train=train)
        return h.reshape(h.shape[0], -1)

    def _heads(self, h):
        # one GEMM for both heads: faster on the CPU than two (benchmarks/README.md)
        (k_mean, b_mean), (k_logvar, b_logvar) = self.to_mean(h.shape[-1]), self.to_logvar(h.shape[-1])
        moments = h @ jnp.concatenate([k_mean, k_logvar], axis=1) + jnp.concatenate([b_mean, b_logvar])
        return moments[:, :self.latent], moments[:, self.latent:]

    def _project(self, z, train):
        h = nn.relu(self.from_latent(z)).reshape(z.shape[0], *self.bottom)
        return self.decoder(h, train=train)

    def _sample(self, mean, logvar, train):
        if not train:
            return mean
        eps = jax.random.normal(self.make_rng("sample"), mean.shape, mean.dtype)
        return mean + jnp.exp(0.5 * logvar) * eps


class SpectrogramVAE(_Variational):
    """beta-VAE with a ``latent``-dimensional Gaussian code; see the module docstring."""

    def setup(self):
        self._setup_common()

    def encode(self, x, *, train: bool = False):
        """``(mean, logvar)``, each ``(B, latent)``."""
        return self._heads(self._features(x, train))

    def decode(self, z, *, train: bool = False):
        """``(B, latent)`` -> ``(B, F, T, out_channels)`` in [0, 1]."""
        return self._project(z, train)

    def __call__(self, x, *, train: bool = False):
        mean, logvar = self.encode(x, train=train)
        z = self._sample(mean, logvar, train)
        return {"recon": self.decode(z, train=train), "mean": mean, "logvar": logvar}


class SpectrogramCVAE(_Variational):
    """Conditional VAE; ``n_stations`` known stations (embedding rows 1..n, row 0 = unknown); with
    ``learned_prior`` a prior network p(z | c) (module docstring)."""

    n_stations: int = 1
    station_dim: int = 16
    cond_dim: int = 64
    n_conditions: int = 4
    learned_prior: bool = False

    def setup(self):
        self._setup_common()
        if int(self.n_stations) < 1:
            raise InputError(f"n_stations = {self.n_stations}: need at least one known station")
        self.station_embedding = nn.Embed(int(self.n_stations) + 1, self.station_dim)
        self.cond_hidden = nn.Dense(self.cond_dim)
        self.cond_out = nn.Dense(self.cond_dim)
        self.to_log_scale = nn.Dense(2 * self.out_channels)
        if self.learned_prior:  # created only when enabled: the standard CVAE keeps its variables
            self.prior_hidden = nn.Dense(self.cond_dim)
            self.prior_to_mean = nn.Dense(self.latent)
            self.prior_to_logvar = nn.Dense(self.latent)

    def condition(self, cond, station):
        """The ``(B, cond_dim)`` condition vector of ``cond`` ``(B, n_conditions)`` and ``station`` ``(B,)``."""
        if cond.ndim != 2 or cond.shape[1] != self.n_conditions:
            raise InputError(f"cond must be (batch, {self.n_conditions}) = magnitude, lat, lon, depth[, log10 distance]; "
                             f"got shape {cond.shape}")
        emb = self.station_embedding(station.astype(jnp.int32))
        h = nn.relu(self.cond_hidden(jnp.concatenate([cond.astype(emb.dtype), emb], axis=-1)))
        return nn.relu(self.cond_out(h))

    def encode(self, x, cond, station, *, train: bool = False):
        """``(mean, logvar)`` of q(z | x, c)."""
        return self._encode(x, self.condition(cond, station), train)

    def decode(self, z, cond, station, *, train: bool = False):
        """Scaled spectrogram ``(B, F, T, C)`` of p(x | z, c)."""
        return self._decode(z, self.condition(cond, station), train)

    def log_scale(self, cond, station):
        """Predicted per-channel [min, max] of ``log1p`` magnitudes from the conditions alone (not
        ``z``, so that amplitudes follow the conditions when ``z`` comes from the prior): ``(B, 2, C)``."""
        return self._log_scale(self.condition(cond, station))

    def prior(self, cond, station):
        """``(mean, logvar)`` ``(B, latent)`` of the learned prior p(z | c) (``learned_prior=True`` only)."""
        if not self.learned_prior:
            raise InputError("this CVAE has no learned prior (model.learned_prior is False; train with "
                             "task.prior = 'learned')")
        return self._prior(self.condition(cond, station))

    # the same, from the condition vector c, so that a train step computes c once
    def _encode(self, x, c, train):
        return self._heads(jnp.concatenate([self._features(x, train), c], axis=-1))

    def _decode(self, z, c, train):
        return self._project(jnp.concatenate([z, c], axis=-1), train)

    def _log_scale(self, c):
        return self.to_log_scale(c).reshape(c.shape[0], 2, self.out_channels)

    def _prior(self, c):
        h = nn.relu(self.prior_hidden(c))
        return self.prior_to_mean(h), self.prior_to_logvar(h)

    def __call__(self, x, cond, station, *, train: bool = False):
        c = self.condition(cond, station)
        mean, logvar = self._encode(x, c, train)
        z = self._sample(mean, logvar, train)
        out = {"recon": self._decode(z, c, train), "mean": mean, "logvar": logvar, "log_scale": self._log_scale(c)}
        if self.learned_prior:
            out["prior_mean"], out["prior_logvar"] = self._prior(c)
        return out


#: ``config.model.name`` -> module class
MODELS = {"spectral_ae": SpectrogramAE, "spectral_vae": SpectrogramVAE, "spectral_cvae": SpectrogramCVAE}
