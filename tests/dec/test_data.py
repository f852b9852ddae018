"""DEC's data: SNR bins and columns, the spectrogram input against an independent obspy + scipy
computation (scipy's zero-padded edges and edges read from the margin, the lowest rows of a longer
transform, zClust's Kaiser window), the causal low-pass, the polarity selection and windows, and
first motions recovered from synthetic records with known truth."""

import math

import h5py
import numpy as np
import obspy
import pandas as pd
import pytest
import scipy.signal

from seisjax.config import load_config
from seisjax.data.preprocess import bandpass, taper
from seisjax.data.synthetic import scenario_config, synthesize
from seisjax.dec.data import (_log10_snr, _truth_p_radiation, distance_spectrograms, lowpass_windows, snr_bin,
                              stft_window)
from seisjax.errors import InputError
from seisjax.families import task_class
from seisjax.metrics import clustering as cl

CONFIG = "experiments/dec_distance.py"


def test_snr_bins():
    np.testing.assert_array_equal(snr_bin([0.0, 0.99, 1.0, 2.5, 3.99, 4.0, 7.0, -0.5, np.nan]),
                                  [0, 0, 1, 2, 3, 4, 4, -1, -1])


def test_log10_snr_takes_the_db_column_and_else_the_components_linear_snr():
    """STEAD's converted trace_snr_db lists every component and data build writes none: there the
    clustered component's linear trace_snr_<C> gives the SNR bins."""
    meta = pd.DataFrame({"trace_snr_db": ["[47.4 55.4 56.8]", "20"], "trace_snr_Z": [234.4, 5.0]})
    np.testing.assert_allclose(_log10_snr(meta, "trace_snr_db", "Z"), [np.log10(234.4), 1.0])
    np.testing.assert_allclose(_log10_snr(meta[["trace_snr_Z"]], "trace_snr_db", "Z"), np.log10([234.4, 5.0]))
    assert _log10_snr(meta[["trace_snr_db"]], "trace_snr_db", "N") is not None   # the dB column alone
    assert _log10_snr(pd.DataFrame({"other": [1.0]}), "trace_snr_db", "Z") is None


def test_truth_radiation_joins_by_trace_name(tmp_path):
    assert _truth_p_radiation(tmp_path, ["a"]) is None  # no truth.h5
    with h5py.File(tmp_path / "truth.h5", "w") as h5:
        h5["traces/trace_name"] = np.array([b"a", b"b", b"c"])
        h5["traces/p_radiation"] = np.array([0.5, -0.05, 0.2])
    np.testing.assert_array_equal(_truth_p_radiation(tmp_path, ["c", "a", "zz", "b"]), [0.2, 0.5, np.nan, -0.05])


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


def test_zclust_input_is_the_87_by_67_kaiser_spectrogram():
    """The task's spectrogram for the zClust config (built from the config, as training does)
    against scipy's STFT with a Kaiser window (beta = 1.8 pi) computed here, after the same taper
    and bandpass."""
    config = load_config("experiments/dec_zclust.py:quick", {"data.source": "tones", "data.toy_examples": 2})
    data = config.data
    assert stft_window(data.stft_window) == ("kaiser", pytest.approx(1.8 * math.pi))
    task = task_class("dec")(config)
    assert task.data.train["x"].shape == (2, 87, 67, 1)
    margin, rate = int(data.stft_margin), float(data.sampling_rate)
    rng = np.random.default_rng(0)
    n = data.window + 2 * margin
    t = np.arange(n) / rate
    x = rng.normal(size=(2, n)) * 0.1 + np.sin(2 * np.pi * 6.0 * t) * (t > 10) * np.exp(-(t - 10).clip(0) / 5)
    ours = task.data.model_input(x[..., None].astype(np.float32))
    assert ours.shape == (2, 87, 67, 1)

    def reference(window):
        w = x.astype(np.float32).astype(np.float64)
        w = w - w.mean(1, keepdims=True)
        w = taper(w, max_percentage=None, type="hann", max_length=margin / rate, sampling_rate=rate)
        w = bandpass(w, *data.bandpass, rate, corners=4, zerophase=True)[:, margin:-margin]
        _, _, spec = scipy.signal.stft(w, fs=rate, window=window, nperseg=data.stft_nperseg,
                                       noverlap=data.stft_noverlap, nfft=data.stft_nperseg)
        mag = np.abs(spec)
        log_mag = np.log10(mag + data.stft_floor * mag.max(axis=(1, 2), keepdims=True))
        return (log_mag - log_mag.mean(axis=(1, 2), keepdims=True)) / log_mag.std(axis=(1, 2), keepdims=True)

    np.testing.assert_allclose(ours[..., 0], reference(("kaiser", 1.8 * np.pi)), atol=2e-4)
    assert np.abs(ours[..., 0] - reference("hann")).max() > 0.05  # the window is really the Kaiser one


def test_unknown_input_kind_is_an_input_error():
    config = load_config(f"{CONFIG}:tones,pretrain", {"data.input": "wavelet"})
    with pytest.raises(InputError, match="data.input"):
        task_class("dec")(config)


