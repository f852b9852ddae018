"""Throughput of the vectorised preprocessing chain against obspy's per-trace Stream methods.

The chain is the seed study's: demean -> linear detrend -> 5% cosine taper -> Butterworth bandpass
(4 corners) with a band per record from the instrument x magnitude table. Records are synthetic
three-component traces (noise, an offset, a linear drift and a windowed wavelet at a random onset)
drawn from a fixed seed, generated and processed chunk by chunk so that memory stays bounded; each
chunk goes once through ``preprocess_batch`` and once through obspy (``Stream.detrend``,
``Stream.taper`` and ``Trace.filter`` per trace, since the band differs per record). Only the
processing is timed, not data generation or Stream construction.

The difference is reported as the max over traces of max|vectorised - obspy| / max|obspy|.

    python benchmarks/bench_preprocess.py                     # 10,000 records x 3 x 6000 samples
    python benchmarks/bench_preprocess.py --n-traces 200      # quick check
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import obspy
from tqdm import tqdm

from seisjax.data.preprocess import BANDPASS_TABLE, bandpass_bands, preprocess_batch


def synthetic_records(rng: np.random.Generator, n_records: int, n_samples: int,
                      sampling_rate: float) -> np.ndarray:
    """(n_records, 3, n_samples) float64: noise + offset + drift + a 3-10 Hz wavelet."""
    t = np.arange(n_samples) / sampling_rate
    noise = rng.standard_normal((n_records, 3, n_samples))
    offset = rng.normal(0, 50, (n_records, 3, 1))
    drift = rng.normal(0, 0.05, (n_records, 3, 1)) * t
    onset = rng.uniform(0.2, 0.6, (n_records, 1, 1)) * t[-1]
    freq = rng.uniform(3, 10, (n_records, 1, 1))
    amp = 10 ** rng.uniform(0.5, 2.5, (n_records, 3, 1))
    lag = t - onset
    wavelet = amp * np.sin(2 * np.pi * freq * lag) * np.exp(-np.clip(lag, 0, None) / 3.0) * (lag > 0)
    return noise + offset + drift + wavelet


def obspy_chain(records: np.ndarray, fmin: np.ndarray, fmax: np.ndarray, sampling_rate: float,
                zerophase: bool) -> tuple[obspy.Stream, float]:
    stream = obspy.Stream([obspy.Trace(records[i, c].copy(), header={"sampling_rate": sampling_rate})
                           for i in range(len(records)) for c in range(records.shape[1])])
    start = time.perf_counter()
    stream.detrend("demean")
    stream.detrend("linear")
    stream.taper(max_percentage=0.05, type="cosine")
    for k, trace in enumerate(stream):
        i = k // records.shape[1]
        trace.filter("bandpass", freqmin=fmin[i], freqmax=fmax[i], corners=4, zerophase=zerophase)
    return stream, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-traces", type=int, default=10_000, help="three-component records")
    parser.add_argument("--n-samples", type=int, default=6000)
    parser.add_argument("--sampling-rate", type=float, default=100.0)
    parser.add_argument("--batch-size", type=int, default=1000,
                        help="records per vectorised call (and per generated chunk)")
    parser.add_argument("--zerophase", action="store_true", help="forward-backward filtering")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    instruments = np.array(sorted(BANDPASS_TABLE))
    steps = ("demean", "detrend", {"name": "taper", "max_percentage": 0.05},
             {"name": "bandpass", "corners": 4, "zerophase": args.zerophase})
    time_vec = time_obspy = 0.0
    max_rel = 0.0
    n_bands = set()
    done = 0
    with tqdm(total=args.n_traces, unit="record", desc="chunks") as bar:
        while done < args.n_traces:
            n = min(args.batch_size, args.n_traces - done)
            records = synthetic_records(rng, n, args.n_samples, args.sampling_rate)
            channels = [f"{code}Z" for code in rng.choice(instruments, n)]
            magnitudes = rng.uniform(-0.5, 5.5, n)
            fmin, fmax = bandpass_bands(channels, magnitudes, args.sampling_rate)
            n_bands.update(zip(fmin, fmax))

            start = time.perf_counter()
            ours = preprocess_batch(records, args.sampling_rate, steps, fmin=fmin, fmax=fmax)
            time_vec += time.perf_counter() - start

            stream, elapsed = obspy_chain(records, fmin, fmax, args.sampling_rate, args.zerophase)
            time_obspy += elapsed
            reference = np.stack([tr.data for tr in stream]).reshape(ours.shape)
            diff = np.abs(ours - reference).max(axis=-1) / np.abs(reference).max(axis=-1)
            max_rel = max(max_rel, float(diff.max()))
            done += n
            bar.update(n)

    n_traces = args.n_traces * 3
    print(f"records: {args.n_traces} x 3 components x {args.n_samples} samples at "
          f"{args.sampling_rate} Hz ({n_traces} traces, {len(n_bands)} distinct bands, "
          f"zerophase={args.zerophase}, batch {args.batch_size} records)")
    print(f"vectorised preprocess_batch: {time_vec:8.2f} s  ({n_traces / time_vec:10.0f} traces/s)")
    print(f"obspy per-trace Stream:      {time_obspy:8.2f} s  ({n_traces / time_obspy:10.0f} traces/s)")
    print(f"speed-up: {time_obspy / time_vec:.1f}x")
    print(f"max relative difference (max|diff| / peak per trace): {max_rel:.2e}")


if __name__ == "__main__":
    main()
