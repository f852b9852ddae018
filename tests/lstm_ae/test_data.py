"""LSTM autoencoder records: bucketed resumable batches, the length curriculum, records from a dataset
(cut, resampling, problems, missing components, normalisation)."""

import json

import numpy as np
import pytest
from scipy.signal import resample_poly

from seisjax.data.convert import convert_phasenet
from seisjax.data.dataset import Dataset
from seisjax.errors import InputError
from seisjax.lstm_ae.data import BucketBatchIterator
from seisjax.lstm_ae.task import LSTMAETask
from tests.lstm_ae.conftest import toy_config, write_records_dataset

FAST_COMPILE = True


def test_bucketed_batches_sorted_resumable_and_sharded():
    lengths = np.random.default_rng(1).integers(10, 500, size=203)
    make = lambda rows, glob, position: {"rows": rows, "glob": glob, "position": position}  # noqa: E731
    it = BucketBatchIterator(lengths, global_batch_size=8, seed=3, make_batch=make, chunk_batches=4)
    epoch = [next(it)["rows"] for _ in range(it.steps_per_epoch)]
    seen = np.concatenate(epoch)
    assert len(seen) == 25 * 8 == len(np.unique(seen))  # every record at most once, 3 left out
    # sorting within chunks of 4 batches: far less spread per batch than random batches
    spread = np.mean([np.ptp(lengths[b]) for b in epoch])
    random_spread = np.mean([np.ptp(lengths[b]) for b in np.random.default_rng(0).permutation(200).reshape(25, 8)])
    assert spread < 0.5 * random_spread
    # resume: a new iterator restored from the state after 7 batches continues identically
    it2 = BucketBatchIterator(lengths, global_batch_size=8, seed=3, make_batch=make, chunk_batches=4)
    for _ in range(7):
        next(it2)
    state = json.loads(json.dumps(it2.state()))
    it3 = BucketBatchIterator(lengths, global_batch_size=8, seed=3, make_batch=make, chunk_batches=4)
    it3.restore(state)
    for _ in range(30):  # across the epoch boundary
        np.testing.assert_array_equal(next(it3)["rows"], next(it2)["rows"])
    # two processes: their shares concatenate to the single-process batch; both see the global rows
    shares = [BucketBatchIterator(lengths, global_batch_size=8, seed=3, make_batch=make, chunk_batches=4,
                                  process_index=p, process_count=2) for p in range(2)]
    for b in epoch[:5]:
        parts = [next(s) for s in shares]
        np.testing.assert_array_equal(np.concatenate([p["rows"] for p in parts]), b)
        np.testing.assert_array_equal(parts[1]["glob"], b)
    with pytest.raises(InputError, match="global_batch_size"):
        it3.restore({**state, "global_batch_size": 16})


def test_prefetched_bucket_batches_equal_the_synchronous_ones():
    lengths = np.random.default_rng(2).integers(10, 500, size=100)
    make = lambda rows, glob, position: {"rows": rows, "position": position}  # noqa: E731
    sync = BucketBatchIterator(lengths, global_batch_size=8, seed=5, make_batch=make, num_epochs=2)
    expected = list(sync)
    assert [b["position"] for b in expected] == list(range(2 * sync.steps_per_epoch))
    ahead = BucketBatchIterator(lengths, global_batch_size=8, seed=5, make_batch=make, num_epochs=2, prefetch=3)
    got = [next(ahead) for _ in range(5)]
    state = ahead.state()  # the consumer's position, not the read-ahead thread's
    assert (state["epoch"], state["index"]) == (0, 5)
    got += list(ahead)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a["rows"], b["rows"])
        assert a["position"] == b["position"]
    resumed = BucketBatchIterator(lengths, global_batch_size=8, seed=5, make_batch=make, num_epochs=2, prefetch=2)
    next(resumed)
    resumed.restore(state)  # drops what it had read ahead
    np.testing.assert_array_equal(next(resumed)["rows"], expected[5]["rows"])
    resumed.close()

    def failing(rows, glob, position):
        if position == 3:
            raise InputError("trace X: unreadable")
        return {"position": position}

    broken = BucketBatchIterator(lengths, global_batch_size=8, seed=5, make_batch=failing, prefetch=2)
    assert [next(broken)["position"] for _ in range(3)] == [0, 1, 2]
    with pytest.raises(InputError, match="trace X"):
        next(broken)


