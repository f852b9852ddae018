"""Convolutional-recurrent autoencoder for variable-length multichannel records (``lstm_ae``).

Input ``x (B, T, C)`` with ``T`` a multiple of 8 and ``lengths (B,)``: record ``i`` occupies steps
``[0, lengths[i])``, the rest is padding. Padding never reaches a valid output:

- Masks. Level 0 is the input (``t < length``). Each 2x max-pool halves the length rounding UP:
  level ``k`` holds ``ceil(length / 2**k)`` valid steps, so a record's last samples are never
  dropped; a pooled step whose pair straddles the end takes its one valid input. The mask of
  level ``k + 1`` is the mask of level ``k`` at its even steps (:func:`level_lengths`).
- Convolutions (k3, "SAME") see padded steps as zeros: every layer's output is multiplied by the
  mask, so the step after a record's end looks exactly like the zero padding at the end of a
  sequence, whatever the amount of padding.
- :class:`MaskedBatchNorm`: training statistics over the valid steps only (summed over the whole
  global batch, so under data parallelism they are the global batch's); running averages in the
  ``batch_stats`` collection, used in evaluation.
- LSTM (:class:`MaskedLSTM`): padded steps do not update the carry, so the final carry is the state
  at the record's own last step; its outputs at padded steps are zero.

Encoder: three blocks ``Conv(k3) - BN - ReLU - dropout - Conv(k3) - BN`` each followed by 2x max
pooling, channels ``channels`` (64, 128, 256), then ``lstm_layers`` (1 or 2) LSTM layers of
``hidden`` (256) units over the ``ceil(T / 8)`` pooled steps.

Embedding: the final ``(h, c)`` of every encoder LSTM layer, concatenated as
``[h_1, c_1, h_2, c_2, ...]``: ``2 * hidden * lstm_layers`` numbers per record.

Decoder (``mode``):

- ``"reference"`` (as the PyTorch signal_autoencoder): decoder LSTM layer ``l`` starts from encoder
  layer ``l``'s final ``(h, c)`` and reads the encoder's top-layer output sequence. Its input holds
  the whole encoded sequence, so the reconstruction does not have to pass through the embedding:
  the embedding is a summary the decoder may use, not a bottleneck.
- ``"bottleneck"``: decoder LSTM layer ``l`` starts from encoder layer ``l``'s final ``(h, c)``, and
  its input at every step is the whole embedding, the same vector repeated ``ceil(T / 8)`` times,
  plus (``decoder_time``, default on) two clock channels, the step index over ``time_scale`` and
  the fraction of the record's pooled length (:func:`decoder_clock`). Apart from the record's
  length (how many steps it runs), the decoder sees only the embedding, so everything the
  reconstruction needs must be in it.

Then ``Dense(channels[-1])`` per step and three blocks ``upsample x2 (repeat) - Conv(k3) - BN -
ReLU - dropout - Conv(k3) - BN - ReLU`` with channels ``channels[1], channels[0], channels[0]``; in
the last block the second convolution maps to ``out_channels`` with no BN or ReLU. The output has
shape ``(B, T, out_channels)``; its values at padded steps are zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from seisjax.registry import register_model

__all__ = ["LSTMAutoencoder", "MaskedBatchNorm", "MaskedLSTM", "decoder_clock", "level_lengths", "length_mask"]

LEVELS = 3  # 2x poolings: T must be a multiple of 2**LEVELS


def level_lengths(lengths, levels: int = LEVELS):
    """Valid steps at each pooling level: ``[L, ceil(L/2), ceil(L/4), ...]`` (``levels + 1`` arrays).
    Works for numpy and JAX integer arrays."""
    out = [lengths]
    for _ in range(levels):
        out.append(-(-out[-1] // 2))
    return out


def length_mask(lengths, steps: int) -> jax.Array:
    """``(B,) -> (B, steps)`` float mask, 1 on ``t < length``."""
    return (jnp.arange(steps)[None, :] < jnp.asarray(lengths)[:, None]).astype(jnp.float32)


class MaskedBatchNorm(nn.Module):
    """Batch norm over ``(B, T, F)`` whose statistics count only the steps where ``mask`` is 1.

    Training: mean and (biased) variance over the valid steps of the batch; the running averages
    (``batch_stats``: ``mean``, ``var``, updated as ``momentum * old + (1 - momentum) * batch``) take
    the unbiased variance, as PyTorch does. Evaluation uses the running averages. The output is
    zero at padded steps."""

    momentum: float = 0.99
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, mask, *, train: bool):
        features = x.shape[-1]
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), jnp.float32))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        weight = mask[..., None].astype(x.dtype)
        if train:
            count = jnp.maximum(jnp.sum(mask), 1.0)
            mean = jnp.sum(x * weight, axis=(0, 1)) / count
            var = jnp.sum(jnp.square(x - mean) * weight, axis=(0, 1)) / count
            if not self.is_initializing():
                unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
                running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
                running_var.value = self.momentum * running_var.value + (1 - self.momentum) * unbiased
        else:
            mean, var = running_mean.value, running_var.value
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
        return y * weight


class MaskedLSTM(nn.Module):
    """One LSTM layer over ``(B, T, F)`` whose padded steps (``mask`` 0) leave the carry unchanged.

    ``impl``: "scan" (``nn.scan`` with a ``where`` on the carry each step) or "rnn" (``nn.RNN`` with
    ``seq_lengths``: it runs the padded steps too and picks each record's carry at its last valid
    step from the stacked carries). Same parameters, same results; benchmarks/bench_lstm.py times
    both. Returns ``((c, h), outputs)`` with zero outputs at padded steps."""

    hidden: int
    impl: str = "scan"

    @nn.compact
    def __call__(self, x, mask, initial_carry=None):
        cell = nn.OptimizedLSTMCell(self.hidden, name="cell")
        batch = x.shape[0]
        if initial_carry is None:
            zeros = jnp.zeros((batch, self.hidden), x.dtype)
            initial_carry = (zeros, zeros)
        if self.impl == "rnn":
            lengths = jnp.sum(mask, axis=1).astype(jnp.int32)
            carry, outputs = nn.RNN(cell, return_carry=True)(x, initial_carry=initial_carry, seq_lengths=lengths)
            return carry, outputs * mask[..., None]
        if self.impl != "scan":
            raise ValueError(f"MaskedLSTM impl {self.impl!r}: expected 'scan' or 'rnn'")

        def step(cell, carry, inputs):
            x_t, m_t = inputs
            new_carry, y = cell(carry, x_t)
            keep = m_t[:, None] > 0
            carry = jax.tree_util.tree_map(lambda new, old: jnp.where(keep, new, old), new_carry, carry)
            return carry, y * m_t[:, None]

        scan = nn.scan(step, variable_broadcast="params", split_rngs={"params": False}, in_axes=1, out_axes=1)
        return scan(cell, initial_carry, (x, mask))


def decoder_clock(lengths, steps: int, time_scale: float) -> jax.Array:
    """``(B, steps, 2)`` time channels of the bottleneck decoder: pooled step ``k`` as
    ``k / time_scale`` and as ``k / ceil(length / 8)``, the fraction of the record's own pooled length.
    They carry nothing about the record beyond its length, which the decoder has anyway (it is how
    many steps it runs); they give it a clock to place the onset and the oscillations by, which a
    constant input does not (without them the decoder more often settles on the all-zero output).
    Independent of the amount of padding (``steps``) at valid steps."""
    k = jnp.arange(steps, dtype=jnp.float32)[None, :]
    pooled = jnp.maximum(level_lengths(jnp.asarray(lengths))[-1], 1).astype(jnp.float32)[:, None]
    absolute = jnp.broadcast_to(k / time_scale, (pooled.shape[0], steps))
    return jnp.stack([absolute, k / pooled], axis=-1)


def _max_pool2(x, mask_in, mask_out):
    """2x max pooling of ``(B, T, F)`` over valid steps only: a pair whose second step is padding
    gives its first (no infinities, which would turn gradients into NaN)."""
    b, t, f = x.shape
    pair = x.reshape(b, t // 2, 2, f)
    first, second = pair[:, :, 0], pair[:, :, 1]
    second_valid = mask_in.reshape(b, t // 2, 2)[:, :, 1:2] > 0
    pooled = jnp.where(second_valid, jnp.maximum(first, second), first)
    return jnp.where(mask_out[..., None] > 0, pooled, 0.0)


class _ConvBlock(nn.Module):
    """Conv(k3) - BN - ReLU - dropout - Conv(k3) [- BN [- ReLU]], masked after every layer."""

    features: int
    out_features: int
    dropout: float
    final_norm: bool = True
    final_relu: bool = False

    @nn.compact
    def __call__(self, x, mask, *, train: bool):
        m = mask[..., None]
        h = nn.Conv(self.features, (3,), padding="SAME")(x * m)
        h = nn.relu(MaskedBatchNorm()(h, mask, train=train))
        h = nn.Dropout(self.dropout, deterministic=not train)(h) * m
        h = nn.Conv(self.out_features, (3,), padding="SAME")(h) * m
        if self.final_norm:
            h = MaskedBatchNorm()(h, mask, train=train)
        if self.final_relu:
            h = nn.relu(h)
        return h * m


@register_model("lstm_ae")
class LSTMAutoencoder(nn.Module):
    """See the module docstring. ``__call__(x, lengths, train=False) -> (reconstruction, embedding)``;
    :meth:`encode` gives the embedding alone (the decoder's parameters are not touched)."""

    out_channels: int = 3
    channels: Sequence[int] = (64, 128, 256)
    hidden: int = 256
    lstm_layers: int = 1
    dropout: float = 0.1
    mode: str = "bottleneck"
    lstm_impl: str = "scan"
    decoder_time: bool = True
    time_scale: float = 64.0

    def setup(self):
        if len(self.channels) != LEVELS:
            raise ValueError(f"lstm_ae: channels {tuple(self.channels)} must have {LEVELS} entries")
        if self.lstm_layers not in (1, 2):
            raise ValueError(f"lstm_ae: lstm_layers = {self.lstm_layers}: expected 1 or 2")
        if self.mode not in ("bottleneck", "reference"):
            raise ValueError(f"lstm_ae: mode {self.mode!r}: expected 'bottleneck' or 'reference'")
        c = tuple(self.channels)
        self.enc_blocks = [_ConvBlock(f, f, self.dropout) for f in c]
        self.enc_lstm = [MaskedLSTM(self.hidden, self.lstm_impl) for _ in range(self.lstm_layers)]
        self.dec_lstm = [MaskedLSTM(self.hidden, self.lstm_impl) for _ in range(self.lstm_layers)]
        self.dec_dense = nn.Dense(c[-1])
        self.dec_blocks = [_ConvBlock(c[1], c[1], self.dropout, final_relu=True),
                           _ConvBlock(c[0], c[0], self.dropout, final_relu=True),
                           _ConvBlock(c[0], self.out_channels, self.dropout, final_norm=False)]

    def _masks(self, x, lengths):
        steps = x.shape[1]
        if steps % 2 ** LEVELS:
            raise ValueError(f"lstm_ae: {steps} steps is not a multiple of {2 ** LEVELS}")
        return [length_mask(n, steps // 2 ** k) for k, n in enumerate(level_lengths(lengths))]

    def _encode(self, x, masks, train):
        h = x
        for k, block in enumerate(self.enc_blocks):
            h = _max_pool2(block(h, masks[k], train=train), masks[k], masks[k + 1])
        carries = []
        for layer in self.enc_lstm:
            carry, h = layer(h, masks[-1])
            carries.append(carry)
        embedding = jnp.concatenate([part for c, h_ in carries for part in (h_, c)], axis=-1)
        return embedding, carries, h

    def encode(self, x, lengths, *, train: bool = False):
        """``(B, T, C), (B,) -> (B, 2 * hidden * lstm_layers)``: ``[h_1, c_1, h_2, c_2, ...]``."""
        return self._encode(x, self._masks(x, lengths), train)[0]

    def __call__(self, x, lengths, *, train: bool = False):
        masks = self._masks(x, lengths)
        embedding, carries, sequence = self._encode(x, masks, train)
        m3 = masks[-1]
        if self.mode == "reference":
            h = sequence
        else:
            h = jnp.broadcast_to(embedding[:, None, :], (x.shape[0], m3.shape[1], embedding.shape[-1]))
            if self.decoder_time:
                h = jnp.concatenate([h, decoder_clock(lengths, m3.shape[1], self.time_scale)], axis=-1)
            h = h * m3[..., None]
        for layer, carry in zip(self.dec_lstm, carries):
            _, h = layer(h, m3, initial_carry=carry)
        h = self.dec_dense(h) * m3[..., None]
        for k, block in zip((2, 1, 0), self.dec_blocks):
            h = jnp.repeat(h, 2, axis=1)
            h = block(h, masks[k], train=train)
        return h, embedding


def count_params(params) -> int:
    """Number of scalars in a parameter tree."""
    return int(sum(np.size(p) for p in jax.tree_util.tree_leaves(params)))
