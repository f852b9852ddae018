"""Keep freed heap memory in the process instead of handing it back to the OS after every step.

XLA's CPU runtime allocates each step's temporary buffers afresh (an AE train step of the
spectrogram study: about 260 MiB). glibc serves allocations that large with a new ``mmap`` and
returns them with ``munmap`` on free, so every step page-faults all of that memory in again and the
kernel zeroes it: tens of thousands of minor page faults per step, and a markedly slower step
(``benchmarks/bench_spectrogram.py --what step`` prints the faults; the numbers: benchmarks/README.md). :func:`retain_freed_memory` tells glibc to serve large blocks from its one
main heap and to keep what is freed there, so the next step reuses the same, already mapped pages.
PyTorch's CPU tensors come from the same ``malloc`` and gain too.

The one arena costs small steps a little (the SymAE quick step), so the
command line (``python -m seisjax``) sets it, before JAX starts its threads, only for the tasks in
:data:`RETAIN_FOR_TASKS`, whose steps were measured faster with it (benchmarks/README.md);
``SEISJAX_RETAIN_FREED_MEMORY=1`` sets it for every command, ``0`` for none. A library user can call
:func:`retain_freed_memory` first thing in a script. Elsewhere than glibc (macOS, musl) it does
nothing and returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from seisjax.errors import InputError

__all__ = ["ENV_VAR", "RETAIN_FOR_TASKS", "retain_freed_memory", "wants_retained_memory"]

ENV_VAR = "SEISJAX_RETAIN_FREED_MEMORY"
# tasks whose CPU train step gains (benchmarks/README.md): the spectrogram autoencoders
RETAIN_FOR_TASKS = ("spectral_vae",)

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# the largest trim threshold mallopt takes (a C int): freed memory beyond 2 GiB at the top of the
# heap still goes back to the OS
_TRIM_THRESHOLD_BYTES = 2**31 - 1


def _env_setting() -> bool | None:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise InputError(f"{ENV_VAR}={value!r}: expected 1, 0 or auto")


def wants_retained_memory(task_name: str | None) -> bool:
    """Whether a command running ``task_name`` should keep freed memory: the environment variable if
    set (1 or 0), else whether the task is in :data:`RETAIN_FOR_TASKS`."""
    setting = _env_setting()
    return setting if setting is not None else task_name in RETAIN_FOR_TASKS


def retain_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory for reuse (one arena, no per-block ``mmap``, trim only
    beyond 2 GiB). Returns True when set; False when the environment variable is 0 or the C library
    has no ``mallopt``. Call before the threads that allocate exist (before JAX's first
    computation): threads that already have their own arena keep it."""
    if _env_setting() is False:
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # one arena: the heaps of other arenas are at most 64 MiB, so larger blocks would be mmapped
    return all(mallopt(param, value) == 1 for param, value in
               ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)))
