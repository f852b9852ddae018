"""Host batch iterators: order, sharding, resumable position, prefetch errors and shutdown."""

import json
import threading
import time

import jax
import numpy as np
import pandas as pd
import pytest

from seisjax.data.batches import ArrayBatchIterator, BatchError, BatchIterator
from seisjax.data.dataset import Dataset, DatasetWriter
from seisjax.errors import InputError

N_TRACES = 43  # prime, so batches of 4 leave a remainder and epochs do not line up with buckets


def _trace(trace_id: int, samples: int) -> np.ndarray:
    """Random numbers with the trace's id in sample 0 of every component, so a batch row names its
    trace."""
    wave = np.random.default_rng(trace_id).normal(size=(3, samples)).astype(np.float32)
    wave[:, 0] = trace_id
    return wave


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    """43 traces in small buckets; every fifth trace is shorter, so batches need zero padding and
    traces of one batch come from several buckets."""
    path = tmp_path_factory.mktemp("batches") / "ds"
    with DatasetWriter(path, component_order="ZNE", sampling_rate=100.0, bucket_size=8) as writer:
        for i in range(N_TRACES):
            writer.add(_trace(i, 40 if i % 5 == 0 else 60), {"source_id": f"ev{i}", "split": "train"})
    return path


@pytest.fixture
def dataset(dataset_path):
    with Dataset(dataset_path) as ds:
        yield ds


def with_ids(waveforms, metadata):
    return {"waveforms": waveforms, "id": waveforms[:, 0, 0].astype(np.int64),
            "row": metadata.index.to_numpy()}


def fixed_width(waveforms, metadata):
    """Like a training transform, brings every trace to one length, so shapes do not depend on which
    traces a process's share happens to hold (raw reads are padded to the share's longest trace)."""
    fixed = np.zeros((len(waveforms), 3, 60), dtype=waveforms.dtype)
    fixed[:, :, :waveforms.shape[2]] = waveforms[:, :, :60]
    return with_ids(fixed, metadata)


def take(iterator, count):
    return [next(iterator) for _ in range(count)]


def ids(batches):
    return [b["id"].tolist() for b in batches]


def assert_same_batches(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype
            np.testing.assert_array_equal(a[key], b[key])


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "seisjax-batch-prefetch"]


@pytest.fixture(autouse=True)
def no_thread_left_behind():
    yield
    deadline = time.monotonic() + 5
    while prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not prefetch_threads(), "a test left a prefetch thread running"


# ----------------------------------------------------------------------------- order and content
def test_batches_follow_the_documented_order_and_hold_the_right_traces(dataset):
    """Batch k of epoch e holds, in order, rows k*B..(k+1)*B of default_rng([seed, e]).permutation(n),
    and each row is that trace exactly as Dataset reads it, zero-padded to the batch's longest trace."""
    seed, batch = 11, 6
    with BatchIterator(dataset, global_batch_size=batch, seed=seed, transform=with_ids,
                       process_index=0, process_count=1, num_epochs=2) as iterator:
        got = list(iterator)
    per_epoch = N_TRACES // batch
    assert len(got) == 2 * per_epoch
    for k, b in enumerate(got):
        epoch, index = divmod(k, per_epoch)
        expected = np.random.default_rng([seed, epoch]).permutation(N_TRACES)[index * batch:(index + 1) * batch]
        np.testing.assert_array_equal(b["id"], expected)
        np.testing.assert_array_equal(b["row"], expected)
        width = 40 if all(i % 5 == 0 for i in expected) else 60
        assert b["waveforms"].shape == (batch, 3, width)
        for row, trace_id in zip(b["waveforms"], expected):
            trace = dataset.get_waveforms(int(trace_id))
            np.testing.assert_array_equal(row[:, :trace.shape[1]], trace)
            assert not row[:, trace.shape[1]:].any()


def test_same_seed_same_batches_other_seed_other_batches(dataset):
    def run(seed, prefetch):
        with BatchIterator(dataset, global_batch_size=4, seed=seed, transform=with_ids, prefetch=prefetch,
                           process_index=0, process_count=1) as iterator:
            return take(iterator, 15)  # crosses into the second epoch (10 batches per epoch)

    first = run(3, prefetch=2)
    assert_same_batches(run(3, prefetch=0), first)
    assert_same_batches(run(3, prefetch=2), first)
    other = run(4, prefetch=2)
    assert ids(other) != ids(first)
    # Epochs differ from each other too: a new permutation, not a replay.
    assert ids(first)[10:15] != ids(first)[0:5]


