"""Alignment and stacking baselines (seisjax.symae.baselines) on traces with known delays."""

from __future__ import annotations

import numpy as np
import pytest

from seisjax.data.dataset import Dataset
from seisjax.data.synthetic import read_truth, scenario_config, synthesize
from seisjax.errors import InputError
from seisjax.symae import stf_scores as sm
from seisjax.symae.baselines import (BASELINE_METHODS, baseline_stf, iccs, linear_stack, mccc,
                                     phase_weighted_stack)

T = 200  # samples per trace


def pulse(t, centre):
    """A smooth, asymmetric, well-sampled wavelet (two Gaussians) centred near ``centre`` samples."""
    return np.exp(-0.5 * ((t - centre) / 3.0) ** 2) - 0.5 * np.exp(-0.5 * ((t - centre - 7.0) / 4.0) ** 2)


def delayed_pulses(delays, noise=0.0, seed=0, length=T):
    """Traces holding the wavelet delayed by ``delays`` (samples, any shape) from the window centre."""
    t = np.arange(length)
    delays = np.asarray(delays, dtype=float)
    clean = pulse(t, length / 2 + delays[..., None])
    return clean + noise * np.random.default_rng(seed).standard_normal(clean.shape)


# ------------------------------------------------------------------------------------------ MCCC
def test_mccc_recovers_subsample_delays_with_zero_mean():
    rng = np.random.default_rng(1)
    true = rng.uniform(-6.0, 6.0, 12) + 2.5  # not zero mean: only relative delays are recoverable
    traces = delayed_pulses(true, noise=0.01, seed=2)
    result = mccc(traces)
    assert abs(result.delays.sum()) < 1e-9  # the constraint
    np.testing.assert_array_less(np.abs(result.delays - (true - true.mean())), 0.1)
    # With every pair used the least-squares solution is the paper's closed form t_i = mean_j tau_ij.
    np.testing.assert_allclose(result.delays, result.lags.mean(axis=-1), atol=1e-10)
    # VanDecar & Crosson's error by hand: sigma_i^2 = sum_j (tau_ij - t_i + t_j)^2 / (n - 2).
    residual = result.lags - (result.delays[:, None] - result.delays[None, :])
    np.testing.assert_allclose(result.errors, np.sqrt((residual ** 2).sum(-1) / (12 - 2)), rtol=1e-10)
    # The residual-based errors are small at this SNR, and larger when the noise is larger.
    noisy = mccc(delayed_pulses(true, noise=0.1, seed=2))
    assert np.median(result.errors) < 0.05
    assert np.median(noisy.errors) > 3 * np.median(result.errors)
    # The pair matrices are (anti)symmetric with the pair correlation on both sides.
    np.testing.assert_allclose(result.lags, -np.swapaxes(result.lags, -1, -2))
    np.testing.assert_allclose(result.correlation, np.swapaxes(result.correlation, -1, -2))
    assert (np.diag(result.correlation) == 1).all() and result.correlation.min() > 0.95


def test_mccc_handles_groups_of_different_sizes_and_polarity():
    rng = np.random.default_rng(3)
    true = rng.uniform(-5.0, 5.0, (2, 3, 8))  # (event, pixel, trace)
    traces = delayed_pulses(true, noise=0.01, seed=4)
    mask = np.ones((2, 3, 8), bool)
    mask[1, 2, 5:] = False
    traces[1, 2, 5:] = np.nan  # padding may hold anything
    result = mccc(traces, mask=mask)
    assert np.isnan(result.delays[1, 2, 5:]).all() and np.isnan(result.errors[1, 2, 5:]).all()
    alone = mccc(traces[1, 2, :5])
    np.testing.assert_allclose(result.delays[1, 2, :5], alone.delays, atol=1e-10)
    centred = true[1, 2, :5] - true[1, 2, :5].mean()
    np.testing.assert_array_less(np.abs(alone.delays - centred), 0.1)
    full = mccc(traces[0, 1])
    np.testing.assert_allclose(result.delays[0, 1], full.delays, atol=1e-10)

    # Flipped traces align on |cc| and their polarity is found (majority positive).
    signs = np.array([1, -1, 1, 1, -1, 1, 1, 1], float)
    flipped = mccc(traces[0, 0] * signs[:, None], absolute=True)
    np.testing.assert_array_equal(flipped.polarity, signs)
    np.testing.assert_allclose(flipped.delays, mccc(traces[0, 0]).delays, atol=1e-9)
    np.testing.assert_array_equal(np.sign(flipped.correlation[0]), signs)


