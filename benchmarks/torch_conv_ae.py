"""PyTorch twin of the conv AE (``seisjax/conv_ae/model.py``), for ``python -m seisjax bench``.

The contract of a twin and of ``TWINS``: ``seisjax.bench.load_torch_twins``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def device_of(module: nn.Module) -> torch.device:
    """Where the module's parameters are: the batch goes there (the CPU, or a GPU in a GPU run)."""
    return next(module.parameters()).device


# ----------------------------------------------------------------------------- conv_ae
class ConvAutoencoderTorch(nn.Module):
    """Twin of ``seisjax.conv_ae.model.ConvAutoencoder``: stride-2 convolutions, dense latent,
    (repeat x2, convolution) decoder. Input (B, C, W).

    It computes the same function as the Flax model given the same weights (a test checks it):
    stride-2 convolutions pad like XLA's "SAME" ((k - 2) // 2 before, the rest after), and the
    dense layers see features in Flax's (length, channel) order."""

    def __init__(self, channels=(16, 32, 64), kernel_size=7, latent_dim=32, out_channels=3, length=512):
        super().__init__()
        self.channels, self.length = tuple(channels), length
        pad = kernel_size // 2
        self.same_stride2 = ((kernel_size - 2) // 2, kernel_size - 2 - (kernel_size - 2) // 2)
        widths_in = (out_channels,) + self.channels[:-1]
        self.encoder = nn.ModuleList(nn.Conv1d(i, o, kernel_size, stride=2)
                                     for i, o in zip(widths_in, self.channels, strict=True))
        self.bottom = length // 2 ** len(self.channels)
        self.to_latent = nn.Linear(self.bottom * self.channels[-1], latent_dim)
        self.from_latent = nn.Linear(latent_dim, self.bottom * self.channels[-1])
        widths = list(self.channels[-2::-1]) + [self.channels[0]]
        ins = [self.channels[-1]] + widths[:-1]
        self.decoder = nn.ModuleList(nn.Conv1d(i, o, kernel_size, padding=pad) for i, o in zip(ins, widths, strict=True))
        self.to_output = nn.Conv1d(widths[-1], out_channels, kernel_size, padding=pad)
        self.act = nn.GELU(approximate="tanh")

    def forward(self, x):
        for conv in self.encoder:
            x = self.act(conv(nn.functional.pad(x, self.same_stride2)))
        z = self.to_latent(x.transpose(1, 2).flatten(1))
        x = self.act(self.from_latent(z)).view(-1, self.bottom, self.channels[-1]).transpose(1, 2)
        for conv in self.decoder:
            x = self.act(conv(torch.repeat_interleave(x, 2, dim=2)))
        return self.to_output(x)


def conv_ae(model_kwargs):
    module = ConvAutoencoderTorch(**model_kwargs)

    def loss_fn(module, batch):
        x = torch.from_numpy(np.ascontiguousarray(np.transpose(batch["x"], (0, 2, 1)))).to(device_of(module))
        return torch.mean((module(x) - x) ** 2)

    return module, loss_fn


def load_flax_conv_ae(module: ConvAutoencoderTorch, params) -> ConvAutoencoderTorch:
    """Copy a Flax ConvAutoencoder's parameters into the twin (kernels (k, in, out) -> (out, in, k),
    dense (in, out) -> (out, in))."""
    def conv(dst, src):
        dst.weight.data = torch.from_numpy(np.asarray(src["kernel"]).transpose(2, 1, 0).copy())
        dst.bias.data = torch.from_numpy(np.asarray(src["bias"]).copy())

    def dense(dst, src):
        dst.weight.data = torch.from_numpy(np.asarray(src["kernel"]).T.copy())
        dst.bias.data = torch.from_numpy(np.asarray(src["bias"]).copy())

    enc, dec = params["encoder"], params["decoder"]
    for i, layer in enumerate(module.encoder):
        conv(layer, enc[f"conv{i}"])
    dense(module.to_latent, enc["to_latent"])
    dense(module.from_latent, dec["from_latent"])
    for i, layer in enumerate(module.decoder):
        conv(layer, dec[f"conv{i}"])
    conv(module.to_output, dec["to_output"])
    return module


#: model name -> twin builder (seisjax.bench.load_torch_twins)
TWINS = {"conv_ae": conv_ae}
