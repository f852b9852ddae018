"""Deep embedded clustering, second round: Gaussian-mixture initialisation, the linear embedding
option, the polarity data selection, zClust's Kaiser-window spectrogram and network size, the
flipped-pair real-data script, the pair split score and the table that gathers DEC and IDEC runs."""

import importlib.util
import itertools
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from seisjax.metrics import clustering as cl
from seisjax.config import load_config
from seisjax.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(f"_test_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _anisotropic_blobs(seed=0, sizes=(300, 500)):
    """Two axis-aligned elongated blobs (std 5 along x, 0.3 along y) 2 apart in y: k-means cuts
    them across x, a diagonal Gaussian mixture separates them."""
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=(n, 2)) * [5.0, 0.3] + [0.0, y] for n, y in zip(sizes, (-1.0, 1.0))]
    return np.concatenate(parts), np.repeat([0, 1], sizes)


# ---------------------------------------------------------------------------- Gaussian mixture
def test_gmm_beats_kmeans_on_anisotropic_blobs_and_recovers_them():
    x, truth = _anisotropic_blobs()
    assert cl.hungarian_accuracy(truth, cl.kmeans(x, 2, n_init=10)[1]) < 0.75
    fit = cl.gmm(x, 2, n_init=10)
    assert cl.hungarian_accuracy(truth, fit["labels"]) > 0.97
    order = np.argsort(fit["means"][:, 1])  # component of the lower blob first
    np.testing.assert_allclose(fit["means"][order, 1], [-1.0, 1.0], atol=0.05)
    np.testing.assert_allclose(np.sqrt(fit["variances"][order]), [[5.0, 0.3], [5.0, 0.3]], rtol=0.12)
    np.testing.assert_allclose(fit["weights"][order], [300 / 800, 500 / 800], atol=0.02)
    np.testing.assert_allclose(fit["responsibilities"].sum(1), 1.0, atol=1e-5)


def test_dec_init_gmm_puts_the_centres_on_the_blobs():
    from seisjax.families import task_class

    x, _ = _anisotropic_blobs(seed=1)
    centres = {}
    for init in ("kmeans", "gmm"):
        config = load_config("experiments/dec_polarity.py:pulses", {"task.init": init, "data.toy_examples": 64})
        centres[init] = task_class("dec")(config).initial_centres(x.astype(np.float32))
    np.testing.assert_allclose(np.sort(centres["gmm"][:, 1]), [-1.0, 1.0], atol=0.05)
    assert np.abs(centres["kmeans"][:, 1]).max() < 0.5  # k-means splits along the long axis instead
    with pytest.raises(InputError, match="task.init"):
        task_class("dec")(load_config("experiments/dec_polarity.py:pulses", {"task.init": "spectral"}))


# ---------------------------------------------------------------------------- networks
def test_linear_embedding_is_the_tanh_embedding_before_its_tanh():
    """Max-pooling commutes with the monotonic tanh, so with the same weights the tanh network's
    embedding is exactly tanh of the linear-embedding network's."""
    from seisjax.dec.model import MousaviPolarity

    x = 3.0 * jax.random.normal(jax.random.PRNGKey(0), (16, 32, 1))
    tanh_net, linear_net = MousaviPolarity(), MousaviPolarity(embedding_activation="linear")
    params = jax.tree_util.tree_map(np.asarray, tanh_net.init(jax.random.PRNGKey(1), x))
    params["params"]["enc3"]["kernel"] = 10.0 * params["params"]["enc3"]["kernel"]  # drive the last tanh into saturation
    z_tanh = tanh_net.apply(params, x, method="encode")
    z_linear = linear_net.apply(params, x, method="encode")
    np.testing.assert_allclose(np.tanh(z_linear), z_tanh, atol=1e-6)
    assert np.abs(z_linear).max() > 1.0  # unbounded, where the tanh layer saturates
    with pytest.raises(ValueError, match="unknown activation"):
        MousaviPolarity(embedding_activation="sigmoid").init(jax.random.PRNGKey(1), x)


