"""`data build`: real SAC files with headers, corrupt inputs, catalogs, picks, windows, splits."""

import csv
import math
import os

import numpy as np
import obspy
import pandas as pd
import pytest
from obspy.core.event import Catalog, Event, Magnitude, Origin
from obspy.geodetics import gps2dist_azimuth, locations2degrees
from obspy.io import gse2
from obspy.taup import TauPyModel

from seisjax.cli import main
from seisjax.data.dataset import Dataset
from seisjax.data.ingest import BuildConfig, assign_split, build_dataset, theoretical_arrival
from seisjax.data.sources import ANY, read_catalog, read_picks
from seisjax.errors import InputError

ALASKA = "mtuq_alaska/20090407201255351"
P_TIME = obspy.UTCDateTime("2009-08-24T00:20:07.00")  # P onset on obspy's example stream (BW.RJOB)
EVENT = dict(event_id="ev1", origin_time="2009-08-24T00:20:00.00", latitude=47.5, longitude=12.5,
             depth_km=10.0, magnitude=2.1, magnitude_type="ML")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- real SAC data
def test_alaska_sac_headers_give_26_stations_with_correct_geometry(shared_data, tmp_path):
    folder = shared_data / ALASKA
    out = tmp_path / "ak"
    rc = main(["data", "build", "--waveforms", str(folder / "*.BH.?"), "--picks", str(folder / "picks.dat"),
               "--components", "ZRT", "--out", str(out), "--quiet"])
    assert rc == 0
    ds = Dataset(out)
    meta = ds.metadata
    assert len(ds) == 26 and ds.component_order == "ZRT"
    assert meta.station_code.nunique() == 26
    assert (meta.trace_components == "ZRT").all()
    picks = {}
    for line in (folder / "picks.dat").read_text().split("\n"):
        if line.strip():
            sid, p, s = line.split()
            picks[sid.split(".")[1]] = (float(p), float(s))
    for i, row in meta.iterrows():
        files = {f[-1]: f for f in row.trace_source_files.split(";")}
        headers = {c: obspy.read(files[c.lower()])[0] for c in "ZRT"}
        sac = headers["Z"].stats.sac
        # against the SAC header (float32, computed by MTUQ) and obspy computed independently
        assert row.path_ep_distance_km == pytest.approx(float(sac.dist), rel=1e-4)
        assert row.path_azimuth_deg == pytest.approx(float(sac.az), abs=0.01)
        assert row.path_back_azimuth_deg == pytest.approx(float(sac.baz), abs=0.01)
        dist_m, az, baz = gps2dist_azimuth(float(sac.evla), float(sac.evlo), float(sac.stla), float(sac.stlo))
        assert row.path_ep_distance_km == pytest.approx(dist_m / 1000, rel=1e-9)
        assert row.path_azimuth_deg == pytest.approx(az, abs=1e-9)
        assert row.path_back_azimuth_deg == pytest.approx(baz, abs=1e-9)
        assert row.path_ep_distance_deg == pytest.approx(
            locations2degrees(float(sac.evla), float(sac.evlo), float(sac.stla), float(sac.stlo)), abs=1e-9)
        # P/S samples from picks.dat (seconds after origin o) and the header's b
        p, s = picks[row.station_code]
        b, o = float(sac.b), float(sac.o)
        assert row.trace_p_arrival_sample == pytest.approx((p + o - b) * 50.0, abs=1e-3)
        assert row.trace_s_arrival_sample == pytest.approx((s + o - b) * 50.0, abs=1e-3)
        assert row.trace_p_status == "picked"
        # waveform bit for bit, in the configured order
        w = ds.get_waveforms(i)
        for ci, c in enumerate("ZRT"):
            np.testing.assert_array_equal(w[ci], headers[c].data)
    assert (out / "rejected.csv").read_text().strip() == "file,trace_id,reason,detail,starttime"


