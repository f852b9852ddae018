"""Vectorised preprocessing against obspy's per-trace methods on real records, the seed study's
bandpass table, windows, normalisation and bad input."""

import h5py
import numpy as np
import obspy
import pandas as pd
import pytest

from seisjax.data import preprocess as pp
from seisjax.errors import InputError

# Tolerance for every comparison with obspy: max |ours - obspy| over a trace, relative to the peak of
# obspy's trace. The implementations do the same arithmetic (same filter design, same window), so
# only float64 round-off separates them (observed <= 1e-13); 1e-9 leaves room for BLAS differences.
RTOL_PEAK = 1e-9


def max_rel_diff(ours: np.ndarray, reference: np.ndarray) -> float:
    ours, reference = np.atleast_2d(ours), np.atleast_2d(reference)
    assert ours.shape == reference.shape
    peak = np.abs(reference).max(axis=-1)
    return float((np.abs(ours - reference).max(axis=-1) / peak).max())


def obspy_apply(x: np.ndarray, sampling_rate: float, process) -> np.ndarray:
    """Run ``process(trace)`` on every trace of ``x`` (N, W) as obspy Traces; stack the results."""
    out = []
    for row in x.reshape(-1, x.shape[-1]):
        trace = obspy.Trace(row.astype(np.float64).copy(), header={"sampling_rate": sampling_rate})
        process(trace)
        out.append(trace.data)
    return np.stack(out).reshape(*x.shape[:-1], -1)


def example_stream():
    stream = obspy.read()  # obspy's example: BW.RJOB EHZ/EHN/EHE, 100 Hz, 3000 samples
    return np.stack([tr.data for tr in stream]), stream[0].stats.sampling_rate


def stead_records(shared_data, n=8):
    """(n, 3, 6000) float64 records of stead50 (components E, N, Z) and their metadata rows."""
    meta = pd.read_csv(shared_data / "stead50" / "metadata.csv").iloc[:n]
    with h5py.File(shared_data / "stead50" / "waveforms.hdf5", "r") as f:
        x = np.stack([f["earthquake/local"][name][()].T for name in meta["trace_name"]])
    return x.astype(np.float64), meta


@pytest.fixture(params=["obspy_example", "stead50"])
def real_traces(request):
    if request.param == "obspy_example":
        return example_stream()
    x, _ = stead_records(request.getfixturevalue("shared_data"), n=4)
    return x, 100.0


# ----------------------------------------------------------------------------- each step vs obspy
STEPS_VS_OBSPY = {
    "demean": (lambda x, sr: pp.demean(x), lambda tr: tr.detrend("demean")),
    "detrend_linear": (lambda x, sr: pp.detrend(x), lambda tr: tr.detrend("linear")),
    "detrend_simple": (lambda x, sr: pp.detrend(x, "simple"), lambda tr: tr.detrend("simple")),
    "taper_cosine_5pct": (lambda x, sr: pp.taper(x, 0.05), lambda tr: tr.taper(0.05, type="cosine")),
    "taper_hann_10pct": (lambda x, sr: pp.taper(x, 0.1, "hann"), lambda tr: tr.taper(0.1, type="hann")),
    "taper_max_length": (lambda x, sr: pp.taper(x, 0.3, max_length=2.0, sampling_rate=sr),
                         lambda tr: tr.taper(0.3, type="cosine", max_length=2.0)),
    "bandpass": (lambda x, sr: pp.bandpass(x, 1.0, 20.0, sr),
                 lambda tr: tr.filter("bandpass", freqmin=1.0, freqmax=20.0, corners=4)),
    "bandpass_zerophase": (lambda x, sr: pp.bandpass(x, 0.5, 8.0, sr, corners=2, zerophase=True),
                           lambda tr: tr.filter("bandpass", freqmin=0.5, freqmax=8.0, corners=2,
                                                zerophase=True)),
    "resample_down": (lambda x, sr: pp.resample(x, sr, 37.0), lambda tr: tr.resample(37.0)),
    "resample_up": (lambda x, sr: pp.resample(x, sr, 250.0), lambda tr: tr.resample(250.0)),
}


