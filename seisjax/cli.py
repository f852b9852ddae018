"""`python -m seisjax <command>`: parses arguments, then calls library functions.

Library modules are imported inside the handlers so that `--help` and the data commands start fast
and never pay for importing JAX when they do not use it.
"""

from __future__ import annotations

import argparse
import sys


from seisjax.errors import InputError


# ----------------------------------------------------------------------------- data info
def _add_data_info(sub):
    p = sub.add_parser("info", help="summarise a dataset and plot a few traces",
                       description="Traces, components, sampling rates, splits and value ranges of a "
                                   "SeisBench-format dataset, plus a figure of a few traces.")
    p.add_argument("path", help="dataset directory (metadata.csv + waveforms.hdf5, or chunked)")
    p.add_argument("--figure", default=None,
                   help="where to write the figure (default: ./<dataset name>_overview.png)")
    p.add_argument("--n-traces", type=int, default=6, help="traces shown in the figure")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    def run(args):
        import json

        from seisjax.data.dataset import describe, format_summary

        summary = describe(args.path, figure=args.figure, n_traces=args.n_traces)
        print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))

    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- data build
def _add_data_build(sub):
    p = sub.add_parser("build", help="build a dataset from waveform files, a catalog and stations")
    p.set_defaults(func=lambda args: (_ for _ in ()).throw(InputError("data build: not implemented yet")))


# ----------------------------------------------------------------------------- data synth
def _add_data_synth(sub):
    p = sub.add_parser("synth", help="write a synthetic dataset with ground truth")
    p.set_defaults(func=lambda args: (_ for _ in ()).throw(InputError("data synth: not implemented yet")))


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seisjax",
        description="seisjax: unsupervised deep learning on seismic waveforms (SymAE, spectrogram "
                    "VAEs, LSTM autoencoders, deep embedded clustering) in JAX.")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    data = commands.add_parser("data", help="datasets: inspect, build from files, synthesise")
    data_sub = data.add_subparsers(dest="data_command", metavar="<data command>", required=True)
    _add_data_info(data_sub)
    _add_data_build(data_sub)
    _add_data_synth(data_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (InputError, FileNotFoundError) as err:
        print(f"seisjax {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
