"""The main job: SymAE end to end on the built-in synthetic ``teleseismic-p`` data.

``python -m seisjax demo --workdir runs/demo`` (a few minutes on a 2-core CPU; results on the page,
``seisjax/symae/README.md``):

1. **Data.** Synthesise the ``teleseismic-p`` scenario (24 events on the smaller station network of
   ``experiments/symae.py:quick``) with its ground truth into ``<workdir>/data/teleseismic-p``
   (``truth.h5``: true STFs, sub-events, per-trace timing errors and SNRs) and an overview figure;
   ``--config.data.synthetic.KEY=VALUE`` changes its config
   (``--config.data.synthetic.noise.snr="(0.2,2)"``: noisier records of the same events and signals).
2. **Train** the ``quick`` variant of ``experiments/symae.py`` through the engine
   (:func:`seisjax.train.loop.train_and_evaluate`) in ``<workdir>/symae`` (checkpoints, metrics,
   figures; a second run resumes or finds it trained).
3. **Extract** the STFs of every (event, pixel) group in one compiled call
   (:func:`seisjax.symae.stf.run_stf`) into ``<workdir>/stf/stf.h5`` with figures in
   ``<workdir>/stf/stf_figures``.
4. **Score** SymAE's envelope and signed STFs and the four baselines (MCCC / ICCS alignment, linear
   / phase-weighted stacks, on the same traces) against the truth
   (:func:`seisjax.symae.stf_eval.evaluate_stfs`): ``<workdir>/stf/scores.{json,md,png}``, and
   print the tables and each SymAE estimate's difference from the best baseline of its kind.

The ``local`` scenario (for the clustering and spectrogram experiments) is no longer synthesised
here, to keep the job within its time: ``python -m seisjax data synth local`` writes it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from seisjax.config import apply_overrides, load_config
from seisjax.data.dataset import Dataset, describe, format_summary
from seisjax.data.resolve import resolve_dataset
from seisjax.data.synthetic import synthesize
from seisjax.errors import InputError
from seisjax.symae.data import prepare_symae_groups
from seisjax.symae.extraction import ExtractionConfig
from seisjax.symae.stf import run_stf
from seisjax.symae.stf_eval import evaluate_stfs, write_scores
from seisjax.symae.task import SymAETask
from seisjax.train.loop import train_and_evaluate

__all__ = ["run", "symae_config"]


def _experiment_file() -> Path:
    """experiments/symae.py of this checkout (the package's parent), else relative to the cwd."""
    beside = Path(__file__).resolve().parent.parent / "experiments" / "symae.py"
    return beside if beside.is_file() else Path("experiments") / "symae.py"


DEMO_VARIANTS = ("quick", "medium", "long", "xlong")


def symae_config(data_dir, *, seed: int = 0, variant: str = "quick", overrides=()):
    """The ``variant`` SymAE config with its synthetic data in ``data_dir``: ``seed`` of the data
    and the training, then ``overrides`` (``["data.synthetic.noise.snr=(0.2,2)", ...]``, as
    ``--config.`` takes them)."""
    if variant not in DEMO_VARIANTS:
        raise InputError(f"demo: variant = {variant!r}; expected one of {', '.join(DEMO_VARIANTS)}")
    config = load_config(f"{_experiment_file()}:{variant}")
    apply_overrides(config, {"data.source": "synthetic", "data.path": str(data_dir), "seed": int(seed),
                             "data.synthetic.seed": int(seed)})
    return apply_overrides(config, overrides)


def run(workdir: str | Path, *, seed: int = 0, overwrite: bool = False, variant: str = "quick",
        overrides=()) -> dict:
    """Run the main job in ``workdir`` (module docstring); ``seed`` of the data and the training,
    ``overwrite`` replaces the data and the run, ``variant`` the training (``quick``, ``medium``,
    ``long`` or ``xlong``; the runs of the longer ones go to ``<workdir>/symae_<variant>``),
    ``overrides`` ``["key=value", ...]`` of the SymAE config (``--config.``; ``data.synthetic.*``
    changes the data, and data already in the workdir must match it). Returns the paths written and
    the scores."""
    workdir = Path(workdir)
    data_dir = workdir / "data" / "teleseismic-p"
    suffix = "" if variant == "quick" else f"_{variant}"
    run_dir, stf_dir = workdir / f"symae{suffix}", workdir / f"stf{suffix}"
    timings = {}
    started = time.perf_counter()

    # ------------------------------------------------------------------ 1. data with ground truth
    config = symae_config(data_dir, seed=seed, variant=variant, overrides=overrides)
    if overwrite:
        for path in (run_dir, stf_dir):
            shutil.rmtree(path, ignore_errors=True)
    if overwrite or not (data_dir / "truth.h5").exists():
        synthesize(config.data.synthetic, data_dir, overwrite=overwrite, figure=True, progress=True)
    else:
        try:   # the same check as training's, with the demo's way out
            resolve_dataset(config.data, workdir=run_dir)
        except InputError as err:
            raise InputError(f"demo: {err}; or pass --overwrite to replace it") from None
    summary = describe(data_dir, figure=workdir / "figures" / "teleseismic-p_overview.png")
    print(f"\n== data: teleseismic-p\n{format_summary(summary)}", flush=True)
    timings["data_s"] = time.perf_counter() - started

    # ------------------------------------------------------------------ 2. train (quick variant)
    t = time.perf_counter()
    print(f"\n== training SymAE (experiments/symae.py:{variant}) in {run_dir}", flush=True)
    trained = train_and_evaluate(SymAETask, config, run_dir)
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
