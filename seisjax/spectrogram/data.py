"""Records -> scaled STFT spectrograms for the spectrogram autoencoders (host side, numpy).

Per record (vectorised over groups of records with the same sampling rate and length):

1. quality: a P pick, a magnitude (it picks the band), a known instrument, finite samples, no gaps
   (``trace_gaps`` when the metadata has it) and max SNR over the components > ``snr_min``
   (:class:`seisjax.data.quality.QualityFilter`, SNR from the samples around P);
2. demean, linear detrend, 5% cosine taper and the instrument x magnitude Butterworth bandpass
   (:data:`seisjax.data.preprocess.BANDPASS_TABLE`) at the record's own rate, then Fourier
   resampling to ``sampling_rate`` and the window ``P - before_s`` to ``P + after_s``
   (:func:`seisjax.data.preprocess.preprocess_batch`); the part of the window outside the record is
   zero-filled, and a record more than ``max_fill`` of whose window lies outside is rejected;
3. multiplication by ``gain`` (``log1p`` compresses only magnitudes well above 1: counts need
   none, velocities in m/s want 1e9, i.e. nm/s), STFT per component (:func:`seisjax.data.stft.stft`), ``|Z|``, ``log1p``, the frequencies
   cropped and the frames zero-padded to multiples of ``multiple`` (:meth:`SpectrogramSpec.model_shape`),
   then per-sample, per-channel min-max scaling to [0, 1] over the real bins; the ``log1p``
   minimum and maximum are kept (``log_scale``, ``(N, 2, C)``) so that :func:`to_magnitudes`
   restores the magnitudes.

Rejected records are returned with the reason (never dropped silently). Components come in
``components`` order (default E, N, Z as in the study) whatever the dataset's order.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from seisjax.data.dataset import trace_names
from seisjax.data.preprocess import (
    BANDPASS_TABLE,
    bandpass_bands,
    instrument_code,
    preprocess_batch,
)
from seisjax.data.quality import QualityFilter, snr
from seisjax.data.stft import (
    MinMax,
    log_scale,
    minmax_scale,
    minmax_unscale,
    stft,
    stft_axes,
)
from seisjax.errors import InputError

__all__ = [
    "CONDITION_COLUMNS",
    "SpectrogramSpec",
    "prepare_records",
    "renormalise",
    "to_magnitudes",
    "to_model_input",
]

#: metadata column of each condition (SeisBench names)
CONDITION_COLUMNS = {"magnitude": "source_magnitude", "lat": "source_latitude_deg", "lon": "source_longitude_deg",
                     "depth": "source_depth_km", "distance_km": "path_ep_distance_km", "station": "station_code"}


@dataclass(frozen=True)
class SpectrogramSpec:
    """How records become model inputs; see the module docstring."""

    sampling_rate: float = 100.0
    before_s: float = 10.0
    after_s: float = 60.0
    nperseg: int = 256
    noverlap: int = 192
    nfft: int = 256
    components: str = "ENZ"
    snr_min: float | None = 1.5
    taper: float = 0.05
    max_fill: float = 0.25
    multiple: int = 16
    gain: float = 1.0

    @property
    def n_samples(self) -> int:
        return int(round((self.before_s + self.after_s) * self.sampling_rate))

    @property
    def stft_kwargs(self) -> dict:
        return {"nperseg": int(self.nperseg), "noverlap": int(self.noverlap), "nfft": int(self.nfft)}

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """STFT frequencies (Hz) and frame times (s from the window start) of one window."""
        return stft_axes(self.n_samples, self.sampling_rate, **self.stft_kwargs)

    @property
    def stft_shape(self) -> tuple[int, int]:
        freqs, times = self.axes()
        return len(freqs), len(times)

    @property
    def model_shape(self) -> tuple[int, int]:
        """(frequencies cropped down, frames padded up) to multiples of ``multiple``."""
        f, t = self.stft_shape
        m = int(self.multiple)
        if f < m:
            raise InputError(f"STFT with nfft={self.nfft} has {f} frequencies, fewer than the multiple {m}")
        return f // m * m, -(-t // m) * m

    def mask(self) -> np.ndarray:
        """``(F_model, T_model, 1)`` float32: 1 on real frames, 0 on padding."""
        fm, tm = self.model_shape
        mask = np.zeros((fm, tm, 1), np.float32)
        mask[:, : self.stft_shape[1]] = 1.0
        return mask

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def to_model_input(mag: np.ndarray, spec: SpectrogramSpec) -> tuple[np.ndarray, np.ndarray]:
    """Magnitudes ``(N, C, F, T)`` -> ``(x (N, F_model, T_model, C) float32 in [0, 1], log_scale (N, 2, C))``."""
    fm, tm = spec.model_shape
    f, t = spec.stft_shape
    if mag.shape[-2:] != (f, t):
        raise InputError(f"magnitudes of shape {mag.shape}: expected (..., {f}, {t}) for {spec}")
    scaled, mm = minmax_scale(log_scale(mag[:, :, :fm, :]), axis=(-2, -1))
    x = np.zeros((len(mag), fm, tm, mag.shape[1]), np.float32)
    x[:, :, :t, :] = scaled.transpose(0, 2, 3, 1)
    scale = np.stack([mm.min[..., 0, 0], mm.max[..., 0, 0]], axis=1).astype(np.float32)  # (N, 2, C)
    return x, scale


def to_magnitudes(x: np.ndarray, log_scale_: np.ndarray, spec: SpectrogramSpec) -> np.ndarray:
    """Inverse of :func:`to_model_input`: ``(N, F_model, T_model, C)`` + ``(N, 2, C)`` -> linear
    magnitudes ``(N, C, F, T)`` (padded frames dropped; the cropped top frequencies, above the
    bandpass, are zero), clipped at 0."""
    f, t = spec.stft_shape
    fm, _ = spec.model_shape
    x = np.asarray(x, np.float64)[:, :, :t, :].transpose(0, 3, 1, 2)  # (N, C, Fm, T)
    s = np.asarray(log_scale_, np.float64)
    log_mag = minmax_unscale(x, MinMax(s[:, 0, :, None, None], s[:, 1, :, None, None]))
    mag = np.zeros((len(x), x.shape[1], f, t))
    mag[:, :, :fm] = np.clip(np.expm1(log_mag), 0.0, None)
    return mag


def renormalise(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Min-max rescale each sample's channels of ``x`` ``(N, F, T, C)`` to [0, 1] over the bins where
    ``mask`` ``(F, T, 1)`` is 1 (zero elsewhere; a flat channel becomes 0).

    Every model input has exactly this form (:func:`to_model_input`), so that its ``log_scale``
    [min, max] is that of the loudest and quietest bin. A decoder's output need not reach 0 and 1:
    a blurred decode peaks near 0.5, and un-scaling it with a predicted [min, max] would shrink its
    amplitudes (and their trend with magnitude and distance) by that factor."""
    x = np.asarray(x, np.float64)
    real = np.broadcast_to(np.asarray(mask) > 0, x.shape[1:])
    lo = np.where(real, x, np.inf).min(axis=(1, 2), keepdims=True)
    hi = np.where(real, x, -np.inf).max(axis=(1, 2), keepdims=True)
    span = hi - lo
    out = np.where(span > 0, (x - lo) / np.where(span > 0, span, 1.0), 0.0)
    return (out * real).astype(np.float32)


