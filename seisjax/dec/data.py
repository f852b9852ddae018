"""DEC's data: single-component windows around P, as waveforms or spectrograms, with the labels,
SNR and other columns the clustering report scores against, and the training batches that carry
DEC's target.

Sources (``data.source``): "synthetic" (the generator's `local` data, ``data.synthetic``, made in
<workdir>/data when absent), "dataset" (``data.path``), or in memory for tests: "pulses" (clean
up/down first-motion pulses) and "tones" (two spectral shapes, a short 8-18 Hz burst, "local", and a
long 1-3 Hz wave train, "teleseismic"). ``data.query`` (a ``DataFrame.query`` string, "" for all
rows) selects the rows first, e.g. local records only for the polarity experiment (why:
seisjax/dec/README.md). ``data.train_split`` / ``data.eval_split`` = "" use every row (clustering is
transductive, as in the paper).

Windows: ``data.window`` samples at ``data.sampling_rate`` starting ``data.pre_p`` samples before
``trace_p_arrival_sample`` (:mod:`seisjax.data.windows`: traces at other rates resampled), component
``data.component``, demeaned and divided by their largest absolute value. With ``data.lowpass`` > 0
(Hz) the window is first low-passed causally (:func:`lowpass_windows`, a Butterworth of
``data.lowpass_corners`` poles run over ``data.filter_margin`` samples of the record before the
window, where its start-up transient dies out): causal, so that nothing of the onset moves before
P. A trace whose P comes too early for that margin is an error (named) in training and a
``problem`` in :meth:`DECData.dataset_windows`, never a silently shifted window.

Input kind (``data.input``): "waveform" (the windows above, ``(N, window, 1)``) or "stft" (the
spectrograms of the distance and zClust networks, ``(N, F, T, 1)``, :func:`distance_spectrograms`):
the waveform is cut ``data.stft_margin`` samples wider on both sides, Hann-tapered over the margins,
bandpassed ``data.bandpass`` Hz (4-pole Butterworth, zero phase, so that the filter's edge effects
fall in the margins), trimmed back to ``data.window`` samples, and turned into ``log10`` STFT
magnitudes (``data.stft_nperseg``, ``data.stft_noverlap``, nfft ``data.stft_nfft``, the lowest
``data.stft_rows`` frequencies, edge frames padded with zeros or read from the margin,
``data.stft_edges``; window ``data.stft_window``, e.g. "hann" or zClust's ``("kaiser", beta)``) with
a floor of ``data.stft_floor`` times the trace's largest magnitude, standardised per trace (mean 0,
std 1).

Columns for the evaluation only: labels (``data.label_column``, e.g. ``trace_polarity``), log10 SNR
(``data.snr_column``, :func:`snr_bin`), the pair of a sign-flipped copy (``data.pair_column``), the
estimated onset SNR of real first motions (``data.onset_snr_column``) and, for synthetic data, the
P radiation coefficient from the truth.h5 beside the dataset.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.signal
from scipy.signal import butter, sosfilt
from tqdm.auto import tqdm

from seisjax.data.batches import ArrayBatchIterator
from seisjax.data.dataset import Dataset, trace_names
from seisjax.data.preprocess import bandpass, taper
from seisjax.data.resolve import resolve_dataset
from seisjax.data.stft import stft
from seisjax.data.windows import P_COLUMN, dataset_p_windows, missing_p_picks, p_windows, window_and_normalise
from seisjax.errors import InputError
from seisjax.train.task import array_fingerprint, dataset_fingerprint

__all__ = ["DECData", "TargetBatches", "SNR_BINS", "SNR_BIN_NAMES", "snr_bin", "snr_bin_name", "pulse_waveforms",
           "tone_waveforms", "stft_window", "distance_spectrograms", "lowpass_windows"]

#: log10 SNR bin edges of the polarity study (the last bin is open)
SNR_BINS = (0.0, 1.0, 2.0, 3.0, 4.0)


def snr_bin(log10_snr: np.ndarray) -> np.ndarray:
    """Bin index of each log10 SNR: 0 for [0, 1), ..., 4 for >= 4; -1 below 0 or unknown (NaN)."""
    log10_snr = np.asarray(log10_snr, np.float64)
    out = np.clip(np.floor(log10_snr), 0, len(SNR_BINS) - 1)
    return np.where(np.isfinite(log10_snr) & (log10_snr >= 0), out, -1).astype(np.int64)


def snr_bin_name(b: int) -> str:
    """The report's name of SNR bin ``b`` (:func:`snr_bin`): "0-1", ..., ">4"."""
    return f"{SNR_BINS[b]:g}-{SNR_BINS[b] + 1:g}" if b < len(SNR_BINS) - 1 else f">{SNR_BINS[-1]:g}"