def test_zclust_parameter_count_and_shapes_by_hand():
    from seisjax.dec.model import ZClust

    config = load_config("experiments/dec_zclust.py:quick")
    model = ZClust(input_shape=(87, 67), **{k: v for k, v in config.model.items() if k != "name"})
    x = jax.ShapeDtypeStruct((2, 87, 67, 1), np.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)  # shapes only: nothing to compile
    recon, z = jax.eval_shape(model.apply, variables, x)
    assert recon.shape == x.shape and z.shape == (2, 9)
    def conv(cin, cout):  # 3x3 kernel and bias
        return (9 * cin + 1) * cout

    widths = [1, 8, 16, 32, 64, 128]
    encoder = sum(conv(a, b) for a, b in itertools.pairwise(widths))  # 98,240
    embed = 3 * 3 * 128 * 9 + 9  # 87 x 67 -> 44 x 34 -> 22 x 17 -> 11 x 9 -> 6 x 5 -> 3 x 3
    unembed = 9 * 3 * 3 * 128 + 3 * 3 * 128
    decoder = sum(conv(a, b) for a, b in zip(widths[:0:-1], widths[-2::-1]))  # 128-64-32-16-8-1
    centres = 2 * 9
    counts = jax.tree_util.tree_map(lambda a: a.size, variables["params"])
    assert sum(jax.tree_util.tree_leaves(counts)) == encoder + embed + unembed + decoder + centres == 218_268


@pytest.mark.parametrize("size_in, size_out", [((3, 3), (6, 5)), ((44, 34), (87, 67)), ((6, 5), (11, 9)),
                                               ((9, 7), (4, 7)), ((5, 5), (5, 5))])
def test_zclust_resize_is_jax_nearest_resize(size_in, size_out):
    """The decoder's repeat-based resize picks the pixels jax.image.resize("nearest") picks, up and
    down, and its gradient sums the copies of each pixel."""
    from seisjax.dec.model import resize_nearest

    x = np.random.default_rng(0).normal(size=(2, *size_in, 3)).astype(np.float32)
    shape = (2, *size_out, 3)
    np.testing.assert_array_equal(np.asarray(resize_nearest(x, size_out)),
                                  np.asarray(jax.image.resize(x, shape, "nearest")))
    w = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    grad = jax.grad(lambda a: jnp.sum(resize_nearest(a, size_out) * w))(x)
    expected = jax.grad(lambda a: jnp.sum(jax.image.resize(a, shape, "nearest") * w))(x)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), rtol=1e-6, atol=1e-6)


def test_zclust_input_is_the_87_by_67_kaiser_spectrogram():
    """The task's spectrogram for the zClust config (built from the config, as training does)
    against scipy's STFT with a Kaiser window (beta = 1.8 pi) computed here, after the same taper
    and bandpass."""
    from seisjax.data.preprocess import bandpass, taper
    from seisjax.families import task_class
    from seisjax.dec.task import stft_window

    config = load_config("experiments/dec_zclust.py:quick", {"data.source": "tones", "data.toy_examples": 2})
    data = config.data
    assert stft_window(data.stft_window) == ("kaiser", pytest.approx(1.8 * math.pi))
    task = task_class("dec")(config)
    assert task.windows("train")["x"].shape == (2, 87, 67, 1)
    margin, rate = int(data.stft_margin), float(data.sampling_rate)
    rng = np.random.default_rng(0)
    n = data.window + 2 * margin
    t = np.arange(n) / rate
    x = rng.normal(size=(2, n)) * 0.1 + np.sin(2 * np.pi * 6.0 * t) * (t > 10) * np.exp(-(t - 10).clip(0) / 5)
    ours = task._model_input(x[..., None].astype(np.float32))
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


# ---------------------------------------------------------------------------- data
def _write_pulses(path, *, rate=100.0, n=24, length=1200, p=600, seed=0, bad_rows=()):
    """Clean first-motion pulses on Z (noise on N/E), half labelled local and half teleseismic."""
    from seisjax.data.dataset import DatasetWriter

    rng = np.random.default_rng(seed)
    t = np.arange(length) / rate
    signs = rng.choice([-1, 1], size=n)
    with DatasetWriter(path, component_order="ZNE", sampling_rate=rate) as writer:
        for i in range(n):
            tau = np.clip(t - p / rate, 0, None)
            z = signs[i] * (tau > 0) * np.sin(2 * np.pi * 5 * tau) * np.exp(-3 * tau) + 0.001 * rng.normal(size=length)
            w = np.stack([z, 0.01 * rng.normal(size=length), 0.01 * rng.normal(size=length)]).astype(np.float32)
            if i in bad_rows:
                w[0, 5] = np.nan
            writer.add(w, {"trace_p_arrival_sample": p, "trace_polarity": int(signs[i]), "trace_snr_db": 40.0,
                           "path_distance_class": "local" if i % 2 == 0 else "teleseismic",
                           "station_code": f"S{i:02d}"})
    return signs


