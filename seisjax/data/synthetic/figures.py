"""The overview figure of a synthetic dataset (``figures/synthetic_<scenario>.png``): a record
section with the TauP arrivals, the true source time functions, source spectra, and the generator's
ground noise against Peterson's models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.signal
from matplotlib.figure import Figure

from seisjax.data.synthetic.geometry import DEG_KM
from seisjax.data.synthetic.noise import colored_noise, peterson_models, peterson_psd_db
from seisjax.data.synthetic.traveltimes import planet_radius

__all__ = ["FigureData", "plot_teleseismic", "plot_local"]


class FigureData:
    """The few traces kept for the overview figure (memory: one event)."""

    def __init__(self):
        self.section = None
        self.stfs = []
        self.spectra = []
        self.noise = []


def _noise_psd_panel(ax, noise_examples):
    """Welch PSD of ground noise drawn by the generator's own noise model (before the band limits,
    the instrument and the SNR scaling), converted to acceleration, against Peterson's models."""
    periods, low, high = peterson_models()
    ax.fill_between(periods, low, high, color="0.9", label="NLNM-NHNM")
    ax.semilogx(periods, low, "k-", lw=0.8)
    ax.semilogx(periods, high, "k-", lw=0.8)
    rng = np.random.default_rng(0)
    for level, fs, n, power in noise_examples:
        f = np.fft.rfftfreq(n, 1.0 / fs)
        with np.errstate(divide="ignore"):
            psd = 10.0 ** (peterson_psd_db(f, level) / 10.0) / np.where(f > 0, (2 * np.pi * f) ** power, np.inf)
        trace = colored_noise(rng, (), n, fs, psd)
        fw, pxx = scipy.signal.welch(trace, fs=fs, nperseg=min(n, int(128 * fs)))
        good = fw > 0
        ax.semilogx(1 / fw[good], 10 * np.log10(pxx[good] * (2 * np.pi * fw[good]) ** power), lw=1,
                    label=f"synthetic {'displacement' if power == 4 else 'velocity'}, level {level:.2f}")
    ax.set_xlim(1.0 / 50.0, 1000)
    ax.set_ylim(-200, -80)
    ax.set_xlabel("period (s)")
    ax.set_ylabel("acceleration PSD (dB re 1 m²/s⁴/Hz)")
    ax.set_title("generator's ground noise vs Peterson (1993)")
    ax.legend(fontsize=7)


