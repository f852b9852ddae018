"""Readers for the side inputs of `data build`: event catalogs, station coordinates and phase picks.

Each reader turns a user file into a small table with fixed columns so that the build can look
things up without caring where they came from. Times are POSIX seconds (float) so that matching is
vectorised numpy work.

Accepted formats
----------------
Catalog (``read_catalog``)
    QuakeML, GSE2.0 bulletins and every other format ``obspy.read_events`` detects, or CSV with a
    header. CSV columns (case-insensitive; SeisBench names accepted as aliases):

    ==================  =========================================================  ========
    column              aliases                                                    required
    ==================  =========================================================  ========
    ``event_id``        ``source_id``, ``id``                                      no (origin time is used)
    ``origin_time``     ``source_origin_time``, ``time``                           yes (ISO 8601, UTC)
    ``latitude``        ``source_latitude_deg``, ``source_latitude``, ``lat``      yes
    ``longitude``       ``source_longitude_deg``, ``source_longitude``, ``lon``    yes
    ``depth_km``        ``source_depth_km``, ``depth``                             yes
    ``magnitude``       ``source_magnitude``, ``mag``                              no
    ``magnitude_type``  ``source_magnitude_type``, ``mag_type``                    no
    ==================  =========================================================  ========

    Picks inside a QuakeML or GSE2 file (``event.picks``) are returned too.

Stations (``read_stations``)
    StationXML, FDSN station text and the other formats that ``obspy.read_inventory`` detects, or
    CSV with ``network``, ``station``, ``location`` (optional), ``latitude``, ``longitude``,
    ``elevation_m`` (alias ``elevation``; optional, default 0). A blank or missing network or
    location matches any code. (Coordinates in SAC headers are read by the build itself.)

Picks (``read_picks``)
    * QuakeML / GSE2.0 bulletins (``obspy.read_events``): every ``Pick`` with its phase hint (or the
      phase of the arrival that references it). GSE2 bulletins carry no network code: such picks
      match any network.
    * CSV: ``network`` (optional), ``station``, ``location`` (optional), ``phase``, and either
      ``time`` (absolute, ISO 8601 UTC) or ``time_after_origin_s``, plus optional ``event_id`` and
      ``status``.
    * MTUQ ``picks.dat``: whitespace lines ``NET.STA.LOC P_SECONDS S_SECONDS`` (seconds after the
      origin time of the one event the file belongs to).

Wildcards: ``ANY`` ("*") in a network or location column means "matches every code"; so does a
blank CSV cell.
"""

from __future__ import annotations

import bisect
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from obspy import UTCDateTime, read_events, read_inventory

from seisjax.errors import InputError

ANY = "*"

EVENT_COLUMNS = ["event_id", "origin_time", "latitude", "longitude", "depth_km", "magnitude",
                 "magnitude_type"]
PICK_COLUMNS = ["event_id", "network", "station", "location", "phase", "time", "offset_s", "status"]

_EVENT_ALIASES = {
    "event_id": ("event_id", "source_id", "id"),
    "origin_time": ("origin_time", "source_origin_time", "time"),
    "latitude": ("latitude", "source_latitude_deg", "source_latitude", "lat"),
    "longitude": ("longitude", "source_longitude_deg", "source_longitude", "lon"),
    "depth_km": ("depth_km", "source_depth_km", "depth"),
    "magnitude": ("magnitude", "source_magnitude", "mag"),
    "magnitude_type": ("magnitude_type", "source_magnitude_type", "mag_type"),
}
_STATION_ALIASES = {
    "network": ("network", "station_network_code", "net"),
    "station": ("station", "station_code", "sta"),
    "location": ("location", "station_location_code", "loc"),
    "latitude": ("latitude", "station_latitude_deg", "lat"),
    "longitude": ("longitude", "station_longitude_deg", "lon"),
    "elevation_m": ("elevation_m", "station_elevation_m", "elevation"),
}
_PICK_ALIASES = {
    "event_id": ("event_id", "source_id"),
    "network": ("network", "station_network_code", "net"),
    "station": ("station", "station_code", "sta"),
    "location": ("location", "station_location_code", "loc"),
    "phase": ("phase", "phase_hint"),
    "time": ("time", "pick_time", "arrival_time"),
    "offset_s": ("time_after_origin_s", "offset_s"),
    "status": ("status", "evaluation_mode"),
}


