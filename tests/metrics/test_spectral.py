"""Spectrogram-autoencoder metrics (seisjax.metrics.spectral) against hand computations,
scipy and known identities; generation trends recovered from synthetic records built with known
slopes."""

import numpy as np
import pytest
import scipy.signal

from seisjax.data.stft import stft, stft_axes
from seisjax.errors import InputError
from seisjax.metrics import spectral as sm


def _mags(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 2.0, size=shape)


# ----------------------------------------------------------------------------- LSD
def test_lsd_identical_is_zero():
    ref = _mags((3, 2, 17, 5))
    np.testing.assert_array_equal(sm.log_spectral_distance(ref, ref.copy()), np.zeros(3))


@pytest.mark.parametrize("gain", [0.1, 0.5, 3.0])
def test_lsd_uniform_gain(gain):
    # P_est = g^2 P_ref everywhere: every level difference is 10 log10 g^2, so LSD = |20 log10 g|
    ref = _mags((4, 3, 9, 6))
    expected = abs(20 * np.log10(gain))
    np.testing.assert_allclose(sm.log_spectral_distance(ref, gain * ref), expected, rtol=1e-7)
    # per example: a different gain per row gives each row its own value
    gains = np.array([0.5, 1.0, 2.0, 10.0])
    lsd = sm.log_spectral_distance(ref, gains[:, None, None, None] * ref)
    np.testing.assert_allclose(lsd, np.abs(20 * np.log10(gains)), rtol=1e-7, atol=1e-9)


def test_lsd_hand_computation_and_frame_average():
    # one channel, two frequency bins, two frames (B, C, F, T) = (1, 1, 2, 2)
    ref = np.array([[[[1.0, 1.0], [10.0, 1.0]]]])
    est = np.array([[[[10.0, 1.0], [10.0, 1.0]]]])
    # frame 0: differences 10 log10(1/100) = -20 dB and 0 dB -> RMS sqrt(200); frame 1: 0 -> mean
    expected = (np.sqrt(200.0) + 0.0) / 2
    np.testing.assert_allclose(sm.log_spectral_distance(ref, est), [expected], rtol=1e-8)
    # the same spectrogram laid out (B, F, T, C) with freq_axis=1 gives the same value
    np.testing.assert_allclose(sm.log_spectral_distance(np.moveaxis(ref, 1, -1), np.moveaxis(est, 1, -1),
                                                        freq_axis=1), [expected], rtol=1e-8)
    # RMS over frequency, not over frequency and time: a global RMS would give sqrt(100) = 10
    assert abs(expected - 10.0) > 0.5


def test_lsd_floor_makes_zero_bins_finite():
    ref = _mags((2, 1, 8, 4))
    ref[:, :, 0] = 0.0
    est = ref.copy()
    est[0, 0, 0, 0] = 0.0   # both zero: equal, no inf
    assert np.all(np.isfinite(sm.log_spectral_distance(ref, est)))
    np.testing.assert_allclose(sm.log_spectral_distance(ref, est), 0.0, atol=1e-12)
    # an estimate that misses a bin of the reference is bounded by the -100 dB floor
    est[1, 0, 3, 0] = 0.0
    lsd = sm.log_spectral_distance(ref, est)
    p = ref[1, 0, 3, 0] ** 2
    floor = sm.LSD_EPS * (ref[1] ** 2).max()
    per_frame = np.sqrt((10 * np.log10((p + floor) / floor)) ** 2 / 8)
    np.testing.assert_allclose(lsd[1], per_frame / 4, rtol=1e-8)


# ----------------------------------------------------------------------------- spectral convergence
def test_spectral_convergence_hand_values():
    ref = np.array([[[3.0, 4.0]], [[3.0, 4.0]], [[1.0, 1.0]]])
    est = np.array([[[3.0, 0.0]], [[0.0, 0.0]], [[1.0, 1.0]]])
    np.testing.assert_allclose(sm.spectral_convergence(ref, est), [4 / 5, 1.0, 0.0])


