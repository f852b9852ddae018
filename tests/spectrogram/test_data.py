"""Spectrogram data (seisjax/spectrogram/data.py): the model's shapes and mask, the scaling round trip,
renormalisation, the distance condition, records windowed at P and rejected with reasons, STEAD
loading."""

import numpy as np
import pytest

from seisjax.config import load_config
from seisjax.data.dataset import Dataset, DatasetWriter
from seisjax.data.stft import stft
from seisjax.errors import InputError
from seisjax.spectrogram.data import (
    SpectrogramSpec,
    prepare_records,
    renormalise,
    to_magnitudes,
    to_model_input,
    toy_records,
)
from seisjax.spectrogram.task import SpectrogramTask

CONFIG = "experiments/spectrogram.py"
SPEC = SpectrogramSpec(sampling_rate=50.0)


def test_model_shape_of_the_study_and_the_quick_variant():
    # 70 s at 100 Hz: 7000 samples, ceil(7000 / 64) + 1 = 111 frames -> padded to 112; 129 -> 128 bins
    assert SpectrogramSpec().stft_shape == (129, 111) and SpectrogramSpec().model_shape == (128, 112)
    assert SPEC.stft_shape == (129, 56) and SPEC.model_shape == (128, 64)
    mask = SPEC.mask()
    assert mask.shape == (128, 64, 1) and mask[:, :56].min() == 1 and mask[:, 56:].max() == 0


def test_minmax_scale_round_trip_restores_the_magnitudes():
    rng = np.random.default_rng(0)
    waves = rng.normal(size=(3, 3, SPEC.n_samples)) * np.array([1.0, 50.0, 3000.0])[:, None, None]
    mag = np.abs(stft(waves, SPEC.sampling_rate, **SPEC.stft_kwargs))
    x, scale = to_model_input(mag, SPEC)
    assert x.shape == (3, 128, 64, 3) and x.dtype == np.float32
    assert x.min() == 0.0 and np.allclose(x[..., :56, :].max(axis=(1, 2)), 1.0)
    assert np.all(x[:, :, 56:, :] == 0)  # padded frames
    np.testing.assert_allclose(scale[:, 1], np.log1p(mag[:, :, :128]).max(axis=(2, 3)), rtol=1e-6)
    restored = to_magnitudes(x, scale, SPEC)
    assert restored.shape == mag.shape
    # float32 storage of the scaled values: relative error ~1e-7 of each trace's log range
    peak = mag[:, :, :128].max(axis=(2, 3), keepdims=True)
    assert np.max(np.abs(restored[:, :, :128] - mag[:, :, :128]) / peak) < 1e-5
    assert np.all(restored[:, :, 128:] == 0)  # the cropped Nyquist bin


def test_renormalise_restores_the_form_of_an_input_and_so_the_predicted_peak():
    rng = np.random.default_rng(3)
    mask = SPEC.mask()
    x = rng.uniform(0.3, 0.6, size=(2, 128, 64, 3))      # a blurred decode: never reaches 0 or 1
    x[:, :, 56:, :] = 5.0                                  # padding must not count
    x[1, :, :, 2] = 0.4                                    # a flat channel
    out = renormalise(x, mask)
    lo, hi = x[:, :, :56].min(axis=(1, 2)), x[:, :, :56].max(axis=(1, 2))
    np.testing.assert_allclose(out[0, :, :56], (x[0, :, :56] - lo[0]) / (hi[0] - lo[0]), rtol=1e-6)
    assert np.all(out[:, :, 56:] == 0) and np.all(out[1, :, :, 2] == 0)
    assert np.allclose(out[0, :, :56].max(axis=(0, 1)), 1.0) and np.all(out[0].min(axis=(0, 1)) == 0)
    # un-scaled with a log_scale, the loudest bin is exactly expm1(max): amplitudes follow the scale
    scale = np.array([[[0.1, 0.2, 0.3], [6.0, 8.0, 9.0]]] * 2, np.float32)
    mag = to_magnitudes(out, scale, SPEC)
    np.testing.assert_allclose(np.log1p(mag[0].max(axis=(1, 2))), scale[0, 1], rtol=1e-6)
    assert np.log1p(to_magnitudes(x, scale, SPEC)[0].max(axis=(1, 2))).max() < 0.7 * 9.0  # without it


