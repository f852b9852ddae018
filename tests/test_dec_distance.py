"""DEC on spectrograms: the distance and zClust networks' sizes by hand, the spectrogram input
against an independent obspy + scipy computation, and pretrain -> DEC -> eval through the engine on
two clearly different spectral shapes (known truth)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import obspy
import pytest
import scipy.signal

from seisjax.config import load_config
from seisjax.errors import InputError
from seisjax.registry import get_model, get_task
from seisjax.tasks.dec import distance_spectrograms, tone_waveforms
from seisjax.train.loop import evaluate, train_and_evaluate

FAST_COMPILE = True
CONFIG = "experiments/dec_distance.py"


def _counts(params):
    return {name: sum(x.size for x in jax.tree_util.tree_leaves(v)) for name, v in params.items()}


def test_distance_network_parameter_count_and_shapes():
    model = get_model("mousavi_distance")()
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 16, 48, 1)))
    counts = _counts(variables["params"])
    # 3x3 kernels: 9 * in * out + out
    assert [counts[f"enc{i}"] for i in range(3)] == [9 * 1 * 4 + 4, 9 * 4 * 2 + 2, 9 * 2 * 1 + 1]
    assert [counts[f"dec{i}"] for i in range(3)] == [9 * 1 * 2 + 2, 9 * 2 * 4 + 4, 9 * 4 * 1 + 1]
    assert variables["params"]["centres"].shape == (2, 12)  # (16 / 8) x (48 / 8) x 1
    recon, z = model.apply(variables, jnp.ones((3, 16, 48, 1)))
    assert recon.shape == (3, 16, 48, 1) and z.shape == (3, 12)
    with pytest.raises(ValueError, match="divisible by 8"):
        get_model("mousavi_distance")(input_shape=(15, 48)).init(jax.random.PRNGKey(0), jnp.zeros((1, 15, 48, 1)))


def test_zclust_network_parameter_count_and_shapes():
    model = get_model("zclust")()
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 87, 67, 1)))
    counts = _counts(variables["params"])
    widths = [1, 8, 16, 32, 64, 128]
    assert [counts[f"enc{i}"] for i in range(5)] == [9 * a * b + b for a, b in zip(widths, widths[1:])]
    # stride 2 "same": 87 -> 44 -> 22 -> 11 -> 6 -> 3 and 67 -> 34 -> 17 -> 9 -> 5 -> 3
    flat = 3 * 3 * 128
    assert counts["embed"] == flat * 9 + 9 and counts["unembed"] == 9 * flat + flat
    back = widths[::-1]
    assert [counts[f"dec{i}"] for i in range(5)] == [9 * a * b + b for a, b in zip(back, back[1:])]
    assert variables["params"]["centres"].shape == (2, 9)
    recon, z = model.apply(variables, jnp.ones((2, 87, 67, 1)))
    assert recon.shape == (2, 87, 67, 1) and z.shape == (2, 9)
    # leaky ReLU slope 0.02 on the first layer: the encoder's output responds to negative inputs
    assert not np.allclose(model.apply(variables, -jnp.ones((1, 87, 67, 1)), method="encode"),
                           model.apply(variables, jnp.zeros((1, 87, 67, 1)), method="encode"))


def test_spectrogram_input_matches_obspy_and_scipy():
    rng = np.random.default_rng(1)
    rate, margin, window = 100.0, 100, 940
    x = rng.normal(size=(3, window + 2 * margin, 1))
    got = distance_spectrograms(x, rate, margin=margin, band=(1.0, 20.0), nperseg=30, noverlap=10, floor=1e-3)
    assert got.shape == (3, 16, 48, 1)  # the paper's 16 x 48
    for i in range(3):
        tr = obspy.Trace(x[i, :, 0].copy(), header={"sampling_rate": rate})
        tr.detrend("demean")
        tr.taper(max_percentage=None, type="hann", max_length=margin / rate)
        tr.filter("bandpass", freqmin=1.0, freqmax=20.0, corners=4, zerophase=True)
        _, _, coef = scipy.signal.stft(tr.data[margin:-margin], fs=rate, nperseg=30, noverlap=10, nfft=30)
        mag = np.abs(coef)
        ref = np.log10(mag + 1e-3 * mag.max())
        ref = (ref - ref.mean()) / ref.std()
        np.testing.assert_allclose(got[i, ..., 0], ref, atol=1e-5)


def test_spectrogram_peak_at_the_tone_frequency_and_flat_window():
    rate, margin = 100.0, 100
    t = np.arange(1140) / rate
    # 10 Hz sits on bin 3 (bins every 100 / 30 Hz)
    x = np.stack([np.sin(2 * np.pi * 10.0 * t), np.zeros_like(t)])[..., None]
    got = distance_spectrograms(x, rate, margin=margin)
    assert np.argmax(got[0, :, 10:40, 0].mean(axis=1)) == 3
    assert np.all(got[1] == 0.0)  # flat window: zeros, no NaN


def test_unknown_input_kind_is_an_input_error():
    config = load_config(f"{CONFIG}:tones_pretrain", {"data.input": "wavelet"})
    with pytest.raises(InputError, match="data.input"):
        get_task("dec")(config)


def test_tones_cluster_by_spectral_shape_through_the_engine(tmp_path):
    pre, dec = tmp_path / "pre", tmp_path / "dec"
    train_and_evaluate(load_config(f"{CONFIG}:tones_pretrain"), pre)
    train_and_evaluate(load_config(f"{CONFIG}:tones", {"task.pretrained": str(pre)}), dec)
    metrics_path = evaluate(dec)
    report = json.loads((metrics_path.parent / "clustering.json").read_text())
    config = load_config(f"{CONFIG}:tones")
    assert set(report["methods"]) == {"dec", "kmeans_raw", "kmeans_pretrained"}
    assert report["examples"] == config.data.toy_examples
    assert report["methods"]["dec"]["accuracy"] > 0.9
    assert report["methods"]["dec"]["per_class"]["teleseismic"]["f1"] > 0.9
    truth = tone_waveforms(config.data.toy_examples, length=1204, p=232, seed=config.data.toy_seed)["label"]
    assert sorted(report["methods"]["dec"]["cluster_sizes"]) == pytest.approx(
        sorted(np.unique(truth, return_counts=True)[1]), abs=0.1 * len(truth))
