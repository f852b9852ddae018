"""Spectrogram autoencoders (AE, beta-VAE, CVAE): JAX vs their PyTorch twins on the CPU.

Three measurements, all on random inputs of the study's size (batch 32, 3 x 128 x 112 spectrograms:
129 STFT bins cropped to 128, 111 frames of a 70 s record at 100 Hz padded to 112):

1. ``--what decoder``, the upsampling probe: the decoder alone (``SpectrogramDecoder``, from the
   ``(F/16, T/16, 256)`` latent map to the spectrogram), forward and backward (gradients of an MSE
   for the parameters and the input, batch norm in training mode), for each ``upsample`` mode in JAX
   and in PyTorch (``benchmarks/torch_spectrogram.py``); ``"transpose"`` is ``nn.ConvTranspose`` /
   ``ConvTranspose2d``, the seed study's layer, which XLA runs slowly on CPU (DESIGN.md);
   JAX computes it as one GEMM and an overlap-add (seisjax.ops.conv; XLA's own lowering of the
   strided transposed convolution is the slow one; ``--what layers`` times both).
2. ``--what step``: a whole training step (forward, backward, Adam, batch statistics) of each model.
   JAX: one jitted step with the state donated, compiled ahead of time (compile time reported apart);
   PyTorch: eager, the same loss (MSE + beta KL + the CVAE's log-scale MSE) and Adam.
3. ``--what layers`` (not in ``all``): each layer of the AE alone, forward + backward, in every JAX
   form (XLA's convolution or the GEMM forms of seisjax/ops/conv.py; flax's BatchNorm + ReLU or the
   fused one; the GEMM transposed convolution, ``--xla-transpose`` adds XLA's own),
   the model's choice marked ``*``, to find where JAX loses time.

Timing: one fixed batch; ``--rounds`` interleaved blocks of ``--steps`` steps per side and case after
a warm-up, rates are medians (load from other processes falls on both sides alike); the ratio
JAX / PyTorch of examples/s comes from one run. Also printed: the ratio of the best rounds and of the
process CPU time (with one thread each, the time each side computed, without the time a loaded
machine kept it waiting). Threads: ``--threads 1`` runs both on one core (XLA's single-threaded
Eigen, ``torch.set_num_threads(1)``, and the process pinned to one core, since XLA otherwise runs
independent kernels side by side on the others); ``--threads 0`` leaves both at their defaults;
``--threads both`` (default) runs the two settings in separate processes (XLA reads its flags once).

    python benchmarks/bench_spectrogram.py                    # decoder probe and train steps, 1 and all threads
    python benchmarks/bench_spectrogram.py --quick            # a short check: batch 8, 64 x 48, one thread
    python benchmarks/bench_spectrogram.py --what decoder --threads 1 --json probe.json
    python benchmarks/bench_spectrogram.py --what step --upsample transpose --threads 1  # the seed's layer
    python benchmarks/bench_spectrogram.py --what layers --threads 1 --steps 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from seisjax.bench import cpu_model, limit_cpu_threads
from seisjax.malloc import retain_freed_memory

TWINS_FILE = Path(__file__).resolve().parent / "torch_spectrogram.py"
MODEL_NAMES = {"ae": "spectral_ae", "vae": "spectral_vae", "cvae": "spectral_cvae"}
MODES = ("subpixel", "resize", "transpose")
BETA = 1e-3
N_STATIONS = 20


def _load_twins():
    spec = importlib.util.spec_from_file_location("seisjax_torch_spectrogram", TWINS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _interleaved(runners: dict, steps: int, rounds: int, batch: int, with_best: bool = False):
    """Median examples/s of each runner over ``rounds`` interleaved blocks of ``steps`` calls.

    With ``with_best``, also the rates from the best round and from the process CPU time (median):
    on a shared machine a one-thread run is descheduled part of the time, which the CPU time leaves
    out (both sides run their math on one thread: ``--threads 1``)."""
    times = {k: [] for k in runners}
    cpu = {k: [] for k in runners}
    for _ in range(rounds):
        for key, run in runners.items():
            t0, c0 = time.perf_counter(), time.process_time()
            run(steps)
            times[key].append(time.perf_counter() - t0)
            cpu[key].append(time.process_time() - c0)
    median = {k: float(np.median([steps * batch / t for t in v])) for k, v in times.items()}
    if not with_best:
        return median
    best = {k: float(steps * batch / min(v)) for k, v in times.items()}
    cpu_rate = {k: float(np.median([steps * batch / max(t, 1e-9) for t in v])) for k, v in cpu.items()}
    return median, best, cpu_rate


def _random_batch(batch: int, shape: tuple[int, int], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.uniform(0, 1, size=(batch, *shape, 3)).astype(np.float32),
            "cond": rng.normal(size=(batch, 4)).astype(np.float32),
            "station": rng.integers(0, N_STATIONS + 1, size=batch).astype(np.int32),
            "log_scale": rng.uniform(0, 5, size=(batch, 2, 3)).astype(np.float32)}


def _model_kwargs(name: str, upsample: str, shape) -> dict:
    kwargs = {"features": (32, 64, 128, 256), "out_channels": 3, "upsample": upsample}
    if name != "spectral_ae":
        kwargs.update(latent=128, input_shape=tuple(shape))
    if name == "spectral_cvae":
        kwargs.update(n_stations=N_STATIONS, station_dim=16, cond_dim=64)
    return kwargs


# ----------------------------------------------------------------------------- JAX side
def spectrogram_loss(name: str, out: dict, x, log_scale=None, beta: float = BETA):
    """MSE of the reconstruction + ``beta`` x batch-mean KL (VAEs) + MSE of the CVAE's log scale."""
    import jax.numpy as jnp

    from seisjax.spectrogram.model import kl_divergence

    loss = jnp.mean(jnp.square(out["recon"] - x))
    if name != "spectral_ae":
        loss = loss + beta * jnp.mean(kl_divergence(out["mean"], out["logvar"]))
    if name == "spectral_cvae":
        loss = loss + jnp.mean(jnp.square(out["log_scale"] - log_scale))
    return loss


