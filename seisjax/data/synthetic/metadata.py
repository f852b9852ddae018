"""What both scenarios write in ``metadata.csv``: the source columns, times as ISO strings, and rows
without empty values.
"""

from __future__ import annotations

import math

from obspy import UTCDateTime

from seisjax.errors import InputError

__all__ = ["parse_time", "iso_time", "source_columns", "clean_row"]


def parse_time(text: str) -> UTCDateTime:
    try:
        return UTCDateTime(text)
    except Exception:
        raise InputError(f"config key '*.origin_time_start': not a time: {text!r}") from None


def iso_time(timestamp: float) -> str:
    return UTCDateTime(timestamp).isoformat() + "Z"


def source_columns(event: dict) -> dict:
    """The ``source_*`` columns of an event's rows."""
    return {
        "source_id": event["source_id"], "source_origin_time": iso_time(event["origin_time"]),
        "source_latitude_deg": round(event["latitude"], 5), "source_longitude_deg": round(event["longitude"], 5),
        "source_depth_km": round(event["depth_km"], 3), "source_magnitude": round(event["magnitude"], 3),
        "source_magnitude_type": "Mw", "source_strike_deg": round(event["strike"], 3),
        "source_dip_deg": round(event["dip"], 3), "source_rake_deg": round(event["rake"], 3),
    }


def clean_row(row: dict) -> dict:
    """``row`` without its None and NaN values: the cells that stay empty in ``metadata.csv``."""
    return {k: v for k, v in row.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