def _finish(fig, axes, fig_data, scenario: str, path: Path) -> Path:
    """The noise panel, the title, and the file."""
    _noise_psd_panel(axes[1, 1], fig_data.noise)
    fig.suptitle(f"seisjax synthetic {scenario} data", fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_teleseismic(cfg, fig_data, table, path: Path) -> Path:
    fig = Figure(figsize=(13, 10))
    axes = fig.subplots(2, 2)
    sec = fig_data.section
    ax = axes[0, 0]
    if sec is not None:
        order = np.argsort(sec["distance"])
        pick = order[np.linspace(0, len(order) - 1, min(len(order), cfg.figure.max_section_traces)).astype(int)]
        spacing = (sec["distance"].max() - sec["distance"].min()) / max(len(pick), 1)
        d = np.linspace(sec["distance"].min(), sec["distance"].max(), 100)
        p_time = table("P", sec["depth"], d)["time"]
        delays = {label: table(label, sec["depth"], d)["time"] - p_time for label in ("pP", "sP")}
        t_max = float(np.nanmax(delays["sP"])) + 60.0
        for j in pick:
            tr = sec["record"][j]
            t = np.arange(len(tr)) / sec["fs"] - cfg.window.pre_p_s
            shown = (t >= -30.0) & (t <= t_max)
            scale = np.abs(tr[shown]).max() or 1.0
            ax.plot(t[shown], sec["distance"][j] + 1.2 * spacing * tr[shown] / scale, "k-", lw=0.4)
        ax.axvline(0.0, color="C3", ls="--", lw=1.2, label="TauP P")
        for (label, delay), colour in zip(delays.items(), ("C0", "C2")):
            ax.plot(delay, d, "--", color=colour, lw=1.2, label=f"TauP {label}")
        ax.set_xlabel("time after the TauP P arrival (s); records include their timing errors")
        ax.set_ylabel("epicentral distance (°)")
        ax.set_title(f"{sec['source_id']}: Mw {sec['magnitude']:.1f}, depth {sec['depth']:.0f} km (Z displacement)")
        ax.legend(loc="lower right", fontsize=8)
    ax = axes[0, 1]
    for ev, stf, fs in fig_data.stfs:
        t = np.arange(len(stf)) / fs
        ax.plot(t, stf / ev["moment_nm"], lw=1.2,
                label=f"{ev['source_id']} Mw {ev['magnitude']:.1f}, {len(ev['sub_onset'])} sub-event(s)"
                      f"{', directivity' if ev['directivity'] else ''}")
    ax.set_xlim(0, max([ev["duration_s"] for ev, _, _ in fig_data.stfs] + [1.0]) * 1.15)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("moment rate / M0 (1/s)")
    ax.set_title("true source time functions")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    for ev, stf, fs in fig_data.stfs:
        spec = np.abs(np.fft.rfft(stf / ev["moment_nm"], n=8 * len(stf))) / fs
        f = np.fft.rfftfreq(8 * len(stf), 1 / fs)
        line, = ax.loglog(f[1:], spec[1:], lw=1)
        ax.axvline(1.0 / ev["duration_s"], color=line.get_color(), ls=":", lw=1)
    ax.set_ylim(1e-5, 2)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("|STF(f)| / M0")
    ax.set_title("source spectra (dotted: 1 / duration, the corner)")
    return _finish(fig, axes, fig_data, "teleseismic-p", path)


def plot_local(cfg, fig_data, tables, path: Path) -> Path:
    fig = Figure(figsize=(13, 10))
    axes = fig.subplots(2, 2)
    sec = fig_data.section
    ax = axes[0, 0]
    if sec is not None:
        order = np.argsort(sec["distance_km"])[: cfg.figure.max_section_traces]
        spacing = max((sec["distance_km"].max() - sec["distance_km"].min()) / max(len(order), 1), 1.0)
        for j in order:
            tr = sec["records"][j]
            ax.plot(sec["t0"][j] + np.arange(len(tr)) / sec["fs"][j],
                    sec["distance_km"][j] + 1.5 * spacing * tr / (np.abs(tr).max() or 1), "k-", lw=0.4)
        radius = planet_radius(cfg.velocity_model) * DEG_KM
        d = np.linspace(sec["distance_km"].min(), sec["distance_km"].max(), 100)
        for label, colour in (("P", "C3"), ("S", "C0")):
            ax.plot(tables["local"](label, sec["depth"], d / radius)["time"], d, "--", color=colour, lw=1.2,
                    label=f"TauP {label}")
        ax.set_xlabel("time after origin (s)")
        ax.set_ylabel("epicentral distance (km)")
        ax.set_title(f"{sec['source_id']}: local Mw {sec['magnitude']:.1f}, depth {sec['depth']:.1f} km (Z velocity)")
        ax.legend(loc="lower right", fontsize=8)
    ax = axes[0, 1]
    for ev, stf, fs in fig_data.stfs:
        t = np.arange(len(stf)) / fs
        ax.semilogx(t[1:], stf[1:] / ev["moment_nm"] / (2 * np.pi * ev["corner_frequency_hz"]), lw=1.2,
                    label=f"{ev['distance_class']} Mw {ev['magnitude']:.1f}, fc {ev['corner_frequency_hz']:.2f} Hz")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("moment rate / (M0 2π fc)")
    ax.set_title("true source time functions (Brune pulses)")
    ax.legend(fontsize=7)
    ax = axes[1, 0]
    for ev, disp, fs in fig_data.spectra:
        spec = np.abs(np.fft.rfft(disp)) / fs
        f = np.fft.rfftfreq(len(disp), 1 / fs)
        line, = ax.loglog(f[1:], spec[1:], lw=0.8, alpha=0.8, label=f"Mw {ev['magnitude']:.1f}")
        fc = ev["corner_frequency_hz"]
        model = spec[1:][np.argmin(np.abs(f[1:] - 0.1 * fc))] / (1 + (f[1:] / fc) ** 2)
        ax.loglog(f[1:], model, "--", color=line.get_color(), lw=1)
        ax.axvline(ev["corner_frequency_hz"], color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("|U(f)| (m s)")
    ax.set_title("noise-free Z displacement spectra; dashed Brune ω², dotted fc")
    ax.legend(fontsize=7)
    return _finish(fig, axes, fig_data, "local", path)
