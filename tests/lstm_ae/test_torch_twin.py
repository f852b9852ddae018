"""The PyTorch twin of the LSTM autoencoder: same trainable parameter count, same masking."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.lstm_ae.model import LSTMAutoencoder, count_params
from tests.conftest import load_file

torch = pytest.importorskip("torch")

torch_lstm_ae = load_file("benchmarks/torch_lstm_ae.py")


@pytest.mark.parametrize("mode,layers,blocks", [("bottleneck", 1, "relu"), ("reference", 2, "relu"),
                                                ("bottleneck", 2, "relu"), ("reference", 1, "encoder")])
def test_parameter_counts_equal(mode, layers, blocks):
    kwargs = dict(out_channels=3, channels=(8, 12, 16), hidden=10, lstm_layers=layers, mode=mode,
                  decoder_blocks=blocks)
    flax_model = LSTMAutoencoder(**kwargs)
    variables = jax.eval_shape(lambda: flax_model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 16, 3)),
                                                       jnp.array([16])))
    twin = torch_lstm_ae.LSTMAutoencoderTorch(**kwargs)
    assert torch_lstm_ae.trainable_parameters(twin) == count_params(variables["params"])
    # at the default sizes too
    big = LSTMAutoencoder(out_channels=3)
    big_vars = jax.eval_shape(lambda: big.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 16, 3)),
                                               jnp.array([16])))
    assert torch_lstm_ae.trainable_parameters(torch_lstm_ae.LSTMAutoencoderTorch(out_channels=3)) == count_params(
        big_vars["params"])


def test_twin_embedding_ignores_padding_and_loss_matches_numpy():
    torch.manual_seed(0)
    twin = torch_lstm_ae.LSTMAutoencoderTorch(out_channels=3, channels=(8, 12, 16), hidden=10).eval()
    rng = np.random.default_rng(0)
    record = rng.normal(size=(37, 3)).astype(np.float32)
    embeddings = []
    for steps in (40, 72):
        x = np.zeros((2, steps, 3), np.float32)
        x[0, :37] = record
        x[1] = rng.normal(size=(steps, 3))
        with torch.no_grad():
            recon, emb = twin(torch.from_numpy(x), torch.tensor([37, steps]))
        embeddings.append(emb[0].numpy())
        assert recon.shape == (2, steps, 3) and np.all(recon[0, 37:].numpy() == 0)
    np.testing.assert_allclose(embeddings[0], embeddings[1], atol=1e-5)
    x = torch.from_numpy(rng.normal(size=(2, 8, 1)).astype(np.float32))
    r = torch.zeros_like(x)
    lengths = torch.tensor([8, 3])
    expected = np.mean([np.abs(x[0].numpy()).sum() / 8, np.abs(x[1, :3].numpy()).sum() / 3])
    assert float(torch_lstm_ae.masked_l1(r, x, lengths)) == pytest.approx(expected, rel=1e-6)
