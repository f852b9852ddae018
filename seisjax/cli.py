"""`python -m seisjax <command>`: parses arguments, then calls library functions.

Library modules are imported inside the handlers (each marked ``# lazy``) so that `--help` and the
data commands start fast and never pay for importing JAX when they do not use it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seisjax.errors import InputError
from seisjax.malloc import retain_freed_memory, wants_retained_memory


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
        from seisjax.data.dataset import describe, format_summary  # lazy

        summary = describe(args.path, figure=args.figure, n_traces=args.n_traces)
        print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))

    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- data build
def _add_data_build(sub):
    p = sub.add_parser(
        "build", help="build a dataset from waveform files, a catalog and stations",
        description="Any obspy-readable waveform files (miniSEED, SAC, GSE2, ...) + an event catalog "
                    "(QuakeML, GSE2 bulletin, CSV; or SAC headers) + station coordinates (StationXML, "
                    "CSV; or SAC headers) + picks -> a SeisBench-format dataset with one record per "
                    "(event, station, location, instrument), quality metrics, rejected.csv and "
                    "build_report.json. File formats and columns: seisjax/data/sources.py and ingest.py.")
    p.add_argument("--waveforms", nargs="+", required=True, metavar="PATH_OR_GLOB",
                   help="waveform files, directories (their files) or quoted glob patterns")
    p.add_argument("--catalog", nargs="+", default=None, metavar="FILE",
                   help="event catalog(s): QuakeML, GSE2.0 bulletin or CSV (event_id, origin_time, "
                        "latitude, longitude, depth_km, magnitude, magnitude_type); default: SAC headers")
    p.add_argument("--stations", nargs="+", default=None, metavar="FILE",
                   help="station coordinates: StationXML, FDSN station text or CSV (network, station, "
                        "location, latitude, longitude, elevation_m); default: SAC headers")
    p.add_argument("--picks", nargs="+", default=None, metavar="FILE",
                   help="phase picks: QuakeML, GSE2.0 bulletin, CSV (network, station, location, phase, "
                        "time or time_after_origin_s, event_id) or MTUQ picks.dat")
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--components", default="ZNE",
                   help="component order of the output, e.g. ZNE (default) or ZRT for R/T/Z files")
    p.add_argument("--component-aliases", default="", metavar="X=Y[,...]",
                   help="map channel letters to components, e.g. 1=N,2=E (no rotation is done)")
    p.add_argument("--fill-missing", choices=("reject", "zeros"), default="reject",
                   help="a record missing a component is rejected (default) or zero-filled; "
                        "trace_components lists the real ones")
    p.add_argument("--snr-min", type=float, default=1.5,
                   help="keep records whose max SNR over components exceeds this; negative: no SNR test")
    p.add_argument("--max-gaps", type=int, default=0, help="gaps allowed per component (-1: any)")
    p.add_argument("--max-overlaps", type=int, default=0, help="overlaps allowed per component (-1: any)")
    p.add_argument("--window-before", type=float, default=None, metavar="S",
                   help="record starts S seconds before P (default: start of the components' common span)")
    p.add_argument("--window-after", type=float, default=None, metavar="S",
                   help="record ends S seconds after P (default: end of the common span)")
    p.add_argument("--noise-window", type=float, nargs=2, default=[-5.0, 0.0], metavar=("START", "END"),
                   help="SNR noise window, seconds relative to P (default -5 0)")
    p.add_argument("--signal-window", type=float, nargs=2, default=[0.0, 5.0], metavar=("START", "END"),
                   help="SNR signal window, seconds relative to P (default 0 5)")
    p.add_argument("--min-duration", type=float, default=0.0, metavar="S",
                   help="records shorter than this are rejected as too_short")
    p.add_argument("--no-theoretical", action="store_true",
                   help="do not use TauP arrivals where a pick is missing (reject instead)")
    p.add_argument("--theoretical-s", action="store_true",
                   help="also use TauP S arrivals where an S pick is missing (about 25 ms per record)")
    p.add_argument("--velocity-model", default="iasp91", help="TauP model for theoretical arrivals")
    p.add_argument("--max-lag", type=float, default=1800.0, metavar="S",
                   help="an event matches data starting up to S seconds after its origin")
    p.add_argument("--sac-reference-is-origin", action="store_true",
                   help="SAC files without an origin time 'o': take their reference time as the origin")
    p.add_argument("--split", default="train=0.8,dev=0.1,test=0.1",
                   help="split fractions by event hash, NAME=FRACTION[,...], or 'none' (no split column)")
    p.add_argument("--dtype", default="float32", help="sample type of the stored waveforms")
    p.add_argument("--unit", default="counts", help="unit written to data_format (e.g. counts, m/s)")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    def run(args):
        from seisjax.data.ingest import BuildConfig, build_dataset, parse_split  # lazy

        aliases = {}
        for part in filter(None, args.component_aliases.split(",")):
            key, sep, value = part.partition("=")
            if not sep or len(key.strip()) != 1 or len(value.strip()) != 1:
                raise InputError(f"--component-aliases: expected X=Y[,...], got {args.component_aliases!r}")
            aliases[key.strip().upper()] = value.strip().upper()
        config = BuildConfig(
            components=args.components.upper(), component_aliases=aliases, fill_missing=args.fill_missing,
            snr_min=None if args.snr_min < 0 else args.snr_min,
            max_gaps=None if args.max_gaps < 0 else args.max_gaps,
            max_overlaps=None if args.max_overlaps < 0 else args.max_overlaps,
            noise_window=tuple(args.noise_window), signal_window=tuple(args.signal_window),
            window_before=args.window_before, window_after=args.window_after,
            min_duration_s=args.min_duration, theoretical_arrivals=not args.no_theoretical,
            theoretical_s=args.theoretical_s, sac_reference_is_origin=args.sac_reference_is_origin,
            velocity_model=args.velocity_model, max_lag_s=args.max_lag, split=parse_split(args.split),
            dtype=args.dtype, unit=args.unit, overwrite=args.overwrite, progress=not args.quiet)
        report = build_dataset(args.waveforms, args.out, catalog=args.catalog, stations=args.stations,
                               picks=args.picks, config=config)
        print(report)

    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- data synth
def _add_data_synth(sub):
    p = sub.add_parser("synth", help="write a synthetic dataset with ground truth",
                       description="Physics-based synthetic seismograms (TauP travel times, double-couple "
                                   "radiation, attenuation, Peterson noise at a drawn SNR) written as a "
                                   "SeisBench-format dataset plus truth.h5, config.json and figures/. "
                                   "Deterministic for a config (its seed included); the physics is "
                                   "documented in seisjax/data/synthetic/. Any key of the scenario's "
                                   "config is set with --config.KEY=VALUE, e.g. --config.events=50 "
                                   "--config.seed=1 --config.noise.snr=(2,20).")
    _overrides_accepted(p)
    p.add_argument("--scenario", required=True, choices=("teleseismic-p", "local"),
                   help="teleseismic-p: deep earthquakes recorded at hundreds of stations at 30-90 degrees "
                        "(vertical P, for SymAE); local: three-component local and teleseismic records on "
                        "a fixed network of named stations (for clustering and the VAEs)")
    p.add_argument("--out", help="output dataset directory (required unless --show-config)")
    p.add_argument("--no-figure", action="store_true", help="do not write figures/synthetic_<scenario>.png")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset that exists in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--show-config", action="store_true",
                   help="print the scenario's resolved config (defaults plus overrides) as JSON and exit: "
                        "every key that --config. accepts")

    def run(args):
        from seisjax.config import parse_override_args  # lazy
        from seisjax.data.synthetic import (  # lazy
            read_truth,
            scenario_config,
            synthesize,
        )

        config = scenario_config(args.scenario, parse_override_args(args.config_overrides))
        if args.show_config:
            print(config.to_json(indent=2))
            return
        if not args.out:
            raise InputError("data synth: --out DIR is required")

        out = synthesize(config, args.out, figure=not args.no_figure, progress=not args.quiet,
                         overwrite=args.overwrite)
        attrs = read_truth(out)["attrs"]
        print(f"wrote {attrs['n_traces']} traces of {attrs['n_events']} {args.scenario} events (seed {config.seed}) "
              f"to {out}")
        print(f"  events per split: {json.loads(attrs['events_per_split'])}")
        print(f"  dataset: {out / 'metadata.csv'}, {out / 'waveforms.hdf5'}")
        print(f"  truth:   {out / 'truth.h5'}   config: {out / 'config.json'}")
        if not args.no_figure:
            print(f"  figure:  {out / 'figures' / f'synthetic_{args.scenario}.png'}")

    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- demo
def _add_demo(commands):
    p = commands.add_parser("demo", help="the main job on built-in synthetic data",
                            description="SymAE end to end on synthetic teleseismic-p data: generate it "
                                        "with its ground truth, train the quick variant, extract source "
                                        "time functions, score them and the classical baselines against "
                                        "the truth, and write the figures. Any key of the SymAE config "
                                        "(experiments/symae.py) is set with --config.KEY=VALUE, the data's "
                                        "with --config.data.synthetic.KEY=VALUE, e.g. "
                                        "--config.data.synthetic.noise.snr=(0.2,2) for noisier records.")
    p.add_argument("--workdir", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the data and the training (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace datasets already in the workdir")
    p.add_argument("--variant", default="quick",
                   help="SymAE training: quick (default, minutes), medium (7x the steps, about 3x the time), "
                        "long (33x the steps, about 20 minutes on 2 cores; the best) or xlong (131x, for a GPU; "
                        "overfits the 24 events)")
    _overrides_accepted(p)

    def run(args):
        from seisjax.config import parse_override_args  # lazy
        from seisjax.symae.demo import run as run_demo  # lazy

        run_demo(args.workdir, seed=args.seed, overwrite=args.overwrite,
                 variant=args.variant, overrides=parse_override_args(args.config_overrides))

    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- train / eval / bench
class _ConfigOverrideParser(argparse.ArgumentParser):
    """Takes ``--config.a.b=VALUE`` (or ``--config.a.b VALUE``) out of the arguments into
    ``args.config_overrides`` before the usual parsing: the keys are the config's, not options."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        overrides, rest, i = [], [], 0
        while i < len(args):
            arg = args[i]
            if arg.startswith("--config."):
                overrides.append(arg)
                if "=" not in arg and i + 1 < len(args):
                    overrides.append(args[i + 1])
                    i += 1
            else:
                rest.append(arg)
            i += 1
        namespace, extras = super().parse_known_args(rest, namespace)
        namespace.config_overrides = overrides
        return namespace, extras


