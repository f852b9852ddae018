"""A tiny CVAE through the engine, then `generate`: a readable dataset of K three-component records at
the requested conditions; unknown stations; runs that cannot generate."""

import json

import jax
import matplotlib.image as plt_image
import numpy as np
import pytest

from seisjax.cli import main as cli_main
from seisjax.config import load_config
from seisjax.data.dataset import Dataset
from seisjax.errors import InputError
from seisjax.families import evaluate, restore_trained, train_and_evaluate
from seisjax.metrics.spectral import spectral_centroid
from seisjax.spectrogram.data import to_magnitudes
from seisjax.spectrogram.generation import (
    CENTROID_STAGES,
    centroid_stage_trends,
    generate_from_checkpoint,
    interpolate_latent,
    record_index,
)
from seisjax.spectrogram.latent import latent_path

FAST_COMPILE = True
CONFIG = "experiments/spectrogram.py"


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cvae")
    config = load_config(f"{CONFIG}:toy,cvae", {"data.toy_records": 24, "train.num_steps": 3,
                                                 "train.eval_every_steps": 3, "train.checkpoint_every_steps": 3,
                                                 "train.eval_every_epochs": None,
                                                 "train.checkpoint_every_epochs": None, "batch_size": 8})
    train_and_evaluate(config, workdir)
    return workdir


def test_generate_writes_k_three_component_records_at_the_conditions(cvae_run, tmp_path, capsys):
    out = tmp_path / "gen"
    code = cli_main(["generate", "--workdir", str(cvae_run), "--magnitude", "3.5", "--lat", "38.1", "--lon", "23.2",
                     "--depth", "8", "--station", "T02", "-n", "5", "--seed", "1", "--out", str(out)])
    assert code in (0, None)
    assert "warning" not in capsys.readouterr().out
    with Dataset(out) as ds:
        assert len(ds) == 5 and ds.component_order == "ENZ" and ds.sampling_rate == 50.0
        waves = ds.get_waveforms(list(range(5)))
        meta = ds.metadata
    assert waves.shape == (5, 3, 3500) and np.isfinite(waves).all()
    assert np.all(np.abs(waves).max(axis=(1, 2)) > 0)               # no silent record
    assert not np.allclose(waves[0], waves[1])                        # different prior samples
    assert set(meta["source_magnitude"]) == {3.5} and set(meta["station_code"]) == {"T02"}
    assert set(meta["source_depth_km"]) == {8.0} and meta["generation_station_known"].astype(str).eq("True").all()
    assert (out / "generated.png").stat().st_size > 10_000
    # same seed, same records: the command is reproducible
    again = generate_from_checkpoint(cvae_run, out=tmp_path / "again", magnitude=3.5, lat=38.1, lon=23.2, depth=8,
                                     station="T02", n=5, seed=1, log=lambda *_: None)
    with Dataset(again["out"]) as ds:
        np.testing.assert_array_equal(ds.get_waveforms(list(range(5))), waves)
    # --prior replaces the run's generation prior: N(0, I) codes give other records, named in the metadata
    standard = tmp_path / "standard"
    cli_main(["generate", "--workdir", str(cvae_run), "--magnitude", "3.5", "--lat", "38.1", "--lon", "23.2",
              "--depth", "8", "--station", "T02", "-n", "5", "--seed", "1", "--out", str(standard),
              "--prior", "standard"])
    with Dataset(standard) as ds:
        assert set(ds.metadata["generation_prior"]) == {"standard"}
        assert not np.allclose(ds.get_waveforms(list(range(5))), waves)
    assert set(meta["generation_prior"]) == {"neighbours"}
    with pytest.raises(InputError, match="learned"):
        generate_from_checkpoint(cvae_run, out=tmp_path / "learned", magnitude=3.5, lat=38.1, lon=23.2, depth=8,
                                 station="T02", n=1, generation_prior="learned", log=lambda *_: None)


def test_unknown_station_uses_the_unknown_embedding_with_a_warning(cvae_run, tmp_path):
    messages = []
    result = generate_from_checkpoint(cvae_run, out=tmp_path / "u", magnitude=2.0, lat=38.0, lon=23.0, depth=10,
                                      station="NOPE", n=2, log=messages.append)
    assert not result["station_known"]
    assert any("NOPE" in m and "unknown-station embedding" in m and "T01" in m for m in messages)
    with Dataset(tmp_path / "u") as ds:
        assert ds.metadata["generation_station_known"].astype(str).eq("False").all()
        assert np.isfinite(ds.get_waveforms([0, 1])).all()


