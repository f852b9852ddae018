"""Scenario ``teleseismic-p``: deep earthquakes recorded on a global network, vertical P for SymAE.

- Stations: a fixed global network (its own seed, so station codes mean the same in every dataset):
  ``stations.n_scattered`` stations uniform on the sphere plus ``stations.n_arrays`` dense arrays of
  ``stations.array_size`` stations within ``stations.array_radius_deg``, so that HEALPix (nside 4)
  groups of one event's stations hold more than 20 stations. An event is recorded by every station
  at ``stations.distance_deg`` (30-90 degrees). Spherical Earth for distances and azimuths.
- Green's function (vertical displacement, per unit moment): spikes at the TauP P, pP and sP times
  with amplitudes from the double-couple radiation pattern at the TauP take-off angles and the
  station azimuth (Aki & Richards eq. 4.84-4.88), so the first-motion polarity of P is physical
  (positive F_P = compression = up; ``trace_polarity``). pP is multiplied by the plane-wave
  free-surface P->P coefficient and sP by the SV->P coefficient (Aki & Richards eq. 5.32, surface
  velocities of the model, horizontal slowness of the ray; PP -> -1 at normal incidence, so pP is
  reversed relative to a P of the same radiation; the sign of sP follows the SV polarisation
  convention of :func:`physics.ray_vectors` and is not tested) and by ``(alpha_h / beta_h)^3``, the
  ratio of the S and P far-field source terms at the source. Geometric spreading is
  ``1 / (4 pi rho_h alpha_h^3 R)`` with R the straight-line source-station distance, an
  order-of-magnitude amplitude (ray-tube spreading and the receiver's free-surface factor, common to
  the three phases, are neglected). A scattering coda starts at P: white noise whose energy decays
  as ``exp(-2 t / propagation.coda_decay_s)`` and carries the energy of a direct wave of amplitude
  ``propagation.coda_relative_amplitude`` x the RMS P radiation over the focal sphere (sqrt(4/15)).
  Everything is attenuated with a causal constant-Q operator, ``t* = propagation.t_star_p`` (1 s):
  amplitude ``exp(-pi f t*)`` with its minimum phase (the Futterman/Kjartansson dispersion
  ``(t*/pi) ln(f_max/f)``), shifted so that the attenuated pulse starts (1% of its peak) at the TauP
  time: picks mark onsets, and for t* = 1 s the peak comes ~0.8 s after the onset
  (:func:`physics.attenuation_response`).
- Record = (apparent STF * Green's function) shifted by a per-trace timing error
  ~ N(0, ``propagation.time_error_std_s``) (unmodelled 3-D structure and clock errors), plus noise
  (:mod:`.noise`).
- Samples: ``sampling_rate_hz`` (10 Hz: t* = 1 s leaves nothing above 2.5 Hz), from
  ``window.pre_p_s`` before the predicted P to ``window.post_p_s`` after it; component ``Z``; unit m.
  ``trace_p_arrival_sample`` is the true onset (prediction + timing error);
  ``trace_p_predicted_sample`` the TauP prediction (window around it to leave the alignment to the
  method); ``trace_pp_arrival_sample`` / ``trace_sp_arrival_sample`` the true depth-phase times.
- Stations are synthesised in chunks of ``memory.traces_per_chunk``, which bounds the memory and
  does not change the result.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from seisjax.data.synthetic import physics
from seisjax.data.synthetic.earthquakes import stf_cumulative, teleseismic_event
from seisjax.data.synthetic.geometry import (DEG_KM, distance_azimuth, straight_distance_km, uniform_cap,
                                             uniform_sphere)
from seisjax.data.synthetic.metadata import clean_row, iso_time, source_columns
from seisjax.data.synthetic.noise import colored_noise, peterson_psd_db, scale_noise_to_snr, window_mask
from seisjax.data.synthetic.streams import NOISE, PATH, event_rng
from seisjax.data.synthetic.traveltimes import TravelTimeTable, medium, planet_radius
from seisjax.errors import InputError

__all__ = ["station_network", "travel_time_tables", "write_event", "n_recordings"]


def station_network(cfg) -> dict[str, np.ndarray]:
    """The fixed global network: ``latitude``, ``longitude`` and ``code`` per station."""
    st = cfg.stations
    rng = np.random.default_rng(int(st.seed))
    lat, lon = uniform_sphere(rng, st.n_scattered)
    lats, lons = [lat], [lon]
    centre_lat, centre_lon = uniform_sphere(rng, st.n_arrays)
    for clat, clon in zip(centre_lat, centre_lon):
        a, b = uniform_cap(rng, clat, clon, st.array_radius_deg, st.array_size)
        lats.append(a)
        lons.append(b)
    lat, lon = np.concatenate(lats), np.concatenate(lons)
    codes = np.array([f"T{i:04d}" for i in range(len(lat))])
    return {"latitude": lat, "longitude": lon, "code": codes}


def _band_code(sampling_rate: float) -> str:
    """SEED band code of a broadband channel at ``sampling_rate`` (H >= 80 Hz, B >= 10, M > 1, L)."""
    return "H" if sampling_rate >= 80 else "B" if sampling_rate >= 10 else "M" if sampling_rate > 1 else "L"


def travel_time_tables(cfg, progress: bool) -> TravelTimeTable:
    """P, pP and sP over the config's depths and distances (one grid step beyond them)."""
    return TravelTimeTable(
        cfg.velocity_model, {"P": ("P",), "pP": ("pP",), "sP": ("sP",)}, cfg.source.depth_km,
        (max(cfg.stations.distance_deg[0] - cfg.taup.distance_step_deg, 0.0),
         min(cfg.stations.distance_deg[1] + cfg.taup.distance_step_deg, 180.0)),
        cfg.taup.depth_step_km, cfg.taup.distance_step_deg, progress)