# ----------------------------------------------------------------------------- helpers
def _timestamp(value, where: str) -> float:
    try:
        return UTCDateTime(str(value).strip()).timestamp
    except Exception as err:  # obspy raises several types for bad text
        raise InputError(f"{where}: cannot parse time {value!r} ({err})") from None


def _rename(df: pd.DataFrame, aliases: dict, path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    lower = {c.strip().lower(): c for c in df.columns}
    mapping = {}
    for name, options in aliases.items():
        for option in options:
            if option in lower:
                mapping[lower[option]] = name
                break
    missing = [name for name in required if name not in mapping.values()]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; found {list(df.columns)} "
                         f"(accepted names: { {m: aliases[m] for m in missing} })")
    return df[list(mapping)].rename(columns=mapping)


def _head(path: Path, size: int | None = None) -> str:
    """The first line (or first ``size`` characters) of a text file."""
    try:
        with path.open(errors="replace") as f:
            return f.read(size) if size else f.readline()
    except OSError as err:
        raise InputError(f"{path}: cannot open ({err})") from None


def _looks_like_csv(path: Path) -> bool:
    if path.suffix.lower() in (".csv", ".tsv"):
        return True
    head = _head(path)
    return head.count(",") >= 2 and not head.lstrip().startswith("<")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as err:
        raise InputError(f"{path}: not a readable CSV file ({err})") from None


