#!/usr/bin/env python3
"""Download events and waveforms around the P arrival from an FDSN service, ready for `data build`.

    python scripts/download_fdsn.py --provider IRIS --start 2011-03-11 --end 2011-03-12 \\
        --min-magnitude 7 --networks II,IU --channels BH? --max-distance 90 --out runs/fdsn --build

Needs internet access. Writes OUT/events.xml, OUT/stations.xml, OUT/waveforms/<event>/*.mseed and
OUT/requests.csv; with --build also OUT/dataset (python -m seisjax data build on those files).
"""

import argparse
import sys
from pathlib import Path

from obspy.clients.fdsn import Client

from seisjax.data.fdsn import DownloadRequest, download
from seisjax.data.ingest import BuildConfig, build_dataset
from seisjax.errors import InputError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="IRIS", help="FDSN provider name or base URL (obspy Client)")
    parser.add_argument("--start", required=True, help="event start time (ISO 8601, UTC)")
    parser.add_argument("--end", required=True, help="event end time (ISO 8601, UTC)")
    parser.add_argument("--min-magnitude", type=float, default=None, help="minimum event magnitude")
    parser.add_argument("--max-magnitude", type=float, default=None, help="maximum event magnitude")
    parser.add_argument("--region", type=float, nargs=4, default=None,
                        metavar=("MINLAT", "MAXLAT", "MINLON", "MAXLON"), help="event box")
    parser.add_argument("--circle", type=float, nargs=3, default=None, metavar=("LAT", "LON", "RADIUS_DEG"),
                        help="event circle (alternative to --region)")
    parser.add_argument("--min-depth", type=float, default=None, help="minimum event depth, km")
    parser.add_argument("--max-depth", type=float, default=None, help="maximum event depth, km")
    parser.add_argument("--event-limit", type=int, default=None, help="at most this many events")
    parser.add_argument("--networks", default="*", help="network codes, comma-separated, wildcards allowed")
    parser.add_argument("--stations", default="*", help="station codes")
    parser.add_argument("--locations", default="*", help="location codes (-- for empty)")
    parser.add_argument("--channels", default="HH?,BH?", help="channel codes")
    parser.add_argument("--min-distance", type=float, default=0.0, help="minimum epicentral distance, degrees")
    parser.add_argument("--max-distance", type=float, default=90.0, help="maximum epicentral distance, degrees")
    parser.add_argument("--window-before", type=float, default=60.0, help="seconds before the TauP P arrival")
    parser.add_argument("--window-after", type=float, default=240.0, help="seconds after the TauP P arrival")
    parser.add_argument("--velocity-model", default="iasp91", help="TauP model for the P arrival")
    parser.add_argument("--bulk-size", type=int, default=500, help="waveform lines per bulk request")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--build", action="store_true",
                        help="then build OUT/dataset from the download (components ZNE, default quality filter)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    box = dict(zip(("minlatitude", "maxlatitude", "minlongitude", "maxlongitude"), args.region or ()))
    circle = dict(zip(("latitude", "longitude", "maxradius"), args.circle or ()))
    request = DownloadRequest(
        starttime=args.start, endtime=args.end, minmagnitude=args.min_magnitude, maxmagnitude=args.max_magnitude,
        mindepth=args.min_depth, maxdepth=args.max_depth, event_limit=args.event_limit, networks=args.networks,
        stations=args.stations, locations=args.locations, channels=args.channels,
        min_distance_deg=args.min_distance, max_distance_deg=args.max_distance,
        window_before=args.window_before, window_after=args.window_after,
        velocity_model=args.velocity_model, bulk_size=args.bulk_size, **box, **circle)
    try:
        client = Client(args.provider)  # the only place that touches the network
        report = download(request, args.out, client, progress=not args.quiet)
        print(report)
        if args.build:
            out = Path(args.out)
            print(build_dataset([str(out / "waveforms" / "**" / "*.mseed")], out / "dataset",
                                catalog=out / "events.xml", stations=out / "stations.xml",
                                config=BuildConfig(progress=not args.quiet)))
    except (InputError, FileNotFoundError) as err:
        print(f"download_fdsn: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
