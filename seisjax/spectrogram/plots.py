"""Figures of the spectrogram autoencoders: inputs against reconstructions, the decoded latent path
between two records, and generated records (waveforms and spectrograms)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_generated", "plot_latent_path", "plot_spectrograms", "record_label"]


def record_label(trace_name, magnitude) -> str:
    """A figure row's name for a record: its trace name, with its magnitude when known."""
    magnitude = float(magnitude)
    return f"{trace_name}\nM {magnitude:.1f}" if np.isfinite(magnitude) else str(trace_name)


def plot_spectrograms(x, recon, spec, path: Path, n: int = 3) -> Path:
    """The first ``n`` inputs and their reconstructions (scaled, one column per component)."""
    n = min(n, len(x))
    frames = spec.stft_shape[1]
    comps = spec.components
    freqs, times = spec.axes()
    fmax = freqs[spec.model_shape[0] - 1]
    fig = Figure(figsize=(3.2 * len(comps), 2.0 * 2 * n))
    axes = fig.subplots(2 * n, len(comps), squeeze=False)
    for i in range(n):
        for row, (what, arr) in enumerate((("input", x), ("reconstruction", recon))):
            for c, name in enumerate(comps):
                ax = axes[2 * i + row, c]
                ax.imshow(arr[i, :, :frames, c], origin="lower", aspect="auto", vmin=0, vmax=1, cmap="magma",
                          extent=(times[0], times[frames - 1], 0, fmax))
                ax.set_title(f"#{i} {what} {name}", fontsize=8)
                ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("s from window start", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("Hz", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return Path(path)


def plot_latent_path(ends, decoded, weights, spec, path: Path, *, labels) -> Path:
    """The two records (first and last row, named by ``labels``) and the decoded points between
    them, one column per component, as scaled log1p |STFT| images."""
    path = Path(path)
    frames = spec.stft_shape[1]
    comps = spec.components
    rows = [(labels[0], ends[0])] + [(f"t = {w:.2f}", d) for w, d in zip(weights, decoded)] + [(labels[1], ends[1])]
    fig = Figure(figsize=(2.8 * len(comps), 1.5 * len(rows)))
    axes = fig.subplots(len(rows), len(comps), squeeze=False)
    for r, (label, image) in enumerate(rows):
        for c, name in enumerate(comps):
            ax = axes[r, c]
            ax.imshow(image[:, :frames, c], origin="lower", aspect="auto", vmin=0, vmax=1, cmap="magma")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0:
                ax.set_title(name, fontsize=9)
    fig.suptitle("latent interpolation (scaled log1p |STFT|)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def plot_generated(wave, mag, spec, path: Path, *, title: str, n_max: int = 4) -> Path:
    """Up to ``n_max`` generated records: each component's waveform and the last component's
    log1p |STFT|."""
    n = min(n_max, len(wave))
    comps = spec.components
    freqs, times = spec.axes()
    t = np.arange(wave.shape[-1]) / spec.sampling_rate - spec.before_s
    fig = Figure(figsize=(3.0 * (len(comps) + 1), 1.9 * n))
    axes = fig.subplots(n, len(comps) + 1, squeeze=False)
    for i in range(n):
        for c, name in enumerate(comps):
            ax = axes[i, c]
            ax.plot(t, wave[i, c], lw=0.6, color="0.2")
            ax.set_title(f"#{i} {name}", fontsize=8)
            ax.tick_params(labelsize=7)
        ax = axes[i, -1]
        ax.imshow(np.log1p(mag[i, -1]), origin="lower", aspect="auto", cmap="magma",
                  extent=(times[0] - spec.before_s, times[-1] - spec.before_s, freqs[0], freqs[-1]))
        ax.set_title(f"#{i} log1p |STFT| {comps[-1]}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("s from P", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return Path(path)
