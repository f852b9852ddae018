"""SymAE against the best baselines over several scored runs, one row each and all pooled.

Reads the ``scores.json`` that ``python -m seisjax demo`` or ``eval`` wrote for each run (a folder
or the file), and prints, per run and for all runs together, each SymAE estimate against the best
baseline of its kind below and above (group) SNR 5: both mean correlations and SymAE's per-group
difference with its standard error clustered by event (``seisjax.symae.stf_eval.goal_by_snr``;
pooled, the runs' events are counted apart, so runs on other draws of events add evidence). The
low-SNR rows of the README:

    python3 scripts/symae_stf_goal_table.py runs/lowsnr/stf_long runs/lowsnr_seed{1,2,3}/stf_long
"""

import argparse
import json
from pathlib import Path

import pandas as pd

from seisjax.errors import InputError
from seisjax.symae.baselines import BASELINE_METHODS
from seisjax.symae.stf_eval import goal_by_snr, goal_rows
from seisjax.symae.stf_scores import format_table


def load_groups(path: Path, tag: str) -> pd.DataFrame:
    path = path / "scores.json" if path.is_dir() else path
    if not path.is_file():
        raise InputError(f"{path}: no scores.json (run `python -m seisjax demo` or `eval` first)")
    frame = pd.DataFrame(json.loads(path.read_text())["groups"])
    frame["correlation"] = pd.to_numeric(frame.get("correlation"), errors="coerce")
    frame["group"] = tag + ":" + frame["group"].astype(str)
    frame["source_id"] = tag + ":" + frame["source_id"].astype(str)
    return frame


def rows_for(frame: pd.DataFrame, label: str, baselines) -> list[dict]:
    group_snr = frame.drop_duplicates("group").set_index("group")["snr"].to_dict()
    return goal_rows(goal_by_snr(frame, group_snr, baselines), runs=label)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scores", nargs="+", help="scored runs: folders holding scores.json, or the files")
    ap.add_argument("--estimates", default="symae_envelope,symae_signed",
                    help="SymAE estimates to show, comma-separated (default: symae_envelope,symae_signed)")
    args = ap.parse_args(argv)
    frames = [load_groups(Path(p), f"run{i}") for i, p in enumerate(args.scores)]
    present = set.intersection(*(set(f["method"]) for f in frames))
    baselines = [m for m in BASELINE_METHODS if m in present]
    keep = set(args.estimates.split(","))
    rows = []
    for path, frame in zip(args.scores, frames):
        rows += rows_for(frame, path, baselines)
    if len(frames) > 1:
        rows += rows_for(pd.concat(frames, ignore_index=True), "all pooled", baselines)
    print(format_table([r for r in rows if r["symae"] in keep]))


if __name__ == "__main__":
    main()
