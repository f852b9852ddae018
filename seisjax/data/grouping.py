"""HEALPix grouping of an event's stations for SymAE, and the Earthquake-SymAE HDF5 layout.

SymAE learns what the records of one earthquake share; the records of one group should see the
source from similar directions. Each station of an event gets the HEALPix pixel (healpy, RING
ordering, ``nside=4``: 192 pixels) of its direction seen from the source:

    rotate the sphere so that the event sits at the north pole; the station is then at colatitude
    ``theta`` = epicentral distance and longitude ``phi`` = azimuth from the source to the station
    (clockwise from north); ``pixel = healpy.ang2pix(nside, theta, phi)``.

Distances and azimuths are computed on a sphere (geographic latitudes used as they are: the pixel
size at ``nside=4`` is about 15 degrees, far above the ellipticity correction).

An (event, pixel) group is kept when it holds at least ``min_stations`` stations (21: the SymAE code
keeps groups of "more than 20").
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import healpy
import numpy as np
import pandas as pd
from tqdm import tqdm

from seisjax.data.dataset import DatasetWriter
from seisjax.errors import InputError

__all__ = ["source_centred_angles", "assign_pixels", "group_traces", "read_symae_hdf5",
           "SymaeImport", "COORDINATE_COLUMNS"]

#: SeisBench columns read by :func:`group_traces`.
COORDINATE_COLUMNS = ("source_latitude_deg", "source_longitude_deg", "station_latitude_deg",
                      "station_longitude_deg")


def source_centred_angles(source_lat, source_lon, station_lat, station_lon) -> tuple[np.ndarray, np.ndarray]:
    """Epicentral distance and azimuth (radians) from source to station, on a sphere, vectorised.

    These are the station's colatitude and longitude once the source is rotated to the north pole.
    The azimuth is in [0, 2 pi), clockwise from north; it is 0 for a station at the epicentre.
    """
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(v, dtype=np.float64))
                              for v in (source_lat, source_lon, station_lat, station_lon))
    dlon = lon2 - lon1
    east = np.cos(lat2) * np.sin(dlon)
    north = np.cos(lat1) * np.sin(lat2) - np.sin(lat1) * np.cos(lat2) * np.cos(dlon)
    along = np.sin(lat1) * np.sin(lat2) + np.cos(lat1) * np.cos(lat2) * np.cos(dlon)
    # atan2 keeps small and antipodal distances accurate, unlike arccos.
    distance = np.arctan2(np.hypot(east, north), along)
    azimuth = np.mod(np.arctan2(east, north), 2 * np.pi)
    return distance, azimuth


def assign_pixels(source_lat, source_lon, station_lat, station_lon, nside: int = 4, *,
                  nest: bool = False) -> np.ndarray:
    """HEALPix pixel of each station seen from its source (see the module docstring); arrays
    broadcast. Rows with a missing (NaN) coordinate get pixel -1."""
    if not healpy.isnsideok(nside):
        raise InputError(f"nside must be a power of 2, got {nside}")
    lats = [np.asarray(v, dtype=np.float64) for v in (source_lat, source_lon, station_lat, station_lon)]
    for name, value, limit in zip(("source latitude", "source longitude", "station latitude",
                                   "station longitude"), lats, (90, 360, 90, 360)):
        bad = np.isfinite(value) & (np.abs(value) > limit)
        if bad.any():
            raise InputError(f"{name} out of range (|value| <= {limit} deg): "
                             f"{value[bad].ravel()[:5].tolist()}")
    theta, phi = source_centred_angles(*lats)
    known = np.isfinite(theta) & np.isfinite(phi)
    pixels = np.full(theta.shape, -1, dtype=np.int64)
    pixels[known] = healpy.ang2pix(nside, theta[known], phi[known], nest=nest)
    return pixels


def group_traces(metadata: pd.DataFrame, nside: int = 4, min_stations: int = 21, *,
                 event_column: str = "source_id",
                 station_columns: tuple[str, ...] = ("station_network_code", "station_code"),
                 pixel_column: str = "healpix_pixel") -> pd.DataFrame:
    """(event, pixel) groups with at least ``min_stations`` stations.

    Pixels come from the SeisBench coordinate columns (:data:`COORDINATE_COLUMNS`) when the metadata
    has them, else from ``pixel_column`` (datasets read with :func:`read_symae_hdf5`). Stations are
    counted once per distinct value of the ``station_columns`` present (traces, if none is).

    Returns a DataFrame sorted by event and pixel with columns ``event_column``, ``healpix_pixel``,
    ``n_stations``, ``n_traces`` and ``trace_indices`` (positions of the rows in ``metadata``, i.e.
    indices for ``Dataset.get_waveforms``). Rows that cannot be placed (missing event or coordinate)
    are reported in a warning and listed in ``result.attrs["unassigned"]``.
    """
    if event_column not in metadata.columns:
        raise InputError(f"group_traces: no event column {event_column!r} in the metadata "
                         f"(columns: {list(metadata.columns)})")
    if min_stations < 1:
        raise InputError(f"group_traces: min_stations must be >= 1, got {min_stations}")
    if all(c in metadata.columns for c in COORDINATE_COLUMNS):
        pixels = assign_pixels(*(metadata[c].to_numpy(dtype=np.float64) for c in COORDINATE_COLUMNS),
                               nside=nside)
    elif pixel_column in metadata.columns:
        values = pd.to_numeric(metadata[pixel_column], errors="coerce").to_numpy(dtype=np.float64)
        pixels = np.where(np.isfinite(values), values, -1).astype(np.int64)
        if (pixels >= healpy.nside2npix(nside)).any():
            raise InputError(f"group_traces: column {pixel_column!r} holds pixels >= "
                             f"{healpy.nside2npix(nside)}, more than nside={nside} has")
    else:
        missing = [c for c in COORDINATE_COLUMNS if c not in metadata.columns]
        raise InputError(f"group_traces: need the coordinate columns {missing} or a {pixel_column!r} "
                         "column")
    events = metadata[event_column]
    unassigned = np.flatnonzero((pixels < 0) | events.isna().to_numpy())
    if len(unassigned):
        warnings.warn(f"group_traces: {len(unassigned)} trace(s) without event or coordinates are in "
                      f"no group (rows {unassigned[:10].tolist()}{' ...' if len(unassigned) > 10 else ''})",
                      stacklevel=2)
    present = [c for c in station_columns if c in metadata.columns]
    table = pd.DataFrame({"event": events.to_numpy(), "pixel": pixels,
                          "row": np.arange(len(metadata))})
    station = table["row"].astype(str)
    if present:
        station = metadata[present[0]].astype(str).to_numpy()
        for column in present[1:]:
            station = station + "." + metadata[column].astype(str).to_numpy()
    table["station"] = station
    table = table.drop(index=unassigned)
    grouped = table.groupby(["event", "pixel"], sort=True)
    result = pd.DataFrame({
        "n_stations": grouped["station"].nunique(),
        "n_traces": grouped["row"].size(),
        "trace_indices": grouped["row"].agg(lambda rows: np.sort(rows.to_numpy())),
    }).reset_index().rename(columns={"event": event_column, "pixel": "healpix_pixel"})
    result = result[result["n_stations"] >= min_stations].reset_index(drop=True)
    result.attrs["unassigned"] = unassigned
    result.attrs["nside"] = nside
    return result


# --------------------------------------------------------------------------- Earthquake-SymAE files
@dataclass
class SymaeImport:
    """What :func:`read_symae_hdf5` wrote: the dataset folder, counts, and the traces not taken."""
    path: Path
    n_traces: int
    n_events: int
    n_groups: int
    rejected: pd.DataFrame = field(repr=False)


def _scalar_attrs(node) -> dict:
    out = {}
    for key, value in node.attrs.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, np.ndarray):
            if value.size != 1:
                continue
            value = value.reshape(-1)[0]
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, (str, int, float, bool)):
            out[key] = value
    return out


def read_symae_hdf5(path: str | os.PathLike, out_dir: str | os.PathLike, *,
                    sampling_rate: float | None = None, dtype=None, overwrite: bool = False,
                    progress: bool = True) -> SymaeImport:
    """Convert an Earthquake-SymAE HDF5 file (``/<event>/<pixel>/<station>``, each leaf a 1-D trace)
    into a seisjax dataset at ``out_dir`` (single component ``"Z"``).

    Metadata per trace: ``source_id`` (event), ``healpix_pixel`` (the pixel group's name, as an
    integer when it is one), ``station_code``, ``trace_name_original`` (``event/pixel/station``),
    plus scalar HDF5 attributes of the event group, the pixel group and the trace. The file does not
    record the sampling rate: pass ``sampling_rate`` unless the root has a ``sampling_rate`` attribute.
    Leaves that are not 1-D numeric traces or hold NaN/inf are not taken; they are listed in
    ``rejected.csv`` in ``out_dir`` (file, trace_id, reason) and in the returned summary. Samples keep
    the file's dtype unless ``dtype`` is given.
    """
    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot open as HDF5 ({err})") from None
    rejected: list[dict] = []
    events, groups = set(), set()
    with handle:
        rate = sampling_rate if sampling_rate is not None else handle.attrs.get("sampling_rate")
        if rate is None:
            raise InputError(f"{path}: the file has no sampling_rate attribute; pass sampling_rate=")
        rate = float(rate)
        if not rate > 0:
            raise InputError(f"{path}: sampling rate must be positive, got {rate}")
        writer = DatasetWriter(out_dir, component_order="Z", sampling_rate=rate, dimension_order="CW",
                               overwrite=overwrite,
                               data_format_attrs={"source_format": "Earthquake-SymAE HDF5"})
        try:
            for event in tqdm(list(handle), desc="events", disable=not progress):
                node = handle[event]
                if not isinstance(node, h5py.Group):
                    rejected.append({"file": str(path), "trace_id": event,
                                     "reason": "expected an event group, found a dataset"})
                    continue
                event_attrs = _scalar_attrs(node)
                for pixel in node:
                    pixel_node = node[pixel]
                    if not isinstance(pixel_node, h5py.Group):
                        rejected.append({"file": str(path), "trace_id": f"{event}/{pixel}",
                                         "reason": "expected a pixel group, found a dataset"})
                        continue
                    pixel_attrs = _scalar_attrs(pixel_node)
                    pixel_id = int(pixel) if re.fullmatch(r"\d+", pixel) else None
                    for station in pixel_node:
                        trace_id = f"{event}/{pixel}/{station}"
                        reason, trace = _read_leaf(pixel_node[station])
                        if reason:
                            rejected.append({"file": str(path), "trace_id": trace_id, "reason": reason})
                            continue
                        meta = {**event_attrs, **pixel_attrs, **_scalar_attrs(pixel_node[station]),
                                "source_id": event, "station_code": station, "trace_name": trace_id}
                        if pixel_id is not None:
                            meta["healpix_pixel"] = pixel_id
                        else:
                            meta["symae_group"] = pixel
                        writer.add((trace if dtype is None else trace.astype(dtype))[None, :], meta)
                        events.add(event)
                        groups.add((event, pixel))
        except BaseException:
            writer.abort()
            raise
        n_traces = writer.n_traces
        if n_traces == 0:
            writer.abort()
            reasons = "; ".join(f"{r['trace_id']}: {r['reason']}" for r in rejected[:5])
            raise InputError(f"{path}: no usable trace in the /<event>/<pixel>/<station> layout"
                             + (f" ({reasons})" if reasons else ""))
        writer.close()
    rejected_frame = pd.DataFrame(rejected, columns=["file", "trace_id", "reason"])
    if len(rejected_frame):
        rejected_frame.to_csv(Path(out_dir) / "rejected.csv", index=False)
    return SymaeImport(Path(out_dir), n_traces, len(events), len(groups), rejected_frame)


def _read_leaf(node) -> tuple[str | None, np.ndarray | None]:
    if not isinstance(node, h5py.Dataset):
        return "expected a trace dataset, found a group", None
    if not (np.issubdtype(node.dtype, np.integer) or np.issubdtype(node.dtype, np.floating)):
        return f"not a numeric trace (dtype {node.dtype})", None
    data = np.squeeze(node[()])
    if data.ndim != 1:
        return f"not a 1-D trace (shape {node.shape})", None
    if data.size == 0:
        return "empty trace", None
    if not np.isfinite(data).all():
        return "NaN or inf samples", None
    return None, data