def test_each_epoch_visits_every_trace_once(dataset):
    with BatchIterator(dataset, global_batch_size=4, seed=0, transform=with_ids, drop_remainder=False,
                       num_epochs=3, process_index=0, process_count=1) as iterator:
        assert iterator.steps_per_epoch == 11
        epochs = {}
        for _ in range(3 * 11):
            epoch = iterator.epoch
            epochs.setdefault(epoch, []).append(next(iterator)["id"])
        with pytest.raises(StopIteration):
            next(iterator)
    assert sorted(epochs) == [0, 1, 2]
    for batches in epochs.values():
        assert [len(b) for b in batches] == [4] * 10 + [3]
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(N_TRACES))
    assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1]))


def test_drop_remainder_keeps_full_batches_without_repeats(dataset):
    with BatchIterator(dataset, global_batch_size=8, seed=5, transform=with_ids, num_epochs=1,
                       process_index=0, process_count=1) as iterator:
        got = np.concatenate([b["id"] for b in iterator])
    assert len(got) == (N_TRACES // 8) * 8
    assert len(np.unique(got)) == len(got)


def test_unshuffled_order_is_storage_order(dataset):
    with BatchIterator(dataset, global_batch_size=5, seed=0, shuffle=False, transform=with_ids,
                       num_epochs=1, drop_remainder=False, process_index=0, process_count=1) as iterator:
        np.testing.assert_array_equal(np.concatenate([b["id"] for b in iterator]), np.arange(N_TRACES))


# ----------------------------------------------------------------------------- sharding
@pytest.mark.parametrize("drop_remainder", [True, False])
def test_union_over_processes_equals_single_process_batch(dataset, drop_remainder):
    kwargs = dict(global_batch_size=6, seed=9, transform=fixed_width, num_epochs=2, drop_remainder=drop_remainder)
    with BatchIterator(dataset, process_index=0, process_count=1, **kwargs) as single:
        whole = list(single)
    shares = []
    for process in range(2):
        with BatchIterator(dataset, process_index=process, process_count=2, **kwargs) as iterator:
            assert iterator.local_batch_size == 3
            shares.append(list(iterator))
    assert len(shares[0]) == len(shares[1]) == len(whole)
    for k, batch in enumerate(whole):
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([shares[0][k][key], shares[1][k][key]]), batch[key])
        assert not set(shares[0][k]["id"]) & set(shares[1][k]["id"])
    if not drop_remainder:  # 43 = 7 * 6 + 1: the last batch has one row, which goes to process 0
        assert [len(shares[p][7]["id"]) for p in range(2)] == [1, 0]
        assert shares[1][7]["waveforms"].shape == (0, 3, 60)


def test_array_iterator_shares_order_and_sharding_with_dataset_iterator(dataset):
    arrays = {"id": np.arange(N_TRACES), "double": 2.0 * np.arange(N_TRACES)}
    for process in range(3):
        kwargs = dict(global_batch_size=6, seed=2, num_epochs=2, process_index=process, process_count=3)
        with BatchIterator(dataset, transform=with_ids, **kwargs) as on_disk, \
                ArrayBatchIterator(arrays, **kwargs) as in_memory:
            disk_batches, memory_batches = list(on_disk), list(in_memory)
        assert ids(memory_batches) == ids(disk_batches)
        for b in memory_batches:
            np.testing.assert_array_equal(b["double"], 2.0 * b["id"])


def test_process_defaults_come_from_jax():
    with ArrayBatchIterator({"x": np.arange(8)}, global_batch_size=jax.process_count() * 2, seed=0) as iterator:
        assert iterator.schedule.process_index == jax.process_index()
        assert iterator.schedule.process_count == jax.process_count()