def test_polarity_query_keeps_only_local_records(tmp_path):
    from seisjax.families import task_class

    signs = _write_pulses(tmp_path / "ds")
    config = load_config("experiments/dec_polarity.py:quick_pretrain",
                         {"data.source": "dataset", "data.path": str(tmp_path / "ds")})
    assert config.data.query == "path_distance_class == 'local'" and config.data.pre_p == 24
    assert config.data.lowpass == 20.0
    task = task_class("dec")(config)
    windows = task.windows("eval")
    assert len(windows["x"]) == 12 and windows["x"].shape[1] == 32
    np.testing.assert_array_equal(windows["label"], signs[::2])
    # 24 samples before P: the sign of the samples after P is the label, and the causal filter
    # moved nothing of the onset before P
    x = windows["x"][..., 0]
    np.testing.assert_array_equal(np.sign(x[:, 31] - x[:, 23]), signs[::2])
    assert np.ptp(x[:, :24], axis=1).max() < 0.02 and np.abs(x[:, 24:]).max(axis=1).min() > 0.5
    with pytest.raises(InputError, match="selects no rows"):
        task_class("dec")(load_config("experiments/dec_polarity.py:quick_pretrain", {
            "data.source": "dataset", "data.path": str(tmp_path / "ds"), "data.query": "trace_snr_db > 100"}))


def test_make_polarity_flips_writes_exact_opposite_pairs(tmp_path):
    from seisjax.data.dataset import Dataset

    script = _script("make_polarity_flips")
    signs = _write_pulses(tmp_path / "src", rate=50.0, n=6, length=600, p=300, bad_rows=(2,))
    with Dataset(tmp_path / "src") as src:
        meta = src.metadata
    report = script.make_polarity_flips([tmp_path / "src"], tmp_path / "out", rate=100.0, pre_s=2.0, post_s=2.0,
                                        band=None, progress=False)
    assert report == {"pairs": 5, "rejected": 1}
    rejected = (tmp_path / "out" / "rejected.csv").read_text()
    assert "non-finite samples" in rejected and meta["trace_name"][2] in rejected
    with Dataset(tmp_path / "out") as out:
        m = out.metadata
        x = out.get_waveforms(list(range(len(m))))[:, 0]
    assert len(m) == 10 and x.shape == (10, 400) and out.component_order == "Z"
    assert (m["trace_p_arrival_sample"] == 200).all() and (m["trace_sampling_rate_hz"] == 100.0).all()
    np.testing.assert_array_equal(m["trace_pair"].to_numpy(), np.repeat(np.arange(5), 2))
    np.testing.assert_array_equal(m["trace_flipped"].to_numpy(), np.tile([0, 1], 5))
    np.testing.assert_array_equal(x[1::2], -x[0::2])  # bit for bit
    kept = np.delete(signs, 2)
    np.testing.assert_array_equal(m["trace_polarity"].to_numpy()[0::2], kept)  # clean pulses: estimate right
    np.testing.assert_array_equal(m["trace_polarity"].to_numpy()[1::2], -kept)
    # 50 -> 100 Hz: the onset stays at the window's P sample (zero before, the pulse's sign after)
    assert np.abs(x[0::2, :195]).max() < 0.05
    assert np.abs(x[0::2, 200:230]).max(axis=1).min() > 0.5
    np.testing.assert_array_equal(np.sign(x[0::2, 205]), kept)
    # onset SNR by hand: |mean of the 5 samples after P - mean of the second before| / its std
    before = x[:, 100:200]
    onset = np.abs(x[:, 201:206].mean(1) - before.mean(1)) / before.std(1)
    np.testing.assert_allclose(m["trace_onset_snr"].to_numpy(), onset, rtol=1e-3)
    assert (m["trace_onset_snr"] > 3).all()  # clean pulses: every label clear


