"""Deep embedded clustering (DEC, Xie et al. 2016; IDEC, Guo et al. 2017) of windows around P.

Two runs, two workdirs, one task:

- ``task.stage = "pretrain"``: the network (``config.model``, e.g. ``mousavi_polarity``) trains as an
  autoencoder (MSE).
- ``task.stage = "dec"``: a fresh run starts from the pretrained run's parameters
  (``task.pretrained`` = its workdir; :meth:`DECTask.initial_state`, called by the engine once) and
  sets the cluster centres (model parameter ``centres``) by k-means (``task.kmeans_n_init``
  restarts; ``task.init = "kmeans"``) or by a diagonal Gaussian mixture started from it (``"gmm"``)
  on the embeddings of the whole training data. Every ``task.update_interval`` steps
  :meth:`DECTask.before_step` recomputes the target P over the WHOLE training data in one compiled
  call; the loss is ``KL(P || Q)`` (``task.variant = "dec"``) or ``MSE + task.gamma * KL``
  (``"idec"``). Training stops when the fraction of hard labels that changed since the previous
  target update falls below ``task.tol``.

Clustering space (``task.cluster_space``): "code" (the paper's) puts the centres and the Student-t
kernel in the embedding itself; "whitened" first maps it by a fixed linear map, set once at the
start of DEC from the pretrained embeddings of the training data (PCA whitening: every principal
direction scaled to unit variance, :func:`seisjax.metrics.clustering.whitening_map`) and kept in the
model state (``cluster_map``, checkpointed; ``cluster`` applies it to new data). Why: k-means and
the Student-t kernel measure Euclidean distance, so they follow the code's largest-variance
directions, which an autoencoder spends on what reconstructs best, not on what separates the
classes (see experiments/dec_distance.py for the measured effect). The report names such runs
``dec_whitened`` / ``idec_whitened`` and adds the baseline ``kmeans_pretrained_whitened``.

Exact resume: P is a function of the parameters at the last target update. The loss keeps a copy of
them (model state ``dec_snapshot``, tiny for these networks) which the checkpoint holds, so a run
resumed between updates recomputes the same P, and the label-change test at an update compares the
current parameters with that copy, as an uninterrupted run does.

Data (``config.data``): ``source`` "synthetic" (the generator's `local` data, made in
<workdir>/data when absent), "dataset" (``data.path``) or "pulses" (in-memory clean up/down pulses,
for tests). Windows of ``data.window`` samples at ``data.sampling_rate`` starting ``data.pre_p``
samples before ``trace_p_arrival_sample`` (traces at other rates resampled, as in the autoencoder
task), component ``data.component``, demeaned and divided by their largest absolute value. With
``data.lowpass`` > 0 (Hz) the window is first low-passed causally (:func:`lowpass_windows`, a
Butterworth of ``data.lowpass_corners`` poles run over ``data.filter_margin`` samples of the record
before the window, where its start-up transient dies out): causal, so that nothing of the onset
moves before P; a trace whose P comes too early for that margin is an error (named) in training and
a ``problem`` in :meth:`DECTask.dataset_windows`, never a silently shifted window. Labels
(``data.label_column``, e.g. ``trace_polarity``) serve only the evaluation; so does
``data.snr_column`` (``trace_snr_db``: 20 log10 SNR), binned in log10 SNR 0-1, 1-2, 2-3, 3-4, >4, the
rows whose label is well defined (:meth:`DECTask._unambiguous`: synthetic records away from a nodal
plane, real traces whose first motion stands above the noise), scored apart as ``unambiguous``, and
``data.pair_column`` (e.g. ``trace_pair`` of scripts/make_polarity_flips.py: a real trace and its
sign-flipped copy), whose ``pair_split`` (fraction of pairs split between the clusters) is exact but
only necessary: a clustering odd under x -> -x splits every pair, whatever feature it uses.
``data.train_split`` / ``data.eval_split`` = "" use every row (clustering is transductive, as in the
paper). ``data.query`` (a ``DataFrame.query`` string, "" for all rows) selects the rows first: the
polarity experiment clusters local records only (``path_distance_class == 'local'``), as the paper
did; mixed with teleseismic records, whose P pulses are ten times longer, any clustering of the
32-sample windows splits local from teleseismic instead of up from down (k-means on the raw
windows: 0.65 on both kinds together, 0.90 on the local ones alone).

Input kind (``data.input``): "waveform" (default; the windows above, ``(B, window, 1)``) or "stft"
(the distance network's spectrograms, ``(B, F, T, 1)``, :func:`distance_spectrograms`): the
waveform is cut ``data.stft_margin`` samples wider on both sides, Hann-tapered over the margins, bandpassed
``data.bandpass`` Hz (4-pole Butterworth, zero phase, so that the filter's edge effects fall in the
margins), trimmed back to ``data.window`` samples, and turned into ``log10`` STFT magnitudes
(``data.stft_nperseg``, ``data.stft_noverlap``, nfft = ``data.stft_nfft`` or nperseg, the lowest
``data.stft_rows`` frequencies or all, edge frames padded with zeros or read from the margin,
``data.stft_edges``; window ``data.stft_window``, Hann by default; zClust's Kaiser window is
``("kaiser", beta)``) with a floor of
``data.stft_floor`` times the trace's largest magnitude, standardised per trace (mean 0, std 1). Source
"tones" (in-memory, for tests): two clearly different spectral shapes, a short 8-18 Hz burst
("local") and a long 1-3 Hz wave train ("teleseismic").

Evaluation (``python -m seisjax eval``): metrics.json holds the confusion counts as (sum, count)
pairs, the Hungarian accuracy matched over them (``accuracy``; also in the training log when
``train.eval_every_steps`` is set) and the reconstruction MSE; ``clustering.json`` beside it holds
Hungarian-matched accuracy, per-class precision/recall/F1, NMI and ARI overall and per SNR bin, for
DEC and the baselines (k-means on the raw windows, k-means on the pretrained embeddings), with
figures: confusion matrix and the 2-D embedding coloured by cluster and by truth.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seisjax.metrics import clustering as cl
from seisjax.data.dataset import trace_names
from seisjax.data.resolve import resolve_dataset
from seisjax.errors import InputError
from seisjax.train.loop import restore_trained
from seisjax.dec.model import MODELS
from seisjax.conv_ae.task import AutoencoderTask, window_and_normalise
from seisjax.train.task import Task, array_fingerprint, dataset_fingerprint, pairs

__all__ = ["DECTask", "pulse_waveforms", "tone_waveforms", "distance_spectrograms", "stft_window", "SNR_BINS",
           "SNR_BIN_NAMES", "snr_bin", "snr_bin_name", "pair_split", "lowpass_windows"]

#: log10 SNR bin edges of the polarity study (the last bin is open)
SNR_BINS = (0.0, 1.0, 2.0, 3.0, 4.0)
_SNAPSHOT = "dec_snapshot"
_CLUSTER_MAP = "cluster_map"


def snr_bin(log10_snr: np.ndarray) -> np.ndarray:
    """Bin index of each log10 SNR: 0 for [0, 1), ..., 4 for >= 4; -1 below 0 or unknown (NaN)."""
    log10_snr = np.asarray(log10_snr, np.float64)
    out = np.clip(np.floor(log10_snr), 0, len(SNR_BINS) - 1)
    return np.where(np.isfinite(log10_snr) & (log10_snr >= 0), out, -1).astype(np.int64)


def _numeric(column) -> np.ndarray:
    """A metadata column as float64, unparsable entries as NaN."""
    import pandas as pd

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
    import h5py
    import pandas as pd

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


def snr_bin_name(b: int) -> str:
    """The report's name of SNR bin ``b`` (:func:`snr_bin`): "0-1", ..., ">4"."""
    return f"{SNR_BINS[b]:g}-{SNR_BINS[b] + 1:g}" if b < len(SNR_BINS) - 1 else f">{SNR_BINS[-1]:g}"


