"""DEC fine-tuning step and DEC target update: JAX (jit) vs PyTorch (and numpy), one thread each.

The network is the Mousavi polarity network (``seisjax.dec.model.MousaviPolarity``) and its PyTorch
twin (``benchmarks/torch_dec.py``: same layers, parameters and function, checked by
tests/dec/test_torch_twins.py), with random weights (the cost does not depend on training) on random
windows; the target P comes from the random network's own soft assignment, so it is a real target.

1. DEC fine-tuning step, one fixed batch: encoder forward and backward, Student's t soft assignment
   to the centres, ``KL(P || Q)``, Adam on the encoder and the centres (``--variants dec``); with
   ``idec`` also the decoder and ``MSE + gamma * KL``, Adam on every parameter. JAX: one jitted step
   (parameters and optimizer state donated), compile time reported apart; PyTorch: eager, as its
   users run it. ``--rounds`` interleaved blocks of ``--steps`` steps; rates are the medians.
2. Target update over ``--n`` embeddings (``clustering.dataset_target``: q, p and hard labels in
   one compiled call, host arrays in and out, as ``DECTask.before_step`` uses it) vs the same in
   PyTorch and numpy; and the update as the task runs it from the windows (encode every window and
   compute q, p, labels in one call) vs PyTorch's twin. Compile time and the first call reported
   apart from the median call.

    python benchmarks/bench_dec.py                       # batch 256, 100,000 embeddings, 1 thread
    python benchmarks/bench_dec.py --batch 64 --n 10000 --rounds 3 --steps 20   # quick check
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import time
from pathlib import Path

import numpy as np

from seisjax.bench import cpu_model, limit_cpu_threads

TWINS_FILE = Path(__file__).resolve().parent / "torch_dec.py"


def _median_rate(times: list[float], work: int) -> float:
    return float(np.median([work / t for t in times]))


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def build_sides(length: int = 32, n_clusters: int = 2, seed: int = 0, torch_device: str = "cpu"):
    """``(jax_side, torch_side)`` for :func:`bench_step` and :func:`bench_target`: the modules, a
    MousaviPolarity network and its random parameters; torch, the twins module and its device."""
    import jax
    import jax.numpy as jnp
    import optax
    import torch

    from seisjax.dec.model import MousaviPolarity
    from seisjax.metrics import clustering as cl

    spec = importlib.util.spec_from_file_location("seisjax_torch_twins_dec", TWINS_FILE)
    twins = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(twins)
    model = MousaviPolarity(length=length, n_clusters=n_clusters)
    params = jax.jit(model.init)(jax.random.key(seed), np.zeros((1, length, 1), np.float32))["params"]
    params = jax.tree_util.tree_map(np.asarray, params)
    return (jax, jnp, optax, cl, model, params), (torch, twins, torch.device(torch_device))


def _synced(torch, device, fn):
    """``fn`` timed to the end of its work on ``device`` (CUDA runs asynchronously)."""
    def run():
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    return run


def bench_step(jax_side, torch_side, variant: str, batch: int, steps: int, rounds: int, seed: int) -> dict:
    """One DEC (or IDEC) fine-tuning step, JAX vs PyTorch, on the same batch and parameters."""
    jax, jnp, optax, cl, model, params = jax_side
    torch, twins, device = torch_side
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, model.length, 1)).astype(np.float32)
    x /= np.abs(x).max(axis=1, keepdims=True)   # windows normalised as the task does
    z = model.apply({"params": params}, x, method="encode")
    target = np.array(cl.dataset_target(z, jnp.asarray(params["centres"]))[1])
    gamma = 0.1

    # ---- JAX: the decoder is frozen out of DEC (no gradient reaches it), trained in IDEC
    decoder_names = [k for k in params if k.startswith("dec") and k[3:].isdigit()]
    frozen = {} if variant == "idec" else {k: params[k] for k in decoder_names}
    trainable = {k: v for k, v in params.items() if k not in frozen}
    tx = optax.adam(1e-3)

    def loss_fn(trainable, x, target):
        p = {**trainable, **frozen}
        if variant == "dec":
            zz = model.apply({"params": p}, x, method="encode")
            return jnp.mean(cl.kl_divergence(target, cl.soft_assignment(zz, p["centres"])))
        recon, zz = model.apply({"params": p}, x)
        kl = jnp.mean(cl.kl_divergence(target, cl.soft_assignment(zz, p["centres"])))
        return jnp.mean(jnp.square(recon - x)) + gamma * kl

    def step(trainable, opt_state, x, target):
        loss, grads = jax.value_and_grad(loss_fn)(trainable, x, target)
        updates, opt_state = tx.update(grads, opt_state, trainable)
        return optax.apply_updates(trainable, updates), opt_state, loss

    state = [jax.tree_util.tree_map(jnp.array, trainable), None]
    state[1] = tx.init(state[0])
    xd, td = jnp.asarray(x), jnp.asarray(target)
    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(state[0], state[1], xd, td).compile()
    compile_s = time.perf_counter() - t0

    def run_jax():
        for _ in range(steps):
            state[0], state[1], loss = compiled(state[0], state[1], xd, td)
        jax.block_until_ready(state[0])
        return loss

    # ---- PyTorch twin with the same parameters
    twin = twins.MousaviPolarityTorch(length=model.length, n_clusters=model.n_clusters)
    twins.load_flax_mousavi_polarity(twin, params)
    twin.to(device)
    train_params = (list(twin.parameters()) if variant == "idec"
                    else list(twin.encoder.parameters()) + [twin.centres])
    opt = torch.optim.Adam(train_params, lr=1e-3)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1))).to(device)
    tt = torch.from_numpy(target).to(device)

    def run_torch():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            if variant == "dec":
                zz = twin.encode(xt)
                loss = twins.kl_divergence_torch(tt, twins.soft_assignment_torch(zz, twin.centres)).mean()
            else:
                loss = twins.dec_loss_torch(twin, xt, tt, variant="idec", gamma=gamma)
            loss.backward()
            opt.step()
        return loss

    run_torch = _synced(torch, device, run_torch)
    first_loss = (float(run_jax()), float(run_torch().detach()))   # warm-up; the same loss after `steps` steps
    jax_times, torch_times = [], []
    for _ in range(rounds):
        jax_times += _timed(run_jax, 1)
        torch_times += _timed(run_torch, 1)
    jax_rate, torch_rate = _median_rate(jax_times, steps * batch), _median_rate(torch_times, steps * batch)
    return {"variant": variant, "batch": batch, "steps_per_round": steps, "rounds": rounds,
            "trained_params": {"jax": int(sum(np.size(v) for v in jax.tree_util.tree_leaves(trainable))),
                               "torch": int(sum(p.numel() for p in train_params))},
            "loss_after_warmup": {"jax": first_loss[0], "torch": first_loss[1]},
            "jax": {"compile_s": compile_s, "examples_per_s": jax_rate, "step_ms": 1e3 * batch / jax_rate},
            "torch": {"examples_per_s": torch_rate, "step_ms": 1e3 * batch / torch_rate},
            "jax_over_torch": jax_rate / torch_rate}


def bench_target(jax_side, torch_side, n: int, repeats: int, seed: int) -> dict:
    """The target update over ``n`` embeddings (and from ``n`` windows through the encoder)."""
    jax, _, _, cl, model, params = jax_side
    torch, twins, device = torch_side
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, model.length, 1)).astype(np.float32)
    x /= np.abs(x).max(axis=1, keepdims=True)
    z = np.array(model.apply({"params": params}, x, method="encode"))   # writable copies for torch
    centres = np.array(params["centres"])
    out = {"n": n, "embedding_dim": int(z.shape[1]), "clusters": int(centres.shape[0]), "repeats": repeats}

    def jax_case(compiled, *args):
        # host arrays in, host arrays out: what the task's before_step pays
        first = time.perf_counter()
        result = [np.asarray(a) for a in compiled(*args)]
        first = time.perf_counter() - first
        times = _timed(lambda: [np.asarray(a) for a in compiled(*args)], repeats)
        return result, first, float(np.median(times))

    # ---- from embeddings
    t0 = time.perf_counter()
    compiled = cl.dataset_target.lower(z, centres, alpha=1.0).compile()
    compile_s = time.perf_counter() - t0
    (_, p, labels), first, median = jax_case(compiled, z, centres)
    out["from_embeddings"] = {"jax": {"compile_s": compile_s, "first_call_s": first, "call_s": median}}

    zt, ct = torch.from_numpy(z).to(device), torch.from_numpy(centres).to(device)

    @functools.partial(_synced, torch, device)
    def torch_target():
        with torch.no_grad():
            tq = twins.soft_assignment_torch(zt, ct)
            return tq, twins.target_distribution_torch(tq), tq.argmax(1)

    _, tp, tl = torch_target()
    out["from_embeddings"]["torch"] = {"call_s": float(np.median(_timed(torch_target, repeats)))}

    def numpy_target():
        d2 = ((z[:, None, :] - centres[None]) ** 2).sum(-1)
        logits = -np.log1p(d2)   # alpha = 1: (1 + d2)^-1, in log space as clustering.soft_assignment
        nq = np.exp(logits - logits.max(1, keepdims=True))
        nq /= nq.sum(1, keepdims=True)
        weight = nq ** 2 / nq.sum(0, keepdims=True)
        return nq, weight / weight.sum(1, keepdims=True), nq.argmax(1)

    _, npp, nl = numpy_target()
    out["from_embeddings"]["numpy"] = {"call_s": float(np.median(_timed(numpy_target, repeats)))}
    # the three compute the same target (a wrong one could be fast)
    out["from_embeddings"]["max_abs_diff_p"] = {"torch": float(np.abs(tp.cpu().numpy() - p).max()),
                                                "numpy": float(np.abs(npp - p).max())}
    out["from_embeddings"]["labels_agree"] = bool((tl.cpu().numpy() == labels).all() and (nl == labels).all())

    # ---- from windows: encode everything and compute the target in one call
    def encode_target(params, x):
        zz = model.apply({"params": params}, x, method="encode")
        return cl.dataset_target(zz, params["centres"])

    t0 = time.perf_counter()
    compiled = jax.jit(encode_target).lower(params, x).compile()
    compile_s = time.perf_counter() - t0
    (_, p_w, _), first, median = jax_case(compiled, params, x)
    out["from_windows"] = {"jax": {"compile_s": compile_s, "first_call_s": first, "call_s": median}}
    twin = twins.MousaviPolarityTorch(length=model.length, n_clusters=model.n_clusters)
    twins.load_flax_mousavi_polarity(twin, params)
    twin.to(device)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1))).to(device)

    @functools.partial(_synced, torch, device)
    def torch_windows():
        with torch.no_grad():
            tq = twins.soft_assignment_torch(twin.encode(xt), twin.centres)
            return tq, twins.target_distribution_torch(tq), tq.argmax(1)

    tp_w = torch_windows()[1]
    out["from_windows"]["torch"] = {"call_s": float(np.median(_timed(torch_windows, repeats)))}
    out["from_windows"]["max_abs_diff_p"] = {"torch": float(np.abs(tp_w.cpu().numpy() - p_w).max())}
    for case in ("from_embeddings", "from_windows"):
        entry = out[case]
        entry["torch_over_jax_time"] = entry["torch"]["call_s"] / entry["jax"]["call_s"]
        if "numpy" in entry:
            entry["numpy_over_jax_time"] = entry["numpy"]["call_s"] / entry["jax"]["call_s"]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=256, help="fine-tuning batch size (the full config's)")
    ap.add_argument("--steps", type=int, default=50, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (medians reported)")
    ap.add_argument("--variants", nargs="+", default=["dec", "idec"], choices=["dec", "idec"])
    ap.add_argument("--n", type=int, default=100_000, help="embeddings in the target update")
    ap.add_argument("--repeats", type=int, default=7, help="timed calls of the target update")
    ap.add_argument("--length", type=int, default=32, help="window length (samples)")
    ap.add_argument("--clusters", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU cores for JAX (XLA) and PyTorch, the process pinned to them")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-device", default="cpu", help="PyTorch's device: cpu, or cuda beside a JAX GPU")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)

    # before JAX starts its CPU backend (as `python -m seisjax bench --threads`)
    limit_cpu_threads(args.threads)
    import jax
    import torch

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)   # XLA's CPU code flushes denormals too (see seisjax/bench.py)
    jax_side, torch_side = build_sides(args.length, args.clusters, args.seed, args.torch_device)

    results = {"machine": cpu_model(), "cpu_cores": os.cpu_count(),
               "load_average_1min_start": os.getloadavg()[0], "threads": args.threads,
               "versions": {"jax": jax.__version__, "torch": torch.__version__},
               "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}", "steps": []}
    for variant in args.variants:
        r = bench_step(jax_side, torch_side, variant, args.batch, args.steps, args.rounds, args.seed)
        results["steps"].append(r)
        print(f"{variant.upper():>4} step, batch {r['batch']}: JAX {r['jax']['step_ms']:.3f} ms "
              f"({r['jax']['examples_per_s']:.0f} examples/s, compile {r['jax']['compile_s']:.2f} s) | "
              f"PyTorch {r['torch']['step_ms']:.3f} ms ({r['torch']['examples_per_s']:.0f} examples/s) | "
              f"JAX / PyTorch {r['jax_over_torch']:.2f} | trained params {r['trained_params']['jax']}")
    t = bench_target(jax_side, torch_side, args.n, args.repeats, args.seed)
    results["target_update"] = t
    e, w = t["from_embeddings"], t["from_windows"]
    print(f"target update, {t['n']} embeddings ({t['embedding_dim']}-d, {t['clusters']} clusters): "
          f"JAX {1e3 * e['jax']['call_s']:.2f} ms (compile {e['jax']['compile_s']:.2f} s, first call "
          f"{1e3 * e['jax']['first_call_s']:.2f} ms) | PyTorch {1e3 * e['torch']['call_s']:.2f} ms | "
          f"numpy {1e3 * e['numpy']['call_s']:.2f} ms | PyTorch/JAX {e['torch_over_jax_time']:.2f}, "
          f"numpy/JAX {e['numpy_over_jax_time']:.2f} | max |dp| torch {e['max_abs_diff_p']['torch']:.1e}, "
          f"numpy {e['max_abs_diff_p']['numpy']:.1e}, labels agree {e['labels_agree']}")
    print(f"encode + target update, {t['n']} windows: JAX {1e3 * w['jax']['call_s']:.2f} ms (compile "
          f"{w['jax']['compile_s']:.2f} s, first call {1e3 * w['jax']['first_call_s']:.2f} ms) | PyTorch "
          f"{1e3 * w['torch']['call_s']:.2f} ms | PyTorch/JAX {w['torch_over_jax_time']:.2f} | "
          f"max |dp| {w['max_abs_diff_p']['torch']:.1e}")
    results["load_average_1min_end"] = os.getloadavg()[0]
    print(f"load average (1 min) {results['load_average_1min_start']:.1f} -> {results['load_average_1min_end']:.1f} "
          f"on {results['cpu_cores']} cores of {results['machine']}; {results['devices']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


if __name__ == "__main__":
    main()
