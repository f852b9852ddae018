#!/usr/bin/env python3
"""Convert a STEAD folder (waveforms.hdf5 + metadata.csv) into a seisjax / SeisBench dataset.

    python scripts/convert_stead.py ../shared/data/stead50 --out runs/stead50

Components are reordered from STEAD's E, N, Z to Z, N, E; columns get SeisBench names (see
seisjax/data/convert.py). Cite Mousavi et al. (2019) when showing results on STEAD.
"""

import argparse
import sys

from seisjax.data.convert import convert_stead
from seisjax.data.ingest import parse_split
from seisjax.errors import InputError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="STEAD folder holding waveforms.hdf5 and metadata.csv")
    parser.add_argument("--out", required=True, help="output dataset directory")
    parser.add_argument("--hdf5", default=None, help="waveform file if not <source>/waveforms.hdf5")
    parser.add_argument("--metadata", default=None, help="metadata CSV if not <source>/metadata.csv")
    parser.add_argument("--split", default="train=0.8,dev=0.1,test=0.1",
                        help="split fractions by event (source_id) hash, or 'none'")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    try:
        report = convert_stead(args.source, args.out, hdf5=args.hdf5, metadata=args.metadata,
                               split=parse_split(args.split) or {}, overwrite=args.overwrite,
                               progress=not args.quiet)
    except (InputError, FileNotFoundError) as err:
        print(f"convert_stead: error: {err}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
