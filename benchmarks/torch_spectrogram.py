"""PyTorch twins of the spectrogram autoencoders (``seisjax.spectrogram.model``), for throughput ratios.

Same layers, widths, kernel sizes and parameter counts as the Flax models, in PyTorch's NCHW layout
(``N, C, F, T``), eager as PyTorch users run them. tests/spectrogram/test_torch_twins.py checks the counts and
that, with the Flax weights copied in (``load_flax_spectrogram``), the twins compute what the Flax models
compute.

``exact`` chooses how "SAME" padding is written:

- ``exact=True`` reproduces XLA's "SAME" alignment: a 3x3 stride-2 convolution pads 0 before and 1
  after (explicit ``F.pad``), a 3x3 stride-2 transposed convolution is ``ConvTranspose2d(padding=0)``
  cropped to twice the size, and the Flax kernel is used unflipped (lax.conv_transpose's default).
  Used by the equivalence tests.
- ``exact=False`` (the bench's default) is how a PyTorch user writes the layer: ``padding=1`` (and
  ``output_padding=1`` for the transposed convolution), no extra pad or crop. Same shapes, parameters
  and cost, alignment shifted by one pixel; it keeps the PyTorch side free of copies that the Flax
  model does not pay for, so the ratio does not flatter JAX.

The sub-pixel stage pads its 2x2 convolution (0, 1) in both modes (an even kernel has no symmetric
"same" padding) and uses ``nn.PixelShuffle``, whose channel order is (out, i, j) where Flax's
``depth_to_space`` is (i, j, out): the loader permutes the kernel's output channels.

Imported only by benchmarks and their tests: torch is an optional extra.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

UPSAMPLE_MODES = ("subpixel", "resize", "transpose")


def _pad_after(x):
    """XLA "SAME" for a stride-2 3x3 or a stride-1 2x2 kernel on even sizes: 0 before, 1 after."""
    return F.pad(x, (0, 1, 0, 1))


class SpectrogramEncoderTorch(nn.Module):
    """Twin of ``SpectrogramEncoder``: ``(N, C, F, T)`` -> ``(N, features[-1], F/16, T/16)``."""

    def __init__(self, in_channels=3, features=(32, 64, 128, 256), bn_momentum=0.9, exact=False):
        super().__init__()
        self.exact = exact
        widths_in = (in_channels,) + tuple(features[:-1])
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, stride=2, padding=0 if exact else 1, bias=False)
                                   for i, o in zip(widths_in, features, strict=True))
        # Flax's momentum keeps `momentum` of the old average; PyTorch's takes `momentum` of the new batch
        self.bns = nn.ModuleList(nn.BatchNorm2d(o, eps=1e-5, momentum=1.0 - bn_momentum) for o in features)

    def forward(self, x):
        for conv, bn in zip(self.convs, self.bns, strict=True):
            x = F.relu(bn(conv(_pad_after(x) if self.exact else x)))
        return x


class _UpsampleTorch(nn.Module):
    def __init__(self, cin, cout, mode, bias, exact):
        super().__init__()
        self.mode, self.exact = mode, exact
        if mode == "subpixel":
            self.conv = nn.Conv2d(cin, 4 * cout, 2, bias=bias)
        elif mode == "resize":
            self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
        elif mode == "transpose":
            self.conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=0 if exact else 1,
                                           output_padding=0 if exact else 1, bias=bias)
        else:
            raise ValueError(f"upsample = {mode!r}: expected one of {UPSAMPLE_MODES}")

    def forward(self, x):
        if self.mode == "subpixel":
            return F.pixel_shuffle(self.conv(_pad_after(x)), 2)
        if self.mode == "resize":
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        h, w = x.shape[-2:]
        y = self.conv(x)
        return y[..., : 2 * h, : 2 * w] if self.exact else y


class SpectrogramDecoderTorch(nn.Module):
    """Twin of ``SpectrogramDecoder``: ``(N, features[-1], F/16, T/16)`` -> ``(N, out_channels, F, T)`` in
    [0, 1]."""

    def __init__(self, features=(32, 64, 128, 256), out_channels=3, upsample="subpixel", bn_momentum=0.9,
                 exact=False):
        super().__init__()
        widths = list(features[-2::-1]) + [out_channels]
        ins = [features[-1]] + widths[:-1]
        last = len(widths) - 1
        self.ups = nn.ModuleList(_UpsampleTorch(i, o, upsample, bias=k == last, exact=exact)
                                 for k, (i, o) in enumerate(zip(ins, widths, strict=True)))
        self.bns = nn.ModuleList(nn.BatchNorm2d(o, eps=1e-5, momentum=1.0 - bn_momentum) for o in widths[:-1])

    def forward(self, h):
        for k, up in enumerate(self.ups):
            h = up(h)
            if k < len(self.bns):
                h = F.relu(self.bns[k](h))
        return torch.sigmoid(h)


class SpectrogramAETorch(nn.Module):
    """Twin of ``SpectrogramAE``; ``forward(x)`` -> ``{"recon"}`` (NCHW)."""

    def __init__(self, features=(32, 64, 128, 256), out_channels=3, upsample="subpixel", bn_momentum=0.9,
                 exact=False, **_unused):
        super().__init__()
        self.encoder = SpectrogramEncoderTorch(out_channels, tuple(features), bn_momentum, exact)
        self.decoder = SpectrogramDecoderTorch(tuple(features), out_channels, upsample, bn_momentum, exact)

    def forward(self, x):
        return {"recon": self.decoder(self.encoder(x))}


class SpectrogramVAETorch(nn.Module):
    """Twin of ``SpectrogramVAE`` (and, with ``cond_dim > 0``, the latent part of ``SpectrogramCVAE``).

    Flattens the encoder's map in PyTorch's (C, F, T) order; the loader permutes the Flax dense kernels
    from Flax's (F, T, C) order."""

    def __init__(self, features=(32, 64, 128, 256), latent=128, out_channels=3, upsample="subpixel",
                 input_shape=(128, 112), bn_momentum=0.9, exact=False, cond_dim=0, **_unused):
        super().__init__()
        levels = len(features)
        self.bottom = (int(features[-1]), input_shape[0] // 2 ** levels, input_shape[1] // 2 ** levels)
        flat = int(np.prod(self.bottom))
        self.encoder = SpectrogramEncoderTorch(out_channels, tuple(features), bn_momentum, exact)
        self.decoder = SpectrogramDecoderTorch(tuple(features), out_channels, upsample, bn_momentum, exact)
        self.to_mean = nn.Linear(flat + cond_dim, latent)
        self.to_logvar = nn.Linear(flat + cond_dim, latent)
        self.from_latent = nn.Linear(latent + cond_dim, flat)

    def _heads(self, h):
        return self.to_mean(h), self.to_logvar(h)

    def _project(self, z):
        return self.decoder(F.relu(self.from_latent(z)).view(z.shape[0], *self.bottom))

    @staticmethod
    def _sample(mean, logvar, sample, noise):
        if not sample:
            return mean
        noise = torch.randn_like(mean) if noise is None else noise
        return mean + torch.exp(0.5 * logvar) * noise

    def forward(self, x, *, sample=True, noise=None):
        mean, logvar = self._heads(self.encoder(x).flatten(1))
        z = self._sample(mean, logvar, sample, noise)
        return {"recon": self._project(z), "mean": mean, "logvar": logvar}


class SpectrogramCVAETorch(SpectrogramVAETorch):
    """Twin of ``SpectrogramCVAE``: ``forward(x, cond, station)``; station 0 is the unknown station."""

    def __init__(self, features=(32, 64, 128, 256), latent=128, out_channels=3, upsample="subpixel",
                 input_shape=(128, 112), bn_momentum=0.9, exact=False, n_stations=1, station_dim=16,
                 cond_dim=64, n_conditions=4, **_unused):
        super().__init__(features, latent, out_channels, upsample, input_shape, bn_momentum, exact, cond_dim)
        self.out_channels = out_channels
        self.station_embedding = nn.Embedding(int(n_stations) + 1, station_dim)
        self.cond_hidden = nn.Linear(n_conditions + station_dim, cond_dim)
        self.cond_out = nn.Linear(cond_dim, cond_dim)
        # from the conditions alone, as the Flax model (amplitudes follow the conditions, not z)
        self.to_log_scale = nn.Linear(cond_dim, 2 * out_channels)

    def condition(self, cond, station):
        emb = self.station_embedding(station.long())
        return F.relu(self.cond_out(F.relu(self.cond_hidden(torch.cat([cond, emb], dim=-1)))))

    def forward(self, x, cond, station, *, sample=True, noise=None):
        c = self.condition(cond, station)
        mean, logvar = self._heads(torch.cat([self.encoder(x).flatten(1), c], dim=-1))
        zc = torch.cat([self._sample(mean, logvar, sample, noise), c], dim=-1)
        return {"recon": self._project(zc), "mean": mean, "logvar": logvar,
                "log_scale": self.to_log_scale(c).view(x.shape[0], 2, self.out_channels)}


MODELS = {"spectral_ae": SpectrogramAETorch, "spectral_vae": SpectrogramVAETorch, "spectral_cvae": SpectrogramCVAETorch}


def spectrogram_loss_torch(name: str, out: dict, x, log_scale=None, beta: float = 1e-3):
    """The benchmark's loss (as ``bench_spectrogram.spectrogram_loss``): MSE of the reconstruction, plus
    ``beta`` times the batch-mean KL for the VAEs, plus the MSE of the CVAE's predicted log scale."""
    loss = torch.mean((out["recon"] - x) ** 2)
    if name != "spectral_ae":
        kl = 0.5 * torch.sum(torch.exp(out["logvar"]) + out["mean"] ** 2 - 1.0 - out["logvar"], dim=-1)
        loss = loss + beta * kl.mean()
    if name == "spectral_cvae":
        loss = loss + torch.mean((out["log_scale"] - log_scale) ** 2)
    return loss


# ----------------------------------------------------------------------------- Flax -> PyTorch
def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))