def test_conditions_outside_the_training_range_are_warned_about(cvae_run, tmp_path):
    messages = []
    generate_from_checkpoint(cvae_run, out=tmp_path / "far", magnitude=8.5, lat=38.0, lon=23.0, depth=300,
                             station="T02", n=1, log=messages.append)
    warned = [m for m in messages if "extrapolates" in m]
    assert any(m.startswith("generate: warning: magnitude 8.5 lies outside") for m in warned)
    assert any(m.startswith("generate: warning: depth 300 km lies outside") for m in warned)
    assert not any("lat " in m or "lon " in m for m in warned)   # those were inside the training range


def test_bad_requests_are_named(cvae_run, tmp_path):
    with pytest.raises(InputError, match="--out"):
        (tmp_path / "full").mkdir()
        (tmp_path / "full" / "x").write_text("x")
        generate_from_checkpoint(cvae_run, out=tmp_path / "full", magnitude=2, lat=38, lon=23, depth=5, station="T01")
    with pytest.raises(InputError, match="--magnitude"):
        generate_from_checkpoint(cvae_run, out=tmp_path / "n", magnitude=float("nan"), lat=38, lon=23, depth=5,
                                 station="T01")
    with pytest.raises(InputError, match="--magnitude 12"):
        generate_from_checkpoint(cvae_run, out=tmp_path / "big", magnitude=12, lat=38, lon=23, depth=5, station="T01")
    with pytest.raises(InputError, match="--depth 900"):
        generate_from_checkpoint(cvae_run, out=tmp_path / "deep", magnitude=2, lat=38, lon=23, depth=900,
                                 station="T01")
    with pytest.raises(InputError, match="config.json"):
        generate_from_checkpoint(tmp_path, out=tmp_path / "m", magnitude=2, lat=38, lon=23, depth=5, station="T01")
    ae = tmp_path / "ae"
    ae.mkdir()
    config = json.loads((cvae_run / "config.json").read_text())
    config["model"]["name"] = "spectral_ae"
    (ae / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="spectral_cvae"):
        generate_from_checkpoint(ae, out=tmp_path / "o", magnitude=2, lat=38, lon=23, depth=5, station="T01")


def test_record_index_takes_rows_and_trace_names():
    names = ["A.X", "B.Y", "A.X", "C.Z"]
    assert record_index("3", names, "d") == 3
    assert record_index("B.Y", names, "d") == 1
    with pytest.raises(InputError, match="row 4 outside its 4 records"):
        record_index("4", names, "d")
    with pytest.raises(InputError, match="names rows 0, 2"):
        record_index("A.X", names, "d")
    with pytest.raises(InputError, match="no record has trace name 'Q'"):
        record_index("Q", names, "d")