def test_mccc_rejects_bad_input_with_names():
    traces = delayed_pulses(np.zeros(4))
    traces[2, 10] = np.nan
    with pytest.raises(InputError, match=r"trace \(2,\) holds NaN"):
        mccc(traces)
    with pytest.raises(InputError, match="mask has shape"):
        mccc(traces, mask=np.ones(3, bool))
    with pytest.raises(InputError, match="at least 2 traces"):
        mccc(traces[:1])


# ------------------------------------------------------------------------------------------ ICCS
def test_iccs_converges_to_the_mccc_delays():
    rng = np.random.default_rng(5)
    true = rng.uniform(-6.0, 6.0, (2, 10))
    traces = delayed_pulses(true, noise=0.02, seed=6)
    reference = mccc(traces)
    for start in ("stack", 0):
        result = iccs(traces, reference=start)
        assert (result.n_iter < 20).all()
        np.testing.assert_allclose(result.delays, reference.delays, atol=0.05)
        np.testing.assert_array_less(np.abs(result.delays - (true - true.mean(-1, keepdims=True))), 0.1)
        # The stack is the aligned wavelet at the mean arrival time (the window centre + mean
        # delay), up to the stacked noise (0.02 / sqrt(10) RMS).
        expected = pulse(np.arange(T), T / 2 + true.mean(-1, keepdims=True))
        assert np.sqrt(np.mean((result.stack - expected) ** 2)) < 0.01
    with pytest.raises(InputError, match="reference"):
        iccs(traces, reference="median")


# ---------------------------------------------------------------------------------------- stacks
def test_pws_equals_linear_stack_for_identical_traces_and_suppresses_incoherent_noise():
    same = np.repeat(delayed_pulses(np.zeros(1)), 6, axis=0)
    stack, coherence = phase_weighted_stack(same, return_coherence=True)
    np.testing.assert_allclose(coherence[np.abs(same[0]) > 1e-6], 1.0, atol=1e-9)
    np.testing.assert_allclose(stack, linear_stack(same), atol=1e-6)

    # 30 aligned noisy copies of a pulse at the window centre: SNR = peak / RMS outside the pulse.
    noisy = delayed_pulses(np.zeros((20, 30)), noise=0.5, seed=7)
    off_pulse = np.r_[0:60, 140:T]
    snr = lambda s: np.abs(s[..., 90:115]).max(-1) / np.sqrt((s[..., off_pulse] ** 2).mean(-1))  # noqa: E731
    linear, pws = snr(linear_stack(noisy)), snr(phase_weighted_stack(noisy))
    assert np.all(pws > 1.5 * linear), (pws, linear)


# ---------------------------------------------------------------------------------- baseline STF
def test_baseline_stf_recovers_delays_and_the_common_waveform_for_every_method():
    rng = np.random.default_rng(8)
    fs = 2.0
    true = rng.uniform(-8.0, 8.0, (2, 3, 10))  # samples
    traces = delayed_pulses(true, noise=0.01, seed=9)
    centred = (true - true.mean(-1, keepdims=True)) / fs
    expected = pulse(np.arange(T), T / 2 + true.mean(-1, keepdims=True))
    for method in BASELINE_METHODS:
        out = baseline_stf(traces, fs, method, max_lag_s=15.0)
        assert out["stf"].shape == out["envelope"].shape == (2, 3, T) and out["delays"].shape == (2, 3, 10)
        np.testing.assert_array_less(np.abs(out["delays"] - centred), 0.1 / fs)
        np.testing.assert_allclose(np.abs(out["stf"]).max(-1), 1.0)
        np.testing.assert_allclose(out["envelope"].max(-1), 1.0)
        cc = np.sum(out["stf"] * expected, -1) / np.linalg.norm(out["stf"], axis=-1) / np.linalg.norm(expected, axis=-1)
        assert cc.min() > 0.99, (method, cc.min())
        # The envelope peaks where the wavelet does.
        assert np.abs(out["envelope"].argmax(-1) - (T / 2 + true.mean(-1))).max() <= 2
        # Grouped computation equals the group alone.
        alone = baseline_stf(traces[1, 2], fs, method, max_lag_s=15.0)
        np.testing.assert_allclose(out["stf"][1, 2], alone["stf"], atol=1e-9)
    with pytest.raises(InputError, match="unknown method"):
        baseline_stf(traces, fs, "mccc_median")


