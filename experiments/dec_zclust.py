"""Local vs teleseismic records by deep embedded clustering with the zClust network (after Nooshiri's
zClust package, ``seisjax/dec/model.py``, :class:`ZClust`), on 87 x 67 Kaiser-window spectrograms of
the vertical component, 56.76 s from 5 s before P. The data, task and schedule of
``experiments/dec_distance.py`` otherwise.

Quick version (about 5.5 minutes of training and 1 minute of evaluation on a 2-core CPU; the
synthetic `local` data is generated in <pretrain workdir>/data first):

    python -m seisjax train --config experiments/dec_zclust.py:quick,pretrain --workdir runs/dec_zclust_pre
    python -m seisjax train --config experiments/dec_zclust.py:quick \\
        --config.task.pretrained=runs/dec_zclust_pre --config.data.path=runs/dec_zclust_pre/data \\
        --workdir runs/dec_zclust
    python -m seisjax eval --workdir runs/dec_zclust   # eval/step_N/clustering.json, confusion.png, embedding.png

Full version: the same with ``:pretrain`` and no variant, on the full distance data
(``--config.data.path=runs/dec_dist_pre/data``; about 2 hours of pretraining on one core).

Result: DEC in this network's 9-d code clusters distance at about the paper's accuracy (above it for
most pretraining seeds, just below for one). Tables, commands and how the input differs from
zClust's: seisjax/dec/README.md.
"""

import math

import ml_collections

from experiments import dec_distance
from seisjax.config import parse_variant


def get_config(arg=None):
    variant = parse_variant(arg, size=("full", "quick"), stage=("dec", "pretrain"))
    config = dec_distance.get_config(f"{variant.size},{variant.stage}")
    config.model = ml_collections.ConfigDict(dict(
        name="zclust", channels=(8, 16, 32, 64, 128), embedding_dim=9, negative_slope=0.02,
        encoder_conv_impl="auto", decoder_conv_impl="xla", output_conv_impl="auto"))
    data = config.data
    data.window, data.pre_p, data.stft_margin = 5676, 500, 100
    # scipy's STFT with zClust's Kaiser window (nfft = nperseg: all 87 rows, 0-50 Hz; zero-padded edge
    # frames); how zClust's own features differ: the family's page
    data.stft_nperseg, data.stft_noverlap, data.stft_nfft, data.stft_rows = 172, 86, 172, 87
    data.stft_edges = "zeros"
    data.stft_window = ("kaiser", 1.8 * math.pi)
    # zClust clusters its embedding itself (DEC, not IDEC; the code, not whitened: the family's page)
    config.task.variant, config.task.cluster_space = "dec", "code"
    if variant.size == "quick":
        config.optim.stages = ((10 if variant.stage == "pretrain" else 3, 1e-3, 1.0),)
    elif variant.stage == "pretrain":
        config.optim.stages = ((40, 1e-3, 1.0),)  # the full-size runs on the family's page
    return config
