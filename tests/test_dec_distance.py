"""DEC on spectrograms: the distance and zClust networks' sizes by hand, the spectrogram input
against an independent obspy + scipy computation (scipy's zero-padded edges and edges read from the
margin, the lowest rows of a longer transform), and pretrain -> DEC -> eval through the engine on two
clearly different spectral shapes (known truth)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import obspy
import pytest
import scipy.signal

from seisjax.config import load_config
from seisjax.errors import InputError
from seisjax.families import task_class
from seisjax.dec.model import MODELS
from seisjax.dec.task import distance_spectrograms, tone_waveforms
from seisjax.families import evaluate, train_and_evaluate

FAST_COMPILE = True
CONFIG = "experiments/dec_distance.py"


def _counts(params):
    return {name: sum(x.size for x in jax.tree_util.tree_leaves(v)) for name, v in params.items()}


def test_distance_network_parameter_count_and_shapes():
    model = MODELS["mousavi_distance"]()
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 16, 48, 1)))
    counts = _counts(variables["params"])
    # 3x3 kernels: 9 * in * out + out
    assert [counts[f"enc{i}"] for i in range(3)] == [9 * 1 * 4 + 4, 9 * 4 * 2 + 2, 9 * 2 * 1 + 1]
    assert [counts[f"dec{i}"] for i in range(3)] == [9 * 1 * 2 + 2, 9 * 2 * 4 + 4, 9 * 4 * 1 + 1]
    assert variables["params"]["centres"].shape == (2, 12)  # (16 / 8) x (48 / 8) x 1
    # one batch shape throughout: eager ops compile once per shape
    recon, z = model.apply(variables, jnp.ones((2, 16, 48, 1)))
    assert recon.shape == (2, 16, 48, 1) and z.shape == (2, 12)
    with pytest.raises(ValueError, match="divisible by 8"):
        MODELS["mousavi_distance"](input_shape=(15, 48)).init(jax.random.PRNGKey(0), jnp.zeros((1, 15, 48, 1)))


def test_zclust_network_parameter_count_and_shapes():
    model = MODELS["zclust"]()
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
    assert not np.allclose(model.apply(variables, -jnp.ones((2, 87, 67, 1)), method="encode"),
                           model.apply(variables, jnp.zeros((2, 87, 67, 1)), method="encode"))


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


def test_signal_edges_match_scipy_on_the_wider_trace_and_remove_the_edge_stripe():
    rng = np.random.default_rng(2)
    rate, margin, window, half = 100.0, 100, 940, 15
    t = np.arange(window + 2 * margin) / rate
    # a 5 Hz wave train that lasts past the window's end, in weak noise
    x = (np.sin(2 * np.pi * 5.0 * t) + 0.01 * rng.normal(size=t.size))[None, :, None]
    kwargs = dict(margin=margin, band=(1.0, 20.0), nperseg=30, noverlap=10, floor=1e-3)
    got = distance_spectrograms(x, rate, edges="signal", **kwargs)
    assert got.shape == (1, 16, 48, 1)
    tr = obspy.Trace(x[0, :, 0].copy(), header={"sampling_rate": rate})
    tr.detrend("demean")
    tr.taper(max_percentage=None, type="hann", max_length=margin / rate)
    tr.filter("bandpass", freqmin=1.0, freqmax=20.0, corners=4, zerophase=True)
    # frames centred on samples 0, 20, ..., 940 of the window, each reading real samples
    segments = np.stack([tr.data[margin + c - half:margin + c + half] for c in range(0, window + 1, 20)])
    mag = np.abs(np.fft.rfft(segments * scipy.signal.get_window("hann", 30), axis=1)).T / scipy.signal.get_window(
        "hann", 30).sum()
    ref = np.log10(mag + 1e-3 * mag.max())
    np.testing.assert_allclose(got[0, ..., 0], (ref - ref.mean()) / ref.std(), atol=1e-5)
    # scipy's zero boundary cuts the wave off in the last frame: broadband energy at 30-50 Hz (rows
    # 9-15), far above the interior frames' level there; reading the margin instead removes it
    zeros = distance_spectrograms(x, rate, edges="zeros", **kwargs)[0, 9:, :, 0]
    signal = got[0, 9:, :, 0]
    assert zeros[:, -1].mean() - zeros[:, 10:40].mean() > 0.5
    assert abs(signal[:, -1].mean() - signal[:, 10:40].mean()) < 0.1
    with pytest.raises(InputError, match="margin"):
        distance_spectrograms(x[:, 90:-90], rate, edges="signal", **{**kwargs, "margin": 10})


def test_spectrogram_peak_at_the_tone_frequency_and_flat_window():
    rate, margin = 100.0, 100
    t = np.arange(1140) / rate
    # 10 Hz sits on bin 3 (bins every 100 / 30 Hz)
    x = np.stack([np.sin(2 * np.pi * 10.0 * t), np.zeros_like(t)])[..., None]
    got = distance_spectrograms(x, rate, margin=margin)
    assert np.argmax(got[0, :, 10:40, 0].mean(axis=1)) == 3
    assert np.all(got[1] == 0.0)  # flat window: zeros, no NaN


def test_lowest_rows_of_a_longer_transform_cover_the_band():
    rate, margin = 100.0, 100
    t = np.arange(1140) / rate
    # nfft 64: rows 1.5625 Hz apart, the 16 kept ones span 0-23.4 Hz; 12.5 Hz is row 8, 3.125 Hz row 2
    x = np.stack([np.sin(2 * np.pi * 12.5 * t), np.sin(2 * np.pi * 3.125 * t)])[..., None]
    got = distance_spectrograms(x, rate, margin=margin, edges="signal", nfft=64, rows=16)
    assert got.shape == (2, 16, 48, 1)
    assert list(np.argmax(got[:, :, 10:40, 0].mean(axis=2), axis=1)) == [8, 2]
    full = distance_spectrograms(x, rate, margin=margin, edges="signal", nfft=64, floor=0.0)
    assert full.shape == (2, 33, 48, 1)
    with pytest.raises(InputError, match="rows"):
        distance_spectrograms(x, rate, margin=margin, nfft=64, rows=40)
    with pytest.raises(InputError, match="edges"):
        distance_spectrograms(x, rate, margin=margin, edges="reflect")


def test_unknown_input_kind_is_an_input_error():
    config = load_config(f"{CONFIG}:tones_pretrain", {"data.input": "wavelet"})
    with pytest.raises(InputError, match="data.input"):
        task_class("dec")(config)


def test_tones_cluster_by_spectral_shape_through_the_engine(tmp_path):
    pre, dec = tmp_path / "pre", tmp_path / "dec"
    train_and_evaluate(load_config(f"{CONFIG}:tones_pretrain"), pre)
    train_and_evaluate(load_config(f"{CONFIG}:tones", {"task.pretrained": str(pre)}), dec)
    metrics_path = evaluate(dec)
    report = json.loads((metrics_path.parent / "clustering.json").read_text())
    config = load_config(f"{CONFIG}:tones")
    assert set(report["methods"]) == {"dec", "dec_gmm_full", "kmeans_raw", "kmeans_pretrained",
                                      "kmeans_pretrained_whitened"}
    assert report["examples"] == config.data.toy_examples
    assert report["methods"]["dec"]["accuracy"] > 0.9
    assert report["methods"]["dec"]["per_class"]["teleseismic"]["f1"] > 0.9
    truth = tone_waveforms(config.data.toy_examples, length=1204, p=232, seed=config.data.toy_seed)["label"]
    assert sorted(report["methods"]["dec"]["cluster_sizes"]) == pytest.approx(
        sorted(np.unique(truth, return_counts=True)[1]), abs=0.1 * len(truth))
