"""Source, radiation and propagation physics of the synthetic seismograms.

Every function here is a small vectorised numpy function of physical quantities; the parameters
(magnitudes, stress drops, t*, ...) come from the generator's config, not from this module. The few
constants below are definitions, not tunable choices.

Conventions
-----------
- Coordinates at the source are Aki & Richards' (2002) north-east-down: x = north, y = east, z = down.
- Take-off angles are measured from the downward vertical (TauP's ``takeoff_angle``): < 90 degrees for
  rays that leave the source downwards (P), > 90 degrees for upgoing rays (pP, sP, local ``p``).
- Azimuths are clockwise from north, from the source to the station.
- Frequency responses use numpy's FFT sign convention ``X(f) = sum x(t) exp(-i 2 pi f t)``, so a delay
  ``tau`` is the factor ``exp(-i 2 pi f tau)``.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.signal

__all__ = [
    "moment_from_magnitude", "moment_tensor", "ray_vectors", "radiation_pattern",
    "mean_square_radiation", "free_surface_coefficients", "brune_corner_frequency",
    "brune_cumulative", "triangle_cumulative", "smoothed_boxcar_cumulative", "rate_from_cumulative",
    "attenuation_response", "resonance_response", "butterworth_response", "delay_response",
]

#: log10 M0 [N m] = 1.5 Mw + 9.1 (Hanks & Kanamori 1979 in SI units; IASPEI 2013 standard).
MOMENT_MAGNITUDE_OFFSET = 9.1


# --------------------------------------------------------------------------------------- source
def moment_from_magnitude(mw):
    """Seismic moment in N m of moment magnitude ``mw``."""
    return 10.0 ** (1.5 * np.asarray(mw, dtype=float) + MOMENT_MAGNITUDE_OFFSET)


def moment_tensor(strike_deg, dip_deg, rake_deg) -> np.ndarray:
    """Unit-moment double-couple tensor ``(..., 3, 3)`` in north-east-down coordinates.

    Aki & Richards (2002), Box 4.4, from strike, dip and rake (degrees, Aki & Richards convention).
    """
    phi, delta, lam = (np.deg2rad(np.asarray(a, dtype=float)) for a in (strike_deg, dip_deg, rake_deg))
    sd, cd, s2d, c2d = np.sin(delta), np.cos(delta), np.sin(2 * delta), np.cos(2 * delta)
    sl, cl = np.sin(lam), np.cos(lam)
    sp, cp, s2p, c2p = np.sin(phi), np.cos(phi), np.sin(2 * phi), np.cos(2 * phi)
    mxx = -(sd * cl * s2p + s2d * sl * sp ** 2)
    mxy = sd * cl * c2p + 0.5 * s2d * sl * s2p
    mxz = -(cd * cl * cp + c2d * sl * sp)
    myy = sd * cl * s2p - s2d * sl * cp ** 2
    myz = -(cd * cl * sp - c2d * sl * cp)
    mzz = s2d * sl
    return np.stack([np.stack([mxx, mxy, mxz], -1),
                     np.stack([mxy, myy, myz], -1),
                     np.stack([mxz, myz, mzz], -1)], -2)


def ray_vectors(takeoff_deg, azimuth_deg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors ``(..., 3)`` (north, east, down) of a ray leaving the source.

    Returns the ray direction (P polarisation), the SV polarisation (direction of increasing take-off
    angle) and the SH polarisation (direction of increasing azimuth), as in Aki & Richards eq. 4.88.
    """
    i, phi = np.deg2rad(np.asarray(takeoff_deg, dtype=float)), np.deg2rad(np.asarray(azimuth_deg, dtype=float))
    i, phi = np.broadcast_arrays(i, phi)
    gamma = np.stack([np.sin(i) * np.cos(phi), np.sin(i) * np.sin(phi), np.cos(i)], -1)
    e_sv = np.stack([np.cos(i) * np.cos(phi), np.cos(i) * np.sin(phi), -np.sin(i)], -1)
    e_sh = np.stack([-np.sin(phi), np.cos(phi), np.zeros_like(phi)], -1)
    return gamma, e_sv, e_sh


def radiation_pattern(strike_deg, dip_deg, rake_deg, takeoff_deg, azimuth_deg):
    """Far-field radiation coefficients ``(F_P, F_SV, F_SH)`` of a unit double couple.

    ``F_P = gamma . M . gamma`` and ``F_S = e_S . M . gamma`` (Aki & Richards eq. 4.84-4.88): positive
    ``F_P`` is compression, i.e. a first motion away from the source, which is *up* at a station that
    the ray reaches from below. Shapes broadcast (mechanism arrays against ray arrays).
    """
    m = moment_tensor(strike_deg, dip_deg, rake_deg)
    gamma, e_sv, e_sh = ray_vectors(takeoff_deg, azimuth_deg)
    mg = np.einsum("...ij,...j->...i", m, gamma)
    return (np.einsum("...i,...i->...", gamma, mg), np.einsum("...i,...i->...", e_sv, mg),
            np.einsum("...i,...i->...", e_sh, mg))


