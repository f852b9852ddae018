"""Scenario ``local``: local and teleseismic events on a fixed regional network of three-component
stations, for clustering, the spectrogram VAE/CVAE and the LSTM AE.

- Network: ``network.n_stations`` stations named ``SJ01``... within ``network.radius_km`` of
  ``network.centre_deg``; each has an instrument family HH (broadband, 100 Hz), BH (broadband,
  40 Hz) or EH (1 Hz short-period geophone, 100 Hz), with analog Butterworth responses from
  ``instruments.<family>`` (high-pass corner and order, anti-alias low-pass) and channels
  ``<family>Z/N/E``, and its own site response fixed by the network seed: a causal resonance
  (gain, frequency, damping), a broadband amplification factor and a near-surface kappa.
- Each station records an event with probability ``catalog.record_probability``; local events only
  at < ``catalog.local.max_distance_km`` (150 km).
- P and S (first arrivals, :mod:`.traveltimes`); P, SV and SH radiation pattern amplitudes; P on the
  vertical and radial, SV on the radial and vertical, SH on the transverse, with the incidence angle
  at the surface (free-surface conversions neglected); spreading ``1/(4 pi rho v^3 R)``; attenuation
  ``t* = T / Q`` (local) or the teleseismic ``t*``, plus the station's kappa, with the same
  constant-Q operator as ``teleseismic-p``; exponentially decaying scattering codas after P and S;
  then the site response, differentiation to ground velocity and the instrument response (unit m/s).
  First-motion polarity of P on Z = sign(F_P) (``trace_polarity``, +1/-1).
- Noise: NLNM-NHNM shaped ground velocity on three components through the same instrument, scaled
  to the SNR on Z with the quality module's windows (-5..0 s, 0..5 s) (:mod:`.noise`).
- Records of ``instruments.<family>.record_length_s`` (80 s) at the family's rate, P at a random
  ``record.p_offset_s``; ``trace_s_arrival_sample`` is empty when S falls after the window (most
  teleseismic records). Mixed sampling rates: each row has ``trace_sampling_rate_hz``.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from seisjax.data.synthetic import physics
from seisjax.data.synthetic.earthquakes import local_event
from seisjax.data.synthetic.geometry import DEG_KM, destination, distance_azimuth, straight_distance_km
from seisjax.data.synthetic.metadata import clean_row, iso_time, source_columns
from seisjax.data.synthetic.noise import colored_noise, peterson_psd_db, scale_noise_to_snr, window_mask
from seisjax.data.synthetic.streams import NOISE, PATH, event_rng
from seisjax.data.synthetic.traveltimes import TravelTimeTable, medium, planet_radius

__all__ = ["station_network", "travel_time_tables", "write_event", "n_recordings"]


def station_network(cfg) -> dict[str, np.ndarray]:
    """The fixed network: per station its code, location, instrument family and site response."""
    net = cfg.network
    rng = np.random.default_rng(int(net.seed))
    radius = net.radius_km * np.sqrt(rng.uniform(size=net.n_stations))
    km_per_deg = planet_radius(cfg.velocity_model) * DEG_KM
    lat, lon = destination(net.centre_deg[0], net.centre_deg[1], radius / km_per_deg,
                            rng.uniform(0.0, 360.0, net.n_stations))
    families = list(net.instrument_fractions)
    probs = np.asarray([net.instrument_fractions[f] for f in families])
    family = np.asarray(families)[rng.choice(len(families), size=net.n_stations, p=probs)]
    width = len(str(net.n_stations))
    return {
        "code": np.array([f"{net.code}{i + 1:0{max(2, width)}d}" for i in range(net.n_stations)]),
        "latitude": lat, "longitude": lon, "family": family,
        "amplification": 10.0 ** (net.site_amplification_log10_std * rng.standard_normal(net.n_stations)),
        "resonance_hz": np.exp(rng.uniform(*np.log(net.resonance_hz), net.n_stations)),
        "resonance_gain": rng.uniform(*net.resonance_gain, net.n_stations),
        "resonance_damping": rng.uniform(*net.resonance_damping, net.n_stations),
        "kappa_s": rng.uniform(*net.kappa_s, net.n_stations),
    }


def travel_time_tables(cfg, progress: bool) -> dict[str, TravelTimeTable]:
    """First P and S arrivals for the local events (``"local"``, straight-ray corrected) and for the
    teleseismic ones (``"teleseismic"``); only those the catalog can draw."""
    radius = planet_radius(cfg.velocity_model) * DEG_KM
    spec = cfg.catalog
    first_arrivals = {"P": ("p", "P", "Pn"), "S": ("s", "S", "Sn")}
    tables = {}
    if spec.teleseismic_fraction < 1.0:
        tables["local"] = TravelTimeTable(
            cfg.velocity_model, first_arrivals, spec.local.depth_km,
            (0.0, (spec.local.radius_km + cfg.network.radius_km) / radius + cfg.taup.local_distance_step_deg),
            cfg.taup.local_depth_step_km, cfg.taup.local_distance_step_deg, progress,
            straight_ray={"p": "P", "s": "S"})
    if spec.teleseismic_fraction > 0.0:
        tables["teleseismic"] = TravelTimeTable(
            cfg.velocity_model, first_arrivals, spec.teleseismic.depth_km,
            (max(spec.teleseismic.distance_km[0] / radius - 1.0, 0.0), spec.teleseismic.distance_km[1] / radius + 1.0),
            cfg.taup.teleseismic_depth_step_km, cfg.taup.teleseismic_distance_step_deg, progress)
    return tables


def n_recordings(cfg, seed: int, k: int, network) -> int:
    """How many stations of ``network`` record event ``k`` (without generating it)."""
    return len(_stations_for(cfg, local_event(cfg, seed, k, 0.0), network, seed)[0])


def _stations_for(cfg, event, network, seed):
    """Stations that record the event (a random subset; local events only within the maximum distance)."""
    spec = cfg.catalog
    radius = planet_radius(cfg.velocity_model)
    dist, az, baz = distance_azimuth(event["latitude"], event["longitude"], network["latitude"], network["longitude"])
    rng = event_rng(seed, event["index"], PATH)
    u = rng.uniform(size=len(dist))
    allowed = np.ones(len(dist), bool)
    if event["distance_class"] == "local":
        allowed = dist * radius * DEG_KM <= spec.local.max_distance_km
    chosen = allowed & (u < spec.record_probability)
    if not chosen.any() and allowed.any():
        chosen[np.flatnonzero(allowed)[np.argmin(u[allowed])]] = True
    keep = np.flatnonzero(chosen)
    return keep, dist[keep], az[keep], baz[keep], rng


_BRUNE_COMPLETE_AT = 24.0
# Linear responses ring for several time constants; the FFT length leaves this many of the slowest
# one after the record so that nothing wraps around into the pre-P noise window (exp(-12) ~ 6e-6).
_RING_TIME_CONSTANTS = 12.0


def _ring_time_s(inst, network, keep) -> float:
    """Seconds for the instrument high-pass and the site resonances of ``keep`` to ring down."""
    constants = [0.0]
    if inst.highpass_hz > 0:
        constants.append(1.0 / (2 * np.pi * inst.highpass_hz * np.sin(np.pi / (2 * max(inst.highpass_order, 1)))))
    zeta_w0 = 2 * np.pi * network["resonance_hz"][keep] * network["resonance_damping"][keep]
    constants.append(float(np.max(1.0 / zeta_w0)))
    return _RING_TIME_CONSTANTS * max(constants)


def _family_records(cfg, event, network, keep, dist, az, baz, tables, family, path_rng, noise_rng):
    """Three-component records of the stations ``keep`` (one instrument family)."""
    inst = cfg.instruments[family]
    prop = cfg.propagation
    fs = inst.sampling_rate_hz
    dt = 1.0 / fs
    n = int(round(inst.record_length_s * fs))
    n_tr = len(keep)
    model = cfg.velocity_model
    radius = planet_radius(model)
    tele = event["distance_class"] == "teleseismic"
    table = tables["teleseismic" if tele else "local"]
    depth = event["depth_km"]
    p_arr, s_arr = table("P", depth, dist), table("S", depth, dist)
    mech = (event["strike"], event["dip"], event["rake"])
    fp, _, _ = physics.radiation_pattern(*mech, p_arr["takeoff"], az)
    _, fsv, fsh = physics.radiation_pattern(*mech, s_arr["takeoff"], az)
    alpha0, beta0, _ = medium(model, 0.0)
    alpha_h, beta_h, rho_h = event["alpha_h"], event["beta_h"], event["rho_h"]
    r_m = straight_distance_km(radius, depth, dist) * 1e3
    spread_p = 1.0 / (4 * np.pi * rho_h * (alpha_h * 1e3) ** 3 * r_m)
    spread_s = 1.0 / (4 * np.pi * rho_h * (beta_h * 1e3) ** 3 * r_m)
    sin_i0 = np.clip(p_arr["ray_param"] / radius * alpha0, 0.0, 1.0)
    sin_j0 = np.clip(s_arr["ray_param"] / radius * beta0, 0.0, 1.0)
    cos_i0, cos_j0 = np.sqrt(1 - sin_i0 ** 2), np.sqrt(1 - sin_j0 ** 2)
    # (Z up, R away from the source, T = R turned clockwise) -> (Z, N, E)
    phi_r = np.deg2rad(baz + 180.0)
    def zne(z, r, tr):  # noqa: E306
        return np.stack([z, r * np.cos(phi_r) - tr * np.sin(phi_r), r * np.sin(phi_r) + tr * np.cos(phi_r)], axis=1)

    amp_p = zne(fp * cos_i0, fp * sin_i0, np.zeros(n_tr)) * spread_p[:, None]
    amp_s = zne(-fsv * sin_j0, fsv * cos_j0, fsh) * spread_s[:, None]

    # ---- times in the trace: P at a random offset
    p_offset = path_rng.uniform(*cfg.record.p_offset_s, n_tr)
    t_p = p_offset
    t_s = p_offset + (s_arr["time"] - p_arr["time"])
    # Brune pulse until its cumulative moment is complete to 1e-9 ((1 + a t) exp(-a t) = 1e-9 at a t ~ 24)
    n_stf = int(math.ceil(_BRUNE_COMPLETE_AT / (2 * np.pi * event["corner_frequency_hz"]) * fs)) + 1
    n_fft = scipy.fft.next_fast_len(n + n_stf + int(math.ceil(_ring_time_s(inst, network, keep) * fs)))
    freqs = np.fft.rfftfreq(n_fft, dt)
    kappa = network["kappa_s"][keep]
    if tele:
        tstar_p = np.full(n_tr, prop.teleseismic_t_star_p)
        tstar_s = np.full(n_tr, prop.teleseismic_t_star_s)
        decay = prop.teleseismic_coda_decay_s
    else:
        tstar_p = p_arr["time"] / prop.q_p
        tstar_s = s_arr["time"] / prop.q_s
        decay = prop.local_coda_decay_s
    att_p = physics.attenuation_response(n_fft, fs, tstar_p + kappa)
    att_s = physics.attenuation_response(n_fft, fs, tstar_s + kappa)

    t = np.arange(n_fft) * dt
    ms_p, ms_s = physics.mean_square_radiation()

    def coda(onset, rel_amp, spread, rms_radiation):
        # scattering within the record only (beyond it, it could not reach the record anyway)
        t_rec = t[None, :n]
        std = (rel_amp * rms_radiation * spread[:, None] * np.sqrt(2.0 * fs / decay)
               * np.exp(-np.clip(t_rec - onset[:, None], 0.0, None) / decay) * (t_rec >= onset[:, None]))
        # one independent scattered wavefield per component, shared normalisation over the 3 components
        white = path_rng.standard_normal((n_tr, 3, n))
        return dt * np.fft.rfft(std[:, None, :] * white / math.sqrt(3.0), n=n_fft, axis=-1)

    s_valid = np.isfinite(t_s) & (t_s < n * dt)  # a later S cannot reach the record (and must not wrap around)
    green_p = (amp_p[:, :, None] * physics.delay_response(freqs, t_p)[:, None, :]
               + coda(t_p, prop.p_coda_relative_amplitude, spread_p, math.sqrt(ms_p))) * att_p[:, None, :]
    green_s = (np.nan_to_num(amp_s)[:, :, None] * physics.delay_response(freqs, np.where(s_valid, t_s, 0.0))[:, None, :]
               + coda(np.where(s_valid, t_s, n_fft * dt), prop.s_coda_relative_amplitude, spread_s,
                      math.sqrt(ms_s))) * att_s[:, None, :]
    green_f = green_p + green_s * s_valid[:, None, None]

    site = (network["amplification"][keep][:, None]
            * physics.resonance_response(freqs, network["resonance_gain"][keep][:, None],
                                         network["resonance_hz"][keep][:, None],
                                         network["resonance_damping"][keep][:, None]))
    instrument = (physics.butterworth_response(freqs, inst.highpass_hz, inst.highpass_order, "highpass")
                  * physics.butterworth_response(freqs, inst.lowpass_hz, inst.lowpass_order, "lowpass"))
    edges = np.arange(n_stf + 1) * dt
    cumulative = physics.brune_cumulative(edges, event["corner_frequency_hz"])
    stf = event["moment_nm"] * physics.rate_from_cumulative(cumulative, dt)
    stf_f = np.fft.rfft(stf, n=n_fft)
    velocity_f = stf_f[None, None, :] * green_f * site[:, None, :] * (2j * np.pi * freqs) * instrument
    signal = np.fft.irfft(velocity_f, n=n_fft, axis=-1)[..., :n]

    # ---- noise: NLNM-NHNM ground velocity through the instrument, scaled to the SNR on Z
    snr = np.exp(noise_rng.uniform(*np.log(cfg.noise.snr), n_tr))
    level = noise_rng.uniform(*cfg.noise.level, n_tr)
    f_noise = np.fft.rfftfreq(n, dt)
    with np.errstate(divide="ignore"):
        vel_psd = 10.0 ** (peterson_psd_db(f_noise, level[:, None]) / 10.0) / np.where(
            f_noise > 0, (2 * np.pi * f_noise) ** 2, np.inf)
    inst_noise = (physics.butterworth_response(f_noise, inst.highpass_hz, inst.highpass_order, "highpass")
                  * physics.butterworth_response(f_noise, inst.lowpass_hz, inst.lowpass_order, "lowpass"))
    noise = colored_noise(noise_rng, (n_tr, 3), n, fs, (vel_psd * np.abs(inst_noise) ** 2)[:, None, :])
    p_sample = t_p * fs
    noise_mask = window_mask(n, fs, p_sample, cfg.snr.noise_window_s)
    signal_mask = window_mask(n, fs, p_sample, cfg.snr.signal_window_s)
    scale = scale_noise_to_snr(signal[:, 0], noise[:, 0], snr, noise_mask, signal_mask)
    record = signal + noise * scale[:, None, None] if cfg.noise.enabled else signal.copy()
    s_sample = t_s * fs
    return dict(
        family=family, sampling_rate=fs, n=n, record=record, noise_on=cfg.noise.enabled, signal=signal,
        noise_level=level,
        p=p_arr, s=s_arr, fp=fp, fsv=fsv, fsh=fsh, p_sample=p_sample, s_sample=s_sample, snr=snr, noise_scale=scale,
        t_star_p=tstar_p, t_star_s=tstar_s, stf=stf,
    )


def _rows(cfg, event, network, keep, dist, az, baz, rec, split) -> list[dict]:
    noise_on = cfg.noise.enabled
    radius = planet_radius(cfg.velocity_model)
    start = event["origin_time"] + rec["p"]["time"] - rec["p_sample"] / rec["sampling_rate"]
    hyp = straight_distance_km(radius, event["depth_km"], dist)
    source = source_columns(event)
    rows = []
    for j, st in enumerate(keep):
        s = rec["s_sample"][j]
        rows.append({
            **source, "station_network_code": cfg.network.code, "station_code": str(network["code"][st]),
            "station_location_code": "", "station_channel_code": rec["family"],
            "station_latitude_deg": round(float(network["latitude"][st]), 5),
            "station_longitude_deg": round(float(network["longitude"][st]), 5), "station_elevation_m": 0.0,
            "path_ep_distance_deg": round(float(dist[j]), 6),
            "path_ep_distance_km": round(float(dist[j]) * radius * DEG_KM, 3),
            "path_hyp_distance_km": round(float(hyp[j]), 3),
            "path_azimuth_deg": round(float(az[j]), 4), "path_back_azimuth_deg": round(float(baz[j]), 4),
            "path_distance_class": event["distance_class"],
            "path_p_travel_sec": round(float(rec["p"]["time"][j]), 4),
            "path_s_travel_sec": round(float(rec["s"]["time"][j]), 4),
            "trace_start_time": iso_time(float(start[j])), "trace_sampling_rate_hz": rec["sampling_rate"],
            "trace_npts": rec["n"], "trace_component_order": "ZNE", "trace_category": "earthquake",
            "trace_channel": ",".join(f"{rec['family']}{c}" for c in "ZNE"),
            "trace_p_arrival_sample": round(float(rec["p_sample"][j]), 3),
            "trace_s_arrival_sample": round(float(s), 3) if np.isfinite(s) and s < rec["n"] else None,
            "trace_p_status": "synthetic", "trace_s_status": "synthetic",
            "trace_polarity": int(-1 if rec["fp"][j] < 0 else 1),
            "trace_snr_db": round(float(20 * np.log10(rec["snr"][j])), 4) if noise_on else None, "split": split,
        })
    return rows


def _event_truth(event, n_traces: int, split: str) -> dict:
    keys = ("source_id", "latitude", "longitude", "depth_km", "magnitude", "moment_nm", "strike", "dip", "rake",
            "stress_drop_pa", "corner_frequency_hz", "distance_class")
    events = {k: [event[k]] for k in keys}
    events.update(origin_time=[iso_time(event["origin_time"])], n_traces=[n_traces], split=[split])
    return events


def _trace_truth(event, rec, rows, names, keep) -> dict:
    return {
        "trace_name": names, "source_id": [event["source_id"]] * len(rows), "station_index": keep,
        "station_code": [r["station_code"] for r in rows], "channel_code": [rec["family"]] * len(rows),
        "sampling_rate_hz": np.full(len(rows), rec["sampling_rate"]),
        "distance_class": [event["distance_class"]] * len(rows),
        "distance_km": [r["path_ep_distance_km"] for r in rows], "azimuth_deg": [r["path_azimuth_deg"] for r in rows],
        "p_travel_time_s": rec["p"]["time"], "s_travel_time_s": rec["s"]["time"],
        "p_takeoff_deg": rec["p"]["takeoff"], "s_takeoff_deg": rec["s"]["takeoff"],
        "p_radiation": rec["fp"], "sv_radiation": rec["fsv"], "sh_radiation": rec["fsh"],
        "polarity": np.where(rec["fp"] < 0, -1, 1).astype(np.int8), "p_arrival_sample": rec["p_sample"],
        "s_arrival_sample": rec["s_sample"], "t_star_p_s": rec["t_star_p"], "t_star_s_s": rec["t_star_s"],
        "snr": rec["snr"] if rec["noise_on"] else np.full(len(rows), np.inf), "noise_level": rec["noise_level"],
    }


def write_event(cfg, k, seed, origin_start, network, tables, split, writer, truth, fig_data) -> int:
    """Generate event ``k``, write its records to ``writer`` and its truth to ``truth``, keep what the
    overview figure shows in ``fig_data``; the number of traces written."""
    event = local_event(cfg, seed, k, origin_start)
    keep, dist, az, baz, path_rng = _stations_for(cfg, event, network, seed)
    table = tables[event["distance_class"]]
    has_p = np.isfinite(table("P", event["depth_km"], dist)["time"]) if len(keep) else np.ones(0, bool)
    if not has_p.all():
        truth.skipped.extend(f"{event['source_id']} {network['code'][i]}: no TauP P arrival" for i in keep[~has_p])
        keep, dist, az, baz = keep[has_p], dist[has_p], az[has_p], baz[has_p]
    noise_rng = event_rng(seed, event["index"], NOISE)
    truth.append("events", _event_truth(event, len(keep), split))
    n_written = 0
    section = []
    for family in sorted(cfg.instruments.keys()):
        sel = network["family"][keep] == family
        if not sel.any():
            continue
        rec = _family_records(cfg, event, network, keep[sel], dist[sel], az[sel], baz[sel], tables, family,
                                    path_rng, noise_rng)
        rows = _rows(cfg, event, network, keep[sel], dist[sel], az[sel], baz[sel], rec, split)
        record32 = rec["record"].astype(np.float32)
        names = [writer.add(record32[j], clean_row(row)) for j, row in enumerate(rows)]
        truth.append("traces", _trace_truth(event, rec, rows, names, keep[sel]))
        n_written += len(rows)
        radius = planet_radius(cfg.velocity_model) * DEG_KM
        for j in range(len(rows)):
            start = rec["p"]["time"][j] - rec["p_sample"][j] / rec["sampling_rate"]
            section.append((dist[sel][j] * radius, record32[j, 0], start, rec["sampling_rate"]))
        new_magnitude = not fig_data.spectra or abs(fig_data.spectra[-1][0]["magnitude"] - event["magnitude"]) > 0.5
        if len(fig_data.spectra) < cfg.figure.n_spectra and new_magnitude:
            j = 0
            fs = rec["sampling_rate"]
            p0 = int(rec["p_sample"][j])
            s_sample = rec["s_sample"][j]
            stop = int(s_sample) if np.isfinite(s_sample) and s_sample < rec["n"] else rec["n"]
            disp = np.cumsum(rec["signal"][j, 0]) / fs
            seg = disp[max(p0 - int(0.5 * fs), 0): max(stop - int(0.2 * fs), p0 + 8)]
            fig_data.spectra.append((event, seg - seg[0], fs))
        if not fig_data.noise:
            fig_data.noise = [(float(rec["noise_level"].min()), rec["sampling_rate"], rec["n"], 2),
                              (float(rec["noise_level"].max()), rec["sampling_rate"], rec["n"], 2)]
        seen = any(abs(e["magnitude"] - event["magnitude"]) < 0.4 for e, _, _ in fig_data.stfs)
        if len(fig_data.stfs) < 6 and not seen:
            fig_data.stfs.append((event, rec["stf"], rec["sampling_rate"]))
    if fig_data.section is None and event["distance_class"] == "local" and len(section) >= 3:
        fig_data.section = {"distance_km": np.array([s[0] for s in section]), "records": [s[1] for s in section],
                            "t0": np.array([s[2] for s in section]), "fs": np.array([s[3] for s in section]),
                            "depth": event["depth_km"], "magnitude": event["magnitude"],
                            "source_id": event["source_id"]}
    return n_written