class JaxTrainStep:
    """One jitted train step of a spectrogram model (state donated), compiled ahead of time."""

    def __init__(self, name: str, kwargs: dict, batch: dict, seed: int = 0):
        import jax
        import optax

        from seisjax.spectrogram.model import MODELS

        model = MODELS[name](**kwargs)
        self.jax = jax
        args = (batch["x"],) if name != "spectral_cvae" else (batch["x"], batch["cond"], batch["station"])
        variables = jax.jit(lambda *a: model.init({"params": jax.random.key(seed), "sample": jax.random.key(seed)},
                                                  *a, train=False))(*args)
        tx = optax.adam(1e-3)

        def step(state, batch, rng):
            params, stats, opt_state = state
            inputs = (batch["x"],) if name != "spectral_cvae" else (batch["x"], batch["cond"], batch["station"])

            def loss_fn(params):
                out, new = model.apply({"params": params, "batch_stats": stats}, *inputs, train=True,
                                       rngs={"sample": rng}, mutable=["batch_stats"])
                return spectrogram_loss(name, out, batch["x"], batch.get("log_scale")), new["batch_stats"]

            (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), stats, opt_state), loss

        params = variables["params"]
        self.state = (params, variables["batch_stats"], tx.init(params))
        self.batch = jax.device_put(batch if name == "spectral_cvae" else {"x": batch["x"]})
        self.rng = jax.random.key(seed + 1)
        t0 = time.perf_counter()
        self.compiled = jax.jit(step, donate_argnums=(0,)).lower(self.state, self.batch, self.rng).compile()
        self.compile_s = time.perf_counter() - t0
        self.params = int(sum(np.size(p) for p in jax.tree_util.tree_leaves(params)))
        self.loss = None

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.state, loss = self.compiled(self.state, self.batch, self.rng)
        self.jax.block_until_ready(self.state)
        self.loss = float(loss)


