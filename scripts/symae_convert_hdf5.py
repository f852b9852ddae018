#!/usr/bin/env python3
"""Convert an Earthquake-SymAE HDF5 file (/<event>/<pixel>/<station>) into a seisjax dataset.

    python scripts/symae_convert_hdf5.py deep_EQs_dataP.hdf5 --sampling-rate 1 --out runs/symae_data

Each leaf becomes one single-component ("Z") trace with source_id, healpix_pixel and station_code
columns (see seisjax/data/grouping.py: read_symae_hdf5); leaves that are not usable traces are listed
in rejected.csv.
"""

import argparse
import sys

from seisjax.data.grouping import read_symae_hdf5
from seisjax.errors import InputError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the SymAE HDF5 file")
    parser.add_argument("--out", required=True, help="output dataset directory")
    parser.add_argument("--sampling-rate", type=float, default=None,
                        help="samples per second (needed unless the file has a sampling_rate attribute)")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        summary = read_symae_hdf5(args.source, args.out, sampling_rate=args.sampling_rate,
                                  overwrite=args.overwrite, progress=not args.quiet)
    except (InputError, FileNotFoundError) as err:
        print(f"symae_convert_hdf5: error: {err}", file=sys.stderr)
        return 2
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
