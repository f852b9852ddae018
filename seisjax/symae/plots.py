"""Figures of a SymAE extraction: per-pixel STFs beside the mean displacement
envelope of the input traces, reconstructions against inputs, and the optimisation's loss history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.integrate
import scipy.signal
from matplotlib import colormaps
from matplotlib.figure import Figure

from seisjax.data.stft import hilbert_envelope
from seisjax.symae.data import GroupArrays
from seisjax.symae.extraction import Extraction

__all__ = ["mean_displacement_envelope", "plot_event_stfs", "plot_reconstructions", "plot_loss_history",
           "write_figures"]


def mean_displacement_envelope(traces, mask, sampling_rate: float, *, integrate: bool = True) -> np.ndarray:
    """Per group, the mean Hilbert envelope of the displacement traces, normalised to a maximum of 1.

    ``traces (..., M, nt)``, ``mask (..., M)``. With ``integrate`` (velocity input) each trace is
    demeaned, integrated (cumulative trapezoid) and linearly detrended (the integration's drift);
    without, the traces are taken as displacement and only demeaned. Groups without a valid trace
    give NaN. Returns ``(..., nt)``."""
    x = np.asarray(traces, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    x = np.where(mask[..., None], x, 0.0)
    x = x - x.mean(axis=-1, keepdims=True)
    if integrate:
        x = scipy.integrate.cumulative_trapezoid(x, dx=1.0 / sampling_rate, axis=-1, initial=0.0)
        x = scipy.signal.detrend(x, axis=-1, type="linear")
    envelope = hilbert_envelope(x)
    weights = mask[..., None].astype(np.float64)
    count = weights.sum(axis=-2)
    mean = (envelope * weights).sum(axis=-2) / np.where(count > 0, count, 1.0)
    peak = mean.max(axis=-1, keepdims=True)
    out = mean / np.where(peak > 0, peak, 1.0)
    return np.where(count > 0, out, np.nan)


def _time_axis(groups: GroupArrays) -> np.ndarray:
    return groups.time_start + np.arange(groups.traces.shape[-1]) / groups.sampling_rate


def plot_event_stfs(path, groups: GroupArrays, result: Extraction, event: int,
                    displacement_envelope: np.ndarray | None = None, *, integrate: bool = True) -> Path:
    """STFs of every pixel of ``event`` stacked and coloured by pixel (envelope filled, the
    sign-keeping estimate as a line), beside the mean displacement envelope of each pixel's input
    traces in the same colours. The target pixel is marked with a star."""
    rows = np.flatnonzero(groups.group_event == event)
    rows = rows[np.argsort(groups.pixels[rows])]
    if displacement_envelope is None:
        displacement_envelope = mean_displacement_envelope(groups.traces[rows], groups.mask[rows],
                                                           groups.sampling_rate, integrate=integrate)
    else:
        displacement_envelope = displacement_envelope[rows]
    t = _time_axis(groups)
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, max(len(rows), 1)))
    fig = Figure(figsize=(11, 1.2 + 0.9 * max(len(rows), 2)))
    ax_stf, ax_env = fig.subplots(1, 2, sharex=True, sharey=True)
    for k, (g, colour) in enumerate(zip(rows, colours)):
        label = f"pixel {groups.pixels[g]} ({int(groups.mask[g].sum())} tr)"
        if result.target_group[event] == g:
            label += " *"
        ax_stf.fill_between(t, k, k + 0.9 * result.stf[g], color=colour, alpha=0.5, lw=0)
        ax_stf.plot(t, k + 0.45 + 0.45 * result.stf_signed[g], color=colour, lw=1.0)
        ax_stf.text(t[0], k + 0.7, label, fontsize=7, va="bottom")
        ax_env.fill_between(t, k, k + 0.9 * displacement_envelope[k], color=colour, alpha=0.5, lw=0)
    ax_stf.set_title(f"SymAE STF per pixel (envelope; line: sign-keeping)\nevent {groups.source_ids[event]}",
                     fontsize=9)
    ax_env.set_title("mean displacement envelope of the input traces", fontsize=9)
    for ax in (ax_stf, ax_env):
        ax.set_xlabel("time relative to P (s)")
        ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def plot_reconstructions(path, groups: GroupArrays, result: Extraction, event: int, *, n_traces: int = 6) -> Path:
    """Inputs against the model's reconstructions for a few traces of the event's target pixel,
    with the traces aligned by the refined shifts beside them."""
    g = int(result.target_group[event])
    valid = np.flatnonzero(groups.mask[g])[:n_traces]
    t = _time_axis(groups)
    fig = Figure(figsize=(11, 0.4 + 1.1 * max(len(valid), 1)))
    axes = fig.subplots(max(len(valid), 1), 2, sharex=True, squeeze=False)
    for row, j in enumerate(valid):
        ax, ax_al = axes[row]
        ax.plot(t, groups.traces[g, j], color="0.3", lw=0.8, label="input")
        ax.plot(t, result.reconstruction[g, j], color="tab:red", lw=0.8, label="reconstruction")
        ax_al.plot(t, result.aligned[g, j], color="0.3", lw=0.8, label="aligned input")
        ax_al.plot(t, result.stf_signed[g] * np.abs(result.aligned[g, j]).max(), color="tab:blue", lw=0.8,
                   label="signed STF (scaled)")
        ax.set_ylabel(f"trace {groups.trace_ids[g, j]}", fontsize=7)
        ax_al.text(t[-1], 0, f"shift {result.shifts[g, j]:+.2f} samples", fontsize=7, ha="right")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[0, 1].legend(fontsize=7, loc="upper right")
    axes[0, 0].set_title(f"event {groups.source_ids[event]}, pixel {groups.pixels[g]}: reconstructions", fontsize=9)
    axes[0, 1].set_title("aligned by the refined shifts", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("time relative to P (s)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def plot_loss_history(path, groups: GroupArrays, result: Extraction, *, max_events: int = 20) -> Path:
    """The extraction objective (mean over each event's codes) against the step, with its two terms."""
    fig = Figure(figsize=(12, 3.4))
    axes = fig.subplots(1, 3)
    steps = np.arange(result.loss_history.shape[1])
    for e in range(min(groups.n_events, max_events)):
        label = str(groups.source_ids[e]) if groups.n_events <= 8 else None
        axes[0].plot(steps, result.loss_history[e], lw=1.0, label=label)
        axes[1].plot(steps, result.kl_history[e], lw=1.0)
        axes[2].plot(steps, result.l1_history[e], lw=1.0)
    titles = ("objective: KL / KL0 + alpha L1", "normalised KL", "L1 of the standardised virtual traces")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
    if groups.n_events <= 8:
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    return path


def write_figures(out_dir, groups: GroupArrays, result: Extraction, *, max_events: int = 6,
                  integrate: bool = True, displacement_envelope: np.ndarray | None = None) -> list[Path]:
    """``stf_<source>.png`` and ``reconstructions_<source>.png`` for the first ``max_events`` events
    and ``loss_history.png`` in ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [plot_loss_history(out_dir / "loss_history.png", groups, result)]
    for e in range(min(groups.n_events, max_events)):
        if result.target_group[e] < 0:
            continue
        name = str(groups.source_ids[e]).replace("/", "_")
        paths.append(plot_event_stfs(out_dir / f"stf_{name}.png", groups, result, e, displacement_envelope,
                                     integrate=integrate))
        paths.append(plot_reconstructions(out_dir / f"reconstructions_{name}.png", groups, result, e))
    return paths