@pytest.mark.parametrize("step", sorted(STEPS_VS_OBSPY))
def test_step_matches_obspy(real_traces, step):
    x, sr = real_traces
    ours_fn, obspy_fn = STEPS_VS_OBSPY[step]
    ours = ours_fn(x, sr)
    reference = obspy_apply(x, sr, obspy_fn)
    assert ours.shape == reference.shape
    assert max_rel_diff(ours, reference) <= RTOL_PEAK


def test_odd_lengths_match_obspy():
    x, sr = example_stream()
    x = x[:, :2999]  # odd length: obspy builds taper and resampled spectrum differently
    assert max_rel_diff(pp.taper(x, 0.05), obspy_apply(x, sr, lambda tr: tr.taper(0.05, type="cosine"))) <= RTOL_PEAK
    assert max_rel_diff(pp.resample(x, sr, 40.0), obspy_apply(x, sr, lambda tr: tr.resample(40.0))) <= RTOL_PEAK


def test_resample_sac_records_match_obspy(shared_data):
    stream = obspy.read(str(shared_data / "mtuq_alaska" / "20090407201255351" / "*.AK.*.z"))[:4]
    sr = stream[0].stats.sampling_rate  # 50 Hz
    n = min(tr.stats.npts for tr in stream)
    x = np.stack([tr.data[:n] for tr in stream]).astype(np.float64)
    assert max_rel_diff(pp.resample(x, sr, 20.0), obspy_apply(x, sr, lambda tr: tr.resample(20.0))) <= RTOL_PEAK


def test_seed_chain_with_table_bands_matches_obspy_on_stead(shared_data):
    """demean -> detrend -> 5% taper -> bandpass with each record's band from its magnitude."""
    x, meta = stead_records(shared_data, n=8)
    channels = [f"{code}Z" for code in meta["receiver_type"]]  # BH
    fmin, fmax = pp.bandpass_bands(channels, meta["source_magnitude"], 100.0)
    assert len(set(zip(fmin, fmax))) > 1  # several bands in one call
    ours = pp.preprocess_batch(x, 100.0, fmin=fmin, fmax=fmax)

    reference = np.empty_like(x)
    for i in range(len(x)):
        stream = obspy.Stream([obspy.Trace(x[i, c].copy(), header={"sampling_rate": 100.0}) for c in range(3)])
        stream.detrend("demean").detrend("linear").taper(max_percentage=0.05, type="cosine")
        stream.filter("bandpass", freqmin=fmin[i], freqmax=fmax[i], corners=4)
        reference[i] = np.stack([tr.data for tr in stream])
    assert max_rel_diff(ours, reference) <= RTOL_PEAK


def test_per_trace_bands_and_blocking_do_not_change_results():
    x, sr = example_stream()
    rng = np.random.default_rng(0)
    batch = np.stack([x * s for s in rng.uniform(0.5, 2.0, 7)])  # (7, 3, 3000)
    fmin = np.array([1.0, 2.0, 1.0, 0.5, 2.0, 1.0, 0.5])
    fmax = np.array([20.0, 10.0, 20.0, 5.0, 10.0, 20.0, 8.0])
    one_block = pp.preprocess_batch(batch, sr, fmin=fmin, fmax=fmax, block_bytes=1 << 40)
    many_blocks = pp.preprocess_batch(batch, sr, fmin=fmin, fmax=fmax, block_bytes=1)
    np.testing.assert_array_equal(one_block, many_blocks)
    for i in (0, 3, 6):  # each record filtered with its own band
        expected = obspy_apply(batch[i], sr, lambda tr: tr.detrend("demean").detrend("linear")
                               .taper(0.05, type="cosine")
                               .filter("bandpass", freqmin=fmin[i], freqmax=fmax[i]))
        assert max_rel_diff(one_block[i], expected) <= RTOL_PEAK
    # (B, C) bands: one per trace
    per_trace = pp.bandpass(batch[:2], np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]), 20.0, sr)
    expected = obspy_apply(batch[0, 1], sr, lambda tr: tr.filter("bandpass", freqmin=2.0, freqmax=20.0))
    assert max_rel_diff(per_trace[0, 1], expected) <= RTOL_PEAK


