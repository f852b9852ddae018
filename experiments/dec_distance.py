"""Local vs teleseismic records by deep embedded clustering (Mousavi et al. 2019, the distance network).

Input: the STFT of the vertical component at 100 Hz, bandpassed 1-20 Hz (4-pole Butterworth, zero
phase, applied to the window plus 1 s each side so that its edge effects stay outside), over a
window of 940 samples (9.4 s) starting 1 s before P: ``nperseg = 30`` (0.3 s, Hann), ``noverlap = 10``
(hop 20 samples = 0.2 s -> 48 frames centred on samples 0, 20, ..., 940), ``nfft = 64`` of which the
lowest 16 frequencies are kept (0-23.4 Hz, 1.56 Hz apart; ``data.stft_nfft``, ``data.stft_rows``),
the first and last frames completed from the margin rather than with zeros (``data.stft_edges =
"signal"``), log10 magnitude with a floor of 1e-3 times the trace's peak, standardised per trace
(mean 0, std 1): 16 x 48, the paper's size. Labels: ``path_distance_class`` ("local" < 150 km,
"teleseismic" 1000-10000 km; the synthetic `local` data has both).

Why nfft 64: with nfft = nperseg = 30 the 16 rows span 0-50 Hz, and 10 of them lie above the 20 Hz
corner of the bandpass, where there is nothing but the floor. The network pools 16 rows into 2, so
half of its 12-d code described an empty band. The zero-padded edge frames carried a broadband
stripe (up to 50 Hz) from the cut-off signal; removing it changed little (+0.01).

Why a whitened clustering space (``task.cluster_space = "whitened"``, the default here; the paper
clusters the code itself, ``"code"``): the autoencoder spends the code's large-variance directions on
what reconstructs best, and k-means /
the Student-t kernel follow them; scaling every principal direction of the pretrained code to unit
variance (a fixed map set at the start of DEC) lets the clustering find the class direction.

Full version (2,000 synthetic `local` events, 36,268 records, generated in <pretrain workdir>/data;
about 15 min of pretraining and 5-10 min of DEC on 2 CPU cores):

    python -m seisjax train --config experiments/dec_distance.py:pretrain --workdir runs/dec_dist_pre
    python -m seisjax train --config experiments/dec_distance.py \
        --config.task.pretrained=runs/dec_dist_pre --config.data.path=runs/dec_dist_pre/data --workdir runs/dec_dist
    python -m seisjax eval --workdir runs/dec_dist     # eval/step_N/clustering.json, confusion.png, embedding.png

gives (Hungarian accuracy; per log10 SNR bin 0-1 / 1-2 / 2-3 / 3-4 / >4) raw k-means 0.895, k-means
on the pretrained code 0.856, on the whitened code 0.891, DEC 0.971 (0.881 / 0.983 / 0.998 / 0.998 /
0.998), IDEC (``--config.task.variant=idec``, workdir runs/dec_dist_idec) 0.960 (0.872 / 0.971 /
0.986 / 0.987 / 0.985); IDEC in the code itself (``--config.task.cluster_space=code``) 0.851 (0.524 /
0.800 / 0.970 / 0.983 / 0.982). DEC is the default: it did at least as well as IDEC for each of
three pretraining seeds, and of four on the quick data (below). The paper: k-means after pretraining 0.874, DEC 0.984. What remains is below log10
SNR 2, where the 1 Hz high-pass leaves the teleseismic P (mostly below 1 Hz) near the noise. The
three commands above, rerun on another chip (an AMD EPYC with AVX2; 20 minutes in all), give the
same numbers to three digits: DEC 0.971 (0.881 / 0.983 / 0.998 / 0.998 / 0.998) after 1,120 steps,
re-drawn by the full-covariance mixture 0.983, k-means 0.895 / 0.856 / 0.891.

Pretraining seeds 1 and 2 (the same data; every stage with ``--config.seed=N``):

    python -m seisjax train --config experiments/dec_distance.py:pretrain --config.seed=1 \
        --config.data.path=runs/dec_dist_pre/data --workdir runs/dec_dist_pre_s1
    python -m seisjax train --config experiments/dec_distance.py --config.seed=1 [--config.task.variant=idec] \
        --config.task.pretrained=runs/dec_dist_pre_s1 --config.data.path=runs/dec_dist_pre/data \
        --workdir runs/dec_dist_s1        # runs/dec_dist_idec_s1 for IDEC
    python -m seisjax eval --workdir runs/dec_dist_s1

gives raw k-means 0.895, k-means on the pretrained code 0.910 (whitened 0.893), DEC 0.843 (0.514 /
0.758 / 0.967 / 0.990 / 0.989; 5,040 steps before the labels settled), IDEC 0.819 (0.505 / 0.704 /
0.942 / 0.980 / 0.977), re-drawn by the full-covariance mixture 0.782 / 0.815; DEC in the code itself
(``--config.task.cluster_space=code``, workdir runs/dec_dist_dec_code_s1) 0.851 (k-means there 0.910):
self-training moved away from its better start, whitened or not. Seed 2 (``_s2``): raw k-means 0.895,
k-means on the pretrained code 0.806 (whitened 0.924), DEC 0.969 (0.859 / 0.992 / 0.999 / 0.999 /
0.998; 2,800 steps), IDEC 0.814 (0.510 / 0.660 / 0.943 / 0.989 / 0.990), re-drawn by the
full-covariance mixture 0.804 / 0.795. Over the three seeds DEC gets 0.971 / 0.843 / 0.969 and IDEC
0.960 / 0.819 / 0.814: the full-size result depends on the pretraining seed as the quick one does
(below), and so does the mixture's re-drawing (0.983 / 0.782 / 0.804 after DEC). The final
pretraining loss does not tell the seeds apart (train MSE over the last ten batches logged in each
pretraining run's metrics.jsonl: 0.176 /
0.177 / 0.170); on the quick data the failed seed's stands out (0.195 / 0.188 / 0.187 / 0.208 for
seeds 0-3, seed 3 failing), so it is no rule for choosing a pretraining.

What a failed seed finds instead (``python -m seisjax cluster`` on the run's data, then
``scripts/dec_composition.py``, commands in its docstring): the 9.4 s window holds a local record's S
wave only when S - P < 8.4 s (about 65 km); beyond that it holds P and its coda alone, as a
teleseismic window does. The quick DEC run of seed 3 (0.708) follows that boundary: its cluster 0
holds 1,247 of the 1,353 local records with S in the window, 60 of the 1,304 with S after it, and 228
of the 2,766 teleseismic records (agreement with "S in the window or not": 0.927). The windows hold two
boundaries and the labels draw only one. The runs that succeed err only below log10 SNR 2, on near and far local
records alike (full size, seed 0: 583 of 9,551 with S in the window, 455 of 8,398 without). A window
that holds every local S (18.8 s, the same 16 x 48 input: ``--config.data.window=1880
--config.data.stft_nperseg=60 --config.data.stft_noverlap=20`` on both quick stages) removes that
boundary, but DEC then gets 0.842 / 0.963 / 0.827 / 0.846 for seeds 0-3: the local records cluster
almost perfectly (10-36 of 2,657 astray), and for seeds 0, 2 and 3 the teleseismic records below log10
SNR 2 join them.

Where the rest of the error lies: classifiers trained *with* the labels on the records of half the
events and scored on the other half (both ways), per log10 SNR bin, against the DEC run above:

    python -m seisjax train --config experiments/dec_distance.py --config.task.variant=idec \
        --config.task.pretrained=runs/dec_dist_pre --config.data.path=runs/dec_dist_pre/data --workdir runs/dec_dist_idec
    python scripts/dec_supervised_reference.py --config experiments/dec_distance.py:pretrain \
        --data runs/dec_dist_pre/data --probe runs/dec_dist_pre --probe runs/dec_dist_idec --probe runs/dec_dist

| | all | 0-1 | 1-2 | 2-3 | 3-4 | >4 |
|---|---|---|---|---|---|---|
| logistic regression on the 16 x 48 input | 0.995 | 0.976 | 1.000 | 1.000 | 1.000 | 1.000 |
| the distance network's encoder + a linear layer | 0.992 | 0.962 | 0.999 | 1.000 | 1.000 | 1.000 |
| logistic regression on the pretrained 12-d code | 0.977 | 0.933 | 0.982 | 0.990 | 0.992 | 0.990 |
| logistic regression on the DEC (whitened) run's code | 0.985 | 0.933 | 0.995 | 0.999 | 0.999 | 0.999 |
| logistic regression on the IDEC (whitened) run's code | 0.987 | 0.949 | 0.993 | 0.998 | 0.998 | 0.998 |
| DEC, whitened, no labels | 0.971 | 0.881 | 0.983 | 0.998 | 0.998 | 0.998 |

The input and this network separate the classes (0.99 with labels, also below SNR 10). The pretrained
code keeps most of it (a linear read-out gets 0.977) and the DEC run's code more (0.985, the paper's
level), but DEC's two clusters get 0.971: below log10 SNR 1 the read-out of the same code gets 0.933,
the clusters 0.881. What is left is where the clusters draw their boundary among the low-SNR records,
more than what the code holds: the Student-t kernel cuts between two centres as if both clusters
had the same round spread. ``eval`` also reports the clusters re-drawn by a Gaussian mixture with
full covariances, started from DEC's (``dec_whitened_gmm_full``, no labels): 0.983 (0.921 / 0.993 /
1.000 / 1.000 / 1.000), and 0.982 after IDEC (0.922 / 0.994 / 0.999 / 0.999 / 0.999); the paper 0.984. Tried and dropped: two changes of the input (linear instead of log
magnitude; each frequency row minus its level before P), both lower after IDEC on the quick data
(seeds 0 and 1; no longer in the code). Three times longer pretraining
(``--config.optim.stages='((60, 3e-3, 1.0),)'`` on ``quick_pretrain``, seeds 0 / 1) kept or raised the
read-out of the code (0.980 -> 0.980, 0.957 -> 0.968) but IDEC fell to 0.787 / 0.766 (from 0.952 /
0.891): what the clusters of the code follow matters as much as what the code holds. Running DEC
longer (``--config.task.tol=0.0001``: 5,040 steps instead of 1,120) leaves it at 0.971 (0.878 below
log10 SNR 1); starting it from a Gaussian mixture (``--config.task.init=gmm``) gives 0.821. The
original DEC's optimizer, SGD with momentum 0.9 at a learning rate of 0.01 (on the quick DEC stage,
``--config.optim.optimizer=sgd --config.optim.stages='((10, 1e-2, 1.0),)'``), put every record in
one cluster (0.510) within 100-400 steps for each of the four quick pretrainings below. Adam at a
ten times smaller rate (``--config.optim.stages='((10, 1e-4, 1.0),)'``) gives 0.959, 0.937, 0.888,
0.722 for them (at the default rate on the same, AMD EPYC, machine 0.953, 0.963, 0.944, 0.709; on the
earlier machine 0.953, 0.961, 0.944, 0.708, below): no
better, and even at that rate DEC leaves seed 0's whitened k-means start (0.976) for 0.959, so it is
the objective, not the step size, that moves the clusters away. The original DEC's denoising
pretraining (each input value dropped with probability p and the rest scaled by 1 / (1 - p), the
clean input reconstructed; the four quick pretrainings and their DEC runs) gave 0.784 / 0.829 / 0.954 /
0.811 at p = 0.2 and 0.963 / 0.841 / 0.938 / 0.847 at p = 0.05: no steadier across seeds (no longer in
the code). Nor would stopping earlier help: followed through the quick DEC stage (``--config.task.tol=0
--config.train.eval_every_steps=25``, ``eval/accuracy`` in the run's metrics.jsonl), seed 0 falls
from 0.975 at step 25 to 0.957 at step 840, seeds 1 and 2 rise from 0.901 to 0.963 and from 0.915 to
0.944, and seed 3 stays at 0.69-0.71.

Quick version (300 events, 5,423 records; minutes):

    python -m seisjax train --config experiments/dec_distance.py:quick_pretrain --workdir runs/dec_dist_pre
    python -m seisjax train --config experiments/dec_distance.py:quick \
        --config.task.pretrained=runs/dec_dist_pre --config.data.path=runs/dec_dist_pre/data --workdir runs/dec_dist
    python -m seisjax eval --workdir runs/dec_dist

IDEC, four pretraining seeds (``--config.seed=0..3`` on both stages): whitened 0.952, 0.891, 0.910,
0.684 (re-drawn by the full-covariance mixture, ``idec_whitened_gmm_full``: 0.982, 0.970, 0.952, 0.741); code 0.770, 0.861, 0.822, 0.869 (k-means on the pretrained code 0.783, 0.875, 0.831, 0.878;
raw k-means 0.883). The small quick pretraining is seed-sensitive, and in the whitened space so is
k-means, whose optima lie close: for seed 3 its best of 10 restarts split the records 1,003 / 4,420
(0.687), and IDEC kept that split. Those are IDEC (``--config.task.variant=idec``); DEC, the
default, from the same four pretrainings: 0.953, 0.961, 0.944, 0.708 (``dec_whitened_gmm_full``
0.986, 0.824, 0.974, 0.623), at least IDEC's for every seed, as at full size. ``--config.task.init=gmm``
starts the centres from a diagonal Gaussian mixture.
Variants: ``pretrain``, ``quick_pretrain``, ``quick`` (DEC stage), ``tones_pretrain`` / ``tones``
(in-memory short high-frequency bursts vs long low-frequency wave trains; tests).
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg=None):
    arg = arg or ""
    stage = "pretrain" if arg.endswith("pretrain") else "dec"
    size = arg.removesuffix("pretrain").removesuffix("_") or "full"
    if size not in ("full", "quick", "tones"):
        raise ValueError(f"dec_distance: unknown variant {arg!r} (expected [quick_|tones_]pretrain, quick, tones)")

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 256

    config.task = ml_collections.ConfigDict(dict(
        name="dec", stage=stage, variant="dec", gamma=0.1, alpha=1.0, n_clusters=2, update_interval=140,
        tol=0.001, kmeans_n_init=20, init="kmeans", cluster_space="whitened", pretrained=""))
    config.model = ml_collections.ConfigDict(dict(
        name="mousavi_distance", channels=(4, 2, 1), kernel=(3, 3), activation="tanh", embedding_activation=""))

    config.data = ml_collections.ConfigDict(dict(
        source="synthetic", path="", synthetic_events=2000, synthetic_seed=0, sampling_rate=100.0,
        window=940, pre_p=100, component="Z", components="ZNE", input="stft", stft_margin=100,
        bandpass=(1.0, 20.0), stft_nperseg=30, stft_noverlap=10, stft_floor=1e-3, stft_edges="signal",
        stft_nfft=64, stft_rows=16,
        label_column="path_distance_class", snr_column="trace_snr_db", train_split="", eval_split="", query="",
        prefetch=2, toy_examples=2000, toy_seed=0, toy_noise=0.05))

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

    if size in ("quick", "tones"):
        config.data.synthetic_events = 300
        config.batch_size = 64
        config.task.update_interval = 50
        config.optim.stages = ((20 if stage == "pretrain" else 10, 3e-3 if stage == "pretrain" else 1e-3, 1.0),)
        config.train.log_every_steps = 10
        config.train.checkpoint_every_epochs = 5.0
        config.task.kmeans_n_init = 10
    if size == "tones":
        config.task.cluster_space = "code"  # the tests check DEC proper, in the paper's space
        config.data.source = "tones"
        config.data.toy_examples = 256
        config.batch_size = 32
        config.optim.stages = ((6 if stage == "pretrain" else 3, 1e-2 if stage == "pretrain" else 1e-3, 1.0),)
        config.task.update_interval = 8
    return config