def test_lowpass_windows_match_obspy_and_stay_causal():
    from obspy import Trace

    from seisjax.dec.task import lowpass_windows

    rng = np.random.default_rng(3)
    margin, width, rate = 100, 32, 100.0
    raw = rng.normal(size=(3, margin + width)) + 5.0  # an offset, as the caller's demeaning leaves
    raw[:, margin + 24:] += 20.0 * np.array([[1.0], [-1.0], [1.0]])  # a step at P (sample 24)
    ours = lowpass_windows(raw[..., None].astype(np.float32), rate, 20.0, margin=margin)[..., 0]
    for row, got in zip(raw, ours, strict=True):
        trace = Trace((row - row[:margin].mean()).astype(np.float64))
        trace.stats.sampling_rate = rate
        trace.filter("lowpass", freq=20.0, corners=4, zerophase=False)
        expected = trace.data[margin:] - trace.data[margin:].mean()
        np.testing.assert_allclose(got, expected / np.abs(expected).max(), atol=1e-5)
    # causal: the step changes nothing before P, and its sign is the first motion after it
    quiet = lowpass_windows(np.where(np.arange(margin + width) < margin + 24, 0.0, 1.0)[None, :, None],
                            rate, 20.0, margin=margin)[0, :, 0]
    assert np.ptp(quiet[:24]) == 0.0 and quiet[27] > quiet[23]
    assert not lowpass_windows(np.zeros((1, margin + width, 1)), rate, 20.0, margin=margin).any()  # flat stays 0


def test_p_too_early_for_the_filter_margin_is_named(tmp_path):
    from seisjax.families import task_class

    _write_pulses(tmp_path / "ds", n=4, length=400, p=100)
    overrides = {"data.source": "dataset", "data.path": str(tmp_path / "ds"), "data.query": ""}
    with pytest.raises(InputError, match=r"4 trace\(s\) have P fewer than 124 samples.*filter_margin"):
        task_class("dec")(load_config("experiments/dec_polarity.py:quick_pretrain", overrides))
    # a smaller margin fits, and the windows are still aligned on P
    task = task_class("dec")(load_config("experiments/dec_polarity.py:quick_pretrain",
                                       {**overrides, "data.filter_margin": 60}))
    assert np.ptp(task.windows("eval")["x"][:, :24, 0], axis=1).max() < 0.02


def test_truth_radiation_joins_by_trace_name(tmp_path):
    import h5py

    from seisjax.dec.task import _truth_p_radiation

    assert _truth_p_radiation(tmp_path, ["a"]) is None  # no truth.h5
    with h5py.File(tmp_path / "truth.h5", "w") as h5:
        h5["traces/trace_name"] = np.array([b"a", b"b", b"c"])
        h5["traces/p_radiation"] = np.array([0.5, -0.05, 0.2])
    np.testing.assert_array_equal(_truth_p_radiation(tmp_path, ["c", "a", "zz", "b"]), [0.2, 0.5, np.nan, -0.05])


def test_eval_scores_clear_onsets_apart(tmp_path):
    from seisjax.families import task_class

    script = _script("make_polarity_flips")
    _write_pulses(tmp_path / "src", n=8, length=800, p=400)
    script.make_polarity_flips([tmp_path / "src"], tmp_path / "flips", band=None, progress=False)
    from seisjax.data.dataset import Dataset

    with Dataset(tmp_path / "flips") as ds:  # make the first two pairs noise-dominated: onset SNR < 3
        meta = ds.metadata.copy()
    meta.loc[:3, "trace_onset_snr"] = [0.5, 0.5, 2.0, 2.0]
    meta.to_csv(tmp_path / "flips" / "metadata.csv", index=False)
    config = load_config("experiments/dec_polarity.py:real_pretrain", {"data.path": str(tmp_path / "flips")})
    task = task_class("dec")(config)
    variables = task.model.init(jax.random.PRNGKey(0), task.windows("eval")["x"][:2])
    report = task.eval_report(variables["params"], {}, tmp_path)
    assert report["unambiguous"] == {"definition": "trace_onset_snr >= 3", "examples": 12}
    raw = report["methods"]["kmeans_raw"]
    assert raw["unambiguous"]["examples"] == 12 and raw["accuracy"] == 1.0 and raw["pair_split"]["split"] == 1.0
    task.close()


def test_pair_split_counts_pairs_in_different_clusters():
    from seisjax.dec.task import pair_split

    pairs = np.array([0, 0, 1, 1, 2, 2, 3, np.nan, 4, 4, 4])
    clusters = np.array([0, 1, 1, 1, 1, 0, 0, 1, 0, 1, 0])
    # pairs 0 and 2 split, 1 not; 3 (one row), NaN and 4 (three rows) not counted
    assert pair_split(pairs, clusters) == {"pairs": 3, "split": pytest.approx(2 / 3)}