def _column(meta, name, dtype=np.float64):
    import pandas as pd

    if name not in meta:
        return np.full(len(meta), np.nan) if dtype is np.float64 else np.full(len(meta), "", dtype=object)
    if dtype is np.float64:
        return pd.to_numeric(meta[name], errors="coerce").to_numpy(np.float64)
    return meta[name].astype(str).to_numpy(dtype=object)


def _channel_codes(meta) -> np.ndarray:
    for column in ("station_channel_code", "trace_channel"):
        if column in meta:
            return meta[column].fillna("").astype(str).to_numpy(dtype=object)
    return np.full(len(meta), "", dtype=object)


def prepare_records(dataset, spec: SpectrogramSpec, *, keep_waveforms: bool = False, need_conditions: bool = False,
                    chunk: int = 128, progress: bool = True) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Spectrograms of every acceptable record of ``dataset`` (a Dataset or a view).

    Returns ``(arrays, rejected)``: arrays ``x`` ``(N, F_model, T_model, C)`` float32,
    ``log_scale`` ``(N, 2, C)``, ``magnitude``, ``lat``, ``lon``, ``depth``, ``distance_km`` (float,
    NaN when absent), ``station``, ``trace_name`` (str), ``row`` (the dataset row), ``fill`` (zero-filled
    fraction of the window) and with ``keep_waveforms`` ``waveform`` ``(N, C, n_samples)`` float32
    (the preprocessed windows, times ``gain``, that the spectrograms come from); rejected: one dict per record left out
    (``trace_name``, ``row``, ``reason``, ``detail``). ``need_conditions`` also rejects records without
    source latitude, longitude, depth or station code."""
    from tqdm.auto import tqdm

    order = dataset.component_order or ""
    missing = [c for c in spec.components if c not in order]
    if missing:
        raise InputError(f"{dataset.path}: components {missing} of data.components = {spec.components!r} are not "
                         f"in the dataset's component order {order!r}")
    comp_index = [order.index(c) for c in spec.components]
    meta = dataset.metadata
    n = len(meta)
    names = trace_names(meta)
    p = _column(meta, "trace_p_arrival_sample")
    rates = _column(meta, "trace_sampling_rate_hz")
    if not np.isfinite(rates).any() and dataset.sampling_rate:
        rates = np.full(n, float(dataset.sampling_rate))
    cond = {key: _column(meta, col) for key, col in CONDITION_COLUMNS.items() if key != "station"}
    station = _column(meta, "station_code", object)
    channels = _channel_codes(meta)
    gaps = _column(meta, "trace_gaps")
    reason = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)

    def reject(mask, why, text):
        mask = mask & (reason == "")
        reason[mask] = why
        detail[mask] = text

    reject(~np.isfinite(p), "no_p_pick", "trace_p_arrival_sample is missing")
    reject(~(np.isfinite(rates) & (rates > 0)), "no_sampling_rate", "trace_sampling_rate_hz is missing or <= 0")
    reject(~np.isfinite(cond["magnitude"]), "no_magnitude", "source_magnitude is missing (it picks the band)")
    codes = np.array([instrument_code(c) if len(c.strip()) >= 2 else "" for c in channels], dtype=object)
    unknown = ~np.isin(codes, list(BANDPASS_TABLE))
    for i in np.flatnonzero(unknown & (reason == "")):
        reason[i], detail[i] = "unknown_instrument", (f"channel code {channels[i]!r} not in the bandpass table "
                                                      f"{sorted(BANDPASS_TABLE)}")
    reject(np.isfinite(gaps) & (gaps > 0), "gaps", "trace_gaps > 0")
    if need_conditions:
        for key in ("lat", "lon", "depth"):
            reject(~np.isfinite(cond[key]), "no_source_location", f"{CONDITION_COLUMNS[key]} is missing")
        reject(np.array([s in ("", "nan") for s in station]), "no_station", "station_code is missing")
    quality = QualityFilter(snr_min=spec.snr_min, max_gaps=None, max_overlaps=None)

    fm, tm = spec.model_shape
    n_comp = len(spec.components)
    x_out = np.zeros((n, fm, tm, n_comp), np.float32)
    scale_out = np.zeros((n, 2, n_comp), np.float32)
    wave_out = np.zeros((n, n_comp, spec.n_samples), np.float32) if keep_waveforms else None
    fill = np.zeros(n)
    before = int(round(spec.before_s * spec.sampling_rate))

    def process(rows: np.ndarray):
        traces = dataset.get_waveforms(list(rows), pad=False)
        good = []
        for row, trace in zip(rows, traces):
            trace = np.asarray(trace)
            if trace.ndim != 2 or trace.shape[0] != len(order):
                reason[row], detail[row] = "bad_shape", f"waveform shape {trace.shape}, component order {order!r}"
                continue
            trace = trace[comp_index]
            if not np.isfinite(trace).all():
                reason[row], detail[row] = "non_finite", "NaN or inf samples"
                continue
            length = trace.shape[1] / rates[row] * spec.sampling_rate
            start = p[row] * spec.sampling_rate / rates[row] - before
            outside = max(0.0, -start) + max(0.0, start + spec.n_samples - length)
            fill[row] = min(outside / spec.n_samples, 1.0)
            if fill[row] > spec.max_fill:
                reason[row], detail[row] = "window_outside_trace", (
                    f"{fill[row]:.0%} of the window P-{spec.before_s:g} s..P+{spec.after_s:g} s lies outside the "
                    f"record (at most {spec.max_fill:.0%})")
                continue
            problem = quality.check_snr(snr(trace, p[row], rates[row]), spec.components)
            if problem:
                reason[row], detail[row] = problem
                continue
            good.append((row, trace))
        groups: dict[tuple[float, int], list] = {}
        for row, trace in good:
            groups.setdefault((float(rates[row]), trace.shape[1]), []).append((row, trace))
        for (rate, _), members in groups.items():
            g_rows = np.array([r for r, _ in members])
            batch = np.stack([t for _, t in members]).astype(np.float64)
            fmin, fmax = bandpass_bands(channels[g_rows], cond["magnitude"][g_rows], rate)
            steps = ["demean", "detrend", {"name": "taper", "max_percentage": spec.taper}, "bandpass"]
            if rate != spec.sampling_rate:
                steps.append({"name": "resample", "sampling_rate": spec.sampling_rate})
            steps.append({"name": "window", "before": spec.before_s, "after": spec.after_s, "unit": "seconds"})
            windows = preprocess_batch(batch, rate, steps, fmin=fmin, fmax=fmax, pick_sample=p[g_rows])
            windows = windows[..., : spec.n_samples] * float(spec.gain)
            flat = ~np.any(windows != 0, axis=(1, 2))
            for row in g_rows[flat]:
                reason[row], detail[row] = "flat_window", "the preprocessed window is all zeros"
            keep = ~flat
            mag = np.abs(stft(windows[keep], spec.sampling_rate, **spec.stft_kwargs))
            x, scale = to_model_input(mag, spec)
            x_out[g_rows[keep]] = x
            scale_out[g_rows[keep]] = scale
            if wave_out is not None:
                wave_out[g_rows[keep]] = windows[keep]

    candidates = np.flatnonzero(reason == "")
    for begin in tqdm(range(0, len(candidates), chunk), desc="spectrograms", unit="chunk", leave=False,
                      disable=not progress or len(candidates) <= chunk):
        rows = candidates[begin:begin + chunk]
        try:
            process(rows)
        except Exception:  # noqa: BLE001 - find the bad record(s) one by one, keep the others
            for row in rows:
                if reason[row]:
                    continue
                try:
                    process(np.array([row]))
                except Exception as err:  # noqa: BLE001
                    reason[row], detail[row] = "unreadable_or_failed", f"{type(err).__name__}: {err}"
    ok = reason == ""
    arrays = {"x": x_out[ok], "log_scale": scale_out[ok], **{k: v[ok] for k, v in cond.items()},
              "station": station[ok].astype(str), "trace_name": names[ok].astype(str),
              "row": np.flatnonzero(ok), "fill": fill[ok]}
    if wave_out is not None:
        arrays["waveform"] = wave_out[ok]
    rejected = [{"trace_name": str(names[i]), "row": int(i), "reason": str(reason[i]), "detail": str(detail[i])}
                for i in np.flatnonzero(~ok)]
    if rejected and not ok.any():
        warnings.warn(f"{dataset.path}: every record was rejected (first: {rejected[0]})", stacklevel=2)
    return arrays, rejected
