#!/usr/bin/env python3
"""Peak memory of `python -m seisjax data synth` as the number of traces grows.

For each requested size, picks the number of events whose records reach that many traces (with the
same seed and config, see ``seisjax.data.synthetic.events_for_traces``), runs `data synth` in a
subprocess and reports its peak resident memory (``ru_maxrss`` of that child, from ``os.wait4``), the
wall time and the size on disk. Target: 100,000 traces under 1.5 GB; the generator streams event by
event, so the peak should not grow with the number of traces.

    python benchmarks/bench_synth_memory.py --traces 100000
    python benchmarks/bench_synth_memory.py --traces 5000 50000          # memory flat in the size
    python benchmarks/bench_synth_memory.py --scenario local --traces 2000 20000

Any key of the scenario's config is set with ``--config.KEY=VALUE``, passed on to `data synth`
(``--config.events`` excepted: the benchmark chooses it). The default truth.h5 keeps every trace's
Green's function (as much disk again as the waveforms); ``--config.truth.store_green_functions=false``
leaves them out. Outputs go to a temporary folder (or --workdir) deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seisjax.config import parse_override_args
from seisjax.data.synthetic import events_for_traces, scenario_config
from seisjax.errors import InputError


def run_synth(out: Path, scenario: str, events: int, overrides: list[str]) -> dict:
    command = [sys.executable, "-m", "seisjax", "data", "synth", "--scenario", scenario, "--out", str(out / "dataset"),
               *(f"--config.{item}" for item in overrides), f"--config.events={events}", "--no-figure", "--quiet"]
    started = time.perf_counter()
    with open(out / "synth_stderr.txt", "w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        # wait4 gives this child's own resource usage (ru_maxrss in kilobytes on Linux)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"data synth failed:\n{(out / 'synth_stderr.txt').read_text()[-3000:]}")
    files = list((out / "dataset").rglob("*"))
    return dict(peak_rss_mb=round(usage.ru_maxrss / 1024, 1), synth_seconds=round(seconds, 1),
                waveforms_mb=round((out / "dataset" / "waveforms.hdf5").stat().st_size / 2**20, 1),
                truth_mb=round((out / "dataset" / "truth.h5").stat().st_size / 2**20, 1),
                output_mb=round(sum(p.stat().st_size for p in files if p.is_file()) / 2**20, 1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False,
                                     epilog="Any other argument --config.KEY=VALUE sets a key of the scenario's "
                                            "config, e.g. --config.seed=1 --config.noise.enabled=false.")
    parser.add_argument("--traces", type=int, nargs="+", default=[100000], help="target traces (several: one run each)")
    parser.add_argument("--scenario", default="teleseismic-p", choices=("teleseismic-p", "local"))
    parser.add_argument("--workdir", default=None, help="folder for the outputs (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the datasets")
    args, rest = parser.parse_known_args(argv)
    overrides = parse_override_args(rest)
    if any(item.partition("=")[0] == "events" for item in overrides):
        raise InputError("--config.events: the benchmark chooses the number of events from --traces")
    config = scenario_config(args.scenario, overrides)   # checks the keys before any run

    results = []
    for n in args.traces:
        events, traces = events_for_traces(config, n)
        root = Path(tempfile.mkdtemp(prefix=f"seisjax_synth_bench_{n}_", dir=args.workdir))
        try:
            result = dict(scenario=args.scenario, target_traces=n, events=events, traces=traces,
                          **run_synth(root, args.scenario, events, overrides))
            result["ms_per_trace"] = round(1000 * result["synth_seconds"] / traces, 2)
            results.append(result)
            print(json.dumps(result), flush=True)
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