def n_recordings(cfg, seed: int, k: int, network) -> int:
    """How many stations of ``network`` record event ``k`` (without generating it)."""
    event = teleseismic_event(cfg, seed, k, 0.0)
    dist, _, _ = distance_azimuth(event["latitude"], event["longitude"], network["latitude"], network["longitude"])
    low, high = cfg.stations.distance_deg
    return int(np.count_nonzero((dist >= low) & (dist <= high)))


def _geometry(cfg, event, network, table, geo_skipped: list) -> dict | None:
    """Stations in range, TauP arrivals, amplitudes per unit moment and directivity of one event
    (cheap per-trace scalars); None when no station is in range. Stations without a P arrival (none
    at the default distances) are left out and listed in ``geo_skipped``."""
    prop = cfg.propagation
    model = cfg.velocity_model
    radius = planet_radius(model)
    dist, az, baz = distance_azimuth(event["latitude"], event["longitude"], network["latitude"], network["longitude"])
    keep = np.flatnonzero((dist >= cfg.stations.distance_deg[0]) & (dist <= cfg.stations.distance_deg[1]))
    if len(keep) == 0:
        return None
    dist, az, baz = dist[keep], az[keep], baz[keep]
    depth = event["depth_km"]
    p_arr = table("P", depth, dist)
    has_p = np.isfinite(p_arr["time"])
    if not has_p.all():
        skipped = [f"{event['source_id']} {network['code'][i]}: no TauP P arrival" for i in keep[~has_p]]
        geo_skipped.extend(skipped)
        keep, dist, az, baz = keep[has_p], dist[has_p], az[has_p], baz[has_p]
        if len(keep) == 0:
            return None
        p_arr = table("P", depth, dist)
    pp_arr, sp_arr = table("pP", depth, dist), table("sP", depth, dist)
    mech = (event["strike"], event["dip"], event["rake"])
    # radiation x free surface x spreading
    alpha0, beta0, _ = medium(model, 0.0)
    alpha_h, beta_h, rho_h = event["alpha_h"], event["beta_h"], event["rho_h"]
    fp_p, _, _ = physics.radiation_pattern(*mech, p_arr["takeoff"], az)
    fp_pp, _, _ = physics.radiation_pattern(*mech, pp_arr["takeoff"], az)
    _, fsv_sp, _ = physics.radiation_pattern(*mech, sp_arr["takeoff"], az)
    coef_pp, _ = physics.free_surface_coefficients(pp_arr["ray_param"] / radius, alpha0, beta0)
    _, coef_sp = physics.free_surface_coefficients(sp_arr["ray_param"] / radius, alpha0, beta0)
    spreading = 1.0 / (4 * np.pi * rho_h * (alpha_h * 1e3) ** 3 * straight_distance_km(radius, depth, dist) * 1e3)
    use_depth = prop.depth_phases
    # directivity: the apparent STF is the true one compressed by 1 - v_r p cos(az - az_r)
    p_km = p_arr["ray_param"] / (radius - depth)
    stretch = (1.0 - event["rupture_velocity_km_s"] * p_km * np.cos(np.deg2rad(az - event["rupture_azimuth_deg"]))
               if event["directivity"] else np.ones(len(keep)))
    return dict(
        keep=keep, distance=dist, azimuth=az, back_azimuth=baz, p=p_arr, pp=pp_arr, sp=sp_arr, fp_p=fp_p,
        spreading=spreading, amp_p=fp_p * spreading,
        amp_pp=np.where(use_depth & np.isfinite(pp_arr["time"]), fp_pp * coef_pp * spreading, 0.0),
        amp_sp=np.where(use_depth & np.isfinite(sp_arr["time"]),
                        fsv_sp * coef_sp * (alpha_h / beta_h) ** 3 * spreading, 0.0),
        pp_delay=pp_arr["time"] - p_arr["time"], sp_delay=sp_arr["time"] - p_arr["time"], stretch=stretch,
    )


