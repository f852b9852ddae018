"""Scenario ``local``, checked against independent computations: P and S picks against obspy's
TauP, first motions against Aki & Richards, corner frequencies against Brune, and the dataset's
columns, truth and SNR."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
from obspy.geodetics import gps2dist_azimuth

from seisjax.data.dataset import Dataset
from seisjax.data.synthetic import default_config, read_truth
from tests.data.synthetic.conftest import (LOCAL_BARE, LOCAL_NOISY, LOCAL_PHYSICAL, TAUP, aki_richards_p,
                                           first_arrival, make_dataset, seconds_after_origin)


@pytest.fixture(scope="module")
def local_bare(tmp_path_factory):
    return make_dataset(tmp_path_factory, "local", "local_bare", LOCAL_BARE, events=3)


@pytest.fixture(scope="module")
def local_physical(tmp_path_factory):
    return make_dataset(tmp_path_factory, "local", "local_physical", LOCAL_PHYSICAL, events=3)


@pytest.fixture(scope="module")
def local_noisy(tmp_path_factory):
    return make_dataset(tmp_path_factory, "local", "local_noisy", LOCAL_NOISY, events=6, figure=True)



def test_local_arrivals_match_taup(local_bare):
    """P and S picks in the metadata are obspy TauP's first arrivals (p/P/Pn, s/S/Sn) for the event
    depth and distance, and the noise-free records start moving at the P pick."""
    ds = Dataset(local_bare)
    meta = ds.metadata
    for i, row in meta.iterrows():
        fs = row.trace_sampling_rate_hz
        start = seconds_after_origin(row)
        tp = first_arrival(row.source_depth_km, row.path_ep_distance_deg, ("p", "P", "Pn")).time
        ts = first_arrival(row.source_depth_km, row.path_ep_distance_deg, ("s", "S", "Sn")).time
        assert abs(row.trace_p_arrival_sample / fs + start - tp) < 0.05, (row.station_code, tp)
        assert abs(row.trace_s_arrival_sample / fs + start - ts) < 0.08, (row.station_code, ts)
        z = ds.get_waveforms(i)[0].astype(float)
        window = z[: int(row.trace_p_arrival_sample + 0.5 * (ts - tp) * fs)]
        onset = np.flatnonzero(np.abs(window) > 0.2 * np.abs(window).max())[0]
        assert abs(onset - row.trace_p_arrival_sample) <= 2, (row.station_code, onset, row.trace_p_arrival_sample)


def test_local_polarity_is_the_radiation_pattern(local_physical):
    """First motion on Z (after attenuation, site and instrument) has the sign of Aki & Richards' F_P
    at the TauP take-off angle of the first P and obspy's azimuth, away from nodal planes."""
    ds = Dataset(local_physical)
    meta = ds.metadata
    n_checked = 0
    for i, row in meta.iterrows():
        first_p = first_arrival(row.source_depth_km, row.path_ep_distance_deg, ("p", "P", "Pn"))
        _, azimuth, _ = gps2dist_azimuth(row.source_latitude_deg, row.source_longitude_deg,
                                         row.station_latitude_deg, row.station_longitude_deg)
        f_p = aki_richards_p(row.source_strike_deg, row.source_dip_deg, row.source_rake_deg,
                              first_p.takeoff_angle, azimuth)
        if abs(f_p) < 0.15:
            continue
        fs = row.trace_sampling_rate_hz
        z = ds.get_waveforms(i)[0].astype(float)
        p = int(row.trace_p_arrival_sample)
        window = z[p - int(0.1 * fs): p + int(0.3 * fs)]
        first = window[np.flatnonzero(np.abs(window) > 0.2 * np.abs(window).max())[0]]
        assert np.sign(first) == np.sign(f_p) == row.trace_polarity, (row.station_code, first, f_p)
        n_checked += 1
    assert n_checked >= 10


