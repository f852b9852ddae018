"""FDSN download: query building, TauP windows, bulk lines and response handling, offline.

The network is replaced by ``ShippedResponses``, a small client whose three methods answer from the
example responses that obspy ships (QuakeML, StationXML / FDSN station text, SAC and miniSEED files
under obspy's test data folders), applying the server-side filters a real FDSN service applies. It is
a stand-in for the network, not a mock of our code: every function of seisjax.data.fdsn runs for real.
"""

import csv
import os

import numpy as np
import obspy
import pandas as pd
import pytest
from obspy import UTCDateTime
from obspy.clients.fdsn.header import FDSNNoDataException
from obspy.core.inventory import Channel, Inventory, Network, Station
from obspy.geodetics import gps2dist_azimuth, locations2degrees
from obspy.taup import TauPyModel

from seisjax.data.dataset import Dataset
from seisjax.data.fdsn import (DownloadRequest, bulk_lines, download, event_query, save_waveforms,
                               station_query)
from seisjax.data.ingest import BuildConfig, build_dataset
from seisjax.data.sources import events_from_catalog, read_catalog, read_stations, stations_from_inventory

OBSPY = os.path.dirname(obspy.__file__)
FDSN_DATA = os.path.join(OBSPY, "clients", "fdsn", "tests", "data")
IRIS_EVENTS = os.path.join(OBSPY, "io", "quakeml", "tests", "data", "iris_events.xml")
USGS_EVENT = os.path.join(OBSPY, "io", "quakeml", "tests", "data", "usgs_event.xml")
TLY_SAC = os.path.join(OBSPY, "realtime", "tests", "data", "II.TLY.BHZ.SAC")  # Tohoku 2011 at II.TLY


def _first_p(depth_km, distance_deg):
    arrivals = TauPyModel("iasp91").get_travel_times(depth_km, distance_deg, phase_list=["ttp"])
    return min(a.time for a in arrivals)


def _tly_inventory():
    """II.TLY channel from the coordinates in the shipped SAC file's header."""
    sac = obspy.read(TLY_SAC, headonly=True)[0].stats.sac
    lat, lon, elev = float(sac.stla), float(sac.stlo), float(sac.stel)
    channel = Channel("BHZ", "00", lat, lon, elev, float(sac.stdp), sample_rate=20.0,
                      start_date=UTCDateTime(2000, 1, 1))
    return Inventory([Network("II", stations=[Station("TLY", lat, lon, elev, channels=[channel],
                                                      start_date=UTCDateTime(2000, 1, 1))])], source="test")


class ShippedResponses:
    """get_events / get_stations / get_waveforms_bulk answered from obspy's shipped files."""

    def __init__(self):
        self.calls = []

    def get_events(self, **query):
        self.calls.append(("events", query))
        catalog = obspy.read_events(IRIS_EVENTS)
        catalog = catalog.filter(f"time >= {query['starttime']}", f"time <= {query['endtime']}")
        if "minmagnitude" in query:
            catalog = catalog.filter(f"magnitude >= {query['minmagnitude']}")
        if not len(catalog):
            raise FDSNNoDataException("No data available for request.")
        return catalog

    def get_stations(self, **query):
        self.calls.append(("stations", query))
        inventory = (_tly_inventory() + obspy.read_inventory(os.path.join(FDSN_DATA, "AU.MEEK.xml"))
                     + obspy.read_inventory(os.path.join(FDSN_DATA, "channel_level_fdsn.txt")))
        selected = Inventory([], source="test")
        for network in query["network"].split(","):
            for channel in query["channel"].split(","):
                selected += inventory.select(network=network, channel=channel, time=query["starttime"])
        for net in selected:
            for sta in net:
                sta.channels = [c for c in sta.channels if locations2degrees(
                    query["latitude"], query["longitude"], c.latitude, c.longitude) <= query["maxradius"]]
        if not any(sta.channels for net in selected for sta in net):
            raise FDSNNoDataException("No data available for request.")
        return selected

    def get_waveforms_bulk(self, bulk):
        self.calls.append(("waveforms", bulk))
        available = obspy.read(TLY_SAC) + obspy.read(os.path.join(FDSN_DATA, "bulk.mseed"))
        out = obspy.Stream()
        for net, sta, loc, cha, t1, t2 in bulk:
            out += available.select(network=net, station=sta, location=loc, channel=cha).slice(t1, t2)
        if not len(out):
            raise FDSNNoDataException("No data available for request.")
        return out


def test_event_query_and_quakeml_response():
    request = DownloadRequest(starttime="2011-03-01", endtime="2011-03-31", minmagnitude=7.0,
                              minlatitude=30, maxlatitude=45, minlongitude=130, maxlongitude=150, event_limit=5)
    query = event_query(request)
    assert query == dict(starttime=UTCDateTime(2011, 3, 1), endtime=UTCDateTime(2011, 3, 31), orderby="time-asc",
                         minmagnitude=7.0, minlatitude=30, maxlatitude=45, minlongitude=130, maxlongitude=150,
                         limit=5)
    events = events_from_catalog(ShippedResponses().get_events(**query))
    assert list(events.event_id) == ["3279407"]
    row = events.iloc[0]
    assert row.origin_time == UTCDateTime("2011-03-11T05:46:24.12").timestamp
    assert (row.latitude, row.longitude, row.magnitude, row.magnitude_type) == (38.297, 142.373, 9.1, "MW")
    assert row.depth_km == pytest.approx(0.029)  # QuakeML depth is in metres
    with pytest.raises(Exception, match="endtime"):
        event_query(DownloadRequest(starttime="2011-03-02", endtime="2011-03-01"))


