"""The earthquakes: where and when, how big, their mechanisms and source time functions.

Scenario ``teleseismic-p`` (deep earthquakes for SymAE):

- Epicentres uniform on the sphere, depths uniform in ``source.depth_km`` (100-600 km), Mw uniform
  in ``source.magnitude``, M0 = 10^(1.5 Mw + 9.1) N m, random double-couple mechanisms (strike and
  rake uniform, fault normal uniform on the sphere).
- Moment-rate source time function (STF): 1 to 3 sub-events (probabilities
  ``source.subevent_probabilities``), each a triangle or a smoothed (Tukey) boxcar, with moment
  fractions from a Dirichlet draw. The total duration scales as the GCMT half-duration,
  ``T = source.duration_coefficient * M0^(1/3)`` (2 x 1.05e-8 (dyne cm)^(-1/3) s = 4.52e-6 s
  (N m)^(-1/3); Ekstrom et al. 2012), with log-normal scatter. A fraction of the events rupture
  unilaterally along a horizontal azimuth at ``rupture_velocity_fraction`` of the shear speed at the
  source: the STF seen along a ray of horizontal slowness p and azimuth phi is compressed in time by
  ``s = 1 - v_r p cos(phi - phi_r)`` (Haskell directivity; the same for P, pP and sP since they share
  p), so its apparent duration varies with azimuth while its area (M0) does not. The STF is sampled
  as the mean moment rate over each sample interval, so it integrates to M0 exactly.

Scenario ``local`` (clustering, spectrogram VAE/CVAE, LSTM AE):

- A fraction ``catalog.teleseismic_fraction`` of the events are teleseismic (1000-10000 km from the
  network, Mw 5-7, depth 10-300 km), the rest local (epicentre within ``catalog.local.radius_km`` of
  the centre; Mw 0.5-4.5), as in Mousavi et al. (2019). Labels: ``path_distance_class``
  ("local"/"teleseismic").
- Source: Brune omega-squared moment-rate pulse ``M0 a^2 t exp(-a t)``, a = 2 pi fc,
  ``fc = 0.49 beta_h (stress_drop / M0)^(1/3)`` (Brune 1970; beta_h in m/s at the source depth from
  the velocity model, stress drop log-normal about ``source.stress_drop_mpa``).
"""

from __future__ import annotations

import math

import numpy as np

from seisjax.data.synthetic import physics
from seisjax.data.synthetic.geometry import DEG_KM, destination, uniform_sphere
from seisjax.data.synthetic.streams import SOURCE, event_rng
from seisjax.data.synthetic.traveltimes import medium, planet_radius

__all__ = ["teleseismic_event", "local_event", "stf_cumulative"]


def _random_mechanism(rng) -> tuple[float, float, float]:
    """Strike and rake uniform, fault normal uniform on the lower hemisphere (dip = arccos U)."""
    return (float(rng.uniform(0.0, 360.0)), float(np.rad2deg(np.arccos(rng.uniform(0.0, 1.0)))),
            float(rng.uniform(-180.0, 180.0)))


def _subevents(src, rng, duration):
    """Onsets, durations, moment fractions and shapes (1 = triangle, 0 = smoothed boxcar)."""
    n_sub = int(rng.choice(3, p=np.asarray(src.subevent_probabilities))) + 1
    if n_sub == 1:
        durations = np.array([duration])
        onsets = np.zeros(1)
    else:
        durations = duration * rng.uniform(*src.subevent_duration_fraction, n_sub)
        onsets = rng.uniform(0.0, 1.0, n_sub) * (duration - durations)
        onsets -= onsets.min()
        order = np.argsort(onsets)
        onsets, durations = onsets[order], durations[order]
    fractions = rng.dirichlet(np.full(n_sub, src.subevent_moment_concentration)) if n_sub > 1 else np.ones(1)
    triangles = rng.uniform(size=n_sub) < src.triangle_probability
    return onsets, durations, fractions, triangles


def stf_cumulative(t, event) -> np.ndarray:
    """Cumulative moment (N m) of the event's STF at times ``t`` (any shape)."""
    total = np.zeros(np.shape(t))
    for onset, dur, frac, tri in zip(event["sub_onset"], event["sub_duration"], event["sub_fraction"],
                                     event["sub_triangle"]):
        u = (np.asarray(t) - onset) / dur
        shape = physics.triangle_cumulative(u) if tri else physics.smoothed_boxcar_cumulative(u, event["taper"])
        total = total + frac * shape
    return event["moment_nm"] * total


