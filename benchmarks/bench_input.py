"""Throughput of the host input pipeline (seisjax.data.batches.BatchIterator) on an on-disk dataset.

Builds a dataset of random three-component traces (or takes one with --data), then iterates batches
with a realistic transform (float32, demean, divide by the standard deviation per component) and
reports batches/s and examples/s with and without prefetch. With --step-ms the consumer also sleeps
that long per batch, standing in for a device train step, to show how much of the read prefetch
hides (the GIL is released while sleeping, as it is while JAX waits on a device).

    python benchmarks/bench_input.py                      # 20,000 x (3, 6000) float32, batches of 64
    python benchmarks/bench_input.py --step-ms 20 --batches 200
    python benchmarks/bench_input.py --data path/to/dataset --keep

Numbers are for a warm page cache: the first pass over a freshly built dataset reads from memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from seisjax.data.batches import BatchIterator
from seisjax.data.dataset import Dataset, DatasetWriter


def build_dataset(path: Path, traces: int, samples: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, component_order="ZNE", sampling_rate=100.0, overwrite=True,
                       data_format_attrs={"unit": "counts"}) as writer:
        for i in tqdm(range(traces), desc="writing traces", unit="trace"):
            wave = rng.standard_normal((3, samples), dtype=np.float32) * 100.0 + rng.normal(0, 10, (3, 1))
            writer.add(wave.astype(np.float32), {"source_id": f"ev{i}", "split": "train"})


def normalise(waveforms: np.ndarray, metadata) -> dict[str, np.ndarray]:
    """Demean and scale every component to unit standard deviation (vectorised over the batch)."""
    x = waveforms.astype(np.float32, copy=False)
    x = x - x.mean(axis=-1, keepdims=True)
    x /= x.std(axis=-1, keepdims=True) + np.float32(1e-6)
    return {"waveforms": x}


def measure(dataset: Dataset, *, batch: int, batches: int, prefetch: int, step_ms: float, seed: int,
            warmup: int = 3) -> dict:
    with BatchIterator(dataset, global_batch_size=batch, seed=seed, transform=normalise, prefetch=prefetch,
                       process_index=0, process_count=1) as iterator:
        for _ in range(warmup):  # starts the thread and fills the queue before timing
            next(iterator)
        start = time.perf_counter()
        for _ in tqdm(range(batches), desc=f"prefetch={prefetch} step={step_ms:g} ms", unit="batch", leave=False):
            item = next(iterator)
            if step_ms:
                time.sleep(step_ms / 1000.0)
        elapsed = time.perf_counter() - start
    assert item["waveforms"].shape[0] == batch
    return {"prefetch": prefetch, "step_ms": step_ms, "batches": batches, "seconds": round(elapsed, 3),
            "batches_per_s": round(batches / elapsed, 2), "examples_per_s": round(batches * batch / elapsed, 1)}


def stage_times(dataset: Dataset, *, batch: int, batches: int, seed: int) -> dict:
    """Mean time per batch of the iterator's read alone (no transform, no prefetch), of the
    transform alone, and of one Dataset.get_waveforms call with the batch's sorted indices (the
    read path the iterator avoids, for comparison)."""
    with BatchIterator(dataset, global_batch_size=batch, seed=seed + 1, prefetch=0, process_index=0,
                       process_count=1) as iterator:
        t0 = time.perf_counter()
        raw = [next(iterator)["waveforms"] for _ in range(batches)]
        read = (time.perf_counter() - t0) / batches
    t0 = time.perf_counter()
    for waves in raw:
        normalise(waves, None)
    transform = (time.perf_counter() - t0) / batches
    rng = np.random.default_rng(seed + 2)
    t0 = time.perf_counter()
    for _ in range(batches):
        dataset.get_waveforms(np.sort(rng.choice(len(dataset), batch, replace=False)).tolist())
    one_call = (time.perf_counter() - t0) / batches
    return {"read_ms": round(1e3 * read, 2), "transform_ms": round(1e3 * transform, 2),
            "get_waveforms_one_call_ms": round(1e3 * one_call, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="existing dataset (default: build one)")
    parser.add_argument("--out", type=Path, default=None, help="where to build the dataset (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the built dataset")
    parser.add_argument("--traces", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=150, help="timed batches per configuration")
    parser.add_argument("--prefetch", type=int, default=2, help="queue depth of the prefetch run")
    parser.add_argument("--step-ms", type=float, default=[0.0], nargs="+",
                        help="simulated device step(s) per batch, in ms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    temp = None
    if args.data is None:
        path = args.out or Path(temp := tempfile.mkdtemp(prefix="seisjax_bench_input_")) / "dataset"
        t0 = time.perf_counter()
        build_dataset(path, args.traces, args.samples)
        print(f"built {args.traces} x (3, {args.samples}) float32 traces in {time.perf_counter() - t0:.1f} s "
              f"at {path}")
    else:
        path = args.data
    try:
        with Dataset(path) as dataset:
            print(f"dataset: {len(dataset)} traces, first trace {dataset.get_waveforms(0).shape} "
                  f"{dataset.get_waveforms(0).dtype}; batch {args.batch}")
            stages = stage_times(dataset, batch=args.batch, batches=20, seed=args.seed)
            print(f"per batch: iterator read {stages['read_ms']} ms, transform {stages['transform_ms']} ms; "
                  f"(one get_waveforms call on the sorted batch: {stages['get_waveforms_one_call_ms']} ms)")
            results = []
            for step_ms in args.step_ms:
                for prefetch in (0, args.prefetch):
                    result = measure(dataset, batch=args.batch, batches=args.batches, prefetch=prefetch,
                                     step_ms=step_ms, seed=args.seed)
                    results.append(result)
                    print(f"prefetch={prefetch:<2} step={step_ms:>5g} ms: {result['batches_per_s']:8.2f} batches/s "
                          f"{result['examples_per_s']:9.1f} examples/s  ({result['batches']} batches in "
                          f"{result['seconds']} s)")
        if args.json:
            args.json.write_text(json.dumps({"stages": stages, "runs": results, "batch": args.batch,
                                             "dataset": str(path)}, indent=2))
    finally:
        if temp is not None and not args.keep:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
