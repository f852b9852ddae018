"""First-motion polarity by deep embedded clustering (Mousavi et al. 2019, the polarity network).

Two runs: pretrain the autoencoder, then IDEC (``--config.task.variant=dec`` for DEC) from it. Quick
version (about 1.5 minutes of training and 15 s of evaluation on a 2-core CPU; the synthetic
`local` data is generated in <pretrain workdir>/data first):

    python -m seisjax train --config experiments/dec_polarity.py:quick,pretrain --workdir runs/dec_pol_pre
    python -m seisjax train --config experiments/dec_polarity.py:quick \\
        --config.task.pretrained=runs/dec_pol_pre --config.data.path=runs/dec_pol_pre/data --workdir runs/dec_pol
    python -m seisjax eval --workdir runs/dec_pol      # eval/step_N/clustering.json, confusion.png, embedding.png
    python -m seisjax cluster --workdir runs/dec_pol --data DIR --out clusters.csv

Full version: the same with ``:pretrain`` and no variant (a few minutes on 2 CPU cores). Real
records and their sign-flipped copies (``scripts/dec_polarity_flips.py``): ``:real,pretrain`` and
``:real`` with ``--config.data.path=runs/polarity_flips``. ``:pulses,pretrain`` / ``:pulses``:
in-memory clean up/down pulses (tests).

Result: on the synthetic local records IDEC matches the paper's accuracy, also in the lowest SNR
bin, for every pretraining seed, thanks to the window (24 samples before P, 8 after, causally
low-passed at 20 Hz). Tables, commands and findings: seisjax/dec/README.md.
"""

import ml_collections

from seisjax.config import base_config, parse_variant
from seisjax.data.synthetic import scenario_config


def dec_base(stage: str, *, quick: bool):
    """What every DEC experiment shares (dec_distance.py and dec_zclust.py build on it): the engine's
    base config with the DEC task's section and the settings of its two stages, pretraining for
    ``stage = "pretrain"``; ``quick``: the quick version's."""
    config = base_config()
    config.batch_size = 256
    config.task = ml_collections.ConfigDict(dict(
        name="dec", stage=stage, variant="idec", gamma=0.1, alpha=1.0, n_clusters=2, update_interval=140,
        tol=0.001, kmeans_n_init=20, init="kmeans", cluster_space="code", pretrained=""))
    config.optim.stages = ((100 if stage == "pretrain" else 50, 1e-3, 1.0),)
    config.train.keep_last = 2
    config.train.best_metric = ""
    config.train.async_checkpointing = False
    config.eval.batch_size = 1024
    if quick:
        config.batch_size = 64
        config.task.update_interval = 50
        config.task.kmeans_n_init = 10
        config.train.log_every_steps = 10
    return config


def get_config(arg=None):
    variant = parse_variant(arg, size=("full", "quick", "real", "pulses"), stage=("dec", "pretrain"))
    pretrain = variant.stage == "pretrain"
    config = dec_base(variant.stage, quick=variant.size in ("quick", "pulses"))
    config.model = ml_collections.ConfigDict(dict(
        name="mousavi_polarity", channels=(8, 4, 2, 1), kernels=(11, 9, 3, 3), activation="tanh",
        embedding_activation=""))
    config.data = ml_collections.ConfigDict(dict(
        source="synthetic", path="", synthetic=scenario_config("local", events=2000), sampling_rate=100.0,
        window=32, pre_p=24, component="Z", components="ZNE", label_column="trace_polarity",
        snr_column="trace_snr_db", train_split="", eval_split="", query="path_distance_class == 'local'",
        pair_column="", prefetch=2, lowpass=20.0, lowpass_corners=4, filter_margin=100,
        unambiguous_radiation=0.1, onset_snr_column="trace_onset_snr", min_onset_snr=3.0,
        toy_examples=2000, toy_length=128, toy_seed=0, toy_noise=0.02))

    if variant.size in ("quick", "pulses"):
        config.data.synthetic = scenario_config("local", events=300)
        config.optim.stages = ((40, 1e-3, 1.0),)  # both stages (the alternatives tried: the family's page)
    if variant.size == "real":
        # real records and their sign-flipped copies (scripts/dec_polarity_flips.py): all local,
        # trace_polarity of a recorded trace estimated from its first motion, exact within a pair
        config.data.source = "dataset"
        config.data.query = ""
        config.data.pair_column = "trace_pair"
        config.data.components = "Z"
        config.batch_size = 32
        config.task.update_interval = 20
        config.task.kmeans_n_init = 10
        config.optim.stages = ((200, 2e-3, 1.0),) if pretrain else ((40, 1e-3, 1.0),)
        config.train.checkpoint_every_epochs = 50.0
    if variant.size == "pulses":
        config.task.variant = "dec"  # the tests check DEC proper
        config.data.source = "pulses"
        # clean pulses need no filter; their P (sample 42-63 of 128) leaves no room for its margin
        config.data.lowpass = 0.0
        config.data.pre_p = 16
        config.data.toy_examples = 640
        config.optim.stages = ((8, 3e-3, 1.0),) if pretrain else ((4, 1e-3, 1.0),)
        config.task.update_interval = 10
    return config
