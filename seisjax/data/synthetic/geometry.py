"""Spherical-Earth geometry: great-circle distances and azimuths, points at a distance and azimuth,
uniform random points, and straight-line source-station distances.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DEG_KM", "distance_azimuth", "destination", "uniform_sphere", "uniform_cap", "straight_distance_km"]

DEG_KM = math.pi / 180.0  # times the Earth radius in km: km per degree


def distance_azimuth(lat1, lon1, lat2, lon2):
    """Great-circle distance (deg), azimuth at point 1 towards 2 and back-azimuth at 2 towards 1."""
    la1, lo1, la2, lo2 = (np.deg2rad(np.asarray(a, dtype=float)) for a in (lat1, lon1, lat2, lon2))
    dlon = lo2 - lo1
    cos_d = np.sin(la1) * np.sin(la2) + np.cos(la1) * np.cos(la2) * np.cos(dlon)
    dist = np.arccos(np.clip(cos_d, -1.0, 1.0))
    az = np.arctan2(np.sin(dlon) * np.cos(la2), np.cos(la1) * np.sin(la2) - np.sin(la1) * np.cos(la2) * np.cos(dlon))
    baz = np.arctan2(-np.sin(dlon) * np.cos(la1), np.cos(la2) * np.sin(la1) - np.sin(la2) * np.cos(la1) * np.cos(dlon))
    return np.rad2deg(dist), np.rad2deg(az) % 360.0, np.rad2deg(baz) % 360.0


def destination(lat, lon, dist_deg, az_deg):
    """Point at ``dist_deg`` along azimuth ``az_deg`` from (lat, lon) on the sphere."""
    la, lo, d, az = (np.deg2rad(np.asarray(a, dtype=float)) for a in (lat, lon, dist_deg, az_deg))
    lat2 = np.arcsin(np.clip(np.sin(la) * np.cos(d) + np.cos(la) * np.sin(d) * np.cos(az), -1.0, 1.0))
    lon2 = lo + np.arctan2(np.sin(az) * np.sin(d) * np.cos(la), np.cos(d) - np.sin(la) * np.sin(lat2))
    return np.rad2deg(lat2), (np.rad2deg(lon2) + 180.0) % 360.0 - 180.0


def uniform_sphere(rng, n):
    """``n`` points (latitudes, longitudes) uniform on the sphere."""
    return np.rad2deg(np.arcsin(rng.uniform(-1.0, 1.0, n))), rng.uniform(-180.0, 180.0, n)


def uniform_cap(rng, lat, lon, radius_deg, n):
    """``n`` points uniform in the spherical cap of ``radius_deg`` around (lat, lon)."""
    dist = np.rad2deg(np.arccos(rng.uniform(np.cos(np.deg2rad(radius_deg)), 1.0, n)))
    return destination(lat, lon, dist, rng.uniform(0.0, 360.0, n))


def straight_distance_km(radius_km, depth_km, dist_deg):
    """Straight-line distance between a source at ``depth_km`` and a surface station."""
    r1 = radius_km - np.asarray(depth_km, dtype=float)
    return np.sqrt(r1 ** 2 + radius_km ** 2 - 2 * r1 * radius_km * np.cos(np.deg2rad(dist_deg)))