def test_local_corner_frequency_is_brune(local_bare):
    """The displacement spectrum of the noise-free P pulse, fitted with an omega-squared model, has
    its corner within 10% of Brune's fc = 0.49 beta (stress drop / M0)^(1/3) computed here from the
    catalogue magnitude and the iasp91 shear speed at the source depth."""
    ds = Dataset(local_bare)
    meta = ds.metadata
    cfg = default_config("local")
    v_mod = TAUP.model.s_mod.v_mod
    for source_id, group in meta.groupby("source_id"):
        row = group.sort_values("path_ep_distance_km").iloc[-1]  # longest P window before S
        i = int(row.name)
        fs = row.trace_sampling_rate_hz
        z = ds.get_waveforms(i)[0].astype(float)
        p, s = int(row.trace_p_arrival_sample), int(row.trace_s_arrival_sample)
        disp = np.cumsum(z[p - int(0.2 * fs): s - int(0.2 * fs)]) / fs
        spec = np.abs(np.fft.rfft(disp - disp[0], n=len(disp) * 4))
        f = np.fft.rfftfreq(len(disp) * 4, 1 / fs)
        band = (f > 0.3) & (f < 25.0)
        model = lambda f, log_omega, log_fc: log_omega - np.log(1 + (f / np.exp(log_fc)) ** 2)  # noqa: E731
        (_, log_fc), _ = scipy.optimize.curve_fit(model, f[band], np.log(spec[band]), p0=(np.log(spec[1]), np.log(5.0)))
        m0 = 10 ** (1.5 * row.source_magnitude + 9.1)
        beta = float(np.ravel(v_mod.evaluate_below(row.source_depth_km, "S"))[0]) * 1e3
        fc = 0.49 * beta * (cfg.source.stress_drop_mpa * 1e6 / m0) ** (1 / 3)
        assert abs(np.exp(log_fc) / fc - 1) < 0.1, (source_id, np.exp(log_fc), fc)


def test_local_dataset_columns_truth_and_snr(local_noisy):
    """The local dataset opens with Dataset, mixes instrument families with their own rates, carries
    the label columns (equal to truth.h5), and realises the drawn SNR on Z."""
    ds = Dataset(local_noisy)
    meta = ds.metadata
    assert ds.component_order == "ZNE" and ds.sampling_rate is None
    for column in ("source_id", "source_magnitude", "source_latitude_deg", "source_depth_km", "station_code",
                   "station_channel_code", "trace_sampling_rate_hz", "trace_p_arrival_sample",
                   "trace_s_arrival_sample", "trace_polarity", "path_distance_class", "path_ep_distance_km",
                   "trace_snr_db", "split"):
        assert column in meta.columns, column
    rates = {"HH": 100.0, "BH": 40.0, "EH": 100.0}
    assert all(rates[c] == r for c, r in zip(meta.station_channel_code, meta.trace_sampling_rate_hz))
    assert set(meta.path_distance_class) == {"local", "teleseismic"}
    local = meta.path_distance_class == "local"
    assert meta.path_ep_distance_km[local].max() < 150.0
    assert meta.path_ep_distance_km[~local].between(1000.0, 10000.0).all()
    assert meta.trace_s_arrival_sample[~local].isna().all()  # S after the 80 s window at >= 1000 km
    assert set(meta.station_code) <= {f"SJ{i:02d}" for i in range(1, 13)}
    truth = read_truth(local_noisy)
    np.testing.assert_array_equal(truth["traces"].polarity, meta.trace_polarity)
    np.testing.assert_array_equal(truth["traces"].distance_class, meta.path_distance_class)
    # each event lies in one split
    assert (meta.groupby("source_id").split.nunique() == 1).all()
    rel = []
    for i, row in meta.iterrows():
        z = ds.get_waveforms(i)[0].astype(float)
        fs, p = row.trace_sampling_rate_hz, row.trace_p_arrival_sample
        noise, sig = z[int(round(p - 5 * fs)): int(round(p))], z[int(round(p)): int(round(p + 5 * fs))]
        ratio = np.sqrt(np.mean((sig - noise.mean()) ** 2)) / np.std(noise)
        rel.append(np.sqrt(max(ratio ** 2 - 1, 0)) / 10 ** (row.trace_snr_db / 20) - 1)
    assert np.median(np.abs(rel)) < 0.1, np.median(np.abs(rel))