def teleseismic_event(cfg, seed: int, k: int, origin_start: float) -> dict:
    """Event ``k`` of a ``teleseismic-p`` config: location, size, mechanism, sub-events, directivity
    and the medium at the source (``origin_start``: the catalog's first origin time, a timestamp)."""
    src = cfg.source
    rng = event_rng(seed, k, SOURCE)
    lat, lon = uniform_sphere(rng, 1)
    depth = float(rng.uniform(*src.depth_km))
    mw = float(rng.uniform(*src.magnitude))
    m0 = float(physics.moment_from_magnitude(mw))
    strike, dip, rake = _random_mechanism(rng)
    scatter = 10.0 ** (src.duration_log10_std * rng.standard_normal())
    duration = float(src.duration_coefficient * m0 ** (1.0 / 3.0) * scatter)
    onsets, durations, fractions, triangles = _subevents(src, rng, duration)
    directivity = bool(rng.uniform() < src.directivity_probability)
    rupture_az = float(rng.uniform(0.0, 360.0))
    alpha_h, beta_h, rho_h = medium(cfg.velocity_model, depth)
    return dict(
        index=k, source_id=f"tele{k:06d}", latitude=float(lat[0]), longitude=float(lon[0]), depth_km=depth,
        magnitude=mw, moment_nm=m0, strike=strike, dip=dip, rake=rake,
        origin_time=origin_start + float(rng.uniform(0.0, src.origin_time_span_days * 86400.0)),
        duration_s=float(np.max(onsets + durations)), sub_onset=onsets, sub_duration=durations,
        sub_fraction=fractions, sub_triangle=triangles, taper=src.boxcar_taper_fraction,
        directivity=directivity, rupture_azimuth_deg=rupture_az if directivity else np.nan,
        rupture_velocity_km_s=src.rupture_velocity_fraction * beta_h if directivity else 0.0,
        alpha_h=alpha_h, beta_h=beta_h, rho_h=rho_h,
    )


def local_event(cfg, seed: int, k: int, origin_start: float) -> dict:
    """Event ``k`` of a ``local`` config: distance class, location, size, mechanism, Brune corner
    frequency and the medium at the source."""
    spec = cfg.catalog
    rng = event_rng(seed, k, SOURCE)
    radius = planet_radius(cfg.velocity_model)
    teleseismic = bool(rng.uniform() < spec.teleseismic_fraction)
    centre = cfg.network.centre_deg
    if teleseismic:
        sub = spec.teleseismic
        dist_deg = rng.uniform(*sub.distance_km) / (radius * DEG_KM)
    else:
        sub = spec.local
        dist_deg = sub.radius_km * math.sqrt(rng.uniform()) / (radius * DEG_KM)
    lat, lon = destination(centre[0], centre[1], dist_deg, rng.uniform(0.0, 360.0))
    depth = float(rng.uniform(*sub.depth_km))
    mw = float(rng.uniform(*sub.magnitude))
    m0 = float(physics.moment_from_magnitude(mw))
    strike, dip, rake = _random_mechanism(rng)
    stress_drop = cfg.source.stress_drop_mpa * 1e6 * 10.0 ** (cfg.source.stress_drop_log10_std * rng.standard_normal())
    alpha_h, beta_h, rho_h = medium(cfg.velocity_model, depth)
    fc = float(physics.brune_corner_frequency(m0, stress_drop, beta_h * 1e3, cfg.source.brune_constant))
    return dict(
        index=k, source_id=f"local{k:06d}", latitude=float(lat), longitude=float(lon), depth_km=depth, magnitude=mw,
        moment_nm=m0, strike=strike, dip=dip, rake=rake, stress_drop_pa=float(stress_drop), corner_frequency_hz=fc,
        distance_class="teleseismic" if teleseismic else "local",
        origin_time=origin_start + float(rng.uniform(0.0, spec.origin_time_span_days * 86400.0)),
        alpha_h=alpha_h, beta_h=beta_h, rho_h=rho_h,
    )