def test_functions_are_pure():
    x, sr = example_stream()
    before = x.copy()
    pp.preprocess_batch(x[None], sr, fmin=1.0, fmax=10.0)
    pp.taper(x, 0.05)
    pp.detrend(x)
    np.testing.assert_array_equal(x, before)


# ----------------------------------------------------------------------------- resample + window
def test_resample_then_window_follows_the_pick():
    sr, n = 100.0, 4000
    t = np.arange(n) / sr
    picks = np.array([1200.0, 2500.0, 3100.0])
    x = np.exp(-0.5 * ((t[None, :] - picks[:, None] / sr) / 0.2) ** 2)  # pulse at each pick
    steps = [{"name": "resample", "sampling_rate": 50.0},
             {"name": "window", "before": 2.0, "after": 3.0}]
    y = pp.preprocess_batch(x, sr, steps, pick_sample=picks)
    assert y.shape == (3, 250)
    assert pp.output_sampling_rate(sr, steps) == 50.0
    np.testing.assert_array_equal(np.argmax(y, axis=-1), [100, 100, 100])  # 2 s before the pick


def test_window_around_pick_on_stead(shared_data):
    x, meta = stead_records(shared_data, n=6)
    picks = meta["p_arrival_sample"].to_numpy()
    y = pp.window_around_pick(x, picks, 1.0, 2.0, sampling_rate=100.0)
    assert y.shape == (6, 3, 300)
    for i, p in enumerate(picks.astype(int)):
        np.testing.assert_array_equal(y[i], x[i, :, p - 100:p + 200])


