"""Quality metrics: SNR against hand computation and known truth, gaps/overlaps against the segments
we cut, and the default (seed study) filter thresholds."""

import numpy as np
import obspy
import pandas as pd
import pytest

from seisjax.data.quality import QualityFilter, gap_stats, snr, snr_db


def test_snr_matches_a_hand_computation_on_a_real_trace():
    data = obspy.read()[0].data.astype(np.float64)  # BW.RJOB EHZ, 100 Hz, P near sample 400
    p = 700
    noise, signal = data[700 - 300:700 - 50], data[700:700 + 200]
    expected = np.sqrt(np.mean((signal - noise.mean()) ** 2)) / noise.std()
    got = snr(data[None], p, 100.0, noise_window=(-3.0, -0.5), signal_window=(0.0, 2.0))
    assert got.shape == (1,) and got[0] == pytest.approx(expected, rel=1e-12)
    # a DC offset (raw counts) does not change it
    assert snr(data[None] + 1e6, p, 100.0, noise_window=(-3.0, -0.5), signal_window=(0.0, 2.0))[0] == \
        pytest.approx(expected, rel=1e-6)


def test_snr_recovers_the_known_ratio_of_synthetic_records():
    rng = np.random.default_rng(1)
    fs, n, p = 100.0, 20000, 10000
    amplitudes = np.array([0.0, 1.0, 3.0, 10.0])
    noise = rng.normal(0.0, 1.0, (len(amplitudes), n))
    t = np.arange(n) / fs
    wave = amplitudes[:, None] * np.sin(2 * np.pi * 2.0 * t) * (np.arange(n) >= p)
    got = snr(noise + wave, p, fs, noise_window=(-90.0, 0.0), signal_window=(0.0, 90.0))
    truth = np.sqrt(1.0 + amplitudes ** 2 / 2.0)  # RMS(noise + sine) / RMS(noise)
    np.testing.assert_allclose(got, truth, rtol=0.03)
    np.testing.assert_allclose(snr_db(got), 20 * np.log10(got))


def test_snr_windows_outside_the_record_or_silent_noise_give_nan():
    data = np.ones((2, 1000))
    data[1, :500] = 0.0  # zero noise: no finite ratio
    assert np.isnan(snr(data, 0, 100.0)).all()          # no noise window before sample 0
    out = snr(data, 500, 100.0)
    assert np.isnan(out[1]) and out[0] != 0


def _gappy_stream():
    tr = obspy.read()[0]  # 30 s at 100 Hz from 00:20:03
    t0 = tr.stats.starttime
    a = tr.slice(t0, t0 + 10)             # 10.00 s
    b = tr.slice(t0 + 12, t0 + 20)        # gap 10.00 -> 12.00
    c = tr.slice(t0 + 19, t0 + 25)        # overlaps b by 1 s
    d = tr.slice(t0 + 28, t0 + 29.99)     # gap 25.00 -> 28.00
    return obspy.Stream([a, b, c, d])


def test_gap_stats_count_and_length_of_gaps_and_overlaps():
    stats = gap_stats(_gappy_stream())
    assert stats.gaps == 2 and stats.overlaps == 1
    # obspy reports a gap as the time between the last sample and the next first sample minus one delta
    assert stats.gap_seconds == pytest.approx((2.0 - 0.01) + (3.0 - 0.01), abs=1e-6)
    assert stats.overlap_seconds == pytest.approx(1.0 + 0.01, abs=1e-6)
    assert gap_stats(obspy.Stream([obspy.read()[0]])).gaps == 0


def test_default_filter_is_the_seed_study_one():
    f = QualityFilter()
    assert (f.snr_min, f.max_gaps, f.max_overlaps) == (1.5, 0, 0)
    assert f.check_snr(np.array([1.2, 1.5, np.nan]), "ZNE")[0] == "low_snr"   # must exceed 1.5
    assert f.check_snr(np.array([1.2, 1.51, np.nan]), "ZNE") is None
    assert f.check_snr(np.array([np.nan] * 3), "ZNE")[0] == "too_short"
    assert QualityFilter(snr_min=None).check_snr(np.array([0.1, 0.1, 0.1]), "ZNE") is None
    gappy = {"Z": gap_stats(_gappy_stream()), "N": gap_stats(obspy.Stream([obspy.read()[1]]))}
    reason, detail = f.check_gaps(gappy)
    assert reason == "gaps" and "component Z: 2 gap(s)" in detail
    assert QualityFilter(max_gaps=2).check_gaps(gappy)[0] == "overlaps"
    assert QualityFilter(max_gaps=2, max_overlaps=None).check_gaps(gappy) is None
    table = pd.DataFrame({"trace_snr_Z": [2.0, 1.0, np.nan, 1.6], "trace_snr_N": [0.5, 1.4, np.nan, np.nan],
                          "trace_snr_E": [0.1, 1.5, np.nan, 1.0], "trace_gaps": [0, 0, 0, 1],
                          "trace_overlaps": [0, 0, 0, 0]})
    np.testing.assert_array_equal(f.mask(table, "ZNE"), [True, False, False, False])
