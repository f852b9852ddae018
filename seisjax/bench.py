"""Throughput of a config's train step, of its PyTorch twin and of its input pipeline, in one run.

``python -m seisjax bench --config experiments/conv_ae.py:quick`` builds the config's task, model
and optimizer exactly as training does, then measures:

- JAX: compile time of the train step (ahead of time, reported apart) and examples/s over
  ``steps`` steps on one fixed batch after ``warmup`` steps;
- PyTorch: the twin of the model from ``benchmarks/torch_models.py`` (same layers and parameter
  count, same loss, Adam), eager, on the same batch: first-step time and examples/s; the ratio
  JAX / PyTorch of examples/s;
- input pipeline: examples/s of the task's training iterator (reads, transform, prefetch), beside
  the step's, so one sees whether the step would wait on the host.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import time
from pathlib import Path

import numpy as np

__all__ = ["run_bench", "format_results", "load_torch_twins", "limit_cpu_threads", "cpu_model"]

TWINS_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "torch_models.py"


def limit_cpu_threads(threads: int) -> None:
    """Run this process's JAX (and PyTorch) math on ``threads`` CPU cores; call before JAX starts.

    XLA's flags only make Eigen single-threaded: its runtime still runs independent kernels side by
    side on other cores (a "one-thread" JAX step used 1.8 cores of CPU time on an idle 2-core
    machine), so the process is also pinned to ``threads`` cores where the OS allows it.
    """
    threads = int(threads)
    if threads <= 0:
        return
    flags = f"--xla_cpu_multi_thread_eigen={'false' if threads == 1 else 'true'} " \
            f"intra_op_parallelism_threads={threads}"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if threads < len(cores):
            os.sched_setaffinity(0, cores[:threads])


def cpu_model() -> str:
    """The CPU's model name and widest vector extension, e.g. "AMD EPYC (AVX2)".

    Ratios to PyTorch depend on it (oneDNN/MKL and XLA's kernels favour different chips), so every
    benchmark records it beside its numbers."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    isa = next((label for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"),
                                         ("asimd", "NEON")) if flag in flags), "")
    return f"{name} ({isa})" if isa else name


def load_torch_twins():
    """The ``TWINS`` registry of benchmarks/torch_models.py; ImportError when torch is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ImportError("PyTorch not installed (pip install 'seisjax[bench]' or pip install torch)") from None
    if not TWINS_FILE.is_file():
        raise ImportError(f"{TWINS_FILE} not found (the bench runs from a source checkout)")
    spec = importlib.util.spec_from_file_location("seisjax_torch_twins", TWINS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TWINS


class _JaxStep:
    """The config's train step, compiled ahead of time (timed), on one fixed batch."""

    def __init__(self, setup, batch):
        import jax

        from seisjax.train.loop import make_train_step

        self.jax = jax
        self.example = setup.shard(batch)
        tree = setup.initial(self.example)
        self.state, self.rng = tree["state"], tree["rng"]
        state_sh = jax.tree_util.tree_map(lambda _: setup.repl, self.state)
        step_fn = jax.jit(make_train_step(setup.task, setup.tx, setup.schedule),
                          in_shardings=(state_sh, setup.data_sharding, setup.repl),
                          out_shardings=(state_sh, setup.repl), donate_argnums=(0,))
        t0 = time.perf_counter()
        self.compiled = step_fn.lower(self.state, self.example, self.rng).compile()
        self.compile_s = time.perf_counter() - t0
        self.params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(self.state.params))
        self.loss = None

    def run(self, steps: int) -> float:
        """Seconds for ``steps`` steps (dispatched asynchronously, waited for at the end)."""
        if steps <= 0:
            return 0.0
        t0 = time.perf_counter()
        for _ in range(steps):
            self.state, metrics = self.compiled(self.state, self.example, self.rng)
        self.jax.block_until_ready(self.state)
        self.loss = float(metrics["loss"])
        return time.perf_counter() - t0


class _TorchStep:
    """The PyTorch twin of the model with the same loss and Adam, eager, on the same batch."""

    def __init__(self, config, model_kwargs: dict, batch: dict, threads: int | None):
        twins = load_torch_twins()
        import torch

        self.torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        # XLA's CPU code flushes denormals to zero; without the same, PyTorch's convolutions slow
        # down several-fold once small gradients appear, which would flatter JAX.
        torch.set_flush_denormal(True)
        name = config.model.name
        if name not in twins:
            raise ImportError(f"no PyTorch twin of model {name!r} in {TWINS_FILE.name}")
        torch.manual_seed(int(config.seed))
        self.module, self.loss_fn = twins[name](dict(model_kwargs))
        lr = float(config.optim.stages[0][1]) if config.optim.schedule == "stages" else float(config.optim.lr)
        self.opt = torch.optim.Adam(self.module.parameters(), lr=lr, betas=(config.optim.b1, config.optim.b2),
                                    eps=config.optim.eps)
        self.batch = batch
        self.params = sum(p.numel() for p in self.module.parameters())
        self.first_step_s = self.run(1)

    def run(self, steps: int) -> float:
        if steps <= 0:
            return 0.0
        t0 = time.perf_counter()
        for _ in range(steps):
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.module, self.batch)
            loss.backward()
            self.opt.step()
        self.loss = float(loss.detach())
        return time.perf_counter() - t0


