"""The spectrogram models' weight-gradient products in XLA's CPU runtime: the form they take, and the
same product with its operands laid out the canonical way.

In a train step of seisjax/ops/conv.py's GEMM convolutions, the weight gradient is ``patches^T @
dy``: both operands are stored ``(B*Ho*Wo, features)`` and the product sums over their leading axis.
XLA hands a product to YNNPACK only when its left operand is row-major and contracted on its last
axis, so these stay on its Eigen path, while every forward and input-gradient product of the step
runs as a YNNPACK fusion. This script times, for each GEMM layer of the AE (study size: batch 32,
3 x 128 x 112, widths 32-64-128-256, sub-pixel decoder), the product as the step computes it
(``dot_general`` of ``(K, M)`` and ``(K, N)`` over axis 0) against the same product from a patch
matrix already stored transposed (``(M, K) @ (K, N)``), and names the kernel XLA chose for each
(``ynn`` or ``eigen``, read from the compiled HLO). The difference is the cost a transposed-operand
product would save if XLA sent it to YNNPACK; producing the transposed operand inside the step costs
more than it saves (benchmarks/README.md).

    python benchmarks/bench_gemm_forms.py                 # one pinned core, 7 interleaved rounds
    python benchmarks/bench_gemm_forms.py --threads 0     # XLA's default threads
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from seisjax.bench import cpu_model, limit_cpu_threads


def layer_products(batch: int = 32, shape=(128, 112), channels: int = 3, widths=(32, 64, 128, 256)):
    """``(name, K, M, N)`` of every weight-gradient GEMM in the AE: the encoder's 3x3 stride-2
    convolutions and the sub-pixel decoder's 2x2 convolutions (all but the thin last stage, which
    runs as XLA's convolution)."""
    rows, (h, w), cin = [], shape, channels
    for i, width in enumerate(widths):
        h, w = -(-h // 2), -(-w // 2)
        rows.append((f"enc{i} conv {cin}->{width}", batch * h * w, 9 * cin, width))
        cin = width
    for i, width in enumerate(list(widths[-2::-1])):
        rows.append((f"dec{i} sub-pixel {cin}->{width}", batch * h * w, 4 * cin, 4 * width))
        h, w, cin = 2 * h, 2 * w, width
    return rows


def _kernel(compiled_text: str) -> str:
    return "ynn" if "ynn_fusion" in compiled_text else "eigen"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="1: one pinned core (default); 0: XLA's default")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (medians reported)")
    parser.add_argument("--repeats", type=int, default=5, help="products per round")
    args = parser.parse_args(argv)
    limit_cpu_threads(args.threads)
    import jax
    from jax import lax

    def product(lhs_axis):
        return jax.jit(lambda a, b: lax.dot_general(a, b, (((lhs_axis,), (0,)), ((), ()))))

    step_form, canonical = product(0), product(1)
    rng = np.random.default_rng(0)
    results = []
    cores = f"{args.threads} pinned core(s)" if args.threads > 0 else "XLA's default threads"
    print(f"{cpu_model()}, {cores}; jax {jax.__version__}")
    print(f"{'layer':26s} {'K x M x N':>20s} {'as in the step':>18s} {'transposed patches':>20s} {'ratio':>6s}")
    for name, k, m, n in layer_products():
        patches = jax.device_put(rng.standard_normal((k, m), dtype=np.float32))
        patches_t = jax.device_put(np.ascontiguousarray(np.asarray(patches).T))
        dy = jax.device_put(rng.standard_normal((k, n), dtype=np.float32))
        cases = {"step": (step_form, patches), "canonical": (canonical, patches_t)}
        kernels = {c: _kernel(f.lower(a, dy).compile().as_text()) for c, (f, a) in cases.items()}
        np.testing.assert_allclose(np.asarray(step_form(patches, dy)), np.asarray(canonical(patches_t, dy)),
                                   rtol=1e-3, atol=1e-2 * np.sqrt(k))
        times = {c: [] for c in cases}
        for _ in range(args.rounds):
            for c, (f, a) in cases.items():
                f(a, dy).block_until_ready()
                t0 = time.perf_counter()
                for _ in range(args.repeats):
                    out = f(a, dy)
                out.block_until_ready()
                times[c].append((time.perf_counter() - t0) / args.repeats * 1e3)
        ms = {c: float(np.median(v)) for c, v in times.items()}
        results.append({"layer": name, "k": k, "m": m, "n": n, "ms": ms, "kernels": kernels})
        print(f"{name:26s} {f'{k} x {m} x {n}':>20s} {ms['step']:9.2f} ms {kernels['step']:>6s} "
              f"{ms['canonical']:11.2f} ms {kernels['canonical']:>6s} {ms['step'] / ms['canonical']:6.2f}")
    total = {c: sum(r["ms"][c] for r in results) for c in ("step", "canonical")}
    print(f"{'all':26s} {'':>20s} {total['step']:9.2f} ms {'':>6s} {total['canonical']:11.2f} ms {'':>6s} "
          f"{total['step'] / total['canonical']:6.2f}")
    return results


if __name__ == "__main__":
    main()
