"""Scenario ``teleseismic-p``, checked against independent computations: arrivals and polarities
against obspy's TauP and Aki & Richards, STFs and Green's functions against the records, the drawn
SNR, the network's HEALPix groups, the dataset's layout and its determinism."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pandas as pd
import pytest
from obspy.geodetics import gps2dist_azimuth

from seisjax.data.dataset import Dataset
from seisjax.data.grouping import group_traces
from seisjax.data.synthetic import default_config, read_truth, scenario_config, synthesize
from tests.data.synthetic.conftest import (TAUP, TELE_BARE, TELE_SIGNAL, aki_richards_p, first_arrival,
                                           make_dataset, peak_time, seconds_after_origin)


@pytest.fixture(scope="module")
def tele_bare(tmp_path_factory):
    return make_dataset(tmp_path_factory, "teleseismic-p", "tele_bare", TELE_BARE)


@pytest.fixture(scope="module")
def tele_signal(tmp_path_factory):
    return make_dataset(tmp_path_factory, "teleseismic-p", "tele_signal", {**TELE_SIGNAL, "noise.enabled": False}, seed=2)


@pytest.fixture(scope="module")
def tele_noisy(tmp_path_factory):
    return make_dataset(tmp_path_factory, "teleseismic-p", "tele_noisy", TELE_SIGNAL, seed=2, figure=True)



def test_teleseismic_arrivals_match_taup(tele_bare):
    """Peaks of P, pP and sP in noise-free impulsive records sit at obspy TauP's times (computed here
    directly, not from the generator's grid) plus the true timing error, to a tenth of a second."""
    ds = Dataset(tele_bare)
    truth = read_truth(tele_bare)["traces"]
    meta = ds.metadata
    fs = float(meta.trace_sampling_rate_hz.iloc[0])
    checked = {"P": 0, "pP": 0, "sP": 0}
    for i in range(0, len(meta), 3):
        row, tr = meta.iloc[i], truth.iloc[i]
        x = ds.get_waveforms(i)[0].astype(float)
        start = seconds_after_origin(row)
        arrivals = {a.name: a.time for a in TAUP.get_travel_times(row.source_depth_km, row.path_ep_distance_deg,
                                                                  phase_list=["P", "pP", "sP"])}
        for phase, amp in (("P", tr.amplitude_p), ("pP", tr.amplitude_pp), ("sP", tr.amplitude_sp)):
            strongest = np.abs([tr.amplitude_p, tr.amplitude_pp, tr.amplitude_sp]).max()
            if phase not in arrivals or abs(amp) < 0.2 * strongest:
                continue
            expected = arrivals[phase] + tr.time_error_s - start
            got, _ = peak_time(x, expected * fs, 1.5, fs)
            assert abs(got - expected) < 0.1, (phase, row.station_code, got, expected)
            checked[phase] += 1
        # the metadata pick is the true onset: TauP P + timing error
        assert abs(row.trace_p_arrival_sample / fs - (arrivals["P"] + tr.time_error_s - start)) < 0.1
    assert checked["P"] >= 5 and checked["pP"] + checked["sP"] >= 5, checked


def test_teleseismic_polarity_is_the_radiation_pattern(tele_bare):
    """Sign of the P spike = sign of Aki & Richards' F_P at TauP's take-off angle and the station
    azimuth (obspy's geodesic), for every trace away from the nodal planes."""
    ds = Dataset(tele_bare)
    meta = ds.metadata
    fs = float(meta.trace_sampling_rate_hz.iloc[0])
    n_checked = 0
    for i, row in meta.iterrows():
        takeoff = first_arrival(row.source_depth_km, row.path_ep_distance_deg, ("P",)).takeoff_angle
        _, azimuth, _ = gps2dist_azimuth(row.source_latitude_deg, row.source_longitude_deg,
                                         row.station_latitude_deg, row.station_longitude_deg)
        f_p = aki_richards_p(row.source_strike_deg, row.source_dip_deg, row.source_rake_deg, takeoff, azimuth)
        if abs(f_p) < 0.1:
            continue
        _, value = peak_time(ds.get_waveforms(i)[0].astype(float), row.trace_p_arrival_sample, 1.0, fs)
        assert np.sign(value) == np.sign(f_p) == row.trace_polarity, (row.station_code, value, f_p)
        n_checked += 1
    assert n_checked >= 20


