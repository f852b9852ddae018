"""Seismograms from a trained spectrogram CVAE (the ``generate`` command) and latent interpolation.

:func:`generate_from_checkpoint` restores a ``spectral_vae`` run with model ``spectral_cvae``, draws
``n`` latent codes (seeded; by default from the posteriors of the training records nearest in
magnitude and distance, ``task.generation_prior``, so the run's training data must be readable;
``"learned"`` draws them from the learned prior p(z | c) of a run trained with ``task.prior = "learned"``),
decodes them at the given conditions (magnitude, source latitude, longitude, depth, station),
un-scales them with the CVAE's predicted ``log1p`` maximum (and the training median minimum,
``task.generation_floor``), turns them into three-component waveforms with Griffin-Lim and writes them as a dataset
(SeisBench layout, components in the run's order, the unit of the training data) with a figure
``generated.png`` of the waveforms and spectrograms.

Unknown stations: a station code that the run did not train on is generated with the
"unknown station" embedding (row 0, which training fed with ``task.station_dropout`` of the
records, so it stands for an average station) and a printed warning naming the known stations; the
output marks such traces with ``generation_station_known = False``.

:func:`interpolate_latent` encodes two records, walks the straight line between their codes
(spatial maps for the AE, means for the VAE/CVAE, with the CVAE's conditions interpolated too and
the station switching at the midpoint) and draws the decoded spectrograms along the path.

:func:`centroid_stage_trends` measures the spectral centroid's trends with magnitude and distance at
each step from a held-out record to a generated waveform, to find where a generated trend departs.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from seisjax.errors import InputError

__all__ = ["CENTROID_STAGES", "DEPTH_LIMITS_KM", "MAGNITUDE_LIMITS", "centroid_stage_trends", "generate_from_checkpoint",
           "interpolate_latent", "latent_path", "outside_training_range", "plot_latent_path", "record_index",
           "record_label"]

#: The steps from a held-out record to a generated seismogram at which :func:`centroid_stage_trends`
#: measures the spectral centroid's trends.
CENTROID_STAGES = {
    "held_out": "the held-out records' magnitudes (un-scaled with their own log_scale)",
    "reconstruction": "encoder mean -> decoder, renormalised, un-scaled with the record's own log_scale",
    "prior_true_scale": "prior sample at the record's conditions, renormalised, un-scaled with its own log_scale",
    "prior_predicted_scale": "the same sample un-scaled with the CVAE's predicted log_scale (what generate returns)",
    "griffin_lim": "STFT magnitudes of the Griffin-Lim waveform of that sample",
}


def _check_run(workdir: Path, *, need_cvae: bool):
    from seisjax import config as config_lib

    if not (workdir / "config.json").exists():
        raise InputError(f"--workdir {workdir}: no config.json there (not a training run)")
    config = config_lib.load_saved_config(workdir)
    task, model = config.task.get("name"), config.model.get("name")
    if task != "spectral_vae":
        raise InputError(f"{workdir}: a {task!r} run; this needs a spectral_vae run")
    if need_cvae and model != "spectral_cvae":
        raise InputError(f"{workdir}: model {model!r}; generation from conditions needs a spectral_cvae run")
    return config


def _restore(workdir: Path, step):
    from seisjax.spectrogram.task import SpectralVAETask  # TODO(layout)
    from seisjax.train.loop import restore_trained

    _, task, state, ckpt_step = restore_trained(SpectralVAETask, workdir, step=step)
    params = jax.device_get(state.params)
    model_state = jax.device_get(state.model_state)
    return task, params, model_state, int(ckpt_step)


# physical bounds of a request: magnitudes of any recorded earthquake, depths from the highest summits
# (negative: above sea level) to the deepest earthquakes
MAGNITUDE_LIMITS = (-3.0, 10.0)
DEPTH_LIMITS_KM = (-9.0, 800.0)


def outside_training_range(task, *, magnitude, lat, lon, depth, station) -> list[str]:
    """One line per condition outside the range of the run's training records (magnitude, latitude,
    longitude, depth and, for a run conditioned on it, the hypocentral distance to a station with
    coordinates): the model is then asked to extrapolate."""
    train = task._train
    asked = {"magnitude": float(magnitude), "lat": float(lat), "lon": float(lon), "depth": float(depth)}
    units = {"magnitude": "", "lat": " deg", "lon": " deg", "depth": " km", "distance": " km"}
    ranges = {key: train[key] for key in asked}
    if task.distance_condition and str(station) in task.station_coords:   # hypocentral, as conditioned on
        ranges["distance"] = 10 ** task.log10_distance(train["lat"], train["lon"], train["depth"], train["station"])
        asked["distance"] = float(10 ** task.log10_distance([lat], [lon], [depth], [str(station)])[0])
    lines = []
    for key, values in ranges.items():
        values = np.asarray(values, np.float64)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        low, high = float(values.min()), float(values.max())
        if not low <= asked[key] <= high:
            lines.append(f"{key} {asked[key]:g}{units[key]} lies outside the training records' range "
                         f"{low:g}-{high:g}{units[key]}: the model extrapolates")
    return lines


def generate_from_checkpoint(workdir, *, out, magnitude: float, lat: float, lon: float, depth: float,
                             station: str, n: int = 8, seed: int = 0, step: int | None = None,
                             chunk: int = 16, generation_prior: str | None = None, log=print) -> dict:
    """Generate ``n`` records at one set of conditions and write them as a dataset at ``out``.

    ``generation_prior`` replaces the run's ``task.generation_prior`` (``"standard"``,
    ``"neighbours"`` or ``"learned"``; None keeps the run's).

    Returns ``{"out", "n", "station_known", "checkpoint_step", "figure", "trace_names"}``."""
    from tqdm.auto import tqdm

    from seisjax.data.dataset import DatasetWriter

    workdir, out = Path(workdir), Path(out)
    _check_run(workdir, need_cvae=True)
    if int(n) < 1:
        raise InputError(f"-n {n}: need at least one record")
    values = {"magnitude": magnitude, "lat": lat, "lon": lon, "depth": depth}
    bad = [k for k, v in values.items() if not np.isfinite(float(v))]
    if bad:
        raise InputError(f"--{bad[0]} {values[bad[0]]}: not a finite number")
    if not -90 <= float(lat) <= 90 or not -180 <= float(lon) <= 360:
        raise InputError(f"--lat {lat} --lon {lon}: outside the globe")
    if not MAGNITUDE_LIMITS[0] <= float(magnitude) <= MAGNITUDE_LIMITS[1]:
        raise InputError(f"--magnitude {magnitude}: no earthquake magnitude lies outside {MAGNITUDE_LIMITS}")
    if not DEPTH_LIMITS_KM[0] <= float(depth) <= DEPTH_LIMITS_KM[1]:
        raise InputError(f"--depth {depth}: km below sea level, expected within {DEPTH_LIMITS_KM} "
                         "(the highest summits to the deepest earthquakes)")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--out {out}: exists and is not empty; choose a new folder")
    task, params, model_state, ckpt_step = _restore(workdir, step)
    try:
        if generation_prior is not None:
            task.set_generation_prior(str(generation_prior))
        spec = task.spec
        index = int(task.station_indices([station])[0])
        known = index > 0
        if not known:
            shown = ", ".join(task.stations[:20]) + (" ..." if len(task.stations) > 20 else "")
            log(f"generate: warning: station {station!r} is not one the run trained on ({shown}); "
                "using the unknown-station embedding")
        n = int(n)
        cond = task.condition_vector(np.full(n, float(magnitude)), np.full(n, float(lat)), np.full(n, float(lon)),
                                     np.full(n, float(depth)), np.full(n, str(station), dtype=object))
        if task.distance_condition and str(station) not in task.station_coords:
            log(f"generate: warning: no coordinates for station {station!r}; the distance condition takes the "
                "training mean distance")
        for line in outside_training_range(task, magnitude=magnitude, lat=lat, lon=lon, depth=depth,
                                           station=station):
            log(f"generate: warning: {line}")
        stations = np.full(n, index, np.int32)
        mags, waves = [], []
        for begin in tqdm(range(0, n, chunk), desc="generating", unit="batch", leave=False, disable=n <= chunk):
            sl = slice(begin, min(begin + chunk, n))
            _, mag, wave = task.generate(params, model_state, cond[sl], stations[sl], seed=int(seed) + begin)
            mags.append(mag)
            waves.append(wave)
        mag, wave = np.concatenate(mags), np.concatenate(waves).astype(np.float32)
        unit = task._dataset.data_format.get("unit", "counts")
        unit = unit.decode() if isinstance(unit, bytes) else str(unit)
        names = []
        with DatasetWriter(out, component_order=spec.components, sampling_rate=spec.sampling_rate,
                           data_format_attrs={"unit": unit}) as writer:
            for k in range(n):
                names.append(writer.add(wave[k], {
                    "source_id": f"generated{k:05d}", "source_magnitude": float(magnitude),
                    "source_latitude_deg": float(lat), "source_longitude_deg": float(lon),
                    "source_depth_km": float(depth), "station_code": str(station),
                    "trace_sampling_rate_hz": spec.sampling_rate, "trace_npts": spec.n_samples,
                    "trace_p_arrival_sample": spec.before_s * spec.sampling_rate, "trace_category": "generated",
                    "trace_component_order": spec.components, "generation_seed": int(seed) + k // chunk * chunk,
                    "generation_index": k, "generation_station_known": bool(known),
                    "generation_prior": task.generation_prior,
                    "generation_workdir": str(workdir), "generation_checkpoint_step": ckpt_step}))
        figure = _plot_generated(wave, mag, spec, out / "generated.png",
                                 title=f"M {magnitude:g}, {lat:g} N {lon:g} E, {depth:g} km, station {station}"
                                       + ("" if known else " (unknown: average station)"))
    finally:
        task.close()
    log(f"generate: wrote {n} records of {len(spec.components)} components to {out} (checkpoint step {ckpt_step})")
    return {"out": out, "n": n, "station_known": known, "checkpoint_step": ckpt_step, "figure": figure,
            "trace_names": names}


def centroid_stage_trends(workdir, *, step: int | None = None, seed: int = 0, split: str = "eval",
                          generation_prior: str | None = None, generation_floor: str | None = None) -> dict:
    """Where along the generation chain the spectral centroid's trends with magnitude and distance
    change: for each of :data:`CENTROID_STAGES` the joint least-squares slopes of the centroid (Hz)
    against magnitude and log10 distance, the within-event slope against log10 distance and the mean
    centroid, on a CVAE run's held-out (``split="eval"``) or training (``"train"``) records.

    ``generation_prior`` and ``generation_floor`` replace the run's ``task.generation_prior`` and
    ``task.generation_floor`` (to compare them on one checkpoint; ``"learned"`` needs a run trained
    with ``task.prior = "learned"``).

    Returns ``{"checkpoint_step", "records", "events", "magnitude_log10_distance_correlation",
    "stages": {stage: {"magnitude", "log10_distance", "within_event_log10_distance",
    "within_event_stderr", "mean_hz"}}}``."""
    from seisjax.metrics import spectral as sm
    from seisjax.data.stft import stft
    from seisjax.spectrogram.data import renormalise, to_magnitudes
    from seisjax.spectrogram.task import event_ids

    workdir = Path(workdir)
    _check_run(workdir, need_cvae=True)
    if split not in ("eval", "train"):
        raise InputError(f"split = {split!r}: expected 'eval' or 'train'")
    task, params, model_state, ckpt_step = _restore(workdir, step)
    try:
        if generation_prior is not None:
            task.set_generation_prior(str(generation_prior))  # InputError naming the keys when the run can't
        if generation_floor is not None:
            if generation_floor not in ("predicted", "train_median"):
                raise InputError(f"generation_floor = {generation_floor!r}: expected 'predicted' or 'train_median'")
            task.generation_floor = generation_floor
        data = task._eval if split == "eval" else task._train
        ok = np.isfinite(data["distance_km"]) & (data["distance_km"] > 0)
        if ok.sum() < 4:
            raise InputError(f"{workdir}: {int(ok.sum())} {split} records with a distance; the trends need 4")
        data = {k: v[ok] for k, v in data.items()}
        spec, freqs = task.spec, task.spec.axes()[0]
        own_scale = data["log_scale"]
        recon = renormalise(task.reconstruct(params, model_state, data), task.mask)
        x_gen, mag_gen, wave_gen = task.generate(params, model_state, data["cond"], data["station_index"], seed=seed)
        prior_used = task.generation_prior
        mags = {"held_out": to_magnitudes(data["x"], own_scale, spec),
                "reconstruction": to_magnitudes(recon, own_scale, spec),
                "prior_true_scale": to_magnitudes(x_gen, own_scale, spec),
                "prior_predicted_scale": mag_gen,
                "griffin_lim": np.abs(stft(wave_gen * spec.gain, spec.sampling_rate, **spec.stft_kwargs))}
    finally:
        task.close()
    magnitude, distance, event = data["magnitude"], data["distance_km"], event_ids(data)
    stages = {}
    for stage, mag in mags.items():
        # a generated channel may be silent (predicted max below min): a tiny floor keeps its centroid defined
        centroid = sm.spectral_centroid(mag + 1e-12, freqs)
        records = {"peak_amplitude": np.ones(len(centroid)), "centroid_hz": centroid, "magnitude": magnitude,
                   "distance_km": distance, "event": event}
        with np.errstate(divide="ignore", invalid="ignore"):  # the placeholder amplitudes fit exactly
            fit = sm.generation_trends(records, records)
        real = fit["real"]
        stages[stage] = {"magnitude": real["centroid_hz"]["magnitude"],
                         "log10_distance": real["centroid_hz"]["log10_distance"],
                         "within_event_log10_distance": real["within_event"]["centroid_hz"]["log10_distance"],
                         "within_event_stderr": real["within_event"]["centroid_hz"]["stderr"],
                         "mean_hz": float(centroid.mean())}
    return {"checkpoint_step": ckpt_step, "split": split, "generation_prior": prior_used, "records": int(ok.sum()),
            "events": int(len(np.unique(event))),
            "magnitude_log10_distance_correlation": real["magnitude_log10_distance_correlation"],
            "stages": stages}


def _plot_generated(wave, mag, spec, path: Path, *, title: str, n_max: int = 4) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n_max, len(wave))
    comps = spec.components
    freqs, times = spec.axes()
    t = np.arange(wave.shape[-1]) / spec.sampling_rate - spec.before_s
    fig, axes = plt.subplots(n, len(comps) + 1, figsize=(3.0 * (len(comps) + 1), 1.9 * n), squeeze=False)
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
    plt.close(fig)
    return path


def record_index(ref, names, where: str) -> int:
    """Row of the record ``ref`` (a row number, or a trace name among ``names``) in ``where``."""
    ref = str(ref).strip()
    names = np.asarray(names, dtype=str)
    if ref.lstrip("-").isdigit():
        index = int(ref)
        if not 0 <= index < len(names):
            raise InputError(f"{where}: row {index} outside its {len(names)} records (rows 0-{len(names) - 1})")
        return index
    hits = np.flatnonzero(names == ref)
    if len(hits) == 1:
        return int(hits[0])
    if len(hits) > 1:
        raise InputError(f"{where}: trace name {ref!r} names rows {', '.join(map(str, hits[:5]))}; give a row number")
    example = ", ".join(repr(n) for n in names[:3])
    raise InputError(f"{where}: no record has trace name {ref!r} (give a row number 0-{len(names) - 1} or a "
                     f"trace name, e.g. {example})")


def interpolate_latent(workdir, data, record_a, record_b, steps: int, out_png, *,
                       step: int | None = None) -> Path:
    """Decode ``steps`` points on the line between the codes of two records and draw their
    spectrograms (one row per point, one column per component) to ``out_png``.

    ``record_a``, ``record_b``: row numbers or trace names, of the dataset folder ``data``, or of the
    run's own evaluation records when ``data`` is None. A record that the data checks reject is an
    InputError with the reason."""
    from seisjax.spectrogram.data import prepare_records

    workdir, out_png = Path(workdir), Path(out_png)
    _check_run(workdir, need_cvae=False)
    if int(steps) < 2:
        raise InputError(f"steps = {steps}: need at least 2 (the two ends)")
    task, params, model_state, _ = _restore(workdir, step)
    try:
        if data is None:
            arrays = task._eval
            rows = [record_index(r, arrays["trace_name"], f"{workdir}'s evaluation records")
                    for r in (record_a, record_b)]
            pick = {k: v[rows] for k, v in arrays.items()}
        else:
            from seisjax.data.dataset import Dataset, trace_names

            with Dataset(data) as ds:
                rows = [record_index(r, trace_names(ds.metadata), str(data)) for r in (record_a, record_b)]
                pick, rejected = prepare_records(ds.select(rows), task.spec, progress=False,
                                                 need_conditions=task.kind == "cvae")
            if rejected:
                raise InputError(f"{data}: row(s) rejected: " + "; ".join(f"{r['trace_name']}: {r['reason']} "
                                                                          f"({r['detail']})" for r in rejected))
            pick["cond"] = task.condition_vector(pick["magnitude"], pick["lat"], pick["lon"], pick["depth"],
                                                 pick["station"])
            pick["station_index"] = task.station_indices(pick["station"])
        weights, decoded = latent_path(task, params, model_state, pick, steps)
        spec = task.spec
    finally:
        task.close()
    labels = [record_label(name, mag) for name, mag in zip(pick["trace_name"], pick["magnitude"])]
    return plot_latent_path(np.asarray(pick["x"]), decoded, weights, spec, out_png, labels=labels)


def record_label(trace_name, magnitude) -> str:
    """A figure row's name for a record: its trace name, with its magnitude when known."""
    magnitude = float(magnitude)
    return f"{trace_name}\nM {magnitude:.1f}" if np.isfinite(magnitude) else str(trace_name)