class TorchTrainStep:
    """The twin's eager train step: the same loss, Adam."""

    def __init__(self, twins, name: str, kwargs: dict, batch: dict, seed: int = 0, device: str = "cpu"):
        import torch

        torch.manual_seed(seed)
        self.torch, self.twins, self.name, self.device = torch, twins, name, device
        self.module = twins.MODELS[name](exact=False, **kwargs).to(device)
        self.module.train()
        self.opt = torch.optim.Adam(self.module.parameters(), lr=1e-3)
        self.x = torch.from_numpy(np.ascontiguousarray(batch["x"].transpose(0, 3, 1, 2))).to(device)
        self.extra = (() if name != "spectral_cvae"
                      else (torch.from_numpy(batch["cond"]).to(device), torch.from_numpy(batch["station"]).to(device)))
        self.log_scale = torch.from_numpy(batch["log_scale"]).to(device)
        self.params = sum(p.numel() for p in self.module.parameters())
        t0 = time.perf_counter()
        self.run(1)
        self.first_step_s = time.perf_counter() - t0

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.opt.zero_grad(set_to_none=True)
            out = self.module(self.x, *self.extra)
            loss = self.twins.spectrogram_loss_torch(self.name, out, self.x, self.log_scale, BETA)
            loss.backward()
            self.opt.step()
        self.loss = float(loss.detach())   # waits for the device


def bench_steps(args, twins) -> list[dict]:
    batch = _random_batch(args.batch, tuple(args.shape), args.seed)
    results = []
    for short in args.models:
        name = MODEL_NAMES[short]
        jax_side = JaxTrainStep(name, _model_kwargs(name, args.upsample, args.shape), batch, args.seed)
        torch_side = TorchTrainStep(twins, name, _model_kwargs(name, args.torch_upsample, args.shape), batch,
                                    args.seed, args.torch_device)
        jax_side.run(args.warmup)
        torch_side.run(args.warmup)
        rates, best, cpu = _interleaved({"jax": jax_side.run, "torch": torch_side.run}, args.steps, args.rounds,
                                        args.batch, with_best=True)
        # after the timed rounds: XLA's first few steps still fault in fresh heap pages as the heap
        # grows (about 66,000 in each of one to three of them), later steps reuse them
        faults = {"jax": _minor_faults(jax_side.run), "torch": _minor_faults(torch_side.run)}
        r = {"model": name, "upsample": {"jax": args.upsample, "torch": args.torch_upsample},
             "params": {"jax": jax_side.params, "torch": torch_side.params},
             "jax": {"compile_s": jax_side.compile_s, "examples_per_s": rates["jax"],
                     "step_ms": 1e3 * args.batch / rates["jax"], "loss": jax_side.loss},
             "torch": {"first_step_s": torch_side.first_step_s, "examples_per_s": rates["torch"],
                       "step_ms": 1e3 * args.batch / rates["torch"], "loss": torch_side.loss},
             "jax_over_torch": rates["jax"] / rates["torch"], "minor_page_faults_per_step": faults,
             "best_round": {"jax_step_ms": 1e3 * args.batch / best["jax"],
                            "torch_step_ms": 1e3 * args.batch / best["torch"],
                            "jax_over_torch": best["jax"] / best["torch"]},
             "cpu_time": {"jax_step_ms": 1e3 * args.batch / cpu["jax"], "torch_step_ms": 1e3 * args.batch / cpu["torch"],
                          "jax_over_torch": cpu["jax"] / cpu["torch"]}}
        results.append(r)
        print(f"  {short.upper():>4} step (JAX {args.upsample}, PyTorch {args.torch_upsample}): "
              f"JAX {r['jax']['step_ms']:.1f} ms ({r['jax']['examples_per_s']:.1f} ex/s, compile "
              f"{r['jax']['compile_s']:.1f} s) | PyTorch {r['torch']['step_ms']:.1f} ms "
              f"({r['torch']['examples_per_s']:.1f} ex/s) | JAX / PyTorch {r['jax_over_torch']:.2f} "
              f"(best rounds {r['best_round']['jax_step_ms']:.1f} / {r['best_round']['torch_step_ms']:.1f} ms: "
              f"{r['best_round']['jax_over_torch']:.2f}; CPU time {r['cpu_time']['jax_step_ms']:.1f} / "
              f"{r['cpu_time']['torch_step_ms']:.1f} ms: {r['cpu_time']['jax_over_torch']:.2f}) | "
              f"params {jax_side.params}{'' if jax_side.params == torch_side.params else ' != ' + str(torch_side.params)}"
              f" | minor page faults per step {faults['jax']} / {faults['torch']}", flush=True)
    return results