def mean_square_radiation() -> tuple[float, float]:
    """Mean of ``F_P**2`` and of ``F_SV**2 + F_SH**2`` over the focal sphere of a double couple:
    4/15 and 2/5 (Aki & Richards eq. 4.98 / Boore & Boatwright 1984). Used to give scattered coda,
    which has lost the radiation pattern, the focal-sphere average amplitude."""
    return 4.0 / 15.0, 2.0 / 5.0


def free_surface_coefficients(p_s_per_km, alpha_km_s, beta_km_s) -> tuple[np.ndarray, np.ndarray]:
    """Plane-wave displacement coefficients at a free surface for an upgoing wave with horizontal
    slowness ``p``: ``(PP, SP)`` = reflected P for incident P, and reflected P for incident SV
    (Aki & Richards eq. 5.32). ``PP`` tends to -1 at normal incidence (polarisation along the ray)."""
    p = np.asarray(p_s_per_km, dtype=float)
    cos_i = np.sqrt(np.clip(1.0 - (p * alpha_km_s) ** 2, 0.0, None))
    cos_j = np.sqrt(np.clip(1.0 - (p * beta_km_s) ** 2, 0.0, None))
    a = 1.0 / beta_km_s ** 2 - 2.0 * p ** 2
    b = 4.0 * p ** 2 * (cos_i / alpha_km_s) * (cos_j / beta_km_s)
    denominator = a ** 2 + b
    pp = (-a ** 2 + b) / denominator
    sp = 4.0 * (beta_km_s / alpha_km_s) * p * (cos_j / beta_km_s) * a / denominator
    return pp, sp


def brune_corner_frequency(moment_nm, stress_drop_pa, beta_m_s, constant=0.49):
    """Brune (1970, 1971) corner frequency ``fc = constant * beta * (stress_drop / M0)**(1/3)`` in Hz
    (SI units: beta in m/s, stress drop in Pa, M0 in N m)."""
    return constant * np.asarray(beta_m_s) * (np.asarray(stress_drop_pa) / np.asarray(moment_nm)) ** (1.0 / 3.0)


def brune_cumulative(t, fc):
    """Normalised cumulative moment of the Brune (omega-squared) pulse ``m(t) = a^2 t exp(-a t)``,
    ``a = 2 pi fc``: ``1 - (1 + a t) exp(-a t)`` for t > 0. Its moment-rate spectrum is
    ``1 / (1 + (f / fc)^2)``."""
    at = 2.0 * np.pi * np.asarray(fc) * np.clip(np.asarray(t, dtype=float), 0.0, None)
    return 1.0 - (1.0 + at) * np.exp(-at)


def triangle_cumulative(u):
    """Cumulative of a unit-area isosceles triangle on ``0 <= u <= 1`` (u = time / duration)."""
    u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
    return np.where(u <= 0.5, 2.0 * u ** 2, 1.0 - 2.0 * (1.0 - u) ** 2)


def smoothed_boxcar_cumulative(u, taper_fraction):
    """Cumulative of a unit-area boxcar on ``0 <= u <= 1`` whose ends are raised-cosine ramps of
    ``taper_fraction`` of the duration each (a Tukey window): a flat-topped, smooth rupture."""
    r = np.asarray(taper_fraction, dtype=float)
    u = np.clip(np.asarray(u, dtype=float), 0.0, 1.0)
    ramp = lambda x: 0.5 * (x - (r / np.pi) * np.sin(np.pi * x / r))  # noqa: E731 (integral of one ramp)
    head = ramp(np.minimum(u, r))
    body = np.clip(u - r, 0.0, 1.0 - 2.0 * r)
    tail_x = np.clip(u - (1.0 - r), 0.0, r)
    tail = 0.5 * r - ramp(r - tail_x)
    return (head + body + tail) / (1.0 - r)


def rate_from_cumulative(cumulative_at_edges: np.ndarray, dt: float) -> np.ndarray:
    """Sampled rate whose sum times ``dt`` equals the cumulative's total exactly: the mean rate in each
    sample interval (differences of the cumulative at the interval edges, last axis)."""
    return np.diff(cumulative_at_edges, axis=-1) / dt


