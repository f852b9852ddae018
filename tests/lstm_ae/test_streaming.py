"""LSTM autoencoder records streamed per batch (data.records_in_memory): the same batches, statistics,
problems and embeddings as in memory, without holding the records."""

import json
import re
import warnings

import h5py
import numpy as np
import pytest

from experiments import lstm_ae
from seisjax.errors import InputError
from seisjax.lstm_ae.task import LSTMAETask

FAST_COMPILE = True

NAN_ROW, SHORT_ROW, Z_ONLY_ROW = 3, 7, 9


def _config(path, **data):
    config = lstm_ae.get_config("toy")
    config.data.update(dict(source="dataset", path=str(path), sampling_rate=20.0, pre_p=10, end="s_coda",
                            s_coda_factor=1.0, min_length=16, max_length=64, bucket_lengths=(32, 64),
                            missing_components="zeros", length_schedule=((0, 24), (3, 64))))
    config.data.update(data)
    config.batch_size = 4
    config.eval.batch_size = 4
    return config


def _write_dataset(path, n=28, seed=0):
    """``n`` three-component traces at 100 or 40 Hz with P at 2 s and S 0.5-3 s later (records of
    30 to 64 samples at 20 Hz), split 22 train / 6 dev; one train row with a NaN, one too short (S
    right after P), one Z-only."""
    from seisjax.data.dataset import DatasetWriter

    rng = np.random.default_rng(seed)
    with DatasetWriter(path, component_order="ZNE", sampling_rate=None) as writer:
        for i in range(n):
            rate = 100.0 if i % 2 == 0 else 40.0
            wave = rng.normal(size=(3, int(rate * rng.uniform(9, 12)))).astype(np.float32)
            comps = "ZNE"
            if i == Z_ONLY_ROW:
                wave[1:] = 0.0
                comps = "Z"
            if i == NAN_ROW:
                wave[1, 40] = np.nan
            s_minus_p = 0.05 if i == SHORT_ROW else rng.uniform(0.5, 3.0)
            writer.add(wave, dict(trace_sampling_rate_hz=rate, trace_p_arrival_sample=2.0 * rate,
                                  trace_s_arrival_sample=(2.0 + s_minus_p) * rate, trace_components=comps,
                                  split="train" if i < 22 else "dev",
                                  path_distance_class="local" if i % 3 else "teleseismic",
                                  source_magnitude=1.0 + i / 8))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "ds"
    _write_dataset(path)
    return path