def latent_path(task, params, model_state, pick: dict, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(weights (steps,), decoded (steps, F, T, C))``: the two records of ``pick`` (rows 0 and 1 of
    its ``x``, and of ``cond`` and ``station_index`` for a CVAE) encoded, the straight line between
    their codes (the AE's spatial code, the VAEs' posterior means) decoded at ``steps`` points; a
    CVAE's conditions move along the same line, its station switches half-way."""
    variables = {"params": params, **model_state}
    model = task.model
    x = jnp.asarray(pick["x"][:2])
    weights = np.linspace(0.0, 1.0, int(steps))
    if task.kind == "ae":
        h = model.apply(variables, x, train=False, method="encode")
        path_h = jnp.stack([(1 - w) * h[0] + w * h[1] for w in weights])
        decoded = model.apply(variables, path_h, train=False, method="decode")
    else:
        args = () if task.kind == "vae" else (jnp.asarray(pick["cond"][:2]), jnp.asarray(pick["station_index"][:2]))
        mean, _ = model.apply(variables, x, *args, train=False, method="encode")
        z = jnp.stack([(1 - w) * mean[0] + w * mean[1] for w in weights])
        if task.kind == "vae":
            decoded = model.apply(variables, z, train=False, method="decode")
        else:
            cond = jnp.stack([(1 - w) * args[0][0] + w * args[0][1] for w in weights])
            station = jnp.where(jnp.asarray(weights) < 0.5, args[1][0], args[1][1]).astype(jnp.int32)
            decoded = model.apply(variables, z, cond, station, train=False, method="decode")
    return weights, np.asarray(decoded)


def plot_latent_path(ends, decoded, weights, spec, path: Path, *, labels) -> Path:
    """The two records (first and last row, named by ``labels``) and the decoded points between
    them, one column per component, as scaled log1p |STFT| images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = spec.stft_shape[1]
    comps = spec.components
    rows = [(labels[0], ends[0])] + [(f"t = {w:.2f}", d) for w, d in zip(weights, decoded)] + [(labels[1], ends[1])]
    fig, axes = plt.subplots(len(rows), len(comps), figsize=(2.8 * len(comps), 1.5 * len(rows)), squeeze=False)
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
    plt.close(fig)
    return path
