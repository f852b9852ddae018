"""Spectrogram data and the spectral_vae task: scaling round trip, the mask, rejections with reasons,
config errors, STEAD loading, and an AE that learns a toy case."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seisjax.config import load_config
from seisjax.data.dataset import Dataset, DatasetWriter
from seisjax.data.stft import stft
from seisjax.spectrogram.data import (
    SpectrogramSpec,
    prepare_records,
    renormalise,
    to_magnitudes,
    to_model_input,
)
from seisjax.errors import InputError
from seisjax.families import task_class
from seisjax.spectrogram.task import masked_mse, toy_records

FAST_COMPILE = True
CONFIG = "experiments/spectral_vae.py"
STEPS = 150
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

    config = load_config(CONFIG + ":toy_cvae", {"data.toy_records": 16})
    task = task_class("spectral_vae")(config, workdir=tmp_path)
    assert task.distance_condition and task.model_kwargs()["n_conditions"] == 5
    assert set(task.station_coords) == {"T01", "T02", "T03", "T04"}
    lat, lon = task.station_coords["T03"]
    src = np.array([[lat + 0.4, lon - 0.2, 12.0], [lat, lon, 4.0]])
    got = task.log10_distance(src[:, 0], src[:, 1], src[:, 2], ["T03", "T03"])
    epi_km = gps2dist_azimuth(src[0, 0], src[0, 1], lat, lon)[0] / 1000  # WGS84 against our sphere: < 0.5 %
    np.testing.assert_allclose(10 ** got, [np.hypot(epi_km, 12.0), 4.0], rtol=5e-3)
    # the records' own epicentral distances (flat-earth in toy_records) agree with it
    train = task._train
    epi = np.sqrt(np.maximum(10 ** (2 * task.log10_distance(train["lat"], train["lon"], train["depth"],
                                                             train["station"])) - train["depth"] ** 2, 0))
    np.testing.assert_allclose(epi, train["distance_km"], rtol=0.02, atol=0.5)
    cond = task.condition_vector(src[:, 0] * 0 + 3, src[:, 0], src[:, 1], src[:, 2], ["T03", "NOPE"])
    assert cond.shape == (2, 5) and cond[1, 4] == 0.0     # no coordinates: the training mean distance
    np.testing.assert_allclose(cond[0, 4], (got[0] - task.cond_mean[3]) / task.cond_std[3], rtol=1e-5)
    with pytest.raises(InputError, match="station codes"):
        task.condition_vector(src[:, 0], src[:, 0], src[:, 1], src[:, 2])


def test_padded_bins_do_not_change_the_loss():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(2, 16, 32, 3)).astype(np.float32)
    recon = rng.uniform(size=x.shape).astype(np.float32)
    mask = np.zeros((2, 16, 32, 1), np.float32)
    mask[:, :, :20] = 1.0
    base = np.asarray(masked_mse(x, recon, mask))
    expected = ((x - recon)[:, :, :20] ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(base, expected, rtol=1e-6)
    x2, recon2 = x.copy(), recon.copy()
    x2[:, :, 20:] = 7.0
    recon2[:, :, 20:] = -3.0
    np.testing.assert_allclose(masked_mse(x2, recon2, mask), base, rtol=1e-6)
    recon2[:, :, 19] += 1.0  # a real bin does change it
    assert np.all(np.asarray(masked_mse(x2, recon2, mask)) > base)


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


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(InputError, match="unknown config key"):
        load_config(CONFIG + ":toy_ae", {"data.nonsense": 1})
    with pytest.raises(InputError, match="unknown variant"):
        load_config(CONFIG + ":huge")
    task_cls = task_class("spectral_vae")
    config = load_config(CONFIG + ":toy_ae")
    config.model.name = "spectral_gan"
    with pytest.raises(InputError, match="spectral_ae, spectral_vae, spectral_cvae"):
        task_cls(config, workdir=tmp_path)
    config = load_config(CONFIG + ":toy_ae", {"model.name": "spectral_ae"})
    with config.unlocked():
        config.model.latent = 8  # a VAE parameter given to the AE
    with pytest.raises(InputError, match="model.latent"):
        task_cls(config, workdir=tmp_path)
    with pytest.raises(InputError, match="data.source"):
        task_cls(load_config(CONFIG + ":toy_ae", {"data.source": "ftp"}), workdir=tmp_path)


def test_stead50_loads_and_every_record_is_accounted_for(shared_data, tmp_path):
    config = load_config(CONFIG + ":quick_cvae", {"data.source": "dataset",
                                                  "data.path": str(shared_data / "stead50"),
                                                  "data.sampling_rate": 100.0})
    task = task_class("spectral_vae")(config, workdir=tmp_path)
    try:
        summary = task.summary
        train, held = summary["train"], summary["eval"]
        n_dataset = len(task._dataset)
        # every split row is either a spectrogram or a listed rejection
        n_split = int(task._dataset.metadata["split"].isin(["train", "dev"]).sum())
        assert train["records"] + train["rejected"] + held["records"] + held["rejected"] == n_split <= n_dataset == 50
        assert train["records"] >= 20 and held["records"] >= 1
        assert task._train["x"].shape[1:] == (128, 112, 3)
        assert summary["spec"]["gain"] == 1.0  # counts
        assert task.stations == ["109C"]
        batch = next(iter(task.eval_batches(process_index=0, process_count=1)))
        assert batch["x"].shape[1:] == (128, 112, 3) and set(batch["station"]) == {1}
    finally:
        task.close()
    assert (tmp_path / "spectral_rejected.csv").exists() and (tmp_path / "data_stead" / "metadata.csv").exists()


@pytest.fixture
def optimised_xla():
    """This test runs many steps: compiling with XLA's optimisations pays for itself here."""
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def test_ae_learns_a_toy_case_well_below_the_input_variance(tmp_path, optimised_xla):
    config = load_config(CONFIG + ":toy_ae", {"data.toy_records": 20})
    task = task_class("spectral_vae")(config, workdir=tmp_path)
    try:
        batch = {k: jnp.asarray(v) for k, v in task._add_mask(task._batch_arrays(task._train)).items()}
        variables = task.init_variables(jax.random.PRNGKey(0), batch)
        params, state = variables.pop("params"), variables
        tx = optax.adam(3e-3)
        opt = tx.init(params)

        @jax.jit
        def step(params, state, opt, rng):
            (loss, (_, state)), grads = jax.value_and_grad(
                lambda p: task.loss(p, state, batch, rng, train=True), has_aux=True)(params)
            updates, opt = tx.update(grads, opt)
            return optax.apply_updates(params, updates), state, opt, loss

        for i in range(STEPS):
            params, state, opt, _ = step(params, state, opt, jax.random.PRNGKey(i))
        batch["_valid"] = jnp.ones(len(batch["x"]))
        metrics = task.eval_metrics(params, state, batch, jax.random.PRNGKey(0))
        mse = float(metrics["mse"][0] / metrics["mse"][1])
        x, mask = np.asarray(batch["x"]), np.asarray(batch["mask"]) > 0
        real = np.broadcast_to(mask, x.shape)
        variance = float(x[real].var())
        assert mse < 0.2 * variance, (mse, variance)
    finally:
        task.close()


