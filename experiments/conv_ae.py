"""1-D convolutional autoencoder on three-component windows around P (synthetic `local` data).

Quick run (under a minute of training on a 2-core CPU; generates its data in <workdir>/data first):

    python -m seisjax train --config experiments/conv_ae.py:quick --workdir runs/conv_ae_quick
    python -m seisjax eval --workdir runs/conv_ae_quick

Full run:

    python -m seisjax train --config experiments/conv_ae.py --workdir runs/conv_ae

Variants (the text after the colon): ``quick`` shrinks the data, the model and the schedule;
``toy`` is ``quick`` on small in-memory waveforms (no dataset; the engine's tests and smoke runs).
What the family is for: seisjax/conv_ae/README.md.
"""

import ml_collections

from seisjax.config import base_config, parse_variant
from seisjax.data.synthetic import scenario_config


def get_config(arg=None):
    variant = parse_variant(arg, size=("full", "quick", "toy"))
    config = base_config()
    config.batch_size = 64

    config.task = ml_collections.ConfigDict(dict(name="autoencoder"))
    config.model = ml_collections.ConfigDict(dict(
        name="conv_ae", channels=(16, 32, 64), kernel_size=7, latent_dim=32))
    config.data = ml_collections.ConfigDict(dict(
        source="synthetic", path="", synthetic=scenario_config("local", events=1000),
        sampling_rate=100.0, window=1024, pre_p=256, components="ZNE", train_split="train", eval_split="dev",
        prefetch=2, cache=False, toy_examples=320, toy_length=256, toy_seed=0))

    # (epochs, learning rate, decay per epoch): the staged recipe of the SymAE seed, shortened
    config.optim.stages = ((30, 1e-3, 0.99), (20, 1e-4, 0.99))
    config.train.eval_every_epochs = 5.0
    config.train.checkpoint_every_epochs = 5.0
    config.eval.batch_size = 128

    if variant.size in ("quick", "toy"):
        config.batch_size = 32
        config.model.channels = (8, 16, 32)
        config.model.latent_dim = 16
        config.data.synthetic = scenario_config("local", events=100)
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
    if variant.size == "toy":
        config.data.source = "toy"
    return config
