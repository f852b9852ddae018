"""A run's data for the spectrogram autoencoders (host side, numpy): records -> scaled STFT
spectrograms (:func:`prepare_records`), and the splits, conditions, station indices and batches of a
run (:class:`SpectrogramData`).

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
   none, velocities in m/s want 1e9, i.e. nm/s), STFT per component (:func:`seisjax.data.stft.stft`),
   ``|Z|``, ``log1p``, the frequencies cropped and the frames zero-padded to multiples of
   ``multiple`` (:meth:`SpectrogramSpec.model_shape`), then per-sample, per-channel min-max scaling
   to [0, 1] over the real bins; the ``log1p`` minimum and maximum are kept (``log_scale``,
   ``(N, 2, C)``) so that :func:`to_magnitudes` restores the magnitudes.

Rejected records are returned with the reason (never dropped silently). Components come in
``components`` order (default E, N, Z as in the study) whatever the dataset's order.

The config's ``data`` section:

    source = "synthetic"    # the generator's `local` scenario (data.synthetic), made in <workdir>/data
                            # when absent; "dataset": the dataset at data.path (a STEAD folder is
                            # converted once into <workdir>/data_stead); "toy": toy_records() written
                            # to <workdir>/data_toy (data.toy_records, toy_seed; tests and smoke runs)
    components = "ENZ"      # order of the model's channels
    sampling_rate = 100.0   # Hz, records at other rates are resampled (after the bandpass)
    before_s, after_s       # window P - 10 s .. P + 60 s
    nperseg, noverlap, nfft # STFT (256, 192, 256: 129 frequencies, a frame every 64 samples)
    snr_min = 1.5           # max SNR over the components must exceed it
    taper = 0.05            # cosine taper before the bandpass
    max_fill = 0.25         # at most this fraction of the window may lie outside the record
    gain = 0.0              # waveforms x gain before log1p; 0 = from the dataset's unit (1e9 for m/s)
    train_split, eval_split # "train", "dev"; without a split column every row serves both

Batches: ``x`` ``(B, F, T, C)`` in [0, 1], ``mask`` ``(B, F, T, 1)`` (0 on padded frames),
``log_scale`` ``(B, 2, C)`` (per-channel min and max of log1p magnitudes), ``cond`` ``(B, 4 or 5)``
(:meth:`SpectrogramData.condition_vector`) and ``station`` ``(B,)`` (1..n for the training set's
stations in sorted order, 0 = unknown).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import jax
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from seisjax.data.batches import ArrayBatchIterator
from seisjax.data.dataset import Dataset, DatasetWriter, trace_names
from seisjax.data.preprocess import BANDPASS_TABLE, bandpass_bands, instrument_code, preprocess_batch
from seisjax.data.quality import QualityFilter, snr
from seisjax.data.resolve import resolve_dataset
from seisjax.data.stft import MinMax, log_scale, minmax_scale, minmax_unscale, stft, stft_axes
from seisjax.errors import InputError
from seisjax.train.task import array_fingerprint, dataset_fingerprint

__all__ = [
    "CONDITION_COLUMNS",
    "SOURCES",
    "SpectrogramData",
    "SpectrogramSpec",
    "event_ids",
    "prepare_records",
    "renormalise",
    "spec_from_config",
    "to_magnitudes",
    "to_model_input",
    "toy_records",
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


# ----------------------------------------------------------------------------- a run's data
SOURCES = ("synthetic", "dataset", "toy")
_PHYSICAL_UNITS = ("m", "m/s", "m/s**2", "m/s^2", "m/s/s")


def spec_from_config(data, gain: float) -> SpectrogramSpec:
    """The :class:`SpectrogramSpec` of a config's ``data`` section, with ``gain`` resolved."""
    return SpectrogramSpec(
        sampling_rate=float(data.sampling_rate), before_s=float(data.before_s), after_s=float(data.after_s),
        nperseg=int(data.nperseg), noverlap=int(data.noverlap), nfft=int(data.nfft), components=str(data.components),
        snr_min=None if data.snr_min is None or float(data.snr_min) < 0 else float(data.snr_min),
        taper=float(data.taper), max_fill=float(data.max_fill), gain=float(gain))


