"""Windows around P (seisjax.data.windows): the cut, demeaning and scaling by hand, bad traces named,
traces at other rates resampled onto the target grid around P, and chunked reading equal to one batch."""

import numpy as np
import pandas as pd
import pytest

from seisjax.data.dataset import Dataset, DatasetWriter
from seisjax.data.windows import dataset_p_windows, p_windows, window_and_normalise
from seisjax.errors import InputError


def test_window_and_normalise_by_hand():
    # two components, a ramp on the first and a constant 5 on the second (demeaned to zero)
    ramp = np.arange(20, dtype=np.float32)
    waveforms = np.stack([np.stack([ramp, np.full(20, 5.0, np.float32)])] * 3)
    waveforms[2, 1] = -2.0 * ramp
    # P at 7.4 (rounded to 7), at 1 (the window would start before the trace: clipped to 0) and at
    # 19 (clipped to the trace's end)
    out = window_and_normalise(waveforms, [7.4, 1, 19], window=6, pre_p=2)
    assert out.shape == (3, 6, 2) and out.dtype == np.float32
    centred = np.arange(6) - 2.5
    np.testing.assert_allclose(out[0, :, 0], centred / 2.5)   # samples 5..10, demeaned, max |x| = 2.5
    np.testing.assert_allclose(out[0, :, 1], 0.0)
    np.testing.assert_allclose(out[1], out[0])                  # samples 0..5: the same ramp shape
    # the components share one scale: the second, twice as large, reaches -1 where the first is 0.5
    np.testing.assert_allclose(out[2, :, 1], -2 * centred / 5.0)
    np.testing.assert_allclose(out[2, :, 0], centred / 5.0)
    with pytest.raises(InputError, match="shorter than the window"):
        window_and_normalise(waveforms, [7, 7, 7], window=30, pre_p=2)


def test_a_trace_with_non_finite_samples_becomes_zeros_and_is_named():
    waveforms = np.random.default_rng(0).normal(size=(3, 1, 50)).astype(np.float32)
    waveforms[1, 0, 20] = np.nan
    with pytest.warns(UserWarning, match="non-finite samples in trace\\(s\\) B: replaced by zeros"):
        out = window_and_normalise(waveforms, [25, 25, 25], window=10, pre_p=5, names=["A", "B", "C"])
    assert not out[1].any() and np.abs(out[[0, 2]]).max(axis=(1, 2)) == pytest.approx([1.0, 1.0])


def _sine_records(rates, p_times, *, f=3.0, seconds=10.0):
    """Three-component 3 Hz sines (amplitudes 1, 0.5, -0.25) at ``rates``, with their metadata."""
    waveforms, rows = [], []
    for i, (rate, p_time) in enumerate(zip(rates, p_times)):
        t = np.arange(int(seconds * rate)) / rate
        waveforms.append((np.array([1.0, 0.5, -0.25])[:, None] * np.sin(2 * np.pi * f * t)).astype(np.float32))
        rows.append({"trace_name": f"t{i}", "trace_sampling_rate_hz": rate, "trace_p_arrival_sample": p_time * rate})
    length = max(w.shape[1] for w in waveforms)
    padded = np.stack([np.pad(w, ((0, 0), (0, length - w.shape[1]))) for w in waveforms])
    return padded, pd.DataFrame(rows)


def _expected(p_sample, rate, *, target, window, pre_p, f=3.0):
    """The window of :func:`_sine_records`' sine at ``target`` Hz: it starts ``pre_p`` samples before
    P, P taken to the sample nearest it on the grid of the trace's whole samples' (resampled) times."""
    whole = np.rint(p_sample)
    start = whole / rate + np.round((p_sample - whole) * target / rate) / target - pre_p / target
    t = start + np.arange(window) / target
    x = np.array([1.0, 0.5, -0.25])[None, :] * np.sin(2 * np.pi * f * t)[:, None]
    x -= x.mean(axis=0)
    return x / np.abs(x).max()


def test_traces_at_other_rates_are_resampled_around_p():
    """40 Hz and 100 Hz records, P between samples: every window at 100 Hz is the sine from P - pre_p on."""
    waveforms, meta = _sine_records([100.0, 40.0, 40.0, 100.0], [4.0, 4.113, 5.2, 3.9712])
    out = p_windows(waveforms, meta, sampling_rate=100.0, window=256, pre_p=64)
    assert out.shape == (4, 256, 3)
    for i, row in meta.iterrows():
        expected = _expected(row.trace_p_arrival_sample, row.trace_sampling_rate_hz, target=100.0, window=256,
                             pre_p=64)
        np.testing.assert_allclose(out[i], expected, atol=2e-3)
    # without a rate column, the dataset's rate (default_rate), else the target's
    same_rate = meta[meta.trace_sampling_rate_hz == 40.0].drop(columns="trace_sampling_rate_hz")
    np.testing.assert_array_equal(p_windows(waveforms[[1, 2]], same_rate, sampling_rate=100.0, window=256, pre_p=64,
                                            default_rate=40.0), out[[1, 2]])
    meta.loc[2, "trace_sampling_rate_hz"] = np.nan
    with pytest.raises(InputError, match="t2: no valid sampling rate"):
        p_windows(waveforms, meta, sampling_rate=100.0, window=256, pre_p=64)


def test_dataset_windows_read_in_chunks_equal_one_batch(tmp_path):
    waveforms, meta = _sine_records([100.0, 40.0] * 4, np.linspace(3.5, 5.5, 8))
    with DatasetWriter(tmp_path / "ds", component_order="ZNE") as writer:
        for w, row in zip(waveforms, meta.to_dict("records")):
            n = int(10 * row["trace_sampling_rate_hz"])
            writer.add(w[:, :n], {**row, "trace_npts": n})
    with Dataset(tmp_path / "ds") as ds:
        chunked = dataset_p_windows(ds, sampling_rate=50.0, window=128, pre_p=32, chunk=3)
        whole = p_windows(ds.get_waveforms(list(range(len(ds)))), ds.metadata, sampling_rate=50.0, window=128,
                          pre_p=32)
    np.testing.assert_array_equal(chunked, whole)
    for i, row in meta.iterrows():
        expected = _expected(row.trace_p_arrival_sample, row.trace_sampling_rate_hz, target=50.0, window=128,
                             pre_p=32)
        np.testing.assert_allclose(chunked[i], expected, atol=5e-3)
