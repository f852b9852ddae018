"""Convolutional-recurrent autoencoder for variable-length multichannel records (``lstm_ae``).

Input ``x (B, T, C)`` with ``T`` a multiple of the pooling reduction (``prod(pools)``, 8 by
default) and ``lengths (B,)``: record ``i`` occupies steps ``[0, lengths[i])``, the rest is padding.
Padding never reaches a valid output:

- Masks. Level 0 is the input (``t < length``). Max-pooling level ``k`` by ``pools[k]`` (2 by
  default) divides the length rounding UP, so a record's last samples are never dropped; a pooled
  step whose group straddles the end takes the maximum of its valid inputs (:func:`level_lengths`).
- Convolutions (k3, "SAME") see padded steps as zeros: every layer's output is multiplied by the
  mask, so the step after a record's end looks exactly like the zero padding at the end of a
  sequence, whatever the amount of padding.
- :class:`MaskedBatchNorm`: training statistics over the valid steps only (summed over the whole
  global batch, so under data parallelism they are the global batch's); running averages in the
  ``batch_stats`` collection, used in evaluation.
- LSTM (:class:`MaskedLSTM`): padded steps do not update the carry, so the final carry is the state
  at the record's own last step; its outputs at padded steps are zero.

Encoder: three blocks ``Conv(k3) - BN - ReLU - dropout - Conv(k3) - BN`` each followed by max
pooling (``pools``: 2x at each level by default), channels ``channels`` (64, 128, 256), then
``lstm_layers`` (1 or 2) LSTM layers of ``hidden`` (256) units over the pooled steps
(``ceil(T / 8)`` by default).
With ``reverse_encoder`` the LSTM reads each record's pooled steps backwards (:func:`reverse_valid`),
so its final state is at the record's first step, where the decoder starts: as in sequence-to-sequence
models that reverse their input, the decoder's first outputs then depend on the most recent encoder
steps, which is what lets the bottleneck learn on records of 16 and more pooled steps.

Embedding (``embed_cell``): the final ``(h, c)`` of every encoder LSTM layer, concatenated as
``[h_1, c_1, h_2, c_2, ...]`` (``2 * hidden * lstm_layers`` numbers per record), or with
``embed_cell=False`` the hidden states alone, ``[h_1, h_2, ...]``, as signal_autoencoder's.

Decoder (``mode``):

- ``"reference"`` (signal_autoencoder's): decoder LSTM layer ``l`` starts from encoder layer ``l``'s
  final ``(h, c)`` and reads the encoder's top-layer output sequence. Its input holds the whole
  encoded sequence, so the reconstruction does not have to pass through the embedding: the
  embedding is a summary the decoder may use, not a bottleneck.
- ``"bottleneck"``: decoder LSTM layer ``l`` starts from encoder layer ``l``'s final ``(h, c)``, and
  its input at every step is the ``(h, c)`` of every layer, the same vector repeated at every pooled
  step, plus (``decoder_time``, default on) two clock channels, the step index over ``time_scale``
  and the fraction of the record's pooled length (:func:`decoder_clock`). Apart from the record's
  length (how many steps it runs), the decoder sees only the encoder's final state, so everything
  the reconstruction needs must be in it.

Then ``Dense(channels[-1])`` per step and three blocks, each after an upsampling (repeat, by
``pools[k]``), mapping ``channels[2] -> channels[1] -> channels[0] -> out_channels``
(``decoder_blocks``):

- ``"relu"``: ``Conv(k3) - BN - ReLU - dropout - Conv(k3) - BN - ReLU``, the last block
  ``channels[0]`` wide inside and ending in a plain convolution to ``out_channels`` (no BN, no
  ReLU): the output is the reconstruction in the normalised input's units;
- ``"encoder"`` (signal_autoencoder's): the encoder's block ``Conv(k3) - BN - ReLU - dropout -
  Conv(k3) - BN`` mapping each block's input width to its output width, so the last block is
  ``out_channels`` wide inside and its output is batch-normalised.

The output has shape ``(B, T, out_channels)``; its values at padded steps are zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["LSTMAutoencoder", "MaskedBatchNorm", "MaskedLSTM", "decoder_clock", "level_lengths", "length_mask",
           "reverse_valid"]

LEVELS = 3  # pooling levels: T must be a multiple of the product of their factors


def level_lengths(lengths, levels: int = LEVELS, pools: Sequence[int] | None = None):
    """Valid steps at each pooling level: ``[L, ceil(L/p_1), ceil(ceil(L/p_1)/p_2), ...]`` with the
    pooling factors ``pools`` (default 2 at each of ``levels`` levels); ``len(pools) + 1`` arrays.
    Works for numpy and JAX integer arrays."""
    pools = (2,) * levels if pools is None else tuple(pools)
    out = [lengths]
    for p in pools:
        out.append(-(-out[-1] // int(p)))
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
    step from the stacked carries). Same parameters, same results; benchmarks/bench_lstm_ae.py times
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


def decoder_clock(lengths, steps: int, time_scale: float, pools: Sequence[int] = (2, 2, 2)) -> jax.Array:
    """``(B, steps, 2)`` time channels of the bottleneck decoder: pooled step ``k`` as
    ``k / time_scale`` and as ``k / pooled_length`` (``ceil(length / 8)`` with the default
    ``pools``), the fraction of the record's own pooled length.
    They carry nothing about the record beyond its length, which the decoder has anyway (it is how
    many steps it runs); they give it a clock to place the onset and the oscillations by, which a
    constant input does not (seisjax/lstm_ae/README.md has a run without them).
    Independent of the amount of padding (``steps``) at valid steps."""
    k = jnp.arange(steps, dtype=jnp.float32)[None, :]
    pooled = jnp.maximum(level_lengths(jnp.asarray(lengths), pools=pools)[-1], 1).astype(jnp.float32)[:, None]
    absolute = jnp.broadcast_to(k / time_scale, (pooled.shape[0], steps))
    return jnp.stack([absolute, k / pooled], axis=-1)


def reverse_valid(x, mask):
    """``(B, T, F)``: each record's valid steps in reverse order (step ``t < length`` takes step
    ``length - 1 - t``); padded steps stay where they are. Its own inverse."""
    steps = x.shape[1]
    lengths = jnp.sum(mask, axis=1).astype(jnp.int32)[:, None]
    t = jnp.arange(steps)[None, :]
    index = jnp.where(t < lengths, lengths - 1 - t, t)
    return jnp.take_along_axis(x, index[..., None], axis=1)


def _max_pool(x, mask_in, mask_out, factor: int = 2):
    """``factor``x max pooling of ``(B, T, F)`` over valid steps only: padded steps of a group are
    replaced by the group's first step, which is valid whenever the group holds a valid step (no
    infinities, which would turn gradients into NaN)."""
    b, t, f = x.shape
    group = x.reshape(b, t // factor, factor, f)
    valid = mask_in.reshape(b, t // factor, factor)[..., None] > 0
    pooled = jnp.max(jnp.where(valid, group, group[:, :, :1]), axis=2)
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


class LSTMAutoencoder(nn.Module):
    """See the module docstring. ``__call__(x, lengths, train=False) -> (reconstruction, embedding)``;
    :meth:`encode` gives the embedding alone (the decoder's parameters are not touched)."""

    out_channels: int = 3
    channels: Sequence[int] = (64, 128, 256)
    hidden: int = 256
    lstm_layers: int = 1
    dropout: float = 0.1
    mode: str = "bottleneck"
    decoder_blocks: str = "relu"
    embed_cell: bool = True
    lstm_impl: str = "scan"
    decoder_time: bool = True
    time_scale: float = 64.0
    pools: Sequence[int] = (2, 2, 2)
    reverse_encoder: bool = False

    @property
    def reduction(self) -> int:
        """Input steps per pooled (LSTM) step: the product of ``pools``; ``T`` must be a multiple."""
        return int(np.prod(self.pools))

    @property
    def embedding_dim(self) -> int:
        return (2 if self.embed_cell else 1) * int(self.hidden) * int(self.lstm_layers)

    def setup(self):
        if len(self.channels) != LEVELS:
            raise ValueError(f"lstm_ae: channels {tuple(self.channels)} must have {LEVELS} entries")
        if self.lstm_layers not in (1, 2):
            raise ValueError(f"lstm_ae: lstm_layers = {self.lstm_layers}: expected 1 or 2")
        if len(self.pools) != LEVELS or any(int(p) < 1 for p in self.pools):
            raise ValueError(f"lstm_ae: pools {tuple(self.pools)} must be {LEVELS} factors >= 1")
        if self.mode not in ("bottleneck", "reference"):
            raise ValueError(f"lstm_ae: mode {self.mode!r}: expected 'bottleneck' or 'reference'")
        if self.decoder_blocks not in ("relu", "encoder"):
            raise ValueError(f"lstm_ae: decoder_blocks {self.decoder_blocks!r}: expected 'relu' or 'encoder'")
        c = tuple(self.channels)
        self.enc_blocks = [_ConvBlock(f, f, self.dropout) for f in c]
        self.enc_lstm = [MaskedLSTM(self.hidden, self.lstm_impl) for _ in range(self.lstm_layers)]
        self.dec_lstm = [MaskedLSTM(self.hidden, self.lstm_impl) for _ in range(self.lstm_layers)]
        self.dec_dense = nn.Dense(c[-1])
        if self.decoder_blocks == "encoder":
            self.dec_blocks = [_ConvBlock(f, f, self.dropout) for f in (c[1], c[0], self.out_channels)]
        else:
            self.dec_blocks = [_ConvBlock(c[1], c[1], self.dropout, final_relu=True),
                               _ConvBlock(c[0], c[0], self.dropout, final_relu=True),
                               _ConvBlock(c[0], self.out_channels, self.dropout, final_norm=False)]

    def _masks(self, x, lengths):
        steps = x.shape[1]
        if steps % self.reduction:
            raise ValueError(f"lstm_ae: {steps} steps is not a multiple of {self.reduction} (pools {tuple(self.pools)})")
        sizes = np.cumprod((1,) + tuple(int(p) for p in self.pools))
        return [length_mask(n, steps // int(size))
                for size, n in zip(sizes, level_lengths(lengths, pools=self.pools))]

    def _encode(self, x, masks, train):
        h = x
        for k, block in enumerate(self.enc_blocks):
            h = _max_pool(block(h, masks[k], train=train), masks[k], masks[k + 1], int(self.pools[k]))
        if self.reverse_encoder:
            h = reverse_valid(h, masks[-1])
        carries = []
        for layer in self.enc_lstm:
            carry, h = layer(h, masks[-1])
            carries.append(carry)
        if self.reverse_encoder:
            h = reverse_valid(h, masks[-1])  # back in time order for the reference decoder
        return carries, h

    @staticmethod
    def _concat(carries, *, cell: bool = True):
        """The final states of the encoder's layers as one vector: ``[h_1, c_1, h_2, c_2, ...]``, or
        ``[h_1, h_2, ...]`` without ``cell``."""
        return jnp.concatenate([part for c, h in carries for part in ((h, c) if cell else (h,))], axis=-1)

    def encode(self, x, lengths, *, train: bool = False):
        """``(B, T, C), (B,) -> (B, embedding_dim)``: ``[h_1, c_1, h_2, c_2, ...]`` (``[h_1, h_2, ...]``
        without ``embed_cell``)."""
        carries, _ = self._encode(x, self._masks(x, lengths), train)
        return self._concat(carries, cell=self.embed_cell)

    def __call__(self, x, lengths, *, train: bool = False):
        masks = self._masks(x, lengths)
        carries, sequence = self._encode(x, masks, train)
        m3 = masks[-1]
        if self.mode == "reference":
            h = sequence
        else:
            state = self._concat(carries)
            h = jnp.broadcast_to(state[:, None, :], (x.shape[0], m3.shape[1], state.shape[-1]))
            if self.decoder_time:
                clock = decoder_clock(lengths, m3.shape[1], self.time_scale, self.pools)
                h = jnp.concatenate([h, clock], axis=-1)
            h = h * m3[..., None]
        for layer, carry in zip(self.dec_lstm, carries):
            _, h = layer(h, m3, initial_carry=carry)
        h = self.dec_dense(h) * m3[..., None]
        for k, block in zip((2, 1, 0), self.dec_blocks):
            h = jnp.repeat(h, int(self.pools[k]), axis=1)
            h = block(h, masks[k], train=train)
        return h, self._concat(carries, cell=self.embed_cell)


def count_params(params) -> int:
    """Number of scalars in a parameter tree."""
    return int(sum(np.size(p) for p in jax.tree_util.tree_leaves(params)))


#: ``config.model.name`` -> module class
MODELS = {"lstm_ae": LSTMAutoencoder}
