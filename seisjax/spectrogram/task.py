"""Spectrogram AE / beta-VAE / CVAE (the Marmara study): task "spectral_vae".

``config.model.name`` picks the model: ``spectral_ae``, ``spectral_vae`` or ``spectral_cvae``
(:mod:`seisjax.spectrogram.model`). The task fills ``out_channels`` (the number of components),
``input_shape`` (VAE/CVAE) and ``n_stations`` and ``n_conditions`` (CVAE) from the data
(:class:`seisjax.spectrogram.data.SpectrogramData`, which also describes ``config.data`` and the
batches). With ``task.distance_condition`` (the default of the configs) the CVAE's conditions hold
the standardised log10 hypocentral distance from the source to the station: the station and the
source location imply it, but a small condition MLP fitted to a few dozen events learns the location
as an event identity instead of the amplitude's fall-off with distance, so it is given explicitly.

Loss (``config.task``): masked MSE over the real bins, ``+ beta * KL / n_bins`` for the VAE and CVAE
(the KL summed over latent dimensions, per valid spectrogram value: ``beta = 1`` weighs it as against
a summed squared error), ``+ scale_weight * MSE`` of the CVAE's predicted ``log_scale``. During
training the CVAE sees the unknown-station index instead of the true one with probability
``station_dropout``, so that the unknown-station embedding learns an average station.

``task.prior_weight`` (default 0) adds the GSNN term of Sohn et al. (2015): the masked MSE of
decodes of z ~ N(0, I) at the same conditions, so that the decoder also learns to draw the spectral
shape from the conditions.

``task.prior`` (CVAE): ``"standard"`` (default) is the KL against N(0, I); ``"learned"`` builds the
CVAE with its prior network (``model.learned_prior``, set from this key) and makes the KL term
KL(q(z | x, c) || p(z | c)) in closed form, weighted the same way (``beta``, per valid value), the
CVAE of Sohn, Lee & Yan (2015). The GSNN term then decodes draws from p(z | c) rather than N(0, I).

Generation (:meth:`SpectrogramTask.generate`) decodes latent codes at the conditions and renormalises
each channel to [0, 1] over the real bins (:func:`~seisjax.spectrogram.data.renormalise`), the
form of every input, before un-scaling with the predicted ``log_scale``: decodes are blurred (their
peaks near 0.5), and un-scaled as they are they would shrink the amplitudes' trend with magnitude and
distance. Two defaults keep the spectral shape's trends (what each changes: the family's page,
README.md in this folder):

- ``task.generation_prior = "neighbours"``: the codes come from the posteriors of the
  ``task.prior_neighbours`` (8) training records nearest in magnitude and log10 distance
  (:meth:`SpectrogramTask.neighbour_prior`), not from N(0, I). The decoder takes the spectral shape
  (e.g. the loss of high frequencies with distance) from z, and z drawn independently of the
  conditions gave far records the shape of an average record; ``"standard"`` restores N(0, I).
- ``task.generation_floor = "train_median"``: the ``log1p`` minimum is the training records' median
  per channel, not the head's prediction. The minimum is the emptiest bin's level (outside the
  bandpass, ~0 for every record), and the head's scatter around it lifted a floor under all bins that
  outweighed a quiet (far) record's signal and raised its centroid. ``"predicted"`` uses the head.

``task.generation_prior = "learned"`` draws z ~ p(z | c) from the learned prior (a run trained with
``task.prior = "learned"`` only; :meth:`SpectrogramTask.learned_prior_sample`).

Evaluation: metrics.json holds ``loss``, ``mse``, ``kl`` (nats per example), ``scale_mse`` (CVAE).
``eval_report`` writes ``spectral_report.json`` with log-spectral distance (dB), spectral convergence
and envelope correlation of Griffin-Lim waveforms of the reconstructions against the windowed inputs
(reconstructions un-scaled with the input's own scale), the same for Griffin-Lim of the true
magnitudes (the phase-retrieval ceiling), and for the CVAE the generation trends (peak amplitude and
spectral centroid against magnitude and distance) of records generated at each held-out record's
conditions against the held-out records, jointly on magnitude and log10 distance and, with one
intercept per event, within events (held-out events are few and their magnitude and distance nearly
collinear); figures ``spectrograms.png``, ``interpolation.png``, ``trends.png``.
:func:`seisjax.spectrogram.generation.centroid_stage_trends` follows the centroid's trends through each
step from record to generated waveform.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seisjax.data.stft import griffin_lim
from seisjax.errors import InputError
from seisjax.metrics import spectral as sm
from seisjax.spectrogram.data import SpectrogramData, event_ids, renormalise, to_magnitudes
from seisjax.spectrogram.latent import latent_path, neighbour_codes
from seisjax.spectrogram.model import MODELS, kl_divergence
from seisjax.spectrogram.plots import plot_latent_path, plot_spectrograms, record_label
from seisjax.train.task import Task, pairs

__all__ = ["GENERATION_FLOORS", "GENERATION_PRIORS", "MODEL_KINDS", "PRIORS", "SpectrogramTask", "masked_mse"]

MODEL_KINDS = {"spectral_ae": "ae", "spectral_vae": "vae", "spectral_cvae": "cvae"}
PRIORS = ("standard", "learned")                            # task.prior: what the KL is against
GENERATION_PRIORS = ("standard", "neighbours", "learned")   # task.generation_prior: where codes come from
GENERATION_FLOORS = ("predicted", "train_median")           # task.generation_floor: the log1p minimum


def masked_mse(x, recon, mask) -> jax.Array:
    """Per-example mean squared error over the bins where ``mask`` (broadcast over channels) is 1."""
    err = jnp.square(recon - x) * mask
    count = jnp.sum(jnp.broadcast_to(mask, x.shape), axis=(1, 2, 3))
    return jnp.sum(err, axis=(1, 2, 3)) / jnp.maximum(count, 1.0)


class SpectrogramTask(Task):
    """See the module docstring. ``data`` (:class:`~seisjax.spectrogram.data.SpectrogramData`) holds
    the run's records; ``kind`` is ``"ae"``, ``"vae"`` or ``"cvae"``."""

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
        # .get: runs saved before these keys existed
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
        self.set_generation_floor(str(task.get("generation_floor", "train_median")))
        self._posterior_cache = None
        if self.beta < 0 or self.scale_weight < 0 or self.prior_weight < 0 or not 0 <= self.station_dropout < 1:
            raise InputError(f"task.beta = {self.beta}, task.scale_weight = {self.scale_weight}, "
                             f"task.prior_weight = {self.prior_weight}, task.station_dropout = {self.station_dropout}: "
                             "need beta, scale_weight and prior_weight >= 0 and 0 <= station_dropout < 1")
        self.data = SpectrogramData(config.data, workdir=workdir, data_path=data_path,
                                    need_conditions=self.kind == "cvae",
                                    distance_condition=bool(task.get("distance_condition", False))
                                    and self.kind == "cvae")

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

    def set_generation_floor(self, generation_floor: str):
        """Choose where generation takes the ``log1p`` minimum (``task.generation_floor``)."""
        if generation_floor not in GENERATION_FLOORS:
            raise InputError(f"task.generation_floor = {generation_floor!r}: expected one of "
                             f"{', '.join(GENERATION_FLOORS)}")
        self.generation_floor = generation_floor

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
    def train_batches(self, *, process_index, process_count):
        return self.data.train_batches(batch_size=self.config.batch_size, seed=self.config.seed,
                                       prefetch=self.config.data.prefetch, process_index=process_index,
                                       process_count=process_count)

    def eval_batches(self, *, process_index, process_count):
        return self.data.eval_batches(batch_size=self.config.eval.batch_size, process_index=process_index,
                                      process_count=process_count)

    def data_info(self) -> dict:
        return self.data.data_info()

    def close(self):
        self.data.close()

    # ------------------------------------------------------------------ model
    def model_kwargs(self) -> dict:
        kwargs = super().model_kwargs()
        kwargs.setdefault("out_channels", len(self.data.spec.components))
        if self.kind in ("vae", "cvae"):
            kwargs.setdefault("input_shape", tuple(self.data.spec.model_shape))
        if self.kind == "cvae":
            kwargs.setdefault("n_stations", len(self.data.stations))
            kwargs.setdefault("n_conditions", len(self.data.cond_mean) + 1)
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
        mask = batch["mask"]
        terms = {"mse": masked_mse(batch["x"], out["recon"], mask)}
        loss = terms["mse"]
        if self.kind in ("vae", "cvae"):
            # against p(z | c) with the learned prior, else N(0, I)
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
        """CVAE samples at conditions ``cond`` ``(N, 4 or 5)``
        (:meth:`SpectrogramData.condition_vector`) and station
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
        x = renormalise(x, self.data.mask)  # the form of every input, so that log_scale sets the amplitudes
        log_scale = np.array(jax.jit(lambda v, c, s: model.apply(v, c, s, method="log_scale"))(variables, c, s))
        if self.generation_floor == "train_median":
            # the minimum is the emptiest bin's level (outside the bandpass), the same for every record; the
            # head's scatter around it lifts a floor under all bins that outweighs a quiet record's signal
            # and raises its centroid
            log_scale[:, 0] = np.median(self.data.train["log_scale"][:, 0], axis=0)
        log_scale[:, 1] = np.maximum(log_scale[:, 1], log_scale[:, 0])  # max below min: a flat spectrogram
        mag = to_magnitudes(x, log_scale, self.data.spec)
        waves = self.griffin_lim(mag, griffin_lim_iters, seed=seed)
        return x, mag, waves / self.data.spec.gain

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
        posterior q(z | x, c) sampled (:func:`~seisjax.spectrogram.latent.neighbour_codes`)."""
        train = self.data.train
        if self._posterior_cache is None or self._posterior_cache[0] is not params:
            fn = jax.jit(lambda p, s, x, c, st: self.model.apply({"params": p, **s}, x, c, st, method="encode"))
            parts = [fn(params, model_state, train["x"][i:i + 64], train["cond"][i:i + 64],
                        train["station_index"][i:i + 64]) for i in range(0, len(train["x"]), 64)]
            mean = np.concatenate([np.asarray(m) for m, _ in parts])
            sigma = np.exp(0.5 * np.concatenate([np.asarray(v) for _, v in parts]))
            self._posterior_cache = (params, mean, sigma)
        _, mean, sigma = self._posterior_cache
        n_geo = len(self.data.cond_mean)
        columns = [0, n_geo] if self.data.distance_condition else list(range(n_geo + 1))
        return neighbour_codes(np.asarray(cond)[:, columns], train["cond"][:, columns], mean, sigma,
                               self.prior_neighbours, seed=seed)

    def griffin_lim(self, mag, iters=None, *, seed: int = 0) -> np.ndarray:
        """Waveforms ``(N, C, n_samples)`` of magnitudes ``(N, C, F, T)`` (``task.griffin_lim_iters``)."""
        spec = self.data.spec
        iters = int(self.config.task.griffin_lim_iters if iters is None else iters)
        return griffin_lim(mag, spec.n_samples, spec.sampling_rate, n_iter=iters, seed=seed, **spec.stft_kwargs)

    # ------------------------------------------------------------------ evaluation report
    def eval_report(self, params, model_state, out_dir) -> dict:
        out_dir = Path(out_dir)
        data, spec = self.data.eval, self.data.spec
        recon = self.reconstruct(params, model_state, data)
        ref_mag = to_magnitudes(data["x"], data["log_scale"], spec)
        est_mag = to_magnitudes(recon, data["log_scale"], spec)
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
        plot_spectrograms(data["x"], recon, spec, out_dir / "spectrograms.png")
        if len(data["x"]) >= 2:
            report["interpolation"] = self._interpolation_figure(params, model_state, out_dir / "interpolation.png")
        if self.kind == "cvae":
            report["generation"] = self._generation_report(params, model_state, ref_mag, wave, out_dir)
        (out_dir / "spectral_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return report

    def _interpolation_figure(self, params, model_state, path: Path, steps: int = 6) -> dict:
        """The latent path between the held-out records of lowest and highest magnitude (the first and
        last when magnitudes are missing), drawn to ``path``."""
        data = self.data.eval
        mags = np.asarray(data["magnitude"], np.float64)
        a, b = (int(np.argmin(mags)), int(np.argmax(mags))) if np.isfinite(mags).all() and np.ptp(mags) > 0 \
            else (0, len(mags) - 1)
        pick = {key: data[key][[a, b]] for key in ("x", "cond", "station_index") if key in data}
        weights, decoded = latent_path(self.model, {"params": params, **model_state}, pick, steps)
        names = [str(data["trace_name"][i]) for i in (a, b)]
        plot_latent_path(pick["x"], decoded, weights, self.data.spec, path,
                         labels=[record_label(name, mags[i]) for name, i in zip(names, (a, b))])
        return {"figure": path.name, "record_a": names[0], "record_b": names[1], "steps": int(steps)}

    def _generation_report(self, params, model_state, ref_mag, wave, out_dir: Path) -> dict:
        """Generate one record at each held-out record's conditions; trends against the real ones."""
        data, spec = self.data.eval, self.data.spec
        ok = np.isfinite(data["distance_km"]) & (data["distance_km"] > 0)
        if ok.sum() < 4:
            return {"skipped": f"{int(ok.sum())} held-out records with a distance; the trends need 4"}
        seed = int(self.config.task.generation_seed)
        _, gen_mag, gen_wave = self.generate(params, model_state, data["cond"][ok], data["station_index"][ok],
                                             seed=seed)
        freqs = spec.axes()[0]
        real = {"peak_amplitude": np.abs(wave[ok]).max(axis=(1, 2)) / spec.gain,
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

    def eval_figures(self, params, model_state, batch, out_dir):
        return []  # eval_report draws the spectrograms of the whole evaluation set's first records