# ---------------------------------------------------------------------------- one table for DEC and IDEC
def _fake_run(root, name, methods, fingerprint="abc"):
    step = root / name / "eval" / "step_100"
    step.mkdir(parents=True)
    (step / "clustering.json").write_text(json.dumps({"examples": 10, "methods": methods}))
    (step / "metrics.json").write_text(json.dumps({"data": {"fingerprint": fingerprint}}))
    return root / name


def test_dec_table_gathers_dec_and_idec_runs(tmp_path):
    script = _script("dec_table")
    base = {"kmeans_raw": {"accuracy": 0.6}, "kmeans_pretrained": {"accuracy": 0.7}}
    dec = _fake_run(tmp_path, "dec", {**base, "dec": {"accuracy": 0.8, "per_snr_bin": {"0-1": {"accuracy": 0.5}}}})
    idec = _fake_run(tmp_path, "idec", {**base, "idec": {"accuracy": 0.9}})
    table = script.gather([dec, idec])
    assert {k: v["accuracy"] for k, v in table["methods"].items()} == {
        "kmeans_raw": 0.6, "kmeans_pretrained": 0.7, "dec": 0.8, "idec": 0.9}
    lines = script.markdown(table).splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["kmeans_raw", "kmeans_pretrained", "dec", "idec"]
    assert "| 0.800 |" in lines[4] and "0.500" in lines[4]
    other = _fake_run(tmp_path, "other", {**base, "idec": {"accuracy": 0.9}}, fingerprint="xyz")
    with pytest.raises(InputError, match="other data"):
        script.gather([dec, other])
    changed = _fake_run(tmp_path, "changed", {"kmeans_raw": {"accuracy": 0.65}, "idec": {"accuracy": 0.9}})
    with pytest.raises(InputError, match="not the same baseline"):
        script.gather([dec, changed])


def test_supervised_reference_scores_every_record_once_by_a_model_blind_to_its_event(tmp_path):
    from seisjax.data.synthetic import scenario_config, synthesize

    synthesize(scenario_config("local", {"catalog.teleseismic_fraction": 0.5, "taup.local_depth_step_km": 6.0,
                                         "taup.local_distance_step_deg": 0.3}, events=16, seed=2),
               tmp_path / "data", figure=False, progress=False)
    script = _script("dec_supervised_reference")
    args = ["--config", "experiments/dec_distance.py:quick_pretrain", "--data", str(tmp_path / "data"),
            "--steps", "300", "--methods", "linear", "--out", str(tmp_path / "ref.json")]
    results = script.main(args)
    linear = results["methods"]["linear"]
    assert results["events"] == 16 and linear["all"]["examples"] == results["records"]
    assert sum(v["examples"] for k, v in linear.items() if k != "all") == results["records"]
    # above log10 SNR 2 the 1-20 Hz spectrogram tells local from teleseismic almost surely
    loud = [v for k, v in linear.items() if k in ("2-3", "3-4", ">4")]
    assert sum(v["accuracy"] * v["examples"] for v in loud) / sum(v["examples"] for v in loud) > 0.95
    assert json.loads((tmp_path / "ref.json").read_text())["methods"]["linear"] == linear
    with pytest.raises(InputError, match="unknown"):
        script.main(args[:-4] + ["--methods", "forest"])
    with pytest.raises(InputError, match="labels"):
        script.main(args[:6] + ["--set", "data.label_column=nothing"])

    # a probe reads a trained run's code of the same records, and refuses a run of other records
    from seisjax.cli import main as cli

    assert cli(["train", "--config", "experiments/dec_distance.py:quick_pretrain", "--workdir", str(tmp_path / "pre"),
                "--config.data.source=dataset", "--config.data.path", str(tmp_path / "data"),
                "--config.train.num_steps", "8"]) in (0, None)
    probed = script.main(args[:6] + ["--steps", "100", "--methods", "", "--probe", str(tmp_path / "pre")])
    assert list(probed["methods"]) == ["probe pre"]
    assert probed["methods"]["probe pre"]["all"]["examples"] == results["records"]
    with pytest.raises(InputError, match="not the records"):
        script.main(args[:6] + ["--methods", "", "--probe", str(tmp_path / "pre"),
                                "--set", "data.query=path_distance_class == 'local'"])


