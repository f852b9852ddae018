"""The driver: draws the events of a scenario config one at a time and writes the dataset, its truth
and its figure.

Events are generated and written one at a time (teleseismic stations in chunks), so memory does not
grow with the number of events (benchmarks/bench_synth_memory.py). Splits are by event
(``split.fractions``, exact counts by largest remainder from a seeded permutation).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import ml_collections
import numpy as np
from tqdm.auto import tqdm

from seisjax import config as config_lib
from seisjax.data.dataset import DatasetWriter
from seisjax.data.synthetic import local, teleseismic
from seisjax.data.synthetic.config import validate
from seisjax.data.synthetic.figures import FigureData, plot_local, plot_teleseismic
from seisjax.data.synthetic.metadata import parse_time
from seisjax.data.synthetic.streams import split_rng
from seisjax.data.synthetic.truth import TruthWriter
from seisjax.errors import InputError

__all__ = ["synthesize", "events_for_traces"]


def _event_splits(n_events: int, fractions, seed: int) -> np.ndarray:
    """'train'/'dev'/'test' per event: exact counts (largest remainder, at least one event in each
    non-empty split when there are enough events), assigned by a seeded permutation."""
    names = np.array(["train", "dev", "test"])
    fractions = np.asarray(fractions, dtype=float)
    raw = fractions * n_events
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[: n_events - counts.sum()]:
        counts[i] += 1
    wanted = np.flatnonzero(fractions > 0)
    if n_events >= len(wanted):
        for i in wanted:
            if counts[i] == 0:
                counts[np.argmax(counts)] -= 1
                counts[i] += 1
    order = split_rng(seed).permutation(n_events)
    splits = np.empty(n_events, dtype=object)
    splits[order] = np.repeat(names, counts)
    return splits


def _scenario_module(cfg):
    return teleseismic if cfg.scenario == "teleseismic-p" else local


def synthesize(config: ml_collections.ConfigDict, out_dir, *, figure: bool = True, progress: bool = True,
               overwrite: bool = False) -> Path:
    """Write the synthetic dataset that ``config`` (a scenario config, :func:`scenario_config`)
    describes to ``out_dir`` and return its path.

    ``out_dir`` receives ``metadata.csv`` + ``waveforms.hdf5`` (SeisBench format), ``truth.h5``,
    ``config.json`` (the config) and ``figures/synthetic_<scenario>.png``. The same config gives
    identical waveforms.
    """
    cfg = config
    validate(cfg)
    scenario, seed = str(cfg.scenario), int(cfg.seed)
    out = Path(out_dir)
    truth_path = out / "truth.h5"
    if truth_path.exists() and not overwrite:
        raise InputError(f"{out}: a synthetic dataset exists there already (pass overwrite=True or --overwrite)")
    tele = scenario == "teleseismic-p"
    scenario_module = _scenario_module(cfg)
    writer_kwargs = dict(component_order="Z", sampling_rate=cfg.sampling_rate_hz) if tele else dict(
        component_order="ZNE", sampling_rate=None)
    writer_kwargs["data_format_attrs"] = {"unit": "m" if tele else "m/s",
                                          "quantity": "displacement" if tele else "velocity",
                                          "generator": f"seisjax synthetic {scenario}", "seed": int(seed)}
    writer = DatasetWriter(out, overwrite=overwrite, **writer_kwargs)
    truth = TruthWriter(truth_path)
    fig_data = FigureData()
    splits = _event_splits(cfg.events, cfg.split.fractions, seed)
    counts = {"train": 0, "dev": 0, "test": 0}
    origin_start = float(parse_time(cfg.source.origin_time_start if tele else cfg.catalog.origin_time_start).timestamp)
    try:
        network = scenario_module.station_network(cfg)
        tables = scenario_module.travel_time_tables(cfg, progress)
        if not tele:
            truth.append("stations", {k: network[k] for k in network})
        bar = tqdm(range(cfg.events), desc=f"synth {scenario}", unit="event", disable=not progress)
        n_traces = 0
        for k in bar:
            split = str(splits[k])
            n_traces += scenario_module.write_event(cfg, k, seed, origin_start, network, tables, split, writer, truth,
                                                    fig_data)
            counts[split] += 1
            bar.set_postfix(traces=n_traces)
        bar.close()
        if n_traces == 0:
            raise InputError(f"no station recorded any of the {cfg.events} events: check the station and "
                             "distance settings of the config")
        if truth.skipped:
            warnings.warn(f"{len(truth.skipped)} station record(s) could not be made (listed in truth.h5 "
                          f"attribute 'skipped'), e.g. {truth.skipped[0]}", stacklevel=2)
        truth.h5.attrs.update({
            "skipped": json.dumps(truth.skipped),
            "scenario": scenario, "seed": int(seed), "n_events": int(cfg.events), "n_traces": int(n_traces),
            "config_json": cfg.to_json(), "events_per_split": json.dumps(counts),
            "stf_convention": "moment rate in N m/s, mean over each sample interval; sums times dt to moment_nm",
            "green_convention": "noise-free record = dt * (apparent STF conv green) delayed by time_error_s; "
                                "apparent STF(t) = STF(t / stf_time_scale) / stf_time_scale",
        })
    except BaseException:
        writer.abort()
        truth.close()
        truth_path.unlink(missing_ok=True)
        raise
    writer.close()
    truth.close()
    (out / "config.json").write_text(json.dumps(config_lib.config_to_dict(cfg), indent=2) + "\n")
    if figure:
        fig_dir = out / "figures"
        fig_dir.mkdir(exist_ok=True)
        plot = plot_teleseismic if tele else plot_local
        plot(cfg, fig_data, tables, fig_dir / f"synthetic_{scenario}.png")
    return out


def events_for_traces(cfg: ml_collections.ConfigDict, n_traces: int) -> tuple[int, int]:
    """Smallest number of events whose records reach ``n_traces`` with this scenario config (its seed
    included), and the number of traces they give (drawn exactly as :func:`synthesize` draws them,
    without waveforms)."""
    scenario_module = _scenario_module(cfg)
    network = scenario_module.station_network(cfg)
    total, k = 0, 0
    while total < n_traces:
        total += scenario_module.n_recordings(cfg, int(cfg.seed), k, network)
        k += 1
    return k, total