SNR_BIN_NAMES = tuple(snr_bin_name(b) for b in range(len(SNR_BINS)))


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
    from seisjax.data.preprocess import bandpass, taper
    from seisjax.data.stft import stft

    w = x[..., 0].astype(np.float64)
    w = w - w.mean(axis=-1, keepdims=True)
    if margin > 0:
        w = taper(w, max_percentage=None, type="hann", max_length=margin / sampling_rate,
                  sampling_rate=sampling_rate)
    w = bandpass(w, band[0], band[1], sampling_rate, corners=4, zerophase=True)
    nfft = int(nfft or nperseg)
    if edges == "signal":
        import scipy.signal

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
    # standardised rather than min-max scaled: the extremes (floor, peak) of one trace are noisy,
    # and on the synthetic data k-means on the raw inputs separates local from teleseismic far
    # better after standardising (0.82 against 0.62, 300 events)
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
    from scipy.signal import butter, sosfilt

    w = x[..., 0].astype(np.float64)
    w = w - w[:, :margin].mean(axis=1, keepdims=True)
    sos = butter(corners, corner_hz, btype="lowpass", fs=sampling_rate, output="sos")
    w = sosfilt(sos, w, axis=1)[:, margin:]
    w = w - w.mean(axis=1, keepdims=True)
    scale = np.abs(w).max(axis=1, keepdims=True)
    return np.ascontiguousarray((w / np.where(scale > 0, scale, 1.0))[..., None], np.float32)


