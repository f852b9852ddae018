"""The conv AE's data: the toy split and its windows, a dataset's traces without a P pick left out
and named, a dataset that does not fit the config refused, and the in-memory cache's limit."""

import numpy as np
import pytest

from seisjax.config import load_config
from seisjax.conv_ae import data as conv_ae_data
from seisjax.conv_ae.data import ConvAEData, toy_waveforms
from seisjax.data.dataset import Dataset, DatasetWriter
from seisjax.data.windows import window_and_normalise
from seisjax.errors import InputError

CONFIG = "experiments/conv_ae.py:toy"


def test_toy_data_is_split_four_to_one_and_windowed_around_p():
    config = load_config(CONFIG)
    data = ConvAEData(config)
    (batch,) = data.eval_batches(process_index=0, process_count=1)
    waveforms, p = toy_waveforms(320, length=256, seed=0)
    np.testing.assert_array_equal(batch["x"], window_and_normalise(waveforms[256:], p[256:], window=256, pre_p=64))
    train = data.train_batches(process_index=0, process_count=1)
    assert train.steps_per_epoch == 256 // 32 and next(train)["x"].shape == (32, 256, 3)
    train.close()
    info = data.info()
    assert info["examples"] == 64 and info["fingerprint"] == ConvAEData(config).info()["fingerprint"]


def _write(path, *, components="ZNE", p_picks=(100.0, None, 120.0, 90.0)):
    rng = np.random.default_rng(0)
    with DatasetWriter(path, component_order=components, sampling_rate=50.0) as writer:
        for i, p in enumerate(p_picks):
            row = {"station_code": f"S{i}", "split": "train" if i < 3 else "dev"}
            if p is not None:
                row["trace_p_arrival_sample"] = p
            writer.add(rng.normal(size=(len(components), 400)).astype(np.float32), row)
    return path


def test_traces_without_a_p_pick_are_left_out_and_named(tmp_path):
    config = load_config(CONFIG, {"data.source": "dataset", "data.path": str(_write(tmp_path / "ds"))})
    with pytest.warns(UserWarning, match=r"1 trace\(s\) without trace_p_arrival_sample are left out") as caught:
        data = ConvAEData(config)
    assert list(data.dataset.metadata["station_code"]) == ["S0", "S2", "S3"]
    with Dataset(tmp_path / "ds") as ds:
        assert ds.metadata["trace_name"][1] in str(caught[0].message)
    (batch,) = data.eval_batches(process_index=0, process_count=1)
    assert batch["x"].shape == (1, 256, 3) and data.info()["split"] == "dev"
    data.close()


def test_a_dataset_that_does_not_fit_is_refused(tmp_path):
    one = _write(tmp_path / "z", components="Z", p_picks=(100.0,))
    with pytest.raises(InputError, match="has 1 components, the config expects 'ZNE'"):
        ConvAEData(load_config(CONFIG, {"data.source": "dataset", "data.path": str(one)}))
    no_picks = _write(tmp_path / "none", p_picks=(None, None))
    with pytest.raises(InputError, match="no trace_p_arrival_sample column"):
        ConvAEData(load_config(CONFIG, {"data.source": "dataset", "data.path": str(no_picks)}))
    with pytest.raises(InputError, match="data.source = 'nowhere'"):
        ConvAEData(load_config(CONFIG, {"data.source": "nowhere"}))
    data = ConvAEData(load_config(CONFIG, {"data.source": "dataset", "data.path": str(one), "data.components": "Z",
                                           "data.train_split": "test"}))
    with pytest.raises(InputError, match="no rows with split == 'test'"):
        data.train_batches(process_index=0, process_count=1)


def test_the_cache_refuses_more_than_its_limit(tmp_path, monkeypatch):
    config = load_config(CONFIG, {"data.source": "dataset", "data.path": str(_write(tmp_path / "ds")),
                                  "data.cache": True, "batch_size": 2})
    with pytest.warns(UserWarning):
        data = ConvAEData(config)   # two training traces with a P pick
    monkeypatch.setattr(conv_ae_data, "_CACHE_LIMIT_BYTES", 2 * 256 * 3 * 4 - 1)
    with pytest.raises(InputError, match="data.cache: the 2 windows would take"):
        data.train_batches(process_index=0, process_count=1)
    monkeypatch.setattr(conv_ae_data, "_CACHE_LIMIT_BYTES", 2 * 256 * 3 * 4)
    batches = data.train_batches(process_index=0, process_count=1)
    assert batches.num_examples == 2 and next(batches)["x"].shape == (2, 256, 3)
    batches.close()