def test_full_covariance_mixture_redraws_a_boundary_that_equal_spreads_get_wrong():
    """A tight cluster beside a wide one: k-means cuts halfway between the centres and gives the tight
    cluster a third of the wide one; the full-covariance mixture, started from that partition, follows
    each cluster's own spread."""
    rng = np.random.default_rng(0)
    tight = rng.normal(size=(600, 2)) * 0.3
    wide = rng.normal(size=(600, 2)) * 3.0 + [3.0, 0.0]
    x, truth = np.concatenate([tight, wide]), np.repeat([0, 1], 600)
    start = cl.kmeans(x, 2, n_init=5, seed=0)[1]
    fit = cl.gmm_full(x, start)
    assert cl.hungarian_accuracy(truth, start) < 0.85
    assert cl.hungarian_accuracy(truth, fit["labels"]) > 0.95
    wide_component = int(np.argmax(fit["covariances"][:, 0, 0]))
    np.testing.assert_allclose(np.diag(fit["covariances"][wide_component]), [9.0, 9.0], rtol=0.25)
    np.testing.assert_allclose(fit["responsibilities"].sum(1), 1.0, atol=1e-9)
    with pytest.raises(InputError, match="at least 2"):
        cl.gmm_full(x, np.r_[np.zeros(len(x) - 1, int), 1])
    with pytest.raises(InputError, match="NaN"):
        cl.gmm_full(np.where(np.arange(len(x))[:, None] == 3, np.nan, x), start)


def test_log10_snr_takes_the_db_column_and_else_the_components_linear_snr():
    """STEAD's converted trace_snr_db lists every component and data build writes none: there the
    clustered component's linear trace_snr_<C> gives the SNR bins."""
    import pandas as pd

    from seisjax.dec.task import _log10_snr

    meta = pd.DataFrame({"trace_snr_db": ["[47.4 55.4 56.8]", "20"], "trace_snr_Z": [234.4, 5.0]})
    np.testing.assert_allclose(_log10_snr(meta, "trace_snr_db", "Z"), [np.log10(234.4), 1.0])
    np.testing.assert_allclose(_log10_snr(meta[["trace_snr_Z"]], "trace_snr_db", "Z"), np.log10([234.4, 5.0]))
    assert _log10_snr(meta[["trace_snr_db"]], "trace_snr_db", "N") is not None   # the dB column alone
    assert _log10_snr(pd.DataFrame({"other": [1.0]}), "trace_snr_db", "Z") is None


def test_composition_splits_each_class_by_where_its_s_pick_falls():
    import pandas as pd

    module = _script("dec_composition")
    # P at sample 500 (100 Hz); S 5 s, 8.39 s, 8.41 s and 12 s later, or no S pick
    metadata = pd.DataFrame({
        "trace_name": [f"t{i}" for i in range(6)],
        "path_distance_class": ["local"] * 4 + ["teleseismic"] * 2,
        "trace_p_arrival_sample": [500.0] * 6,
        "trace_s_arrival_sample": [1000.0, 1339.0, 1341.0, 1700.0, np.nan, 400.0],
        "trace_sampling_rate_hz": [100.0] * 6,
    })
    groups = module.s_groups(metadata, "path_distance_class", 8.4)
    assert groups.tolist() == ["local, S in window", "local, S in window", "local, S after window",
                               "local, S after window", "teleseismic, no S pick", "teleseismic, no S pick"]
    clusters = pd.DataFrame({"trace_name": ["t0", "t1", "t2", "t3", "t4", "t5"], "cluster": [0, 0, 1, 1, 1, -1],
                             "log10_snr": [0.5, 2.5, 2.5, 4.5, np.nan, 0.5]})
    counts = module.composition(clusters, metadata, label_column="path_distance_class", window_after_p_s=8.4)
    as_dict = {(r.group, r.snr_bin, r.cluster): r.traces for r in counts.itertuples()}
    assert as_dict == {("local, S in window", "0-1", 0): 1, ("local, S in window", "2-3", 0): 1,
                       ("local, S after window", "2-3", 1): 1, ("local, S after window", ">4", 1): 1,
                       ("teleseismic, no S pick", "unknown", 1): 1, ("teleseismic, no S pick", "0-1", -1): 1}
    table = module.markdown(counts)
    assert "| local, S in window | 0 / 2 / 0 |" in table  # clusters -1 / 0 / 1
    with pytest.raises(InputError, match="not in the dataset"):
        module.composition(pd.concat([clusters, clusters.assign(trace_name="elsewhere").iloc[:1]]), metadata,
                           label_column="path_distance_class", window_after_p_s=8.4)
