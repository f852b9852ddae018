"""Local vs teleseismic records by deep embedded clustering with the zClust network (after
Nooshiri's zClust package): five stride-2 3x3 convolutions 1-8-16-32-64-128 with leaky ReLU (0.02),
a Linear layer to a 9-d embedding, the mirror decoder (``seisjax/dec/model.py``, :class:`ZClust`).

Input: an 87 x 67 spectrogram of the vertical component at 100 Hz, bandpassed 1-20 Hz (4-pole
Butterworth, zero phase, on the window plus 1 s each side), over 5676 samples (56.76 s) starting 5 s
before P: Kaiser window of ``nperseg = 172`` samples (1.72 s, beta = 1.8 pi; nfft 172 -> 87
frequencies 0-50 Hz), ``noverlap = 86`` (hop 86 samples; scipy's zero boundary and padding ->
ceil(5676 / 86) + 1 = 67 frames), log10 magnitude with a floor of 1e-3 times the trace's peak,
standardised per trace. The package's own sampling and window length are not documented in its
README; these values give its 87 x 67 input from our 100 Hz records. Labels:
``path_distance_class`` ("local" < 150 km, "teleseismic" 1000-10000 km).

Quick version (the synthetic `local` data is generated in <pretrain workdir>/data first):

    python -m seisjax train --config experiments/dec_zclust.py:quick_pretrain --workdir runs/dec_zclust_pre
    python -m seisjax train --config experiments/dec_zclust.py:quick \\
        --config.task.pretrained=runs/dec_zclust_pre --config.data.path=runs/dec_zclust_pre/data \\
        --workdir runs/dec_zclust
    python -m seisjax eval --workdir runs/dec_zclust   # eval/step_N/clustering.json, confusion.png, embedding.png

Pretraining seeds 1-3: ``--config.seed=N`` on both stages, with
``--config.data.path=runs/dec_zclust_pre/data`` on the first too (the same records). IDEC:
``--config.task.variant=idec``; the whitened clustering space of the distance network:
``--config.task.cluster_space=whitened``.

Quick runs (5,423 synthetic `local` records, 10 pretraining epochs, at most 3 DEC epochs), Hungarian
accuracy for pretraining seeds 0 / 1 / 2 / 3:

| method | seeds 0 / 1 / 2 / 3 |
|---|---|
| k-means on the raw spectrograms | 0.788 (all seeds) |
| k-means on the pretrained 9-d code | 0.984 / 0.982 / 0.985 / 0.973 |
| DEC in the code (the default) | **0.991 / 0.984 / 0.988 / 0.979** |
| the same, lowest log10 SNR bin (0-1) | 0.955 / 0.926 / 0.943 / 0.904 |
| IDEC in the code | 0.976 / 0.981 / 0.984 / 0.980 |
| DEC in the whitened code | 0.977 / 0.976 / 0.978 / 0.977 |
| IDEC in the whitened code | 0.958 / 0.970 / 0.979 / 0.980 |
| DEC's clusters re-drawn by a full-covariance mixture (``dec_gmm_full``) | 0.990 / 0.993 / 0.991 / 0.991 |

The paper's distance DEC, with its own network: 0.984; the Mousavi network here gets 0.953 / 0.961 /
0.944 / 0.708 on the same records (``experiments/dec_distance.py``). The long window (57 s) holds the
whole S wave and coda of every local record, and this larger network's code separates the classes
for every seed: k-means on it (0.973-0.985) already beats the other network's DEC, and DEC, unlike
there, improves on that start in the code itself. Whitening, which the distance network needs, costs accuracy here.

Full version: the same with ``:pretrain`` (40 epochs) and no variant, on the full distance data
(36,268 records, ``--config.data.path=runs/dec_dist_pre/data`` from ``experiments/dec_distance.py``):

    python -m seisjax train --config experiments/dec_zclust.py:pretrain \\
        --config.data.path=runs/dec_dist_pre/data --config.seed=1 --workdir runs/zcf40_pre_s1
    python -m seisjax train --config experiments/dec_zclust.py --config.task.pretrained=runs/zcf40_pre_s1 \\
        --config.data.path=runs/dec_dist_pre/data --config.seed=1 --workdir runs/zcf40_dec_s1
    python -m seisjax eval --workdir runs/zcf40_dec_s1

Pretraining takes 1.1-1.2 s per step on one core (5,640 steps, about 1 h 50 min); DEC stopped by its
tolerance after 420 / 420 / 280 steps. Seed 0 is the checkpoint at epoch 40 of an earlier 100-epoch
schedule (the same constant rate, so the same run cut short; resumed twice on its way there, its first
19.5 epochs computed with ``flax.linen.Conv`` and ``jax.image.resize``, which compute the same
function). Hungarian accuracy, pretraining seeds 0 / 1 / 2:

| method | seeds 0 / 1 / 2 |
|---|---|
| k-means on the raw spectrograms | 0.795 (all seeds) |
| k-means on the pretrained 9-d code | 0.986 / 0.978 / 0.990 |
| k-means on the whitened code | 0.977 / 0.985 / 0.979 |
| DEC in the code (the default) | **0.989 / 0.982 / 0.992** |
| the same, lowest log10 SNR bin (0-1) | 0.946 / 0.918 / 0.966 |
| DEC's clusters re-drawn by a full-covariance mixture (``dec_gmm_full``) | 0.999 / 0.997 / 0.999 |
| the same, lowest log10 SNR bin | 0.996 / 0.985 / 0.993 |

Above log10 SNR 1 DEC gets 0.994-1.000 in every bin for every seed; every error is a local record put
with the teleseismic ones (no teleseismic record joins the local cluster), most of them below log10
SNR 1. Over the three seeds DEC averages 0.988, against the paper's 0.984 with its own network. With
10 pretraining epochs instead (``--config.optim.stages='((10, 1e-3, 1.0),)'``, seed 0) DEC got 0.980
(0.907 below log10 SNR 1) from k-means at 0.978, re-drawn 0.998.

Variants: ``pretrain``, ``quick_pretrain``, ``quick`` (DEC stage).
"""

