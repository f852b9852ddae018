"""seisjax.malloc: freed large blocks are reused without page faults, and the switch turns it off.

Each case runs in a fresh interpreter: malloc's settings are process-wide and must be made before
the allocating threads exist."""

import os
import subprocess
import sys

import pytest

from seisjax.malloc import ENV_VAR

# Allocates and frees a 256 MiB block with the C library's malloc, as XLA does (numpy's arrays ask for
# huge pages, which hides the effect), writes it, and counts the minor page faults of a second block of
# the same size: a block the OS handed out afresh faults in every page (65,536 of 4 KiB), one reused
# from the heap none.
PROBE = """
import ctypes, ctypes.util, resource
from seisjax.malloc import retain_freed_memory
retained = retain_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
n = 256 * 2**20
a = libc.malloc(n); ctypes.memset(a, 1, n); libc.free(a)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
b = libc.malloc(n); ctypes.memset(b, 1, n)
print(int(retained), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(env_value=None):
    env = dict(os.environ)
    env.pop(ENV_VAR, None)
    if env_value is not None:
        env[ENV_VAR] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    retained, faults = (int(v) for v in out.stdout.split())
    return bool(retained), faults


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and minor-fault counts")
def test_freed_memory_is_reused_and_the_switch_turns_it_off():
    retained, faults = _probe()
    assert retained
    assert faults < 2_000                     # the 65,536 pages came back from the heap, already mapped
    retained, faults = _probe("0")
    assert not retained
    assert faults > 30_000                    # glibc's default: munmap on free, fresh pages again


def test_which_commands_keep_freed_memory(monkeypatch, tmp_path):
    from seisjax.cli import _task_name, build_parser
    from seisjax.config import load_config, save_config
    from seisjax.errors import InputError
    from seisjax.malloc import RETAIN_FOR_TASKS, wants_retained_memory
    from tests.conftest import REPO

    spectral = build_parser().parse_args(["bench", "--config", str(REPO / "experiments" / "spectrogram.py:quick,ae")])
    assert _task_name(spectral) == "spectral_vae" and "spectral_vae" in RETAIN_FOR_TASKS
    save_config(load_config(str(REPO / "experiments" / "symae.py:quick")), tmp_path / "run")
    symae = build_parser().parse_args(["eval", "--workdir", str(tmp_path / "run")])
    assert _task_name(symae) == "symae"
    assert _task_name(build_parser().parse_args(["eval", "--workdir", str(tmp_path / "none")])) is None

    monkeypatch.delenv(ENV_VAR, raising=False)
    assert wants_retained_memory("spectral_vae") and not wants_retained_memory("symae")
    assert not wants_retained_memory(None)
    monkeypatch.setenv(ENV_VAR, "1")
    assert wants_retained_memory("symae")
    monkeypatch.setenv(ENV_VAR, "0")
    assert not wants_retained_memory("spectral_vae")
    monkeypatch.setenv(ENV_VAR, "sometimes")
    with pytest.raises(InputError, match="SEISJAX_RETAIN_FREED_MEMORY='sometimes'"):
        wants_retained_memory("spectral_vae")
