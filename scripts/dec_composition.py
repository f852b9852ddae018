#!/usr/bin/env python3
"""Where a DEC run puts each kind of record: the clusters that ``python -m seisjax cluster`` wrote,
counted per class, with each class split by whether the record's S pick falls inside the window the
model sees, overall and per log10 SNR bin (markdown on stdout):

    python -m seisjax cluster --workdir runs/dec_dist --data runs/dec_dist_pre/data --out runs/dec_dist/clusters.csv
    python scripts/dec_composition.py --workdir runs/dec_dist --data runs/dec_dist_pre/data \
        --clusters runs/dec_dist/clusters.csv

Why the S split: the distance network's window (9.4 s from 1 s before P) holds a local record's S
wave only when S - P < 8.4 s (about 65 km); beyond that it holds the P wave and its coda alone, as a
teleseismic window does. Two clusters can then follow either boundary. A record without an S pick
(or with its S before its P) counts as "no S pick".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from seisjax import config as config_lib
from seisjax.data.dataset import Dataset
from seisjax.dec.data import SNR_BIN_NAMES, snr_bin
from seisjax.errors import InputError


def s_groups(metadata: pd.DataFrame, label_column: str, window_after_p_s: float) -> pd.Series:
    """``"<class>, S in window"``, ``"<class>, S after window"`` or ``"<class>, no S pick"`` per row."""
    for column in (label_column, "trace_p_arrival_sample", "trace_s_arrival_sample", "trace_sampling_rate_hz"):
        if column not in metadata.columns:
            raise InputError(f"dataset metadata has no {column} column")
    s_after_p = (pd.to_numeric(metadata["trace_s_arrival_sample"], errors="coerce")
                 - pd.to_numeric(metadata["trace_p_arrival_sample"], errors="coerce")) \
        / pd.to_numeric(metadata["trace_sampling_rate_hz"], errors="coerce")
    where = np.where(~(s_after_p > 0), "no S pick",
                     np.where(s_after_p < window_after_p_s, "S in window", "S after window"))
    return metadata[label_column].astype(str) + ", " + pd.Series(where, index=metadata.index)


def composition(clusters: pd.DataFrame, metadata: pd.DataFrame, *, label_column: str,
                window_after_p_s: float) -> pd.DataFrame:
    """Counts of (group, SNR bin, cluster); ``clusters`` is the cluster command's table (trace_name,
    cluster, log10_snr), ``metadata`` the dataset's."""
    for column in ("trace_name", "cluster", "log10_snr"):
        if column not in clusters.columns:
            raise InputError(f"cluster table has no {column} column (is it the output of `seisjax cluster`?)")
    meta = metadata.assign(group=s_groups(metadata, label_column, window_after_p_s))[["trace_name", "group"]]
    table = clusters[["trace_name", "cluster", "log10_snr"]].merge(meta, on="trace_name", how="left")
    missing = table["group"].isna()
    if missing.any():
        raise InputError(f"{int(missing.sum())} traces of the cluster table are not in the dataset "
                         f"(first: {table.loc[missing, 'trace_name'].iloc[0]}); give the dataset it was made from")
    bins = snr_bin(table["log10_snr"].to_numpy())
    table["snr_bin"] = np.where(bins >= 0, np.array(SNR_BIN_NAMES, dtype=object)[np.maximum(bins, 0)], "unknown")
    return table.groupby(["group", "snr_bin", "cluster"]).size().rename("traces").reset_index()


def markdown(counts: pd.DataFrame) -> str:
    """One row per group; each cell the traces per cluster, ``n0 / n1 / ...`` (cluster -1: not clustered)."""
    clusters = sorted(counts["cluster"].unique())
    bins = [b for b in [*SNR_BIN_NAMES, "unknown"] if b in set(counts["snr_bin"])]

    def cell(rows):
        per = rows.groupby("cluster")["traces"].sum()
        return " / ".join(str(int(per.get(k, 0))) for k in clusters)

    lines = [f"traces per cluster ({' / '.join(str(k) for k in clusters)}), by log10 SNR bin", "",
             "| group | all | " + " | ".join(bins) + " |", "|---|---|" + "---|" * len(bins)]
    for group, rows in counts.groupby("group"):
        cells = [cell(rows)] + [cell(rows[rows["snr_bin"] == b]) for b in bins]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="the DEC run (its config gives the window and the label)")
    parser.add_argument("--data", required=True, help="the dataset the cluster table was made from")
    parser.add_argument("--clusters", required=True, help="the cluster command's CSV output")
    args = parser.parse_args(argv)
    try:
        config = config_lib.load_saved_config(args.workdir)
        data = config.data
        window_after_p_s = (int(data.window) - int(data.pre_p)) / float(data.sampling_rate)
        if not Path(args.clusters).is_file():
            raise InputError(f"--clusters {args.clusters}: no such file")
        dataset = Dataset(args.data)
        try:
            metadata = dataset.metadata
        finally:
            dataset.close()
        counts = composition(pd.read_csv(args.clusters), metadata, label_column=str(data.label_column),
                             window_after_p_s=window_after_p_s)
    except (InputError, FileNotFoundError) as err:
        print(f"dec_composition: error: {err}", file=sys.stderr)
        return 2
    print(f"window: {window_after_p_s:g} s after P")
    print(markdown(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
