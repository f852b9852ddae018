"""PyTorch twins of DEC's networks (``seisjax/dec/model.py``: the Mousavi polarity and distance
networks, zClust), for ``python -m seisjax bench`` and ``benchmarks/bench_dec.py``.

The contract of a twin and of ``TWINS``: ``seisjax.bench.load_torch_twins``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def device_of(module: nn.Module) -> torch.device:
    """Where the module's parameters are: the batch goes there (the CPU, or a GPU in a GPU run)."""
    return next(module.parameters()).device


# ----------------------------------------------------------------------------- mousavi_polarity
class _DECTwin(nn.Module):
    """A DEC network twin: ``encode`` and ``decode`` from the subclass, ``forward(x) -> (x_hat, z)``
    as the Flax models' ``__call__``."""

    def forward(self, x):
        z = self.encode(x)
        return self.decode(z), z


class MousaviPolarityTorch(_DECTwin):
    """Twin of ``seisjax.dec.model.MousaviPolarity`` (same layers, parameter count, cluster
    centres and function; a test loads the Flax parameters and compares). Input ``(B, C, L)``.

    Flax's stride-1 "SAME" convolution pads ``(k - 1) // 2`` before and the rest after, which for
    the odd kernels of this network is PyTorch's ``padding=k // 2``; an even kernel gets the
    explicit asymmetric pad. The embedding is flattened in Flax's (length, channel) order."""

    def __init__(self, length=32, out_channels=1, channels=(8, 4, 2, 1), kernels=(11, 9, 3, 3), activation="tanh",
                 embedding_activation="", n_clusters=2):
        super().__init__()
        channels, kernels = tuple(channels), tuple(kernels)
        if len(channels) != len(kernels):
            raise ValueError(f"mousavi_polarity twin: {len(channels)} channels but {len(kernels)} kernels")
        if length % 2 ** len(channels):
            raise ValueError(f"mousavi_polarity twin: length {length} is not divisible by {2 ** len(channels)}")
        acts = {"tanh": torch.tanh, "relu": torch.relu, "elu": nn.functional.elu, "linear": lambda h: h}
        for name in (activation, embedding_activation or activation):
            if name not in acts:
                raise ValueError(f"mousavi_polarity twin: unknown activation {name!r}")
        self.act, self.channels = acts[activation], channels
        # the last encoder level's activation ("" = the others'), as the Flax model's embedding_activation
        self.encoder_acts = [acts[activation]] * (len(channels) - 1) + [acts[embedding_activation or activation]]
        self.pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernels]
        self.encoder = nn.ModuleList(nn.Conv1d(i, o, k) for i, o, k in
                                     zip((out_channels,) + channels[:-1], channels, kernels, strict=True))
        widths = list(channels[-2::-1]) + [out_channels]
        self.decoder = nn.ModuleList(nn.Conv1d(i, o, k) for i, o, k in
                                     zip((channels[-1],) + tuple(widths[:-1]), widths, kernels[::-1], strict=True))
        self.decoder_pads = self.pads[::-1]
        self.embedding_dim = length // 2 ** len(channels) * channels[-1]
        self.centres = nn.Parameter(torch.randn(n_clusters, self.embedding_dim))

    def encode(self, x):
        for conv, pad, act in zip(self.encoder, self.pads, self.encoder_acts, strict=True):
            x = nn.functional.max_pool1d(act(conv(nn.functional.pad(x, pad))), 2)
        return x.transpose(1, 2).flatten(1)

    def decode(self, z):
        x = z.view(z.shape[0], -1, self.channels[-1]).transpose(1, 2)
        for i, (conv, pad) in enumerate(zip(self.decoder, self.decoder_pads, strict=True)):
            x = conv(nn.functional.pad(torch.repeat_interleave(x, 2, dim=2), pad))
            if i < len(self.decoder) - 1:   # linear output
                x = self.act(x)
        return x


def soft_assignment_torch(z, centres, alpha=1.0):
    """Twin of ``seisjax.metrics.clustering.soft_assignment`` (Student's t, log-space softmax)."""
    d2 = torch.sum((z[:, None, :] - centres[None, :, :]) ** 2, -1)
    return torch.softmax(-(alpha + 1.0) / 2.0 * torch.log1p(d2 / alpha), dim=1)