def test_stfs_integrate_to_the_moment_and_rebuild_the_records(tele_signal):
    """truth.h5 STFs sum to M0 = 10^(1.5 Mw + 9.1) of the catalogue magnitude; and the stored Green's
    functions convolved with the (directivity-stretched) STF and delayed by the timing error give the
    noise-free records back."""
    truth = read_truth(tele_signal, green=True)
    events, traces, stf, green = truth["events"], truth["traces"], truth["stf"], truth["green"]
    fs = truth["attrs"]["stf_sampling_rate_hz"]
    meta = Dataset(tele_signal).metadata
    for e, ev in events.iterrows():
        mw = meta.loc[meta.source_id == ev.source_id, "source_magnitude"].iloc[0]
        np.testing.assert_allclose(stf[e].sum() / fs, ev.moment_nm, rtol=1e-9)
        np.testing.assert_allclose(ev.moment_nm, 10 ** (1.5 * mw + 9.1), rtol=5e-3)
        t = np.arange(stf.shape[1]) / fs
        assert np.all(stf[e] >= 0) and np.all(stf[e][t >= ev.duration_s + 1 / fs] == 0)
    assert traces.stf_time_scale.min() < 0.99 or events.directivity.sum() == 0  # directivity present
    ds = Dataset(tele_signal)
    n = green.shape[1]
    n_fft = 4 * n
    freqs = np.fft.rfftfreq(n_fft, 1 / fs)
    for i in range(0, len(traces), 7):
        tr = traces.iloc[i]
        e = int(np.flatnonzero(events.source_id == tr.source_id)[0])
        scale = tr.stf_time_scale
        cumulative = np.concatenate([[0.0], np.cumsum(stf[e]) / fs])
        edges = np.arange(stf.shape[1] + 1) / fs
        apparent = np.diff(np.interp(edges / scale, edges, cumulative)) * fs
        spectrum = np.fft.rfft(apparent, n_fft) * np.fft.rfft(green[i], n_fft) / fs
        rebuilt = np.fft.irfft(spectrum * np.exp(-2j * np.pi * freqs * tr.time_error_s), n_fft)[:n]
        record = ds.get_waveforms(i)[0].astype(float)
        err = np.abs(rebuilt - record).max() / np.abs(record).max()
        assert err < (1e-4 if scale == 1.0 else 2e-2), (i, scale, err)


def test_teleseismic_snr_is_as_drawn(tele_signal, tele_noisy):
    """Noise = noisy - noise-free record (same seed: the noise has its own random stream). Its RMS
    in the noise window and the signal's in the signal window give exactly the drawn SNR; measured on
    the noisy record alone, as seisjax.data.quality does, the SNR (noise power removed) agrees too."""
    clean, noisy = Dataset(tele_signal), Dataset(tele_noisy)
    truth = read_truth(tele_noisy)["traces"]
    cfg = default_config("teleseismic-p")
    fs = cfg.sampling_rate_hz
    exact, measured = [], []
    for i in range(len(truth)):
        s = clean.get_waveforms(i)[0].astype(float)
        x = noisy.get_waveforms(i)[0].astype(float)
        p = truth.p_arrival_sample.iloc[i]
        nw = slice(int(round(p + cfg.snr.noise_window_s[0] * fs)), int(round(p + cfg.snr.noise_window_s[1] * fs)))
        sw = slice(int(round(p + cfg.snr.signal_window_s[0] * fs)), int(round(p + cfg.snr.signal_window_s[1] * fs)))
        noise = x - s
        exact.append(np.sqrt(np.mean(s[sw] ** 2)) / np.std(noise[nw]))
        ratio = np.sqrt(np.mean((x[sw] - x[nw].mean()) ** 2)) / np.std(x[nw])
        measured.append(np.sqrt(max(ratio ** 2 - 1.0, 0.0)))
    drawn = truth.snr.to_numpy()
    np.testing.assert_allclose(exact, drawn, rtol=2e-3)
    np.testing.assert_allclose(noisy.metadata.trace_snr_db, 20 * np.log10(drawn), atol=1e-3)
    rel = np.abs(np.array(measured) / drawn - 1)
    assert np.median(rel) < 0.15 and np.quantile(rel, 0.9) < 0.4, (np.median(rel), np.quantile(rel, 0.9))