def test_latent_path_runs_from_one_reconstruction_to_the_other(cvae_run, tmp_path):
    """The path's ends decode the two records' own codes and conditions, so they are the records'
    reconstructions; the points between differ from both. The command draws it; eval draws the path
    between the held-out records of lowest and highest magnitude."""
    _, task, state, _ = restore_trained(cvae_run)
    try:
        params, model_state = jax.device_get(state.params), jax.device_get(state.model_state)
        pick = {k: task.data.eval[k][[0, 2]] for k in ("x", "cond", "station_index")}
        weights, decoded = latent_path(task.model, {"params": params, **model_state}, pick, 5)
        recon = task.reconstruct(params, model_state, pick)
        magnitudes, names = task.data.eval["magnitude"], task.data.eval["trace_name"]
    finally:
        task.close()
    np.testing.assert_allclose(weights, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(decoded[[0, -1]], recon, atol=1e-5)
    assert np.abs(decoded[2] - recon[0]).max() > 1e-3 and np.abs(decoded[2] - recon[1]).max() > 1e-3

    out = tmp_path / "interp.png"
    assert cli_main(["interpolate", "--workdir", str(cvae_run), "--records", "0", "2", "--steps", "4",
                     "--out", str(out)]) in (0, None)
    assert out.stat().st_size > 10_000
    by_name = tmp_path / "interp_by_name.png"   # the same two records named by their traces
    assert cli_main(["interpolate", "--workdir", str(cvae_run), "--records", str(names[0]), str(names[2]),
                     "--steps", "4", "--out", str(by_name)]) in (0, None)
    np.testing.assert_array_equal(plt_image.imread(by_name), plt_image.imread(out))
    with pytest.raises(InputError, match="evaluation records"):
        interpolate_latent(cvae_run, None, 0, 999, 4, tmp_path / "bad.png")
    with pytest.raises(InputError, match="no record has trace name 'XX.NONE'"):
        interpolate_latent(cvae_run, None, 0, "XX.NONE", 4, tmp_path / "bad.png")
    with pytest.raises(InputError, match="steps"):
        interpolate_latent(cvae_run, None, 0, 1, 1, tmp_path / "short.png")

    report_dir = tmp_path / "eval"
    evaluate(cvae_run, out_dir=report_dir)
    entry = json.loads((report_dir / "spectral_report.json").read_text())["interpolation"]
    assert entry["record_a"] == str(names[np.argmin(magnitudes)])
    assert entry["record_b"] == str(names[np.argmax(magnitudes)])
    assert (report_dir / entry["figure"]).stat().st_size > 10_000


def test_generated_peak_is_the_predicted_log_scale(cvae_run):
    """The decoded spectrogram is renormalised to [0, 1] like every input, so the loudest generated bin
    is exactly expm1 of the CVAE's predicted log1p maximum: amplitudes follow magnitude and distance
    as far as the scale head does (a raw blurred decode peaks near 0.5 and would halve the trend)."""
    _, task, state, _ = restore_trained(cvae_run)
    params, model_state = jax.device_get(state.params), jax.device_get(state.model_state)
    mags, lats = np.array([1.5, 3.5]), np.array([38.1, 37.8])
    cond = task.data.condition_vector(mags, lats, lats * 0 + 23.1, np.array([5.0, 12.0]), ["T01", "T02"])
    station = task.data.station_indices(["T01", "T02"])
    x, mag, _ = task.generate(params, model_state, cond, station, seed=2, griffin_lim_iters=1)
    log_scale = np.asarray(task.model.apply({"params": params, **model_state}, cond, station, method="log_scale"))
    real = task.data.mask[..., 0] > 0
    assert np.allclose(x[:, real].max(axis=1), 1.0) and np.allclose(x[:, real].min(axis=1), 0.0)
    floor = np.median(task.data.train["log_scale"][:, 0], axis=0)   # task.generation_floor = "train_median"
    np.testing.assert_allclose(np.log1p(mag.max(axis=(2, 3))), np.maximum(log_scale[:, 1], floor),
                               rtol=1e-5, atol=1e-6)


def test_centroid_stage_trends_measure_each_step_of_generation(cvae_run):
    """The held-out stage is the centroid of the records' own magnitudes, fitted jointly on magnitude
    and log10 distance; toy records are one per event, so no within-event slope exists (NaN)."""
    result = centroid_stage_trends(cvae_run, split="train", generation_prior="standard")
    assert list(result["stages"]) == list(CENTROID_STAGES)
    _, task, _, _ = restore_trained(cvae_run)
    data, spec = task.data.train, task.data.spec
    centroid = spectral_centroid(to_magnitudes(data["x"], data["log_scale"], spec), spec.axes()[0])
    design = np.column_stack([np.ones(len(centroid)), data["magnitude"], np.log10(data["distance_km"])])
    coef = np.linalg.lstsq(design, centroid, rcond=None)[0]
    held = result["stages"]["held_out"]
    np.testing.assert_allclose([held["magnitude"], held["log10_distance"], held["mean_hz"]],
                               [coef[1], coef[2], centroid.mean()], rtol=1e-6)
    assert result["records"] == result["events"] == len(centroid)
    assert np.isnan(held["within_event_log10_distance"])
    for stage in CENTROID_STAGES:
        assert 0 < result["stages"][stage]["mean_hz"] < spec.sampling_rate / 2
    with pytest.raises(InputError, match="split"):
        centroid_stage_trends(cvae_run, split="dev")
    with pytest.raises(InputError, match="generation_prior"):
        centroid_stage_trends(cvae_run, generation_prior="uniform")