def _task(dataset, workdir, **data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the left-out rows are checked in their own test
        return LSTMAETask(_config(dataset, **data), workdir=workdir)


def _assert_batches_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_streamed_batches_and_statistics_equal_in_memory_ones_bit_for_bit(dataset, tmp_path):
    memory = _task(dataset, tmp_path / "mem", records_in_memory="true")
    stream = _task(dataset, tmp_path / "stream", records_in_memory="false")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        norm_m, norm_s = memory.data.normalisation(), stream.data.normalisation()
    for key in ("mean", "std"):
        np.testing.assert_array_equal(norm_m[key], norm_s[key])
    assert (json.loads((tmp_path / "mem" / "normalisation.json").read_text())
            == json.loads((tmp_path / "stream" / "normalisation.json").read_text()))
    recs_m, recs_s = memory.data.records("train"), stream.data.records("train")
    assert not recs_m.streamed and recs_s.streamed
    np.testing.assert_array_equal(recs_m.lengths, recs_s.lengths)
    assert len(np.unique(recs_s.lengths[recs_s.good()])) > 5  # several buckets and crops below

    it_m = memory.train_batches(process_index=0, process_count=1)
    it_s = stream.train_batches(process_index=0, process_count=1)
    assert it_m.steps_per_epoch == it_s.steps_per_epoch == 5  # 20 usable training records, batches of 4
    for step in range(7):  # steps 0-2 cropped to 24 samples by the curriculum, then whole; two epochs
        batch_m, batch_s = next(it_m), next(it_s)
        _assert_batches_equal(batch_m, batch_s)
        assert batch_s["length"].max() <= (24 if step < 3 else 64)
    assert np.any(batch_s["length"] > 32)  # a whole-record batch in the upper bucket was compared
    # exact resume: a fresh streamed iterator restored from the in-memory one's position continues it
    resumed = stream.train_batches(process_index=0, process_count=1)
    resumed.restore(json.loads(json.dumps(it_m.state())))
    for _ in range(4):
        _assert_batches_equal(next(resumed), next(it_m))
    for iterator in (it_m, it_s, resumed):   # stop their prefetch threads
        iterator.close()
    # evaluation batches (whole records, every usable dev record once)
    eval_m = list(memory.eval_batches(process_index=0, process_count=1))
    eval_s = list(stream.eval_batches(process_index=0, process_count=1))
    assert len(eval_m) == len(eval_s) == 2
    for batch_m, batch_s in zip(eval_m, eval_s):
        _assert_batches_equal(batch_m, batch_s)
    memory.close()
    stream.close()


def test_streamed_records_hold_no_samples(dataset, tmp_path):
    stream = _task(dataset, tmp_path / "stream", records_in_memory="false")
    recs = stream.data.records("train")
    assert recs.records is None and recs.streamed
    # what the Records object keeps is one value per row (length, problem, labels...): no samples
    arrays = {name: value for name, value in vars(recs).items() if isinstance(value, np.ndarray)}
    arrays.update({f"labels.{k}": np.asarray(v) for k, v in recs.labels.items()})
    assert arrays and all(a.shape == (len(recs),) for a in arrays.values()), {k: a.shape for k, a in arrays.items()}
    assert not any(isinstance(value, list) for value in vars(recs).values())
    # the moments were summed by the first pass: one float64 number per channel, not the records
    total, total_sq, count = recs.moments()
    assert total.shape == total_sq.shape == (3,) and count == recs.lengths.sum()
    # the in-memory mode keeps one float32 array per usable row, as long as its record
    memory = _task(dataset, tmp_path / "mem", records_in_memory="true").data.records("train")
    assert [len(r) for r in memory.records if r is not None] == memory.lengths[memory.good()].tolist()
    # the arrays read per batch are the first pass's arrays
    rows = recs.good()[:5]
    for a, b in zip(recs.get(rows), memory.get(rows)):
        np.testing.assert_array_equal(a, b)
    stream.close()


def test_auto_streams_above_the_memory_limit(dataset, tmp_path):
    task = _task(dataset, tmp_path / "auto")  # default: auto with 2048 MiB
    assert task.config.data.records_in_memory == "auto" and task.data.memory_limit_mb == 2048
    assert not task.data.records("train").streamed
    tiny = _task(dataset, tmp_path / "tiny", memory_limit_mb=1e-3)  # 22 rows x 64 x 3 x 4 B = 16.5 KiB
    assert tiny.data.records("train").streamed and tiny.data.records("eval").streamed
    # the rule: rows x max_length x channels x 4 bytes below the limit
    exactly_22 = 22 * 64 * 3 * 4 / 2 ** 20
    edge = _task(dataset, tmp_path / "edge", memory_limit_mb=exactly_22)
    assert not edge.data.keep_in_memory(22) and edge.data.keep_in_memory(21)
    assert edge.data.records("train").streamed and not edge.data.records("eval").streamed  # 22 and 6 rows
    # forced modes ignore the limit
    forced = _task(dataset, tmp_path / "f", records_in_memory="true", memory_limit_mb=1e-9)
    assert not forced.data.records("train").streamed
    assert _task(dataset, tmp_path / "t", records_in_memory="False").data.records("train").streamed
    for key, value in (("records_in_memory", "sometimes"), ("memory_limit_mb", -1.0), ("memory_limit_mb", 0.0)):
        with pytest.raises(InputError, match=f"data.{key}"):
            _task(dataset, tmp_path / "bad", **{key: value})


def test_bad_rows_reported_the_same_way_in_both_modes(dataset, tmp_path):
    messages = {}
    for mode in ("true", "false"):
        task = _task(dataset, tmp_path / mode, records_in_memory=mode)
        with pytest.warns(UserWarning, match="2 of 22 train record\\(s\\) left out") as caught:
            recs = task.data.records("train")
        messages[mode] = [str(w.message) for w in caught]
        assert recs.problems[NAN_ROW] == "non-finite samples" and recs.names[NAN_ROW] in messages[mode][0]
        assert recs.problems[SHORT_ROW].startswith("too short")
        assert recs.missing[Z_ONLY_ROW] == "NE" and (recs.problems == "").sum() == 20
        messages[mode].append(recs.problems.tolist())
        task.close()
    assert messages["true"] == messages["false"]


def test_streamed_batch_of_a_changed_dataset_names_the_trace(tmp_path):
    _write_dataset(tmp_path / "ds")
    task = _task(tmp_path / "ds", tmp_path / "run", records_in_memory="false")
    recs = task.data.records("train")
    iterator = task.train_batches(process_index=0, process_count=1)
    good = recs.good()
    victim = good[iterator.epoch_batches(0)[0][0]]  # a row of the first batch
    name = recs.names[victim]
    task.data.dataset.close()  # the dataset reopens its file on the next read
    bucket, rest = name.split("$")
    with h5py.File(tmp_path / "ds" / "waveforms.hdf5", "r+") as f:
        f[f"data/{bucket}"][int(rest.split(",")[0]), 0, 5] = np.nan  # the file changes under the job
    with pytest.raises(InputError, match=f"trace '{re.escape(name)}' \\(non-finite samples\\).*changed since the first pass"):
        next(iterator)
    task.close()


def test_embed_streamed_gives_the_in_memory_embeddings(dataset, tmp_path):
    """embed's per-record embeddings (here of an untrained model: the property is the data path)."""
    import jax

    embeddings = {}
    for mode in ("true", "false"):
        task = _task(dataset, tmp_path / mode, records_in_memory=mode)
        recs = task.data.prepare(task.data.dataset, progress=False)
        assert recs.streamed == (mode == "false")
        task.data.normalisation()
        batch = task.data.make_batch(recs, recs.good()[:4])
        variables = task.init_variables(jax.random.PRNGKey(0), batch)
        params = variables.pop("params")
        embeddings[mode] = task.embed_records(params, variables, recs, batch_size=8)
        task.close()
    np.testing.assert_array_equal(embeddings["true"], embeddings["false"])
    z = embeddings["false"]
    assert np.isnan(z[[NAN_ROW, SHORT_ROW]]).all() and np.isfinite(np.delete(z, [NAN_ROW, SHORT_ROW], 0)).all()
    assert len(np.unique(z[0:3], axis=0)) == 3  # distinct records, distinct embeddings