def _minor_faults(run_one_step) -> int:
    """Minor page faults of the process during one step (memory the OS had to map afresh)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    run_one_step(1)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


# ----------------------------------------------------------------------------- decoder probe
def bench_decoder(args, twins) -> list[dict]:
    """Decoder alone, forward + backward, per upsample mode, JAX and PyTorch."""
    import jax
    import jax.numpy as jnp
    import torch

    from seisjax.spectrogram.model import SpectrogramDecoder

    features = (32, 64, 128, 256)
    f, t = args.shape
    rng = np.random.default_rng(args.seed)
    h = rng.normal(size=(args.batch, f // 16, t // 16, features[-1])).astype(np.float32)
    target = rng.uniform(0, 1, size=(args.batch, f, t, 3)).astype(np.float32)
    h_t = torch.from_numpy(np.ascontiguousarray(h.transpose(0, 3, 1, 2)))
    target_t = torch.from_numpy(np.ascontiguousarray(target.transpose(0, 3, 1, 2)))
    runners, info = {}, {}
    for mode in args.modes:
        decoder = SpectrogramDecoder(features, 3, mode)
        variables = jax.jit(lambda x, d=decoder: d.init(jax.random.key(0), x, train=False))(h)

        def fwd_bwd(params, stats, x, y, d=decoder):
            def loss_fn(params, x):
                out, new = d.apply({"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
                return jnp.mean(jnp.square(out - y)), new["batch_stats"]

            (loss, stats), grads = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(params, x)
            return loss, stats, grads

        hd, yd = jax.device_put(h), jax.device_put(target)
        t0 = time.perf_counter()
        compiled = jax.jit(fwd_bwd).lower(variables["params"], variables["batch_stats"], hd, yd).compile()
        compile_s = time.perf_counter() - t0

        def run_jax(steps, c=compiled, v=variables, hd=hd, yd=yd):
            for _ in range(steps):
                out = c(v["params"], v["batch_stats"], hd, yd)
            jax.block_until_ready(out)

        module = twins.SpectrogramDecoderTorch(features, 3, mode, exact=False)
        module.train()
        x_t = h_t.clone().requires_grad_(True)

        def run_torch(steps, m=module, x=x_t):
            for _ in range(steps):
                m.zero_grad(set_to_none=True)
                x.grad = None
                loss = torch.mean((m(x) - target_t) ** 2)
                loss.backward()

        run_jax(args.warmup)
        run_torch(args.warmup)
        runners[("jax", mode)], runners[("torch", mode)] = run_jax, run_torch
        info[mode] = {"compile_s": compile_s,
                      "params": int(sum(np.size(p) for p in jax.tree_util.tree_leaves(variables["params"]))),
                      "torch_params": sum(p.numel() for p in module.parameters())}
    rates = _interleaved(runners, args.steps, args.rounds, args.batch)
    results = []
    reference = rates.get(("torch", "transpose"))
    for mode in args.modes:
        jr, tr = rates[("jax", mode)], rates[("torch", mode)]
        r = {"mode": mode, **info[mode], "jax": {"examples_per_s": jr, "ms": 1e3 * args.batch / jr},
             "torch": {"examples_per_s": tr, "ms": 1e3 * args.batch / tr}, "jax_over_torch_same_mode": jr / tr}
        if reference:
            r["jax_over_torch_transpose"] = jr / reference
        results.append(r)
        print(f"  decoder fwd+bwd {mode:>9}: JAX {r['jax']['ms']:.1f} ms (compile {r['compile_s']:.1f} s) | "
              f"PyTorch {r['torch']['ms']:.1f} ms | JAX / PyTorch same mode {r['jax_over_torch_same_mode']:.2f}"
              + (f", vs PyTorch ConvTranspose2d {r['jax_over_torch_transpose']:.2f}" if reference else "")
              + f" | params {r['params']}", flush=True)
    return results


# ----------------------------------------------------------------------------- per-layer profile
def bench_layers(args, twins) -> list[dict]:
    """Each layer of the AE alone, forward + backward (input and weight gradients), JAX vs PyTorch;
    JAX returns the layer's output with the gradients, so that it computes its forward as PyTorch does.

    Every layer is timed in each JAX implementation (same function and parameters) against one
    PyTorch call: the encoder's 3x3 stride-2 convolutions (XLA's convolution, ``gemm`` of
    :mod:`seisjax.ops.conv`), batch norm + ReLU in training mode (flax's ``nn.BatchNorm`` then ReLU,
    :func:`seisjax.ops.conv.batch_norm_relu`), and the decoder's upsampling in each ``--modes``
    (``transpose``: the GEMM form of :mod:`seisjax.ops.conv`, and with ``--xla-transpose`` XLA's own
    ``conv_transpose``, many times slower). The model's choice (``model.*_conv_impl = "auto"``) is marked."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import torch
    import torch.nn.functional as F

    from seisjax.ops.conv import (
        batch_norm_relu,
        conv2d_gemm,
        conv_transpose3x3s2_gemm,
        depth_to_space,
        resolve_conv_impl,
    )
    from seisjax.spectrogram.model import subpixel_conv_impl

    features = (32, 64, 128, 256)
    f, t = args.shape
    rng = np.random.default_rng(args.seed)
    dn = ("NHWC", "HWIO", "NHWC")
    cases = []   # (layer, {impl: jax_fn(x, w)}, torch_fn(x, w), x_shape NHWC, w_shape, input_grad, model_impl)

    def bn_flax(x, w):
        stats = {"mean": jnp.zeros(x.shape[-1]), "var": jnp.ones(x.shape[-1])}
        y, _ = nn.BatchNorm(use_running_average=False, momentum=0.9).apply(
            {"params": {"scale": w[0], "bias": w[1]}, "batch_stats": stats}, x, mutable=["batch_stats"])
        return jax.nn.relu(y)

    def bn_ours(x, w):
        return batch_norm_relu(x, w[0], w[1])[0]

    def bn_relu_torch(x, w):
        return F.relu(F.batch_norm(x, None, None, w[0], w[1], training=True, eps=1e-5))

    bn_impls = {"flax": bn_flax, "ours": bn_ours}
    widths_in = (3,) + features[:-1]
    for i, (cin, cout) in enumerate(zip(widths_in, features, strict=True)):
        size = (args.batch, f >> i, t >> i, cin)
        cases.append((f"enc{i} conv3x3/2 {cin}->{cout}",
                      {"xla": lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 2), "SAME", dimension_numbers=dn),
                       "gemm": lambda x, w: conv2d_gemm(x, w, (2, 2))},
                      lambda x, w: F.conv2d(x, w, stride=2, padding=1), size, (3, 3, cin, cout), i > 0,
                      resolve_conv_impl("auto")))
        cases.append((f"enc{i} bn+relu {cout}", bn_impls, bn_relu_torch,
                      (args.batch, f >> (i + 1), t >> (i + 1), cout), (2, cout), True, "ours"))
    widths = list(features[-2::-1]) + [3]
    ins = [features[-1]] + widths[:-1]
    for i, (cin, cout) in enumerate(zip(ins, widths, strict=True)):
        level = len(features) - i
        size = (args.batch, f >> level, t >> level, cin)
        for mode in args.modes:
            if mode == "subpixel":
                impls = {"xla+d2s": lambda x, w: depth_to_space(jax.lax.conv_general_dilated(
                    x, w, (1, 1), ((0, 1), (0, 1)), dimension_numbers=dn), 2),
                         "gemm+d2s": lambda x, w: depth_to_space(conv2d_gemm(x, w, (1, 1), "SAME"), 2)}
                tf = lambda x, w: F.pixel_shuffle(F.conv2d(F.pad(x, (0, 1, 0, 1)), w), 2)
                wshape = (2, 2, cin, 4 * cout)
                chosen = f"{subpixel_conv_impl(cin, cout)}+d2s"
            elif mode == "resize":
                impls = {"repeat+conv": lambda x, w: jax.lax.conv_general_dilated(
                    jnp.repeat(jnp.repeat(x, 2, 1), 2, 2), w, (1, 1), "SAME", dimension_numbers=dn)}
                tf = lambda x, w: F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, padding=1)
                wshape, chosen = (3, 3, cin, cout), "repeat+conv"
            else:
                impls = {"gemm": conv_transpose3x3s2_gemm}
                if args.xla_transpose:
                    impls["xla"] = lambda x, w: jax.lax.conv_transpose(x, w, (2, 2), "SAME", dimension_numbers=dn)
                tf = lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
                wshape, chosen = (3, 3, cin, cout), resolve_conv_impl("auto")
            cases.append((f"dec{i} {mode} {cin}->{cout}", impls, tf, size, wshape, True, chosen))
        if i < len(widths) - 1:
            cases.append((f"dec{i} bn+relu {cout}", bn_impls, bn_relu_torch,
                          (args.batch, f >> (level - 1), t >> (level - 1), cout), (2, cout), True, "ours"))

    runners, meta = {}, []
    for label, impls, tf, xshape, wshape, input_grad, chosen in cases:
        x = rng.normal(size=xshape).astype(np.float32)
        w = (rng.normal(size=wshape) / np.sqrt(np.prod(wshape[:-1]))).astype(np.float32)
        if "bn+relu" in label:
            w = np.stack([np.ones(wshape[1]), np.zeros(wshape[1])]).astype(np.float32)
        ct = None
        argnums = (0, 1) if input_grad else (1,)
        xd, wd = jax.device_put(x), jax.device_put(w)
        for impl, jf in impls.items():
            if ct is None:
                ct = rng.normal(size=jax.eval_shape(jf, x, w).shape).astype(np.float32)
                cd = jax.device_put(ct)
            # the output too, as PyTorch's forward and a train step make it: with the gradients of
            # <output, c> alone, XLA drops the forward products of these linear layers (only the
            # backward needs their inputs), and a value <output, c> lets it skip writing the output
            def fwd_bwd(x, w, c, jf=jf, argnums=argnums):
                y, pullback = jax.vjp(jf, x, w)
                grads = pullback(c)
                return y, tuple(grads[i] for i in argnums)

            grad_fn = jax.jit(fwd_bwd)
            jax.block_until_ready(grad_fn(xd, wd, cd))

            def run_jax(steps, g=grad_fn, a=(xd, wd, cd)):
                for _ in range(steps):
                    out = g(*a)
                jax.block_until_ready(out)

            runners[("jax", label, impl)] = run_jax
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_(input_grad)
        if len(wshape) == 4:
            wt = w.transpose(2, 3, 0, 1) if "transpose" in label else w.transpose(3, 2, 0, 1)
        else:
            wt = w
        wt = torch.from_numpy(np.ascontiguousarray(wt)).requires_grad_(True)
        ctt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(ct, -1, 1)))

        def run_torch(steps, tf=tf, xt=xt, wt=wt, ctt=ctt):
            for _ in range(steps):
                xt.grad, wt.grad = None, None
                tf(xt, wt).backward(ctt)

        run_torch(1)
        runners[("torch", label, "")] = run_torch
        meta.append((label, list(impls), chosen))
    rates, best, cpu = _interleaved(runners, args.steps, args.rounds, args.batch, with_best=True)
    results = []
    for label, impls, chosen in meta:
        tms = 1e3 * args.batch / rates[("torch", label, "")]
        tbest = 1e3 * args.batch / best[("torch", label, "")]
        tcpu = 1e3 * args.batch / cpu[("torch", label, "")]
        for impl in impls:
            jms = 1e3 * args.batch / rates[("jax", label, impl)]
            jbest = 1e3 * args.batch / best[("jax", label, impl)]
            jcpu = 1e3 * args.batch / cpu[("jax", label, impl)]
            results.append({"layer": label, "impl": impl, "model_choice": impl == chosen, "jax_ms": jms,
                            "torch_ms": tms, "jax_over_torch": tms / jms, "jax_best_ms": jbest,
                            "torch_best_ms": tbest, "jax_over_torch_best": tbest / jbest,
                            "jax_cpu_ms": jcpu, "torch_cpu_ms": tcpu, "jax_over_torch_cpu": tcpu / jcpu})
            print(f"  {label:<26} {impl + ('*' if impl == chosen else ''):<12} JAX {jms:8.2f} ms | "
                  f"PyTorch {tms:8.2f} ms | JAX / PyTorch speed {tms / jms:5.2f} "
                  f"(best rounds {tbest / jbest:5.2f}; CPU time {jcpu:7.2f} / {tcpu:7.2f} ms: {tcpu / jcpu:5.2f})",
                  flush=True)
    return results