def toy_records(n: int, *, seed: int = 0, sampling_rate: float = 50.0, length_s: float = 80.0,
                p_s: float = 15.0) -> tuple[np.ndarray, list[dict]]:
    """Small records with a known physics for tests: ``(waveforms (n, 3, W) in Z, N, E, metadata)``.

    Four stations ``T01..T04`` (HH, 50 Hz) around (38 N, 23 E); sources within 0.5 degrees, depth
    5-15 km, magnitude 1-4. After P, a damped sinusoid of amplitude ``10**M / distance_km`` (x 1000
    counts), frequency ``12 / (1 + M)`` Hz and decay time ``1 + M`` s, with fixed component ratios,
    over unit Gaussian noise. Splits 80/20 train/dev."""
    rng = np.random.default_rng(seed)
    st_lat = 38.0 + np.array([0.3, -0.3, 0.3, -0.3])
    st_lon = 23.0 + np.array([0.3, 0.3, -0.3, -0.3])
    w = int(round(length_s * sampling_rate))
    t = np.arange(w) / sampling_rate
    waveforms = np.empty((n, 3, w), np.float32)
    metadata = []
    for i in range(n):
        mag = rng.uniform(1.0, 4.0)
        lat, lon, depth = 38.0 + rng.uniform(-0.5, 0.5), 23.0 + rng.uniform(-0.5, 0.5), rng.uniform(5.0, 15.0)
        s = int(rng.integers(4))
        dist = float(np.hypot((lat - st_lat[s]) * 111.2, (lon - st_lon[s]) * 111.2 * np.cos(np.radians(38.0))))
        tau = np.clip(t - p_s, 0.0, None)
        burst = (t >= p_s) * np.sin(2 * np.pi * 12.0 / (1.0 + mag) * tau) * np.exp(-tau / (1.0 + mag))
        amp = 1000.0 * 10 ** mag / max(dist, 1.0)
        ratios = np.array([1.0, 0.6, 0.8])[:, None]
        waveforms[i] = amp * ratios * burst + rng.normal(size=(3, w))
        metadata.append({
            "source_id": f"toy{i:05d}", "source_magnitude": round(mag, 4), "source_latitude_deg": round(lat, 5),
            "source_longitude_deg": round(lon, 5), "source_depth_km": round(depth, 3),
            "station_network_code": "TY", "station_code": f"T{s + 1:02d}", "station_channel_code": "HH",
            "station_latitude_deg": float(st_lat[s]), "station_longitude_deg": float(st_lon[s]),
            "path_ep_distance_km": round(dist, 3), "trace_sampling_rate_hz": sampling_rate,
            "trace_p_arrival_sample": p_s * sampling_rate, "split": "train" if i < int(0.8 * n) else "dev"})
    return waveforms, metadata


def event_ids(arrays) -> np.ndarray:
    """One id per record for its source (magnitude, latitude, longitude, depth), so that records of
    one event can be compared with each other (within-event distance trends)."""
    keys = [np.round(np.asarray(arrays[k], np.float64), 4) for k in ("magnitude", "lat", "lon", "depth")]
    return np.array([",".join(f"{v:g}" for v in row) for row in zip(*keys)], dtype=object)


def _unit_gain(path: Path) -> float:
    """1e9 for datasets in metres (per second, ...), 1 otherwise (counts)."""
    files = sorted(Path(path).glob("waveforms*.hdf5"))
    if not files:
        return 1.0
    try:
        with h5py.File(files[0], "r") as f:
            unit = f["data_format/unit"][()] if "data_format/unit" in f else b""
    except OSError:
        return 1.0
    unit = unit.decode() if isinstance(unit, bytes) else str(unit)
    return 1e9 if unit.strip() in _PHYSICAL_UNITS else 1.0


def _write_toy(data, path: Path):
    waveforms, metadata = toy_records(int(data.toy_records), seed=int(data.toy_seed),
                                      sampling_rate=float(data.sampling_rate))
    with DatasetWriter(path, component_order="ZNE", sampling_rate=float(data.sampling_rate),
                       data_format_attrs={"unit": "counts"}, overwrite=True) as writer:
        for waveform, meta in zip(waveforms, metadata):
            writer.add(waveform, meta)


