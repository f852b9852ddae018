"""STF scores (seisjax.symae.stf_scores) on functions whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from seisjax.errors import InputError
from seisjax.symae import stf_scores as sm


def triangle(t, apex, half_width, height=1.0):
    return height * np.clip(1.0 - np.abs(t - apex) / half_width, 0.0, None)


def smooth_stf(t, shift=0.0):
    """A band-limited two-pulse moment-rate function (Gaussians) delayed by ``shift`` seconds."""
    return np.exp(-0.5 * ((t - 10.0 - shift) / 1.5) ** 2) + 0.6 * np.exp(-0.5 * ((t - 17.0 - shift) / 1.0) ** 2)


# --------------------------------------------------------------------------------- correlation
def test_correlation_is_one_for_a_shifted_copy_and_finds_the_lag():
    fs = 10.0
    t = np.arange(600) / fs
    truth = smooth_stf(t)
    cc, lag = sm.stf_correlation(smooth_stf(t, 2.37), truth, sampling_rate=fs)
    assert cc == pytest.approx(1.0, abs=1e-4) and lag == pytest.approx(2.37, abs=0.01)
    # Negative lag, given through the estimate's own time axis (window starting 5 s later).
    cc, lag = sm.stf_correlation(smooth_stf(t + 5.0, -1.2), truth, sampling_rate=fs, estimate_time_start=5.0)
    assert cc == pytest.approx(1.0, abs=1e-4) and lag == pytest.approx(-1.2, abs=0.01)
    # An estimate sampled at 2 Hz is resampled onto the truth's 10 Hz axis first.
    t2 = np.arange(120) / 2.0
    cc, lag = sm.stf_correlation(smooth_stf(t2, 3.3), truth, sampling_rate=2.0, truth_sampling_rate=fs)
    assert cc > 0.999 and lag == pytest.approx(3.3, abs=0.02)
    # A flipped estimate: -1 with absolute=True at the same lag; without it the best is much lower.
    cc, lag = sm.stf_correlation(-smooth_stf(t, 2.37), truth, sampling_rate=fs, absolute=True)
    assert cc == pytest.approx(-1.0, abs=1e-4) and lag == pytest.approx(2.37, abs=0.01)
    assert sm.stf_correlation(-smooth_stf(t, 2.37), truth, sampling_rate=fs)[0] < 0.5
    # Vectorised over estimates; a lag window that excludes the true lag gives a worse score.
    batch = np.stack([smooth_stf(t, s) for s in (0.0, 1.0, -4.0)])
    cc, lag = sm.stf_correlation(batch, truth, sampling_rate=fs)
    np.testing.assert_allclose(lag, [0.0, 1.0, -4.0], atol=0.01)
    cc, lag = sm.stf_correlation(batch, truth, sampling_rate=fs, max_lag_s=2.0)
    assert cc[2] < 0.9 and abs(lag[2]) <= 2.0
    with pytest.raises(InputError, match="NaN"):
        sm.stf_correlation(np.full(10, np.nan), truth, sampling_rate=fs)


# ------------------------------------------------------------------------------------ duration
def test_duration_of_a_boxcar_of_known_length():
    for fs, length in ((10.0, 40), (1.0, 17)):
        box = np.r_[np.zeros(13), np.full(length, 3.0), np.zeros(20)]
        for measure in ("abs", "energy"):
            duration, start, end = sm.stf_duration(box, fs, measure=measure)
            assert duration == pytest.approx(0.9 * length / fs, abs=1e-9)
            assert start == pytest.approx((13 + 0.05 * length) / fs, abs=1e-9)
            assert end == pytest.approx((13 + 0.95 * length) / fs, abs=1e-9)
        assert sm.stf_duration(box, fs, lower=0.0, upper=1.0)[0] == pytest.approx(length / fs)
    # Estimate (1 Hz, 17 s boxcar) against truth (10 Hz, 4 s boxcar): 0.9 * (17 - 4) s.
    est = np.r_[np.zeros(5), np.ones(17), np.zeros(5)]
    truth = np.r_[np.zeros(30), np.ones(40), np.zeros(30)]
    error = sm.duration_error(est, truth, sampling_rate=1.0, truth_sampling_rate=10.0)
    assert error == pytest.approx(0.9 * 13.0)
    # A triangle of base 2a holds 5 % of its area before apex - a (1 - sqrt(0.1)).
    fs = 100.0
    t = np.arange(2000) / fs
    duration, _, _ = sm.stf_duration(triangle(t, 10.0, 4.0), fs)
    assert duration == pytest.approx(2 * 4.0 * (1 - math.sqrt(0.1)), abs=0.02)
    assert np.isnan(sm.stf_duration(np.zeros(10), fs)[0])


# ----------------------------------------------------------------------------------- sub-events
def test_subevent_timing_of_a_two_triangle_stf():
    fs = 10.0
    t = np.arange(400) / fs
    onsets, durations = np.array([2.0, 9.0, np.nan]), np.array([6.0, 4.0, np.nan])  # read_truth's NaN padding
    true_times = sm.subevent_peak_times(onsets, durations)
    np.testing.assert_allclose(true_times[:2], [5.0, 11.0])
    stf = triangle(t, 5.0, 3.0) + triangle(t, 11.0, 2.0, 0.7)
    found = sm.detect_subevents(stf, fs)
    np.testing.assert_allclose(found, [5.0, 11.0], atol=1e-9)
    # The estimate's clock is 30 s late and its sign flipped: undo the lag, orient the sign.
    result = sm.subevent_timing_error(-stf, true_times, fs, time_start=30.0, lag_s=30.0)
    assert result["fraction_found"] == 1.0 and result["mean_abs_dt"] < 1e-9 and result["n_true"] == 2
    # Peaks 0.3 s early and 0.5 s late: mean |dt| = 0.4 s; a small third bump below the
    # prominence threshold is not a sub-event.
    moved = triangle(t, 4.7, 3.0) + triangle(t, 11.5, 2.0, 0.7) + triangle(t, 30.0, 1.0, 0.05)
    result = sm.subevent_timing_error(moved, true_times, fs)
    assert result["n_detected"] == 2 and result["mean_abs_dt"] == pytest.approx(0.4, abs=1e-9)
    # Only one sub-event resolved: half found; max_dt rejects a distant match.
    one = triangle(t, 5.2, 3.0)
    assert sm.subevent_timing_error(one, true_times, fs)["fraction_found"] == 0.5
    assert sm.subevent_timing_error(one, true_times, fs, max_dt_s=0.1)["fraction_found"] == 0.0


def test_matching_is_one_to_one_and_minimises_total_dt():
    # An extra detected peak (2.6) stays unmatched.
    result = sm.match_subevents([1.0, 2.1, 2.6], [2.0, 1.2])
    assert result["n_matched"] == 2 and result["n_detected"] == 3 and result["fraction_found"] == 1.0
    assert {(d, tr) for d, tr, _ in result["pairs"]} == {(0, 1), (1, 0)}
    assert result["mean_abs_dt"] == pytest.approx(0.15)
    # Where nearest-first fails: detected 1.0 and 1.6 for true 1.5 and 2.2 (greedy pairs 1.6 with
    # 1.5, total 1.3 s; the optimum pairs 1.0-1.5 and 1.6-2.2, total 1.1 s).
    result = sm.match_subevents([1.0, 1.6], [1.5, 2.2])
    assert {(d, tr) for d, tr, _ in result["pairs"]} == {(0, 0), (1, 1)}
    assert result["mean_abs_dt"] == pytest.approx((0.5 + 0.6) / 2)
    empty = sm.match_subevents([], [1.0])
    assert empty["fraction_found"] == 0.0 and math.isnan(empty["mean_abs_dt"])


def test_truth_subevent_times_from_the_truth_table_layout():
    events = pd.DataFrame({"subevent_onset_s_0": [0.0, 0.0], "subevent_onset_s_1": [np.nan, 3.0],
                           "subevent_duration_s_0": [4.0, 2.0], "subevent_duration_s_1": [np.nan, 5.0]})
    times = sm.truth_subevent_times(events)
    np.testing.assert_allclose(times[0], [2.0])
    np.testing.assert_allclose(times[1], [1.0, 5.5])
    with pytest.raises(InputError, match="subevent_duration_s_1"):
        sm.truth_subevent_times(events.drop(columns="subevent_duration_s_1"))


# --------------------------------------------------------------------------------- time shifts
def test_time_shift_rms_removes_the_unknown_origin():
    rng = np.random.default_rng(0)
    true = rng.normal(0.0, 1.0, (3, 25))
    assert np.allclose(sm.time_shift_rms(true + 7.5, true), 0.0, atol=1e-12)
    error = rng.normal(0.0, 0.2, (3, 25))
    error -= error.mean(-1, keepdims=True)
    np.testing.assert_allclose(sm.time_shift_rms(true + error - 3.0, true), np.sqrt((error ** 2).mean(-1)))
    # NaN (masked traces) leave both means and the RMS.
    est = true[0] + error[0] + 1.0
    est[[3, 7]] = np.nan
    keep = np.isfinite(est)
    diff = error[0][keep] - error[0][keep].mean()
    assert sm.time_shift_rms(est, true[0]) == pytest.approx(np.sqrt(np.mean(diff ** 2)))
    assert np.isnan(sm.time_shift_rms(np.full(4, np.nan), np.zeros(4)))


# ----------------------------------------------------------------------------------- SNR table
def test_snr_table_bins_counts_and_means():
    snr = [0.5, 1.9, 2.0, 4.99, 5.0, 9.0, 10.0, 50.0, np.nan]
    cc = [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.2]
    records = [dict(method=m, snr=s, correlation=c + (0.01 if m == "pws" else 0.0), event=i)
               for m in ("linear", "pws") for i, (s, c) in enumerate(zip(snr, cc))]
    rows = sm.snr_table(records, group_by="method", metrics=["correlation"], statistics=("mean", "count"))
    assert [r["snr_bin"] for r in rows[:5]] == ["<2", "2-5", "5-10", ">=10", "n/a"]
    assert [r["method"] for r in rows] == ["linear"] * 5 + ["pws"] * 5
    assert [r["count"] for r in rows] == [2, 2, 2, 2, 1] * 2
    np.testing.assert_allclose([r["correlation"] for r in rows[:5]], [0.2, 0.6, 0.85, 0.96, 0.2])
    np.testing.assert_allclose([r["correlation"] for r in rows[5:]], [0.21, 0.61, 0.86, 0.97, 0.21])
    # An empty bin is listed with NaN; a NaN metric is left out of its mean but not of the count.
    rows = sm.snr_table({"snr": [1.0, 3.0, 3.5], "x": [1.0, np.nan, 4.0]}, edges=(2.0, 5.0, 10.0))
    assert [(r["snr_bin"], r["count"]) for r in rows] == [("<2", 1), ("2-5", 2), ("5-10", 0), (">=10", 0)]
    assert rows[1]["x"] == 4.0 and math.isnan(rows[2]["x"])
    text = sm.format_table(rows, style="markdown").splitlines()
    assert len(text) == 2 + 4 and text[0].split("|")[1].strip() == "snr_bin" and text[1].startswith("|--")
    assert "nan" in text[4] and len({len(line) for line in text}) == 1  # aligned columns
    plain = sm.format_table(rows, style="text").splitlines()
    assert plain[2].split() == ["<2", "1", "1"] and len({len(line) for line in plain}) == 1
    with pytest.raises(InputError, match="'snr' column"):
        sm.snr_table([{"x": 1.0}])


# ---------------------------------------------------------------------------------- one score
def test_score_stf_of_a_delayed_resampled_copy():
    fs = 10.0
    t = np.arange(400) / fs
    truth = triangle(t, 5.0, 3.0) + triangle(t, 11.0, 2.0, 0.7)
    # The estimate: the truth 20 s later on a 100-s window at 5 Hz.
    t_est = np.arange(500) / 5.0
    estimate = triangle(t_est, 25.0, 3.0) + triangle(t_est, 31.0, 2.0, 0.7)
    score = sm.score_stf(estimate, truth, sampling_rate=5.0, truth_sampling_rate=fs,
                         true_subevent_times=[5.0, 11.0])
    assert score["correlation"] > 0.999 and score["lag_s"] == pytest.approx(20.0, abs=0.02)
    # By hand: total area 3 + 1.4; 5 % (0.22) is reached sqrt(6 * 0.22) s after the onset at 2 s,
    # 95 % sqrt(0.22 / 0.175) s before the end at 13 s.
    assert score["true_duration_s"] == pytest.approx(11.0 - math.sqrt(1.32) - math.sqrt(0.22 / 0.175), abs=0.01)
    assert abs(score["duration_error_s"]) < 0.02
    assert score["subevent_fraction_found"] == 1.0 and score["subevent_mean_abs_dt_s"] < 0.05
