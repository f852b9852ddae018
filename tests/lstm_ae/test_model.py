"""LSTM autoencoder model: padding never changes a record's embedding, masked batch norm, sizes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.lstm_ae.model import (LSTMAutoencoder, MaskedBatchNorm, _max_pool, count_params, decoder_clock,
                                   length_mask, level_lengths, reverse_valid)

FAST_COMPILE = True  # correctness only: compiling dominates

SMALL = dict(out_channels=3, channels=(8, 12, 16), hidden=10, dropout=0.0)


def _randomise_batch_stats(variables, seed=1):
    """Running statistics away from (0, 1), so that evaluation mode really normalises."""
    rng = np.random.default_rng(seed)
    stats = jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.asarray(rng.uniform(0.5, 2.0, v.shape) if "var" in str(path[-1])
                                    else rng.normal(size=v.shape), jnp.float32), variables["batch_stats"])
    return {**variables, "batch_stats": stats}


def _pad(record, steps):
    return np.concatenate([record, np.zeros((steps - len(record), record.shape[1]), np.float32)])


@pytest.mark.parametrize("mode,impl,layers,pools,reverse,blocks,cell", [
    ("bottleneck", "scan", 2, (2, 2, 2), False, "relu", True),
    ("reference", "rnn", 1, (2, 2, 2), False, "relu", True),
    ("reference", "scan", 2, (2, 2, 2), False, "encoder", False),   # signal_autoencoder's layout
    ("bottleneck", "scan", 1, (4, 2, 2), True, "relu", True)])
def test_padding_does_not_change_embedding_or_reconstruction(mode, impl, layers, pools, reverse, blocks, cell):
    rng = np.random.default_rng(0)
    length = 37  # odd at every level: ceil(37/2)=19, 10, 5; with 4x first: 10, 5, 3
    record = rng.normal(size=(length, 3)).astype(np.float32)
    model = LSTMAutoencoder(**SMALL, lstm_layers=layers, mode=mode, lstm_impl=impl, pools=pools,
                            reverse_encoder=reverse, decoder_blocks=blocks, embed_cell=cell)
    unit = model.reduction
    short, long_ = -(-40 // unit) * unit, -(-72 // unit) * unit
    variables = model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, short, 3)), jnp.array([short]))
    variables = _randomise_batch_stats(variables)
    apply = jax.jit(model.apply)
    results = []
    for steps in (short, long_):
        # the record alone, and in a batch with longer records (and a garbage-filled padding row)
        others = rng.normal(size=(2, steps, 3)).astype(np.float32)
        x = np.stack([_pad(record, steps), *others])
        lengths = np.array([length, steps, steps - 3])
        recon, emb = apply(variables, jnp.asarray(x), jnp.asarray(lengths))
        results.append((np.asarray(recon[0, :length]), np.asarray(emb[0]), np.asarray(recon[0, length:])))
    assert results[0][1].shape == ((2 if cell else 1) * 10 * layers,) == (model.embedding_dim,)
    for recon, emb, tail in results[1:]:
        np.testing.assert_allclose(emb, results[0][1], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(recon, results[0][0], atol=1e-5, rtol=1e-5)
        assert np.all(tail == 0.0)  # padded steps of the output are zero
    # the embedding does depend on the last valid sample (ceil lengths drop nothing) ...
    x = _pad(record, short)[None]
    x = np.concatenate([x, np.zeros((2, short, 3), np.float32)])  # the compiled batch of 3
    base = np.asarray(apply(variables, jnp.asarray(x), jnp.array([length, short, short]))[1][0])
    np.testing.assert_allclose(base, results[0][1], atol=1e-5)
    x_last = x.copy()
    x_last[0, length - 1] += 1.0
    lengths = jnp.array([length, short, short])
    assert np.abs(np.asarray(apply(variables, jnp.asarray(x_last), lengths)[1][0]) - base).max() > 1e-4
    # ... and not at all on what the padding holds
    x_pad = x.copy()
    x_pad[0, length:] = 100.0
    np.testing.assert_allclose(np.asarray(apply(variables, jnp.asarray(x_pad), lengths)[1][0]), base,
                               atol=1e-6)


def test_level_lengths_round_up_and_masks():
    lengths = np.arange(1, 70)
    levels = level_lengths(lengths)
    for k, n in enumerate(levels):
        np.testing.assert_array_equal(n, np.ceil(lengths / 2 ** k).astype(int))
    # other pooling factors: nested ceilings, e.g. 37 -> 10 -> 5 -> 2 with (4, 2, 3)
    for n, expected in ((37, [37, 10, 5, 2]), (64, [64, 16, 8, 3]), (1, [1, 1, 1, 1])):
        assert [int(v) for v in level_lengths(np.array(n), pools=(4, 2, 3))] == expected
    mask = np.asarray(length_mask(np.array([0, 3, 8]), 8))
    np.testing.assert_array_equal(mask.sum(1), [0, 3, 8])
    assert mask[1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]


def test_masked_batch_norm_statistics_equal_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, size=(4, 16, 5)).astype(np.float32)
    lengths = np.array([16, 9, 1, 5])
    mask = np.asarray(length_mask(lengths, 16))
    x_padded = np.where(mask[..., None] > 0, x, 1e3)  # garbage in the padding must not count
    bn = MaskedBatchNorm(momentum=0.9, epsilon=1e-5)
    variables = bn.init(jax.random.PRNGKey(0), jnp.asarray(x_padded), jnp.asarray(mask), train=False)
    y, updated = bn.apply(variables, jnp.asarray(x_padded), jnp.asarray(mask), train=True, mutable=["batch_stats"])
    valid = np.concatenate([x[i, :n] for i, n in enumerate(lengths)])  # (sum of lengths, 5)
    mean, var = valid.mean(0), valid.var(0)
    expected = (x - mean) / np.sqrt(var + 1e-5) * mask[..., None]
    np.testing.assert_allclose(np.asarray(y), expected, atol=1e-4)
    np.testing.assert_allclose(np.asarray(updated["batch_stats"]["mean"]), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(updated["batch_stats"]["var"]), 0.9 + 0.1 * valid.var(0, ddof=1),
                               rtol=1e-5)
    # evaluation mode uses the running statistics
    y_eval = bn.apply({**variables, "batch_stats": updated["batch_stats"]}, jnp.asarray(x), jnp.asarray(mask),
                      train=False)
    stats = updated["batch_stats"]
    np.testing.assert_allclose(np.asarray(y_eval), (x - np.asarray(stats["mean"])) / np.sqrt(
        np.asarray(stats["var"]) + 1e-5) * mask[..., None], atol=1e-4)


def _expected_param_count(c_in, channels, hidden, layers):
    conv = lambda a, b: 3 * a * b + b  # noqa: E731 - kernel 3, with bias
    bn = lambda c: 2 * c  # noqa: E731 - scale and bias (running stats are not parameters)
    lstm = lambda a, h: 4 * (a * h + h * h + h)  # noqa: E731 - flax: one bias per gate
    c1, c2, c3 = channels
    total = 0
    for a, b in ((c_in, c1), (c1, c2), (c2, c3)):  # encoder blocks
        total += conv(a, b) + bn(b) + conv(b, b) + bn(b)
    total += lstm(c3, hidden) + (layers - 1) * lstm(hidden, hidden)
    return total, (c1, c2, c3)


@pytest.mark.parametrize("mode,layers,blocks,cell", [("bottleneck", 2, "relu", True), ("reference", 1, "relu", True),
                                                     ("reference", 2, "encoder", False)])
def test_parameter_count_by_hand_and_output_shapes(mode, layers, blocks, cell):
    c_in, channels, hidden = 3, (8, 12, 16), 10
    conv = lambda a, b: 3 * a * b + b  # noqa: E731
    lstm = lambda a, h: 4 * (a * h + h * h + h)  # noqa: E731
    encoder, (c1, c2, c3) = _expected_param_count(c_in, channels, hidden, layers)
    embed_dim = (2 if cell else 1) * hidden * layers
    dec_in = hidden if mode == "reference" else 2 * hidden * layers + 2  # (h, c) + the two clock channels
    decoder = lstm(dec_in, hidden) + (layers - 1) * lstm(hidden, hidden) + (hidden * c3 + c3)
    decoder += conv(c3, c2) + 2 * c2 + conv(c2, c2) + 2 * c2  # up -> c2
    decoder += conv(c2, c1) + 2 * c1 + conv(c1, c1) + 2 * c1  # up -> c1
    if blocks == "relu":
        decoder += conv(c1, c1) + 2 * c1 + conv(c1, c_in)  # up -> input channels, linear output
    else:
        decoder += conv(c1, c_in) + 2 * c_in + conv(c_in, c_in) + 2 * c_in  # c_in wide, batch-normalised output
    model = LSTMAutoencoder(out_channels=c_in, channels=channels, hidden=hidden, lstm_layers=layers, mode=mode,
                            decoder_blocks=blocks, embed_cell=cell)
    x = jnp.zeros((2, 48, c_in))
    lengths = jnp.array([48, 20])
    # shapes only (jax.eval_shape compiles nothing)
    variables = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0)}, x, lengths))
    assert count_params(variables["params"]) == encoder + decoder
    recon, emb = jax.eval_shape(lambda v: model.apply(v, x, lengths), variables)
    assert recon.shape == (2, 48, c_in) and emb.shape == (2, embed_dim)
    emb2 = jax.eval_shape(lambda v: model.apply(v, x, lengths, method="encode"), variables)
    assert emb2.shape == (2, embed_dim)


def test_rejects_lengths_not_multiple_of_the_reduction():
    model = LSTMAutoencoder(**SMALL)
    with pytest.raises(ValueError, match="multiple of 8"):
        model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 44, 3)), jnp.array([44]))
    model = LSTMAutoencoder(**SMALL, pools=(4, 4, 2))
    with pytest.raises(ValueError, match="multiple of 32"):
        jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 48, 3)), jnp.array([48])))


def test_reverse_valid_by_hand():
    x = np.arange(2 * 5, dtype=np.float32).reshape(2, 5, 1)
    mask = np.asarray(length_mask(np.array([3, 5]), 5))
    got = np.asarray(reverse_valid(jnp.asarray(x), jnp.asarray(mask)))[..., 0]
    assert got.tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]  # padding (3, 4) stays in place
    np.testing.assert_array_equal(np.asarray(reverse_valid(jnp.asarray(got[..., None]), jnp.asarray(mask))), x)


def test_max_pool_over_valid_steps_by_hand():
    """4x pooling: each group's maximum over its valid steps (padding holds huge values here)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 12, 3)).astype(np.float32)
    lengths = np.array([12, 6])
    mask_in = np.asarray(length_mask(lengths, 12))
    mask_out = np.asarray(length_mask(-(-lengths // 4), 3))
    x_garbage = np.where(mask_in[..., None] > 0, x, 1e6).astype(np.float32)
    got = np.asarray(_max_pool(jnp.asarray(x_garbage), jnp.asarray(mask_in), jnp.asarray(mask_out), 4))
    expected = np.zeros((2, 3, 3), np.float32)
    for b, n in enumerate(lengths):
        for g in range(-(-n // 4)):
            expected[b, g] = x[b, 4 * g:min(4 * g + 4, n)].max(0)
    np.testing.assert_array_equal(got, expected)  # record 1: group 1 holds 2 valid steps, group 2 none


def test_decoder_clock_by_hand_and_independent_of_padding():
    lengths = np.array([37, 64, 1])  # pooled lengths ceil(L / 8): 5, 8, 1
    clock = np.asarray(decoder_clock(jnp.asarray(lengths), 8, 16.0))
    k = np.arange(8)
    np.testing.assert_allclose(clock[:, :, 0], np.tile(k / 16.0, (3, 1)))
    np.testing.assert_allclose(clock[:, :, 1], k[None, :] / np.array([5.0, 8.0, 1.0])[:, None], rtol=1e-6)
    longer = np.asarray(decoder_clock(jnp.asarray(lengths), 13, 16.0))
    np.testing.assert_array_equal(longer[:, :8], clock)


def test_embedding_without_the_cell_state_is_the_hidden_part():
    """``embed_cell=False`` (signal_autoencoder's embedding) keeps ``h_l`` of ``[h_1, c_1, h_2, c_2]``;
    the parameters are the same."""
    x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 24, 3)).astype(np.float32))
    lengths = jnp.array([24, 13])
    full = LSTMAutoencoder(**SMALL, lstm_layers=2)
    variables = full.init({"params": jax.random.PRNGKey(0)}, x, lengths)
    both = np.asarray(full.apply(variables, x, lengths, method="encode"))
    hidden_only = np.asarray(LSTMAutoencoder(**SMALL, lstm_layers=2, embed_cell=False).apply(
        variables, x, lengths, method="encode"))
    np.testing.assert_array_equal(hidden_only, np.concatenate([both[:, 0:10], both[:, 20:30]], axis=1))
