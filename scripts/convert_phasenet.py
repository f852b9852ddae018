#!/usr/bin/env python3
"""Convert a PhaseNet folder (waveform.csv + waveform_train/*.npz) into a seisjax / SeisBench dataset.

    python scripts/convert_phasenet.py ../shared/data/phasenet --out runs/phasenet

Components are reordered from E, N, Z to Z, N, E. Single-channel records (e.g. EHZ) are kept with
zero N/E rows and trace_components="Z" (or skipped with --single-channel skip). Cite Zhu & Beroza
(2019) when showing results on PhaseNet data.
"""

import argparse
import sys

from seisjax.data.convert import convert_phasenet
from seisjax.data.ingest import parse_split
from seisjax.errors import InputError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="PhaseNet folder holding waveform.csv and waveform_train/")
    parser.add_argument("--out", required=True, help="output dataset directory")
    parser.add_argument("--csv", default=None, help="record list if not <source>/waveform.csv")
    parser.add_argument("--waveform-dir", default=None, help="npz folder if not <source>/waveform_train")
    parser.add_argument("--single-channel", choices=("zeros", "skip"), default="zeros",
                        help="keep single-channel records with zero N/E rows (default) or skip them")
    parser.add_argument("--split", default="train=0.8,dev=0.1,test=0.1",
                        help="split fractions by file-name hash, or 'none'")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    try:
        report = convert_phasenet(args.source, args.out, csv_file=args.csv, waveform_dir=args.waveform_dir,
                                  single_channel=args.single_channel, split=parse_split(args.split) or {},
                                  overwrite=args.overwrite, progress=not args.quiet)
    except (InputError, FileNotFoundError) as err:
        print(f"convert_phasenet: error: {err}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