def _overrides_accepted(p):
    """Let ``p`` take ``--config.KEY=VALUE`` overrides (into ``args.config_overrides``)."""
    p.__class__ = _ConfigOverrideParser


def _config_arguments(p):
    _overrides_accepted(p)
    p.add_argument("--config", required=True, metavar="FILE[:VARIANT]",
                   help="experiment config, e.g. experiments/conv_ae.py:quick; then any number of "
                        "--config.KEY=VALUE overrides (typed like the field; an unknown key is an error)")


def _load_config(args):
    """The command's config, loaded once (main reads its task name before the command runs)."""
    from seisjax.config import load_config, parse_override_args  # lazy

    if getattr(args, "loaded_config", None) is None:
        args.loaded_config = load_config(args.config, parse_override_args(args.config_overrides))
    return args.loaded_config


def _add_train(commands):
    p = commands.add_parser("train", help="train an experiment config (resumes from its checkpoints)",
                            description="Train an experiment config in WORKDIR: config.json, "
                                        "checkpoints/, metrics.jsonl, tensorboard/, figures/. Running the "
                                        "same command again resumes from the latest checkpoint; Ctrl-C "
                                        "saves a checkpoint and stops.")
    _config_arguments(p)
    p.add_argument("--workdir", required=True, help="folder of the run")

    def run(args):
        from seisjax.families import train_and_evaluate  # lazy
        from seisjax.train.logging import NonFiniteError  # lazy

        config = _load_config(args)
        try:
            result = train_and_evaluate(config, args.workdir)
        except NonFiniteError as err:
            print(f"seisjax train: {err}", file=sys.stderr)
            raise SystemExit(3) from None
        if result["interrupted"]:
            raise SystemExit(130)
        print(f"trained to step {result['step']}; results in {args.workdir}")

    p.set_defaults(func=run)