def _code(value) -> str:
    """Network / location code from a CSV cell; a blank or missing cell matches any code."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ANY
    return str(value).strip() or ANY


def _float(value, where: str, default=math.nan) -> float:
    text = "" if value is None else str(value).strip()
    if text == "" or text.lower() in ("nan", "none"):
        return default
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: {text!r} is not a number") from None


def _read_obspy_events(path: Path):
    head = _head(path, 4096)
    kwargs = {}
    if "GSE2" in head.upper() and "BULLETIN" in head.upper():
        # GSE2 bulletins name stations only; an empty network code matches any network below
        kwargs = dict(format="GSE2", default_network_code="")
    try:
        return read_events(str(path), **kwargs)
    except Exception as err:
        raise InputError(f"{path}: not a readable event file (QuakeML, GSE2 bulletin, CSV, ...): "
                         f"{err}") from None


# ----------------------------------------------------------------------------- events
def read_catalog(path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events (columns ``EVENT_COLUMNS``) and the picks the file holds (``PICK_COLUMNS``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"catalog {path}: no such file")
    if _looks_like_csv(path):
        raw = _rename(_read_csv(path), _EVENT_ALIASES, path,
                      ("origin_time", "latitude", "longitude", "depth_km"))
        rows = []
        for i, rec in enumerate(raw.to_dict("records")):
            where = f"{path} line {i + 2}"
            t = _timestamp(rec["origin_time"], where)
            event_id = str(rec.get("event_id") or "").strip() or _default_event_id(t)
            rows.append((event_id, t, _float(rec["latitude"], where), _float(rec["longitude"], where),
                         _float(rec["depth_km"], where), _float(rec.get("magnitude"), where),
                         str(rec.get("magnitude_type") or "").strip()))
        return _events_frame(rows, path), _picks_frame([])
    catalog = _read_obspy_events(path)
    return events_from_catalog(catalog, path), picks_from_catalog(catalog)


def _default_event_id(timestamp: float) -> str:
    return UTCDateTime(timestamp).strftime("%Y%m%dT%H%M%S.%f")[:-4]


def _events_frame(rows, where) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=EVENT_COLUMNS)
    bad = df[~np.isfinite(df[["origin_time", "latitude", "longitude", "depth_km"]].to_numpy(float)).all(axis=1)]
    if len(bad):
        raise InputError(f"{where}: event(s) {list(bad.event_id)[:5]} lack a finite origin time, "
                         "latitude, longitude or depth")
    dup = df.event_id[df.event_id.duplicated()]
    if len(dup):
        raise InputError(f"{where}: duplicate event id(s) {list(dup)[:5]}")
    return df


def events_from_catalog(catalog, where="catalog") -> pd.DataFrame:
    """Rows of ``EVENT_COLUMNS`` from an ``obspy.Catalog`` (preferred origin and magnitude)."""
    rows = []
    for event in catalog:
        origin = event.preferred_origin() or (event.origins[0] if event.origins else None)
        if origin is None or origin.latitude is None or origin.longitude is None:
            raise InputError(f"{where}: event {event.resource_id} has no origin with coordinates")
        mag = event.preferred_magnitude() or (event.magnitudes[0] if event.magnitudes else None)
        depth_km = origin.depth / 1000.0 if origin.depth is not None else math.nan
        rows.append((_event_id(event), origin.time.timestamp, origin.latitude, origin.longitude,
                     depth_km, mag.mag if mag is not None else math.nan,
                     (mag.magnitude_type or "") if mag is not None else ""))
    return _events_frame(rows, where)


def _event_id(event) -> str:
    """Short, stable id from the resource id: the ``eventid=`` query value of FDSN ids, else the
    last path element (e.g. 'ci37285320', '3279407', '280435')."""
    rid = str(event.resource_id)
    match = re.search(r"(?i)(?:eventid|evid)=([^&;]+)", rid)
    if match:
        return match.group(1)
    for sep in ("/", "#", ":"):
        if sep in rid:
            rid = rid.rsplit(sep, 1)[-1]
    return rid or str(event.resource_id)


def picks_from_catalog(catalog) -> pd.DataFrame:
    """Rows of ``PICK_COLUMNS`` from the picks of every event of an ``obspy.Catalog``."""
    rows = []
    for event in catalog:
        phase_of = {}
        for origin in event.origins:
            for arrival in origin.arrivals:
                if arrival.pick_id is not None and arrival.phase:
                    phase_of[str(arrival.pick_id)] = arrival.phase
        for pick in event.picks:
            phase = pick.phase_hint or phase_of.get(str(pick.resource_id), "")
            wid = pick.waveform_id
            if wid is None or not wid.station_code or pick.time is None:
                continue
            net = wid.network_code or ANY
            loc = ANY if wid.location_code is None else wid.location_code
            rows.append((_event_id(event), net, wid.station_code, loc, phase, pick.time.timestamp,
                         math.nan, pick.evaluation_mode or "picked"))
    return _picks_frame(rows)


# ----------------------------------------------------------------------------- stations
def read_stations(path) -> pd.DataFrame:
    """Station coordinates: columns network, station, location, channel, latitude, longitude,
    elevation_m, start, end (POSIX seconds; +-inf when open)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"stations {path}: no such file")
    if path.suffix.lower() == ".csv" or (_looks_like_csv(path) and "|" not in _head(path)):
        raw = _rename(_read_csv(path), _STATION_ALIASES, path, ("station", "latitude", "longitude"))
        rows = []
        for i, rec in enumerate(raw.to_dict("records")):
            where = f"{path} line {i + 2}"
            rows.append((_code(rec.get("network")), str(rec["station"]).strip(),
                         _code(rec.get("location")), ANY, _float(rec["latitude"], where),
                         _float(rec["longitude"], where), _float(rec.get("elevation_m"), where, 0.0),
                         -math.inf, math.inf))
        return _stations_frame(rows, path)
    try:
        inventory = read_inventory(str(path))
    except Exception as err:
        raise InputError(f"{path}: not a readable station file (StationXML, FDSN text, CSV): {err}") from None
    return stations_from_inventory(inventory, path)