def test_length_schedule_crops_training_records_and_resumes(tmp_path):
    """Curriculum: steps 0-2 see the first 24 samples of each record, later steps whole records."""
    config = toy_config(length_schedule=((0, 24), (3, 64)))
    task = LSTMAETask(config, workdir=tmp_path)
    train = task.data.records("train")
    norm = task.data.normalisation()
    it = task.train_batches(process_index=0, process_count=1)
    per_epoch = it.steps_per_epoch  # 4: the run below crosses an epoch
    for step in range(6):
        rows = it.epoch_batches(step // per_epoch)[step % per_epoch]
        batch = next(it)
        limit = 24 if step < 3 else 64
        np.testing.assert_array_equal(batch["length"], np.minimum(train.lengths[rows], limit))
        assert batch["bucket"][0] == (0 if step < 3 else task.data.bucket_index(int(train.lengths[rows].max())))
        for j, i in enumerate(rows):
            n = int(batch["length"][j])
            np.testing.assert_allclose(batch["x"][j, :n], (train.records[i][:n] - norm["mean"]) / norm["std"],
                                       rtol=1e-6)
            assert not batch["x"][j, n:].any()
    # a restored iterator knows its step (6: whole records); the limit switches at the schedule's steps
    again = task.train_batches(process_index=0, process_count=1)
    again.restore(it.state())
    it.close()   # their prefetch threads, which later tests in the same process would see
    again.close()
    assert again.position == 6 and task.data.length_limit(again.position) == 64
    assert task.data.length_limit(0) == 24 and task.data.length_limit(2) == 24 and task.data.length_limit(3) == 64
    for bad in (((0, 24), (0, 64)), ((0, 128),), ((-1, 24),)):
        with pytest.raises(InputError, match="length_schedule"):
            LSTMAETask(toy_config(length_schedule=bad), workdir=tmp_path / "bad")


def test_records_from_dataset_cut_resample_problems_and_normalisation(tmp_path):
    rows = write_records_dataset(tmp_path / "ds")
    config = toy_config(source="dataset", path=str(tmp_path / "ds"), sampling_rate=20.0, pre_p=10, end="s_coda",
                     s_coda_factor=1.0, min_length=16, max_length=64, bucket_lengths=(32, 64),
                     missing_components="zeros", record_scale="none")
    task = LSTMAETask(config, workdir=tmp_path / "run")
    recs = task.data.prepare(task.data.dataset, progress=False)
    assert recs.problems[3] == "non-finite samples"
    assert recs.problems[4].startswith("too short")
    assert recs.missing[5] == "NE" and recs.missing[6] == "NE" and recs.missing[0] == ""
    for i, (rate, npts, p, s) in enumerate(rows):
        if recs.problems[i]:
            continue
        p20, s20 = p * 20 / rate, s * 20 / rate  # P at 2 s, S at 3 s: end = S + (S - P) = 4 s
        expected = min(int(np.ceil(s20 + (s20 - p20))) - int(round(p20) - 10), 64)
        assert recs.lengths[i] == expected == 50
    # the record is the resampled trace from P - pre_p, demeaned (record_scale none)
    raw = task.data.dataset.get_waveforms(1)  # 40 Hz -> 20 Hz
    ref = resample_poly(raw.astype(np.float64), 1, 2, axis=-1)[:, 30:80].T
    np.testing.assert_allclose(recs.records[1], ref - ref.mean(0), atol=1e-5)
    # zero-filled components stay zero, and are flagged
    assert np.all(recs.records[5][:, 1:] == 0)
    # normalisation: numpy over the usable training records, stored and reused
    norm = task.data.normalisation()
    train = task.data.records("train")
    good = np.concatenate([train.records[i] for i in train.good()])
    np.testing.assert_allclose(norm["mean"], good.mean(0), atol=1e-6)
    np.testing.assert_allclose(norm["std"], good.std(0), rtol=1e-5)
    stored = json.loads((tmp_path / "run" / "normalisation.json").read_text())
    assert stored["records"] == len(train.good()) == 4  # rows 0, 1, 2, 5 (3: NaN, 4: too short)
    other = LSTMAETask(toy_config(source="dataset", path=str(tmp_path / "ds"), sampling_rate=20.0, pre_p=0,
                               max_length=64, bucket_lengths=(32, 64), missing_components="zeros"),
                       workdir=tmp_path / "run")
    np.testing.assert_array_equal(other.data.normalisation()["std"], norm["std"])  # read, not recomputed
    batch = task.data.make_batch(train, np.array([0, 5]))
    assert batch["x"].shape == (2, 64, 3) and batch["bucket"].tolist() == [1, 1]
    np.testing.assert_allclose(batch["x"][0, :50], (train.records[0] - norm["mean"]) / norm["std"], rtol=1e-5)
    assert np.all(batch["x"][1, :, 1:] == 0) and np.all(batch["x"][:, 50:] == 0)
    task.close()
    other.close()


def test_missing_components_error_names_the_traces(tmp_path):
    write_records_dataset(tmp_path / "ds")
    with pytest.raises(InputError, match="2 trace\\(s\\) lack.*trace_components"):
        LSTMAETask(toy_config(source="dataset", path=str(tmp_path / "ds"), missing_components="error"),
                   workdir=tmp_path / "run")
    with pytest.raises(InputError, match="component\\(s\\) X"):
        LSTMAETask(toy_config(source="dataset", path=str(tmp_path / "ds"), components="ZX"), workdir=tmp_path / "r2")
    # Z alone is present everywhere: accepted
    task = LSTMAETask(toy_config(source="dataset", path=str(tmp_path / "ds"), components="Z"), workdir=tmp_path / "r3")
    assert task.model_kwargs()["out_channels"] == 1
    task.close()


def test_phasenet_single_channel_records_explicit(shared_data, tmp_path):
    """Real PhaseNet records (some single-channel EHZ): refused by name, or zero-filled and flagged."""
    convert_phasenet(shared_data / "phasenet", tmp_path / "pn", progress=False)
    common = dict(source="dataset", path=str(tmp_path / "pn"), sampling_rate=20.0, pre_p=20, min_length=64,
                  max_length=512, bucket_lengths=(256, 512), end="record")
    with Dataset(tmp_path / "pn") as ds:
        present = ds.metadata["trace_components"].fillna("").astype(str).to_numpy()
    expected = np.array(["".join(c for c in "ZNE" if c not in p) for p in present])
    assert (expected != "").sum() >= 36  # the README's 36 single-channel records at least
    with pytest.raises(InputError, match=f"{int((expected != '').sum())} trace\\(s\\) lack"):
        LSTMAETask(toy_config(**common), workdir=tmp_path / "run")
    task = LSTMAETask(toy_config(**common, missing_components="zeros"), workdir=tmp_path / "run")
    recs = task.data.prepare(task.data.dataset, progress=False)
    np.testing.assert_array_equal(recs.missing.astype(str), expected)
    assert (recs.problems == "").all()
    single = expected == "NE"
    # 90 s at 100 Hz, P at sample 3000: cut at P - 1 s and cropped at 512 samples (25.6 s) at 20 Hz
    assert (recs.lengths == 512).all()
    assert all(np.all(recs.records[i][:, 1:] == 0) for i in np.flatnonzero(single))
    # Z alone: every record usable without any zero filling
    z_only = LSTMAETask(toy_config(**common, components="Z"), workdir=tmp_path / "run_z")
    assert (z_only.data.prepare(z_only.data.dataset, progress=False).problems == "").all()
    task.close()
    z_only.close()
