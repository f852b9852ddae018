#!/usr/bin/env python3
"""Peak memory of `python -m seisjax data build` as the number of input traces grows.

Writes N traces of miniSEED input (3 components per station, all stations of one event in one
file, int32 samples: Gaussian noise plus a P wavelet), a CSV catalog, a CSV of stations and a CSV of
P picks, then runs `data build` in a subprocess and reports its peak resident memory (ru_maxrss of
the child) and wall time. Target: 100,000 traces under 1.5 GB.

    python benchmarks/bench_build_memory.py --traces 100000
    python benchmarks/bench_build_memory.py --traces 10000 30000   # several sizes: memory stays flat

Options: --stations-per-file, --seconds, --rate; --theoretical drops the picks so that every P comes
from TauP (slower). Input and output go to a temporary folder (or --workdir) deleted afterwards
unless --keep.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import obspy


def make_inputs(folder: Path, n_traces: int, stations_per_file: int, seconds: float, rate: float, seed: int = 0,
                vary_length: bool = False):
    """Input files for ``n_traces`` traces; returns (waveform dir, catalog, stations, picks).
    ``vary_length``: each station's traces get 0-99 extra samples, as real event files do, so that
    records differ in length."""
    rng = np.random.default_rng(seed)
    n_stations_total = math.ceil(n_traces / 3)
    n_events = math.ceil(n_stations_total / stations_per_file)
    n_samples = int(seconds * rate)
    wf = folder / "waveforms"
    wf.mkdir(parents=True)
    codes = [f"S{i:03d}" for i in range(stations_per_file)]
    # stations on a ring 50-150 km from a common epicentre
    station_rows = ["network,station,location,latitude,longitude,elevation_m"]
    for i, code in enumerate(codes):
        distance_deg = 0.45 + 0.9 * i / max(stations_per_file - 1, 1)
        azimuth = 2 * np.pi * i / stations_per_file
        station_rows.append(f"XX,{code},,{40 + distance_deg * np.cos(azimuth):.5f},"
                            f"{20 + distance_deg * np.sin(azimuth) / np.cos(np.radians(40)):.5f},100")
    (folder / "stations.csv").write_text("\n".join(station_rows) + "\n")
    event_rows = ["event_id,origin_time,latitude,longitude,depth_km,magnitude,magnitude_type"]
    pick_rows = ["event_id,network,station,location,phase,time_after_origin_s"]
    t = np.arange(n_samples) / rate
    wavelet = np.exp(-((t - 1.0) / 0.3) ** 2) * np.sin(2 * np.pi * 3 * t) * 2000
    left = n_stations_total
    for e in range(n_events):
        origin = obspy.UTCDateTime(2020, 1, 1) + 3600 * e
        event_rows.append(f"E{e:06d},{origin},40.0,20.0,10.0,{rng.uniform(1, 4):.2f},ML")
        stream = obspy.Stream()
        for code in codes[:min(stations_per_file, left)]:
            p_index = int(10 * rate)  # data start 5 s after the origin, P 15 s after it
            pick_rows.append(f"E{e:06d},XX,{code},,P,15.0")
            n_here = n_samples + (int(rng.integers(0, 100)) if vary_length else 0)
            for comp in "ZNE":
                data = rng.normal(0, 100, n_here)
                data[p_index:n_samples] += wavelet[: n_samples - p_index]
                stream += obspy.Trace(data.astype(np.int32), header=dict(
                    network="XX", station=code, location="", channel=f"HH{comp}", sampling_rate=rate,
                    starttime=origin + 5.0))
        left -= stations_per_file
        stream.write(str(wf / f"E{e:06d}.mseed"), format="MSEED")
    (folder / "events.csv").write_text("\n".join(event_rows) + "\n")
    (folder / "picks.csv").write_text("\n".join(pick_rows) + "\n")
    return wf, folder / "events.csv", folder / "stations.csv", folder / "picks.csv"


def run_build(folder: Path, theoretical: bool) -> dict:
    wf, events, stations, picks = (folder / "waveforms", folder / "events.csv", folder / "stations.csv",
                                   folder / "picks.csv")
    command = [sys.executable, "-m", "seisjax", "data", "build", "--waveforms", str(wf),
               "--catalog", str(events), "--stations", str(stations), "--out", str(folder / "dataset"),
               "--quiet", "--overwrite"]
    if not theoretical:
        command += ["--picks", str(picks)]
    started = time.perf_counter()
    with open(folder / "build_stderr.txt", "w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        # wait4 gives this child's own resource usage (ru_maxrss in kilobytes on Linux)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    peak_kb = usage.ru_maxrss
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"data build failed:\n{(folder / 'build_stderr.txt').read_text()[-3000:]}")
    report = json.loads((folder / "dataset" / "build_report.json").read_text())
    return dict(peak_rss_mb=round(peak_kb / 1024, 1), build_seconds=round(seconds, 1),
                traces=report["n_traces"], traces_accepted=report["n_traces_accepted"], records=report["n_records"],
                output_mb=round(sum(p.stat().st_size for p in (folder / "dataset").iterdir()) / 2**20, 1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, nargs="+", default=[100000], help="input traces (several: one run each)")
    parser.add_argument("--stations-per-file", type=int, default=50, help="stations of one event per file")
    parser.add_argument("--seconds", type=float, default=60.0, help="trace length")
    parser.add_argument("--rate", type=float, default=20.0, help="sampling rate, Hz")
    parser.add_argument("--theoretical", action="store_true", help="no picks: P from TauP for every record")
    parser.add_argument("--vary-length", action="store_true",
                        help="records of different lengths (0-99 extra samples per station)")
    parser.add_argument("--workdir", default=None, help="folder for inputs and outputs (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args(argv)
    results = []
    for n in args.traces:
        root = Path(tempfile.mkdtemp(prefix=f"seisjax_bench_{n}_", dir=args.workdir))
        try:
            started = time.perf_counter()
            make_inputs(root, n, args.stations_per_file, args.seconds, args.rate, vary_length=args.vary_length)
            generate_s = time.perf_counter() - started
            result = dict(n_traces=n, vary_length=args.vary_length, generate_seconds=round(generate_s, 1), **run_build(root, args.theoretical))
            results.append(result)
            print(json.dumps(result), flush=True)
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
