"""Benchmarks: a config's train step against its PyTorch twin, and every family's in one table.

``python -m seisjax bench --config experiments/conv_ae.py:quick`` builds the config's task, model
and optimizer exactly as training does, then measures:

- JAX: compile time of the train step (ahead of time, reported apart) and examples/s over
  ``steps`` steps on one fixed batch after ``warmup`` steps;
- PyTorch: the twin of the model from ``benchmarks/torch_<family>.py`` (same layers and parameter
  count, same loss, Adam), eager, on the same batch and on the device JAX runs on (CUDA beside a
  JAX GPU): first-step time and examples/s; the ratio JAX / PyTorch of examples/s;
- input pipeline: examples/s of the task's training iterator (reads, transform, prefetch), beside
  the step's, so one sees whether the step would wait on the host.

``python -m seisjax bench --all`` runs :data:`SUITE`: every family's train step against its twin,
plus the SymAE extraction, the DEC target update and the LSTM scan (the scripts in
``benchmarks/``), each in a process of its own, and writes one table (``results.md``, with
``results.json``) naming the chip or GPU it ran on. ``--quick`` shrinks every case to a smoke run.

JAX is imported inside the functions here (each import says so): XLA reads its thread flags when
JAX starts, and :func:`limit_cpu_threads` must come first.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["run_bench", "format_results", "load_torch_twins", "limit_cpu_threads", "cpu_model", "SUITE",
           "run_suite"]

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: the twins that ``run_bench`` times, one file per family (model name -> builder in each's TWINS)
TWIN_FILES = tuple(BENCHMARKS / f"torch_{family}.py" for family in ("conv_ae", "symae", "dec"))


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


def load_torch_twins() -> dict:
    """Model name -> twin builder, from the ``TWINS`` of each of :data:`TWIN_FILES`; ImportError when
    torch is missing.

    A twin has the same layers, widths, kernel sizes and parameter count as the Flax model (the bench
    checks the count), the same loss and optimizer, and is fed the same batch; it runs eagerly, as
    PyTorch users run it. A builder is ``builder(model_kwargs) -> (module, loss_fn(module, batch) ->
    loss)``; ``batch`` is the dict of numpy arrays the task yields (channels-last), which the loss
    function converts and moves to the module's device."""
    try:
        import torch  # noqa: F401  (optional: the bench extra)
    except ImportError:
        raise ImportError("PyTorch not installed (pip install 'seisjax[bench]' or pip install torch)") from None
    twins = {}
    for path in TWIN_FILES:
        if not path.is_file():
            raise ImportError(f"{path} not found (the bench runs from a source checkout)")
        spec = importlib.util.spec_from_file_location(f"seisjax_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        twins.update(module.TWINS)
    return twins


def device_name() -> str:
    """What JAX computes on: the GPU's kind, or the CPU's model (:func:`cpu_model`)."""
    import jax  # here: see the module docstring

    device = jax.devices()[0]
    return cpu_model() if device.platform == "cpu" else f"{jax.device_count()} x {device.device_kind}"


class _JaxStep:
    """The config's train step, compiled ahead of time (timed), on one fixed batch."""

    def __init__(self, setup, batch):
        import jax  # here: see the module docstring

        from seisjax.train.loop import make_train_step  # here: imports JAX

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

    def __init__(self, config, model_kwargs: dict, batch: dict, threads: int | None, device: str):
        twins = load_torch_twins()
        import torch  # optional: the bench extra

        self.torch, self.device = torch, torch.device(device)
        if threads:
            torch.set_num_threads(int(threads))
        # XLA's CPU code flushes denormals to zero; without the same, PyTorch's convolutions slow
        # down several-fold once small gradients appear, which would flatter JAX.
        torch.set_flush_denormal(True)
        name = config.model.name
        if name not in twins:
            raise ImportError(f"no PyTorch twin of model {name!r} in {', '.join(p.name for p in TWIN_FILES)}")
        torch.manual_seed(int(config.seed))
        self.module, self.loss_fn = twins[name](dict(model_kwargs))
        self.module.to(self.device)
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
        self.loss = float(loss.detach())   # waits for the device
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
    machine falls on both alike. PyTorch runs on the GPU when JAX does."""
    import jax  # here: see the module docstring

    from seisjax.families import task_class  # here: imports JAX
    from seisjax.train.loop import _Setup  # here: imports JAX

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
                device = "cuda" if jax.default_backend() == "gpu" else "cpu"
                torch_step = _TorchStep(config, setup.task.model_kwargs(), batch, torch_threads, device)
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
            "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}", "device": device_name(),
            "cpu": cpu_model(),
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
                          "threads": torch_step.torch.get_num_threads(), "device": str(torch_step.device),
                          "first_step_s": torch_step.first_step_s,
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


# ============================================================================ the whole suite
@dataclass(frozen=True)
class Case:
    """One benchmark of the suite: a command (``python <args>``, run from the repository root) that
    writes JSON to the file given after ``json_flag``, and how to read its rows from that JSON."""

    family: str
    what: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    read: str                      # the reader in _READERS
    json_flag: str = "--json"
    torch_device_flag: bool = False  # takes --torch-device (the engine bench follows JAX by itself)


def _engine(spec: str) -> tuple[str, ...]:
    return ("-m", "seisjax", "bench", "--config", spec)


_QUICK_ENGINE = ("--steps", "4", "--warmup", "1", "--batches", "2")

#: every family's comparison with its PyTorch twin, and the analyses that are benchmarks of their own
SUITE = (
    Case("conv_ae", "train step", _engine("experiments/conv_ae.py:quick"),
         _engine("experiments/conv_ae.py:toy") + _QUICK_ENGINE, "engine"),
    Case("symae", "train step", _engine("experiments/symae.py:quick"),
         _engine("experiments/symae.py:quick") + _QUICK_ENGINE, "engine"),
    Case("symae", "STF extraction: all groups in one call",
         ("benchmarks/bench_symae_extraction.py",),
         ("benchmarks/bench_symae_extraction.py", "--events", "2", "--pixels", "2", "--traces", "8",
          "--steps", "5", "--repeats", "1"), "extraction"),
    Case("spectrogram", "train step", ("benchmarks/bench_spectrogram.py", "--what", "step"),
         ("benchmarks/bench_spectrogram.py", "--what", "step", "--quick"), "spectrogram", torch_device_flag=True),
    Case("lstm_ae", "train step", ("benchmarks/bench_lstm_ae.py",),
         ("benchmarks/bench_lstm_ae.py", "--batch", "4", "--length", "128", "--rounds", "2", "--steps", "2"),
         "lstm", json_flag="--out", torch_device_flag=True),
    Case("dec", "polarity network, pretraining step", _engine("experiments/dec_polarity.py:quick,pretrain"),
         _engine("experiments/dec_polarity.py:pulses,pretrain") + _QUICK_ENGINE, "engine"),
    Case("dec", "polarity network, DEC/IDEC step and target update", ("benchmarks/bench_dec.py",),
         ("benchmarks/bench_dec.py", "--batch", "64", "--n", "10000", "--rounds", "2", "--steps", "5",
          "--repeats", "2"), "dec", torch_device_flag=True),
    Case("dec", "distance network, pretraining step",
         _engine("experiments/dec_distance.py:quick,pretrain"),
         _engine("experiments/dec_distance.py:tones,pretrain") + _QUICK_ENGINE, "engine"),
    Case("dec", "zClust network, pretraining step", _engine("experiments/dec_zclust.py:quick,pretrain"),
         _engine("experiments/dec_zclust.py:quick,pretrain") + _QUICK_ENGINE, "engine"),
)


def _row(what: str, jax_ms: float, torch_ms: float | None, note: str = "") -> dict:
    """A table row: times per call, and the speed ratio JAX / PyTorch (> 1: JAX is faster)."""
    return {"what": what, "jax_ms": jax_ms, "torch_ms": torch_ms,
            "jax_over_torch": None if torch_ms is None else torch_ms / jax_ms, "note": note}


def _read_engine(r: dict) -> list[dict]:
    torch_ms = r["torch"].get("step_ms")
    return [_row(f"{r['config']}, batch {r['batch_size']}", r["jax"]["step_ms"], torch_ms,
                 r["torch"].get("reason", "") if torch_ms is None else "")]


def _read_extraction(r: dict) -> list[dict]:
    res = r["results"]
    rows = [_row(f"{res['all']['events']} events x {r['args']['pixels']} pixels x {r['args']['traces']} traces, "
                 f"{r['args']['steps']} steps", 1e3 * res["all"]["run_s"], None,
                 f"{r['all_over_one_pixel']:.1f}x the time of one pixel")]
    if r.get("loop_estimate_s"):
        rows.append(_row("a Python loop over the events (estimated)", 1e3 * r["loop_estimate_s"], None,
                         f"{r['loop_estimate_s'] / res['all']['run_s']:.1f}x the one call"))
    return rows


def _read_spectrogram(r: dict) -> list[dict]:
    shape = " x ".join(map(str, r["shape"]))
    return [_row(f"{s['model']}, batch {r['batch']} of 3 x {shape}", s["jax"]["step_ms"], s["torch"]["step_ms"])
            for s in r["steps"]]


def _read_lstm(r: dict) -> list[dict]:
    ms, setup = r["ms_per_step"], r["setup"]
    size = f"batch {setup['batch']} of up to {setup['length']} samples"
    return [_row(f"whole step, {size}", ms["jax_full_scan"], ms["torch_full"]),
            _row(f"recurrent part alone, {size}", ms["jax_lstm_part_scan"], ms["torch_lstm_part"])]


def _read_dec(r: dict) -> list[dict]:
    rows = [_row(f"{s['variant'].upper()} step, batch {s['batch']}", s["jax"]["step_ms"], s["torch"]["step_ms"])
            for s in r["steps"]]
    target = r["target_update"]
    for case, label in (("from_embeddings", "embeddings"), ("from_windows", "windows, encoder included")):
        e = target[case]
        rows.append(_row(f"target update over {target['n']:,} {label}", 1e3 * e["jax"]["call_s"],
                         1e3 * e["torch"]["call_s"]))
    return rows


_READERS = {"engine": _read_engine, "extraction": _read_extraction, "spectrogram": _read_spectrogram,
            "lstm": _read_lstm, "dec": _read_dec}


def _ms(value) -> str:
    return "" if value is None else (f"{value:.3g} ms" if value < 1000 else f"{value / 1e3:.3g} s")


def _table(rows: list[dict], header: dict) -> str:
    lines = [f"# Benchmarks on {header['device']}", "",
             f"{header['date']}; {header['cores']} CPU cores, {header['threads']}; JAX {header['jax']}, "
             f"PyTorch {header['torch']}{'; quick (smoke) sizes' if header['quick'] else ''}. "
             "Times per call, medians of interleaved rounds; JAX / PyTorch above 1 means JAX is faster.", "",
             "| family | benchmark | case | JAX | PyTorch | JAX / PyTorch | note |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "" if r.get("jax_over_torch") is None else f"{r['jax_over_torch']:.2f}"
        lines.append(f"| {r['family']} | {r['benchmark']} | {r['what']} | {_ms(r.get('jax_ms'))} | "
                     f"{_ms(r.get('torch_ms'))} | {ratio} | {r.get('note', '')} |")
    lines += ["", "Commands (from the repository root):", ""]
    lines += [f"- {c}" for c in dict.fromkeys(f"`{r['command']}`" for r in rows)]
    return "\n".join(lines) + "\n"


def run_suite(out_dir, *, quick: bool = False, families=(), threads: int | None = None, log=print) -> Path:
    """Run :data:`SUITE` (``families``: only those), each case in its own process, and write
    ``results.json`` and ``results.md`` into ``out_dir``; returns the table's path. A case that
    fails is reported in the table with its error and the rest go on. ``threads``: CPU cores per
    case (default: 1 on a CPU, for steady numbers on a shared machine; each library's own on a GPU)."""
    import jax  # here: see the module docstring

    out_dir = Path(out_dir)
    (out_dir / "raw").mkdir(parents=True, exist_ok=True)
    gpu = jax.default_backend() == "gpu"
    threads = (0 if gpu else 1) if threads is None else int(threads)
    try:
        import torch  # optional: the bench extra
        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    header = {"device": device_name(), "cores": os.cpu_count(), "threads": f"{threads or 'default'} thread(s) each",
              "jax": jax.__version__, "torch": torch_version, "quick": quick,
              "date": datetime.date.today().isoformat()}
    cases = [c for c in SUITE if not families or c.family in families]
    if not cases:
        raise ValueError(f"no benchmark of {', '.join(families)} (families: "
                         f"{', '.join(sorted({c.family for c in SUITE}))})")
    rows, raw = [], {}
    for i, case in enumerate(cases):
        name = f"{i:02d}_{case.family}"
        json_path = out_dir / "raw" / f"{name}.json"
        args = list(case.quick_args if quick else case.args)
        engine = "--config" in args
        if threads or not engine:
            args += ["--threads", str(threads)]
        if gpu and case.torch_device_flag:
            args += ["--torch-device", "cuda"]
        # the engine bench keeps its generated data beside the results
        where = ["--workdir", str(out_dir / "work" / name)] if engine else []
        command = [sys.executable, *args, *where, case.json_flag, str(json_path)]
        log(f"[{i + 1}/{len(cases)}] {case.family}: {case.what}\n    {' '.join(command[1:])}")
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=BENCHMARKS.parent)
        (out_dir / "raw" / f"{name}.log").write_text(done.stdout + done.stderr)
        entry = {"family": case.family, "benchmark": case.what, "command": " ".join(["python", *args]),
                 "seconds": round(time.perf_counter() - started, 1)}
        if done.returncode != 0 or not json_path.is_file():
            error = (done.stderr.strip().splitlines() or ["no output"])[-1]
            rows.append({**entry, "what": "failed", "note": f"{error} (log: raw/{name}.log)"})
            log(f"    failed: {error}")
            continue
        result = json.loads(json_path.read_text())
        raw[name] = result
        for row in _READERS[case.read](result):
            rows.append({**entry, **row})
            ratio = row["jax_over_torch"]
            log(f"    {row['what']}: JAX {_ms(row['jax_ms'])}" + (f", PyTorch {_ms(row['torch_ms'])}, "
                f"JAX / PyTorch {ratio:.2f}" if ratio is not None else f" ({row['note']})"))
    table = out_dir / "results.md"
    table.write_text(_table(rows, header))
    (out_dir / "results.json").write_text(json.dumps({"header": header, "rows": rows, "raw": raw}, indent=2) + "\n")
    return table