def pair_split(pairs: np.ndarray, clusters: np.ndarray) -> dict:
    """Of the rows grouped two by two by ``pairs`` (a trace and its sign-flipped copy), the fraction
    of pairs whose two rows fall in different clusters: exact whatever the label of the recorded
    trace, but satisfied by any clustering that is odd under x -> -x. Ids that do not occur
    exactly twice (NaN included) are not counted."""
    pairs, clusters = np.asarray(pairs, np.float64), np.asarray(clusters)
    ok = np.isfinite(pairs)
    _, inverse, counts = np.unique(pairs[ok], return_inverse=True, return_counts=True)
    two = counts[inverse] == 2
    rows = np.flatnonzero(ok)[two]
    order = np.argsort(pairs[rows], kind="stable")
    first, second = rows[order][0::2], rows[order][1::2]
    n = len(first)
    return {"pairs": n, "split": float(np.mean(clusters[first] != clusters[second])) if n else float("nan")}


class _TargetBatches:
    """The training iterator with each batch's rows of the current target P added when the
    consumer takes the batch (not when the prefetch thread read it), so that a batch drawn after a
    target update always carries the new target."""

    def __init__(self, inner, task):
        self._inner, self._task = inner, task

    def __iter__(self):
        return self

    def __next__(self):
        batch = dict(next(self._inner))
        index = batch.pop("index")
        if self._task.stage == "dec":
            target = self._task._target
            if target is None:  # only the engine's shape example comes before the first before_step
                k = int(self._task.config.task.n_clusters)
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