# ----------------------------------------------------------------------------- main
def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--what", choices=["decoder", "step", "layers", "all"], default="all",
                    help="all = decoder and step; layers = the per-layer profile")
    ap.add_argument("--quick", action="store_true",
                    help="a short check: batch 8, 64 x 48, 2 rounds of 2 steps, one thread (unless given)")
    ap.add_argument("--threads", default="both", help="1, 0 (defaults) or both (two processes)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--shape", type=int, nargs=2, default=(128, 112), metavar=("F", "T"))
    ap.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=list(MODEL_NAMES))
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="decoder probe modes")
    ap.add_argument("--upsample", default="subpixel", choices=MODES, help="JAX models' upsampling (step)")
    ap.add_argument("--torch-upsample", default=None, choices=MODES[:3],
                    help="the twins' upsampling (step; default: as --upsample)")
    ap.add_argument("--steps", type=int, default=3, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--xla-transpose", action="store_true",
                    help="layers: also time XLA's own conv_transpose (many times slower than the others)")
    ap.add_argument("--torch-device", default="cpu",
                    help="PyTorch's device in --what step: cpu, or cuda beside a JAX GPU")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    if args.quick:   # shrinks everything not set explicitly on the command line
        given = {a.split("=")[0] for a in argv if a.startswith("--")}
        args.steps, args.rounds, args.warmup = 2, 2, 1
        args.batch = args.batch if "--batch" in given else 8
        args.shape = args.shape if "--shape" in given else (64, 48)
        args.threads = args.threads if "--threads" in given else "1"
    args.torch_upsample = args.torch_upsample or args.upsample
    return args


