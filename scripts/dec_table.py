#!/usr/bin/env python3
"""Gather the clustering reports of several DEC/IDEC runs into one table.

A DEC run and an IDEC run from the same pretrained weights each evaluate k-means on the raw inputs,
k-means on the pretrained embeddings, and their own fine-tuning; this puts all of them in one
table (markdown on stdout, JSON with ``--out``):

    python -m seisjax eval --workdir runs/dec_pol          # task.variant = dec
    python -m seisjax eval --workdir runs/dec_pol_idec     # task.variant = idec, same task.pretrained
    python scripts/dec_table.py runs/dec_pol runs/dec_pol_idec --out runs/dec_pol_table.json

Each argument is a run's workdir (its newest ``eval/step_*/clustering.json``) or a clustering.json.
The runs must have been evaluated on the same data (the ``data.fingerprint`` of the metrics.json
beside each report); a baseline that two runs both report must agree, else it is an error (they
would not be the same baseline).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from seisjax.dec.data import SNR_BIN_NAMES as BINS
from seisjax.errors import InputError


def _report_path(arg: str) -> Path:
    path = Path(arg)
    if path.is_file():
        return path
    reports = sorted((path / "eval").glob("step_*/clustering.json"), key=lambda p: int(p.parent.name[5:]))
    if not reports:
        raise InputError(f"{arg}: no eval/step_*/clustering.json (run `python -m seisjax eval --workdir {arg}`)")
    return reports[-1]


def gather(args, *, tolerance: float = 1e-9) -> dict:
    """``{"examples", "fingerprint", "methods": {name: {..., "run": path}}}`` of all reports."""
    merged, fingerprint, examples = {}, None, None
    for arg in args:
        path = _report_path(arg)
        report = json.loads(path.read_text())
        metrics = path.with_name("metrics.json")
        fp = json.loads(metrics.read_text()).get("data", {}).get("fingerprint") if metrics.exists() else None
        if fingerprint is None:
            fingerprint, examples = fp, report.get("examples")
        elif fp is not None and fp != fingerprint:
            raise InputError(f"{path}: evaluated on other data (fingerprint {fp[:12]}... against {fingerprint[:12]}...)")
        for name, entry in report["methods"].items():
            if name in merged:
                old, new = merged[name].get("accuracy"), entry.get("accuracy")
                if old is not None and new is not None and abs(old - new) > tolerance:
                    raise InputError(f"{path}: {name} accuracy {new:.6f} differs from {old:.6f} in "
                                     f"{merged[name]['run']}; not the same baseline")
                continue
            merged[name] = {**entry, "run": str(path)}
    return {"examples": examples, "fingerprint": fingerprint, "methods": merged}


def markdown(table: dict) -> str:
    """One row per method: accuracy, NMI, ARI, accuracy on the unambiguous labels and pair split
    (when reported) and accuracy per SNR bin."""
    methods = table["methods"]
    has_pairs = any("pair_split" in m for m in methods.values())
    has_clear = any("unambiguous" in m for m in methods.values())
    head = (["method", "accuracy", "NMI", "ARI"] + (["unambiguous"] if has_clear else [])
            + (["pair split"] if has_pairs else []) + [f"SNR {b}" for b in BINS])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = ["kmeans_raw", "kmeans_pretrained", "kmeans_pretrained_whitened", "dec", "idec", "dec_whitened",
             "idec_whitened"]
    for name in sorted(methods, key=lambda n: (order.index(n) if n in order else len(order), n)):
        m = methods[name]

        def fmt(v):
            return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

        row = [name, fmt(m.get("accuracy")), fmt(m.get("nmi")), fmt(m.get("ari"))]
        if has_clear:
            row.append(fmt(m.get("unambiguous", {}).get("accuracy")))
        if has_pairs:
            row.append(fmt(m.get("pair_split", {}).get("split")))
        row += [fmt(m.get("per_snr_bin", {}).get(b, {}).get("accuracy")) for b in BINS]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run workdirs or clustering.json files")
    parser.add_argument("--out", default=None, help="write the merged table as JSON here")
    args = parser.parse_args(argv)
    try:
        table = gather(args.runs)
    except (InputError, OSError, json.JSONDecodeError, KeyError) as err:
        print(f"dec_table: error: {err}", file=sys.stderr)
        return 2
    print(f"{table['examples']} traces")
    print(markdown(table))
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
