"""Quality metrics of recordings and the default quality filter.

SNR (per component)
    RMS of a *signal* window after the P arrival divided by the RMS of a *noise* window before it
    (linear amplitude ratio; ``20 * log10`` of it is the SNR in dB that STEAD lists). Windows are in
    seconds relative to P: noise ``(-5, 0)`` and signal ``(0, 5)`` by default. The mean of the noise
    window is removed from both windows first, so that a DC offset in raw counts does not dilute the
    ratio. These are the seed study's ``snr1..3``.
Gaps and overlaps (per component)
    From ``obspy.Stream.get_gaps()`` over the segments of one component: number of gaps, their total
    length in seconds, number of overlaps (the seed study's ``gap1..3``).
Default filter
    The seed study's: max SNR over the components > 1.5 and zero gaps on every component (and, here,
    zero overlaps). All thresholds are configurable; ``None`` disables a test.

Dataset columns written by ``data build`` (one row per record, components as configured):
``trace_snr_<C>`` (linear SNR of component C, e.g. ``trace_snr_Z``; empty for a zero-filled
component), ``trace_snr_max``, ``trace_gaps`` and ``trace_overlaps`` (counts summed over components),
``trace_gap_s`` (total gap seconds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_NOISE_WINDOW = (-5.0, 0.0)
DEFAULT_SIGNAL_WINDOW = (0.0, 5.0)


def window_slice(p_sample: float, sampling_rate: float, window: tuple[float, float], n_samples: int) -> slice:
    """Sample slice of ``window`` (seconds relative to P), clipped to ``[0, n_samples)``."""
    start = int(round(p_sample + window[0] * sampling_rate))
    stop = int(round(p_sample + window[1] * sampling_rate))
    return slice(min(max(start, 0), n_samples), min(max(stop, 0), n_samples))


def snr(data: np.ndarray, p_sample: float, sampling_rate: float, *,
        noise_window: tuple[float, float] = DEFAULT_NOISE_WINDOW,
        signal_window: tuple[float, float] = DEFAULT_SIGNAL_WINDOW, min_samples: int = 2) -> np.ndarray:
    """Linear RMS SNR of each row of ``data`` (``(..., W)``) around the P sample.

    Windows are clipped to the record; a window with fewer than ``min_samples`` samples gives NaN, as
    does a noise window of zero RMS (e.g. a zero-filled component).
    """
    data = np.asarray(data, dtype=np.float64)
    n = data.shape[-1]
    noise_sl = window_slice(p_sample, sampling_rate, noise_window, n)
    signal_sl = window_slice(p_sample, sampling_rate, signal_window, n)
    shape = data.shape[:-1]
    if noise_sl.stop - noise_sl.start < min_samples or signal_sl.stop - signal_sl.start < min_samples:
        return np.full(shape, np.nan)
    noise = data[..., noise_sl]
    offset = noise.mean(axis=-1, keepdims=True)
    noise_rms = np.sqrt(np.mean((noise - offset) ** 2, axis=-1))
    signal_rms = np.sqrt(np.mean((data[..., signal_sl] - offset) ** 2, axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = signal_rms / noise_rms
    return np.where(noise_rms > 0, ratio, np.nan)


def snr_db(ratio) -> np.ndarray:
    """SNR in decibels (``20 log10`` of the amplitude ratio, STEAD's ``snr_db``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 20.0 * np.log10(np.asarray(ratio, dtype=np.float64))


@dataclass(frozen=True)
class GapStats:
    gaps: int = 0
    gap_seconds: float = 0.0
    overlaps: int = 0
    overlap_seconds: float = 0.0


def gap_stats(stream) -> GapStats:
    """Gaps and overlaps among the segments of one component (an ``obspy.Stream`` of one id)."""
    gaps = stream.get_gaps()
    # get_gaps rows: [net, sta, loc, cha, t_end_prev, t_start_next, delta_seconds, n_samples];
    # a negative delta is an overlap
    deltas = np.array([g[6] for g in gaps], dtype=np.float64)
    is_gap = deltas > 0
    return GapStats(gaps=int(is_gap.sum()), gap_seconds=float(deltas[is_gap].sum()),
                    overlaps=int((~is_gap).sum()), overlap_seconds=float(-deltas[~is_gap].sum()))


@dataclass(frozen=True)
class QualityFilter:
    """Accept a record when ``max(SNR over components) > snr_min`` and every component has at most
    ``max_gaps`` gaps and ``max_overlaps`` overlaps. ``None`` switches a test off."""

    snr_min: float | None = 1.5
    max_gaps: int | None = 0
    max_overlaps: int | None = 0

    def check_gaps(self, stats: dict[str, GapStats]) -> tuple[str, str] | None:
        """(reason, detail) when a component fails the gap/overlap tests, else None."""
        for comp, s in stats.items():
            if self.max_gaps is not None and s.gaps > self.max_gaps:
                return "gaps", (f"component {comp}: {s.gaps} gap(s), {s.gap_seconds:.3g} s in all "
                                f"(at most {self.max_gaps} allowed)")
            if self.max_overlaps is not None and s.overlaps > self.max_overlaps:
                return "overlaps", (f"component {comp}: {s.overlaps} overlap(s), {s.overlap_seconds:.3g} s "
                                    f"(at most {self.max_overlaps} allowed)")
        return None

    def check_snr(self, snr_values: np.ndarray, components: str) -> tuple[str, str] | None:
        """(reason, detail) when the SNR test fails, else None."""
        if self.snr_min is None:
            return None
        values = np.asarray(snr_values, dtype=np.float64)
        text = ", ".join(f"{c}={v:.3g}" for c, v in zip(components, values))
        if not np.isfinite(values).any():
            return "too_short", f"no SNR: noise or signal window outside the record ({text})"
        if np.nanmax(values) <= self.snr_min:
            return "low_snr", f"max SNR {np.nanmax(values):.3g} <= {self.snr_min} ({text})"
        return None

    def mask(self, metadata, components: str):
        """Boolean mask of the rows of a metadata table (``trace_snr_<C>``, ``trace_gaps``,
        ``trace_overlaps`` columns) that pass this filter; for re-filtering a built dataset. The
        table holds gap counts summed over components, so this is exact for ``max_gaps=0`` (the
        default) and stricter otherwise."""
        keep = np.ones(len(metadata), dtype=bool)
        if self.snr_min is not None:
            snr_values = metadata[[f"trace_snr_{c}" for c in components]].to_numpy(np.float64)
            with np.errstate(invalid="ignore"):
                best = np.where(np.isfinite(snr_values).any(axis=1),
                                np.nanmax(np.where(np.isfinite(snr_values), snr_values, -np.inf), axis=1),
                                np.nan)
            keep &= best > self.snr_min
        if self.max_gaps is not None and "trace_gaps" in metadata:
            keep &= metadata["trace_gaps"].fillna(0).to_numpy() <= self.max_gaps
        if self.max_overlaps is not None and "trace_overlaps" in metadata:
            keep &= metadata["trace_overlaps"].fillna(0).to_numpy() <= self.max_overlaps
        return keep