def _take(geo: dict, rows: slice) -> dict:
    return {k: (_take(v, rows) if isinstance(v, dict) else v[rows]) for k, v in geo.items()}


def _records(cfg, event, geo, seed):
    """Noise-free and noisy records, Green's functions and per-trace truth of one event, yielded in
    chunks of ``memory.traces_per_chunk`` stations so that memory does not grow with the network. The
    random draws are the same whatever the chunk size (each stream is consumed in station order)."""
    fs = cfg.sampling_rate_hz
    dt = 1.0 / fs
    prop = cfg.propagation
    n_tr = len(geo["keep"])
    n = int(round((cfg.window.pre_p_s + cfg.window.post_p_s) * fs))
    n_stf = int(round(cfg.truth.stf_length_s * fs))
    if stf_cumulative(np.array([n_stf * dt]) / geo["stretch"].min(), event)[0] < event["moment_nm"] * (1 - 1e-9):
        raise InputError(f"event {event['source_id']}: its STF (duration {event['duration_s']:.1f} s) does not fit in "
                         f"truth.stf_length_s = {cfg.truth.stf_length_s}; increase it")
    n_fft = scipy.fft.next_fast_len(n + n_stf + int(8 * prop.time_error_std_s * fs) + 2)
    freqs = np.fft.rfftfreq(n_fft, dt)
    t = np.arange(n_fft) * dt
    t_p = cfg.window.pre_p_s  # the trace starts window.pre_p_s before the predicted P
    attenuation = physics.attenuation_response(n_fft, fs, prop.t_star_p)
    # scattering coda: energy envelope exp(-2 (t - tP) / decay), zero before P and after the record
    coda_envelope = (prop.coda_relative_amplitude * math.sqrt(physics.mean_square_radiation()[0])
                     * np.sqrt(2.0 * fs / prop.coda_decay_s) * np.exp(-np.clip(t - t_p, 0.0, None) / prop.coda_decay_s)
                     * (t >= t_p) * (t < n * dt))
    edges = np.arange(n_stf + 1) * dt
    path_rng = event_rng(seed, event["index"], PATH)
    time_error = prop.time_error_std_s * path_rng.standard_normal(n_tr)
    noise_rng = event_rng(seed, event["index"], NOISE)
    snr = np.exp(noise_rng.uniform(*np.log(cfg.noise.snr), n_tr))
    level = noise_rng.uniform(*cfg.noise.level, n_tr)
    f_noise = np.fft.rfftfreq(n, dt)
    band = (np.abs(physics.butterworth_response(f_noise, cfg.noise.band_hz[0], cfg.noise.band_order, "highpass"))
            * np.abs(physics.butterworth_response(f_noise, cfg.noise.band_hz[1], cfg.noise.band_order, "lowpass"))) ** 2
    with np.errstate(divide="ignore"):
        to_displacement = band / np.where(f_noise > 0, (2 * np.pi * f_noise) ** 4, np.inf)
    chunk = cfg.memory.traces_per_chunk
    for start in range(0, n_tr, chunk):
        rows = slice(start, min(start + chunk, n_tr))
        g = _take(geo, rows)
        m = rows.stop - rows.start
        # Green's function: spikes + coda (continuous-time spectrum), attenuated
        tp = np.full(m, t_p)
        green_f = (g["amp_p"][:, None] * physics.delay_response(freqs, tp)
                   + g["amp_pp"][:, None] * physics.delay_response(freqs, tp + np.nan_to_num(g["pp_delay"]))
                   + g["amp_sp"][:, None] * physics.delay_response(freqs, tp + np.nan_to_num(g["sp_delay"])))
        coda = (g["spreading"][:, None] * coda_envelope) * path_rng.standard_normal((m, n_fft))
        green_f += dt * np.fft.rfft(coda, axis=-1)
        del coda
        green_f *= attenuation
        # apparent STF per station, sampled as the mean rate per interval
        stf_app = physics.rate_from_cumulative(stf_cumulative(edges[None, :] / g["stretch"][:, None], event), dt)
        spectrum = np.fft.rfft(stf_app, n=n_fft, axis=-1) * green_f * physics.delay_response(freqs, time_error[rows])
        signal = np.fft.irfft(spectrum, n=n_fft, axis=-1)[:, :n]
        del spectrum
        green = np.fft.irfft(green_f, n=n_fft, axis=-1)[:, :n] * fs if cfg.truth.store_green_functions else None
        del green_f
        # noise at the drawn SNR
        p_true = (t_p + time_error[rows]) * fs
        psd = 10.0 ** (peterson_psd_db(f_noise, level[rows, None]) / 10.0) * to_displacement
        noise = colored_noise(noise_rng, (m,), n, fs, psd)
        scale = scale_noise_to_snr(signal, noise, snr[rows], window_mask(n, fs, p_true, cfg.snr.noise_window_s),
                                    window_mask(n, fs, p_true, cfg.snr.signal_window_s))
        record = signal + noise * scale[:, None] if cfg.noise.enabled else signal
        yield dict(g, time_error=time_error[rows], snr=snr[rows], noise_level=level[rows], noise_scale=scale,
                   record=record, green=green, p_predicted=np.full(m, t_p * fs), p_true=p_true)