def target_distribution_torch(q):
    """Twin of ``clustering.target_distribution``: ``p ∝ q^2 / f_j`` over all rows, per-row normalised."""
    weight = q ** 2 / q.sum(0, keepdim=True)
    return weight / weight.sum(1, keepdim=True)


def kl_divergence_torch(p, q, eps=1e-12):
    """Twin of ``clustering.kl_divergence``: ``KL(P || Q)`` per row (0 log 0 = 0)."""
    terms = p * (torch.log(torch.clamp(p, min=eps)) - torch.log(torch.clamp(q, min=eps)))
    return torch.where(p > 0, terms, torch.zeros_like(terms)).sum(1)


def dec_loss_torch(module, x, target=None, *, variant="dec", gamma=0.1, alpha=1.0):
    """The DEC task's loss for the twin: MSE without a target (pretraining); with one, ``KL(P || Q)``
    (``variant="dec"``) or ``MSE + gamma * KL`` (``"idec"``), as ``seisjax.dec.task.DECTask.loss``."""
    recon, z = module(x)
    mse = torch.mean((recon - x) ** 2)
    if target is None:
        return mse
    kl = kl_divergence_torch(target, soft_assignment_torch(z, module.centres, alpha)).mean()
    return kl if variant == "dec" else mse + gamma * kl


def mousavi_polarity(model_kwargs):
    # The bench passes the model's kwargs only: a batch with a "target" (the DEC stage) gets the
    # DEC loss with the experiment's defaults (variant "dec", alpha 1), otherwise pretraining's MSE.
    module = MousaviPolarityTorch(**model_kwargs)

    def loss_fn(module, batch):
        x = torch.from_numpy(np.ascontiguousarray(np.transpose(batch["x"], (0, 2, 1)), dtype=np.float32))
        target = torch.from_numpy(np.array(batch["target"], np.float32)) if "target" in batch else None
        x, target = (None if t is None else t.to(device_of(module)) for t in (x, target))
        return dec_loss_torch(module, x, target)

    return module, loss_fn


def flax_mousavi_polarity_to_torch(params) -> dict:
    """A Flax MousaviPolarity's ``params`` (or a pytree shaped like them) as the twin's state dict:
    conv kernels (k, in, out) -> (out, in, k)."""
    out = {"centres": torch.from_numpy(np.array(params["centres"], np.float32))}
    for flax_prefix, torch_prefix in (("enc", "encoder"), ("dec", "decoder")):
        names = sorted((n for n in params if n.startswith(flax_prefix) and n[len(flax_prefix):].isdigit()),
                       key=lambda n: int(n[len(flax_prefix):]))
        for i, name in enumerate(names):
            kernel = np.asarray(params[name]["kernel"]).transpose(2, 1, 0)   # (k, in, out) -> (out, in, k)
            out[f"{torch_prefix}.{i}.weight"] = torch.from_numpy(kernel.copy())
            out[f"{torch_prefix}.{i}.bias"] = torch.from_numpy(np.array(params[name]["bias"]))
    return out


def load_flax_mousavi_polarity(module: MousaviPolarityTorch, params) -> MousaviPolarityTorch:
    """Copy a Flax MousaviPolarity's parameters into the twin (every parameter, strictly)."""
    module.load_state_dict(flax_mousavi_polarity_to_torch(params), strict=True)
    return module


def _flax_conv2d_state(params, flax_prefix: str, torch_prefix: str) -> dict:
    """Numbered Flax 2-D convolutions ``<flax_prefix>0, 1, ...`` as ``<torch_prefix>.<i>.weight/bias``:
    kernels (kh, kw, in, out) -> (out, in, kh, kw)."""
    names = sorted((n for n in params if n.startswith(flax_prefix) and n[len(flax_prefix):].isdigit()),
                   key=lambda n: int(n[len(flax_prefix):]))
    out = {}
    for i, name in enumerate(names):
        out[f"{torch_prefix}.{i}.weight"] = torch.from_numpy(np.asarray(params[name]["kernel"]).transpose(3, 2, 0, 1).copy())
        out[f"{torch_prefix}.{i}.bias"] = torch.from_numpy(np.array(params[name]["bias"], np.float32))
    return out