def _conv_weight(kernel, mode: str | None = None) -> np.ndarray:
    """Flax ``(kh, kw, in, out)`` kernel -> PyTorch weight."""
    kernel = np.asarray(kernel)
    if mode == "transpose":
        # lax.conv_transpose (transpose_kernel=False) correlates the dilated input with the kernel;
        # ConvTranspose2d scatters, i.e. correlates with the flipped kernel: flip, weight (in, out, kh, kw)
        return kernel[::-1, ::-1].transpose(2, 3, 0, 1)
    if mode == "subpixel":
        kh, kw, cin, c4 = kernel.shape
        # Flax channel (i, j, out) -> PixelShuffle's (out, i, j)
        kernel = kernel.reshape(kh, kw, cin, 4, c4 // 4).transpose(0, 1, 2, 4, 3).reshape(kh, kw, cin, c4)
    return kernel.transpose(3, 2, 0, 1)


def _subpixel_bias(bias) -> np.ndarray:
    bias = np.asarray(bias)
    return bias.reshape(4, -1).T.reshape(-1)


def flax_spectrogram_to_torch(name: str, module: nn.Module, variables: dict) -> dict:
    """The Flax model's ``{"params", "batch_stats"}`` as the twin's state dict (every entry)."""
    params, stats = variables["params"], variables.get("batch_stats", {})
    out = {}

    def bn(prefix, p, s):
        out[f"{prefix}.weight"], out[f"{prefix}.bias"] = _t(p["scale"]), _t(p["bias"])
        if s:
            out[f"{prefix}.running_mean"], out[f"{prefix}.running_var"] = _t(s["mean"]), _t(s["var"])
        else:
            out[f"{prefix}.running_mean"] = torch.zeros(len(p["scale"]))
            out[f"{prefix}.running_var"] = torch.ones(len(p["scale"]))
        out[f"{prefix}.num_batches_tracked"] = torch.tensor(0)

    enc_p, enc_s = params["encoder"], stats.get("encoder", {})
    for i in range(len(module.encoder.convs)):
        out[f"encoder.convs.{i}.weight"] = _t(_conv_weight(enc_p[f"conv{i}"]["kernel"]))
        bn(f"encoder.bns.{i}", enc_p[f"bn{i}"], enc_s.get(f"bn{i}"))
    dec_p, dec_s = params["decoder"], stats.get("decoder", {})
    for i, up in enumerate(module.decoder.ups):
        src = dec_p[f"up{i}"]["conv"]
        out[f"decoder.ups.{i}.conv.weight"] = _t(_conv_weight(src["kernel"], up.mode))
        if "bias" in src:
            bias = _subpixel_bias(src["bias"]) if up.mode == "subpixel" else src["bias"]
            out[f"decoder.ups.{i}.conv.bias"] = _t(bias)
        if i < len(module.decoder.bns):
            bn(f"decoder.bns.{i}", dec_p[f"bn{i}"], dec_s.get(f"bn{i}"))
    if name == "spectral_ae":
        return out

    c, h, w = module.bottom
    flat = c * h * w

    def dense(prefix, src, kernel=None, bias=None):
        kernel = np.asarray(src["kernel"]) if kernel is None else kernel
        out[f"{prefix}.weight"] = _t(kernel.T)
        out[f"{prefix}.bias"] = _t(np.asarray(src["bias"]) if bias is None else bias)

    def hwc_rows_to_chw(kernel):   # the first `flat` input rows are the flattened map
        kernel = np.asarray(kernel)
        head = kernel[:flat].reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(flat, -1)
        return np.concatenate([head, kernel[flat:]], axis=0)

    for head in ("to_mean", "to_logvar"):
        dense(head, params[head], hwc_rows_to_chw(params[head]["kernel"]))
    k = np.asarray(params["from_latent"]["kernel"])
    dense("from_latent", params["from_latent"], k.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(-1, flat),
          np.asarray(params["from_latent"]["bias"]).reshape(h, w, c).transpose(2, 0, 1).reshape(-1))
    if name == "spectral_cvae":
        out["station_embedding.weight"] = _t(params["station_embedding"]["embedding"])
        for layer in ("cond_hidden", "cond_out", "to_log_scale"):
            dense(layer, params[layer])
    return out


def load_flax_spectrogram(name: str, module: nn.Module, variables: dict) -> nn.Module:
    """Copy a Flax spectrogram model's parameters and batch statistics into its twin (strictly)."""
    module.load_state_dict(flax_spectrogram_to_torch(name, module, variables), strict=True)
    return module
