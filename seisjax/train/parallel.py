"""Devices: a mesh over every device, data-parallel shardings, multi-host initialisation.

One code path for one CPU, one GPU, many local devices and many hosts: the batch is split over the
mesh axis ``"data"`` and everything else (parameters, optimizer state) is replicated. ``jax.jit``
inserts the gradient all-reduce itself, so a step written for one device is already data parallel.

Multi-host: every process runs the same command; :func:`initialize_distributed` connects them with
``jax.distributed.initialize`` before any JAX computation, from ``config.distributed``
(``coordinator_address``, ``num_processes``, ``process_id``) or from the environment variables
``SEISJAX_COORDINATOR_ADDRESS``, ``SEISJAX_NUM_PROCESSES``, ``SEISJAX_PROCESS_ID``; with
``config.distributed.auto = True`` JAX detects the cluster itself (SLURM, Open MPI, Cloud TPU, ...).
Each process feeds its own share of the global batch (:func:`shard_batch`).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from seisjax.errors import InputError

__all__ = ["DATA_AXIS", "initialize_distributed", "make_mesh", "replicated", "batch_sharded",
           "shard_batch", "to_host", "local_batch_size"]

DATA_AXIS = "data"
_ENV = ("SEISJAX_COORDINATOR_ADDRESS", "SEISJAX_NUM_PROCESSES", "SEISJAX_PROCESS_ID")


def _setting(section, key, env):
    value = section.get(key) if section is not None and hasattr(section, "get") else None
    if value in (None, "", -1):
        value = os.environ.get(env) or None
    return value


def initialize_distributed(section=None) -> bool:
    """Connect this process to the others of a multi-host run; returns True when it is one.

    A no-op (False) for a single process, and when JAX is already initialised. Must run before the
    first JAX computation of the process."""
    if jax.distributed.is_initialized():
        return True
    address = _setting(section, "coordinator_address", _ENV[0])
    auto = bool(section.get("auto", False)) if section is not None and hasattr(section, "get") else False
    if address is None and not auto:
        return False
    kwargs = {}
    if address is not None:
        num = _setting(section, "num_processes", _ENV[1])
        pid = _setting(section, "process_id", _ENV[2])
        if num is None or pid is None:
            raise InputError(f"distributed: coordinator_address={address!r} needs num_processes and "
                             "process_id too (config.distributed.* or SEISJAX_NUM_PROCESSES/SEISJAX_PROCESS_ID)")
        num, pid = int(num), int(pid)
        if not 0 <= pid < num:
            raise InputError(f"distributed: process_id {pid} out of range for num_processes {num}")
        kwargs = dict(coordinator_address=str(address), num_processes=num, process_id=pid)
    jax.distributed.initialize(**kwargs)
    return True


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all devices of all processes, axis ``"data"``."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of parameters and optimizer state: a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding of batch arrays: the leading (example) axis split over the devices."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def local_batch_size(global_batch_size: int, mesh: Mesh | None = None) -> int:
    """This process's share of a global batch; InputError unless it divides over the devices."""
    mesh = make_mesh() if mesh is None else mesh
    n_devices = mesh.devices.size
    if global_batch_size % n_devices:
        raise InputError(f"batch size {global_batch_size} does not divide over {n_devices} devices; "
                         f"use a multiple of {n_devices}")
    return global_batch_size // jax.process_count()


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """This process's numpy batch -> global ``jax.Array``s split over the ``data`` axis.

    Every process passes its own rows (``global / process_count`` of them); the result is the
    global batch, with each device holding its slice."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def to_host(tree):
    """Replicated (or fully addressable) arrays -> numpy, also in a multi-host run where a global
    array cannot be read whole: a replicated array's local copy is the whole value."""
    def get(x):
        if isinstance(x, jax.Array):
            if x.is_fully_addressable:
                return np.asarray(x)
            return np.asarray(x.addressable_data(0))
        return x

    return jax.tree_util.tree_map(get, tree)