class DECTask(AutoencoderTask):
    """DEC / IDEC on single-component windows around P; see the module docstring."""

    name = "dec"
    models = MODELS

    def __init__(self, config, *, workdir=None, data_path=None):
        Task.__init__(self, config, workdir=workdir, data_path=data_path)
        task = config.task
        self.stage = str(task.stage)
        if self.stage not in ("pretrain", "dec"):
            raise InputError(f"task.stage = {self.stage!r}: expected 'pretrain' or 'dec'")
        self.variant = str(task.variant)
        if self.variant not in ("dec", "idec"):
            raise InputError(f"task.variant = {self.variant!r}: expected 'dec' or 'idec'")
        self.init = str(task.get("init", "kmeans"))
        if self.init not in ("kmeans", "gmm"):
            raise InputError(f"task.init = {self.init!r}: expected 'kmeans' or 'gmm'")
        self.cluster_space = str(task.get("cluster_space", "code"))
        if self.cluster_space not in ("code", "whitened"):
            raise InputError(f"task.cluster_space = {self.cluster_space!r}: expected 'code' or 'whitened'")
        # report name: "dec", "idec", or with "_whitened" when clustering the whitened code
        self.method_name = self.variant + ("_whitened" if self.cluster_space == "whitened" else "")
        self.update_interval = int(task.update_interval)
        if self.update_interval < 1:
            raise InputError(f"task.update_interval = {self.update_interval}: need at least 1")
        data = config.data
        self.window, self.pre_p = int(data.window), int(data.pre_p)
        self.input_kind = str(data.get("input", "waveform"))
        if self.input_kind not in ("waveform", "stft"):
            raise InputError(f"data.input = {self.input_kind!r}: expected 'waveform' or 'stft'")
        self.input_window = self.window  # samples the model's input covers
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
        self._toy, self._dataset, self._eval_split_used = None, None, None
        self._target = None
        self._last_update = None
        self.label_changes: list[tuple[int, float]] = []  # (step, fraction) of every target update
        source = data.source if data_path is None else "dataset"
        self.source = source
        if source == "pulses":
            arrays = pulse_waveforms(int(data.toy_examples), length=int(data.toy_length), seed=int(data.toy_seed),
                                     noise=float(data.toy_noise), sampling_rate=float(data.sampling_rate))
            x = window_and_normalise(arrays["waveforms"], arrays["p"], window=self.window, pre_p=self.pre_p)
            x = self._model_input(x)
            self._train = {"x": x}
            self._eval = {"x": x, "label": arrays["polarity"], "log10_snr": arrays["log10_snr"],
                          "trace_name": np.array([f"pulse{i}" for i in range(len(x))])}
        elif source == "tones":
            arrays = tone_waveforms(int(data.toy_examples), length=self.window + 64, p=self.pre_p + 32,
                                    seed=int(data.toy_seed), noise=float(data.toy_noise),
                                    sampling_rate=float(data.sampling_rate))
            x = self._model_input(window_and_normalise(arrays["waveforms"], arrays["p"], window=self.window,
                                                       pre_p=self.pre_p))
            self._train = {"x": x}
            self._eval = {"x": x, "label": arrays["label"], "log10_snr": arrays["log10_snr"],
                          "trace_name": np.array([f"tone{i}" for i in range(len(x))])}
        elif source in ("synthetic", "dataset"):
            from seisjax.data.dataset import Dataset

            self._dataset = Dataset(resolve_dataset(data, workdir=workdir, data_path=data_path))
            query = str(data.get("query", "") or "")
            if query:  # e.g. polarity on local records only (see the module docstring)
                selected = self._dataset.select(query)
                if len(selected) == 0:
                    raise InputError(f"{self._dataset.path}: data.query = {query!r} selects no rows")
                self._dataset = selected
            self._check_dataset(self._dataset)
            self._train = self._load(self._rows(data.train_split))
            self._eval = self._load(self._rows(data.eval_split), labels=True)
        else:
            raise InputError(f"data.source = {source!r}: expected 'synthetic', 'dataset', 'pulses' or 'tones'")

    # ------------------------------------------------------------------ data
    def _check_dataset(self, dataset):
        meta = dataset.metadata
        if "trace_p_arrival_sample" not in meta.columns:
            raise InputError(f"{dataset.path}: metadata has no trace_p_arrival_sample column; DEC windows "
                             "each trace around its P arrival")
        missing = meta["trace_p_arrival_sample"].isna()
        if missing.any():
            raise InputError(f"{dataset.path}: {int(missing.sum())} trace(s) have no trace_p_arrival_sample "
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
        p = _numeric(meta["trace_p_arrival_sample"]) * target / rates
        return np.isfinite(p) & (np.round(p) < self.pre_p)

    def _rows(self, split: str):
        ds = self._dataset
        if not split:
            return ds
        if "split" in ds.metadata.columns and (ds.metadata["split"] == split).any():
            return ds.split(split)
        raise InputError(f"{ds.path}: no rows with split == {split!r}")

    def _load(self, dataset, *, labels: bool = False) -> dict[str, np.ndarray]:
        """Every window of ``dataset`` on the chosen component, normalised on that component alone."""
        # the autoencoder's windowing (resampling, NaN handling) cuts all components; keep one
        c = self._dataset.component_order.index(self.config.data.component)
        x = self._windows(dataset)["x"][..., c:c + 1]
        scale = np.abs(x).max(axis=1, keepdims=True)
        x = x / np.where(scale > 0, scale, 1.0)
        out = {"x": self._model_input(np.ascontiguousarray(x, np.float32))}
        if labels:
            meta = dataset.metadata
            label_col, snr_col = self.config.data.label_column, self.config.data.snr_column
            if label_col and label_col in meta:
                out["label"] = meta[label_col].to_numpy()
            snr = _log10_snr(meta, snr_col, self.config.data.component)
            if snr is not None:
                out["log10_snr"] = snr
            out["trace_name"] = trace_names(meta)
            if "source_id" in meta:  # the event, for splits that keep an event's records together
                out["source_id"] = meta["source_id"].astype(str).to_numpy()
            pair_col = str(self.config.data.get("pair_column", "") or "")
            if pair_col and pair_col in meta:
                out["pair"] = _numeric(meta[pair_col])
            # the P radiation says whether a first-motion label is defined; other labels ignore it
            radiation = (_truth_p_radiation(self._dataset.path, out["trace_name"])
                         if label_col == "trace_polarity" else None)
            if radiation is not None:
                out["p_radiation"] = radiation
            onset_col = str(self.config.data.get("onset_snr_column", "") or "")
            if onset_col and onset_col in meta:
                out["onset_snr"] = _numeric(meta[onset_col])
        return out

    def _model_input(self, x: np.ndarray) -> np.ndarray:
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

    def windows(self, which: str = "eval") -> dict[str, np.ndarray]:
        """The windows (and labels, names) of the training or evaluation rows."""
        return self._train if which == "train" else self._eval

    def train_batches(self, *, process_index, process_count):
        from seisjax.data.batches import ArrayBatchIterator

        arrays = {"x": self._train["x"], "index": np.arange(len(self._train["x"]))}
        inner = ArrayBatchIterator(arrays, global_batch_size=int(self.config.batch_size), seed=int(self.config.seed),
                                   shuffle=True, drop_remainder=True, process_index=process_index,
                                   process_count=process_count, prefetch=int(self.config.data.prefetch))
        return _TargetBatches(inner, self)

    def _eval_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"x": self._eval["x"]}
        if "label" in self._eval:
            classes, codes = np.unique(self._eval["label"].astype(str), return_inverse=True)
            arrays["label"] = codes.astype(np.int32)
            self._classes = list(classes)
        return arrays

    def eval_batches(self, *, process_index, process_count):
        from seisjax.data.batches import ArrayBatchIterator

        return ArrayBatchIterator(self._eval_arrays(), global_batch_size=int(self.config.eval.batch_size), seed=0,
                                  shuffle=False, drop_remainder=False, num_epochs=1, process_index=process_index,
                                  process_count=process_count, prefetch=0)

    def data_info(self) -> dict:
        info = {"source": self.source, "examples": int(len(self._eval["x"])),
                "split": self.config.data.eval_split or "all"}
        if self._dataset is not None:
            info["fingerprint"] = dataset_fingerprint(self._rows(self.config.data.eval_split))
        else:
            info["fingerprint"] = array_fingerprint({"x": self._eval["x"], "label": self._eval["label"]})
        return info

    # ------------------------------------------------------------------ model
    def model_kwargs(self) -> dict:
        kwargs = Task.model_kwargs(self)
        if self.input_kind == "stft":
            kwargs.setdefault("input_shape", tuple(self._eval["x"].shape[1:3]))
        else:
            kwargs.setdefault("length", self.input_window)
        kwargs.setdefault("n_clusters", int(self.config.task.n_clusters))
        return kwargs

    def init_variables(self, rng, batch):
        variables = Task.init_variables(self, rng, batch)
        if self.stage == "dec":
            variables[_SNAPSHOT] = {"params": variables["params"], "counter": jnp.zeros((), jnp.int32)}
            if self.cluster_space == "whitened":  # set by initial_state; here only its shape
                dim = variables["params"]["centres"].shape[1]
                variables[_CLUSTER_MAP] = {"mean": jnp.zeros((dim,), jnp.float32),
                                           "matrix": jnp.eye(dim, dtype=jnp.float32)}
        return variables

    def encode(self, params, x, *, chunk: int = 65536) -> np.ndarray:
        """Embeddings of ``x`` (host arrays), a jitted call per chunk of rows."""
        fn = jax.jit(lambda p, xb: self.model.apply({"params": p}, xb, method="encode"))
        return np.concatenate([np.asarray(fn(params, x[i:i + chunk])) for i in range(0, len(x), chunk)])

    def _pretrained_params(self):

        path = str(self.config.task.pretrained or "")
        if not path:
            raise InputError("task.stage = 'dec' needs task.pretrained = the workdir of a pretraining run")
        if not (Path(path) / "checkpoints").exists():
            raise InputError(f"task.pretrained = {path}: no checkpoints/ there (train the pretrain stage first)")
        _, task, state, _ = restore_trained(type(self), path)
        task.close()
        return jax.tree_util.tree_map(np.asarray, state.params)

    def initial_centres(self, z: np.ndarray) -> np.ndarray:
        """Cluster centres for the start of DEC from embeddings ``z``: k-means (``task.init =
        "kmeans"``) or the means of a diagonal Gaussian mixture started from it (``"gmm"``)."""
        task = self.config.task
        k, n_init, seed = int(task.n_clusters), int(task.kmeans_n_init), int(self.config.seed)
        if self.init == "gmm":
            return cl.gmm(z, k, n_init=n_init, seed=seed)["means"]
        return cl.kmeans(z, k, n_init=n_init, seed=seed)[0]

    @staticmethod
    def cluster_map(model_state) -> dict | None:
        """The fixed linear map from the code to the clustering space (``task.cluster_space =
        "whitened"``), as host arrays, or None (the code itself)."""
        if not model_state or _CLUSTER_MAP not in model_state:
            return None
        return jax.tree_util.tree_map(np.asarray, jax.device_get(model_state[_CLUSTER_MAP]))

    def _host_cluster_map(self, state) -> dict | None:
        """:meth:`cluster_map` of a (possibly multi-host) train state, read at target updates only."""
        from seisjax.train.parallel import to_host

        if _CLUSTER_MAP not in state.model_state:
            return None
        return self.cluster_map(to_host({_CLUSTER_MAP: state.model_state[_CLUSTER_MAP]}))

    def initial_state(self, state):
        """Fresh DEC run: the pretrained parameters, centres from k-means on their embeddings (in the
        whitened code when ``task.cluster_space = "whitened"``, whose map is fixed here)."""
        if self.stage != "dec":
            return state
        params = self._pretrained_params()
        if jax.tree_util.tree_structure(params) != jax.tree_util.tree_structure(state.params):
            raise InputError(f"task.pretrained = {self.config.task.pretrained}: its parameters do not fit "
                             f"this model ({self.config.model.name} with {self.model_kwargs()})")
        z = self.encode(params, self._train["x"])
        model_state = dict(state.model_state)
        if self.cluster_space == "whitened":
            model_state[_CLUSTER_MAP] = cl.whitening_map(z)
            z = cl.apply_map(z, model_state[_CLUSTER_MAP])
        centres = self.initial_centres(z)
        params = dict(params)
        params["centres"] = centres.astype(params["centres"].dtype)
        model_state[_SNAPSHOT] = {"params": params, "counter": np.zeros((), np.int32)}
        return state.replace(params=params, model_state=model_state)

    # ------------------------------------------------------------------ target update (host)
    def _whole(self, params, cluster_map):
        """q, p and labels of every training window under ``params`` (one compiled call for q/p)."""
        z = cl.apply_map(self.encode(params, self._train["x"]), cluster_map)
        q, p, labels = cl.dataset_target(jnp.asarray(z), jnp.asarray(params["centres"]),
                                         alpha=float(self.config.task.alpha))
        return np.asarray(q), np.asarray(p), np.asarray(labels)

    def before_step(self, state, step):
        if self.stage != "dec":
            return None
        from seisjax.train.parallel import to_host

        if step % self.update_interval == 0:
            cluster_map = self._host_cluster_map(state)
            params = to_host(state.params)
            _, p, labels = self._whole(params, cluster_map)
            self._target = p
            if step > 0:  # the snapshot holds the parameters of the previous update
                snapshot = to_host(state.model_state[_SNAPSHOT]["params"])
                _, _, previous = self._whole(snapshot, cluster_map)
                changed = float(np.mean(labels != previous))
                self.label_changes.append((int(step), changed))
                if changed < float(self.config.task.tol):
                    return f"DEC converged: {changed:.5f} of the labels changed since step " \
                           f"{step - self.update_interval} (tol {self.config.task.tol})"
        elif self._target is None:  # resumed between updates: P from the parameters it came from
            cluster_map = self._host_cluster_map(state)
            _, self._target, _ = self._whole(to_host(state.model_state[_SNAPSHOT]["params"]), cluster_map)
        return None

    # ------------------------------------------------------------------ pure functions
    def loss(self, params, model_state, batch, rng, *, train):
        x = batch["x"]
        recon, z = self.model.apply({"params": params}, x)
        mse = jnp.mean(jnp.square(recon - x))
        if self.stage == "pretrain":
            return mse, ({"mse": mse}, model_state)
        q = cl.soft_assignment(cl.apply_map(z, model_state.get(_CLUSTER_MAP)), params["centres"],
                               float(self.config.task.alpha))
        kl = jnp.mean(cl.kl_divergence(batch["target"], q))
        loss = kl if self.variant == "dec" else mse + float(self.config.task.gamma) * kl
        snap = model_state[_SNAPSHOT]
        is_update = snap["counter"] % self.update_interval == 0  # before_step made P from these params
        kept = jax.tree_util.tree_map(lambda old, new: jnp.where(is_update, jax.lax.stop_gradient(new), old),
                                      snap["params"], params)
        new_state = {**model_state, _SNAPSHOT: {"params": kept, "counter": snap["counter"] + 1}}
        return loss, ({"kl": kl, "mse": mse}, new_state)

    def eval_metrics(self, params, model_state, batch, rng):
        x = batch["x"]
        recon, z = self.model.apply({"params": params}, x)
        per_example = {"loss": jnp.mean(jnp.square(recon - x), axis=tuple(range(1, x.ndim)))}
        if self.stage == "dec" and "label" in batch:
            q = cl.soft_assignment(cl.apply_map(z, model_state.get(_CLUSTER_MAP)), params["centres"],
                                   float(self.config.task.alpha))
            per_example["confidence"] = jnp.max(q, axis=1)
            cluster = jnp.argmax(q, axis=1)
            for c, name in enumerate(getattr(self, "_classes", [])):
                for k in range(int(self.config.task.n_clusters)):
                    per_example[f"confusion/{name}_cluster{k}"] = (batch["label"] == c) & (cluster == k)
        return pairs(per_example, batch["_valid"])

    def summarise_eval(self, means):
        """``accuracy``: the Hungarian accuracy of the clusters, from the confusion fractions (DEC
        stage with labels), so that it can be followed during training."""
        keys = [[f"confusion/{name}_cluster{k}" for k in range(int(self.config.task.n_clusters))]
                for name in getattr(self, "_classes", [])]
        if not keys or any(key not in means for row in keys for key in row):
            return {}
        return {"accuracy": cl.matched_fraction([[means[key] for key in row] for row in keys])}

    def eval_figures(self, params, model_state, batch, out_dir):
        return []

    # ------------------------------------------------------------------ clustering report
    def assign(self, params, x, model_state=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(clusters, q, z)`` of windows ``x`` under trained DEC parameters (``z`` = the code; with
        ``task.cluster_space = "whitened"`` the centres live in the whitened code, whose map is in
        ``model_state``)."""
        cluster_map = self.cluster_map(model_state)
        if self.cluster_space == "whitened" and cluster_map is None:
            raise InputError("task.cluster_space = 'whitened': assign needs the run's model state (its cluster map)")
        z = self.encode(params, x)
        q = np.asarray(cl.soft_assignment(jnp.asarray(cl.apply_map(z, cluster_map)), jnp.asarray(params["centres"]),
                                          float(self.config.task.alpha)))
        return q.argmax(1), q, z

    def dataset_windows(self, dataset, *, chunk: int = 1024) -> dict[str, np.ndarray]:
        """Every row of ``dataset`` (any Dataset, not only the run's) windowed as for evaluation.

        Returns ``{"x" (N, window, 1) (or (N, F, T, 1) with data.input = "stft"), "trace_name", "problem"}`` (+ ``"label"``, ``"log10_snr"``
        when the config's columns are present). A row that cannot be clustered is kept with a
        zero window and its reason in ``problem`` ("" for good rows): no P pick, no valid sampling
        rate, an unreadable trace, non-finite samples or a flat window. One bad trace never stops
        the job."""
        from tqdm.auto import tqdm

        component = self.config.data.component
        order = dataset.component_order or ""
        if component not in order:
            raise InputError(f"{dataset.path}: component {component!r} not in the dataset's component "
                             f"order {order!r}")
        c = order.index(component)
        meta = dataset.metadata.copy()
        n = len(meta)
        if "trace_sampling_rate_hz" not in meta:  # the transform's fallback is the run's dataset, not this one
            meta["trace_sampling_rate_hz"] = dataset.sampling_rate or float(self.config.data.sampling_rate)
        names = trace_names(meta)
        problem = np.full(n, "", dtype=object)
        if "trace_p_arrival_sample" not in meta:
            problem[:] = "no trace_p_arrival_sample column"
        else:
            problem[meta["trace_p_arrival_sample"].isna().to_numpy()] = "no trace_p_arrival_sample"
        rates = _numeric(meta["trace_sampling_rate_hz"])
        problem[(problem == "") & ~(np.isfinite(rates) & (rates > 0))] = "no valid sampling rate"
        if "trace_p_arrival_sample" in meta:
            with np.errstate(invalid="ignore", divide="ignore"):
                early = self._too_early(dataset, meta)
            problem[(problem == "") & early] = (f"P fewer than {self.pre_p} samples after the record's start "
                                                "(window + filter margin)")
        x = np.zeros((n, self.window, 1), np.float32)

        def window_rows(rows):
            raw = dataset.get_waveforms(rows)
            with warnings.catch_warnings():  # non-finite windows are reported through `problem`
                warnings.simplefilter("ignore")
                cut = self._dataset_transform(raw, meta.iloc[rows])["x"][..., c:c + 1]
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
        # normalised on the chosen component alone, as _load does for training and evaluation
        scale = np.abs(x).max(axis=1, keepdims=True)
        x = x / np.where(scale > 0, scale, 1.0)
        out = {"x": self._model_input(np.ascontiguousarray(x, np.float32)), "trace_name": names,
               "problem": problem.astype(str)}
        label_col, snr_col = self.config.data.label_column, self.config.data.snr_column
        if label_col and label_col in meta:
            out["label"] = meta[label_col].to_numpy()
        snr = _log10_snr(meta, snr_col, self.config.data.component)
        if snr is not None:
            out["log10_snr"] = snr
        return out

    def eval_report(self, params, model_state, out_dir) -> dict:
        """clustering.json + figures: DEC (stage dec), its clusters re-drawn by a full-covariance
        Gaussian mixture started from them (``<method>_gmm_full``) and the k-means baselines, overall
        and per SNR bin. Without labels, only the cluster sizes."""
        out_dir = Path(out_dir)
        data = self._eval
        k = int(self.config.task.n_clusters)
        seed, n_init = int(self.config.seed), int(self.config.task.kmeans_n_init)
        x = data["x"]
        methods = {"kmeans_raw": cl.kmeans(x.reshape(len(x), -1), k, n_init=n_init, seed=seed)[1]}
        def pretrained_baselines(z_pre):
            methods["kmeans_pretrained"] = cl.kmeans(z_pre, k, n_init=n_init, seed=seed)[1]
            methods["kmeans_pretrained_whitened"] = cl.kmeans(cl.apply_map(z_pre, cl.whitening_map(z_pre)), k,
                                                              n_init=n_init, seed=seed)[1]

        if self.stage == "dec":
            clusters, _, z = self.assign(params, x, model_state)
            z = cl.apply_map(z, self.cluster_map(model_state))  # the space the clusters live in
            if self.config.task.pretrained and (Path(self.config.task.pretrained) / "checkpoints").exists():
                pretrained_baselines(self.encode(self._pretrained_params(), x))
            methods[self.method_name] = clusters
            # the same code, clusters re-drawn by a full-covariance mixture started from DEC's: a
            # boundary that follows each cluster's own spread (no labels used)
            if np.bincount(clusters, minlength=k).min() >= 2:
                methods[f"{self.method_name}_gmm_full"] = cl.gmm_full(z, clusters)["labels"]
        else:
            z = self.encode(params, x)
            pretrained_baselines(z)
        report = {"stage": self.stage, "examples": int(len(x)), "methods": {}}
        truth = data.get("label")
        if truth is not None and self.config.data.label_column == "trace_polarity":
            truth = np.where(np.asarray(truth) > 0, "up", "down")
        bins = snr_bin(data["log10_snr"]) if "log10_snr" in data else None
        clear = self._unambiguous(data)
        if clear is not None:
            report["unambiguous"] = {"definition": clear[1], "examples": int(clear[0].sum())}
            clear = clear[0]
        for name, labels in methods.items():
            entry = {"cluster_sizes": np.bincount(labels, minlength=k).tolist()}
            if "pair" in data:
                entry["pair_split"] = pair_split(data["pair"], labels)
            if truth is not None:
                entry.update(cl.clustering_scores(truth, labels))
                if clear is not None and clear.any():
                    entry["unambiguous"] = cl.clustering_scores(truth[clear], labels[clear])
                if bins is not None:
                    entry["per_snr_bin"] = {
                        snr_bin_name(b): cl.clustering_scores(truth[bins == b], labels[bins == b])
                        for b in range(len(SNR_BINS)) if (bins == b).any()}
            report["methods"][name] = entry
        main = self.method_name if self.stage == "dec" else "kmeans_pretrained"
        if truth is not None:
            cl.plot_confusion(truth, methods[main], out_dir / "confusion.png", title=f"{main}: accuracy "
                              f"{report['methods'][main]['accuracy']:.3f} ({len(x)} traces)")
        self._plot_embedding(z, methods[main], truth, out_dir / "embedding.png", title=main)
        (out_dir / "clustering.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return report

    def _unambiguous(self, data) -> tuple[np.ndarray, str] | None:
        """Rows whose polarity label is defined well enough to score (mask, definition), or None.

        Synthetic data (truth.h5 beside it): the direct P is at least ``data.unambiguous_radiation``
        (radiation coefficient F_P) from a nodal plane; nearer, the scattering coda, whose sign is
        random, starts as large as the direct wave and the label sign(F_P) is not what the record
        shows. Real data: the estimated first motion stands at least ``data.min_onset_snr`` noise
        standard deviations above the noise (``data.onset_snr_column``)."""
        cfg = self.config.data
        if "p_radiation" in data:
            threshold = float(cfg.get("unambiguous_radiation", 0.1))
            return np.abs(data["p_radiation"]) >= threshold, f"|p_radiation| >= {threshold:g} (truth.h5)"
        if "onset_snr" in data:
            threshold = float(cfg.get("min_onset_snr", 3.0))
            return (data["onset_snr"] >= threshold,
                    f"{cfg.get('onset_snr_column', 'trace_onset_snr')} >= {threshold:g}")
        return None

    @staticmethod
    def _plot_embedding(z, clusters, truth, path, *, title: str):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D

        if z.shape[1] > 2:
            from seisjax.metrics.embedding import pca_2d

            z = pca_2d(z)
        panels = [("cluster", clusters)] + ([("truth", truth)] if truth is not None else [])
        y = z[:, 1] if z.shape[1] > 1 else np.zeros(len(z))
        # points drawn in a shuffled order, so that no group hides the one drawn before it
        order = np.random.default_rng(0).permutation(len(z))
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
        for ax, (what, labels) in zip(axes[0], panels):
            values, group = np.unique(np.asarray(labels), return_inverse=True)
            ax.scatter(z[order, 0], y[order], s=3, alpha=0.5, c=[f"C{j}" for j in group[order]])
            ax.legend(handles=[Line2D([], [], ls="", marker="o", color=f"C{j}", label=f"{what} {value}")
                               for j, value in enumerate(values)], fontsize=8)
            ax.set_title(f"{title}: embedding coloured by {what}", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
