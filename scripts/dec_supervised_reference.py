#!/usr/bin/env python3
"""How far can labels take the DEC distance input? A supervised reference for the clustering.

DEC never sees a label. To tell how much of its error the input itself leaves ambiguous (a record
below log10 SNR 1 can look like noise whatever the distance), this trains classifiers *with* the
labels on the same 16 x 48 spectrograms and scores them on records of other events, per log10 SNR
bin, as the clustering report does:

- ``linear``: logistic regression on the flattened spectrogram (the embeddings' linear probe,
  ``seisjax.metrics.embedding.linear_probe_predictions``);
- ``network``: the distance network's encoder (same layers as DEC's, 12-d tanh code) + a linear
  layer, trained end to end with cross-entropy (``--steps`` Adam steps of ``--batch`` records);
- ``probe <run>`` (``--probe WORKDIR``, repeatable): the same logistic regression on the code of a
  trained run (pretraining or DEC): does the unsupervised code still hold the class?

    python scripts/dec_supervised_reference.py --config experiments/dec_distance.py \
        --data runs/dec_dist_pre/data --out runs/dec_dist_supervised.json [--config.KEY=VALUE ...]

Events are split in two halves (``--seed``): train on one, score on the other, then swap, so every
record is scored once by a model that never saw its event. Not an upper bound on what clustering can
do in principle, but a measured ceiling for these inputs and this network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from seisjax.config import load_config, parse_override_args
from seisjax.dec.data import SNR_BIN_NAMES as BINS
from seisjax.dec.data import snr_bin
from seisjax.dec.task import DECTask
from seisjax.errors import InputError
from seisjax.families import restore_trained
from seisjax.metrics.embedding import linear_probe_predictions


def _per_bin(correct: np.ndarray, log10_snr: np.ndarray) -> dict:
    bins = snr_bin(log10_snr)
    out = {"all": {"accuracy": float(correct.mean()), "examples": int(correct.size)}}
    for b, name in enumerate(BINS):
        sel = bins == b
        if sel.any():
            out[name] = {"accuracy": float(correct[sel].mean()), "examples": int(sel.sum())}
    return out


def _train_classifier(apply_fn, params, x, y, *, steps: int, batch: int, lr: float, seed: int, label: str):
    opt = optax.adam(lr)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, xb), yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    per_epoch = max(1, len(x) // batch)
    order = rng.permutation(len(x))
    for i in tqdm(range(steps), desc=label, unit="step", mininterval=2.0):
        if i % per_epoch == 0 and i:
            order = rng.permutation(len(x))
        idx = order[(i % per_epoch) * batch:(i % per_epoch + 1) * batch]
        params, opt_state, _ = step(params, opt_state, jnp.asarray(x[idx]), jnp.asarray(y[idx]))
    return params


def _predict(apply_fn, params, x, chunk: int = 4096) -> np.ndarray:
    fn = jax.jit(apply_fn)
    return np.concatenate([np.asarray(fn(params, x[i:i + chunk])).argmax(-1) for i in range(0, len(x), chunk)])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                 epilog="Any other argument --config.KEY=VALUE overrides the config, e.g. "
                                        "--config.data.stft_rows=12.")
    ap.add_argument("--config", default="experiments/dec_distance.py", help="the DEC config (its data section)")
    ap.add_argument("--data", required=True, help="the dataset the clustering ran on")
    ap.add_argument("--steps", type=int, default=3000, help="Adam steps of the network per fold")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="linear,network", help="comma-separated: linear, network")
    ap.add_argument("--probe", action="append", default=[], metavar="WORKDIR",
                    help="also probe the code of this trained run (repeatable)")
    ap.add_argument("--out", default=None, help="also write the results as JSON")
    args, rest = ap.parse_known_args(argv)
    overrides = parse_override_args(rest)

    chosen = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(chosen) - {"linear", "network"})
    if unknown:
        raise InputError(f"--methods: unknown {unknown} (expected linear, network)")

    spec = args.config if ":" in args.config else f"{args.config}:pretrain"
    config = load_config(spec, overrides)
    task = DECTask(config, data_path=args.data)
    arrays = task.data.eval
    if "label" not in arrays or "log10_snr" not in arrays:
        raise InputError(f"{args.data}: needs the {config.data.label_column!r} and {config.data.snr_column!r} "
                         "columns (labels and SNR)")
    if "source_id" not in arrays:
        raise InputError(f"{args.data}: metadata has no source_id column; events are needed to split the records")
    x = arrays["x"]
    classes, y = np.unique(arrays["label"].astype(str), return_inverse=True)
    y = y.astype(np.int32)
    events = arrays["source_id"]
    unique_events = np.unique(events)
    half = np.random.default_rng(args.seed).permutation(len(unique_events))[: len(unique_events) // 2]
    fold = np.isin(events, unique_events[half]).astype(int)

    class Network(nn.Module):
        def setup(self):
            self.autoencoder = task.model.clone()  # only its encoder is used (and trained)
            self.head = nn.Dense(len(classes))

        def __call__(self, xb):
            return self.head(self.autoencoder.encode(xb))

    features = {"linear": x.reshape(len(x), -1)} if "linear" in chosen else {}
    for workdir in args.probe:
        _, trained, state, _ = restore_trained(workdir, data_path=args.data)
        trained.close()
        own = trained.data.eval  # the run's own inputs, in case its data settings differ
        if not np.array_equal(own["trace_name"], arrays["trace_name"]):
            raise InputError(f"--probe {workdir}: its evaluation rows are not the records scored here "
                             "(another split or query); probe runs of the same data")
        features[f"probe {Path(workdir).name}"] = trained.encode(jax.tree_util.tree_map(np.asarray, state.params),
                                                                 own["x"])

    results = {"config": spec, "data": args.data, "records": int(len(x)), "events": int(len(unique_events)),
               "classes": [str(c) for c in classes], "steps": args.steps, "seed": args.seed, "methods": {}}
    for name, z in features.items():
        predictions = np.empty(len(z), np.int32)
        for k in (0, 1):
            train, test = fold != k, fold == k
            predictions[test] = linear_probe_predictions(z[train], y[train], z[test]).astype(np.int32)
        results["methods"][name] = _per_bin(predictions == y, arrays["log10_snr"])
    if "network" in chosen:
        module = Network()
        predictions = np.empty(len(x), np.int32)
        for k in (0, 1):
            train, test = fold != k, fold == k
            params = module.init(jax.random.PRNGKey(args.seed + k), x[:2])["params"]

            def apply_fn(p, xb):
                return module.apply({"params": p}, xb)

            params = _train_classifier(apply_fn, params, x[train], y[train], steps=args.steps, batch=args.batch,
                                       lr=args.lr, seed=args.seed + k, label=f"network, fold {k + 1}/2")
            predictions[test] = _predict(apply_fn, params, x[test])
        results["methods"]["network"] = _per_bin(predictions == y, arrays["log10_snr"])

    print(f"supervised reference, {results['records']} records of {results['events']} events "
          "(trained on half the events, scored on the other half, both ways)")
    print("| method | all | " + " | ".join(BINS) + " |")
    print("|---|---|" + "---|" * len(BINS))
    for name, r in results["methods"].items():
        print(f"| {name} | {r['all']['accuracy']:.3f} | "
              + " | ".join(f"{r[b]['accuracy']:.3f}" if b in r else "-" for b in BINS) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
