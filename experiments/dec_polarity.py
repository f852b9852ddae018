"""First-motion polarity by deep embedded clustering (Mousavi et al. 2019, the polarity network).

Two runs: pretrain the autoencoder, then DEC (or IDEC) from it. Quick version (a few minutes on a
2-core CPU; the synthetic `local` data is generated in <pretrain workdir>/data first):

    python -m seisjax train --config experiments/dec_polarity.py:quick_pretrain --workdir runs/dec_pol_pre
    python -m seisjax train --config experiments/dec_polarity.py:quick \\
        --config.task.pretrained=runs/dec_pol_pre --config.data.path=runs/dec_pol_pre/data --workdir runs/dec_pol
    python -m seisjax eval --workdir runs/dec_pol      # eval/step_N/clustering.json, confusion.png, embedding.png
    python -m seisjax cluster --workdir runs/dec_pol --data DIR --out clusters.csv

Full version: the same with ``:pretrain`` and no variant (``--config.task.variant=idec`` for IDEC).
Variants: ``pretrain``, ``quick_pretrain``, ``quick`` (DEC stage), ``pulses_pretrain`` / ``pulses``
(in-memory clean up/down pulses; tests).
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg=None):
    arg = arg or ""
    stage = "pretrain" if arg.endswith("pretrain") else "dec"
    size = arg.removesuffix("pretrain").removesuffix("_") or "full"
    if size not in ("full", "quick", "pulses"):
        raise ValueError(f"dec_polarity: unknown variant {arg!r} (expected [quick_|pulses_]pretrain, quick, pulses)")

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 256

    config.task = ml_collections.ConfigDict(dict(
        name="dec", stage=stage, variant="dec", gamma=0.1, alpha=1.0, n_clusters=2, update_interval=140,
        tol=0.001, kmeans_n_init=20, pretrained=""))
    config.model = ml_collections.ConfigDict(dict(
        name="mousavi_polarity", channels=(8, 4, 2, 1), kernels=(11, 9, 3, 3), activation="tanh"))

    config.data = ml_collections.ConfigDict(dict(
        source="synthetic", path="", synthetic_events=2000, synthetic_seed=0, sampling_rate=100.0,
        window=32, pre_p=10, component="Z", components="ZNE", label_column="trace_polarity",
        snr_column="trace_snr_db", train_split="", eval_split="", prefetch=2,
        toy_examples=2000, toy_length=128, toy_seed=0, toy_noise=0.02))

    epochs = 100 if stage == "pretrain" else 50
    config.optim = ml_collections.ConfigDict(dict(
        optimizer="adam", b1=0.9, b2=0.999, eps=1e-8, momentum=0.9, schedule="stages",
        stages=((epochs, 1e-3, 1.0),), lr=1e-3, warmup_steps=config_dict.placeholder(int),
        warmup_epochs=config_dict.placeholder(float), cosine_final_fraction=0.0, clip_norm=0.0,
        weight_decay=0.0, frozen=()))

    config.train = ml_collections.ConfigDict(dict(
        num_steps=config_dict.placeholder(int), num_epochs=config_dict.placeholder(float),
        log_every_steps=20, figure_every_steps=200,
        eval_every_steps=config_dict.placeholder(int), eval_every_epochs=config_dict.placeholder(float),
        checkpoint_every_steps=config_dict.placeholder(int), checkpoint_every_epochs=10.0,
        keep_last=2, best_metric="", best_mode="min", async_checkpointing=False))
    config.eval = ml_collections.ConfigDict(dict(batch_size=1024))
    config.distributed = ml_collections.ConfigDict(dict(
        coordinator_address="", num_processes=config_dict.placeholder(int),
        process_id=config_dict.placeholder(int), auto=False))
    config.debug = ml_collections.ConfigDict(dict(nan_at_step=-1, step_delay_s=0.0))

    if size in ("quick", "pulses"):
        config.data.synthetic_events = 300
        config.batch_size = 64
        config.task.update_interval = 50
        config.optim.stages = ((40 if stage == "pretrain" else 20, 2e-3 if stage == "pretrain" else 1e-3, 1.0),)
        config.train.log_every_steps = 10
        config.train.checkpoint_every_epochs = 10.0
        config.task.kmeans_n_init = 10
    if size == "pulses":
        config.data.source = "pulses"
        config.data.toy_examples = 640
        config.optim.stages = ((8 if stage == "pretrain" else 4, 3e-3 if stage == "pretrain" else 1e-3, 1.0),)
        config.task.update_interval = 10
    return config