@pytest.mark.parametrize("gain", [0.25, 1.5])
def test_spectral_convergence_scaled_copy(gain):
    ref = _mags((3, 3, 11, 7), seed=1)
    np.testing.assert_allclose(sm.spectral_convergence(ref, gain * ref), abs(1 - gain), rtol=1e-12)


# ----------------------------------------------------------------------------- envelope correlation
def _waves(batch=3, channels=3, n=400, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    onset = rng.integers(50, 150, size=(batch, channels, 1))
    envelope = np.where(t >= onset, np.exp(-(t - onset) / 60.0), 0.0)
    return envelope * rng.standard_normal((batch, channels, n))


def test_envelope_correlation_identical_and_gain():
    x = _waves()
    np.testing.assert_allclose(sm.envelope_correlation(x, x.copy()), 1.0, rtol=1e-12)
    gains = np.array([0.01, 3.0, 250.0])[:, None, None]   # a time-invariant gain per example
    np.testing.assert_allclose(sm.envelope_correlation(x, gains * x), 1.0, rtol=1e-12)
    np.testing.assert_allclose(sm.envelope_correlation(x, -x), 1.0, rtol=1e-12)   # polarity is phase


def test_envelope_correlation_matches_scipy_and_averages_channels():
    x = _waves(batch=2, channels=3, seed=3)
    y = x[..., ::-1] + 0.3 * _waves(batch=2, channels=3, seed=4)
    env_x, env_y = np.abs(scipy.signal.hilbert(x)), np.abs(scipy.signal.hilbert(y))
    expected = [np.mean([np.corrcoef(env_x[b, c], env_y[b, c])[0, 1] for c in range(3)]) for b in range(2)]
    np.testing.assert_allclose(sm.envelope_correlation(x, y), expected, rtol=1e-10)
    assert np.all(np.array(expected) < 0.9)   # the case is not trivially 1
    # (B, W) input: one channel
    np.testing.assert_allclose(sm.envelope_correlation(x[:, 0], y[:, 0]),
                               [np.corrcoef(env_x[b, 0], env_y[b, 0])[0, 1] for b in range(2)], rtol=1e-10)


def test_envelope_correlation_silent_estimate_and_constant_reference():
    x = _waves(batch=2, channels=2, seed=5)
    est = x.copy()
    est[1, 1] = 0.0   # a silent channel correlates 0: row 1 averages 1 and 0
    np.testing.assert_allclose(sm.envelope_correlation(x, est), [1.0, 0.5], rtol=1e-12)
    ref = x.copy()
    ref[1, 0] = 0.0
    with pytest.raises(InputError, match="row 1"):
        sm.envelope_correlation(ref, x)


# ----------------------------------------------------------------------------- spectral centroid
def test_spectral_centroid_hand_and_tone():
    freqs = np.array([0.0, 10.0, 20.0, 30.0])
    mag = np.zeros((3, 2, 4, 5))           # (B, C, F, T)
    mag[0, :, 1] = 1.0                      # all energy at 10 Hz
    mag[1, 0, 1], mag[1, 1, 3] = 1.0, 1.0   # equal energy at 10 and 30 Hz across channels
    mag[2, 0, 0, 0], mag[2, 0, 2, 0] = 1.0, 3.0   # weights 1 and 3 at 0 and 20 Hz
    np.testing.assert_allclose(sm.spectral_centroid(mag, freqs), [10.0, 20.0, 15.0])
    np.testing.assert_allclose(sm.spectral_centroid(np.moveaxis(mag, 1, -1), freqs, freq_axis=1), [10.0, 20.0, 15.0])
    # the centroid of a 12 Hz tone's STFT is near 12 Hz (Hann leakage is symmetric)
    fs, n = 100.0, 2000
    tone = np.sin(2 * np.pi * 12.0 * np.arange(n) / fs)[None, None]
    f, _ = stft_axes(n, fs)
    assert abs(sm.spectral_centroid(np.abs(stft(tone, fs)), f)[0] - 12.0) < 0.3


# ----------------------------------------------------------------------------- generation trends
TRUE = {"log10_peak_amplitude": {"intercept": -2.0, "magnitude": 1.1, "log10_distance": -1.6},
        "centroid_hz": {"intercept": 18.0, "magnitude": -3.0, "log10_distance": 2.5}}


def _records(n, seed, slopes=TRUE, noise=(0.05, 0.3)):
    rng = np.random.default_rng(seed)
    magnitude = rng.uniform(1.0, 4.0, n)
    # larger events are recorded farther away (as in real catalogs): the regressors are correlated,
    # so only a joint fit separates the two slopes
    log_d = 0.8 + 0.35 * magnitude + rng.normal(0, 0.25, n)
    a, c = slopes["log10_peak_amplitude"], slopes["centroid_hz"]
    log_amp = a["intercept"] + a["magnitude"] * magnitude + a["log10_distance"] * log_d + rng.normal(0, noise[0], n)
    centroid = c["intercept"] + c["magnitude"] * magnitude + c["log10_distance"] * log_d + rng.normal(0, noise[1], n)
    return {"peak_amplitude": 10 ** log_amp, "centroid_hz": centroid, "magnitude": magnitude,
            "distance_km": 10 ** log_d}


def test_trends_recover_known_slopes_and_differences():
    real = _records(400, seed=0)
    gen_slopes = {"log10_peak_amplitude": dict(TRUE["log10_peak_amplitude"], magnitude=0.8),
                  "centroid_hz": dict(TRUE["centroid_hz"])}
    generated = _records(300, seed=1, slopes=gen_slopes)
    out = sm.generation_trends(real, generated)
    assert out["real"]["n"] == 400 and out["generated"]["n"] == 300
    for target, coefs in TRUE.items():
        for name, value in coefs.items():
            fit = out["real"][target]
            assert abs(fit[name] - value) < 4 * fit["stderr"][name] + 1e-9, (target, name, fit)
            assert fit["stderr"][name] < 0.2 * abs(value)   # tight enough to mean something
    np.testing.assert_allclose(out["real"]["log10_peak_amplitude"]["residual_std"], 0.05, rtol=0.15)
    diff = out["difference"]["log10_peak_amplitude"]["magnitude"]
    assert abs(diff - (0.8 - 1.1)) < 0.05
    assert out["difference_z"]["log10_peak_amplitude"]["magnitude"] < -5        # a real disagreement
    assert abs(out["difference_z"]["centroid_hz"]["magnitude"]) < 4             # agreement within noise
    # the joint fit matters here: amplitude against magnitude alone is biased by the distance trend
    marginal = np.polyfit(real["magnitude"], np.log10(real["peak_amplitude"]), 1)[0]
    assert abs(marginal - 1.1) > 0.3


def _event_records(n_events, per_event, seed, within_slope):
    """Records of a few events, the larger ones recorded farther away (magnitude and distance nearly
    collinear) and each event with its own centroid offset: only records of the same event show the
    distance slope cleanly."""
    rng = np.random.default_rng(seed)
    event = np.repeat(np.arange(n_events), per_event)
    mag_e = rng.uniform(1.0, 6.0, n_events)
    magnitude = mag_e[event]
    log_d = 1.0 + 0.45 * magnitude + rng.uniform(-0.3, 0.3, len(event))
    offset = rng.normal(0.0, 2.0, n_events)[event]
    centroid = 12.0 - 1.0 * magnitude + within_slope * log_d + offset + rng.normal(0, 0.2, len(event))
    log_amp = -2.0 + 1.1 * magnitude - 1.6 * log_d + rng.normal(0, 0.05, len(event))
    return {"peak_amplitude": 10 ** log_amp, "centroid_hz": centroid, "magnitude": magnitude,
            "distance_km": 10 ** log_d, "event": np.array([f"ev{e}" for e in event])}


def test_within_event_distance_slope_is_free_of_the_magnitude_confound():
    real = _event_records(8, 25, seed=0, within_slope=-2.5)
    generated = _event_records(8, 25, seed=1, within_slope=+1.0)
    out = sm.generation_trends(real, generated)
    assert out["real"]["magnitude_log10_distance_correlation"] > 0.9
    for name, slope in (("real", -2.5), ("generated", 1.0)):
        within = out[name]["within_event"]["centroid_hz"]
        assert within["events"] == 8
        assert abs(within["log10_distance"] - slope) < 4 * within["stderr"] and within["stderr"] < 0.15
        # with per-event offsets and collinear regressors the joint fit is five times less certain
        assert out[name]["centroid_hz"]["stderr"]["log10_distance"] > 5 * within["stderr"]
    amp = out["real"]["within_event"]["log10_peak_amplitude"]
    assert abs(amp["log10_distance"] + 1.6) < 4 * amp["stderr"]
    assert out["within_event_difference_z"]["centroid_hz"] > 10         # opposite signs: a clear disagreement
    assert abs(out["within_event_difference_z"]["log10_peak_amplitude"]) < 4
    # one record per event: no within-event information, said as NaN; without ids no within-event entry
    single = dict(real, event=np.array([f"r{i}" for i in range(len(real["event"]))]))
    assert np.isnan(sm.generation_trends(single, single)["real"]["within_event"]["centroid_hz"]["log10_distance"])
    plain = {k: v for k, v in real.items() if k != "event"}
    assert "within_event" not in sm.generation_trends(plain, plain)["real"]
    with pytest.raises(InputError, match="one id per record"):
        sm.generation_trends(dict(real, event=real["event"][:5]), generated)


def test_trends_reject_bad_records_naming_rows():
    real = _records(20, seed=2)
    bad = {k: v.copy() for k, v in real.items()}
    bad["magnitude"][5] = np.nan
    with pytest.raises(InputError, match=r"generated: magnitude of row 5 "):
        sm.generation_trends(real, bad)
    bad = {k: v.copy() for k, v in real.items()}
    bad["distance_km"][[3, 7]] = 0.0
    with pytest.raises(InputError, match="real: distance_km of rows 3, 7"):
        sm.generation_trends(bad, real)
    collinear = dict(real, distance_km=10 ** (0.5 * real["magnitude"]))
    with pytest.raises(InputError, match="collinear"):
        sm.generation_trends(real, collinear)
    with pytest.raises(InputError, match="missing"):
        sm.generation_trends({k: v for k, v in real.items() if k != "centroid_hz"}, real)


def test_trend_figure_png(tmp_path):
    import matplotlib.image

    path = sm.trend_figure(_records(50, 0), _records(40, 1), tmp_path / "figs" / "trends.png")
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (8 * 110, 10 * 110)   # the 10 x 8 in figure at 110 dpi
    assert image[..., :3].std() > 0.05              # something was drawn


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("fn", [sm.log_spectral_distance, sm.spectral_convergence, sm.envelope_correlation])
def test_nan_rows_named(fn):
    ref = _mags((4, 2, 8, 6))
    est = ref.copy()
    est[2, 1, 3, 0] = np.nan
    with pytest.raises(InputError, match="estimate: NaN or inf in row 2$"):
        fn(ref, est)
    ref[0, 0, 0, 0] = np.inf
    with pytest.raises(InputError, match="reference: NaN or inf in row 0$"):
        fn(ref, est)


def test_shape_and_sign_errors():
    ref = _mags((2, 3, 8, 4))
    with pytest.raises(InputError, match="differ in shape"):
        sm.log_spectral_distance(ref, ref[:, :2])
    with pytest.raises(InputError, match="negative"):
        sm.spectral_convergence(ref, ref - 1.0)
    with pytest.raises(InputError, match="frequencies"):
        sm.spectral_centroid(ref, np.arange(5))
    with pytest.raises(InputError, match="all zero"):
        sm.spectral_centroid(np.zeros((2, 1, 4, 3)), np.arange(4.0))