STEP_HELP = ("checkpoint step, or 'best' (the best kept checkpoint by the run's train.best_metric, "
             "e.g. the lowest eval/loss) (default: the latest)")


def checkpoint_step(text: str) -> int | str:
    """``--step``: a step number or ``best``."""
    if text.strip().lower() == "best":
        return "best"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a checkpoint step (an integer) or 'best'") from None


def _add_eval(commands):
    p = commands.add_parser("eval", help="evaluate a checkpoint of a training run",
                            description="Restore a checkpoint of WORKDIR (the latest by default) on this "
                                        "machine's devices and write WORKDIR/eval/step_<N>/metrics.json "
                                        "and figures. The same checkpoint and data give the same file.")
    p.add_argument("--workdir", required=True, help="folder of a training run")
    p.add_argument("--step", type=checkpoint_step, default=None, help=STEP_HELP)
    p.add_argument("--data", default=None, help="evaluate on this dataset instead of the run's own")
    p.add_argument("--out", default=None, help="output folder (default: WORKDIR/eval/step_<N>)")

    def run(args):
        from seisjax.families import evaluate  # lazy

        path = evaluate(args.workdir, step=args.step, data_path=args.data, out_dir=args.out)
        print(path.read_text(), end="")
        print(f"written: {path}")

    p.set_defaults(func=run)