# ----------------------------------------------------------------------------- position as state
def test_resume_from_state_across_an_epoch_boundary_with_prefetch(dataset):
    kwargs = dict(global_batch_size=4, seed=21, transform=with_ids, prefetch=3, process_index=0,
                  process_count=1)
    with BatchIterator(dataset, **kwargs) as iterator:  # 10 batches per epoch
        take(iterator, 7)
        time.sleep(0.05)  # let the thread read ahead: the state must still be the consumer's
        state = json.loads(json.dumps(iterator.state()))
        assert (state["seed"], state["epoch"], state["index"]) == (21, 0, 7)
        uninterrupted = take(iterator, 5)
        assert iterator.epoch == 1 and iterator.state()["index"] == 2
    with BatchIterator(dataset, start_state=state, **kwargs) as resumed:
        assert_same_batches(take(resumed, 5), uninterrupted)
    with BatchIterator(dataset, **kwargs) as rewound:  # restore() on a running iterator too
        take(rewound, 9)
        rewound.restore(state)
        assert_same_batches(take(rewound, 5), uninterrupted)


def test_array_iterator_resumes_from_state_with_its_transform():
    arrays = {"x": np.arange(30.0), "label": np.arange(30) % 3}
    kwargs = dict(global_batch_size=4, seed=6, prefetch=2, process_index=0, process_count=1,
                  transform=lambda batch: {"x2": 2 * batch["x"], "label": batch["label"]})
    with ArrayBatchIterator(arrays, **kwargs) as iterator:  # 7 batches per epoch
        take(iterator, 5)
        state = iterator.state()
        uninterrupted = take(iterator, 6)
    with ArrayBatchIterator(arrays, start_state=state, **kwargs) as resumed:
        assert_same_batches(take(resumed, 6), uninterrupted)
    for b in uninterrupted:
        np.testing.assert_array_equal(b["label"], (b["x2"] / 2).astype(int) % 3)


def test_state_at_the_end_of_an_epoch_resumes_in_the_next(dataset):
    kwargs = dict(global_batch_size=4, seed=1, transform=with_ids, process_index=0, process_count=1)
    with BatchIterator(dataset, **kwargs) as iterator:
        take(iterator, 10)
        state = iterator.state()
        assert (state["epoch"], state["index"]) == (1, 0)
        following = take(iterator, 2)
    end_of_epoch = dict(state, epoch=0, index=10)  # the same position, written the other way
    with BatchIterator(dataset, start_state=end_of_epoch, **kwargs) as resumed:
        assert resumed.epoch == 1
        assert_same_batches(take(resumed, 2), following)


def test_state_is_global_so_a_resume_may_change_process_count(dataset):
    kwargs = dict(global_batch_size=4, seed=8, transform=with_ids)
    with BatchIterator(dataset, process_index=0, process_count=1, **kwargs) as single:
        take(single, 3)
        state = single.state()
        whole = take(single, 2)
    for process in range(2):
        with BatchIterator(dataset, process_index=process, process_count=2, start_state=state, **kwargs) as part:
            assert ids(take(part, 2)) == [b["id"][process * 2:(process + 1) * 2].tolist() for b in whole]


def test_state_from_another_run_is_refused(dataset):
    with BatchIterator(dataset, global_batch_size=4, seed=1, process_index=0, process_count=1) as iterator:
        state = iterator.state()
        with pytest.raises(InputError, match="seed=2"):
            iterator.restore(dict(state, seed=2))
        with pytest.raises(InputError, match="global_batch_size=8"):
            iterator.restore(dict(state, global_batch_size=8))
        with pytest.raises(InputError, match="lacks index"):
            iterator.restore({"seed": 1, "epoch": 0})
        with pytest.raises(InputError, match="beyond"):
            iterator.restore(dict(state, index=11))


# ----------------------------------------------------------------------------- errors
def failing_on(bad_id):
    def transform(waveforms, metadata):
        if np.any(waveforms[:, 0, 0] == bad_id):
            raise ValueError(f"cannot normalise trace with id {bad_id}")
        return with_ids(waveforms, metadata)

    return transform