def _bench_input(setup, batches: int) -> dict:
    iterator = setup.train_iter  # the training iterator itself: its files are open, its cache made
    try:
        next(iterator)  # the first batch starts the prefetch thread and opens the files
        t0 = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        elapsed = time.perf_counter() - t0
    finally:
        iterator.close()
    bs = int(setup.config.batch_size)
    return {"batches_per_s": batches / elapsed, "examples_per_s": bs * batches / elapsed,
            "prefetch": int(setup.config.data.get("prefetch", 0) or 0)}


def run_bench(config, *, steps: int = 30, warmup: int = 3, input_batches: int = 30, torch: bool = True,
              torch_threads: int | None = None, rounds: int = 5, workdir=None, config_spec: str | None = None) -> dict:
    """Measure (see the module docstring) and return the numbers as a JSON-ready dict.

    JAX and PyTorch steps are timed in ``rounds`` interleaved blocks of ``steps / rounds`` steps,
    and each rate is the median over rounds, so that load from other processes on a shared
    machine falls on both alike."""
    import jax

    from seisjax.families import task_class
    from seisjax.train.loop import _Setup

    if not workdir:  # one folder per config and variant: each generates the data it describes
        path, _, variant = str(config_spec or "bench").partition(":")
        workdir = Path("runs") / "bench" / "_".join(filter(None, (Path(path).stem, variant)))
    workdir = Path(workdir)
    setup = _Setup(task_class(config.task.name), config, workdir)
    bs = int(config.batch_size)
    try:
        batch = next(setup.train_iter)
        jax_step = _JaxStep(setup, batch)
        jax_step.run(warmup)
        torch_step, torch_info = None, {"available": False, "reason": "skipped (--no-torch)"}
        if torch:
            try:
                torch_step = _TorchStep(config, setup.task.model_kwargs(), batch, torch_threads)
                torch_step.run(max(0, warmup - 1))
            except ImportError as err:
                torch_info = {"available": False, "reason": str(err)}
        per_round = max(1, steps // rounds)
        jax_rates, torch_rates = [], []
        for _ in range(rounds):
            jax_rates.append(bs * per_round / jax_step.run(per_round))
            if torch_step is not None:
                torch_rates.append(bs * per_round / torch_step.run(per_round))
        results = {
            "config": config_spec, "batch_size": bs, "timed_steps": per_round * rounds, "rounds": rounds,
            "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}", "cpu": cpu_model(),
            "cpu_cores": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0],  # other work on the machine skews both sides
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "jax": {"version": jax.__version__, "compile_s": jax_step.compile_s,
                    "examples_per_s": float(np.median(jax_rates)), "params": jax_step.params,
                    "final_loss": jax_step.loss},
            "input": _bench_input(setup, input_batches),
        }
        if torch_step is not None:
            torch_info = {"available": True, "version": torch_step.torch.__version__,
                          "threads": torch_step.torch.get_num_threads(), "first_step_s": torch_step.first_step_s,
                          "examples_per_s": float(np.median(torch_rates)), "params": torch_step.params,
                          "final_loss": torch_step.loss}
        results["torch"] = torch_info
    finally:
        setup.task.close()
    for side in ("jax", "torch"):
        if "examples_per_s" in results[side]:
            results[side]["step_ms"] = 1e3 * bs / results[side]["examples_per_s"]
    if results["torch"].get("available"):
        results["jax_over_torch"] = results["jax"]["examples_per_s"] / results["torch"]["examples_per_s"]
    results["input_over_step"] = results["input"]["examples_per_s"] / results["jax"]["examples_per_s"]
    return results


def format_results(r: dict) -> str:
    """A short human-readable report of :func:`run_bench`'s results."""
    j, t, i = r["jax"], r["torch"], r["input"]
    lines = [f"bench {r['config']}: batch {r['batch_size']} on {r['devices']} ({r['cpu_cores']} cores of "
             f"{r.get('cpu', 'an unrecorded CPU')}, "
             f"load average {r['load_average_1min']:.1f}); median of {r['rounds']} interleaved rounds",
             f"  JAX train step   compile {j['compile_s']:.2f} s | {j['step_ms']:.2f} ms/step | "
             f"{j['examples_per_s']:.0f} examples/s | {j['params']} params"]
    if t.get("available"):
        lines.append(f"  PyTorch {t['version']:<8} first step {t['first_step_s']:.2f} s | {t['step_ms']:.2f} ms/step | "
                     f"{t['examples_per_s']:.0f} examples/s | {t['params']} params | {t['threads']} threads")
        lines.append(f"  ratio JAX / PyTorch (examples/s): {r['jax_over_torch']:.2f}")
        if t["params"] != j["params"]:
            lines.append(f"  WARNING: parameter counts differ (JAX {j['params']}, PyTorch {t['params']})")
    else:
        lines.append(f"  PyTorch: {t['reason']}")
    lines.append(f"  input pipeline   {i['examples_per_s']:.0f} examples/s ({i['batches_per_s']:.1f} batches/s, "
                 f"prefetch {i['prefetch']}) = {r['input_over_step']:.2f} x the train step")
    if r["input_over_step"] < 1:
        lines.append("  WARNING: the input pipeline is slower than the train step: the step waits on the host")
    return "\n".join(lines)