def _add_bench(commands):
    p = commands.add_parser("bench", help="JAX vs the PyTorch twins: one config, or every family (--all)",
                            description="With --config: compile time and examples/s of the config's train "
                                        "step, of the PyTorch twin of its model (benchmarks/torch_<family>.py) "
                                        "and of its input pipeline, from one run. With --all: every family's "
                                        "comparison and the analyses' benchmarks (seisjax/bench.py: SUITE), "
                                        "one process each, in one table that names the chip or GPU.")
    _overrides_accepted(p)
    p.add_argument("--config", metavar="FILE[:VARIANT]",
                   help="experiment config, e.g. experiments/conv_ae.py:quick; then any number of "
                        "--config.KEY=VALUE overrides")
    p.add_argument("--all", action="store_true", help="run the whole suite instead of one config")
    p.add_argument("--quick", action="store_true", help="with --all: smoke sizes (a few minutes on a CPU)")
    p.add_argument("--family", nargs="+", default=(), help="with --all: only these families")
    p.add_argument("--out", default="runs/bench/all", help="with --all: where results.md and results.json go")
    p.add_argument("--steps", type=int, default=30, help="timed steps after warm-up")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after compilation")
    p.add_argument("--batches", type=int, default=30, help="input-pipeline batches timed")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch twin")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU cores for both JAX and PyTorch, the process pinned to them (default: each "
                        "library's own threads; with --all, 1 on a CPU); 1 gives stable numbers on a "
                        "shared machine")
    p.add_argument("--workdir", default=None, help="where synthetic data is generated/kept if needed")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")

    def run(args):
        from seisjax.bench import (  # lazy
            format_results,
            limit_cpu_threads,
            run_bench,
            run_suite,
        )

        if bool(args.all) == bool(args.config):
            raise InputError("bench: give --config FILE[:VARIANT] or --all")
        if args.all and args.config_overrides:
            raise InputError("bench --all runs the suite's own configs: --config. overrides have no effect there")
        if args.threads and not args.all:  # before JAX starts its CPU backend
            limit_cpu_threads(args.threads)
        if args.all:
            table = run_suite(args.out, quick=args.quick, families=args.family, threads=args.threads)
            print(table.read_text(), end="")
            print(f"written: {table} (and results.json, raw/ beside it)")
            return
        config = _load_config(args)
        results = run_bench(config, steps=args.steps, warmup=args.warmup, input_batches=args.batches,
                            torch=not args.no_torch, torch_threads=args.threads, workdir=args.workdir,
                            config_spec=args.config)
        print(format_results(results))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2, sort_keys=True)

    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- stf