def test_lowpass_windows_match_obspy_and_stay_causal():
    rng = np.random.default_rng(3)
    margin, width, rate = 100, 32, 100.0
    raw = rng.normal(size=(3, margin + width)) + 5.0  # an offset, as the caller's demeaning leaves
    raw[:, margin + 24:] += 20.0 * np.array([[1.0], [-1.0], [1.0]])  # a step at P (sample 24)
    ours = lowpass_windows(raw[..., None].astype(np.float32), rate, 20.0, margin=margin)[..., 0]
    for row, got in zip(raw, ours, strict=True):
        trace = obspy.Trace((row - row[:margin].mean()).astype(np.float64))
        trace.stats.sampling_rate = rate
        trace.filter("lowpass", freq=20.0, corners=4, zerophase=False)
        expected = trace.data[margin:] - trace.data[margin:].mean()
        np.testing.assert_allclose(got, expected / np.abs(expected).max(), atol=1e-5)
    # causal: the step changes nothing before P, and its sign is the first motion after it
    quiet = lowpass_windows(np.where(np.arange(margin + width) < margin + 24, 0.0, 1.0)[None, :, None],
                            rate, 20.0, margin=margin)[0, :, 0]
    assert np.ptp(quiet[:24]) == 0.0 and quiet[27] > quiet[23]
    assert not lowpass_windows(np.zeros((1, margin + width, 1)), rate, 20.0, margin=margin).any()  # flat stays 0


def test_polarity_query_keeps_only_local_records(tmp_path, write_pulses):
    signs = write_pulses(tmp_path / "ds")
    config = load_config("experiments/dec_polarity.py:quick,pretrain",
                         {"data.source": "dataset", "data.path": str(tmp_path / "ds")})
    assert config.data.query == "path_distance_class == 'local'" and config.data.pre_p == 24
    assert config.data.lowpass == 20.0
    task = task_class("dec")(config)
    windows = task.data.eval
    assert len(windows["x"]) == 12 and windows["x"].shape[1] == 32
    np.testing.assert_array_equal(windows["label"], signs[::2])
    # 24 samples before P: the sign of the samples after P is the label, and the causal filter
    # moved nothing of the onset before P
    x = windows["x"][..., 0]
    np.testing.assert_array_equal(np.sign(x[:, 31] - x[:, 23]), signs[::2])
    assert np.ptp(x[:, :24], axis=1).max() < 0.02 and np.abs(x[:, 24:]).max(axis=1).min() > 0.5
    with pytest.raises(InputError, match="selects no rows"):
        task_class("dec")(load_config("experiments/dec_polarity.py:quick,pretrain", {
            "data.source": "dataset", "data.path": str(tmp_path / "ds"), "data.query": "trace_snr_db > 100"}))


def test_p_too_early_for_the_filter_margin_is_named(tmp_path, write_pulses):
    write_pulses(tmp_path / "ds", n=4, length=400, p=100)
    overrides = {"data.source": "dataset", "data.path": str(tmp_path / "ds"), "data.query": ""}
    with pytest.raises(InputError, match=r"4 trace\(s\) have P fewer than 124 samples.*filter_margin"):
        task_class("dec")(load_config("experiments/dec_polarity.py:quick,pretrain", overrides))
    # a smaller margin fits, and the windows are still aligned on P
    task = task_class("dec")(load_config("experiments/dec_polarity.py:quick,pretrain",
                                       {**overrides, "data.filter_margin": 60}))
    assert np.ptp(task.data.eval["x"][:, :24, 0], axis=1).max() < 0.02


def test_polarity_windows_recover_synthetic_first_motions(tmp_path):
    """The polarity experiment's windows (24 samples before P, 8 after, causal 20 Hz low-pass) let
    k-means on the raw windows find the true polarity sign(F_P) of synthetic local records; the
    former centred, unfiltered window loses the short pulses of small events to their second swing."""
    # local events only, TauP on a coarse grid: ~420 records in seconds
    synthesize(scenario_config("local", {"catalog.teleseismic_fraction": 0.0, "taup.local_depth_step_km": 6.0,
                                         "taup.local_distance_step_deg": 0.3}, events=25, seed=1),
               tmp_path / "data", figure=False, progress=False)
    scores = {}
    for name, overrides in {"default": {}, "centred_unfiltered": {"data.pre_p": 16, "data.lowpass": 0.0}}.items():
        config = load_config("experiments/dec_polarity.py:quick,pretrain",
                             {"data.source": "dataset", "data.path": str(tmp_path / "data"), **overrides})
        task = task_class("dec")(config)
        windows = task.data.eval
        labels = cl.kmeans(windows["x"][..., 0], 2, n_init=10, seed=0)[1]
        clear = np.abs(windows["p_radiation"]) >= 0.1  # joined from truth.h5 by trace name
        assert 0.7 < clear.mean() < 0.95  # near-nodal records exist and are excluded
        scores[name] = (cl.hungarian_accuracy(windows["label"], labels),
                        cl.hungarian_accuracy(windows["label"][clear], labels[clear]))
        task.close()
    assert scores["default"][0] > 0.94 and scores["default"][1] > 0.97
    assert scores["centred_unfiltered"][0] < scores["default"][0] - 0.04
