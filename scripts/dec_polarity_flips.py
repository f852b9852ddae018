#!/usr/bin/env python3
"""Write a first-motion polarity dataset from real records: each trace P-aligned, and its sign-flipped copy.

    python scripts/convert_stead.py ../shared/data/stead50 --out runs/stead50 --split none
    python scripts/convert_phasenet.py ../shared/data/phasenet --out runs/phasenet --split none
    python scripts/dec_polarity_flips.py runs/stead50 runs/phasenet runs/alaska_data --out runs/polarity_flips

(``runs/alaska_data``: the MTUQ Alaska event built with the README's ``python -m seisjax data build``
command.)

For every trace with a P pick: the vertical component from ``--pre-s`` before P to ``--post-s``
after it, bandpassed ``--band`` Hz (4-pole Butterworth, causal: a zero-phase filter would put
energy of the onset before P and blur the first motion; "none" to skip) and resampled to ``--rate``
Hz (polyphase, scipy), written twice: as recorded and multiplied by -1, one after the other. Columns (SeisBench names where there is one):

- ``trace_pair``: the pair's number; ``trace_flipped``: 0 as recorded, 1 the flipped copy;
- ``trace_polarity``: +1 up / -1 down. Within a pair the two labels are opposite EXACTLY (by
  construction); the label of the recorded trace is the sign of its first motion measured on it
  (mean of the first ``--onset-samples`` samples after P minus the mean of the second before P), an
  estimate that a wrong pick or an emergent onset can get wrong. ``trace_polarity_source`` says so;
- ``trace_snr_db``: 20 log10 of RMS(P..P+2 s) / RMS(P-2 s..P) on the vertical, so that the
  polarity study's SNR bins can be scored;
- ``trace_onset_snr``: |first-motion amplitude| (the estimate above) over the standard deviation
  of the second before P: how far the estimated label stands above the noise. Below ~3 the label is
  close to a coin flip (on the shared data a quarter of the traces are below 1, and averaging 10
  instead of 5 samples after P changes 44 % of the labels); ``python -m seisjax eval`` scores the
  traces at or above ``data.min_onset_snr`` separately (``unambiguous`` in clustering.json);
- ``trace_p_arrival_sample`` (the window's P sample), ``trace_sampling_rate_hz``, ``source_dataset``,
  and the source's station and event columns where present.

The pair split rate (the fraction of pairs whose two copies land in different clusters;
``python -m seisjax eval`` reports it when ``data.pair_column = "trace_pair"``) is exact but only
necessary: a clustering that is odd under x -> -x splits every pair whatever feature it uses. The
accuracy against ``trace_polarity`` is the score that matters, and it carries the estimate's errors. A trace that cannot be used
(no P pick, no vertical component, non-finite samples, window outside the record, flat) is listed
with its reason in ``<out>/rejected.csv`` and skipped; the job goes on.
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import resample_poly
from tqdm.auto import tqdm

from seisjax.data.dataset import Dataset, DatasetWriter
from seisjax.data.preprocess import bandpass
from seisjax.errors import InputError

KEEP_COLUMNS = ("source_id", "source_magnitude", "source_latitude_deg", "source_longitude_deg", "source_depth_km",
                "station_network_code", "station_code", "path_ep_distance_km")


def _vertical_index(order: str) -> int | None:
    return order.index("Z") if "Z" in order else None


def polarity_windows(waveform_z: np.ndarray, p_sample: float, rate: float, *, out_rate: float, pre_s: float,
                     post_s: float, onset_samples: int, band=(1.0, 20.0)) -> tuple[np.ndarray, int, float, float, float]:
    """One vertical trace -> ``(window at out_rate, P sample in it, first-motion sign, SNR dB, onset SNR)``
    (onset SNR: |first-motion amplitude| / standard deviation of the second before P).
    Raises ValueError with the reason when the trace cannot be used."""
    x = np.asarray(waveform_z, np.float64)
    if not np.isfinite(x).all():
        raise ValueError("non-finite samples")
    ratio = Fraction(out_rate / rate).limit_denominator(1000)
    pre, post = round(pre_s * rate), round(post_s * rate)
    p = round(p_sample)
    if p - pre < 0 or p + post > len(x):
        raise ValueError(f"window {-pre_s:g}..{post_s:g} s around P (sample {p_sample:g}) leaves the record "
                         f"of {len(x)} samples")
    # up to 5 s more before (the causal filter's transient) and 1 s after (the resampler's edge)
    pad = min(round(5 * rate), p - pre)
    piece = x[p - pre - pad:min(p + post + round(rate), len(x))]
    piece = piece - piece[:pad + pre].mean()
    if band is not None:
        piece = bandpass(piece[None], band[0], min(band[1], 0.45 * rate), rate, corners=4, zerophase=False)[0]
    if ratio != 1:
        piece = resample_poly(piece, ratio.numerator, ratio.denominator)
    out_pad = round(pad * out_rate / rate)
    window = piece[out_pad:out_pad + round((pre_s + post_s) * out_rate)]
    p_out = round(pre_s * out_rate)
    if not np.any(window != 0):
        raise ValueError("flat window")
    before = window[max(p_out - int(out_rate), 0):p_out]
    onset = window[p_out + 1:p_out + 1 + onset_samples].mean() - before.mean()
    sign = 1.0 if onset >= 0 else -1.0
    onset_snr = abs(onset) / before.std() if before.std() > 0 else np.inf
    noise = window[max(p_out - int(2 * out_rate), 0):p_out]
    signal = window[p_out:p_out + int(2 * out_rate)]
    rms_noise = np.sqrt(np.mean((noise - noise.mean()) ** 2))
    snr_db = 20 * np.log10(np.sqrt(np.mean(signal ** 2)) / rms_noise) if rms_noise > 0 else np.inf
    return window.astype(np.float32), p_out, sign, float(snr_db), float(onset_snr)


def make_polarity_flips(sources, out_dir, *, rate: float = 100.0, pre_s: float = 2.0, post_s: float = 4.0,
                        onset_samples: int = 5, band=(1.0, 20.0), overwrite: bool = False,
                        progress: bool = True) -> dict:
    """Write the flipped-pair dataset (see the module docstring); returns ``{"pairs", "rejected"}``."""
    out_dir = Path(out_dir)
    rejected, pairs = [], 0
    with DatasetWriter(out_dir, component_order="Z", sampling_rate=rate, dimension_order="CW",
                       data_format_attrs={"unit": "as in the sources, per trace max-abs scale free"},
                       overwrite=overwrite) as writer:
        for source in sources:
            ds = Dataset(source)
            z = _vertical_index(ds.component_order or "")
            if z is None:
                raise InputError(f"{source}: no Z component in component order {ds.component_order!r}")
            meta = ds.metadata
            for row in tqdm(range(len(meta)), desc=f"pairs from {Path(source).name}", disable=not progress):
                rec = meta.iloc[row]
                name = str(rec.get("trace_name", f"row {row}"))
                p = pd.to_numeric(rec.get("trace_p_arrival_sample"), errors="coerce")
                trace_rate = pd.to_numeric(rec.get("trace_sampling_rate_hz", ds.sampling_rate), errors="coerce")
                if not np.isfinite(p):
                    rejected.append((str(source), name, "no P pick"))
                    continue
                if not (np.isfinite(trace_rate) and trace_rate > 0):
                    trace_rate = ds.sampling_rate
                if not trace_rate:
                    rejected.append((str(source), name, "no sampling rate"))
                    continue
                try:
                    wave = ds.get_waveforms(row)[z]
                    window, p_out, sign, snr_db, onset_snr = polarity_windows(
                        wave, float(p), float(trace_rate), out_rate=rate, pre_s=pre_s, post_s=post_s,
                        onset_samples=onset_samples, band=band)
                except Exception as err:  # noqa: BLE001 - one bad trace never stops the job
                    rejected.append((str(source), name, str(err)))
                    continue
                common = {c: rec[c] for c in KEEP_COLUMNS if c in meta.columns and pd.notna(rec[c])}
                common.update(trace_p_arrival_sample=p_out, trace_sampling_rate_hz=rate, trace_pair=pairs,
                              trace_snr_db=round(snr_db, 4), trace_onset_snr=round(onset_snr, 4),
                              source_dataset=Path(source).name,
                              source_trace_name=name, trace_polarity_source="first-motion estimate (flipped: exact opposite)")
                for flipped in (0, 1):
                    factor = -1.0 if flipped else 1.0
                    writer.add((factor * window)[None], {**common, "trace_flipped": flipped,
                                                          "trace_polarity": int(factor * sign)})
                pairs += 1
            ds.close()
    pd.DataFrame(rejected, columns=["source", "trace_name", "reason"]).to_csv(out_dir / "rejected.csv", index=False)
    return {"pairs": pairs, "rejected": len(rejected)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="seisjax / SeisBench dataset folders with P picks")
    parser.add_argument("--out", required=True, help="output dataset directory")
    parser.add_argument("--rate", type=float, default=100.0, help="output sampling rate (Hz)")
    parser.add_argument("--pre-s", type=float, default=2.0, help="seconds kept before P")
    parser.add_argument("--post-s", type=float, default=4.0, help="seconds kept after P")
    parser.add_argument("--onset-samples", type=int, default=5,
                        help="samples after P whose mean gives the recorded trace's first-motion sign")
    parser.add_argument("--band", default="1,20", help="bandpass FMIN,FMAX in Hz (causal), or 'none'")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        band = None if args.band.lower() == "none" else tuple(float(v) for v in args.band.split(","))
        if band is not None and len(band) != 2:
            raise InputError(f"--band {args.band!r}: expected FMIN,FMAX or 'none'")
        report = make_polarity_flips(args.sources, args.out, rate=args.rate, pre_s=args.pre_s, post_s=args.post_s,
                                     onset_samples=args.onset_samples, band=band, overwrite=args.overwrite,
                                     progress=not args.quiet)
    except (InputError, FileNotFoundError, ValueError) as err:
        print(f"dec_polarity_flips: error: {err}", file=sys.stderr)
        return 2
    print(f"{report['pairs']} pairs ({2 * report['pairs']} traces) in {args.out}; {report['rejected']} trace(s) "
          f"rejected (see {Path(args.out) / 'rejected.csv'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
