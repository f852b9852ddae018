"""resolve_dataset: synthetic data generated once and reused, a folder made with another config
refused, a STEAD folder converted once, runs made before ``data.synthetic``, missing folders."""

import h5py
import ml_collections
import numpy as np
import pandas as pd
import pytest

from seisjax.data.dataset import Dataset
from seisjax.data.resolve import resolve_dataset, synthetic_config
from seisjax.data.synthetic import scenario_config
from seisjax.errors import InputError
from tests.data.synthetic.conftest import LOCAL_SMALL

OVERRIDES = [f"{key}={value}" for key, value in LOCAL_SMALL.items()]


def _data(**fields) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"source": "synthetic", "path": "", **fields})


def _synthetic(seed=1, extra=()):
    return scenario_config("local", [*OVERRIDES, *extra], events=2, seed=seed)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A workdir whose data the resolver generated (the one generation of this module)."""
    path = tmp_path_factory.mktemp("run")
    resolve_dataset(_data(synthetic=_synthetic()), workdir=path)
    return path


def _stamp(folder):
    return {name: (folder / name).stat().st_mtime_ns for name in ("metadata.csv", "waveforms.hdf5", "truth.h5")}


def test_synthetic_data_is_generated_in_the_workdir_once_and_reused(workdir):
    folder = workdir / "data"
    assert len(Dataset(folder)) > 0 and (folder / "config.json").is_file()
    before = _stamp(folder)
    assert resolve_dataset(_data(synthetic=_synthetic()), workdir=workdir) == folder
    assert _stamp(folder) == before   # nothing written again


def test_synthetic_data_made_with_another_config_is_refused_naming_the_keys(workdir):
    other = _synthetic(seed=2, extra=["noise.snr=(1.0, 10.0)"])
    with pytest.raises(InputError, match=r"another config \(noise\.snr, seed differ") as err:
        resolve_dataset(_data(synthetic=other), workdir=workdir)
    assert str(workdir / "data") in str(err.value)
    with pytest.raises(InputError, match="another config"):   # data.path names the same folder
        resolve_dataset(_data(synthetic=other, path=str(workdir / "data")))


def test_a_dataset_the_generator_did_not_write_is_not_taken_for_synthetic_data(tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    (folder / "metadata.csv").write_text("trace_name\n")
    with pytest.raises(InputError, match="did not write.*data.source = 'dataset'"):
        resolve_dataset(_data(synthetic=_synthetic(), path=str(folder)))


def test_a_run_made_before_data_synthetic_resolves_to_the_same_scenario_config(workdir):
    old = _data(synthetic_events=2, synthetic_seed=1, synthetic_overrides=OVERRIDES)
    assert synthetic_config(old, scenario="local").to_dict() == _synthetic().to_dict()
    before = _stamp(workdir / "data")
    assert resolve_dataset(old, workdir=workdir, scenario="local") == workdir / "data"
    assert _stamp(workdir / "data") == before
    # the family's scenario decides what the old keys mean
    assert synthetic_config(_data(synthetic_events=3), scenario="teleseismic-p").to_dict() == \
        scenario_config("teleseismic-p", events=3, seed=0).to_dict()


def _stead_folder(path, n=3):
    """A STEAD folder in its original layout: E, N, Z arrays under data/, STEAD's column names."""
    path.mkdir()
    rng = np.random.default_rng(0)
    names = [f"ST{i}.XX_20200101{i:06d}_EV" for i in range(n)]
    with h5py.File(path / "waveforms.hdf5", "w") as h5:
        for name in names:
            h5.create_dataset(f"data/{name}", data=rng.standard_normal((6000, 3)).astype(np.float32))
    pd.DataFrame({"trace_name": names, "receiver_code": [f"ST{i}" for i in range(n)], "network_code": "XX",
                  "p_arrival_sample": 500.0, "s_arrival_sample": 900.0, "source_id": [f"ev{i}" for i in range(n)],
                  "snr_db": "[10.0 11.0 12.0]", "trace_category": "earthquake_local"}).to_csv(
        path / "metadata.csv", index=False)
    return names


def test_a_stead_folder_is_converted_once_into_the_workdir(tmp_path, capsys):
    source = tmp_path / "stead"
    names = _stead_folder(source)
    data = _data(source="dataset", path=str(source))
    out = resolve_dataset(data, workdir=tmp_path / "run")
    assert out == tmp_path / "run" / "data_stead"
    with Dataset(out) as ds:
        assert ds.component_order == "ZNE" and list(ds.metadata.trace_name_original) == names
        with h5py.File(source / "waveforms.hdf5", "r") as h5:
            np.testing.assert_array_equal(ds.get_waveforms(0), h5[f"data/{names[0]}"][()][:, ::-1].T)
    assert "converted the STEAD folder" in capsys.readouterr().out
    before = (out / "waveforms.hdf5").stat().st_mtime_ns
    assert resolve_dataset(data, workdir=tmp_path / "run") == out
    assert (out / "waveforms.hdf5").stat().st_mtime_ns == before
    assert "converted" not in capsys.readouterr().out
    with pytest.raises(InputError, match="STEAD folder.*needs a workdir"):
        resolve_dataset(data)


def test_missing_folders_and_bad_sections_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match=r"nope: no dataset there \(no such folder\)"):
        resolve_dataset(_data(source="dataset", path=str(tmp_path / "nope")))
    with pytest.raises(InputError, match=r"nope2: no dataset there"):
        resolve_dataset(_data(), data_path=tmp_path / "nope2")
    with pytest.raises(InputError, match="data.path is empty"):
        resolve_dataset(_data(source="dataset"))
    with pytest.raises(InputError, match="data.source = 'synthetic' writes its data in the workdir"):
        resolve_dataset(_data(synthetic=_synthetic()))
    with pytest.raises(InputError, match="data.source = 'stead'"):
        resolve_dataset(_data(source="stead"))
