"""Embeddings of whole records with a trained LSTM autoencoder: the ``embed`` command.

``embed_dataset(workdir, data, out)`` restores the run (``lstm_ae`` task), prepares every row of
the dataset at ``data`` as the run's task prepares its own records (components, resampling, cut
around P, differencing, scaling; :meth:`seisjax.lstm_ae.data.RecordData.prepare`), normalises them
with the run's stored statistics (``<workdir>/normalisation.json``), embeds them in length-sorted
batches and writes HDF5:

- ``trace_name`` (str), ``row`` (int), ``embedding`` (N, D) float32, ``length`` (samples at the
  run's rate), ``problem`` (str, "" when embedded), ``missing_components`` (str: zero-filled
  components under ``data.missing_components = "zeros"``), and the label columns
  ``path_distance_class`` / ``source_magnitude`` when the dataset has them;
- attributes: ``mode`` ("bottleneck" or "reference"), ``embedding_layout`` ("[h_1, c_1, ...]", or
  "[h_1, ...]" for a model that embeds the hidden states alone),
  ``workdir``, ``data``, ``checkpoint_step``, ``sampling_rate``.

A row that cannot be embedded (non-finite samples, too short, unreadable, missing component, no
sampling rate) is written with a NaN embedding and its reason; it is never dropped.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import jax
import numpy as np

from seisjax import config as config_lib
from seisjax.data.dataset import Dataset
from seisjax.errors import InputError, log_problems
from seisjax.lstm_ae.data import NORMALISATION_FILE
from seisjax.lstm_ae.task import LSTMAETask
from seisjax.train.loop import restore_trained

__all__ = ["embed_dataset"]


def embed_dataset(workdir, data, out, *, step: int | None = None, batch_size: int = 256, log=print) -> dict:
    """Embed every row of the dataset at ``data`` with the trained ``lstm_ae`` run in ``workdir``
    (checkpoint ``step``, default the latest) and write ``out`` (HDF5, see the module docstring).
    Returns ``{"out", "rows", "embedded", "problems" ({trace_name: reason}), "checkpoint_step"}``."""
    workdir, data, out = Path(workdir), Path(data), Path(out)
    config = config_lib.load_saved_config(workdir)
    if config.task.get("name") != "lstm_ae":
        raise InputError(f"{workdir}: a {config.task.get('name')!r} run; `embed` needs an lstm_ae run")
    if not (workdir / NORMALISATION_FILE).exists():
        raise InputError(f"{workdir}: no {NORMALISATION_FILE} (the run's normalisation statistics); "
                         "was it trained with this version?")
    if not data.is_dir():
        raise InputError(f"--data {data}: not a dataset folder")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    _, task, state, ckpt_step = restore_trained(LSTMAETask, workdir, step=step)
    dataset = Dataset(data)
    try:
        recs = task.data.prepare(dataset)
        host = jax.device_get(state)
        z = task.embed_records(host.params, host.model_state, recs, batch_size=batch_size, progress=True)
    finally:
        task.close()
        dataset.close()
    strings = h5py.string_dtype()
    with h5py.File(out, "w") as f:
        f.create_dataset("trace_name", data=recs.names.astype(object), dtype=strings)
        f.create_dataset("row", data=np.arange(len(recs), dtype=np.int64))
        f.create_dataset("embedding", data=z)
        f.create_dataset("length", data=recs.lengths)
        f.create_dataset("problem", data=recs.problems.astype(str).astype(object), dtype=strings)
        f.create_dataset("missing_components", data=recs.missing.astype(str).astype(object), dtype=strings)
        for name, values in recs.labels.items():
            values = np.asarray(values)
            if values.dtype.kind in "fiu":
                f.create_dataset(name, data=values)
            else:
                f.create_dataset(name, data=values.astype(str).astype(object), dtype=strings)
        layout = "[h_1, c_1, h_2, c_2, ...]" if task.model.embed_cell else "[h_1, h_2, ...]"
        f.attrs.update({"mode": str(task.model.mode), "embedding_layout": layout,
                        "workdir": str(workdir), "data": str(data), "checkpoint_step": int(ckpt_step),
                        "sampling_rate": float(config.data.sampling_rate)})
    bad = recs.problems != ""
    problems = dict(zip(recs.names[bad].tolist(), recs.problems[bad].tolist()))
    log(f"embed: {len(recs)} records of {data}, checkpoint step {ckpt_step} of {workdir} ({task.model.mode} mode)")
    log_problems(log, problems, f"  not embedded: {len(problems)} (NaN embedding, reason in 'problem'):")
    log(f"embed: wrote {out}")
    return {"out": out, "rows": len(recs), "embedded": int((~bad).sum()), "problems": problems,
            "checkpoint_step": int(ckpt_step)}
