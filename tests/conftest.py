import importlib.util
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The team's real development data: $SEISJAX_SHARED_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("SEISJAX_SHARED_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


def load_file(relative: str):
    """A script or benchmark of the repository as a module (``scripts/`` and ``benchmarks/`` are not
    packages): ``load_file("benchmarks/torch_dec.py")``."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(f"_tests_{path.parent.name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_notebook(name: str, workdir: Path, timeout: int = 600):
    """Execute ``notebooks/<name>.ipynb`` top to bottom in a fresh kernel with ``workdir`` as its
    working folder and ``SEISJAX_NOTEBOOK_TINY=1`` (the notebook trains a tiny run of its own);
    returns the executed notebook. The committed notebook must carry no outputs."""
    path = REPO / "notebooks" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), \
        f"{path.name}: commit it with its outputs stripped"
    env = os.environ.get("SEISJAX_NOTEBOOK_TINY")
    os.environ["SEISJAX_NOTEBOOK_TINY"] = "1"   # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        if env is None:
            os.environ.pop("SEISJAX_NOTEBOOK_TINY")
        else:
            os.environ["SEISJAX_NOTEBOOK_TINY"] = env
    return nb


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real development data not found: set SEISJAX_SHARED_DATA or place it at ../shared/data")
    return path


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory):
    """One XLA compilation cache for the session: many tests build the same small models and steps
    in fresh closures, which the in-memory jit cache cannot share but the on-disk cache (keyed by the
    program and its compile options) can."""
    import jax

    settings = {"jax_compilation_cache_dir": str(tmp_path_factory.mktemp("xla_cache")),
                "jax_persistent_cache_min_compile_time_secs": 0.0,
                "jax_persistent_cache_min_entry_size_bytes": 0}
    previous = {key: jax.config.values[key] for key in settings}
    for key, value in settings.items():
        jax.config.update(key, value)
    yield
    for key, value in previous.items():
        jax.config.update(key, value)


@pytest.fixture(scope="module", autouse=True)
def _fast_compile(request):
    """Modules that set ``FAST_COMPILE = True`` run with XLA's optimisations off: they check
    correctness, and compiling dominates their time."""
    if not getattr(request.module, "FAST_COMPILE", False):
        yield
        return
    import jax

    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