def stations_from_inventory(inventory, where="inventory") -> pd.DataFrame:
    """Coordinates of every channel (or station, when the inventory stops at station level)."""
    rows = []

    def span(obj):
        start = obj.start_date.timestamp if obj.start_date is not None else -math.inf
        end = obj.end_date.timestamp if obj.end_date is not None else math.inf
        return start, end

    for net in inventory:
        for sta in net:
            if sta.channels:
                for cha in sta.channels:
                    lat = cha.latitude if cha.latitude is not None else sta.latitude
                    lon = cha.longitude if cha.longitude is not None else sta.longitude
                    elev = cha.elevation if cha.elevation is not None else sta.elevation
                    rows.append((net.code, sta.code, (cha.location_code or "").strip(), cha.code,
                                 lat, lon, elev if elev is not None else 0.0, *span(cha)))
            else:
                rows.append((net.code, sta.code, ANY, ANY, sta.latitude, sta.longitude,
                             sta.elevation if sta.elevation is not None else 0.0, *span(sta)))
    return _stations_frame(rows, where)


def _stations_frame(rows, where) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["network", "station", "location", "channel", "latitude",
                                     "longitude", "elevation_m", "start", "end"])
    bad = df[~np.isfinite(df[["latitude", "longitude"]].to_numpy(float)).all(axis=1)]
    if len(bad):
        raise InputError(f"{where}: station(s) {list(bad.station)[:5]} lack finite coordinates")
    return df


class StationTable:
    """Coordinates looked up by (network, station, location, channel, time), with wildcards."""

    def __init__(self, frames: list[pd.DataFrame]):
        self._by_station: dict[str, list[tuple]] = {}
        for df in frames:
            for row in df.itertuples(index=False):
                self._by_station.setdefault(row.station, []).append(row)

    def __len__(self):
        return sum(len(v) for v in self._by_station.values())

    def lookup(self, network: str, station: str, location: str, channel: str, time: float):
        """(latitude, longitude, elevation_m) of the best match, or None. Exact codes beat
        wildcards; a channel epoch must contain ``time``."""
        best, best_score = None, -1
        for row in self._by_station.get(station, ()):
            if not (row.start <= time <= row.end):
                continue
            score = 0
            for have, want, weight in ((row.network, network, 4), (row.location, location, 2),
                                       (row.channel, channel, 1)):
                if have == want:
                    score += weight
                elif have != ANY:
                    break
            else:
                if score > best_score:
                    best, best_score = row, score
        if best is None:
            return None
        return float(best.latitude), float(best.longitude), float(best.elevation_m)