@pytest.mark.parametrize("prefetch", [0, 2])
def test_transform_error_surfaces_in_the_consumer_naming_the_trace(dataset, prefetch):
    seed, batch, bad = 4, 4, 17
    order = np.random.default_rng([seed, 0]).permutation(N_TRACES)
    failing_batch = int(np.flatnonzero(order == bad)[0]) // batch
    with BatchIterator(dataset, global_batch_size=batch, seed=seed, transform=failing_on(bad),
                       prefetch=prefetch, process_index=0, process_count=1) as iterator:
        delivered = take(iterator, failing_batch)
        assert bad not in np.concatenate([b["id"] for b in delivered])
        with pytest.raises(BatchError) as info:
            next(iterator)
        # The position still points at the failed batch, so a checkpoint would not skip it.
        assert iterator.state()["index"] == failing_batch
    message = str(info.value)
    trace_name = dataset.metadata["trace_name"].iat[bad]
    assert f"batch {failing_batch} of epoch 0" in message
    assert f"trace {bad} ({trace_name!r})" in message
    assert "transform failed" in message and "cannot normalise trace with id 17" in message
    assert isinstance(info.value.__cause__, ValueError)


def test_unreadable_trace_is_an_input_error_naming_it(dataset_path, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "waveforms.hdf5").symlink_to(dataset_path / "waveforms.hdf5")
    metadata = pd.read_csv(dataset_path / "metadata.csv")
    metadata.loc[5, "trace_name"] = "bucket0$99,:3,:60"  # bucket0 has 8 rows
    metadata.to_csv(broken / "metadata.csv", index=False)
    with Dataset(broken) as ds, BatchIterator(ds, global_batch_size=43, seed=0, prefetch=1,
                                              process_index=0, process_count=1) as iterator:
        with pytest.raises(InputError, match=r"reading failed for trace 5 \('bucket0\$99,:3,:60'\).*row 99"):
            next(iterator)


def test_transform_output_without_the_batch_axis_is_refused(dataset):
    def summary(waveforms, metadata):
        return {"mean": waveforms.mean(axis=0)}

    with BatchIterator(dataset, global_batch_size=4, seed=0, transform=summary, prefetch=0,
                       process_index=0, process_count=1) as iterator:
        with pytest.raises(InputError, match="'mean' has shape \\(3, 60\\)"):
            next(iterator)


def test_bad_arguments_are_refused(dataset):
    with pytest.raises(InputError, match="not divisible by process_count 3"):
        BatchIterator(dataset, global_batch_size=4, seed=0, process_index=0, process_count=3)
    with pytest.raises(InputError, match="process_index 2"):
        BatchIterator(dataset, global_batch_size=4, seed=0, process_index=2, process_count=2)
    with pytest.raises(InputError, match="only 43 examples"):
        BatchIterator(dataset, global_batch_size=64, seed=0, process_index=0, process_count=1)
    with pytest.raises(InputError, match="seed"):
        ArrayBatchIterator({"x": np.arange(8)}, global_batch_size=2, seed=-1, process_index=0, process_count=1)
    with pytest.raises(InputError, match=r"x: \(8,\), y: \(7,\)"):
        ArrayBatchIterator({"x": np.arange(8), "y": np.arange(7)}, global_batch_size=2, seed=0,
                           process_index=0, process_count=1)


# ----------------------------------------------------------------------------- shutdown
def test_close_and_garbage_collection_stop_the_prefetch_thread(dataset):
    iterator = BatchIterator(dataset, global_batch_size=4, seed=0, transform=with_ids, prefetch=2,
                             process_index=0, process_count=1)
    next(iterator)
    time.sleep(0.05)  # the queue is full and the thread waits to put the next batch
    assert len(prefetch_threads()) == 1
    iterator.close()
    assert not prefetch_threads()
    with pytest.raises(RuntimeError, match="closed"):
        next(iterator)

    dropped = ArrayBatchIterator({"x": np.arange(100)}, global_batch_size=2, seed=0, prefetch=2,
                                 process_index=0, process_count=1)
    next(dropped)
    assert len(prefetch_threads()) == 1
    del dropped  # no close(): the finaliser stops the thread
    deadline = time.monotonic() + 5
    while prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not prefetch_threads()


def test_finished_iterator_leaves_no_thread(dataset):
    iterator = ArrayBatchIterator({"x": np.arange(10)}, global_batch_size=5, seed=0, num_epochs=1,
                                  prefetch=4, process_index=0, process_count=1)
    assert len(list(iterator)) == 2
    assert not prefetch_threads()
