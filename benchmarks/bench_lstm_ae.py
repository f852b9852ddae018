"""LSTM autoencoder train step: JAX (jit) vs its PyTorch twin on this CPU, and where the time goes.

Measured in one process, interleaved in ``--rounds`` blocks of ``--steps`` steps (rates are the
medians, so a change of machine load hits both sides alike), on one fixed batch of ``--batch``
records padded to ``--length`` steps with lengths uniform in [length/2, length]:

1. full train step (forward, masked L1, backward, Adam): JAX with ``lstm_impl`` "scan" (masked
   ``nn.scan``) and "rnn" (``nn.RNN`` with ``seq_lengths``), compile time apart; PyTorch eager with
   ``pack_padded_sequence`` (benchmarks/torch_lstm_ae.py, same trainable parameters);
2. the convolutional part alone (encoder and decoder blocks, pooling, upsampling; no LSTM) and the
   recurrent part alone (encoder and decoder LSTM over the length/8 pooled steps), forward and
   backward with a sum loss, on each side, to say where the recurrent scan limits the step.

    python benchmarks/bench_lstm_ae.py --threads 1              # one thread each
    python benchmarks/bench_lstm_ae.py --threads 0              # default threads each
    python benchmarks/bench_lstm_ae.py --batch 8 --length 512 --rounds 2 --steps 3   # quick check
    python benchmarks/bench_lstm_ae.py --threads 0 --torch-device cuda --batch 32 --length 2048   # on a GPU

On a GPU JAX runs on its default device and PyTorch on ``--torch-device`` (cuDNN's LSTM); each
timed block ends when the device is done (``block_until_ready`` / ``torch.cuda.synchronize``).

``--threads`` must be given at start (XLA reads it when JAX starts its CPU backend).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path

from seisjax.bench import cpu_model, limit_cpu_threads


def _load_twin():
    path = Path(__file__).resolve().parent / "torch_lstm_ae.py"
    spec = importlib.util.spec_from_file_location("torch_lstm_ae", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU cores for XLA and PyTorch, the process pinned to them (0: their default threads)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=1024, help="padded steps (multiple of 8)")
    ap.add_argument("--channels", type=int, nargs=3, default=(64, 128, 256))
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--mode", default="bottleneck", choices=("bottleneck", "reference"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--torch-device", default="cpu", help="PyTorch's device: cpu, or cuda beside a JAX GPU")
    ap.add_argument("--out", default="", help="also write the results as JSON here")
    args = ap.parse_args()
    limit_cpu_threads(args.threads)

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import torch

    from seisjax.lstm_ae import model as lm
    from seisjax.lstm_ae.task import masked_l1

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as XLA does; see seisjax/bench.py
    twin_mod = _load_twin()
    rng = np.random.default_rng(0)
    B, T = args.batch, args.length
    lengths_np = rng.integers(T // 2, T + 1, size=B).astype(np.int32)
    x_np = (rng.normal(size=(B, T, 3)) * (np.arange(T)[None, :, None] < lengths_np[:, None, None])).astype(np.float32)
    kwargs = dict(out_channels=3, channels=tuple(args.channels), hidden=args.hidden, lstm_layers=args.layers,
                  mode=args.mode, dropout=0.1)
    x, lengths = jnp.asarray(x_np), jnp.asarray(lengths_np)
    tx = optax.adam(1e-3)

    # ------------------------------------------------------------------ JAX steps
    def jax_full(impl):
        model = lm.LSTMAutoencoder(**kwargs, lstm_impl=impl)
        variables = model.init({"params": jax.random.PRNGKey(0)}, x, lengths)
        params, stats = variables["params"], {"batch_stats": variables["batch_stats"]}

        def step(state, key):
            params, opt, stats = state

            def loss_fn(p):
                (recon, _), new = model.apply({"params": p, **stats}, x, lengths, train=True,
                                              rngs={"dropout": key}, mutable=["batch_stats"])
                return jnp.mean(masked_l1(recon, x, lengths)), new

            (loss, new), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt = tx.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt, new), loss

        return step, (params, tx.init(params), stats)

    c3 = args.channels[2]
    masks = [lm.length_mask(n, T // 2 ** k) for k, n in enumerate(lm.level_lengths(lengths))]

    class ConvPart(nn.Module):
        @nn.compact
        def __call__(self, x):
            c1, c2, c3 = args.channels
            h = x
            for k, f in enumerate((c1, c2, c3)):
                h = lm._max_pool(lm._ConvBlock(f, f, 0.1)(h, masks[k], train=True), masks[k], masks[k + 1], 2)
            h = nn.Dense(c3)(h) * masks[3][..., None]
            for k, (f, o, last) in zip((2, 1, 0), ((c2, c2, False), (c1, c1, False), (c1, 3, True))):
                h = lm._ConvBlock(f, o, 0.1, final_norm=not last, final_relu=not last)(jnp.repeat(h, 2, 1),
                                                                                     masks[k], train=True)
            return h

    class LSTMPart(nn.Module):
        impl: str

        @nn.compact
        def __call__(self, h):
            carries = []
            for _ in range(args.layers):
                carry, h = lm.MaskedLSTM(args.hidden, self.impl)(h, masks[3])
                carries.append(carry)
            for carry in carries:
                _, h = lm.MaskedLSTM(args.hidden, self.impl)(h, masks[3], initial_carry=carry)
            return h

    def jax_part(module, inp):
        variables = module.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, inp)
        params = variables["params"]
        rest = {k: v for k, v in variables.items() if k != "params"}

        def step(state, key):
            params, opt = state

            def loss_fn(p):
                out = module.apply({"params": p, **rest}, inp, rngs={"dropout": key}, mutable=list(rest))
                out = out[0] if isinstance(out, tuple) else out
                return jnp.sum(out ** 2) / out.size

            grads = jax.grad(loss_fn)(params)
            updates, opt = tx.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt), None

        return step, (params, tx.init(params))

    h3 = jnp.asarray(rng.normal(size=(B, T // 8, c3)).astype(np.float32)) * masks[3][..., None]
    jax_cases = {"jax_full_scan": jax_full("scan"), "jax_full_rnn": jax_full("rnn"),
                 "jax_conv_part": jax_part(ConvPart(), x), "jax_lstm_part_scan": jax_part(LSTMPart("scan"), h3),
                 "jax_lstm_part_rnn": jax_part(LSTMPart("rnn"), h3)}
    compiled, states, compile_s = {}, {}, {}
    key = jax.random.PRNGKey(2)
    for name, (step, state) in jax_cases.items():
        t0 = time.perf_counter()
        compiled[name] = jax.jit(step, donate_argnums=(0,)).lower(state, key).compile()
        compile_s[name] = time.perf_counter() - t0
        states[name], _ = compiled[name](state, key)  # warm-up
        jax.block_until_ready(states[name])

    def run_jax(name, steps):
        t0 = time.perf_counter()
        for _ in range(steps):
            states[name], _ = compiled[name](states[name], key)
        jax.block_until_ready(states[name])
        return time.perf_counter() - t0

    # ------------------------------------------------------------------ PyTorch steps
    torch.manual_seed(0)
    device = torch.device(args.torch_device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    twin = twin_mod.LSTMAutoencoderTorch(**kwargs).train().to(device)
    xt, lt = torch.from_numpy(x_np).to(device), torch.from_numpy(lengths_np).long().to(device)
    tmasks = twin.masks(lt, T)
    n3 = tmasks[-1].sum(1).long()
    h3t = torch.from_numpy(np.array(h3)).to(device)
    # the JAX ConvPart's Dense(c3) on the c3-channel code (the twin's dec_dense reads the LSTM's width)
    conv_dense = torch.nn.Linear(c3, c3).to(device)
    conv_modules = torch.nn.ModuleList([twin.enc_blocks, twin.dec_blocks, conv_dense])
    dec_lstm_part = twin_mod._frozen_bias_hh(
        torch.nn.LSTM(args.hidden, args.hidden, args.layers, batch_first=True)).to(device)
    opts = {"torch_full": torch.optim.Adam([p for p in twin.parameters() if p.requires_grad], 1e-3),
            "torch_conv_part": torch.optim.Adam(conv_modules.parameters(), 1e-3),
            "torch_lstm_part": torch.optim.Adam([p for p in list(twin.enc_lstm.parameters())
                                                 + list(dec_lstm_part.parameters()) if p.requires_grad], 1e-3)}

    def torch_loss(name):
        if name == "torch_full":
            recon, _ = twin(xt, lt)
            return twin_mod.masked_l1(recon, xt, lt)
        if name == "torch_conv_part":
            seq = twin.conv_encoder(xt, tmasks)
            out = twin.conv_decoder(conv_dense(seq) * tmasks[-1][..., None], tmasks)
            return (out ** 2).mean()
        out, (h, c) = twin.run_lstm(twin.enc_lstm, h3t, n3)
        out, _ = twin.run_lstm(dec_lstm_part, out, n3, (h, c))
        return (out ** 2).mean()

    def run_torch(name, steps):
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            opts[name].zero_grad(set_to_none=True)
            torch_loss(name).backward()
            opts[name].step()
        sync()
        return time.perf_counter() - t0

    first_torch = {name: run_torch(name, 1) for name in opts}

    # ------------------------------------------------------------------ interleaved rounds
    times = {name: [] for name in list(compiled) + list(opts)}
    for _ in range(args.rounds):
        for name in compiled:
            times[name].append(run_jax(name, args.steps))
        for name in opts:
            times[name].append(run_torch(name, args.steps))
    rate = {name: float(np.median([args.steps * B / t for t in ts])) for name, ts in times.items()}
    ms = {name: float(np.median([1e3 * t / args.steps for t in ts])) for name, ts in times.items()}
    result = {
        "setup": {"batch": B, "length": T, "mean_length": float(lengths_np.mean()), **kwargs,
                  "threads": args.threads, "rounds": args.rounds, "steps": args.steps,
                  "cpu": cpu_model(), "cpus": os.cpu_count(),
                  "load_average_1min": os.getloadavg()[0], "jax": jax.__version__, "torch": torch.__version__,
                  "jax_device": jax.devices()[0].device_kind, "torch_device": str(device)},
        "examples_per_s": rate, "ms_per_step": ms,
        "compile_s": compile_s, "torch_first_step_s": first_torch,
        "ratio_full_jax_scan_over_torch": rate["jax_full_scan"] / rate["torch_full"],
        "ratio_full_jax_rnn_over_torch": rate["jax_full_rnn"] / rate["torch_full"],
        "ratio_conv_jax_over_torch": rate["jax_conv_part"] / rate["torch_conv_part"],
        "ratio_lstm_jax_scan_over_torch": rate["jax_lstm_part_scan"] / rate["torch_lstm_part"],
        "lstm_share_of_jax_step": ms["jax_lstm_part_scan"] / (ms["jax_lstm_part_scan"] + ms["jax_conv_part"]),
        "lstm_share_of_torch_step": ms["torch_lstm_part"] / (ms["torch_lstm_part"] + ms["torch_conv_part"]),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
