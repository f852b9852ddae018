"""Download events and waveforms around the P arrival from an FDSN service, as `data build` input.

The library part of ``scripts/download_fdsn.py``. Network access happens only through a ``client``
object with obspy's ``Client`` methods ``get_events``, ``get_stations`` and
``get_waveforms_bulk``; the script creates ``obspy.clients.fdsn.Client`` and passes it in, so every
step here (query building, TauP windows, bulk request lines, writing the responses) runs and is
tested offline.

Steps (``download``):

1. ``client.get_events(**event_query(request))`` -> events (time, magnitude, region, depth).
2. Per event: ``client.get_stations(**station_query(request, event))`` at channel level, within the
   distance range around the epicentre.
3. ``bulk_lines(request, event, stations)``: one line ``(net, sta, loc, cha, t1, t2)`` per channel
   operating at the origin time, with ``t1 = origin + P - window_before`` and
   ``t2 = origin + P + window_after``, P the first TauP arrival for the event depth and distance.
4. ``client.get_waveforms_bulk(lines)`` in chunks of ``bulk_size`` lines; each response is written as
   miniSEED, one file per station (``waveforms/<event_id>/<NET>.<STA>.<LOC>.mseed``).

Output folder: ``events.xml`` (QuakeML), ``stations.xml`` (StationXML), ``waveforms/``,
``requests.csv`` (every bulk line with its outcome: ``ok``, ``no_data`` or ``error: ...``). It is
exactly what ``data build --waveforms OUT/waveforms --catalog OUT/events.xml --stations
OUT/stations.xml`` reads.
"""

from __future__ import annotations

import csv
import fnmatch
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from obspy import Catalog, Inventory, Stream, UTCDateTime, read
from obspy.geodetics import locations2degrees
from tqdm import tqdm

from seisjax.data.ingest import theoretical_arrival
from seisjax.data.sources import events_from_catalog, stations_from_inventory
from seisjax.errors import InputError


@dataclass
class DownloadRequest:
    """What to download. Times are ISO 8601 UTC text; distances in degrees; windows in seconds."""

    starttime: str
    endtime: str
    minmagnitude: float | None = None
    maxmagnitude: float | None = None
    minlatitude: float | None = None      # event box
    maxlatitude: float | None = None
    minlongitude: float | None = None
    maxlongitude: float | None = None
    latitude: float | None = None         # or event circle
    longitude: float | None = None
    maxradius: float | None = None
    mindepth: float | None = None         # km
    maxdepth: float | None = None
    event_limit: int | None = None
    networks: str = "*"
    stations: str = "*"
    locations: str = "*"
    channels: str = "HH?,BH?"
    min_distance_deg: float = 0.0
    max_distance_deg: float = 90.0
    window_before: float = 60.0
    window_after: float = 240.0
    velocity_model: str = "iasp91"
    bulk_size: int = 500

    def validate(self):
        try:
            start, end = UTCDateTime(self.starttime), UTCDateTime(self.endtime)
        except Exception as err:
            raise InputError(f"starttime/endtime: {err}") from None
        if end <= start:
            raise InputError(f"endtime {self.endtime} is not after starttime {self.starttime}")
        if not 0 <= self.min_distance_deg < self.max_distance_deg <= 180:
            raise InputError("need 0 <= min_distance_deg < max_distance_deg <= 180")
        if self.window_before + self.window_after <= 0:
            raise InputError("window_before + window_after must be > 0")
        return self


def event_query(request: DownloadRequest) -> dict:
    """Keyword arguments for ``Client.get_events`` (unset filters left out)."""
    request.validate()
    query = dict(starttime=UTCDateTime(request.starttime), endtime=UTCDateTime(request.endtime),
                 orderby="time-asc")
    for name in ("minmagnitude", "maxmagnitude", "minlatitude", "maxlatitude", "minlongitude",
                 "maxlongitude", "latitude", "longitude", "maxradius", "mindepth", "maxdepth"):
        value = getattr(request, name)
        if value is not None:
            query[name] = value
    if request.event_limit is not None:
        query["limit"] = int(request.event_limit)
    return query


def _origin(event):
    """The event row's origin time as an obspy UTCDateTime."""
    return UTCDateTime(float(event["origin_time"]))


def station_query(request: DownloadRequest, event) -> dict:
    """Keyword arguments for ``Client.get_stations``: channels operating during the event's
    windows, within the distance range of its epicentre (``event``: a row of the events table)."""
    origin = _origin(event)
    query = dict(network=request.networks, station=request.stations, location=request.locations,
                 channel=request.channels, starttime=origin, endtime=origin + request.window_after,
                 level="channel", latitude=float(event["latitude"]), longitude=float(event["longitude"]),
                 maxradius=request.max_distance_deg)
    if request.min_distance_deg > 0:
        query["minradius"] = request.min_distance_deg
    return query


def _matches(code: str, patterns: str) -> bool:
    """FDSN code patterns: comma-separated, with ? and * wildcards; "--" is the empty location."""
    return any(fnmatch.fnmatchcase(code or "--", p.strip()) or (p.strip() == "--" and not code)
               for p in patterns.split(","))


