"""What the STF scores would be without noise: the ceiling that the physics sets for each method.

Re-synthesises a synthetic ``teleseismic-p`` dataset with its own config and seed but the noise
switched off (``noise.enabled=false`` leaves every signal bit-identical), groups both datasets as a
trained SymAE run does, and scores the classical baselines on each against the same truth, with the
same windows and metrics as ``python -m seisjax eval`` (``seisjax.symae.stf_eval``). Prints one
JSON line per method: mean correlation overall, below and above (group) SNR 5, on the noisy and on
the noise-free records, and SymAE's rows of the run's extraction (``--stf``) on the noisy records.
After the main job (``python3 -m seisjax demo``):

    python3 scripts/symae_stf_noise_free.py --run runs/demo/symae --data runs/demo/data/teleseismic-p \\
        --stf runs/demo/stf/stf.h5
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from seisjax.data.synthetic import flatten_config, scenario_config, synthesize
from seisjax.errors import InputError
from seisjax.symae.stf import restore_for_inference
from seisjax.symae.stf_eval import evaluate_stfs


def noise_free_overrides(stored: dict) -> dict:
    """A dataset's ``config.json`` as overrides of its scenario's config, with the noise switched off."""
    flat = {k: v for k, v in flatten_config(stored).items() if k != "scenario"}
    return {**flat, "noise.enabled": False}


def _means(scores: dict, methods) -> dict:
    out = {}
    for method in methods:
        rows = [r for r in scores["groups"] if r["method"] == method and r.get("correlation") is not None]
        snr = np.array([r["snr"] for r in rows])
        cc = np.array([r["correlation"] for r in rows])
        out[method] = {label: round(float(cc[chosen].mean()), 4) if chosen.any() else None
                       for label, chosen in (("all", snr == snr), ("snr_below_5", snr < 5), ("snr_5_up", snr >= 5))}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="trained SymAE run folder (for its data grouping settings)")
    ap.add_argument("--data", required=True, help="synthetic teleseismic-p dataset with truth.h5 and config.json")
    ap.add_argument("--stf", required=True, help="the run's extraction file (`python -m seisjax stf --out`)")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not (data / "config.json").is_file() or not (data / "truth.h5").is_file():
        raise InputError(f"{data}: not a synthetic dataset (needs config.json and truth.h5 from `data synth`)")
    synth = json.loads((data / "config.json").read_text())
    if synth.get("scenario") != "teleseismic-p":
        raise InputError(f"{data}: scenario {synth.get('scenario')!r}; this script scores teleseismic-p STFs")
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "noise_free"
        synthesize(scenario_config("teleseismic-p", noise_free_overrides(synth)), clean, figure=False, progress=False)
        results = {}
        for label, path in (("noisy", data), ("noise_free", clean)):
            # the run's own grouping of either dataset; SymAE's rows are read on the noisy one only
            *_, task = restore_for_inference(args.run, data_path=path)
            prepared = task.prepared
            task.close()
            scores = evaluate_stfs(args.stf, prepared, data / "truth.h5")
            results[label] = _means(scores, [r["method"] for r in scores["summary"] if r["method"] != "symae_network"])
    for method in results["noisy"]:
        line = {"method": method, "noisy": results["noisy"][method]}
        if not method.startswith("symae"):
            line["noise_free"] = results["noise_free"][method]
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