def _add_stf(commands):
    p = commands.add_parser("stf", help="SymAE source time functions of every event and pixel",
                            description="Restore a trained SymAE run, extract the coherent information of "
                                        "every (event, pixel) group in one compiled call (nuisance codes "
                                        "scored by KL and optimised with jax.grad; per-trace time shifts "
                                        "refined through the Fourier shift) and write the STFs, virtual "
                                        "seismograms, aligned traces and shifts to an HDF5 file, with "
                                        "figures beside it. Algorithm: seisjax/symae/extraction.py.")
    p.add_argument("--workdir", required=True, help="folder of a trained SymAE run")
    p.add_argument("--data", default=None, help="dataset to extract from (default: the run's own data)")
    p.add_argument("--out", required=True, help="output HDF5 file; figures go to <out stem>_figures/")
    p.add_argument("--step", type=checkpoint_step, default=None, help=STEP_HELP)
    # Defaults live in one place, seisjax.symae.extraction.ExtractionConfig; a flag left out keeps it.
    p.add_argument("--steps", type=int, help="gradient steps on the nuisance codes (default 100)")
    p.add_argument("--n-best", type=int, help="nuisance codes kept per event, N (default 10)")
    p.add_argument("--alpha", type=float, help="weight of the L1 term of the objective (default 0.1)")
    p.add_argument("--lr", type=float, help="learning rate of the nuisance codes (default 0.1)")
    p.add_argument("--optimizer", choices=("sgd", "adam"),
                   help="plain gradient descent (default, the reference's) or Adam")
    p.add_argument("--shift-steps", type=int, help="iterations of the per-trace shift refinement (default 30)")
    p.add_argument("--shift-search", type=int, metavar="SAMPLES",
                   help="integer-lag search around the network's shifts before refining (default 3; 0: none)")
    p.add_argument("--shift-prior", type=float, metavar="PER_S2",
                   help="weight of the penalty pulling each shift towards its group's mean network delay "
                        "(default 0.03 per squared second; 0: none)")
    p.add_argument("--group-batch", type=int, default=None,
                   help="groups per vectorised batch inside the compiled call (default: all; set to bound memory)")
    p.add_argument("--input-kind", choices=("auto", "velocity", "displacement"), default="auto",
                   help="what the traces are, for the displacement envelope in the figures (auto: the "
                        "dataset's unit; m = displacement, otherwise velocity)")
    p.add_argument("--figure-events", type=int, default=6, help="events with figures (0: none)")

    def run(args):
        from seisjax.symae.extraction import ExtractionConfig  # lazy
        from seisjax.symae.stf import run_stf  # lazy

        chosen = dict(n_best=args.n_best, steps=args.steps, lr=args.lr, alpha=args.alpha,
                      optimizer=args.optimizer, shift_steps=args.shift_steps, shift_search=args.shift_search,
                      shift_prior=args.shift_prior, group_batch=args.group_batch)
        config = ExtractionConfig(**{k: v for k, v in chosen.items() if v is not None})
        result = run_stf(args.workdir, args.out, data_path=args.data, step=args.step, config=config,
                         figures=args.figure_events > 0, max_figure_events=args.figure_events,
                         input_kind=args.input_kind)
        print(f"stf: objective {result['initial_loss']:.4g} -> {result['final_loss']:.4g} (mean over events)")
        print(f"stf: wrote {result['hdf5']} ({result['events']} events, {result['groups']} groups, "
              f"{result['traces']} traces; checkpoint step {result['checkpoint_step']})")
        if result["figures"]:
            print(f"stf: figures in {result['figures'][0].parent}")

    p.set_defaults(func=run)