def _same_pad2d(size_hw, kernel_hw, stride: int) -> tuple[int, int, int, int]:
    """XLA's "SAME" padding of an NCHW map as ``F.pad``'s (left, right, top, bottom): the extra pixel after."""
    pads = []
    for n, k in zip(size_hw, kernel_hw, strict=True):
        total = max((-(-n // stride) - 1) * stride + k - n, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return left, right, top, bottom


# ----------------------------------------------------------------------------- mousavi_distance
class MousaviDistanceTorch(_DECTwin):
    """Twin of ``seisjax.dec.model.MousaviDistance`` (same layers, parameter count, centres and
    function). Input ``(B, C, F, T)``; the embedding is flattened in Flax's (F, T, channel) order."""

    def __init__(self, input_shape=(16, 48), out_channels=1, channels=(4, 2, 1), kernel=(3, 3), activation="tanh",
                 embedding_activation="", n_clusters=2):
        super().__init__()
        channels, kernel = tuple(channels), tuple(kernel)
        factor = 2 ** len(channels)
        if len(input_shape) != 2 or any(side % factor for side in input_shape):
            raise ValueError(f"mousavi_distance twin: input_shape {tuple(input_shape)} must be two sides "
                             f"divisible by {factor}")
        acts = {"tanh": torch.tanh, "relu": torch.relu, "elu": nn.functional.elu, "linear": lambda h: h}
        for name in (activation, embedding_activation or activation):
            if name not in acts:
                raise ValueError(f"mousavi_distance twin: unknown activation {name!r}")
        self.act = acts[activation]
        self.encoder_acts = [acts[activation]] * (len(channels) - 1) + [acts[embedding_activation or activation]]
        self.pad = _same_pad2d(input_shape, kernel, 1)   # stride 1: the same for every level
        self.encoder = nn.ModuleList(nn.Conv2d(i, o, kernel) for i, o in
                                     zip((out_channels,) + channels[:-1], channels, strict=True))
        widths = list(channels[-2::-1]) + [out_channels]
        self.decoder = nn.ModuleList(nn.Conv2d(i, o, kernel) for i, o in
                                     zip((channels[-1],) + tuple(widths[:-1]), widths, strict=True))
        self.code_shape = (input_shape[0] // factor, input_shape[1] // factor, channels[-1])
        self.centres = nn.Parameter(torch.randn(n_clusters, int(np.prod(self.code_shape))))

    def encode(self, x):
        for conv, act in zip(self.encoder, self.encoder_acts, strict=True):
            x = nn.functional.max_pool2d(act(conv(nn.functional.pad(x, self.pad))), 2)
        return x.permute(0, 2, 3, 1).flatten(1)

    def decode(self, z):
        x = z.view(z.shape[0], *self.code_shape).permute(0, 3, 1, 2)
        for i, conv in enumerate(self.decoder):
            x = conv(nn.functional.pad(nn.functional.interpolate(x, scale_factor=2, mode="nearest"), self.pad))
            if i < len(self.decoder) - 1:   # linear output
                x = self.act(x)
        return x


def flax_mousavi_distance_to_torch(params) -> dict:
    """A Flax MousaviDistance's ``params`` (or a pytree shaped like them) as the twin's state dict."""
    return {"centres": torch.from_numpy(np.array(params["centres"], np.float32)),
            **_flax_conv2d_state(params, "enc", "encoder"), **_flax_conv2d_state(params, "dec", "decoder")}


# ----------------------------------------------------------------------------- zclust
class ZClustTorch(_DECTwin):
    """Twin of ``seisjax.dec.model.ZClust``: stride-2 3x3 "SAME" convolutions (XLA's padding, the
    extra pixel after), leaky ReLU, Linear embedding; the decoder resizes (nearest, pixel centres,
    as ``jax.image.resize``) then convolves. Input ``(B, C, F, T)``; flattening in Flax's order."""

    def __init__(self, input_shape=(87, 67), out_channels=1, channels=(8, 16, 32, 64, 128), embedding_dim=9,
                 negative_slope=0.02, n_clusters=2):
        super().__init__()
        if len(input_shape) != 2:
            raise ValueError(f"zclust twin: input_shape {tuple(input_shape)} must be (frequencies, times)")
        channels = tuple(channels)
        self.sides = [tuple(input_shape)]
        for _ in channels:
            self.sides.append(tuple(-(-s // 2) for s in self.sides[-1]))
        self.channels, self.negative_slope = channels, negative_slope
        self.encoder = nn.ModuleList(nn.Conv2d(i, o, 3, stride=2) for i, o in
                                     zip((out_channels,) + channels[:-1], channels, strict=True))
        bottom = self.sides[-1][0] * self.sides[-1][1] * channels[-1]
        self.embed = nn.Linear(bottom, embedding_dim)
        self.unembed = nn.Linear(embedding_dim, bottom)
        widths = list(channels[-2::-1]) + [out_channels]
        self.decoder = nn.ModuleList(nn.Conv2d(i, o, 3, padding=1) for i, o in
                                     zip((channels[-1],) + tuple(widths[:-1]), widths, strict=True))
        self.centres = nn.Parameter(torch.randn(n_clusters, embedding_dim))

    def _act(self, x):
        return nn.functional.leaky_relu(x, self.negative_slope)

    def encode(self, x):
        for conv, side in zip(self.encoder, self.sides, strict=False):
            x = self._act(conv(nn.functional.pad(x, _same_pad2d(side, (3, 3), 2))))
        return self.embed(x.permute(0, 2, 3, 1).flatten(1))

    def decode(self, z):
        h, w = self.sides[-1]
        x = self._act(self.unembed(z)).view(z.shape[0], h, w, self.channels[-1]).permute(0, 3, 1, 2)
        for i, conv in enumerate(self.decoder):
            x = conv(nn.functional.interpolate(x, size=self.sides[-2 - i], mode="nearest-exact"))
            if i < len(self.decoder) - 1:   # linear output
                x = self._act(x)
        return x


def flax_zclust_to_torch(params) -> dict:
    """A Flax ZClust's ``params`` (or a pytree shaped like them) as the twin's state dict (dense
    kernels (in, out) -> (out, in))."""
    out = {"centres": torch.from_numpy(np.array(params["centres"], np.float32)),
           **_flax_conv2d_state(params, "enc", "encoder"), **_flax_conv2d_state(params, "dec", "decoder")}
    for name in ("embed", "unembed"):
        out[f"{name}.weight"] = torch.from_numpy(np.asarray(params[name]["kernel"]).T.copy())
        out[f"{name}.bias"] = torch.from_numpy(np.array(params[name]["bias"], np.float32))
    return out


def _dec_twin(module_class):
    """A DEC twin builder for a 2-D network: pretraining's MSE, or the DEC loss when the batch has
    a "target" (as ``mousavi_polarity``); NHWC batches go in as NCHW."""
    def builder(model_kwargs):
        # the networks' *impl fields choose how XLA computes a convolution on the CPU: no twin has them
        module = module_class(**{k: v for k, v in model_kwargs.items() if not k.endswith("impl")})

        def loss_fn(module, batch):
            x = torch.from_numpy(np.ascontiguousarray(np.transpose(batch["x"], (0, 3, 1, 2)), dtype=np.float32))
            target = torch.from_numpy(np.array(batch["target"], np.float32)) if "target" in batch else None
            x, target = (None if t is None else t.to(device_of(module)) for t in (x, target))
            return dec_loss_torch(module, x, target)

        return module, loss_fn

    return builder


#: model name -> twin builder (seisjax.bench.load_torch_twins)
TWINS = {"mousavi_polarity": mousavi_polarity, "mousavi_distance": _dec_twin(MousaviDistanceTorch),
         "zclust": _dec_twin(ZClustTorch)}