# ----------------------------------------------------------------------------- picks
def read_picks(path) -> pd.DataFrame:
    """Phase picks (``PICK_COLUMNS``) from QuakeML / GSE2.0 bulletins / CSV / MTUQ picks.dat."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"picks {path}: no such file")
    first = _head(path).split()
    if len(first) == 3 and first[0].count(".") >= 2 and "," not in first[0]:
        return _read_mtuq_picks(path)
    if _looks_like_csv(path):
        raw = _rename(_read_csv(path), _PICK_ALIASES, path, ("station", "phase"))
        if "time" not in raw and "offset_s" not in raw:
            raise InputError(f"{path}: picks need a 'time' (absolute) or 'time_after_origin_s' column")
        rows = []
        for i, rec in enumerate(raw.to_dict("records")):
            where = f"{path} line {i + 2}"
            text = str(rec.get("time") or "").strip()
            t = _timestamp(text, where) if text else math.nan
            offset = _float(rec.get("offset_s"), where)
            if math.isnan(t) and math.isnan(offset):
                raise InputError(f"{where}: pick without a time")
            rows.append((str(rec.get("event_id") or "").strip(), _code(rec.get("network")),
                         str(rec["station"]).strip(), _code(rec.get("location")),
                         str(rec["phase"]).strip(), t, offset, str(rec.get("status") or "picked")))
        return _picks_frame(rows)
    return picks_from_catalog(_read_obspy_events(path))


def _read_mtuq_picks(path: Path) -> pd.DataFrame:
    rows = []
    with path.open() as f:
        for i, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or parts[0].count(".") < 2:
                raise InputError(f"{path} line {i}: expected 'NET.STA.LOC P_SECONDS S_SECONDS', "
                                 f"got {line.strip()!r}")
            net, sta, loc = parts[0].split(".")[:3]
            for phase, value in (("P", parts[1]), ("S", parts[2])):
                offset = _float(value, f"{path} line {i}")
                if math.isfinite(offset):
                    rows.append(("", net, sta, loc, phase, math.nan, offset, "picked"))
    return _picks_frame(rows).drop_duplicates(ignore_index=True)


def _picks_frame(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=PICK_COLUMNS)
    df["time"] = df["time"].astype(float)
    df["offset_s"] = df["offset_s"].astype(float)
    return df


def phase_family(phase: str) -> str:
    """'P' for P, Pg, Pn, p, Pb, ...; 'S' for S, Sg, Sn, s, ...; '' otherwise (PKP, pP ...)."""
    phase = (phase or "").strip()
    if not phase:
        return ""
    first = phase[0].upper()
    if first not in "PS":
        return ""
    rest = phase[1:]
    # depth phases and core phases are not first arrivals
    if rest and rest[0].upper() in "PSK" or "KP" in phase.upper():
        return ""
    return first


class PickTable:
    """Picks looked up by (event, station).

    A pick matches a record when its station agrees (and its network and location, where the pick
    names them) and either its event id is the record's, or it belongs to no event of the build's
    catalog (no id, or an id from another bulletin) and its time lies within ``max_lag_s`` after the
    record's origin. Picks given as seconds after the origin (picks.dat) need the record's event id
    or no id at all.
    """

    def __init__(self, frames: list[pd.DataFrame], known_event_ids=()):
        known = set(known_event_ids)
        # indexed three ways so that a lookup costs O(log n), not a scan of every pick of a station
        self._own: dict[tuple[str, str], list] = {}           # (station, event id) -> picks
        self._relative: dict[str, list] = {}                  # station -> picks in s after any origin
        self._loose: dict[str, list] = {}                     # station -> [(time, pick)] sorted by time
        self._n = 0
        for df in frames:
            for row in df.itertuples(index=False):
                family = phase_family(row.phase)
                if not family:
                    continue
                self._n += 1
                relative = math.isfinite(row.offset_s)
                if row.event_id and row.event_id in known:
                    self._own.setdefault((row.station, row.event_id), []).append((family, row))
                elif relative:
                    if not row.event_id:
                        self._relative.setdefault(row.station, []).append((family, row))
                else:
                    self._loose.setdefault(row.station, []).append((row.time, family, row))
        for picks in self._loose.values():
            picks.sort(key=lambda item: item[0])
        self._loose_times = {sta: [item[0] for item in picks] for sta, picks in self._loose.items()}

    def __len__(self):
        return self._n

    def find(self, phase: str, event_id: str, origin_time: float, network: str, station: str,
             location: str, max_lag_s: float):
        """(absolute time, status) of the earliest matching pick of ``phase`` ('P' or 'S'), or None."""

        def usable(family, row):
            return family == phase and row.network in (ANY, "", network) and row.location in (ANY, location)

        own = [(row.time if not math.isfinite(row.offset_s) else origin_time + row.offset_s, row.status)
               for family, row in self._own.get((station, event_id), ()) if usable(family, row)]
        if own:
            return min(own)
        loose = [(origin_time + row.offset_s, row.status)
                 for family, row in self._relative.get(station, ()) if usable(family, row)]
        times = self._loose_times.get(station)
        if times:
            lo = bisect.bisect_left(times, origin_time)
            hi = bisect.bisect_right(times, origin_time + max_lag_s)
            loose += [(t, row.status) for t, family, row in self._loose[station][lo:hi] if usable(family, row)]
        return min(loose) if loose else None
