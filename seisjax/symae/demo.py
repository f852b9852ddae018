"""The main job: SymAE end to end on the built-in synthetic ``teleseismic-p`` data.

``python -m seisjax demo --workdir runs/demo`` (about 10 minutes on a 2-core CPU):

1. **Data.** Synthesise the ``teleseismic-p`` scenario (24 events on the smaller station network of
   ``experiments/symae.py:quick``) with its ground truth into ``<workdir>/data/teleseismic-p``
   (``truth.h5``: true STFs, sub-events, per-trace timing errors and SNRs) and an overview figure;
   ``--set KEY=VALUE`` changes its config (``--set "noise.snr=(0.2,2)"``: noisier records of the
   same events and signals).
2. **Train** the ``quick`` variant of ``experiments/symae.py`` through the engine
   (:func:`seisjax.train.loop.train_and_evaluate`) in ``<workdir>/symae`` (checkpoints, metrics,
   figures; a second run resumes or finds it trained).
3. **Extract** the STFs of every (event, pixel) group in one compiled call
   (:func:`seisjax.symae.extraction.run_stf`) into ``<workdir>/stf/stf.h5`` with figures in
   ``<workdir>/stf/stf_figures``.
4. **Score** SymAE's envelope and signed STFs and the four baselines (MCCC / ICCS alignment, linear
   / phase-weighted stacks, on the same traces) against the truth
   (:func:`seisjax.symae.stf_eval.evaluate_stfs`): ``<workdir>/stf/scores.{json,md,png}``, and
   print the tables and each SymAE estimate's difference from the best baseline of its kind.

The ``local`` scenario (for the clustering and spectrogram experiments) is no longer synthesised
here, to keep the job within its time: ``python -m seisjax data synth local`` writes it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

__all__ = ["run", "symae_config"]


def _experiment_file() -> Path:
    """experiments/symae.py of this checkout (the package's parent), else relative to the cwd."""
    beside = Path(__file__).resolve().parent.parent / "experiments" / "symae.py"
    return beside if beside.is_file() else Path("experiments") / "symae.py"


DEMO_VARIANTS = ("quick", "medium", "long", "xlong")


def symae_config(data_dir, *, seed: int = 0, variant: str = "quick"):
    """The ``variant`` (``quick``, ``medium`` or ``long``) SymAE config reading the dataset at ``data_dir``."""
    from seisjax.config import load_config

    if variant not in DEMO_VARIANTS:
        from seisjax.errors import InputError

        raise InputError(f"demo: variant = {variant!r}; expected one of {', '.join(DEMO_VARIANTS)}")
    return load_config(f"{_experiment_file()}:{variant}", {"data.source": "dataset", "data.path": str(data_dir),
                                                           "seed": int(seed)})


def _check_existing_data(data_dir: Path, wanted: dict):
    """Reusing ``data_dir`` only when it was synthesised with the config this call asks for."""
    from seisjax.data.synthetic import flatten_config
    from seisjax.errors import InputError

    stored, wanted = flatten_config(json.loads((data_dir / "config.json").read_text())), flatten_config(wanted)
    differ = sorted(k for k in set(wanted) | set(stored) if stored.get(k) != wanted.get(k))
    if differ:
        raise InputError(f"demo: {data_dir} holds data synthesised with other settings ({', '.join(differ)} "
                         "differ); pass --overwrite to replace it, or choose another --workdir")


def run(workdir: str | Path, *, events: int | None = None, seed: int = 0, overwrite: bool = False,
        variant: str = "quick", synthetic_overrides=()) -> dict:
    """Run the main job in ``workdir`` (module docstring); ``events`` synthetic events (default 24),
    ``seed`` of the data and the training, ``overwrite`` replaces the data and the run, ``variant``
    the training (``quick``; ``medium``: 7x the steps, envelope correlation 0.787 against 0.747;
    ``long``: 33x, 0.803; ``xlong``: 131x, for a GPU, overfits; their runs go to
    ``<workdir>/symae_<variant>``), ``synthetic_overrides`` ``["key=value", ...]`` of the synthetic data's config on top of the variant's (``data synth
    --set``; data already in the workdir must match them). Returns the paths written and the scores."""
    from seisjax.symae.extraction import ExtractionConfig, run_stf
    from seisjax.symae.stf_eval import evaluate_stfs, write_scores
    from seisjax.data.dataset import Dataset, describe, format_summary
    from seisjax.symae.data import prepare_symae_groups
    from seisjax.data.synthetic import resolve_config, synthesize
    from seisjax.families import train_and_evaluate  # TODO(layout): demo sits above the families

    workdir = Path(workdir)
    data_dir = workdir / "data" / "teleseismic-p"
    suffix = "" if variant == "quick" else f"_{variant}"
    run_dir, stf_dir = workdir / f"symae{suffix}", workdir / f"stf{suffix}"
    timings = {}
    started = time.perf_counter()

    # ------------------------------------------------------------------ 1. data with ground truth
    config = symae_config(data_dir, seed=seed, variant=variant)
    n_events = int(config.data.synthetic_events if events is None else events)
    if overwrite:
        for path in (run_dir, stf_dir):
            shutil.rmtree(path, ignore_errors=True)
    overrides = list(config.data.synthetic_overrides) + list(synthetic_overrides)
    wanted = resolve_config("teleseismic-p", n_events, overrides).to_dict()   # bad keys fail here
    wanted["seed"] = int(seed)
    if overwrite or not (data_dir / "truth.h5").exists():
        synthesize("teleseismic-p", data_dir, events=n_events, seed=seed, overrides=overrides,
                   overwrite=overwrite, figure=True, progress=True)
    else:
        _check_existing_data(data_dir, json.loads(json.dumps(wanted)))
    summary = describe(data_dir, figure=workdir / "figures" / "teleseismic-p_overview.png")
    print(f"\n== data: teleseismic-p\n{format_summary(summary)}", flush=True)
    timings["data_s"] = time.perf_counter() - started

    # ------------------------------------------------------------------ 2. train (quick variant)
    t = time.perf_counter()
    print(f"\n== training SymAE (experiments/symae.py:{variant}) in {run_dir}", flush=True)
    trained = train_and_evaluate(config, run_dir)
    timings["train_s"] = time.perf_counter() - t

    # ------------------------------------------------------------------ 3. extraction
    t = time.perf_counter()
    print(f"\n== extracting STFs of every (event, pixel) group into {stf_dir / 'stf.h5'}", flush=True)
    extraction = run_stf(run_dir, stf_dir / "stf.h5", config=ExtractionConfig(), max_figure_events=4)
    timings["extract_s"] = time.perf_counter() - t

    # ------------------------------------------------------------------ 4. scores against the truth
    t = time.perf_counter()
    with Dataset(data_dir) as dataset:   # the run's preparation, from its cache
        prepared = prepare_symae_groups(dataset, config.data, cache_dir=run_dir)
    scores = evaluate_stfs(extraction["hdf5"], prepared, data_dir / "truth.h5")
    paths = write_scores(scores, stf_dir)
    timings["score_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - started

    print("\n== STF scores against the truth (means over (event, pixel) groups)\n" + scores["summary_md"])
    print("\n== by SNR (group SNR: median of its traces' true SNR)\n" + scores["table_md"])
    for label, goal in scores["goal"].items():
        for row in goal["comparisons"][:2] if goal["groups"] else ():   # envelope, signed
            print(f"goal, {label} ({goal['groups']} groups): {row['symae']} {row['symae_correlation']:.3f} vs best "
                  f"baseline {row['baseline']} {row['baseline_correlation']:.3f}, per group "
                  f"{row['mean_difference']:+.3f} ± {row['standard_error']:.3f}")
    print(f"\nResults are in {workdir} ({timings['total_s'] / 60:.1f} min: data {timings['data_s']:.0f} s, training "
          f"{timings['train_s']:.0f} s, extraction {timings['extract_s']:.0f} s, scoring {timings['score_s']:.0f} s):\n"
          f"  data and truth     {data_dir}\n"
          f"  trained run        {run_dir} (checkpoints/, metrics.jsonl, figures/)\n"
          f"  STFs               {extraction['hdf5']}\n"
          f"  STF figures        {stf_dir / 'stf_figures'}\n"
          f"  scores             {paths['markdown']}, {paths['json']}, {paths['figure']}", flush=True)
    return {"dataset": str(data_dir), "truth": str(data_dir / "truth.h5"), "run": str(run_dir),
            "train": trained, "stf": str(extraction["hdf5"]), "figures": [str(p) for p in extraction["figures"]],
            "scores": {k: str(v) for k, v in paths.items()}, "summary": scores["summary"], "goal": scores["goal"],
            "timings_s": timings}