# ----------------------------------------------------------------------------- corrupt inputs
def _station(code, *, rate_e=None):
    st = obspy.read()
    for tr in st:
        tr.stats.station = code
    if rate_e:
        st.select(component="E")[0].resample(rate_e)
    return st


def _side_files(tmp_path, codes):
    catalog = tmp_path / "events.csv"
    pd.DataFrame([EVENT]).to_csv(catalog, index=False)
    stations = tmp_path / "stations.csv"
    pd.DataFrame([dict(network="BW", station=c, latitude=47.737167, longitude=12.795714, elevation_m=860.0)
                  for c in codes]).to_csv(stations, index=False)
    picks = tmp_path / "picks.csv"
    pd.DataFrame([dict(network="BW", station=c, phase="P", time=str(P_TIME), event_id="ev1")
                  for c in codes]).to_csv(picks, index=False)
    return catalog, stations, picks


@pytest.fixture
def messy_folder(tmp_path):
    """Real traces (obspy's example stream) as stations with one defect each."""
    wf = tmp_path / "wf"
    wf.mkdir()
    for code in ("GOOD1", "GOOD2"):
        _station(code).write(str(wf / f"{code}.mseed"), format="MSEED")
    st = _station("NANS")
    st[0].data[100:105] = np.nan
    st.write(str(wf / "NANS.mseed"), format="MSEED")
    st = _station("GAPS")
    z = st.select(component="Z")[0]
    first, second = z.slice(z.stats.starttime, z.stats.starttime + 10), z.slice(z.stats.starttime + 12)
    st.remove(z)
    (st + first + second).write(str(wf / "GAPS.mseed"), format="MSEED")
    st = _station("MISS")
    st.remove(st.select(component="E")[0])
    st.write(str(wf / "MISS.mseed"), format="MSEED")
    _station("RATE", rate_e=50.0).write(str(wf / "RATE.mseed"), format="MSEED")
    st = _station("NOISE")  # pure noise: low SNR
    rng = np.random.default_rng(0)
    for tr in st:
        tr.data = rng.normal(0, 100, tr.stats.npts)
    st.write(str(wf / "NOISE.mseed"), format="MSEED")
    _station("NOCRD").write(str(wf / "NOCRD.mseed"), format="MSEED")
    st = _station("LATE")  # a day later than any event
    for tr in st:
        tr.stats.starttime += 86400
    st.write(str(wf / "LATE.mseed"), format="MSEED")
    (wf / "garbage.mseed").write_bytes(b"this is not a seismogram\n" * 50)
    good = (wf / "GOOD1.mseed").read_bytes()
    (wf / "truncated.mseed").write_bytes(good[: len(good) // 2 + 100])
    codes = ["GOOD1", "GOOD2", "NANS", "GAPS", "MISS", "RATE", "NOISE", "LATE"]  # NOCRD has none
    return wf, _side_files(tmp_path, codes)


def test_corrupt_inputs_are_rejected_with_reasons_and_good_ones_kept(messy_folder, tmp_path):
    wf, (catalog, stations, picks) = messy_folder
    out = tmp_path / "out"
    report = build_dataset([str(wf)], out, catalog=catalog, stations=stations, picks=picks,
                           config=BuildConfig(progress=False))
    ds = Dataset(out)
    assert sorted(ds.metadata.station_code) == ["GOOD1", "GOOD2"]
    rejected = _rows(out / "rejected.csv")
    by_station = {}
    for row in rejected:
        station = row["trace_id"].split(".")[1] if row["trace_id"] else row["file"].rsplit("/", 1)[-1]
        by_station.setdefault(station, set()).add(row["reason"])
    assert by_station == {
        "garbage.mseed": {"unreadable_file"},
        "truncated.mseed": {"unreadable_file"},
        "NANS": {"nan_or_inf"},
        "GAPS": {"gaps"},
        "MISS": {"missing_component"},
        "RATE": {"inconsistent_sampling_rate"},
        "NOISE": {"low_snr"},
        "NOCRD": {"no_station"},
        "LATE": {"no_event"},
    }
    # the NaN trace itself is named in its own detail
    nan_rows = [r for r in rejected if r["trace_id"] == "BW.NANS..EHZ"]
    assert len(nan_rows) == 1 and "5 NaN" in nan_rows[0]["detail"]
    # every trace read is accounted for, exactly once
    n_read = 9 * 3 - 1 + 1  # 9 stations x 3 components, MISS has 2, GAPS has one extra segment
    assert report.n_traces == n_read
    assert report.n_traces_accepted == 6
    assert report.n_traces_accepted + report.n_traces_rejected == report.n_traces
    trace_rows = [r for r in rejected if r["trace_id"]]
    assert len(trace_rows) == report.n_traces_rejected
    assert len({(r["trace_id"], r["starttime"]) for r in trace_rows}) == len(trace_rows)
    assert report.n_files_unreadable == 2 == len(rejected) - len(trace_rows)
    # the kept records are the original samples, ZNE order, P where picked
    original = obspy.read()
    for i in range(len(ds)):
        w = ds.get_waveforms(i)
        for ci, c in enumerate("ZNE"):
            np.testing.assert_array_equal(w[ci], original.select(component=c)[0].data.astype(np.float32))
        assert ds.metadata.trace_p_arrival_sample[i] == pytest.approx(400.0)
        # SNR by hand: RMS 5 s after P / RMS 5 s before it, noise mean removed
        z = original.select(component="Z")[0].data.astype(np.float32).astype(np.float64)
        noise, signal = z[0:400], z[400:900]  # noise window -5..0 s is clipped at the record start
        expected = np.sqrt(np.mean((signal - noise.mean()) ** 2)) / np.std(noise)
        assert ds.metadata.trace_snr_Z[i] == pytest.approx(expected, rel=1e-9)


def test_fill_missing_zeros_keeps_the_record_and_says_which_components_are_real(messy_folder, tmp_path):
    wf, (catalog, stations, picks) = messy_folder
    out = tmp_path / "out"
    build_dataset([str(wf / "MISS.mseed")], out, catalog=catalog, stations=stations, picks=picks,
                  config=BuildConfig(fill_missing="zeros", progress=False))
    ds = Dataset(out)
    assert len(ds) == 1 and ds.metadata.trace_components[0] == "ZN"
    w = ds.get_waveforms(0)
    assert not w[2].any() and w[0].any() and w[1].any()
    assert np.isnan(ds.metadata.trace_snr_E[0])


def test_gaps_allowed_when_configured_are_counted_and_zero_filled(messy_folder, tmp_path):
    wf, (catalog, stations, picks) = messy_folder
    out = tmp_path / "out"
    build_dataset([str(wf / "GAPS.mseed")], out, catalog=catalog, stations=stations, picks=picks,
                  config=BuildConfig(max_gaps=1, progress=False))
    meta = Dataset(out).metadata
    assert meta.trace_gaps[0] == 1
    assert meta.trace_gap_s[0] == pytest.approx(2.0 - 0.01, abs=1e-6)  # 10.00 .. 12.00 minus one sample
    w = Dataset(out).get_waveforms(0)
    assert not w[0, 1001:1200].any() and w[0, 1200] != 0


def test_empty_result_is_an_error_naming_the_reasons(tmp_path):
    (tmp_path / "a.mseed").write_bytes(b"\x00" * 1000)
    (tmp_path / "b.sac").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"no record passed.*unreadable_file: 2"):
        build_dataset([str(tmp_path / "*")], tmp_path / "out", config=BuildConfig(progress=False))
    assert len(_rows(tmp_path / "out" / "rejected.csv")) == 2
    assert main(["data", "build", "--waveforms", str(tmp_path / "nothing*"), "--out", str(tmp_path / "o")]) == 2


# ----------------------------------------------------------------------------- catalogs, TauP, windows
def test_quakeml_catalog_stationxml_and_theoretical_p(tmp_path):
    wf = tmp_path / "wf"
    wf.mkdir()
    obspy.read().write(str(wf / "rjob.mseed"), format="MSEED")
    origin_time = obspy.UTCDateTime("2009-08-24T00:19:50")
    event = Event(origins=[Origin(time=origin_time, latitude=47.0, longitude=12.0, depth=8000.0)],
                  magnitudes=[Magnitude(mag=3.0, magnitude_type="ML")])
    Catalog([event]).write(str(tmp_path / "events.xml"), format="QUAKEML")
    obspy.read_inventory().write(str(tmp_path / "stations.xml"), format="STATIONXML")
    out = tmp_path / "out"
    build_dataset(str(wf / "*.mseed"), out, catalog=tmp_path / "events.xml", stations=tmp_path / "stations.xml",
                  config=BuildConfig(progress=False, snr_min=None, theoretical_s=True))
    row = Dataset(out).metadata.iloc[0]
    coords = obspy.read_inventory().get_coordinates("BW.RJOB..EHZ", origin_time)
    dist_m, az, baz = gps2dist_azimuth(47.0, 12.0, coords["latitude"], coords["longitude"])
    assert row.path_ep_distance_km == pytest.approx(dist_m / 1000, rel=1e-9)
    assert row.station_elevation_m == coords["elevation"]
    assert row.source_depth_km == 8.0 and row.source_magnitude == 3.0 and row.source_magnitude_type == "ML"
    assert row.trace_p_status == "theoretical" and row.trace_s_status == "theoretical"
    arrivals = TauPyModel("iasp91").get_travel_times(8.0, locations2degrees(47.0, 12.0, coords["latitude"],
                                                                               coords["longitude"]),
                                                     phase_list=["p", "P", "Pn", "Pg"])
    p_time = origin_time + min(a.time for a in arrivals)
    assert row.trace_p_arrival_sample == pytest.approx((p_time - obspy.read()[0].stats.starttime) * 100, abs=1e-3)
    assert theoretical_arrival("P", 8.0, 1.0) == pytest.approx(
        min(a.time for a in TauPyModel("iasp91").get_travel_times(8.0, 1.0, phase_list=["ttp"])), abs=1e-6)


def test_window_around_p_and_gse2_bulletin_picks(tmp_path):
    wf = tmp_path / "wf"
    wf.mkdir()
    obspy.read().write(str(wf / "rjob.mseed"), format="MSEED")
    catalog, stations, _ = _side_files(tmp_path, ["RJOB"])
    picks = tmp_path / "picks.csv"  # relative pick time, no network: matches by station
    pd.DataFrame([dict(station="RJOB", phase="Pg", time_after_origin_s=7.0)]).to_csv(picks, index=False)
    out = tmp_path / "out"
    build_dataset(str(wf), out, catalog=catalog, stations=stations, picks=picks,
                  config=BuildConfig(window_before=3.0, window_after=10.0, progress=False))
    ds = Dataset(out)
    assert ds.metadata.trace_npts[0] == 1300 and ds.get_waveforms(0).shape == (3, 1300)
    assert ds.metadata.trace_p_arrival_sample[0] == pytest.approx(300.0)
    np.testing.assert_array_equal(ds.get_waveforms(0)[0], obspy.read()[0].data[100:1400].astype(np.float32))
    assert obspy.UTCDateTime(ds.metadata.trace_start_time[0]) == P_TIME - 3.0
    # a window reaching past the data is too_short
    out2 = tmp_path / "out2"
    with pytest.raises(InputError, match="too_short: 3"):
        build_dataset(str(wf), out2, catalog=catalog, stations=stations, picks=picks,
                      config=BuildConfig(window_before=3.0, window_after=30.0, progress=False))
    # GSE2.0 bulletin shipped with obspy: station-only picks at the bulletin's times
    bulletin = os.path.join(os.path.dirname(gse2.__file__), "tests", "data", "bulletin", "gse_2.0_standard.txt")
    gse = read_picks(bulletin)
    geres_p = gse[(gse.station == "GERES") & (gse.phase == "P")].iloc[0]
    assert geres_p.network == ANY  # GSE2 bulletins name no network
    assert geres_p.time == obspy.UTCDateTime("1995-01-16T07:29:20.7").timestamp
    events, _ = read_catalog(bulletin)
    assert events.origin_time[0] == obspy.UTCDateTime("1995-01-16T07:26:52.4").timestamp
    assert events.latitude[0] == 39.45 and events.magnitude[0] == 3.6


def test_split_is_deterministic_by_event_and_follows_fractions():
    fractions = {"train": 0.7, "dev": 0.1, "test": 0.2}
    splits = [assign_split(f"event{i}", fractions) for i in range(20000)]
    assert splits == [assign_split(f"event{i}", fractions) for i in range(20000)]
    counts = pd.Series(splits).value_counts(normalize=True)
    for name, fraction in fractions.items():
        assert abs(counts[name] - fraction) < 0.015
    assert assign_split("x", None) is None
    assert math.isclose(sum(counts), 1.0)


def test_continuous_data_gives_one_record_per_event_when_windowed(tmp_path):
    wf = tmp_path / "wf"
    wf.mkdir()
    obspy.read().write(str(wf / "rjob.mseed"), format="MSEED")  # 30 s from 00:20:03
    _, stations, _ = _side_files(tmp_path, ["RJOB"])
    catalog = tmp_path / "two_events.csv"
    pd.DataFrame([dict(EVENT, event_id="a", origin_time="2009-08-24T00:20:00"),
                  dict(EVENT, event_id="b", origin_time="2009-08-24T00:20:10")]).to_csv(catalog, index=False)
    picks = tmp_path / "two_picks.csv"
    pd.DataFrame([dict(station="RJOB", phase="P", time="2009-08-24T00:20:07", event_id="a"),
                  dict(station="RJOB", phase="P", time="2009-08-24T00:20:19", event_id="b")]).to_csv(picks, index=False)
    out = tmp_path / "out"
    report = build_dataset(str(wf), out, catalog=catalog, stations=stations, picks=picks,
                           config=BuildConfig(window_before=2.0, window_after=5.0, snr_min=None, progress=False))
    ds = Dataset(out)
    assert list(ds.metadata.source_id) == ["a", "b"]
    data = obspy.read()[0].data.astype(np.float32)
    np.testing.assert_array_equal(ds.get_waveforms(0)[0], data[200:900])    # 00:20:05 .. 00:20:12
    np.testing.assert_array_equal(ds.get_waveforms(1)[0], data[1400:2100])  # 00:20:17 .. 00:20:24
    assert report.n_records == 2 and report.n_traces_accepted == report.n_traces == 3
    # without windows the traces make one record: the latest event with its origin before the data
    out2 = tmp_path / "out2"
    build_dataset(str(wf), out2, catalog=catalog, stations=stations, picks=picks,
                  config=BuildConfig(snr_min=None, progress=False))
    assert list(Dataset(out2).metadata.source_id) == ["a"]


@pytest.mark.parametrize("fmt", ["GSE2", "SAC"])
def test_other_obspy_formats_are_read(tmp_path, fmt):
    wf = tmp_path / "wf"
    wf.mkdir()
    st = obspy.read()
    for tr in st:
        tr.data = np.round(tr.data).astype(np.int32)  # GSE2 stores integers
        tr.write(str(wf / f"{tr.stats.channel}.{fmt.lower()}"), format=fmt)
    catalog, stations, picks = _side_files(tmp_path, ["RJOB"])
    build_dataset(str(wf), tmp_path / "out", catalog=catalog, stations=stations, picks=picks,
                  config=BuildConfig(progress=False))
    ds = Dataset(tmp_path / "out")
    assert len(ds) == 1
    for ci, c in enumerate("ZNE"):
        np.testing.assert_array_equal(ds.get_waveforms(0)[ci], st.select(component=c)[0].data.astype(np.float32))