def test_window_out_of_range_zero_fill_or_error():
    x = np.arange(20, dtype=float).reshape(2, 10) + 1
    y = pp.window_around_pick(x, [1, 8], 3, 4)  # samples
    np.testing.assert_array_equal(y[0], [0, 0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(y[1], [16, 17, 18, 19, 20, 0, 0])
    with pytest.raises(InputError, match=r"trace 0, 1 .*outside the trace"):
        pp.window_around_pick(x, [1, 8], 3, 4, out_of_range="error")
    with pytest.raises(InputError, match=r"trace 1 .*no pick"):
        pp.window_around_pick(x, [5, np.nan], 3, 4)


# ----------------------------------------------------------------------------- normalise
def test_normalize_std_peak_and_zero_traces():
    x, _ = example_stream()
    batch = np.concatenate([x, np.zeros((1, x.shape[1]))])
    y, scale = pp.normalize(batch, "std", return_scale=True)
    np.testing.assert_allclose(y[:3].std(axis=-1), 1.0, rtol=1e-12)
    assert np.all(y[3] == 0) and np.isfinite(y).all()
    np.testing.assert_allclose(y * scale, batch, rtol=1e-12, atol=0)
    peak = pp.normalize(batch, "peak")
    np.testing.assert_allclose(np.abs(peak[:3]).max(axis=-1), 1.0, rtol=1e-12)
    assert np.all(peak[3] == 0)
    joint = pp.normalize(x[None], "peak", axis=(-2, -1))[0]  # components share one scale
    np.testing.assert_allclose(joint, x / np.abs(x).max(), rtol=1e-12)


# ----------------------------------------------------------------------------- bandpass table
ISSUE_TABLE = {  # issue 2, "Preprocessing": instrument -> bands for M0-1, 1-2, 2-3, 3-4, 4+
    "HH": [(2.0, 25), (1.0, 20), (0.5, 15), (0.3, 10), (0.1, 8)],
    "BH": [(0.5, 10), (0.5, 8), (0.5, 5), (0.3, 5), (0.1, 3)],
    "EH": [(3.0, 40), (2.0, 35), (1.0, 25), (0.5, 20), (0.3, 15)],
}


@pytest.mark.parametrize("instrument", sorted(ISSUE_TABLE))
def test_bandpass_table_values(instrument):
    for row, magnitude in enumerate([0.5, 1.5, 2.5, 3.5, 4.5]):
        assert pp.bandpass_band(instrument + "Z", magnitude, 200.0) == ISSUE_TABLE[instrument][row]
    # bin edges: [1, 2) belongs to the second row; negative magnitudes to the first; M7 to the last
    assert pp.bandpass_band(instrument, 1.0, 200.0) == ISSUE_TABLE[instrument][1]
    assert pp.bandpass_band(instrument, 0.999, 200.0) == ISSUE_TABLE[instrument][0]
    assert pp.bandpass_band(instrument.lower() + "n", -1.3, 200.0) == ISSUE_TABLE[instrument][0]
    assert pp.bandpass_band(instrument, 7.2, 200.0) == ISSUE_TABLE[instrument][4]


def test_bandpass_table_nyquist_clipping_and_unknown_codes():
    assert pp.bandpass_band("BHZ", 0.5, 20.0) == (0.5, 9.0)  # 10 Hz band edge -> 0.9 x 10 Hz
    assert pp.bandpass_band("HHZ", 0.2, 40.0) == (2.0, 18.0)
    assert pp.bandpass_band("EHZ", 4.1, 100.0) == (0.3, 15.0)  # below 45 Hz: unchanged
    with pytest.raises(InputError, match="'SH'.*not in the table"):
        pp.bandpass_band("SHZ", 2.0, 100.0)
    assert pp.bandpass_band("SHZ", 2.0, 100.0, default=(1.0, 10.0)) == (1.0, 10.0)
    with pytest.raises(InputError, match="not below fmax"):
        pp.bandpass_band("EHZ", 0.5, 6.0)  # fmin 3 Hz above 0.9 x 3 Hz
    codes = ["HHZ", "BHN", "EHE", "HHZ", "BH"]
    mags = [0.2, 3.3, 4.8, 2.0, -0.5]
    fmin, fmax = pp.bandpass_bands(codes, mags, 50.0)
    expected = [pp.bandpass_band(c, m, 50.0) for c, m in zip(codes, mags)]
    np.testing.assert_array_equal(np.stack([fmin, fmax], axis=1), expected)
    with pytest.raises(InputError, match="trace 1 .*magnitude"):
        pp.bandpass_bands(["HHZ", "HHZ"], [1.0, np.nan], 100.0)


# ----------------------------------------------------------------------------- bad input
def test_nan_input_names_the_trace():
    x = np.random.default_rng(1).standard_normal((9, 3, 500))
    x[7, 1, 42] = np.nan
    x[2, 0, 3] = np.inf
    with pytest.raises(InputError, match=r"\(2, 0\).*NaN or inf"):
        pp.preprocess_batch(x, 100.0, fmin=1.0, fmax=10.0)
    only_nan = np.where(np.isinf(x), 0.0, x)
    with pytest.raises(InputError, match=r"trace \(7, 1\)"):  # the caller's index, also in blocks
        pp.preprocess_batch(only_nan, 100.0, fmin=1.0, fmax=10.0, block_bytes=1)
    mask = pp.finite_mask(x)
    assert mask.shape == (9, 3) and (~mask).sum() == 2 and not mask[7, 1] and not mask[2, 0]
    with pytest.raises(InputError, match="trace 1 .*NaN"):
        pp.detrend(np.stack([np.ones(10), np.full(10, np.nan)]))


def test_bad_bands_and_steps():
    x = np.zeros((2, 100))
    with pytest.raises(InputError, match="trace 1 .*Nyquist"):
        pp.bandpass(x, 1.0, np.array([10.0, 50.0]), 100.0)
    with pytest.raises(InputError, match="fmin must be below fmax"):
        pp.bandpass(x, 5.0, 2.0, 100.0)
    with pytest.raises(InputError, match="does not match"):
        pp.bandpass(x, np.ones(3), 10.0, 100.0)
    with pytest.raises(InputError, match="unknown; known steps"):
        pp.preprocess_batch(x, 100.0, ["demean", "despike"])
    with pytest.raises(InputError, match=r"'taper'.*unknown parameter"):
        pp.preprocess_batch(x, 100.0, [{"name": "taper", "percent": 5}])
    with pytest.raises(InputError, match="no band"):
        pp.preprocess_batch(x, 100.0, ["bandpass"])
