"""Cluster new data with a trained DEC run: the ``cluster`` command.

``cluster_dataset(workdir, data, out)`` restores the run's checkpoint, windows every row of the
dataset at ``data`` as the task does for evaluation (all rows, whatever the run's splits;
:meth:`seisjax.dec.data.DECData.dataset_windows`) and writes one line per trace: its cluster, its
soft assignment q and its embedding, as CSV or (``out`` ending in .h5/.hdf5) HDF5; ``cluster_class``,
the class each cluster was matched to when ``eval`` scored the same checkpoint on the run's labelled
data, and ``log10_snr`` of the clustered component where the dataset has it. Rows that cannot
be clustered (no P pick, unreadable, non-finite samples, flat) stay in the output with cluster -1,
NaN q and embedding, and the reason in ``problem``; they are also printed by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import jax
import numpy as np
import pandas as pd

from seisjax import config as config_lib
from seisjax.data.dataset import Dataset
from seisjax.dec.task import DECTask
from seisjax.errors import InputError, log_problems
from seisjax.metrics.clustering import apply_map, gmm_full
from seisjax.train.loop import restore_trained

__all__ = ["cluster_classes", "cluster_dataset"]

_HDF5_SUFFIXES = (".h5", ".hdf5")


def _check_dec_run(workdir: Path):
    config = config_lib.load_saved_config(workdir)
    name, stage = config.task.get("name"), config.task.get("stage")
    if name != "dec" or stage != "dec":
        what = f"task {name!r}" + (f" at stage {stage!r}" if stage is not None else "")
        raise InputError(f"{workdir}: a {what} run; `cluster` needs a DEC run at stage 'dec' "
                         "(task.name = 'dec', task.stage = 'dec', trained from a pretrain run)")
    return config


def cluster_classes(workdir: Path, step: int, method: str) -> dict[int, str]:
    """Cluster -> the class it was matched to (Hungarian) when ``eval`` scored checkpoint ``step`` of
    the run on its labelled data (``eval/step_N/clustering.json``, method ``method``); empty when
    that evaluation is missing or had no labels."""
    path = Path(workdir) / "eval" / f"step_{int(step)}" / "clustering.json"
    if not path.is_file():
        return {}
    entry = json.loads(path.read_text()).get("methods", {}).get(method, {})
    return {int(c): str(name) for c, name in zip(entry.get("clusters", []), entry.get("classes", []))}


def _table(windows: dict, clusters: np.ndarray, q: np.ndarray, z: np.ndarray, label_column: str,
           names: dict[int, str]) -> pd.DataFrame:
    columns = {"trace_name": windows["trace_name"], "row": np.arange(len(clusters)), "cluster": clusters}
    if names:
        columns["cluster_class"] = [names.get(int(c), "") for c in clusters]
    columns.update({f"q_{j}": q[:, j] for j in range(q.shape[1])})
    columns.update({f"embedding_{j}": z[:, j] for j in range(z.shape[1])})
    if "label" in windows:
        columns[label_column] = windows["label"]
    if "log10_snr" in windows and np.isfinite(windows["log10_snr"]).any():
        columns["log10_snr"] = windows["log10_snr"]
    columns["problem"] = windows["problem"]
    return pd.DataFrame(columns)


def _write_hdf5(path: Path, table: pd.DataFrame, q: np.ndarray, z: np.ndarray, attrs: dict):
    strings = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.create_dataset("trace_name", data=table["trace_name"].astype(str).to_numpy().astype(object), dtype=strings)
        f.create_dataset("row", data=table["row"].to_numpy(np.int64))
        f.create_dataset("cluster", data=table["cluster"].to_numpy(np.int64))
        f.create_dataset("q", data=q)
        f.create_dataset("embedding", data=z)
        f.create_dataset("problem", data=table["problem"].to_numpy().astype(object), dtype=strings)
        label_columns = [c for c in table.columns if c not in ("trace_name", "row", "cluster", "problem")
                         and not c.startswith(("q_", "embedding_"))]
        for column in label_columns:  # the truth label, numeric when it can be
            values = table[column]
            if pd.api.types.is_numeric_dtype(values):
                f.create_dataset(column, data=values.to_numpy())
            else:
                f.create_dataset(column, data=values.astype(str).to_numpy().astype(object), dtype=strings)
        f.attrs.update(attrs)


def cluster_dataset(workdir, data, out, *, step: int | None = None, refine: str = "none", log=print) -> dict:
    """Assign every trace of the dataset at ``data`` to a cluster of the trained DEC run in
    ``workdir`` (checkpoint ``step``, default the latest) and write ``out`` (CSV, or HDF5 for
    .h5/.hdf5). ``refine = "gmm_full"`` adds ``cluster_gmm_full``: these traces' clusters re-drawn by
    a full-covariance Gaussian mixture in the clustering space, started from DEC's (as ``eval``'s
    ``<method>_gmm_full``; fitted on the traces given, so give it many). Returns ``{"out", "rows",
    "counts" (traces per cluster), "problems" ({trace_name: reason}), "checkpoint_step"}``."""
    workdir, data, out = Path(workdir), Path(data), Path(out)
    if refine not in ("none", "gmm_full"):
        raise InputError(f"--refine {refine!r}: expected 'none' or 'gmm_full'")
    config = _check_dec_run(workdir)
    if not data.is_dir():
        raise InputError(f"--data {data}: not a dataset folder")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    if out.suffix.lower() not in (".csv",) + _HDF5_SUFFIXES:
        raise InputError(f"--out {out}: expected a .csv, .h5 or .hdf5 file name")
    dataset = Dataset(data)
    # The engine rebuilds the run's own task to get the state's structure; the new data is
    # windowed separately so that its bad rows are reported instead of stopping the restore.
    try:
        _, task, state, ckpt_step = restore_trained(DECTask, workdir, step=step)
    except (InputError, FileNotFoundError) as err:
        dataset.close()
        raise InputError(f"{workdir}: could not restore the run (restoring rebuilds its task, which reads "
                         f"the run's own training data): {err}") from None
    try:
        windows = task.data.dataset_windows(dataset)
        params = jax.device_get(state.params)
        n, k = len(windows["x"]), int(config.task.n_clusters)
        ok = windows["problem"] == ""
        clusters = np.full(n, -1, np.int64)
        q = np.full((n, k), np.nan, np.float32)
        z_dim = int(np.asarray(params["centres"]).shape[1])
        z = np.full((n, z_dim), np.nan, np.float32)
        if ok.any():
            clusters[ok], q[ok], z[ok] = task.assign(params, windows["x"][ok], jax.device_get(state.model_state))
    finally:
        task.close()
        dataset.close()

    names = cluster_classes(workdir, ckpt_step, task.method_name)
    table = _table(windows, clusters, q, z, str(config.data.label_column or "label"), names)
    if refine == "gmm_full":
        refined = np.full(n, -1, np.int64)
        if ok.any():  # in the space DEC clusters in (the whitened code where the run used one)
            space = apply_map(z[ok], task.cluster_map(jax.device_get(state.model_state)))
            refined[ok] = gmm_full(space, clusters[ok])["labels"]
        table["cluster_gmm_full"] = refined
    if out.suffix.lower() in _HDF5_SUFFIXES:
        _write_hdf5(out, table, q, z, {"workdir": str(workdir), "data": str(data), "checkpoint_step": int(ckpt_step),
                                       "n_clusters": k})
    else:
        table.to_csv(out, index=False)

    counts = np.bincount(clusters[ok], minlength=k)
    problems = dict(zip(windows["trace_name"][~ok].tolist(), windows["problem"][~ok].tolist()))
    log(f"cluster: {n} traces of {data}, checkpoint step {ckpt_step} of {workdir}")
    for j, count in enumerate(counts):
        log(f"  cluster {j}: {count} traces" + (f" ({names[j]} in the run's evaluation)" if j in names else ""))
    if not names:
        log(f"  (to name the clusters, score this checkpoint on the run's labelled data: python -m seisjax eval "
            f"--workdir {workdir} --step {ckpt_step})")
    log_problems(log, problems, f"  not clustered: {len(problems)} traces (cluster -1, reason in the 'problem' column):")
    log(f"cluster: wrote {out}")
    return {"out": out, "rows": n, "counts": counts.tolist(), "problems": problems,
            "checkpoint_step": int(ckpt_step)}
