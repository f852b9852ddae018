"""STEAD and PhaseNet converters: waveforms bit for bit (after the stated E,N,Z -> Z,N,E reordering),
metadata mapped to SeisBench names, single-channel and corrupt records handled."""

import csv
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from seisjax.data.convert import convert_phasenet, convert_stead
from seisjax.data.dataset import Dataset
from seisjax.errors import InputError


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_stead_folder_opened_as_a_dataset_names_the_converter(shared_data):
    """STEAD's original layout has no component order: every command that reads it as a dataset
    (cluster, embed, data info, training) stops with the conversion command, not with a missing
    component later on."""
    with pytest.raises(InputError, match="convert_stead.py"):
        Dataset(shared_data / "stead50")


def test_stead_waveforms_bit_for_bit_and_columns_mapped(shared_data, tmp_path):
    src = shared_data / "stead50"
    report = convert_stead(src, tmp_path / "out", progress=False)
    assert report.n_read == report.n_written == 50
    source = pd.read_csv(src / "metadata.csv")
    with Dataset(tmp_path / "out") as ds, h5py.File(src / "waveforms.hdf5", "r") as h5:
        meta = ds.metadata
        assert ds.component_order == "ZNE" and ds.sampling_rate == 100.0
        assert list(meta.trace_name_original) == list(source.trace_name)
        for i, name in enumerate(source.trace_name):
            enz = h5[f"earthquake/local/{name}"][()]
            w = ds.get_waveforms(i)
            assert w.dtype == enz.dtype == np.float32
            for row, column in zip(w, (2, 1, 0)):  # Z, N, E from STEAD's E, N, Z
                np.testing.assert_array_equal(row, enz[:, column])
        np.testing.assert_array_equal(meta.trace_p_arrival_sample, source.p_arrival_sample)
        np.testing.assert_array_equal(meta.trace_s_arrival_sample, source.s_arrival_sample)
        np.testing.assert_array_equal(meta.path_ep_distance_km, source.source_distance_km)
        np.testing.assert_array_equal(meta.path_back_azimuth_deg, source.back_azimuth_deg)
        np.testing.assert_array_equal(meta.station_latitude_deg, source.receiver_latitude)
        np.testing.assert_array_equal(meta.source_magnitude, source.source_magnitude)
        assert (meta.station_code.astype(str) == source.receiver_code.astype(str)).all()
        snr_db = np.array([np.array(s.strip("[]").split(), float) for s in source.snr_db])  # E, N, Z
        np.testing.assert_allclose(meta.trace_snr_Z, 10 ** (snr_db[:, 2] / 20), rtol=1e-12)
        np.testing.assert_allclose(meta.trace_snr_E, 10 ** (snr_db[:, 0] / 20), rtol=1e-12)
        # one split per event
        assert meta.groupby("source_id").split.nunique().max() == 1


def test_phasenet_bit_for_bit_with_single_channel_records_masked(shared_data, tmp_path):
    src = shared_data / "phasenet"
    table = pd.read_csv(src / "waveform.csv")
    report = convert_phasenet(src, tmp_path / "out", progress=False)
    assert report.n_written == len(table) == 154
    with Dataset(tmp_path / "out") as ds:
        meta = ds.metadata
        single = ~table.channels.str.contains("_")
        assert single.sum() == 39  # 36 EHZ + 3 SHZ
        assert list(meta.trace_components) == ["Z" if s else "ZNE" for s in single]
        for i, fname in enumerate(table.fname):
            with np.load(src / "waveform_train" / fname) as npz:
                data = npz["data"]
                assert meta.trace_p_arrival_sample[i] == int(npz["itp"])
                assert meta.trace_s_arrival_sample[i] == int(npz["its"])
            w = ds.get_waveforms(i)
            assert w.dtype == np.float64 and w.shape == (3, 9001)
            np.testing.assert_array_equal(w, data[:, [2, 1, 0]].T)
            if single[i]:
                assert not w[1:].any() and w[0].any()
    # the other policy: single-channel records are reported, not written
    report = convert_phasenet(src, tmp_path / "skip", single_channel="skip", progress=False)
    assert report.n_written == 115 and report.rejected_by_reason == {"single_channel": 39}
    assert len(_rows(tmp_path / "skip" / "rejected.csv")) == 39


def test_phasenet_corrupt_records_are_reported_and_the_rest_converted(shared_data, tmp_path):
    src = shared_data / "phasenet"
    table = pd.read_csv(src / "waveform.csv").iloc[:4].copy()
    wdir = tmp_path / "src" / "waveform_train"
    wdir.mkdir(parents=True)
    for fname in table.fname:
        shutil.copy(src / "waveform_train" / fname, wdir / fname)
    (wdir / table.fname[1]).write_bytes(b"not an npz file")
    with np.load(src / "waveform_train" / table.fname[2]) as npz:
        arrays = dict(npz)
    arrays["data"] = arrays["data"].copy()
    arrays["data"][10, 2] = np.nan
    np.savez(wdir / table.fname[2], **arrays)
    table.loc[3, "itp"] += 1  # the list disagrees with the npz
    table.to_csv(tmp_path / "src" / "waveform.csv", index=False)
    report = convert_phasenet(tmp_path / "src", tmp_path / "out", progress=False)
    assert report.n_read == 4 and report.n_written == 1
    reasons = {r["trace_id"]: r["reason"] for r in _rows(tmp_path / "out" / "rejected.csv")}
    assert reasons == {table.fname[1]: "unreadable", table.fname[2]: "nan_or_inf",
                       table.fname[3]: "inconsistent_picks"}
    assert Dataset(tmp_path / "out").metadata.trace_name_original.tolist() == [table.fname[0]]


def test_missing_inputs_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="waveforms.hdf5: no such file"):
        convert_stead(tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(InputError, match="waveform.csv: no such file"):
        convert_phasenet(tmp_path, tmp_path / "out", progress=False)