def _run_one(args) -> dict:
    threads = int(args.threads)
    limit_cpu_threads(threads)   # before JAX starts its CPU backend
    retained = retain_freed_memory()
    import jax
    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)   # XLA's CPU code flushes denormals too (see seisjax/bench.py)
    twins = _load_twins()
    results = {"threads": threads or "default", "torch_threads": torch.get_num_threads(),
               "xla_flags": os.environ.get("XLA_FLAGS", ""), "batch": args.batch, "shape": list(args.shape),
               "steps_per_round": args.steps, "rounds": args.rounds,
               "machine": cpu_model(), "cpu_cores": os.cpu_count(),
               "versions": {"jax": jax.__version__, "torch": torch.__version__},
               "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
               "load_average_1min_start": os.getloadavg()[0], "freed_memory_retained": retained}
    print(f"threads: {results['threads']} (PyTorch {results['torch_threads']}); batch {args.batch}, "
          f"3 x {args.shape[0]} x {args.shape[1]}; {results['devices']} ({results['machine']}); freed memory "
          f"{'retained' if retained else 'returned to the OS'} (seisjax.malloc)", flush=True)
    if args.what in ("decoder", "all"):
        results["decoder"] = bench_decoder(args, twins)
    if args.what in ("step", "all"):
        results["steps"] = bench_steps(args, twins)
    if args.what == "layers":
        results["layers"] = bench_layers(args, twins)
    results["load_average_1min_end"] = os.getloadavg()[0]
    print(f"  load average (1 min) {results['load_average_1min_start']:.1f} -> "
          f"{results['load_average_1min_end']:.1f} on {results['cpu_cores']} cores", flush=True)
    return results


def main(argv=None) -> dict | list:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    if args.threads != "both":
        results = _run_one(args)
    else:   # XLA reads its thread flags once per process: one process per setting
        results = []
        base = [a for a in argv if a != "--json"]
        if args.json:
            base.remove(args.json)
        for threads in ("1", "0"):
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "r.json"
                subprocess.run([sys.executable, __file__, *base, "--threads", threads, "--json", str(out)],
                               check=True)
                results.append(json.loads(out.read_text()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


if __name__ == "__main__":
    main()