# ------------------------------------------------------------------- on the synthetic generator
# Records that are exact shifted, scaled copies of the STF: no attenuation, coda, directivity or
# noise; a small network and depth range keep the TauP grid (the slow part) to a few seconds.
PURE_SIGNAL = {
    "stations.n_scattered": 50, "stations.n_arrays": 1, "stations.array_size": 12,
    "source.depth_km": (200.0, 260.0), "taup.depth_step_km": 30.0, "source.magnitude": (7.2, 7.4),
    "source.subevent_probabilities": (0.0, 1.0, 0.0), "source.subevent_duration_fraction": (0.05, 0.1),
    "source.directivity_probability": 0.0, "propagation.coda_relative_amplitude": 0.0,
    "propagation.t_star_p": 0.0, "noise.enabled": False,
}


def test_baselines_recover_timing_errors_and_stfs_of_synthetic_records(tmp_path):
    out = synthesize(scenario_config("teleseismic-p", PURE_SIGNAL, events=1, seed=3), tmp_path / "ds", figure=False,
                     progress=False)
    truth = read_truth(out)
    with Dataset(out) as ds:
        fs, meta = ds.sampling_rate, ds.metadata
        records = ds.get_waveforms(np.arange(len(meta)))[:, 0]
    traces = truth["traces"].set_index("trace_name").loc[meta["trace_name"]]
    # 10 s before to 42 s after the predicted P: the whole P pulse, and pP (> 45 s later) left out.
    assert traces["pp_delay_s"].min() > 43.0
    start = meta["trace_p_predicted_sample"].to_numpy().astype(int) - int(10 * fs)
    window = records[np.arange(len(meta))[:, None], start[:, None] + np.arange(int(52 * fs))]
    true_stf = truth["stf"][0]
    # The truth holds mean moment rates over [n, n + 1) / fs: date its samples at the centres.
    truth_start = 0.5 / fs
    true_times = sm.truth_subevent_times(truth["events"])[0]
    assert len(true_times) == 2
    # Sub-event times as the detector reads them on the truth itself.
    np.testing.assert_allclose(sm.detect_subevents(true_stf, fs, time_start=truth_start), true_times, atol=0.01)
    for method in BASELINE_METHODS:
        out = baseline_stf(window, fs, method, absolute=True, max_lag_s=5.0)
        # Per-trace timing errors (s) up to their unknown mean, and P polarities up to a global sign.
        assert sm.time_shift_rms(out["delays"], traces["time_error_s"].to_numpy()) < 0.01
        agree = np.mean(out["polarity"] == traces["polarity"].to_numpy())
        assert agree in (0.0, 1.0)
        score = sm.score_stf(out["stf"], true_stf, sampling_rate=fs, absolute=True, truth_time_start=truth_start,
                             true_subevent_times=true_times)
        assert abs(score["correlation"]) > 0.99 and abs(score["duration_error_s"]) < 0.05
        assert score["subevent_fraction_found"] == 1.0 and score["subevent_mean_abs_dt_s"] < 0.05
        # The STF starts 10 s into the window, plus the mean timing error of the traces.
        expected_lag = 10.0 + traces["time_error_s"].mean()
        assert score["lag_s"] == pytest.approx(expected_lag, abs=0.1)