def _rows(cfg, event, rec, network, split) -> list[dict]:
    fs = cfg.sampling_rate_hz
    noise_on = cfg.noise.enabled
    radius = planet_radius(cfg.velocity_model)
    n = rec["record"].shape[-1]
    start = event["origin_time"] + rec["p"]["time"] - cfg.window.pre_p_s
    codes = network["code"][rec["keep"]]
    source = source_columns(event)
    rows = []
    for j in range(len(rec["keep"])):
        def sample(delay):
            s = rec["p_true"][j] + delay * fs
            return round(float(s), 3) if np.isfinite(s) and 0 <= s < n else None

        rows.append({
            **source, "station_network_code": cfg.stations.network_code, "station_code": str(codes[j]),
            "station_location_code": "", "station_channel_code": _band_code(fs) + "H",
            "station_latitude_deg": round(float(network["latitude"][rec["keep"][j]]), 5),
            "station_longitude_deg": round(float(network["longitude"][rec["keep"][j]]), 5),
            "station_elevation_m": 0.0,
            "path_ep_distance_deg": round(float(rec["distance"][j]), 5),
            "path_ep_distance_km": round(float(rec["distance"][j]) * radius * DEG_KM, 3),
            "path_azimuth_deg": round(float(rec["azimuth"][j]), 4),
            "path_back_azimuth_deg": round(float(rec["back_azimuth"][j]), 4),
            "path_p_travel_sec": round(float(rec["p"]["time"][j]), 4),
            "trace_start_time": iso_time(float(start[j])), "trace_sampling_rate_hz": fs, "trace_npts": n,
            "trace_component_order": "Z", "trace_category": "earthquake",
            "trace_p_arrival_sample": round(float(rec["p_true"][j]), 3),
            "trace_p_predicted_sample": round(float(rec["p_predicted"][j]), 3),
            "trace_p_status": "synthetic", "trace_polarity": int(np.sign(rec["fp_p"][j]) or 1),
            "trace_pp_arrival_sample": sample(rec["pp_delay"][j]),
            "trace_sp_arrival_sample": sample(rec["sp_delay"][j]),
            "trace_snr_db": round(float(20 * np.log10(rec["snr"][j])), 4) if noise_on else None, "split": split,
        })
    return rows


def _event_truth(cfg, event, n_traces: int, split: str) -> dict:
    fs = cfg.sampling_rate_hz
    n_stf = int(round(cfg.truth.stf_length_s * fs))
    edges = np.arange(n_stf + 1) / fs
    stf = physics.rate_from_cumulative(stf_cumulative(edges, event), 1.0 / fs)
    pad = lambda a, fill=np.nan: np.concatenate([np.asarray(a, float), np.full(3 - len(a), fill)])  # noqa: E731
    shapes = ["triangle" if t else "smoothed_boxcar" for t in event["sub_triangle"]]
    shapes = np.array(shapes + [""] * (3 - len(shapes)))
    events = {
        "source_id": [event["source_id"]], "origin_time": [iso_time(event["origin_time"])],
        "latitude_deg": [event["latitude"]], "longitude_deg": [event["longitude"]], "depth_km": [event["depth_km"]],
        "magnitude": [event["magnitude"]], "moment_nm": [event["moment_nm"]], "strike_deg": [event["strike"]],
        "dip_deg": [event["dip"]], "rake_deg": [event["rake"]], "duration_s": [event["duration_s"]],
        "n_subevents": [len(event["sub_onset"])], "subevent_onset_s": [pad(event["sub_onset"])],
        "subevent_duration_s": [pad(event["sub_duration"])],
        "subevent_moment_fraction": [pad(event["sub_fraction"], 0.0)],
        "subevent_shape": [shapes], "directivity": [event["directivity"]],
        "rupture_azimuth_deg": [event["rupture_azimuth_deg"]],
        "rupture_velocity_km_s": [event["rupture_velocity_km_s"]],
        "n_traces": [n_traces], "split": [split], "stf": stf[None, :],
    }
    return events


