"""PyTorch twin of ``seisjax.lstm_ae.model.LSTMAutoencoder`` for throughput ratios
(benchmarks/bench_lstm_ae.py; parameter counts checked by tests/lstm_ae/test_torch_twin.py).

Same layers, widths, kernels, masks and loss as the Flax model, written as a PyTorch user would:
``nn.Conv1d`` on (B, C, T), a masked batch norm (statistics over valid steps, a few lines as in
the Flax model), ``nn.LSTM`` fed with ``pack_padded_sequence`` (oneDNN/cuDNN kernels; the final
``(h, c)`` is each record's state at its own last step), eager. ``nn.LSTM`` keeps two bias vectors
per gate (``bias_ih`` and ``bias_hh``) where Flax's LSTM cell has one; ``bias_hh`` is frozen at
zero here, so the function class and the number of trainable parameters are the Flax model's.
Imported only by the bench and its test: torch is an optional extra.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["LSTMAutoencoderTorch", "MaskedBatchNorm1d", "masked_l1", "trainable_parameters"]


def _mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    return (torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]).float()


class MaskedBatchNorm1d(nn.Module):
    """Batch norm of (B, F, T) over the steps where ``mask`` (B, T) is 1; running stats as PyTorch."""

    def __init__(self, features: int, momentum: float = 0.01, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))
        self.momentum, self.eps = momentum, eps

    def forward(self, x, mask):
        w = mask[:, None, :]
        if self.training:
            count = w.sum().clamp_min(1.0)
            mean = (x * w).sum((0, 2)) / count
            var = (((x - mean[None, :, None]) ** 2) * w).sum((0, 2)) / count
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * count / (count - 1).clamp_min(1.0), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean[None, :, None]) * torch.rsqrt(var[None, :, None] + self.eps)
        return (y * self.weight[None, :, None] + self.bias[None, :, None]) * w


class _ConvBlock(nn.Module):
    def __init__(self, c_in, features, c_out, dropout, final_norm=True, final_relu=False):
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, features, 3, padding=1)
        self.bn1 = MaskedBatchNorm1d(features)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(features, c_out, 3, padding=1)
        self.bn2 = MaskedBatchNorm1d(c_out) if final_norm else None
        self.final_relu = final_relu

    def forward(self, x, mask):
        m = mask[:, None, :]
        h = torch.relu(self.bn1(self.conv1(x * m), mask))
        h = self.conv2(self.drop(h) * m) * m
        if self.bn2 is not None:
            h = self.bn2(h, mask)
        return torch.relu(h) if self.final_relu else h


def _pool(x, mask_in, mask_out):
    first, second = x[..., 0::2], x[..., 1::2]
    pooled = torch.where(mask_in[:, None, 1::2] > 0, torch.maximum(first, second), first)
    return pooled * mask_out[:, None, :]


def _frozen_bias_hh(lstm: nn.LSTM):
    for name, p in lstm.named_parameters():
        if name.startswith("bias_hh"):
            nn.init.zeros_(p)
            p.requires_grad_(False)
    return lstm


class LSTMAutoencoderTorch(nn.Module):
    """Twin of the Flax model (same kwargs). ``forward(x (B, T, C), lengths (B,)) -> (recon, embedding)``."""

    def __init__(self, out_channels=3, channels=(64, 128, 256), hidden=256, lstm_layers=1, dropout=0.1,
                 mode="bottleneck", decoder_blocks="relu", embed_cell=True, lstm_impl=None, decoder_time=True,
                 time_scale=64.0):
        super().__init__()
        c1, c2, c3 = channels
        self.mode, self.hidden, self.layers, self.embed_cell = mode, hidden, lstm_layers, embed_cell
        self.clock = decoder_time and mode != "reference"
        self.time_scale = float(time_scale)
        self.enc_blocks = nn.ModuleList([_ConvBlock(out_channels, c1, c1, dropout), _ConvBlock(c1, c2, c2, dropout),
                                         _ConvBlock(c2, c3, c3, dropout)])
        self.enc_lstm = _frozen_bias_hh(nn.LSTM(c3, hidden, lstm_layers, batch_first=True))
        dec_in = hidden if mode == "reference" else 2 * hidden * lstm_layers + (2 if self.clock else 0)
        self.dec_lstm = _frozen_bias_hh(nn.LSTM(dec_in, hidden, lstm_layers, batch_first=True))
        self.dec_dense = nn.Linear(hidden, c3)
        if decoder_blocks == "encoder":   # signal_autoencoder's: the encoder's block, out_channels wide at the end
            self.dec_blocks = nn.ModuleList([_ConvBlock(c3, c2, c2, dropout), _ConvBlock(c2, c1, c1, dropout),
                                             _ConvBlock(c1, out_channels, out_channels, dropout)])
        else:
            self.dec_blocks = nn.ModuleList([_ConvBlock(c3, c2, c2, dropout, final_relu=True),
                                             _ConvBlock(c2, c1, c1, dropout, final_relu=True),
                                             _ConvBlock(c1, c1, out_channels, dropout, final_norm=False)])

    def masks(self, lengths, steps):
        out, n = [], lengths
        for k in range(4):
            out.append(_mask(n, steps // 2 ** k))
            n = torch.div(n + 1, 2, rounding_mode="floor")
        return out

    def conv_encoder(self, x, masks):
        h = x.transpose(1, 2)
        for k, block in enumerate(self.enc_blocks):
            h = _pool(block(h, masks[k]), masks[k], masks[k + 1])
        return h.transpose(1, 2)  # (B, T/8, C3)

    def conv_decoder(self, h, masks):
        h = h.transpose(1, 2)
        for k, block in zip((2, 1, 0), self.dec_blocks):
            h = block(torch.repeat_interleave(h, 2, dim=2), masks[k])
        return h.transpose(1, 2)

    def run_lstm(self, lstm, x, lengths, initial=None):
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, c) = lstm(packed, initial)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out, (h, c)

    def forward(self, x, lengths):
        steps = x.shape[1]
        masks = self.masks(lengths, steps)
        n3 = masks[-1].sum(1).long()
        seq = self.conv_encoder(x, masks)
        out, (h, c) = self.run_lstm(self.enc_lstm, seq, n3)
        state = torch.cat([part for layer in range(self.layers) for part in (h[layer], c[layer])], dim=1)
        embedding = state if self.embed_cell else torch.cat(list(h), dim=1)
        dec_in = out if self.mode == "reference" else state[:, None, :].expand(-1, seq.shape[1], -1)
        if self.clock:   # the Flax model's decoder_clock: step / time_scale and step / own pooled length
            k = torch.arange(seq.shape[1], dtype=dec_in.dtype, device=dec_in.device)[None, :]
            own = n3.clamp_min(1).to(dec_in.dtype)[:, None]
            clock = torch.stack([(k / self.time_scale).expand(len(own), -1), k / own], dim=-1)
            dec_in = torch.cat([dec_in, clock], dim=-1)
        dec_out, _ = self.run_lstm(self.dec_lstm, dec_in.contiguous(), n3, (h, c))
        h3 = self.dec_dense(dec_out) * masks[-1][..., None]
        return self.conv_decoder(h3, masks) * masks[0][..., None], embedding


def masked_l1(recon, x, lengths):
    mask = _mask(lengths, x.shape[1])[..., None]
    return ((recon - x).abs() * mask).sum((1, 2)).div(lengths.clamp_min(1).float()).mean()


def trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