def _numeric(column) -> np.ndarray:
    """A metadata column as float64, unparsable entries as NaN."""
    return pd.to_numeric(column, errors="coerce").to_numpy(np.float64)


def _log10_snr(meta, snr_column: str, component: str) -> np.ndarray | None:
    """log10 SNR per row: ``snr_column`` (dB, 20 log10 SNR) where it holds a number, else the
    clustered component's linear ``trace_snr_<component>`` (as ``data build`` and the STEAD
    converter write it, whose ``trace_snr_db`` lists all components); None when neither exists."""
    values = _numeric(meta[snr_column]) / 20.0 if snr_column and snr_column in meta else None
    linear_column = f"trace_snr_{component}"
    if linear_column in meta:
        with np.errstate(divide="ignore", invalid="ignore"):
            linear = np.log10(_numeric(meta[linear_column]))
        values = linear if values is None else np.where(np.isfinite(values), values, linear)
    return values


def _truth_p_radiation(folder, wanted) -> np.ndarray | None:
    """P radiation coefficient F_P of each trace named in ``wanted`` from the synthetic truth (``truth.h5`` beside
    the dataset), NaN for names it lacks; None when the folder has no truth or no ``p_radiation``."""
    path = Path(folder) / "truth.h5"
    if not path.exists():
        return None
    with h5py.File(path, "r") as h5:
        if "traces/p_radiation" not in h5 or "traces/trace_name" not in h5:
            return None
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in h5["traces/trace_name"][()]]
        values = pd.Series(np.asarray(h5["traces/p_radiation"][()], np.float64), index=names)
    values = values[~values.index.duplicated()]
    return values.reindex([str(n) for n in wanted]).to_numpy(np.float64)


