"""Score SymAE's STFs against the synthetic truth for several extraction settings of one trained run.

Each setting is ``NAME:key=value,key=value`` with keys of
:class:`seisjax.symae.extraction.ExtractionConfig`; the run is restored once and every setting
extracts all (event, pixel) groups in one call. Prints one JSON line per setting: the envelope,
signed and stacked (the data on SymAE's shifts) correlations overall; ``goal``: below and above SNR 5,
for each SymAE estimate, ``[mean per-group difference from the best baseline of its kind, its
standard error clustered by event, that baseline]`` (:func:`seisjax.symae.stf_eval.goal_by_snr`,
as ``eval`` reports it; the baselines are scored once, on the first setting); shift RMS (refined and
network) and duration error. With ``--out DIR`` each setting's full scores
go to ``DIR/NAME/scores.{json,md}`` (for ``scripts/symae_stf_goal_table.py``). After the main job
(``python3 -m seisjax demo``):

    python3 scripts/symae_extraction_sweep.py --run runs/demo/symae --data runs/demo/data/teleseismic-p \\
        default: no-refinement:shift_steps=0,shift_search=0 adam:optimizer=adam \\
        steps300:steps=300 n30:n_best=30 alpha1:alpha=1.0
"""

import argparse
import dataclasses
import json
from pathlib import Path

import pandas as pd

from seisjax.cli import STEP_HELP, checkpoint_step
from seisjax.errors import InputError
from seisjax.symae.data import arrays_from_prepared
from seisjax.symae.extraction import ExtractionConfig, extract_coherent
from seisjax.symae.stf import restore_for_inference
from seisjax.symae.stf_eval import SYMAE_METHODS, evaluate_stfs, goal_by_snr, write_scores


def parse_setting(spec: str) -> tuple[str, dict]:
    """``NAME:key=value,...`` -> (name, typed keyword arguments of ExtractionConfig)."""
    name, _, items = spec.partition(":")
    defaults = ExtractionConfig()
    known = {f.name for f in dataclasses.fields(ExtractionConfig)}
    kwargs = {}
    for item in filter(None, items.split(",")):
        key, _, value = item.partition("=")
        if key not in known:
            raise InputError(f"setting {name!r}: unknown key {key!r} (ExtractionConfig has {', '.join(sorted(known))})")
        default = getattr(defaults, key)
        kwargs[key] = value if isinstance(default, str) else (None if value == "None" else
                                                             type(default)(value) if default is not None else int(value))
    return name, kwargs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="trained SymAE run folder")
    ap.add_argument("--data", required=True, help="synthetic teleseismic-p dataset with truth.h5")
    ap.add_argument("--step", type=checkpoint_step, default=None, help=STEP_HELP)
    ap.add_argument("--out", help="write each setting's scores to OUT/NAME/ (scores.json, scores.md)")
    ap.add_argument("settings", nargs="+", help="NAME:key=value,... (NAME: alone = the defaults)")
    args = ap.parse_args(argv)
    data = Path(args.data)
    settings = [parse_setting(s) for s in args.settings]   # bad keys fail before the restore
    model, params, _, _, task = restore_for_inference(args.run, step=args.step, data_path=data)
    prepared = task.prepared
    task.close()
    groups = arrays_from_prepared(prepared)
    baseline_rows, baselines = None, ()   # scored once, with the first setting
    for name, kwargs in settings:
        result = extract_coherent(model, params, groups, ExtractionConfig(sampling_rate=groups.sampling_rate, **kwargs))
        # baselines scored once, unless every setting's scores are written in full
        scores = evaluate_stfs(result, prepared, data / "truth.h5",
                               methods=None if baseline_rows is None or args.out else ())
        if args.out:
            write_scores(scores, Path(args.out) / name, figure=False)
        if baseline_rows is None:
            baselines = tuple(scores["settings"]["baselines"])
            baseline_rows = [r for r in scores["groups"] if r["method"].removesuffix("_signed") in baselines]
        summary = {row["method"]: row for row in scores["summary"]}
        frame = pd.DataFrame([r for r in scores["groups"] if r["method"] in SYMAE_METHODS] + baseline_rows)
        goal = goal_by_snr(frame, {r["group"]: r["snr"] for r in scores["groups"]}, baselines)
        line = {"name": name, **kwargs, "envelope": summary["symae_envelope"]["correlation"],
                "signed": summary["symae_signed"]["correlation"], "stack": summary["symae_stack"]["correlation"],
                "goal": {part: {row["symae"]: [row["mean_difference"], row["standard_error"], row["baseline"]]
                                for row in item["comparisons"]} for part, item in goal.items()}}
        line.update(shift_rms_s=summary["symae_envelope"]["shift_rms_s"],
                    network_shift_rms_s=summary["symae_network"]["shift_rms_s"],
                    duration_error_s=summary["symae_envelope"]["abs_duration_error_s"])
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
