"""Where a run's dataset is: the one function every family uses to find, generate or convert it.

A config's ``data`` section says where its records come from:

- ``source = "synthetic"``: the built-in generator, with the scenario config ``data.synthetic``
  (:func:`seisjax.data.synthetic.scenario_config`), written once to ``data.path`` or, when that is
  empty, to ``<workdir>/data``. A folder there already must hold data made with the same config:
  otherwise the run would train on other records than its config says, so that is an error.
- ``source = "dataset"``: the SeisBench-format folder ``data.path``. A STEAD folder
  (``waveforms.hdf5`` with ``earthquake/local/<trace>`` arrays) is converted once into
  ``<workdir>/data_stead``.
- ``data_path`` (``eval --data``, ``stf --data``) replaces both.

Family-specific sources (in-memory toy data and the like) are handled by the family before it
calls :func:`resolve_dataset`.

Runs made before ``data.synthetic`` existed describe their synthetic data with
``data.synthetic_events``, ``synthetic_seed`` and ``synthetic_overrides``; they resolve to the same
scenario config.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
from jax.experimental import multihost_utils

from seisjax.data.convert import convert_stead
from seisjax.data.dataset import is_stead_folder
from seisjax.data.synthetic import flatten_config, scenario_config, synthesize
from seisjax.errors import InputError

__all__ = ["resolve_dataset", "synthetic_config"]


def synthetic_config(data, *, scenario: str):
    """The scenario config of a ``data`` section: ``data.synthetic``, or for a run made before it
    existed, the one its ``synthetic_*`` keys describe (``scenario``: the family's scenario)."""
    if "synthetic" in data:
        return data.synthetic
    return scenario_config(scenario, list(data.get("synthetic_overrides", ())),
                           events=int(data.synthetic_events), seed=int(data.get("synthetic_seed", 0)))


def _check_matches(path: Path, wanted) -> None:
    stored_file = path / "config.json"
    if not stored_file.is_file():
        raise InputError(f"data.path = {path}: holds a dataset that the synthetic generator did not write "
                         "(no config.json); set data.source = 'dataset' to read it")
    stored = flatten_config(json.loads(stored_file.read_text()))
    wanted = flatten_config(json.loads(json.dumps(wanted.to_dict())))   # tuples as JSON lists
    differ = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
    if differ:
        raise InputError(f"data.path = {path}: holds synthetic data made with another config ({', '.join(differ)} "
                         "differ from data.synthetic); choose another data.path, or set data.source = 'dataset' "
                         "to read the data that is there")


def _generate(config, path: Path) -> None:
    """Synthesise on the first process; every process waits until the data is there."""
    if jax.process_index() == 0:
        synthesize(config, path, figure=False, progress=True)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"seisjax synthetic data written to {path}")


def _converted_stead(source: Path, workdir: Path | None) -> Path:
    if workdir is None:
        raise InputError(f"{source} is a STEAD folder: converting it needs a workdir to write the dataset to")
    out = workdir / "data_stead"
    if not (out / "metadata.csv").exists():
        if jax.process_index() == 0:
            report = convert_stead(source, out, overwrite=True, progress=False)
            print(f"converted the STEAD folder {source} -> {out}: {report}", flush=True)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"seisjax STEAD folder converted to {out}")
    return out


def resolve_dataset(data, *, workdir=None, data_path=None, scenario: str = "local") -> Path:
    """The folder of the dataset a run reads (see the module docstring), generated or converted
    first when needed. ``data``: the config's ``data`` section; ``scenario``: the family's
    synthetic scenario, for runs made before ``data.synthetic``."""
    workdir = Path(workdir) if workdir is not None else None
    if data_path is not None:
        path = Path(data_path)
    else:
        source = str(data.source)
        if source not in ("synthetic", "dataset"):
            raise InputError(f"data.source = {source!r}: expected 'synthetic' or 'dataset'")
        if data.path:
            path = Path(data.path)
        elif source == "synthetic" and workdir is not None:
            path = workdir / "data"
        elif source == "synthetic":
            raise InputError("data.source = 'synthetic' writes its data in the workdir, or in data.path: give one")
        else:
            raise InputError("data.path is empty: name a dataset folder (--config.data.path=DIR)")
        if source == "synthetic":
            wanted = synthetic_config(data, scenario=scenario)
            if (path / "metadata.csv").exists() or (path / "chunks").exists():
                _check_matches(path, wanted)
            else:
                _generate(wanted, path)
    if not path.is_dir():
        raise InputError(f"{path}: no dataset there (no such folder)")
    if is_stead_folder(path):
        path = _converted_stead(path, workdir)
    return path