def test_distance_condition_is_the_hypocentral_distance_to_the_station(tmp_path):
    from obspy.geodetics import gps2dist_azimuth

    config = load_config(CONFIG + ":toy,cvae", {"data.toy_records": 16})
    task = SpectrogramTask(config, workdir=tmp_path)
    data = task.data
    assert data.distance_condition and task.model_kwargs()["n_conditions"] == 5
    assert set(data.station_coords) == {"T01", "T02", "T03", "T04"}
    lat, lon = data.station_coords["T03"]
    src = np.array([[lat + 0.4, lon - 0.2, 12.0], [lat, lon, 4.0]])
    got = data.log10_distance(src[:, 0], src[:, 1], src[:, 2], ["T03", "T03"])
    epi_km = gps2dist_azimuth(src[0, 0], src[0, 1], lat, lon)[0] / 1000  # WGS84 against our sphere: < 0.5 %
    np.testing.assert_allclose(10 ** got, [np.hypot(epi_km, 12.0), 4.0], rtol=5e-3)
    # the records' own epicentral distances (flat-earth in toy_records) agree with it
    train = data.train
    epi = np.sqrt(np.maximum(10 ** (2 * data.log10_distance(train["lat"], train["lon"], train["depth"],
                                                             train["station"])) - train["depth"] ** 2, 0))
    np.testing.assert_allclose(epi, train["distance_km"], rtol=0.02, atol=0.5)
    cond = data.condition_vector(src[:, 0] * 0 + 3, src[:, 0], src[:, 1], src[:, 2], ["T03", "NOPE"])
    assert cond.shape == (2, 5) and cond[1, 4] == 0.0     # no coordinates: the training mean distance
    np.testing.assert_allclose(cond[0, 4], (got[0] - data.cond_mean[3]) / data.cond_std[3], rtol=1e-5)
    with pytest.raises(InputError, match="station codes"):
        data.condition_vector(src[:, 0], src[:, 0], src[:, 1], src[:, 2])


def _write(path, waveforms, metadata):
    with DatasetWriter(path, component_order="ZNE", sampling_rate=50.0, data_format_attrs={"unit": "counts"}) as w:
        for wave, meta in zip(waveforms, metadata):
            w.add(wave, meta)
    return Dataset(path)


def test_records_are_windowed_at_p_and_bad_ones_rejected_with_reasons(tmp_path):
    waves, meta = toy_records(8, seed=3)
    waves[1, 2, 100] = np.nan                                  # non-finite sample
    meta[2]["source_magnitude"] = None                         # no magnitude: no band
    waves[3] = np.random.default_rng(0).normal(size=waves[3].shape)  # noise only: low SNR
    meta[4]["station_channel_code"] = "XY"                     # instrument not in the table
    meta[5]["trace_p_arrival_sample"] = 3900                   # window mostly after the record
    with _write(tmp_path / "d", waves, meta) as ds:
        arrays, rejected = prepare_records(ds, SPEC, keep_waveforms=True, need_conditions=True, progress=False)
    reasons = {r["row"]: r["reason"] for r in rejected}
    assert reasons == {1: "non_finite", 2: "no_magnitude", 3: "low_snr", 4: "unknown_instrument",
                       5: "window_outside_trace"}
    assert list(arrays["row"]) == [0, 6, 7]
    assert arrays["x"].shape == (3, 128, 64, 3) and arrays["waveform"].shape == (3, 3, 3500)
    # the window starts 10 s before P: the burst (at P) is there, the 10 s before hold only noise
    w = arrays["waveform"]
    p = int(10.0 * SPEC.sampling_rate)
    assert np.all(np.abs(w[:, :, p:p + 100]).max(axis=2) > 20 * np.abs(w[:, :, 50:p - 50]).std(axis=2))
    # components in E, N, Z order: the toy's Z:N:E amplitude ratios are 1 : 0.6 : 0.8
    peaks = np.abs(w[:, :, p:p + 200]).max(axis=2)
    np.testing.assert_allclose(peaks[:, 0] / peaks[:, 2], 0.8, rtol=0.1)
    np.testing.assert_allclose(peaks[:, 1] / peaks[:, 2], 0.6, rtol=0.1)


def test_stead50_loads_and_every_record_is_accounted_for(shared_data, tmp_path):
    config = load_config(CONFIG + ":quick,cvae", {"data.source": "dataset",
                                                  "data.path": str(shared_data / "stead50"),
                                                  "data.sampling_rate": 100.0})
    task = SpectrogramTask(config, workdir=tmp_path)
    data = task.data
    try:
        summary = data.summary
        train, held = summary["train"], summary["eval"]
        n_dataset = len(data.dataset)
        # every split row is either a spectrogram or a listed rejection
        n_split = int(data.dataset.metadata["split"].isin(["train", "dev"]).sum())
        assert train["records"] + train["rejected"] + held["records"] + held["rejected"] == n_split <= n_dataset == 50
        assert train["records"] >= 20 and held["records"] >= 1
        assert data.train["x"].shape[1:] == (128, 112, 3)
        assert summary["spec"]["gain"] == 1.0  # counts
        assert data.stations == ["109C"]
        batch = next(iter(task.eval_batches(process_index=0, process_count=1)))
        assert batch["x"].shape[1:] == (128, 112, 3) and set(batch["station"]) == {1}
    finally:
        task.close()
    assert (tmp_path / "spectral_rejected.csv").exists() and (tmp_path / "data_stead" / "metadata.csv").exists()