def bulk_lines(request: DownloadRequest, event, stations: pd.DataFrame) -> list[tuple]:
    """Bulk request lines ``(net, sta, loc, cha, t1, t2)`` for one event.

    ``stations``: channel rows as from ``stations_from_inventory``. A channel is requested when its
    codes match the request's patterns, its epoch contains the origin time, its distance lies in
    ``[min_distance_deg, max_distance_deg]`` and TauP finds a P arrival; the window is
    ``[origin + P - window_before, origin + P + window_after]``."""
    origin = _origin(event)
    t = origin.timestamp
    lines = {}
    for row in stations.drop_duplicates(["network", "station", "location", "channel", "start"]).itertuples(index=False):
        if not (row.start <= t <= row.end):
            continue
        if not (_matches(row.network, request.networks) and _matches(row.station, request.stations)
                and _matches(row.location, request.locations) and _matches(row.channel, request.channels)):
            continue
        distance = locations2degrees(float(event["latitude"]), float(event["longitude"]), row.latitude, row.longitude)
        if not request.min_distance_deg <= distance <= request.max_distance_deg:
            continue
        depth = float(event["depth_km"]) if math.isfinite(float(event["depth_km"])) else 0.0
        p = theoretical_arrival("P", round(depth, 4), round(float(distance), 6), request.velocity_model)
        if p is None:
            continue
        key = (row.network, row.station, row.location, row.channel)
        lines.setdefault(key, (*key, origin + p - request.window_before, origin + p + request.window_after))
    return [lines[key] for key in sorted(lines)]


def save_waveforms(stream, folder) -> list[Path]:
    """Write a waveform response as miniSEED, one file per station and location; returns the
    files. Samples keep their dtype (integers as STEIM2, floats as FLOAT32/FLOAT64)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    groups: dict[tuple, list] = {}
    for tr in stream:
        groups.setdefault((tr.stats.network, tr.stats.station, tr.stats.location), []).append(tr)
    for (net, sta, loc), traces in sorted(groups.items()):
        path = folder / f"{net}.{sta}.{loc}.mseed"
        st = Stream(traces)
        if path.exists():  # a later bulk chunk for the same station
            st = read(str(path)) + st
        for tr in st:
            if tr.data.dtype == np.float64 and np.array_equal(tr.data, tr.data.astype(np.float32)):
                tr.data = tr.data.astype(np.float32)
        st.write(str(path), format="MSEED")
        written.append(path)
    return written


@dataclass
class DownloadReport:
    out_dir: str
    n_events: int = 0
    n_stations: int = 0
    n_lines: int = 0
    n_lines_ok: int = 0
    n_lines_no_data: int = 0
    n_lines_failed: int = 0
    files: list = field(default_factory=list)

    def __str__(self):
        return (f"{self.n_events} events, {self.n_stations} station epochs, {self.n_lines} waveform requests "
                f"({self.n_lines_ok} ok, {self.n_lines_no_data} no data, {self.n_lines_failed} failed), "
                f"{len(self.files)} files in {self.out_dir}")


def _is_no_data(err: Exception) -> bool:
    return type(err).__name__ in ("FDSNNoDataException",) or "no data" in str(err).lower()


def download(request: DownloadRequest, out_dir, client, *, progress: bool = True) -> DownloadReport:
    """Run the four steps above with ``client`` (an ``obspy.clients.fdsn.Client`` or anything with
    its three methods). One failed station or waveform request is logged and skipped."""
    request.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = DownloadReport(str(out_dir))
    try:
        catalog = client.get_events(**event_query(request))
    except Exception as err:
        if _is_no_data(err):
            raise InputError(f"no events match the request ({err})") from None
        raise
    catalog = Catalog([e for e in catalog if (e.preferred_origin() or (e.origins[0] if e.origins else None))])
    events = events_from_catalog(catalog, "get_events response")
    catalog.write(str(out_dir / "events.xml"), format="QUAKEML")
    report.n_events = len(events)
    inventory = Inventory(networks=[], source="seisjax download")
    log_path = out_dir / "requests.csv"
    with open(log_path, "w", newline="") as log_file:
        log = csv.writer(log_file)
        log.writerow(["event_id", "network", "station", "location", "channel", "starttime", "endtime", "status"])
        for _, event in tqdm(events.iterrows(), total=len(events), desc="events", disable=not progress):
            try:
                event_inventory = client.get_stations(**station_query(request, event))
            except Exception as err:
                log.writerow([event.event_id, "", "", "", "", "", "",
                              "no_stations" if _is_no_data(err) else f"error: {type(err).__name__}: {err}"])
                continue
            inventory += event_inventory
            stations = stations_from_inventory(event_inventory, "get_stations response")
            lines = bulk_lines(request, event, stations)
            report.n_lines += len(lines)
            folder = out_dir / "waveforms" / str(event.event_id)
            for i in range(0, len(lines), request.bulk_size):
                chunk = lines[i:i + request.bulk_size]
                try:
                    stream = client.get_waveforms_bulk(chunk)
                    status = None
                except Exception as err:
                    stream, status = None, ("no_data" if _is_no_data(err) else f"error: {type(err).__name__}: {err}")
                got = set()
                if stream is not None and len(stream):
                    report.files.extend(str(p) for p in save_waveforms(stream, folder))
                    got = {(tr.stats.network, tr.stats.station, tr.stats.location, tr.stats.channel) for tr in stream}
                for line in chunk:
                    line_status = status or ("ok" if tuple(line[:4]) in got else "no_data")
                    report.n_lines_ok += line_status == "ok"
                    report.n_lines_no_data += line_status == "no_data"
                    report.n_lines_failed += line_status.startswith("error")
                    log.writerow([event.event_id, *line[:4], UTCDateTime(line[4]), UTCDateTime(line[5]), line_status])
    # the same station comes back for every event that asked for it: count it once
    report.n_stations = len({(net.code, sta.code) for net in inventory for sta in net})
    merged = inventory.copy()
    for net in merged:
        for sta in net:
            unique = {}
            for cha in sta.channels:
                unique.setdefault((cha.location_code, cha.code, str(cha.start_date)), cha)
            sta.channels = list(unique.values())
    merged.write(str(out_dir / "stations.xml"), format="STATIONXML")
    report.files = sorted(set(report.files))
    return report