# ----------------------------------------------------------------------------------- propagation
@functools.lru_cache(maxsize=64)
def _unit_minimum_phase_log(n_fft: int, sampling_rate: float) -> np.ndarray:
    """Log spectrum (rFFT grid) of the minimum-phase filter whose amplitude is exp(-pi f) (t* = 1 s):
    real part -pi f, imaginary part its discrete Hilbert transform (folded real cepstrum)."""
    f = np.fft.rfftfreq(n_fft, 1.0 / sampling_rate)
    cepstrum = np.fft.irfft(-np.pi * f, n_fft)
    folded = np.zeros(n_fft)
    half = (n_fft + 1) // 2
    folded[0] = cepstrum[0]
    folded[1:half] = 2.0 * cepstrum[1:half]
    if n_fft % 2 == 0:
        folded[n_fft // 2] = cepstrum[n_fft // 2]
    return np.fft.rfft(folded)


def attenuation_response(n_fft: int, sampling_rate: float, t_star, onset_fraction: float = 0.01) -> np.ndarray:
    """Causal constant-Q attenuation operator on the ``rfftfreq(n_fft, 1/sampling_rate)`` grid.

    Amplitude ``exp(-pi f t*)`` (frequency-independent Q, t* = travel time / Q) with the minimum phase
    that causality imposes on it: the phase is the Hilbert transform of the log amplitude, i.e. the
    velocity dispersion ``(t*/pi) ln(f_max / f)`` of Futterman (1962) / Kjartansson (1979). Its
    reference (the band limit) only adds a constant delay, which is removed: the operator is shifted so
    that its impulse response first reaches ``onset_fraction`` of its peak at t = 0. The TauP time of
    a phase is thus the onset of the attenuated pulse (where an analyst picks it); the pulse is
    broadened and its peak delayed after it, and it is the same at every sampling rate. The log
    spectrum is linear in t*, so ``t_star`` of shape ``(n,)`` gives ``(n, F)``.
    """
    t_star = np.asarray(t_star, dtype=float)
    log_unit = _unit_minimum_phase_log(int(n_fft), float(sampling_rate))
    response = np.exp(np.multiply.outer(t_star, log_unit))
    impulse = np.fft.irfft(response, n_fft, axis=-1)
    threshold = onset_fraction * impulse.max(axis=-1, keepdims=True)
    k = np.argmax(impulse >= threshold, axis=-1)  # first sample at the threshold
    before = np.take_along_axis(impulse, np.maximum(k - 1, 0)[..., None], -1)[..., 0]
    at = np.take_along_axis(impulse, k[..., None], -1)[..., 0]
    thr = threshold[..., 0]
    frac = np.where(k > 0, (thr - before) / np.where(at > before, at - before, 1.0), 0.0)
    onset = (np.maximum(k - 1, 0) + frac * (k > 0)) / sampling_rate
    f = np.fft.rfftfreq(int(n_fft), 1.0 / sampling_rate)
    return response * np.exp(2j * np.pi * np.multiply.outer(onset, f))


def resonance_response(freqs, gain, resonance_hz, damping):
    """Causal site resonance: ``1 + (gain - 1) * H_bp(f)`` with ``H_bp`` the second-order band-pass
    ``2 z w0 s / (s^2 + 2 z w0 s + w0^2)`` (unit gain at ``w0``). The amplitude is 1 far from the
    resonance and ``gain`` at it, like the spectral ratio of a soft layer over rock."""
    s = 2j * np.pi * np.asarray(freqs, dtype=float)
    w0 = 2.0 * np.pi * np.asarray(resonance_hz, dtype=float)
    z = np.asarray(damping, dtype=float)
    bandpass = 2.0 * z * w0 * s / (s ** 2 + 2.0 * z * w0 * s + w0 ** 2)
    return 1.0 + (np.asarray(gain, dtype=float) - 1.0) * bandpass


@functools.lru_cache(maxsize=16)
def _butterworth_poles(order: int) -> np.ndarray:
    _, poles, _ = scipy.signal.buttap(order)
    return poles


def butterworth_response(freqs, corner_hz: float, order: int, kind: str) -> np.ndarray:
    """Analog (causal) Butterworth response at ``freqs``: ``kind`` is ``"lowpass"`` or ``"highpass"``.
    A corner of 0 (highpass) or ``inf`` (lowpass) means no filter."""
    f = np.asarray(freqs, dtype=float)
    if order <= 0 or (kind == "highpass" and corner_hz <= 0) or (kind == "lowpass" and not np.isfinite(corner_hz)):
        return np.ones(f.shape, dtype=complex)
    poles = _butterworth_poles(int(order))
    if kind == "lowpass":
        s = 1j * f / corner_hz
    elif kind == "highpass":
        with np.errstate(divide="ignore"):
            s = np.where(f > 0, corner_hz / (1j * np.where(f > 0, f, 1.0)), np.inf)
    else:
        raise ValueError(f"kind must be 'lowpass' or 'highpass', not {kind!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        response = 1.0 / np.prod(s[..., None] - poles, axis=-1)
    return np.where(np.isfinite(s), response, 0.0)


def delay_response(freqs, times) -> np.ndarray:
    """Delays as frequency responses ``exp(-i 2 pi f t)``: per-trace times ``(n,)`` -> ``(n, F)``."""
    phase = (-2.0 * np.pi) * np.multiply.outer(np.asarray(times, dtype=float), np.asarray(freqs, dtype=float))
    out = np.empty(phase.shape, dtype=complex)
    np.cos(phase, out=out.real)
    np.sin(phase, out=out.imag)
    return out
