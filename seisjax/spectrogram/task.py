"""Spectrogram AE / beta-VAE / CVAE (the Marmara study): task "spectral_vae".

``config.model.name`` picks the model: ``spectral_ae``, ``spectral_vae`` or ``spectral_cvae``
(:mod:`seisjax.spectrogram.model`). The task fills ``out_channels`` (the number of components),
``input_shape`` (VAE/CVAE) and ``n_stations`` (CVAE) from the data.

Data (``config.data``; :mod:`seisjax.spectrogram.data` does the work):

    source = "synthetic"    # the generator's `local` data, made in <workdir>/data when absent;
                            # "dataset": the dataset at data.path (a STEAD folder such as
                            #   ../shared/data/stead50 is converted once into <workdir>/data_stead);
                            # "toy": small in-memory-made records written to <workdir>/data_toy
                            #   (:func:`toy_records`; for tests and smoke runs)
    components = "ENZ"      # order of the model's channels
    sampling_rate = 100.0   # Hz, records at other rates are resampled (after the bandpass)
    before_s, after_s       # window P - 10 s .. P + 60 s
    nperseg, noverlap, nfft # STFT (256, 192, 256: 129 frequencies, a frame every 64 samples)
    snr_min = 1.5           # max SNR over the components must exceed it
    max_fill = 0.25         # at most this fraction of the window may lie outside the record
    gain = 0.0              # waveforms x gain before log1p; 0 = from the dataset's unit (1e9 for m/s)
    train_split, eval_split # "train", "dev"; without a split column every row serves both

Spectrograms are made once per run and split and cached in the workdir
(``spectral_<split>_<hash>.npz``); records left out are listed with their reason in
``spectral_rejected.csv`` and counted in ``spectral_data.json``.

Batches: ``x`` ``(B, F, T, C)`` in [0, 1], ``mask`` ``(B, F, T, 1)`` (0 on padded frames),
``log_scale`` ``(B, 2, C)`` (per-channel min and max of log1p magnitudes), ``cond`` ``(B, 4 or 5)``
(magnitude and standardised latitude, longitude, depth, and with ``task.distance_condition`` the
standardised log10 hypocentral distance; mean and spread from the training rows) and
``station`` ``(B,)`` (1..n for the training set's stations in sorted order, 0 = unknown). With
``task.distance_condition`` (the default of the configs) ``cond`` is ``(B, 5)``: the fifth column is the
standardised log10 hypocentral distance from the source to the station's coordinates (from the
training metadata; the training mean where a station has none). The station and the source location
imply it, but a small condition MLP fitted to a few dozen events learns the location as an event
identity instead of the amplitude's fall-off with distance, so it is given explicitly.

Loss (``config.task``): masked MSE over the real bins, ``+ beta * KL / n_bins`` for the VAE and CVAE
(the KL summed over latent dimensions, per valid spectrogram value: ``beta = 1`` weighs it as against
a summed squared error), ``+ scale_weight * MSE`` of the CVAE's predicted ``log_scale``. During
training the CVAE sees the unknown-station index instead of the true one with probability
``station_dropout``, so that the unknown-station embedding learns an average station.

``task.prior_weight`` (default 0) adds the GSNN term of Sohn et al. (2015): the masked MSE of
decodes of z ~ N(0, I) at the same conditions, so that the decoder also learns to draw the spectral
shape from the conditions. On the quick data 0.5 (2) turns the within-event centroid-distance slope
of standard-prior samples from +0.95 to -0.21 (-0.57) against -2.65 held-out, for a held-out MSE
0.0032 -> 0.0037 (0.0043); the neighbour prior below does better without retraining.

``task.prior`` (CVAE): ``"standard"`` (default) is the KL against N(0, I); ``"learned"`` builds the
CVAE with its prior network (``model.learned_prior``, set from this key) and makes the KL term
KL(q(z | x, c) || p(z | c)) in closed form, weighted the same way (``beta``, per valid value), the
CVAE of Sohn, Lee & Yan (2015). The GSNN term then decodes draws from p(z | c) rather than N(0, I).
On the quick data it does not give generation the spectral shape's trend with distance (numbers in
experiments/spectral_vae.py); the neighbour prior below still does best.

Generation (:meth:`SpectralVAETask.generate`) decodes latent codes at the conditions and renormalises
each channel to [0, 1] over the real bins (:func:`~seisjax.spectrogram.data.renormalise`), the
form of every input, before un-scaling with the predicted ``log_scale``: decodes are blurred (their
peaks near 0.5), and un-scaled as they are they would shrink the amplitudes' trend with magnitude and
distance. Two defaults keep the spectral shape's trends (issue 6, numbers in
experiments/spectral_vae.py):

- ``task.generation_prior = "neighbours"``: the codes come from the posteriors of the
  ``task.prior_neighbours`` (8) training records nearest in magnitude and log10 distance
  (:meth:`SpectralVAETask.neighbour_prior`), not from N(0, I). The decoder takes the spectral shape
  (e.g. the loss of high frequencies with distance) from z, and z drawn independently of the
  conditions gave far records the shape of an average record; ``"standard"`` restores N(0, I).
- ``task.generation_floor = "train_median"``: the ``log1p`` minimum is the training records' median
  per channel, not the head's prediction. The minimum is the emptiest bin's level (outside the
  bandpass, ~0 for every record), and the head's scatter around it lifted a floor under all bins that
  outweighed a quiet (far) record's signal and raised its centroid. ``"predicted"`` uses the head.

``task.generation_prior = "learned"`` draws z ~ p(z | c) from the learned prior (a run trained with
``task.prior = "learned"`` only; :meth:`SpectralVAETask.learned_prior_sample`).

Evaluation: metrics.json holds ``loss``, ``mse``, ``kl`` (nats per example), ``scale_mse`` (CVAE).
``eval_report`` writes ``spectral_report.json`` with log-spectral distance (dB), spectral convergence
and envelope correlation of Griffin-Lim waveforms of the reconstructions against the windowed inputs
(reconstructions un-scaled with the input's own scale), the same for Griffin-Lim of the true
magnitudes (the phase-retrieval ceiling), and for the CVAE the generation trends (peak amplitude and
spectral centroid against magnitude and distance) of records generated at each held-out record's
conditions against the held-out records, jointly on magnitude and log10 distance and, with one
intercept per event, within events (held-out events are few and their magnitude and distance nearly
collinear); figures ``spectrograms.png``, ``trends.png``.
:func:`seisjax.spectrogram.generation.centroid_stage_trends` follows the centroid's trends through each
step from record to generated waveform.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seisjax.data.resolve import resolve_dataset
from seisjax.spectrogram.data import (
    SpectrogramSpec,
    prepare_records,
    renormalise,
    to_magnitudes,
)
from seisjax.errors import InputError
from seisjax.spectrogram.model import MODELS
from seisjax.train.task import Task, array_fingerprint, dataset_fingerprint, pairs

__all__ = ["GENERATION_PRIORS", "MODEL_KINDS", "PRIORS", "SpectralVAETask", "event_ids", "masked_mse",
           "spec_from_config", "toy_records"]

MODEL_KINDS = {"spectral_ae": "ae", "spectral_vae": "vae", "spectral_cvae": "cvae"}
PRIORS = ("standard", "learned")                            # task.prior: what the KL is against
GENERATION_PRIORS = ("standard", "neighbours", "learned")   # task.generation_prior: where codes come from
_PHYSICAL_UNITS = ("m", "m/s", "m/s**2", "m/s^2", "m/s/s")


def masked_mse(x, recon, mask) -> jax.Array:
    """Per-example mean squared error over the bins where ``mask`` (broadcast over channels) is 1."""
    err = jnp.square(recon - x) * mask
    count = jnp.sum(jnp.broadcast_to(mask, x.shape), axis=(1, 2, 3))
    return jnp.sum(err, axis=(1, 2, 3)) / jnp.maximum(count, 1.0)


def spec_from_config(data, gain: float) -> SpectrogramSpec:
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
    import h5py

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


class SpectralVAETask(Task):
    """See the module docstring."""

    name = "spectral_vae"
    models = MODELS

    rng_streams = ("sample", "station")

    def __init__(self, config, *, workdir=None, data_path=None):
        super().__init__(config, workdir=workdir, data_path=data_path)
        name = str(config.model.name)
        if name not in MODEL_KINDS:
            raise InputError(f"model.name = {name!r}: the spectral_vae task takes one of "
                             f"{', '.join(MODEL_KINDS)}")
        self.kind = MODEL_KINDS[name]
        self._check_model_keys()
        task = config.task
        self.beta = float(task.beta)
        self.scale_weight = float(task.scale_weight)
        self.station_dropout = float(task.station_dropout)
        self.prior_weight = float(task.get("prior_weight", 0.0)) if self.kind == "cvae" else 0.0
        self.prior = str(task.get("prior", "standard"))
        if self.prior not in PRIORS:
            raise InputError(f"task.prior = {self.prior!r}: expected one of {', '.join(PRIORS)}")
        if self.prior == "learned" and self.kind != "cvae":
            raise InputError(f"task.prior = 'learned' with model.name = {name!r}: a learned conditional prior "
                             "needs the CVAE (spectral_cvae)")
        model_flag = config.model.get("learned_prior", None)
        if model_flag is not None and bool(model_flag) != (self.prior == "learned"):
            raise InputError(f"model.learned_prior = {model_flag} but task.prior = {self.prior!r}: set task.prior "
                             "only (it sets model.learned_prior)")
        self.prior_neighbours = int(task.get("prior_neighbours", 8))
        if self.prior_neighbours < 1:
            raise InputError(f"task.prior_neighbours = {self.prior_neighbours}: need at least 1 neighbour")
        self.set_generation_prior(str(task.get("generation_prior", "neighbours")))
        self.generation_floor = str(task.get("generation_floor", "train_median"))
        if self.generation_floor not in ("predicted", "train_median"):
            raise InputError(f"task.generation_floor = {self.generation_floor!r}: expected 'predicted' or 'train_median'")
        self._posterior_cache = None
        self.distance_condition = bool(task.get("distance_condition", False)) and self.kind == "cvae"
        if self.beta < 0 or self.scale_weight < 0 or self.prior_weight < 0 or not 0 <= self.station_dropout < 1:
            raise InputError(f"task.beta = {self.beta}, task.scale_weight = {self.scale_weight}, "
                             f"task.prior_weight = {self.prior_weight}, task.station_dropout = {self.station_dropout}: "
                             "need beta, scale_weight and prior_weight >= 0 and 0 <= station_dropout < 1")
        from seisjax.data.dataset import Dataset

        source = str(config.data.source) if data_path is None else "dataset"
        if source not in ("synthetic", "dataset", "toy"):
            raise InputError(f"data.source = {source!r}: expected 'synthetic', 'dataset' or 'toy'")
        self.source = source
        path = self._dataset_path(source)
        gain = float(config.data.gain) or _unit_gain(path)
        self.spec = spec_from_config(config.data, gain)
        self._dataset = Dataset(path)
        self.mask = self.spec.mask()
        need = self.kind == "cvae"
        self._train, train_rejected, self.train_split = self._load(str(config.data.train_split), False, need)
        self._eval, eval_rejected, self.eval_split = self._load(str(config.data.eval_split), True, need)
        if not len(self._train["x"]):
            raise InputError(f"{path}: no training record passed the quality checks "
                             f"(see {self._report_path('spectral_rejected.csv')})")
        if not len(self._eval["x"]):
            raise InputError(f"{path}: no evaluation record passed the quality checks")
        self.stations = sorted(set(self._train["station"].tolist()))
        self.station_coords = self._station_coordinates() if self.distance_condition else {}
        geo = [self._train[k] for k in ("lat", "lon", "depth")]
        if self.distance_condition:
            geo.append(self.log10_distance(self._train["lat"], self._train["lon"], self._train["depth"],
                                           self._train["station"]))
        train_geo = np.stack(geo, axis=1)
        with warnings.catch_warnings():  # a column without any value (no station coordinates) is caught below
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, spread = np.nanmean(train_geo, axis=0), np.nanstd(train_geo, axis=0)
        self.cond_mean = np.where(np.isfinite(mean), mean, 0.0) if need else np.zeros(len(geo))
        self.cond_std = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0) if need else np.ones(len(geo))
        for arrays in (self._train, self._eval):
            arrays["cond"] = self.condition_vector(arrays["magnitude"], arrays["lat"], arrays["lon"], arrays["depth"],
                                                   arrays["station"])
            arrays["station_index"] = self.station_indices(arrays["station"])
        self._write_summary(train_rejected, eval_rejected)

    # ------------------------------------------------------------------ config checks
    def set_generation_prior(self, generation_prior: str):
        """Choose where generation draws latent codes (``task.generation_prior``), checked against
        what the run can do (``"learned"`` needs ``task.prior = "learned"``)."""
        if generation_prior not in GENERATION_PRIORS:
            raise InputError(f"task.generation_prior = {generation_prior!r}: expected one of "
                             f"{', '.join(GENERATION_PRIORS)}")
        if generation_prior == "learned" and self.prior != "learned":
            raise InputError(f"task.generation_prior = 'learned' but task.prior = {self.prior!r}: this run has no "
                             "learned prior p(z | c) (train with task.prior = 'learned', or generate with "
                             "'neighbours' or 'standard')")
        self.generation_prior = generation_prior

    def _check_model_keys(self):
        cls = self.model_class()
        allowed = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
        filled = {"out_channels", "input_shape", "n_stations", "n_conditions"}
        unknown = sorted(set(self.config.model.keys()) - allowed - {"name"})
        if unknown:
            raise InputError(f"model.{unknown[0]}: not a parameter of {self.config.model.name} "
                             f"(it takes {', '.join(sorted(allowed - filled))}; "
                             f"{', '.join(sorted(filled & allowed))} come from the data)")

    # ------------------------------------------------------------------ data
    def _dataset_path(self, source: str) -> Path:
        if source == "toy" and self.data_path is None:
            path = self._require_workdir("data.source = 'toy'") / "data_toy"
            if not (path / "metadata.csv").exists() and jax.process_index() == 0:
                self._write_toy(path)
            return path
        return resolve_dataset(self.config.data, workdir=self.workdir, data_path=self.data_path)

    def _require_workdir(self, what: str) -> Path:
        if self.workdir is None:
            raise InputError(f"{what} writes its data in the workdir; give one")
        return self.workdir

    def _write_toy(self, path: Path):
        from seisjax.data.dataset import DatasetWriter

        waveforms, metadata = toy_records(int(self.config.data.toy_records), seed=int(self.config.data.toy_seed),
                                          sampling_rate=float(self.config.data.sampling_rate))
        with DatasetWriter(path, component_order="ZNE", sampling_rate=float(self.config.data.sampling_rate),
                           data_format_attrs={"unit": "counts"}, overwrite=True) as writer:
            for waveform, meta in zip(waveforms, metadata):
                writer.add(waveform, meta)

    def _rows(self, split: str):
        ds = self._dataset
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
        unseen = sorted(set(self._eval["station"].tolist()) - set(self.stations))
        summary = {"dataset": str(self._dataset.path), "spec": dataclasses.asdict(self.spec),
                   "model_shape": list(self.spec.model_shape), "stft_shape": list(self.spec.stft_shape),
                   "train": {"split": self.train_split, "records": len(self._train["x"]),
                             "rejected": len(train_rejected)},
                   "eval": {"split": self.eval_split, "records": len(self._eval["x"]),
                            "rejected": len(eval_rejected)},
                   "rejected_by_reason": reasons, "stations": self.stations,
                   "eval_stations_unseen_in_training": unseen,
                   "condition_mean": self.cond_mean.tolist(), "condition_std": self.cond_std.tolist(),
                   "distance_condition": self.distance_condition,
                   "stations_with_coordinates": len(self.station_coords)}
        self.summary = summary
        if rows:
            shown = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
            warnings.warn(f"spectral_vae: {len(rows)} record(s) left out ({shown}); see spectral_rejected.csv "
                          "in the workdir", stacklevel=3)
        if self.workdir is None or jax.process_index() != 0:
            return
        import pandas as pd

        self.workdir.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=["split", "trace_name", "row", "reason", "detail"]).to_csv(
            self.workdir / "spectral_rejected.csv", index=False)
        (self.workdir / "spectral_data.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")

    # ------------------------------------------------------------------ conditions
    def condition_vector(self, magnitude, lat, lon, depth, station=None) -> np.ndarray:
        """``(N, 4)`` float32: magnitude and latitude, longitude, depth standardised with the
        training rows' mean and spread; with ``task.distance_condition`` ``(N, 5)``, the fifth the
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
        meta = self._dataset.metadata
        cols = ["station_code", "station_latitude_deg", "station_longitude_deg"]
        if not set(cols) <= set(meta.columns):
            warnings.warn(f"{self._dataset.path}: no station_latitude_deg / station_longitude_deg columns; the "
                          "distance condition falls back to the training mean for every record", stacklevel=3)
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
    def _batch_arrays(self, arrays) -> dict[str, np.ndarray]:
        return {"x": arrays["x"], "log_scale": arrays["log_scale"], "cond": arrays["cond"],
                "station": arrays["station_index"]}

    def _add_mask(self, batch):
        batch = dict(batch)
        batch["mask"] = np.broadcast_to(self.mask, (len(batch["x"]),) + self.mask.shape).copy()
        return batch

    def train_batches(self, *, process_index, process_count):
        from seisjax.data.batches import ArrayBatchIterator

        return ArrayBatchIterator(self._batch_arrays(self._train), transform=self._add_mask,
                                  global_batch_size=int(self.config.batch_size), seed=int(self.config.seed),
                                  shuffle=True, drop_remainder=True, process_index=process_index,
                                  process_count=process_count, prefetch=int(self.config.data.prefetch))

    def eval_batches(self, *, process_index, process_count):
        from seisjax.data.batches import ArrayBatchIterator

        return ArrayBatchIterator(self._batch_arrays(self._eval), transform=self._add_mask,
                                  global_batch_size=int(self.config.eval.batch_size), seed=0, shuffle=False,
                                  drop_remainder=False, num_epochs=1, process_index=process_index,
                                  process_count=process_count, prefetch=0)

    def data_info(self) -> dict:
        view, used = self._rows(str(self.config.data.eval_split))
        return {"source": self.source, "split": used, "examples": len(self._eval["x"]),
                "rejected": self.summary["eval"]["rejected"], "fingerprint": dataset_fingerprint(view),
                "spectrograms": array_fingerprint({"x": self._eval["x"]})}

    def close(self):
        self._dataset.close()

    # ------------------------------------------------------------------ model
    def model_kwargs(self) -> dict:
        kwargs = super().model_kwargs()
        kwargs.setdefault("out_channels", len(self.spec.components))
        if self.kind in ("vae", "cvae"):
            kwargs.setdefault("input_shape", tuple(self.spec.model_shape))
        if self.kind == "cvae":
            kwargs.setdefault("n_stations", len(self.stations))
            kwargs.setdefault("n_conditions", len(self.cond_mean) + 1)
            kwargs["learned_prior"] = self.prior == "learned"  # from task.prior (checked against model.*)
        return kwargs

    def _inputs(self, batch, station=None):
        if self.kind != "cvae":
            return (batch["x"],)
        return batch["x"], batch["cond"], batch["station"] if station is None else station

    def init_variables(self, rng, batch):
        params_rng, other = jax.random.split(rng)
        return dict(self.model.init({"params": params_rng, **self.rngs(other)}, *self._inputs(batch), train=False))

    def apply(self, params, model_state, batch, rng=None, *, train: bool):
        """Model outputs (and the new model state) for a batch; with ``train`` batch statistics
        update and, for the CVAE, station indices are dropped to 0 with ``station_dropout``."""
        variables = {"params": params, **model_state}
        if not train:
            return self.model.apply(variables, *self._inputs(batch), train=False), model_state
        rngs = self.rngs(rng)
        station = None
        if self.kind == "cvae" and self.station_dropout > 0:
            drop = jax.random.bernoulli(rngs["station"], self.station_dropout, batch["station"].shape)
            station = jnp.where(drop, 0, batch["station"])
        inputs = self._inputs(batch, station)
        out, updates = self.model.apply(variables, *inputs, train=True, rngs={"sample": rngs["sample"]},
                                        mutable=["batch_stats"])
        if self.prior_weight > 0:
            # decode prior draws at the same conditions (the GSNN term of Sohn et al. 2015): generation
            # decodes z ~ N(0, I), which the posterior path never shows the decoder; a key derived from
            # "sample" keeps the other streams as they were. Running statistics come from the posterior pass.
            z = jax.random.normal(jax.random.fold_in(rngs["sample"], 1), out["mean"].shape, out["mean"].dtype)
            if "prior_mean" in out:  # the learned prior: draws from p(z | c), what generation then decodes
                z = out["prior_mean"] + jnp.exp(0.5 * out["prior_logvar"]) * z
            prior_recon, _ = self.model.apply(variables, z, *inputs[1:], train=True, method="decode",
                                              mutable=["batch_stats"])
            out = {**out, "prior_recon": prior_recon}
        return out, {**model_state, **updates}

    def _terms(self, out, batch) -> dict[str, jax.Array]:
        """Per-example loss terms."""
        from seisjax.spectrogram.model import kl_divergence

        mask = batch["mask"]
        terms = {"mse": masked_mse(batch["x"], out["recon"], mask)}
        loss = terms["mse"]
        if self.kind in ("vae", "cvae"):
            # against p(z | c) with the learned prior, else N(0, I) (the same expression as before it existed)
            prior = (out["prior_mean"], out["prior_logvar"]) if "prior_mean" in out else ()
            terms["kl"] = kl_divergence(out["mean"], out["logvar"], *prior)
            n_bins = jnp.sum(jnp.broadcast_to(mask, batch["x"].shape), axis=(1, 2, 3))
            loss = loss + self.beta * terms["kl"] / jnp.maximum(n_bins, 1.0)
        if self.kind == "cvae":
            terms["scale_mse"] = jnp.mean(jnp.square(out["log_scale"] - batch["log_scale"]), axis=(1, 2))
            loss = loss + self.scale_weight * terms["scale_mse"]
        if "prior_recon" in out:
            terms["prior_mse"] = masked_mse(batch["x"], out["prior_recon"], mask)
            loss = loss + self.prior_weight * terms["prior_mse"]
        terms["loss"] = loss
        return terms

    def loss(self, params, model_state, batch, rng, *, train):
        out, new_state = self.apply(params, model_state, batch, rng, train=train)
        terms = {k: jnp.mean(v) for k, v in self._terms(out, batch).items()}
        return terms.pop("loss"), (terms, new_state)

    def eval_metrics(self, params, model_state, batch, rng):
        out, _ = self.apply(params, model_state, batch, train=False)
        return pairs(self._terms(out, batch), batch["_valid"])

    # ------------------------------------------------------------------ host-side helpers
    def reconstruct(self, params, model_state, arrays, *, chunk: int = 64) -> np.ndarray:
        """Reconstructions ``(N, F, T, C)`` of host arrays (``x``, ``cond``, ``station_index``)."""
        fn = jax.jit(lambda p, s, b: self.apply(p, s, b, train=False)[0]["recon"])
        parts = []
        for i in range(0, len(arrays["x"]), chunk):
            batch = {"x": jnp.asarray(arrays["x"][i:i + chunk]), "cond": jnp.asarray(arrays["cond"][i:i + chunk]),
                     "station": jnp.asarray(arrays["station_index"][i:i + chunk])}
            parts.append(np.asarray(fn(params, model_state, batch)))
        return np.concatenate(parts)

    def generate(self, params, model_state, cond: np.ndarray, station: np.ndarray, *, seed: int = 0,
                 griffin_lim_iters: int | None = None):
        """CVAE samples at conditions ``cond`` ``(N, 4 or 5)`` (:meth:`condition_vector`) and station
        indices ``(N,)``, codes and the ``log1p`` floor as ``task.generation_prior`` and
        ``task.generation_floor`` say (module docstring): ``(scaled spectrograms (N, F, T, C),
        magnitudes (N, C, F_stft, T_stft), waveforms (N, C, n_samples) in the dataset's unit)``."""
        if self.kind != "cvae":
            raise InputError(f"generation needs a CVAE run (model spectral_cvae), not {self.config.model.name}")
        model = self.model
        if self.generation_prior == "neighbours":
            z = self.neighbour_prior(params, model_state, cond, seed=seed)
        elif self.generation_prior == "learned":
            z = self.learned_prior_sample(params, model_state, cond, station, seed=seed)
        else:
            z = jax.random.normal(jax.random.PRNGKey(int(seed)), (len(cond), int(model.latent)), jnp.float32)
        variables = {"params": params, **model_state}
        c, s = jnp.asarray(cond, jnp.float32), jnp.asarray(station, jnp.int32)
        x = np.array(jax.jit(lambda v, z, c, s: model.apply(v, z, c, s, train=False, method="decode"))(
            variables, jnp.asarray(z, jnp.float32), c, s))
        x = renormalise(x, self.mask)  # the form of every input, so that log_scale sets the amplitudes
        log_scale = np.array(jax.jit(lambda v, c, s: model.apply(v, c, s, method="log_scale"))(variables, c, s))
        if self.generation_floor == "train_median":
            # the minimum is the emptiest bin's level (outside the bandpass), the same for every record; the
            # head's scatter around it (std 0.06 on the quick data) lifts a floor under all bins that outweighs
            # a quiet record's signal and raises its centroid
            log_scale[:, 0] = np.median(self._train["log_scale"][:, 0], axis=0)
        log_scale[:, 1] = np.maximum(log_scale[:, 1], log_scale[:, 0])  # max below min: a flat spectrogram
        mag = to_magnitudes(x, log_scale, self.spec)
        waves = self.griffin_lim(mag, griffin_lim_iters, seed=seed)
        return x, mag, waves / self.spec.gain

    def learned_prior(self, params, model_state, cond: np.ndarray, station: np.ndarray):
        """``(mean, logvar)`` ``(N, latent)`` numpy arrays of the learned prior p(z | c) at conditions
        ``cond`` and station indices ``station``."""
        if self.prior != "learned":
            raise InputError(f"task.prior = {self.prior!r}: this run has no learned prior p(z | c)")
        mean, logvar = jax.jit(lambda v, c, s: self.model.apply(v, c, s, method="prior"))(
            {"params": params, **model_state}, jnp.asarray(cond, jnp.float32), jnp.asarray(station, jnp.int32))
        return np.asarray(mean), np.asarray(logvar)

    def learned_prior_sample(self, params, model_state, cond: np.ndarray, station: np.ndarray, *,
                             seed: int = 0) -> np.ndarray:
        """Latent codes ``(N, latent)`` drawn from the learned prior p(z | c) (``task.generation_prior =
        "learned"``), seeded like the standard prior's draws."""
        mean, logvar = self.learned_prior(params, model_state, cond, station)
        eps = np.asarray(jax.random.normal(jax.random.PRNGKey(int(seed)), mean.shape, jnp.float32))
        return mean + np.exp(0.5 * logvar) * eps

    def neighbour_prior(self, params, model_state, cond: np.ndarray, *, seed: int = 0) -> np.ndarray:
        """Latent codes ``(N, latent)`` drawn from the posteriors of training records with similar
        conditions (``task.generation_prior = "neighbours"``): for each row of ``cond`` one of the
        ``task.prior_neighbours`` training records nearest in standardised magnitude and log10
        distance (all conditions without the distance condition) is picked at random and its
        posterior q(z | x, c) sampled. An empirical conditional prior: the decoder takes the spectral
        shape from z, and z from N(0, I) is independent of the conditions, while the training codes
        are not."""
        if self._posterior_cache is None or self._posterior_cache[0] is not params:
            fn = jax.jit(lambda p, s, x, c, st: self.model.apply({"params": p, **s}, x, c, st, method="encode"))
            parts = [fn(params, model_state, self._train["x"][i:i + 64], self._train["cond"][i:i + 64],
                        self._train["station_index"][i:i + 64]) for i in range(0, len(self._train["x"]), 64)]
            mean = np.concatenate([np.asarray(m) for m, _ in parts])
            sigma = np.exp(0.5 * np.concatenate([np.asarray(v) for _, v in parts]))
            self._posterior_cache = (params, mean, sigma)
        _, mean, sigma = self._posterior_cache
        columns = [0, len(self.cond_mean)] if self.distance_condition else list(range(len(self.cond_mean) + 1))
        train_keys = self._train["cond"][:, columns].astype(np.float64)
        centre, spread = train_keys.mean(axis=0), train_keys.std(axis=0)
        spread = np.where(spread > 0, spread, 1.0)
        keys = (np.asarray(cond, np.float64)[:, columns] - centre) / spread
        train_keys = (train_keys - centre) / spread
        k = min(self.prior_neighbours, len(train_keys))
        nearest = np.concatenate([  # in blocks: memory of one block of rows against the training set
            np.argpartition(((block[:, None, :] - train_keys[None]) ** 2).sum(axis=-1), k - 1, axis=1)[:, :k]
            for block in np.array_split(keys, max(1, -(-len(keys) // 256)))])
        rng = np.random.default_rng(int(seed))
        pick = nearest[np.arange(len(keys)), rng.integers(0, k, len(keys))]
        return mean[pick] + sigma[pick] * rng.standard_normal(mean[pick].shape)

    def griffin_lim(self, mag, iters=None, *, seed: int = 0) -> np.ndarray:
        from seisjax.data.stft import griffin_lim

        iters = int(self.config.task.griffin_lim_iters if iters is None else iters)
        return griffin_lim(mag, self.spec.n_samples, self.spec.sampling_rate, n_iter=iters, seed=seed,
                           **self.spec.stft_kwargs)

    # ------------------------------------------------------------------ evaluation report
    def eval_report(self, params, model_state, out_dir) -> dict:
        from seisjax.metrics import spectral as sm

        out_dir = Path(out_dir)
        data = self._eval
        recon = self.reconstruct(params, model_state, data)
        ref_mag = to_magnitudes(data["x"], data["log_scale"], self.spec)
        est_mag = to_magnitudes(recon, data["log_scale"], self.spec)
        gl_recon = self.griffin_lim(est_mag)
        gl_input = self.griffin_lim(ref_mag)
        wave = data["waveform"].astype(np.float64)
        # a channel without signal (e.g. a dead component) has no envelope to compare
        live = np.all(np.ptp(wave, axis=-1) > 0, axis=1)
        report = {"model": str(self.config.model.name), "examples": len(recon),
                  "checkpoint_metrics_note": "reconstructions use each input's own log_scale",
                  "lsd_db": float(np.mean(sm.log_spectral_distance(ref_mag, est_mag))),
                  "spectral_convergence": float(np.mean(sm.spectral_convergence(ref_mag, est_mag))),
                  "envelope_correlation": float(np.mean(sm.envelope_correlation(wave[live], gl_recon[live]))),
                  "envelope_correlation_input_griffin_lim": float(
                      np.mean(sm.envelope_correlation(wave[live], gl_input[live]))),
                  "envelope_examples": int(live.sum()),
                  "griffin_lim_iters": int(self.config.task.griffin_lim_iters)}
        self._plot_spectrograms(data["x"], recon, out_dir / "spectrograms.png")
        if len(data["x"]) >= 2:
            report["interpolation"] = self._interpolation_figure(params, model_state, out_dir / "interpolation.png")
        if self.kind == "cvae":
            report["generation"] = self._generation_report(params, model_state, ref_mag, wave, out_dir)
        (out_dir / "spectral_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return report

    def _interpolation_figure(self, params, model_state, path: Path, steps: int = 6) -> dict:
        """The latent path between the held-out records of lowest and highest magnitude (the first and
        last when magnitudes are missing), drawn to ``path``."""
        from seisjax.spectrogram.generation import latent_path, plot_latent_path, record_label

        data = self._eval
        mags = np.asarray(data["magnitude"], np.float64)
        a, b = (int(np.argmin(mags)), int(np.argmax(mags))) if np.isfinite(mags).all() and np.ptp(mags) > 0 \
            else (0, len(mags) - 1)
        pick = {key: data[key][[a, b]] for key in ("x", "cond", "station_index") if key in data}
        weights, decoded = latent_path(self, params, model_state, pick, steps)
        names = [str(data["trace_name"][i]) for i in (a, b)]
        plot_latent_path(pick["x"], decoded, weights, self.spec, path,
                         labels=[record_label(name, mags[i]) for name, i in zip(names, (a, b))])
        return {"figure": path.name, "record_a": names[0], "record_b": names[1], "steps": int(steps)}

    def _generation_report(self, params, model_state, ref_mag, wave, out_dir: Path) -> dict:
        """Generate one record at each held-out record's conditions; trends against the real ones."""
        from seisjax.metrics import spectral as sm

        data = self._eval
        ok = np.isfinite(data["distance_km"]) & (data["distance_km"] > 0)
        if ok.sum() < 4:
            return {"skipped": f"{int(ok.sum())} held-out records with a distance; the trends need 4"}
        seed = int(self.config.task.generation_seed)
        _, gen_mag, gen_wave = self.generate(params, model_state, data["cond"][ok], data["station_index"][ok],
                                             seed=seed)
        freqs = self.spec.axes()[0]
        real = {"peak_amplitude": np.abs(wave[ok]).max(axis=(1, 2)) / self.spec.gain,
                "centroid_hz": sm.spectral_centroid(ref_mag[ok], freqs), "magnitude": data["magnitude"][ok],
                "distance_km": data["distance_km"][ok], "event": event_ids(data)[ok]}
        gen_peak = np.abs(gen_wave).max(axis=(1, 2))
        usable = (gen_peak > 0) & (gen_mag.reshape(len(gen_mag), -1).sum(axis=1) > 0)
        generated = {"peak_amplitude": gen_peak[usable],
                     "centroid_hz": sm.spectral_centroid(gen_mag[usable], freqs),
                     "magnitude": real["magnitude"][usable], "distance_km": real["distance_km"][usable],
                     "event": real["event"][usable]}
        result = {"records": int(ok.sum()), "silent_generated": int((~usable).sum()), "seed": seed}
        try:
            result["trends"] = sm.generation_trends(real, generated)
            sm.trend_figure(real, generated, out_dir / "trends.png")
        except InputError as err:  # e.g. too few records or constant magnitudes: say why, keep the rest
            result["trends_error"] = str(err)
        return result

    def _plot_spectrograms(self, x, recon, path: Path, n: int = 3):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = min(n, len(x))
        frames = self.spec.stft_shape[1]
        comps = self.spec.components
        freqs, times = self.spec.axes()
        fmax = freqs[self.spec.model_shape[0] - 1]
        fig, axes = plt.subplots(2 * n, len(comps), figsize=(3.2 * len(comps), 2.0 * 2 * n), squeeze=False)
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
        plt.close(fig)
        return path

    def eval_figures(self, params, model_state, batch, out_dir):
        return []  # eval_report draws the spectrograms of the whole evaluation set's first records