@pytest.fixture(scope="module")
def toy_cvae(tmp_path_factory):
    """An initialised (untrained) toy CVAE task with the GSNN term and the generation options on."""
    config = load_config(CONFIG + ":toy_cvae", {"data.toy_records": 24, "task.prior_weight": 0.5,
                                                "task.generation_floor": "train_median"})
    task = task_class("spectral_vae")(config, workdir=tmp_path_factory.mktemp("toy_cvae"))
    batch = {k: jnp.asarray(v) for k, v in task._add_mask(task._batch_arrays(task._train)).items()}
    variables = task.init_variables(jax.random.PRNGKey(0), batch)
    params = variables.pop("params")
    yield task, params, variables, batch
    task.close()


def test_prior_term_decodes_prior_draws_independent_of_the_input(toy_cvae):
    task, params, state, batch = toy_cvae
    rng = jax.random.PRNGKey(3)
    out, _ = task.apply(params, state, batch, rng, train=True)
    blank = dict(batch, x=jnp.zeros_like(batch["x"]))
    out_blank, _ = task.apply(params, state, blank, rng, train=True)
    # the prior path sees only z ~ N(0, I) and the conditions; the posterior path sees the record
    np.testing.assert_allclose(np.asarray(out_blank["prior_recon"]), np.asarray(out["prior_recon"]), atol=1e-6)
    assert np.abs(np.asarray(out_blank["recon"]) - np.asarray(out["recon"])).max() > 1e-3
    loss, (terms, _) = task.loss(params, state, batch, rng, train=True)
    expected = float(masked_mse(batch["x"], out["prior_recon"], batch["mask"]).mean())
    np.testing.assert_allclose(float(terms["prior_mse"]), expected, rtol=1e-5)
    task.prior_weight = 0.0
    try:
        loss0, (terms0, _) = task.loss(params, state, batch, rng, train=True)
    finally:
        task.prior_weight = 0.5
    assert "prior_mse" not in terms0
    np.testing.assert_allclose(float(loss) - float(loss0), 0.5 * expected, rtol=1e-4)
    with pytest.raises(InputError, match="prior_weight"):
        task_class("spectral_vae")(load_config(CONFIG + ":toy_cvae", {"task.prior_weight": -1.0}),
                                 workdir=task.workdir)


def test_neighbour_prior_samples_the_posterior_of_the_nearest_training_record(toy_cvae):
    task, params, state, _ = toy_cvae
    train = task._train
    mean, logvar = (np.asarray(a) for a in task.model.apply({"params": params, **state}, train["x"], train["cond"],
                                                           train["station_index"], method="encode"))
    task.prior_neighbours = 1
    try:
        target = 5
        cond = np.repeat(train["cond"][target:target + 1], 3000, axis=0)
        z = task.neighbour_prior(params, state, cond, seed=1)
    finally:
        task.prior_neighbours = 8
    keys = train["cond"][:, [0, -1]]
    assert np.sum(np.all(np.isclose(keys, keys[target]), axis=1)) == 1   # the record's own keys are unique
    standard = (z - mean[target]) / np.exp(0.5 * logvar[target])
    np.testing.assert_allclose(standard.mean(axis=0), 0.0, atol=0.1)
    np.testing.assert_allclose(standard.std(axis=0), 1.0, atol=0.1)


def test_train_median_floor_sets_the_emptiest_bin_of_generated_records(toy_cvae):
    task, params, state, _ = toy_cvae
    cond, station = task._eval["cond"][:4], task._eval["station_index"][:4]
    x, mag, _ = task.generate(params, state, cond, station, seed=0, griffin_lim_iters=1)
    frames = task.spec.stft_shape[1]
    fm = task.spec.model_shape[0]
    floor = np.log1p(mag[:, :, :fm, :frames]).min(axis=(2, 3))                      # (N, C)
    np.testing.assert_allclose(floor, np.broadcast_to(np.median(task._train["log_scale"][:, 0], axis=0),
                                                      floor.shape), rtol=1e-4, atol=1e-7)
    # and renormalised decodes span [0, 1] per channel, so the predicted max sets the loudest bin
    np.testing.assert_allclose(x[:, :, :frames].min(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(x[:, :, :frames].max(axis=(1, 2)), 1.0, atol=1e-6)