def _trace_truth(cfg, event, rec, rows, names) -> dict:
    traces = {
        "trace_name": names, "source_id": [event["source_id"]] * len(rows),
        "station_code": [r["station_code"] for r in rows], "distance_deg": rec["distance"],
        "azimuth_deg": rec["azimuth"], "p_travel_time_s": rec["p"]["time"], "p_takeoff_deg": rec["p"]["takeoff"],
        "p_ray_param_s_per_rad": rec["p"]["ray_param"],
        "pp_delay_s": rec["pp_delay"], "sp_delay_s": rec["sp_delay"], "pp_takeoff_deg": rec["pp"]["takeoff"],
        "sp_takeoff_deg": rec["sp"]["takeoff"], "p_radiation": rec["fp_p"], "amplitude_p": rec["amp_p"],
        "amplitude_pp": rec["amp_pp"], "amplitude_sp": rec["amp_sp"],
        "polarity": np.where(rec["fp_p"] < 0, -1, 1).astype(np.int8),
        "time_error_s": rec["time_error"], "stf_time_scale": rec["stretch"],
        "apparent_duration_s": event["duration_s"] * rec["stretch"],
        "snr": rec["snr"] if cfg.noise.enabled else np.full(len(rows), np.inf), "noise_level": rec["noise_level"],
        "p_predicted_sample": rec["p_predicted"], "p_arrival_sample": rec["p_true"],
    }
    if rec["green"] is not None:
        traces["green"] = rec["green"].astype(np.float32)
    return traces


def write_event(cfg, k, seed, origin_start, network, table, split, writer, truth, fig_data) -> int:
    """Generate event ``k``, write its records to ``writer`` and its truth to ``truth``, keep what the
    overview figure shows in ``fig_data``; the number of traces written."""
    event = teleseismic_event(cfg, seed, k, origin_start)
    geo = _geometry(cfg, event, network, table, truth.skipped)
    n_traces = 0 if geo is None else len(geo["keep"])
    events = _event_truth(cfg, event, n_traces, split)  # an event no station records stays, with 0 traces
    truth.append("events", events)
    truth.set_attrs("events/stf", {"sampling_rate_hz": cfg.sampling_rate_hz, "time_start_s": 0.0, "unit": "N m / s"})
    fs = cfg.sampling_rate_hz
    if len(fig_data.stfs) < cfg.figure.n_stf_events:
        fig_data.stfs.append((event, events["stf"][0], fs))
    if geo is None:
        return 0
    section = []
    for rec in _records(cfg, event, geo, seed):
        rows = _rows(cfg, event, rec, network, split)
        record32 = rec["record"].astype(np.float32)
        names = [writer.add(record32[j][None, :], clean_row(row)) for j, row in enumerate(rows)]
        truth.append("traces", _trace_truth(cfg, event, rec, rows, names))
        if fig_data.section is None:
            section.append((rec["distance"], record32, rec["p"]["time"] - cfg.window.pre_p_s))
        if not fig_data.noise:
            n = rec["record"].shape[-1]
            fig_data.noise = [(float(rec["noise_level"].min()), fs, n, 4), (float(rec["noise_level"].max()), fs, n, 4)]
    truth.set_attrs("traces/green", {"sampling_rate_hz": fs, "time_start_s": 0.0,
                                     "unit": "1/s (displacement in m per N m of moment)",
                                     "time_axis": "the trace's own samples"})
    if section:
        fig_data.section = {"distance": np.concatenate([s[0] for s in section]),
                            "record": np.concatenate([s[1] for s in section]),
                            "t0": np.concatenate([s[2] for s in section]), "fs": fs, "depth": event["depth_km"],
                            "magnitude": event["magnitude"], "source_id": event["source_id"]}
    return n_traces