class SpectrogramData:
    """A run's records as model inputs: the spectrograms of the training and evaluation splits,
    their conditions and station indices, and their batch iterators.

    ``data`` is the config's ``data`` section (``data.source``: ``"synthetic"`` and ``"dataset"`` as
    :func:`seisjax.data.resolve.resolve_dataset` finds them, ``"toy"``: :func:`toy_records` written to
    ``<workdir>/data_toy``); ``data_path`` replaces it (``eval --data``). Spectrograms are made once
    per split and cached in the workdir (``spectral_<split>_<hash>.npz``); records left out are
    listed with their reason in ``spectral_rejected.csv`` and counted in ``spectral_data.json``.

    ``need_conditions`` (the CVAE) rejects records without a source location or station and
    standardises the conditions with the training rows' mean and spread; ``distance_condition`` adds
    the log10 hypocentral distance to the station (:meth:`log10_distance`) as a fifth condition.

    Attributes: ``spec``, ``mask`` ``(F, T, 1)``, ``train`` and ``eval`` (arrays of
    :func:`prepare_records` plus ``cond`` and ``station_index``), ``stations`` (the training
    stations, sorted: embedding rows 1..n), ``station_coords``, ``cond_mean``, ``cond_std``,
    ``summary``, ``dataset``."""

    def __init__(self, data, *, workdir=None, data_path=None, need_conditions: bool = False,
                 distance_condition: bool = False):
        self.workdir = Path(workdir) if workdir is not None else None
        self.source = str(data.source) if data_path is None else "dataset"
        if self.source not in SOURCES:
            raise InputError(f"data.source = {self.source!r}: expected one of {', '.join(repr(s) for s in SOURCES)}")
        self.distance_condition = bool(distance_condition)
        if self.source == "toy":
            if self.workdir is None:
                raise InputError("data.source = 'toy' writes its data in the workdir; give one")
            path = self.workdir / "data_toy"
            if not (path / "metadata.csv").exists() and jax.process_index() == 0:
                _write_toy(data, path)
        else:
            path = resolve_dataset(data, workdir=self.workdir, data_path=data_path, scenario="local")
        self.spec = spec_from_config(data, float(data.gain) or _unit_gain(path))
        self.dataset = Dataset(path)
        self.mask = self.spec.mask()
        self._eval_request = str(data.eval_split)
        self.train, train_rejected, self.train_split = self._load(str(data.train_split), False, need_conditions)
        self.eval, eval_rejected, self.eval_split = self._load(str(data.eval_split), True, need_conditions)
        if not len(self.train["x"]):
            raise InputError(f"{path}: no training record passed the quality checks "
                             f"(see {self._report_path('spectral_rejected.csv')})")
        if not len(self.eval["x"]):
            raise InputError(f"{path}: no evaluation record passed the quality checks")
        self.stations = sorted(set(self.train["station"].tolist()))
        self.station_coords = self._station_coordinates() if self.distance_condition else {}
        geo = [self.train[k] for k in ("lat", "lon", "depth")]
        if self.distance_condition:
            geo.append(self.log10_distance(self.train["lat"], self.train["lon"], self.train["depth"],
                                           self.train["station"]))
        train_geo = np.stack(geo, axis=1)
        with warnings.catch_warnings():  # a column without any value (no station coordinates) is caught below
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, spread = np.nanmean(train_geo, axis=0), np.nanstd(train_geo, axis=0)
        self.cond_mean = np.where(np.isfinite(mean), mean, 0.0) if need_conditions else np.zeros(len(geo))
        self.cond_std = (np.where(np.isfinite(spread) & (spread > 0), spread, 1.0) if need_conditions
                         else np.ones(len(geo)))
        for arrays in (self.train, self.eval):
            arrays["cond"] = self.condition_vector(arrays["magnitude"], arrays["lat"], arrays["lon"], arrays["depth"],
                                                   arrays["station"])
            arrays["station_index"] = self.station_indices(arrays["station"])
        self._write_summary(train_rejected, eval_rejected)

    # ------------------------------------------------------------------ records
    def _rows(self, split: str):
        ds = self.dataset
        if not split or "split" not in ds.metadata.columns:
            return ds, "all"
        if not (ds.metadata["split"] == split).any():
            raise InputError(f"{ds.path}: no rows with split == {split!r} "
                             f"(splits there: {sorted(ds.metadata['split'].dropna().unique().tolist())})")
        return ds.split(split), split

    def _report_path(self, name: str) -> Path | None:
        return None if self.workdir is None else self.workdir / name

    def _load(self, split: str, keep_waveforms: bool, need_conditions: bool):
        view, used = self._rows(split)
        key = hashlib.sha256("|".join([dataset_fingerprint(view), self.spec.to_json(), str(keep_waveforms),
                                       str(need_conditions)]).encode()).hexdigest()[:16]
        cache = self._report_path(f"spectral_{used}_{key}.npz")
        if cache is not None and cache.exists():
            with np.load(cache, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files if not k.startswith("rejected_")}
                rejected = [dict(trace_name=str(a), row=int(b), reason=str(c), detail=str(d)) for a, b, c, d in
                            zip(f["rejected_trace_name"], f["rejected_row"], f["rejected_reason"], f["rejected_detail"])]
            return arrays, rejected, used
        arrays, rejected = prepare_records(view, self.spec, keep_waveforms=keep_waveforms,
                                           need_conditions=need_conditions)
        if cache is not None and jax.process_index() == 0:
            cache.parent.mkdir(parents=True, exist_ok=True)
            extra = {f"rejected_{k}": np.array([r[k] for r in rejected], dtype=int if k == "row" else str)
                     for k in ("trace_name", "row", "reason", "detail")}
            np.savez(cache, **arrays, **extra)
        return arrays, rejected, used

    def _write_summary(self, train_rejected, eval_rejected):
        rows = [dict(split=self.train_split, **r) for r in train_rejected]
        if self.eval_split != self.train_split:
            rows += [dict(split=self.eval_split, **r) for r in eval_rejected]
        reasons: dict[str, int] = {}
        for r in rows:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
        unseen = sorted(set(self.eval["station"].tolist()) - set(self.stations))
        summary = {"dataset": str(self.dataset.path), "spec": asdict(self.spec),
                   "model_shape": list(self.spec.model_shape), "stft_shape": list(self.spec.stft_shape),
                   "train": {"split": self.train_split, "records": len(self.train["x"]),
                             "rejected": len(train_rejected)},
                   "eval": {"split": self.eval_split, "records": len(self.eval["x"]),
                            "rejected": len(eval_rejected)},
                   "rejected_by_reason": reasons, "stations": self.stations,
                   "eval_stations_unseen_in_training": unseen,
                   "condition_mean": self.cond_mean.tolist(), "condition_std": self.cond_std.tolist(),
                   "distance_condition": self.distance_condition,
                   "stations_with_coordinates": len(self.station_coords)}
        self.summary = summary
        if rows:
            shown = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
            warnings.warn(f"spectrogram data: {len(rows)} record(s) left out ({shown}); see spectral_rejected.csv "
                          "in the workdir", stacklevel=4)
        if self.workdir is None or jax.process_index() != 0:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=["split", "trace_name", "row", "reason", "detail"]).to_csv(
            self.workdir / "spectral_rejected.csv", index=False)
        (self.workdir / "spectral_data.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")

    # ------------------------------------------------------------------ conditions
    def condition_vector(self, magnitude, lat, lon, depth, station=None) -> np.ndarray:
        """``(N, 4)`` float32: magnitude and latitude, longitude, depth standardised with the
        training rows' mean and spread; with ``distance_condition`` ``(N, 5)``, the fifth the
        standardised :meth:`log10_distance` to ``station`` (codes; required then), 0 (the training
        mean) where the station's coordinates are unknown."""
        geo = [lat, lon, depth]
        if self.distance_condition:
            if station is None:
                raise InputError("this CVAE run is conditioned on the source-station distance: give the station codes")
            geo.append(self.log10_distance(lat, lon, depth, station))
        geo = (np.stack(geo, axis=-1).astype(np.float64) - self.cond_mean) / self.cond_std
        geo = np.where(np.isfinite(geo), geo, 0.0)
        return np.concatenate([np.asarray(magnitude, np.float64)[:, None], geo], axis=1).astype(np.float32)

    def _station_coordinates(self) -> dict[str, tuple[float, float]]:
        """Station code -> (latitude, longitude) from the dataset's metadata (first row that has both)."""
        meta = self.dataset.metadata
        cols = ["station_code", "station_latitude_deg", "station_longitude_deg"]
        if not set(cols) <= set(meta.columns):
            warnings.warn(f"{self.dataset.path}: no station_latitude_deg / station_longitude_deg columns; the "
                          "distance condition falls back to the training mean for every record", stacklevel=4)
            return {}
        rows = meta[cols].dropna().drop_duplicates("station_code")
        return {str(code): (float(la), float(lo)) for code, la, lo in rows.itertuples(index=False)}

    def log10_distance(self, lat, lon, depth, station) -> np.ndarray:
        """log10 of the hypocentral distance (km, at least 1) from sources to stations (codes), from
        the stations' coordinates in the training data (great circle on a 6371 km sphere); NaN for a
        station without coordinates. Amplitudes fall off with it: a condition the small condition
        MLP cannot derive from the station embedding and the source location by itself."""
        coords = np.array([self.station_coords.get(str(c), (np.nan, np.nan)) for c in station],
                          np.float64).reshape(-1, 2)
        lat_s, lon_s = np.radians(coords[:, 0]), np.radians(coords[:, 1])
        lat_e, lon_e = np.radians(np.asarray(lat, np.float64)), np.radians(np.asarray(lon, np.float64))
        hav = np.sin((lat_e - lat_s) / 2) ** 2 + np.cos(lat_s) * np.cos(lat_e) * np.sin((lon_e - lon_s) / 2) ** 2
        epicentral = 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0)))
        return np.log10(np.maximum(np.hypot(epicentral, np.asarray(depth, np.float64)), 1.0))

    def station_indices(self, codes) -> np.ndarray:
        """Station codes -> embedding rows (1..n for the training stations, 0 for any other)."""
        lookup = {code: i + 1 for i, code in enumerate(self.stations)}
        return np.array([lookup.get(str(c), 0) for c in codes], np.int32)

    # ------------------------------------------------------------------ batches
    @staticmethod
    def batch_arrays(arrays) -> dict[str, np.ndarray]:
        """The model's inputs and targets of records (``train``, ``eval`` or a selection of them)."""
        return {"x": arrays["x"], "log_scale": arrays["log_scale"], "cond": arrays["cond"],
                "station": arrays["station_index"]}

    def add_mask(self, batch) -> dict[str, np.ndarray]:
        """``batch`` with ``mask`` ``(B, F, T, 1)`` (1 on real frames), added per batch rather than
        stored once per record."""
        batch = dict(batch)
        batch["mask"] = np.broadcast_to(self.mask, (len(batch["x"]),) + self.mask.shape).copy()
        return batch

    def train_batches(self, *, batch_size: int, seed: int, prefetch: int, process_index, process_count):
        return ArrayBatchIterator(self.batch_arrays(self.train), transform=self.add_mask,
                                  global_batch_size=int(batch_size), seed=int(seed), shuffle=True,
                                  drop_remainder=True, process_index=process_index, process_count=process_count,
                                  prefetch=int(prefetch))

    def eval_batches(self, *, batch_size: int, process_index, process_count):
        return ArrayBatchIterator(self.batch_arrays(self.eval), transform=self.add_mask,
                                  global_batch_size=int(batch_size), seed=0, shuffle=False, drop_remainder=False,
                                  num_epochs=1, process_index=process_index, process_count=process_count, prefetch=0)

    def data_info(self) -> dict:
        view, used = self._rows(self._eval_request)
        return {"source": self.source, "split": used, "examples": len(self.eval["x"]),
                "rejected": self.summary["eval"]["rejected"], "fingerprint": dataset_fingerprint(view),
                "spectrograms": array_fingerprint({"x": self.eval["x"]})}

    def close(self):
        self.dataset.close()