import importlib.util
import math
from pathlib import Path

import ml_collections


def _distance_config(arg):
    """The distance experiment's config (same data, task and schedule), loaded from beside this file."""
    spec = importlib.util.spec_from_file_location("_dec_distance_config", Path(__file__).with_name("dec_distance.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def get_config(arg=None):
    arg = arg or ""
    stage = "pretrain" if arg.endswith("pretrain") else "dec"
    size = arg.removesuffix("pretrain").removesuffix("_") or "full"
    if size not in ("full", "quick"):
        raise ValueError(f"dec_zclust: unknown variant {arg!r} (expected [quick_]pretrain, quick)")
    config = _distance_config(arg)
    config.model = ml_collections.ConfigDict(dict(
        name="zclust", channels=(8, 16, 32, 64, 128), embedding_dim=9, negative_slope=0.02))
    data = config.data
    data.window, data.pre_p, data.stft_margin = 5676, 500, 100
    data.stft_nperseg, data.stft_noverlap = 172, 86
    data.stft_window = ("kaiser", 1.8 * math.pi)
    # scipy's STFT as zClust takes it, not the distance network's: nfft = nperseg (all 87 rows, 0-50 Hz)
    # and zero-padded edge frames
    data.stft_nfft, data.stft_rows, data.stft_edges = 0, 0, "zeros"
    # zClust clusters its embedding itself; DEC there beat IDEC and both whitened variants for 3 of 4 seeds
    config.task.variant, config.task.cluster_space = "dec", "code"
    if size == "quick":
        config.optim.stages = ((10 if stage == "pretrain" else 3, 1e-3, 1.0),)
    elif stage == "pretrain":
        # the full-size runs in the docstring were measured with 40 epochs, not the distance network's 100
        config.optim.stages = ((40, 1e-3, 1.0),)
    return config
