"""The benchmark entry points (seisjax/bench.py): one config against its PyTorch twin, and the whole
suite in one table. What they measure is in benchmarks/README.md; here, that they run and report
what they should."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from seisjax.bench import SUITE, format_results, load_torch_twins, run_bench, run_suite
from seisjax.config import load_config
from seisjax.conv_ae.model import ConvAutoencoder
from tests.conftest import REPO, load_file

CONFIG = str(REPO / "experiments" / "conv_ae.py")
SMALL = ["model.channels=(8, 8, 8)", "batch_size=16", "optim.stages=((100, 3e-3, 1.0),)"]   # the toy config, narrower


def test_torch_twin_computes_the_same_function():
    torch = pytest.importorskip("torch")
    twins = load_file("benchmarks/torch_conv_ae.py")
    kwargs = dict(channels=(4, 8), kernel_size=5, latent_dim=6, out_channels=3, length=64)
    model = ConvAutoencoder(**kwargs)
    x = np.random.default_rng(0).normal(size=(2, 64, 3)).astype(np.float32)
    params = model.init(jax.random.PRNGKey(0), x)["params"]
    twin, _ = twins.TWINS["conv_ae"](kwargs)
    twins.load_flax_conv_ae(twin, params)
    assert sum(p.numel() for p in twin.parameters()) == sum(p.size for p in jax.tree_util.tree_leaves(params))
    out = twin(torch.from_numpy(x.transpose(0, 2, 1).copy())).detach().numpy().transpose(0, 2, 1)
    np.testing.assert_allclose(out, np.asarray(model.apply({"params": params}, x)), atol=1e-5)


def test_bench_reports_jax_torch_and_input_pipeline(tmp_path):
    pytest.importorskip("torch")
    config = load_config(f"{CONFIG}:toy", SMALL)
    results = run_bench(config, steps=4, warmup=1, input_batches=4, rounds=2, torch_threads=1,
                        workdir=tmp_path, config_spec="experiments/conv_ae.py:toy")
    assert results["jax"]["compile_s"] > 0 and results["jax"]["examples_per_s"] > 0
    assert results["torch"]["available"] and results["torch"]["params"] == results["jax"]["params"]
    assert results["jax_over_torch"] == pytest.approx(
        results["jax"]["examples_per_s"] / results["torch"]["examples_per_s"])
    assert results["input"]["examples_per_s"] > 0
    assert "ratio JAX / PyTorch" in format_results(results)
    assert results["cpu"] and results["cpu"] in format_results(results)   # ratios depend on the chip


def test_bench_says_when_pytorch_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` meets without PyTorch
    with pytest.raises(ImportError, match="PyTorch not installed"):
        load_torch_twins()


def test_one_bench_thread_pins_the_process_to_one_core():
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs a process that can be pinned, on two or more cores")
    probe = ("import os; from seisjax.bench import limit_cpu_threads; limit_cpu_threads(1); "
             "print(len(os.sched_getaffinity(0)), os.environ['XLA_FLAGS'])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "1" and "--xla_cpu_multi_thread_eigen=false" in out


def test_suite_runs_every_case_in_its_own_process_and_writes_one_table(tmp_path):
    """``bench --all`` (one family, smoke sizes): the table names the device and gives each case's
    ratio; the raw JSON of each case is kept."""
    pytest.importorskip("torch")
    assert {case.family for case in SUITE} == {"conv_ae", "symae", "spectrogram", "lstm_ae", "dec"}
    table = run_suite(tmp_path, quick=True, families=("conv_ae",), log=lambda _: None)
    text = table.read_text()
    assert text.startswith("# Benchmarks on ") and jax.devices()[0].platform in ("cpu", "gpu")
    results = json.loads((tmp_path / "results.json").read_text())
    (row,) = results["rows"]
    assert row["family"] == "conv_ae" and row["jax_ms"] > 0 and row["torch_ms"] > 0
    assert f"| {row['jax_over_torch']:.2f} |" in text
    assert (tmp_path / "raw" / "00_conv_ae.json").is_file()
    with pytest.raises(ValueError, match="no benchmark of nosuch"):
        run_suite(tmp_path, quick=True, families=("nosuch",))
