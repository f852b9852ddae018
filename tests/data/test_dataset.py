"""SeisBench-format datasets: reading the shipped SeisBench examples, writing, round trips."""

import h5py
import numpy as np
import pandas as pd
import pytest

from seisjax.cli import main
from seisjax.data.dataset import Dataset, DatasetWriter, copy_dataset, describe, parse_trace_name
from seisjax.errors import InputError


def _direct_read(waveform_file, trace_name):
    """Read one trace by SeisBench's rules straight from h5py (independent of Dataset)."""
    bucket, index, rest = trace_name.split("$")[0], int(trace_name.split("$")[1].split(",")[0]), \
        trace_name.split(",")[1:]
    with h5py.File(waveform_file, "r") as f:
        array = f["data"][bucket][index]
    limits = [int(s.split(":")[1]) for s in rest]
    return array[: limits[0], : limits[1]]


def test_parse_trace_name():
    assert parse_trace_name("bucket0$12,:3,:1200") == ("bucket0", 12, (slice(None, 3), slice(None, 1200)))
    assert parse_trace_name("plain_trace") == ("plain_trace", None, ())


def test_reads_seisbench_dummy(shared_data):
    ds = Dataset(shared_data / "seisbench_dummy" / "dummydataset")
    assert len(ds) == 100
    assert ds.component_order == "ZNE"
    assert ds.sampling_rate == 20.0
    assert set(ds.metadata["split"]) == {"train", "dev", "test"}
    for row in (0, 37, 99):
        name = ds.metadata["trace_name"].iat[row]
        expected = _direct_read(ds.path / "waveforms.hdf5", name)
        np.testing.assert_array_equal(ds.get_waveforms(row), expected)
    batch = ds.get_waveforms([99, 0, 37])
    assert batch.shape == (3, 3, 1200)
    np.testing.assert_array_equal(batch[1], ds.get_waveforms(0))
    ds.close()


def test_reads_chunked_dummy(shared_data):
    ds = Dataset(shared_data / "seisbench_dummy" / "chunkeddummydataset")
    assert len(ds) == 200
    assert list(ds.metadata["trace_chunk"].unique()) == ["0", "1"]
    row = int(np.flatnonzero(ds.metadata["trace_chunk"] == "1")[5])
    expected = _direct_read(ds.path / "waveforms1.hdf5", ds.metadata["trace_name"].iat[row])
    np.testing.assert_array_equal(ds.get_waveforms(row), expected)
    # The same trace name exists in both chunks: the chunk decides which file is read.
    row0 = int(np.flatnonzero(ds.metadata["trace_name"] == ds.metadata["trace_name"].iat[row])[0])
    assert row0 != row and not np.array_equal(ds.get_waveforms(row0), ds.get_waveforms(row))


def test_round_trip_is_bit_exact(shared_data, tmp_path):
    src = Dataset(shared_data / "seisbench_dummy" / "dummydataset")
    out = copy_dataset(src, tmp_path / "copy", data_format_attrs={"unit": "counts"}, bucket_size=40)
    back = Dataset(out)
    assert len(back) == len(src)
    assert back.component_order == "ZNE" and back.sampling_rate == 20.0
    assert back.data_format["unit"] == "counts"
    np.testing.assert_array_equal(back.get_waveforms(np.arange(100)), src.get_waveforms(np.arange(100)))
    assert back.get_waveforms(0).dtype == src.get_waveforms(0).dtype
    # 100 traces with buckets of 40 rows: three buckets, named by SeisBench's rules.
    assert back.metadata["trace_name"].iat[99] == "bucket2$19,:3,:1200"
    np.testing.assert_array_equal(_direct_read(out / "waveforms.hdf5", "bucket2$19,:3,:1200"), src.get_waveforms(99))
    for column in ("source_magnitude", "source_latitude_deg", "split", "station_code", "trace_start_time"):
        pd.testing.assert_series_equal(back.metadata[column], src.metadata[column], check_dtype=False)
    assert (back.metadata["trace_name_original"] == src.metadata["trace_name_original"]).all()


def test_chunked_writing_and_mixed_lengths(tmp_path):
    rng = np.random.default_rng(0)
    traces = [rng.normal(size=(3, n)).astype(np.float32) for n in (50, 80, 50, 80, 30)]
    for chunk, part in (("a", traces[:3]), ("b", traces[3:])):
        with DatasetWriter(tmp_path, chunk=chunk, sampling_rate=100.0) as w:
            for i, t in enumerate(part):
                w.add(t, {"station_code": f"S{chunk}{i}", "split": "train" if i else "test"})
    assert (tmp_path / "chunks").read_text().split() == ["a", "b"]
    ds = Dataset(tmp_path)
    assert len(ds) == 5
    padded = ds.get_waveforms(np.arange(5))
    assert padded.shape == (5, 3, 80)
    for k, t in enumerate(traces):
        np.testing.assert_array_equal(padded[k, :, : t.shape[1]], t)
        assert not padded[k, :, t.shape[1]:].any()
    assert [t.shape[1] for t in ds.get_waveforms(np.arange(5), pad=False)] == [50, 80, 50, 80, 30]
    assert len(ds.split("test")) == 2
    np.testing.assert_array_equal(ds.split("test").get_waveforms(1), traces[3])


