"""1-D convolutional autoencoder on three-component windows around P (synthetic `local` data).

Quick run (a few minutes on a 2-core CPU; generates its data in <workdir>/data first):

    python -m seisjax train --config experiments/conv_ae.py:quick --workdir runs/conv_ae_quick
    python -m seisjax eval --workdir runs/conv_ae_quick

Full run:

    python -m seisjax train --config experiments/conv_ae.py --workdir runs/conv_ae

Variants (the text after the colon): ``quick`` shrinks the data, the model and the schedule;
``toy`` trains on small in-memory waveforms (no dataset; for tests and smoke runs).
Any key can be overridden, e.g. ``--config.optim.clip_norm=1.0 --config.data.path=DIR``.
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg=None):
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 64  # global, over all devices and hosts

    config.task = ml_collections.ConfigDict(dict(name="autoencoder"))
    config.model = ml_collections.ConfigDict(dict(
        name="conv_ae", channels=(16, 32, 64), kernel_size=7, latent_dim=32))

    config.data = ml_collections.ConfigDict(dict(
        source="synthetic", path="", synthetic_events=1000, synthetic_seed=0,
        sampling_rate=100.0, window=1024, pre_p=256, components="ZNE", train_split="train", eval_split="dev",
        prefetch=2, cache=False, toy_examples=320, toy_length=256, toy_seed=0))

    config.optim = ml_collections.ConfigDict(dict(
        optimizer="adam", b1=0.9, b2=0.999, eps=1e-8, momentum=0.9,
        schedule="stages",
        # (epochs, learning rate, decay per epoch): the staged recipe of the SymAE seed, shortened.
        stages=((30, 1e-3, 0.99), (20, 1e-4, 0.99)),
        lr=1e-3, warmup_steps=config_dict.placeholder(int), warmup_epochs=config_dict.placeholder(float),
        cosine_final_fraction=0.0, clip_norm=0.0, weight_decay=0.0, frozen=()))

    config.train = ml_collections.ConfigDict(dict(
        num_steps=config_dict.placeholder(int), num_epochs=config_dict.placeholder(float),
        log_every_steps=20, figure_every_steps=200,
        eval_every_steps=config_dict.placeholder(int), eval_every_epochs=5.0,
        checkpoint_every_steps=config_dict.placeholder(int), checkpoint_every_epochs=5.0,
        keep_last=3, best_metric="eval/loss", best_mode="min", async_checkpointing=True))

    config.eval = ml_collections.ConfigDict(dict(batch_size=128))

    config.distributed = ml_collections.ConfigDict(dict(
        coordinator_address="", num_processes=config_dict.placeholder(int),
        process_id=config_dict.placeholder(int), auto=False))

    config.debug = ml_collections.ConfigDict(dict(nan_at_step=-1, step_delay_s=0.0))

    if arg in ("quick", "toy"):
        config.batch_size = 32
        config.model.channels = (8, 16, 32)
        config.model.latent_dim = 16
        config.data.synthetic_events = 100
        config.data.sampling_rate = 50.0
        config.data.window = 256
        config.data.pre_p = 64
        config.data.cache = True  # ~1400 windows: made once, then epochs run from memory
        config.optim.stages = ((12, 2e-3, 0.95), (8, 5e-4, 0.95))
        config.train.log_every_steps = 5
        config.train.figure_every_steps = 50
        config.train.eval_every_epochs = 4.0
        config.train.checkpoint_every_epochs = 4.0
        config.eval.batch_size = 64
    if arg == "toy":
        config.data.source = "toy"
    elif arg not in (None, "", "quick"):
        raise ValueError(f"conv_ae: unknown variant {arg!r} (expected quick or toy)")
    return config