def pulse_waveforms(n: int, *, length: int = 128, seed: int = 0, noise: float = 0.02,
                    sampling_rate: float = 100.0) -> dict[str, np.ndarray]:
    """Clean up/down first-motion pulses for tests: noise, then at a random P sample a damped
    sinusoid (5-15 Hz) starting with the sign of ``polarity`` (+1 up, -1 down).
    Returns ``{"waveforms" (n, 1, length), "p" (n,), "polarity" (n,), "log10_snr" (n,)}``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / sampling_rate
    p = rng.integers(length // 3, length // 2, size=n)
    polarity = rng.choice([-1, 1], size=n)
    freq = rng.uniform(5.0, 15.0, size=(n, 1))
    tau = np.clip(t[None] - (p / sampling_rate)[:, None], 0.0, None)
    signal = polarity[:, None] * (tau > 0) * np.sin(2 * np.pi * freq * tau) * np.exp(-8.0 * tau)
    noise_part = noise * rng.normal(size=(n, length))
    onset = (t[None] >= (p / sampling_rate)[:, None])
    snr = np.sqrt((signal ** 2 * onset).sum(1) / onset.sum(1)) / noise if noise > 0 else np.full(n, np.inf)
    return {"waveforms": (signal + noise_part)[:, None, :].astype(np.float32), "p": p.astype(np.int64),
            "polarity": polarity.astype(np.int64), "log10_snr": np.log10(snr)}


def tone_waveforms(n: int, *, length: int, p: int, seed: int = 0, noise: float = 0.02,
                   sampling_rate: float = 100.0) -> dict[str, np.ndarray]:
    """Two spectral shapes for tests, half each: "local" = a short burst (8-18 Hz, decay time
    0.5-1 s), "teleseismic" = a long wave train (1-3 Hz, decay time 4-8 s), both starting at P
    (``p`` +- 20 samples) in Gaussian noise.
    Returns ``{"waveforms" (n, 1, length), "p" (n,), "label" (n,) str, "log10_snr" (n,)}``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / sampling_rate
    local = rng.permutation(np.arange(n) < n // 2)
    onset = p + rng.integers(-20, 21, size=n)
    freq = np.where(local, rng.uniform(8.0, 18.0, n), rng.uniform(1.0, 3.0, n))[:, None]
    decay = np.where(local, rng.uniform(0.5, 1.0, n), rng.uniform(4.0, 8.0, n))[:, None]
    tau = t[None] - (onset / sampling_rate)[:, None]
    signal = (tau > 0) * np.sin(2 * np.pi * freq * tau + rng.uniform(0, 2 * np.pi, (n, 1))) * np.exp(-tau / decay)
    snr = np.sqrt(np.mean(signal[:, p:p + int(5 * sampling_rate)] ** 2, axis=1)) / noise
    waveforms = signal + noise * rng.normal(size=(n, length))
    return {"waveforms": waveforms[:, None, :].astype(np.float32), "p": onset.astype(np.int64),
            "label": np.where(local, "local", "teleseismic"), "log10_snr": np.log10(snr)}


def stft_window(spec):
    """A config's ``data.stft_window`` as scipy takes it: "hann", or ("kaiser", beta) from a
    sequence (ml_collections keeps tuples as tuples, JSON round trips make them lists)."""
    if isinstance(spec, str):
        return spec
    name, *args = list(spec)
    return (str(name), *(float(a) for a in args))


def distance_spectrograms(x: np.ndarray, sampling_rate: float, *, margin: int, band=(1.0, 20.0),
                          nperseg: int = 30, noverlap: int = 10, floor: float = 1e-3,
                          window="hann", edges: str = "zeros", nfft: int | None = None,
                          rows: int | None = None) -> np.ndarray:
    """Waveform windows ``(N, margin + W + margin, 1)`` -> normalised log-magnitude STFTs
    ``(N, rows or nfft // 2 + 1, ceil(W / hop) + 1, 1)`` (see the module docstring). With the distance
    experiment's 100 Hz, W = 940, nperseg 30, noverlap 10 (hop 20): 16 x 48; with zClust's
    W = 5676, nperseg 172, noverlap 86 and a Kaiser window (beta = 1.8 pi): 87 x 67. ``window`` is
    scipy's (a name or a tuple such as ``("kaiser", 5.65)``). A flat (all-zero) window gives zeros.

    ``edges``: "zeros" pads the window with zeros as scipy does, so the first and last frames see the
    signal cut off and show a broadband stripe (on the distance data up to 50 Hz, far outside the
    1-20 Hz band) whose level follows the amplitude at the window's ends; "signal" takes those
    frames' missing half segment from the margin instead (same frame centres and shape; needs
    ``margin >= nperseg // 2`` plus what rounds the window up to whole hops).

    ``nfft`` (default ``nperseg``) and ``rows`` (default all ``nfft // 2 + 1``): keep only the lowest
    ``rows`` frequencies of an ``nfft``-point transform, e.g. nfft 64, rows 16 puts the 16 rows on
    0-23 Hz (1.56 Hz apart) instead of 0-50 Hz, where 10 of the 16 lie above a 20 Hz bandpass."""
    w = x[..., 0].astype(np.float64)
    w = w - w.mean(axis=-1, keepdims=True)
    if margin > 0:
        w = taper(w, max_percentage=None, type="hann", max_length=margin / sampling_rate,
                  sampling_rate=sampling_rate)
    w = bandpass(w, band[0], band[1], sampling_rate, corners=4, zerophase=True)
    nfft = int(nfft or nperseg)
    if edges == "signal":
        width, half, hop = w.shape[1] - 2 * margin, nperseg // 2, nperseg - noverlap
        extra = -(width + 2 * half - nperseg) % hop  # scipy's zero padding up to whole hops
        if margin < half + extra:
            raise InputError(f"distance_spectrograms: edges='signal' needs a margin of at least {half + extra} "
                             f"samples (half a segment), got {margin}")
        w = w[:, margin - half:margin + width + half + extra]
        coef = scipy.signal.stft(w, fs=sampling_rate, window=stft_window(window), nperseg=nperseg,
                                 noverlap=noverlap, nfft=nfft, boundary=None, padded=False, axis=-1)[2]
        mag = np.abs(coef)
    elif edges == "zeros":
        if margin > 0:
            w = w[:, margin:-margin]
        mag = np.abs(stft(w, sampling_rate, nperseg=nperseg, noverlap=noverlap, nfft=nfft, window=window))
    else:
        raise InputError(f"distance_spectrograms: edges = {edges!r}: expected 'zeros' or 'signal'")
    if rows is not None:
        if not 0 < int(rows) <= mag.shape[1]:
            raise InputError(f"distance_spectrograms: rows = {rows}: need 1 to nfft // 2 + 1 = {mag.shape[1]}")
        mag = mag[:, :int(rows)]
    peak = mag.max(axis=(1, 2), keepdims=True)
    log_mag = np.log10(mag + floor * np.where(peak > 0, peak, 1.0))
    # standardised rather than min-max scaled: the extremes (floor, peak) of one trace are noisy
    # (measured on the family's page, seisjax/dec/README.md)
    spread = log_mag.std(axis=(1, 2), keepdims=True)
    scaled = (log_mag - log_mag.mean(axis=(1, 2), keepdims=True)) / np.where(spread > 0, spread, 1.0)
    return np.ascontiguousarray(scaled[..., None], np.float32)


def lowpass_windows(x: np.ndarray, sampling_rate: float, corner_hz: float, *, margin: int,
                    corners: int = 4) -> np.ndarray:
    """Windows ``(N, margin + W, 1)`` whose first ``margin`` samples precede the window ->
    ``(N, W, 1)`` causally low-passed (Butterworth, ``corners`` poles, as obspy's ``lowpass`` with
    zerophase=False), demeaned and divided by their largest absolute value.

    Causal, because a zero-phase filter spreads the onset's energy before P and blurs the first
    motion; the margin (noise before the window) is where the filter's start-up transient decays.
    The offset left by the caller's demeaning is removed on the margin first, so that the filter
    does not ring on a step at the start of the cut. A flat window stays zeros."""
    w = x[..., 0].astype(np.float64)
    w = w - w[:, :margin].mean(axis=1, keepdims=True)
    sos = butter(corners, corner_hz, btype="lowpass", fs=sampling_rate, output="sos")
    w = sosfilt(sos, w, axis=1)[:, margin:]
    w = w - w.mean(axis=1, keepdims=True)
    scale = np.abs(w).max(axis=1, keepdims=True)
    return np.ascontiguousarray((w / np.where(scale > 0, scale, 1.0))[..., None], np.float32)


SNR_BIN_NAMES = tuple(snr_bin_name(b) for b in range(len(SNR_BINS)))


def _normalised(x: np.ndarray) -> np.ndarray:
    """Windows ``(N, W, 1)`` divided by their largest absolute value (a flat one stays zeros)."""
    scale = np.abs(x).max(axis=1, keepdims=True)
    return x / np.where(scale > 0, scale, 1.0)


class TargetBatches:
    """A training iterator whose batches carry their rows' ``index``, with each batch's rows of the
    current DEC target P added (``target``) when the consumer takes the batch, not when the
    prefetch thread read it, so that a batch drawn after a target update always carries the new
    target. ``target()`` returns the target of every training row, or None before the first update
    (only the engine's shape example comes then: a uniform target); ``target=None``: no target
    (pretraining)."""

    def __init__(self, inner, target: Callable[[], np.ndarray | None] | None, n_clusters: int):
        self._inner, self._target, self._n_clusters = inner, target, n_clusters

    def __iter__(self):
        return self

    def __next__(self):
        batch = dict(next(self._inner))
        index = batch.pop("index")
        if self._target is not None:
            target = self._target()
            if target is None:
                k = self._n_clusters
                target = np.full((int(index.max()) + 1, k), 1.0 / k, np.float32)
            batch["target"] = target[index]
        return batch

    def state(self):
        return self._inner.state()

    def restore(self, state):
        self._inner.restore(state)

    @property
    def steps_per_epoch(self):
        return self._inner.steps_per_epoch

    @property
    def epoch(self):
        return self._inner.epoch

    def close(self):
        self._inner.close()


class DECData:
    """The inputs of one run's config (see the module docstring): ``train`` and ``eval`` hold the
    windows ``x`` (the model's input) and, in ``eval``, the columns the report scores against.
    ``data_path`` replaces the config's dataset (``eval --data``)."""

    def __init__(self, config, *, workdir=None, data_path=None):
        self.config = config
        data = config.data
        self.window, self.pre_p = int(data.window), int(data.pre_p)
        self.input_kind = str(data.get("input", "waveform"))
        if self.input_kind not in ("waveform", "stft"):
            raise InputError(f"data.input = {self.input_kind!r}: expected 'waveform' or 'stft'")
        self.input_window = self.window  # samples the model's input covers
        self.margin = 0
        if self.input_kind == "stft":
            # the waveform is cut wider so that the bandpass's edge effects fall outside the window
            self.margin = int(data.get("stft_margin", 100))
            if self.margin < 0:
                raise InputError(f"data.stft_margin = {self.margin}: need >= 0")
            self.window, self.pre_p = self.window + 2 * self.margin, self.pre_p + self.margin
        self.lowpass = float(data.get("lowpass", 0.0) or 0.0)
        if self.lowpass < 0 or self.lowpass >= float(data.sampling_rate) / 2:
            raise InputError(f"data.lowpass = {self.lowpass} Hz: need 0 (off) or a corner below Nyquist "
                             f"({float(data.sampling_rate) / 2:g} Hz)")
        if self.input_kind == "waveform" and self.lowpass > 0:
            # cut earlier so that the causal filter's start-up transient dies out before the window
            self.margin = int(data.get("filter_margin", 100))
            if self.margin < 1:
                raise InputError(f"data.filter_margin = {self.margin}: need >= 1 sample of pre-window noise")
            self.window, self.pre_p = self.window + self.margin, self.pre_p + self.margin
        self.dataset = None
        self.source = data.source if data_path is None else "dataset"
        if self.source == "pulses":
            arrays = pulse_waveforms(int(data.toy_examples), length=int(data.toy_length), seed=int(data.toy_seed),
                                     noise=float(data.toy_noise), sampling_rate=float(data.sampling_rate))
            x = self.model_input(window_and_normalise(arrays["waveforms"], arrays["p"], window=self.window,
                                                      pre_p=self.pre_p))
            self.train = {"x": x}
            self.eval = {"x": x, "label": arrays["polarity"], "log10_snr": arrays["log10_snr"],
                         "trace_name": np.array([f"pulse{i}" for i in range(len(x))])}
        elif self.source == "tones":
            arrays = tone_waveforms(int(data.toy_examples), length=self.window + 64, p=self.pre_p + 32,
                                    seed=int(data.toy_seed), noise=float(data.toy_noise),
                                    sampling_rate=float(data.sampling_rate))
            x = self.model_input(window_and_normalise(arrays["waveforms"], arrays["p"], window=self.window,
                                                      pre_p=self.pre_p))
            self.train = {"x": x}
            self.eval = {"x": x, "label": arrays["label"], "log10_snr": arrays["log10_snr"],
                         "trace_name": np.array([f"tone{i}" for i in range(len(x))])}
        elif self.source in ("synthetic", "dataset"):
            self.dataset = Dataset(resolve_dataset(data, workdir=workdir, data_path=data_path))
            query = str(data.get("query", "") or "")
            if query:  # e.g. polarity on local records only (see the module docstring)
                selected = self.dataset.select(query)
                if len(selected) == 0:
                    raise InputError(f"{self.dataset.path}: data.query = {query!r} selects no rows")
                self.dataset = selected
            self._check_dataset(self.dataset)
            self.train = self._load(self._rows(data.train_split))
            self.eval = self._load(self._rows(data.eval_split), labels=True)
        else:
            raise InputError(f"data.source = {self.source!r}: expected 'synthetic', 'dataset', 'pulses' or 'tones'")
        #: the evaluation's class names, in the order of the integer labels of its batches
        self.classes = list(np.unique(self.eval["label"].astype(str))) if "label" in self.eval else []

    # ------------------------------------------------------------------ reading a dataset
    def _check_dataset(self, dataset):
        meta = dataset.metadata
        missing = missing_p_picks(dataset, reader="DEC")
        if missing.any():
            raise InputError(f"{dataset.path}: {int(missing.sum())} trace(s) have no {P_COLUMN} "
                             f"(e.g. row {int(np.flatnonzero(missing)[0])}); select traces with a P pick first")
        order = dataset.component_order or ""
        if self.config.data.component not in order:
            raise InputError(f"{dataset.path}: component {self.config.data.component!r} not in the "
                             f"dataset's component order {order!r}")
        early = self._too_early(dataset, meta)
        if early.any():
            names = meta["trace_name"].astype(str).to_numpy()[early] if "trace_name" in meta else np.flatnonzero(early)
            raise InputError(f"{dataset.path}: {int(early.sum())} trace(s) have P fewer than {self.pre_p} samples "
                             f"(at {float(self.config.data.sampling_rate):g} Hz) after the record's start, which "
                             f"the window (data.pre_p) and the low-pass filter's margin (data.filter_margin) need "
                             f"(e.g. {', '.join(map(str, names[:3]))}); select other traces (data.query) or lower "
                             "data.filter_margin")

    def _too_early(self, dataset, meta) -> np.ndarray:
        """Rows whose P (at the window's rate) comes too soon for the samples cut before it: the
        window would be shifted silently, and the first motion with it. Waveform input only (a
        spectrogram's window a few samples off changes little)."""
        if self.input_kind != "waveform":
            return np.zeros(len(meta), bool)
        target = float(self.config.data.sampling_rate)
        rates = (_numeric(meta["trace_sampling_rate_hz"]) if "trace_sampling_rate_hz" in meta
                 else np.full(len(meta), dataset.sampling_rate or target, np.float64))
        p = _numeric(meta[P_COLUMN]) * target / rates
        return np.isfinite(p) & (np.round(p) < self.pre_p)

    def _rows(self, split: str):
        ds = self.dataset
        if not split:
            return ds
        if "split" in ds.metadata.columns and (ds.metadata["split"] == split).any():
            return ds.split(split)
        raise InputError(f"{ds.path}: no rows with split == {split!r}")

    def _load(self, dataset, *, labels: bool = False) -> dict[str, np.ndarray]:
        """Every window of ``dataset`` on the chosen component, normalised on that component alone."""
        # windows of every component (resampling, NaN handling); keep the clustered one
        c = self.dataset.component_order.index(self.config.data.component)
        x = dataset_p_windows(dataset, sampling_rate=float(self.config.data.sampling_rate), window=self.window,
                              pre_p=self.pre_p)[..., c:c + 1]
        out = {"x": self.model_input(np.ascontiguousarray(_normalised(x), np.float32))}
        if labels:
            out.update(self._columns(dataset.metadata))
            out["trace_name"] = trace_names(dataset.metadata)
            meta = dataset.metadata
            if "source_id" in meta:  # the event, for splits that keep an event's records together
                out["source_id"] = meta["source_id"].astype(str).to_numpy()
            pair_col = str(self.config.data.get("pair_column", "") or "")
            if pair_col and pair_col in meta:
                out["pair"] = _numeric(meta[pair_col])
            # the P radiation says whether a first-motion label is defined; other labels ignore it
            radiation = (_truth_p_radiation(self.dataset.path, out["trace_name"])
                         if self.config.data.label_column == "trace_polarity" else None)
            if radiation is not None:
                out["p_radiation"] = radiation
            onset_col = str(self.config.data.get("onset_snr_column", "") or "")
            if onset_col and onset_col in meta:
                out["onset_snr"] = _numeric(meta[onset_col])
        return out

    def _columns(self, meta) -> dict[str, np.ndarray]:
        """The label and log10 SNR of each row, where the metadata has them."""
        out = {}
        label_col = self.config.data.label_column
        if label_col and label_col in meta:
            out["label"] = meta[label_col].to_numpy()
        snr = _log10_snr(meta, self.config.data.snr_column, self.config.data.component)
        if snr is not None:
            out["log10_snr"] = snr
        return out

    def model_input(self, x: np.ndarray) -> np.ndarray:
        """Normalised waveform windows ``(N, window, 1)`` -> what the model takes (data.input)."""
        data = self.config.data
        if self.input_kind == "waveform":
            if self.lowpass <= 0:
                return x
            return lowpass_windows(x, float(data.sampling_rate), self.lowpass, margin=self.margin,
                                   corners=int(data.get("lowpass_corners", 4)))
        return distance_spectrograms(
            x, float(data.sampling_rate), margin=self.margin, band=tuple(data.get("bandpass", (1.0, 20.0))),
            nperseg=int(data.get("stft_nperseg", 30)), noverlap=int(data.get("stft_noverlap", 10)),
            floor=float(data.get("stft_floor", 1e-3)), window=stft_window(data.get("stft_window", "hann")),
            edges=str(data.get("stft_edges", "zeros")), nfft=data.get("stft_nfft") or None,
            rows=data.get("stft_rows") or None)

    def dataset_windows(self, dataset, *, chunk: int = 1024) -> dict[str, np.ndarray]:
        """Every row of ``dataset`` (any Dataset, not only the run's) windowed as for evaluation.

        Returns ``{"x" (N, window, 1) (or (N, F, T, 1) with data.input = "stft"), "trace_name",
        "problem"}`` (+ ``"label"``, ``"log10_snr"`` when the config's columns are present). A row
        that cannot be clustered is kept with a zero window and its reason in ``problem`` ("" for
        good rows): no P pick, no valid sampling rate, an unreadable trace, non-finite samples or a
        flat window. One bad trace never stops the job."""
        data = self.config.data
        component = data.component
        order = dataset.component_order or ""
        if component not in order:
            raise InputError(f"{dataset.path}: component {component!r} not in the dataset's component "
                             f"order {order!r}")
        c = order.index(component)
        meta = dataset.metadata.copy()
        n = len(meta)
        if "trace_sampling_rate_hz" not in meta:
            meta["trace_sampling_rate_hz"] = dataset.sampling_rate or float(data.sampling_rate)
        names = trace_names(meta)
        problem = np.full(n, "", dtype=object)
        if P_COLUMN not in meta:
            problem[:] = f"no {P_COLUMN} column"
        else:
            problem[meta[P_COLUMN].isna().to_numpy()] = f"no {P_COLUMN}"
        rates = _numeric(meta["trace_sampling_rate_hz"])
        problem[(problem == "") & ~(np.isfinite(rates) & (rates > 0))] = "no valid sampling rate"
        if P_COLUMN in meta:
            with np.errstate(invalid="ignore", divide="ignore"):
                early = self._too_early(dataset, meta)
            problem[(problem == "") & early] = (f"P fewer than {self.pre_p} samples after the record's start "
                                                "(window + filter margin)")
        x = np.zeros((n, self.window, 1), np.float32)

        def window_rows(rows):
            raw = dataset.get_waveforms(rows)
            with warnings.catch_warnings():  # non-finite windows are reported through `problem`
                warnings.simplefilter("ignore")
                cut = p_windows(raw, meta.iloc[rows], sampling_rate=float(data.sampling_rate), window=self.window,
                                pre_p=self.pre_p)[..., c:c + 1]
            finite = np.isfinite(raw.reshape(len(rows), -1)).all(axis=1)
            return cut, finite

        good = np.flatnonzero(problem == "")
        for begin in tqdm(range(0, len(good), chunk), desc="windowing traces", unit="chunk", leave=False,
                          disable=len(good) <= chunk):
            rows = good[begin:begin + chunk]
            try:
                parts = [window_rows(rows)]
            except Exception:  # noqa: BLE001 - find the bad trace(s) one by one, keep the others
                parts = []
                for row in rows:
                    try:
                        parts.append(window_rows(np.array([row])))
                    except Exception as err:  # noqa: BLE001
                        problem[row] = f"cannot read or window: {err}"
                        parts.append((np.zeros((1, self.window, 1), np.float32), np.ones(1, bool)))
            x[rows] = np.concatenate([p for p, _ in parts])
            finite = np.concatenate([f for _, f in parts])
            flat = ~np.any(x[rows] != 0, axis=(1, 2)) & (problem[rows] == "")
            problem[rows[flat & ~finite]] = "non-finite samples"
            problem[rows[flat & finite]] = "flat window (all zeros)"
        # normalised on the chosen component alone, as for training and evaluation
        out = {"x": self.model_input(np.ascontiguousarray(_normalised(x), np.float32)), "trace_name": names,
               "problem": problem.astype(str)}
        out.update(self._columns(meta))
        return out

    # ------------------------------------------------------------------ batches
    def train_batches(self, *, process_index, process_count):
        """The training windows with their row ``index`` (for :class:`TargetBatches`)."""
        config = self.config
        arrays = {"x": self.train["x"], "index": np.arange(len(self.train["x"]))}
        return ArrayBatchIterator(arrays, global_batch_size=int(config.batch_size), seed=int(config.seed),
                                  shuffle=True, drop_remainder=True, process_index=process_index,
                                  process_count=process_count, prefetch=int(config.data.prefetch))

    def eval_batches(self, *, process_index, process_count):
        """The evaluation windows, with the labels as integers (the index into :attr:`classes`)."""
        arrays = {"x": self.eval["x"]}
        if "label" in self.eval:
            arrays["label"] = np.unique(self.eval["label"].astype(str), return_inverse=True)[1].astype(np.int32)
        return ArrayBatchIterator(arrays, global_batch_size=int(self.config.eval.batch_size), seed=0,
                                  shuffle=False, drop_remainder=False, num_epochs=1, process_index=process_index,
                                  process_count=process_count, prefetch=0)

    def info(self) -> dict:
        """What the evaluation runs on (the Task contract's ``data_info``)."""
        info = {"source": self.source, "examples": int(len(self.eval["x"])),
                "split": self.config.data.eval_split or "all"}
        if self.dataset is not None:
            info["fingerprint"] = dataset_fingerprint(self._rows(self.config.data.eval_split))
        else:
            info["fingerprint"] = array_fingerprint({"x": self.eval["x"], "label": self.eval["label"]})
        return info

    def close(self):
        if self.dataset is not None:
            self.dataset.close()