def _add_cluster(commands):
    p = commands.add_parser("cluster", help="cluster a dataset's traces with a trained DEC run",
                            description="Restore a trained DEC run (stage 'dec'), window every trace of the "
                                        "dataset at --data as the run's evaluation does, and write each "
                                        "trace's cluster, soft assignment q and embedding to --out (CSV, or "
                                        "HDF5 when it ends in .h5). Traces that cannot be clustered are kept "
                                        "with cluster -1 and the reason. Code: seisjax/dec/assign.py.")
    p.add_argument("--workdir", required=True, help="folder of a trained DEC run")
    p.add_argument("--data", required=True, help="dataset folder to cluster")
    p.add_argument("--out", required=True, help="output file: .csv, or .h5 for HDF5")
    p.add_argument("--step", type=checkpoint_step, default=None, help=STEP_HELP)
    p.add_argument("--refine", choices=("none", "gmm_full"), default="none",
                   help="gmm_full: also write cluster_gmm_full, the traces' clusters re-drawn by a "
                        "full-covariance Gaussian mixture started from DEC's (fitted on these traces)")

    def run(args):
        from seisjax.dec.assign import cluster_dataset  # lazy

        cluster_dataset(args.workdir, args.data, args.out, step=args.step, refine=args.refine)

    p.set_defaults(func=run)


def _add_generate(commands):
    p = commands.add_parser("generate", help="generate three-component seismograms with a trained CVAE",
                            description="Sample spectrograms from the prior of a trained spectrogram CVAE "
                                        "for the given conditions, turn them into waveforms with "
                                        "Griffin-Lim and write them as a dataset with a figure. "
                                        "Code: seisjax/spectrogram/generation.py.")
    p.add_argument("--workdir", required=True, help="folder of a trained CVAE run")
    p.add_argument("--magnitude", type=float, required=True, help="source magnitude")
    p.add_argument("--lat", type=float, required=True, help="source latitude (deg)")
    p.add_argument("--lon", type=float, required=True, help="source longitude (deg)")
    p.add_argument("--depth", type=float, required=True, help="source depth (km)")
    p.add_argument("--station", required=True, help="station code (as in the training data)")
    p.add_argument("-n", type=int, default=8, help="number of seismograms to generate")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--seed", type=int, default=0, help="random seed of the prior samples")
    p.add_argument("--step", type=checkpoint_step, default=None, help=STEP_HELP)
    p.add_argument("--prior", choices=("neighbours", "standard", "learned"), default=None,
                   help="where the latent codes come from (default: the run's task.generation_prior): "
                        "posteriors of the training records nearest in magnitude and distance, N(0, I), "
                        "or the learned p(z | conditions) of a run trained with task.prior=learned")

    def run(args):
        from seisjax.spectrogram.generation import generate_from_checkpoint  # lazy

        generate_from_checkpoint(args.workdir, out=args.out, magnitude=args.magnitude, lat=args.lat,
                                 lon=args.lon, depth=args.depth, station=args.station, n=args.n,
                                 seed=args.seed, step=args.step, generation_prior=args.prior)

    p.set_defaults(func=run)