def test_default_network_fills_healpix_groups(tmp_path):
    """With the default global network, every event has (event, pixel) groups of more than 20
    stations at nside 4 (seisjax.data.grouping), the SymAE data requirement."""
    config = scenario_config("teleseismic-p", {"source.depth_km": (200.0, 260.0), "taup.depth_step_km": 30.0,
                                               "noise.enabled": False, "truth.store_green_functions": False},
                             events=3, seed=4)
    out = synthesize(config, tmp_path / "net", figure=False, progress=False)
    meta = Dataset(out).metadata
    assert meta.groupby("source_id").size().min() > 300  # hundreds of stations per event
    groups = group_traces(meta, nside=4, min_stations=21)
    per_event = groups.groupby("source_id").size()
    assert len(per_event) == 3 and per_event.min() >= 3, per_event



def test_teleseismic_dataset_and_truth_layout(tele_noisy):
    ds = Dataset(tele_noisy)
    meta = ds.metadata
    assert ds.component_order == "Z" and ds.sampling_rate == 10.0
    wave = ds.get_waveforms([0, 1])
    assert wave.shape == (2, 1, 3600) and wave.dtype == np.float32
    for column in ("source_id", "source_origin_time", "source_latitude_deg", "source_longitude_deg",
                   "source_depth_km", "source_magnitude", "source_strike_deg", "source_dip_deg", "source_rake_deg",
                   "station_network_code", "station_code", "station_latitude_deg", "station_longitude_deg",
                   "path_ep_distance_deg", "path_azimuth_deg", "path_back_azimuth_deg", "trace_start_time",
                   "trace_sampling_rate_hz", "trace_p_arrival_sample", "trace_p_predicted_sample",
                   "trace_snr_db", "trace_polarity", "split"):
        assert column in meta.columns, column
    assert meta.path_ep_distance_deg.between(30.0, 90.0).all()
    with h5py.File(tele_noisy / "truth.h5", "r") as h5:
        assert h5["events/stf"].shape[0] == meta.source_id.nunique()
        assert h5["events/stf"].attrs["sampling_rate_hz"] == 10.0
        assert h5["traces/green"].shape == (len(meta), 3600)
        names = [n.decode() for n in h5["traces/trace_name"][()]]
    assert names == meta.trace_name.tolist()
    truth = read_truth(tele_noisy)["traces"]
    np.testing.assert_allclose((meta.trace_p_arrival_sample - meta.trace_p_predicted_sample) / 10.0,
                               truth.time_error_s, atol=2e-3)
    assert (tele_noisy / "figures" / "synthetic_teleseismic-p.png").stat().st_size > 10_000


def _digest(path):
    return hashlib.sha256((path / "waveforms.hdf5").read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path, tele_noisy):
    """Same seed -> byte-identical waveforms.hdf5 (also when the stations are synthesised in chunks of
    another size); another seed -> other events and waveforms."""
    again = synthesize(scenario_config("teleseismic-p", {**TELE_SIGNAL, "memory.traces_per_chunk": 5}, events=2, seed=2),
                       tmp_path / "again", figure=False, progress=False)
    assert _digest(again) == _digest(tele_noisy)
    pd.testing.assert_frame_equal(Dataset(again).metadata, Dataset(tele_noisy).metadata)
    other = synthesize(scenario_config("teleseismic-p", TELE_SIGNAL, events=2, seed=3), tmp_path / "other",
                       figure=False, progress=False)
    a, b = Dataset(other), Dataset(tele_noisy)
    assert not a.metadata.source_latitude_deg.equals(b.metadata.source_latitude_deg)
    n = min(len(a), len(b))
    assert not np.array_equal(a.get_waveforms(list(range(n))), b.get_waveforms(list(range(n))))