def test_wc_storage_reads_as_cw(tmp_path):
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    with DatasetWriter(tmp_path, dimension_order="WC") as w:
        name = w.add(x, {})
    assert name == "bucket0$0,:4,:3"
    with h5py.File(tmp_path / "waveforms.hdf5") as f:
        assert f["data"]["bucket0"].shape == (1, 4, 3)
    np.testing.assert_array_equal(Dataset(tmp_path).get_waveforms(0), x)


def test_selection_by_metadata(shared_data):
    ds = Dataset(shared_data / "seisbench_dummy" / "dummydataset")
    big = ds.select("source_magnitude > 2.5")
    mags = ds.metadata["source_magnitude"]
    assert len(big) == int((mags > 2.5).sum()) > 0
    first = int(np.flatnonzero(mags > 2.5)[0])
    np.testing.assert_array_equal(big.get_waveforms(0), ds.get_waveforms(first))
    assert len(ds.select(mags.to_numpy() < 2)) == int((mags < 2).sum())
    assert len(ds.select([3, 1])) == 2 and ds.select([3, 1]).metadata["trace_name"].iat[1] == ds.metadata["trace_name"].iat[1]
    with pytest.raises(InputError, match="bad selection"):
        ds.select("no_such_column > 1")


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Dataset(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not a dataset"):
        Dataset(tmp_path)
    with DatasetWriter(tmp_path / "d", component_order="Z") as w:
        w.add(np.zeros((1, 10)), {"station_code": "A"})
    with pytest.raises(InputError, match="exists there already"):
        DatasetWriter(tmp_path / "d")
    with pytest.raises(InputError, match="2 components"):
        DatasetWriter(tmp_path / "e", component_order="Z").add(np.zeros((2, 10)))
    meta = pd.read_csv(tmp_path / "d" / "metadata.csv")
    meta.loc[0, "trace_name"] = "bucket7$0,:1,:10"
    meta.to_csv(tmp_path / "d" / "metadata.csv", index=False)
    with pytest.raises(InputError, match=r"waveforms.hdf5: trace 'bucket7\$0,:1,:10' \(row 0\): no array data/bucket7"):
        Dataset(tmp_path / "d").get_waveforms(0)
    meta.drop(columns=["trace_name"]).to_csv(tmp_path / "d" / "metadata.csv", index=False)
    with pytest.raises(InputError, match="no 'trace_name' column"):
        Dataset(tmp_path / "d")
    (tmp_path / "d" / "waveforms.hdf5").write_bytes(b"not hdf5 at all")
    meta.to_csv(tmp_path / "d" / "metadata.csv", index=False)
    with pytest.raises(InputError, match="cannot open as HDF5"):
        Dataset(tmp_path / "d")


def test_describe_and_cli(shared_data, tmp_path, capsys):
    summary = describe(shared_data / "seisbench_dummy" / "chunkeddummydataset", figure=tmp_path / "f.png")
    assert summary["traces"] == 200 and summary["chunks"] == ["0", "1"]
    assert summary["sampling_rates_hz"] == {"20": 200}
    assert summary["splits"] == {"dev": 20, "test": 60, "train": 120}
    ds = Dataset(shared_data / "seisbench_dummy" / "chunkeddummydataset")
    all_z = np.concatenate([ds.get_waveforms(np.arange(i, min(i + 50, 200)))[:, 0] for i in range(0, 200, 50)])
    assert summary["value_ranges"]["Z"]["max"] == pytest.approx(all_z.max())
    assert (tmp_path / "f.png").stat().st_size > 10_000
    assert main(["data", "info", str(shared_data / "seisbench_dummy" / "dummydataset"),
                 "--figure", str(tmp_path / "g.png")]) == 0
    out = capsys.readouterr().out
    assert "traces             100" in out and "20 Hz x 100" in out
    assert main(["data", "info", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_similar_lengths_share_a_padded_bucket(tmp_path):
    """Records that differ by a few samples must not each open a bucket (memory would grow with the
    number of distinct lengths); they share one, zero-padded, and read back at their own length."""
    rng = np.random.default_rng(1)
    traces = [rng.normal(size=(3, n)) for n in (100, 103, 101, 5000)]
    with DatasetWriter(tmp_path, flush_every=2) as w:
        names = [w.add(t, {}) for t in traces]
    assert names[:3] == ["bucket0$0,:3,:100", "bucket0$1,:3,:103", "bucket0$2,:3,:101"]
    assert names[3] == "bucket1$0,:3,:5000"
    with h5py.File(tmp_path / "waveforms.hdf5") as f:
        assert f["data"]["bucket0"].shape == (3, 3, 103)
        assert not f["data"]["bucket0"][0, :, 100:].any()
    back = Dataset(tmp_path).get_waveforms(np.arange(4), pad=False)
    for t, b in zip(traces, back):
        np.testing.assert_array_equal(t, b)