def _add_interpolate(commands):
    p = commands.add_parser("interpolate", help="latent path between two records of a spectrogram AE/VAE/CVAE",
                            description="Restore a trained spectrogram AE, beta-VAE or CVAE run, encode two "
                                        "records, decode --steps points on the straight line between their "
                                        "codes and draw them (one row per point, one column per component) "
                                        "to --out (PNG). Code: seisjax/spectrogram/generation.py.")
    p.add_argument("--workdir", required=True, help="folder of a trained spectral_vae run")
    p.add_argument("--records", nargs=2, required=True, metavar=("A", "B"),
                   help="the two records, each a row number or a trace name: of --data, or of the run's "
                        "evaluation records without it")
    p.add_argument("--data", default=None, help="dataset folder the rows refer to (default: the run's "
                                                "evaluation records)")
    p.add_argument("--steps", type=int, default=6, help="points on the path, both ends included")
    p.add_argument("--out", required=True, help="output figure (.png)")
    p.add_argument("--step", type=checkpoint_step, default=None, help=STEP_HELP)

    def run(args):
        from seisjax.spectrogram.generation import interpolate_latent  # lazy

        path = interpolate_latent(args.workdir, args.data, args.records[0], args.records[1], args.steps,
                                  args.out, step=args.step)
        print(f"interpolate: wrote {path}")

    p.set_defaults(func=run)


def _add_embed(commands):
    p = commands.add_parser("embed", help="one embedding per record with a trained LSTM autoencoder",
                            description="Restore a trained LSTM autoencoder run and write one embedding "
                                        "per record of the dataset at --data, with its trace name, to "
                                        "--out (HDF5). Code: seisjax/lstm_ae/embeddings.py.")
    p.add_argument("--workdir", required=True, help="folder of a trained LSTM autoencoder run")
    p.add_argument("--data", required=True, help="dataset folder to embed")
    p.add_argument("--out", required=True, help="output HDF5 file")
    p.add_argument("--step", type=checkpoint_step, default=None, help=STEP_HELP)

    def run(args):
        from seisjax.lstm_ae.embeddings import embed_dataset  # lazy

        embed_dataset(args.workdir, args.data, args.out, step=args.step)

    p.set_defaults(func=run)


def _add_export(commands):
    p = commands.add_parser("export", help="write what `seisjax.load_run` needs, for runs trained before it existed",
                            description="Build the run's task from its training data and write, beside each kept "
                                        "checkpoint, the inference data that seisjax.load_run reads "
                                        "(<workdir>/inference/step_<N>.npz: the model's arguments, normalisation, "
                                        "scalers, vocabularies). Runs trained with this version have it already.")
    p.add_argument("--workdir", required=True, help="folder of a trained run")
    p.add_argument("--step", type=checkpoint_step, action="append", default=None,
                   help="only this checkpoint (repeatable; default: every one kept)")

    def run(args):
        from seisjax.families import export  # lazy

        export(args.workdir, steps=args.step)

    p.set_defaults(func=run)


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
    _add_demo(commands)
    _add_train(commands)
    _add_eval(commands)
    _add_bench(commands)
    _add_stf(commands)
    _add_cluster(commands)
    _add_generate(commands)
    _add_interpolate(commands)
    _add_embed(commands)
    _add_export(commands)
    return parser


def _task_name(args) -> str | None:
    """The task a command will run, from its --config or its run's saved config; None when there is
    none or it does not load (the command then reports why)."""
    from seisjax.config import load_saved_config  # lazy

    try:
        if getattr(args, "config", None):
            return str(_load_config(args).task.name)
        workdir = getattr(args, "workdir", None)
        if workdir and (Path(workdir) / "config.json").is_file():
            return str(load_saved_config(workdir).task.name)
    except (InputError, OSError, ValueError, KeyError, AttributeError):
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if wants_retained_memory(_task_name(args)):
            retain_freed_memory()   # before JAX's threads exist: XLA's per-step buffers reuse mapped pages
        args.func(args)
    except (InputError, FileNotFoundError) as err:
        print(f"seisjax {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
