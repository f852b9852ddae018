"""Local vs teleseismic records by deep embedded clustering (Mousavi et al. 2019, the distance network),
on 16 x 48 log-magnitude STFTs (1-20 Hz) of the vertical component, 9.4 s from 1 s before P.

Quick version (about 1.5 minutes of training and 30 s of evaluation on a 2-core CPU; the synthetic
`local` data is generated in <pretrain workdir>/data first):

    python -m seisjax train --config experiments/dec_distance.py:quick,pretrain --workdir runs/dec_dist_pre
    python -m seisjax train --config experiments/dec_distance.py:quick \\
        --config.task.pretrained=runs/dec_dist_pre --config.data.path=runs/dec_dist_pre/data --workdir runs/dec_dist
    python -m seisjax eval --workdir runs/dec_dist     # eval/step_N/clustering.json, confusion.png, embedding.png

Full version: the same with ``:pretrain`` and no variant (2,000 events; about 15 min of pretraining
and 5-10 min of DEC on 2 CPU cores). ``:tones,pretrain`` / ``:tones``: in-memory short
high-frequency bursts vs long low-frequency wave trains (tests).

Result: DEC in the whitened code comes within about a percent of the paper's accuracy for a good
pretraining seed, but the result depends on the seed. Tables, the per-seed commands, the supervised
reference and what was tried: seisjax/dec/README.md.
"""

import ml_collections

from experiments.dec_polarity import dec_base
from seisjax.config import parse_variant
from seisjax.data.synthetic import scenario_config


def get_config(arg=None):
    variant = parse_variant(arg, size=("full", "quick", "tones"), stage=("dec", "pretrain"))
    pretrain = variant.stage == "pretrain"
    config = dec_base(variant.stage, quick=variant.size in ("quick", "tones"))
    config.task.variant = "dec"
    config.task.cluster_space = "whitened"
    config.model = ml_collections.ConfigDict(dict(
        name="mousavi_distance", channels=(4, 2, 1), kernel=(3, 3), activation="tanh", embedding_activation="",
        conv_impl="auto"))
    config.data = ml_collections.ConfigDict(dict(
        source="synthetic", path="", synthetic=scenario_config("local", events=2000), sampling_rate=100.0,
        window=940, pre_p=100, component="Z", components="ZNE", input="stft", stft_margin=100,
        bandpass=(1.0, 20.0), stft_nperseg=30, stft_noverlap=10, stft_floor=1e-3, stft_edges="signal",
        # the lowest 16 rows of a 64-point transform: 0-23 Hz, the band the bandpass keeps
        stft_nfft=64, stft_rows=16,
        label_column="path_distance_class", snr_column="trace_snr_db", train_split="", eval_split="", query="",
        prefetch=2, toy_examples=2000, toy_seed=0, toy_noise=0.05))

    if variant.size in ("quick", "tones"):
        config.data.synthetic = scenario_config("local", events=300)
        config.optim.stages = ((20, 3e-3, 1.0),) if pretrain else ((10, 1e-3, 1.0),)
        config.train.checkpoint_every_epochs = 5.0
    if variant.size == "tones":
        config.task.cluster_space = "code"  # the tests check DEC proper, in the paper's space
        config.data.source = "tones"
        config.data.toy_examples = 256
        config.batch_size = 32
        config.optim.stages = ((6, 1e-2, 1.0),) if pretrain else ((3, 1e-3, 1.0),)
        config.task.update_interval = 8
    return config