def test_bulk_lines_follow_epochs_distances_and_taup():
    events, _ = read_catalog(USGS_EVENT)   # 2014-11-06 M1.5, southern California
    event = events.iloc[0]
    stations = read_stations(os.path.join(FDSN_DATA, "channel_level_fdsn.txt"))
    meek = stations_from_inventory(obspy.read_inventory(os.path.join(FDSN_DATA, "AU.MEEK.xml")))
    stations = pd.concat([stations, meek], ignore_index=True)
    request = DownloadRequest(starttime="2014-11-01", endtime="2014-11-30", channels="LHZ,SHE",
                              window_before=30, window_after=120)
    lines = bulk_lines(request, event, stations)
    # AU.MEEK closed in 2008; AK.BWN and AZ.BZN have several epochs but one line each
    assert [line[:4] for line in lines] == [("AK", "BAGL", "", "LHZ"), ("AK", "BWN", "", "LHZ"),
                                            ("AZ", "BZN", "", "LHZ")]
    coords = {"BAGL": (60.4896, -142.0915), "BWN": (64.1732, -149.2991), "BZN": (33.4915, -116.667)}
    origin = UTCDateTime(event.origin_time)
    for net, sta, loc, cha, t1, t2 in lines:
        p = _first_p(event.depth_km, locations2degrees(event.latitude, event.longitude, *coords[sta]))
        assert abs((t1 - (origin + p - 30))) < 1e-3 and abs(t2 - (origin + p + 120)) < 1e-3
    near = bulk_lines(DownloadRequest(starttime="2014-11-01", endtime="2014-11-30", channels="LHZ",
                                      max_distance_deg=10.0), event, stations)
    assert [line[1] for line in near] == ["BZN"]
    assert bulk_lines(DownloadRequest(starttime="2014-11-01", endtime="2014-11-30", channels="BH?"),
                      event, stations) == []


def test_miniseed_response_written_per_station_bit_for_bit(tmp_path):
    response = obspy.read(os.path.join(FDSN_DATA, "bulk.mseed"))
    files = save_waveforms(response, tmp_path)
    assert [f.name for f in files] == ["TA.A25A..mseed"]
    back = obspy.read(str(files[0]))
    assert sorted(tr.id for tr in back) == sorted(tr.id for tr in response)
    for tr in response:
        match = [t for t in back.select(id=tr.id) if t.stats.starttime == tr.stats.starttime]
        assert len(match) == 1 and match[0].data.dtype == tr.data.dtype
        np.testing.assert_array_equal(match[0].data, tr.data)


def test_download_then_build_from_shipped_responses(tmp_path):
    client = ShippedResponses()
    request = DownloadRequest(starttime="2011-03-01", endtime="2011-03-31", minmagnitude=7.0,
                              networks="II,AU,AK", channels="BHZ,SHE,LHZ", max_distance_deg=90.0,
                              window_before=60.0, window_after=240.0)
    report = download(request, tmp_path / "dl", client, progress=False)
    assert report.n_events == 1 and report.n_lines == 2
    assert (report.n_lines_ok, report.n_lines_no_data, report.n_lines_failed) == (1, 1, 0)
    kind, query = client.calls[1]
    assert kind == "stations" and query == station_query(request, events_from_catalog(
        obspy.read_events(str(tmp_path / "dl" / "events.xml"))).iloc[0])
    with open(tmp_path / "dl" / "requests.csv", newline="") as f:
        log = {(r["network"], r["station"]): r["status"] for r in csv.DictReader(f)}
    assert log == {("II", "TLY"): "ok", ("AK", "BWN"): "no_data"}  # BWN was open in 2011 but has no data here
    # the saved window is the shipped SAC data around TauP P, sample for sample
    saved = obspy.read(str(tmp_path / "dl" / "waveforms" / "3279407" / "II.TLY.00.mseed"))[0]
    source = obspy.read(TLY_SAC)[0]
    offset = int(round((saved.stats.starttime - source.stats.starttime) * 20))
    np.testing.assert_array_equal(saved.data, source.data[offset:offset + saved.stats.npts])
    origin = UTCDateTime("2011-03-11T05:46:24.12")
    distance = locations2degrees(38.297, 142.373, 51.6807, 103.6438)
    p_time = origin + _first_p(0.029, distance)
    assert abs(saved.stats.starttime - (p_time - 60)) <= 0.5 / 20
    # and `data build` reads the folder as it is
    out = tmp_path / "dataset"
    build = build_dataset([str(tmp_path / "dl" / "waveforms" / "**" / "*.mseed")], out,
                          catalog=tmp_path / "dl" / "events.xml", stations=tmp_path / "dl" / "stations.xml",
                          config=BuildConfig(components="Z", progress=False))
    assert build.n_records == 1
    row = Dataset(out).metadata.iloc[0]
    assert str(row.source_id) == "3279407"
    assert row.trace_p_status == "theoretical"
    assert row.trace_p_arrival_sample == pytest.approx((p_time - UTCDateTime(row.trace_start_time)) * 20, abs=1e-3)
    assert abs(row.trace_p_arrival_sample - 1200) <= 1
    dist_m, az, baz = gps2dist_azimuth(38.297, 142.373, float(np.float32(51.6807)), float(np.float32(103.6438)))
    assert row.path_ep_distance_km == pytest.approx(dist_m / 1000, rel=1e-6)
    assert row.trace_snr_Z > 10  # a magnitude 9 P wave
