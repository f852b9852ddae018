"""Local vs teleseismic records by deep embedded clustering (Mousavi et al. 2019, the distance network).

Input: the STFT of the vertical component at 100 Hz, bandpassed 1-20 Hz (4-pole Butterworth, zero
phase, applied to the window plus 1 s each side so that its edge effects stay outside), over a
window of 940 samples (9.4 s) starting 1 s before P: ``nperseg = 30`` (0.3 s, Hann, nfft 30 ->
16 frequencies 0-50 Hz), ``noverlap = 10`` (hop 20 samples = 0.2 s; scipy's zero boundary and padding
-> ceil(940 / 20) + 1 = 48 frames), log10 magnitude with a floor of 1e-3 times the trace's peak,
standardised per trace (mean 0, std 1): 16 x 48, the paper's size. Labels: ``path_distance_class``
("local" < 150 km, "teleseismic" 1000-10000 km; the synthetic `local` data has both).

Quick version (the synthetic `local` data is generated in <pretrain workdir>/data first):

    python -m seisjax train --config experiments/dec_distance.py:quick_pretrain --workdir runs/dec_dist_pre
    python -m seisjax train --config experiments/dec_distance.py:quick \\
        --config.task.pretrained=runs/dec_dist_pre --config.data.path=runs/dec_dist_pre/data --workdir runs/dec_dist
    python -m seisjax eval --workdir runs/dec_dist     # eval/step_N/clustering.json, confusion.png, embedding.png

Full version: the same with ``:pretrain`` and no variant. Fine-tuning is IDEC by default (0.658
against DEC's 0.647 on the quick data; ``--config.task.variant=dec`` for DEC); ``--config.task.init=gmm``
starts the centres from a diagonal Gaussian mixture. On the quick data the pretrained embeddings
separate the classes worse than the raw spectrograms do (k-means 0.64 against 0.82): see the
table in the README.
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
        name="dec", stage=stage, variant="idec", gamma=0.1, alpha=1.0, n_clusters=2, update_interval=140,
        tol=0.001, kmeans_n_init=20, init="kmeans", pretrained=""))
    config.model = ml_collections.ConfigDict(dict(
        name="mousavi_distance", channels=(4, 2, 1), kernel=(3, 3), activation="tanh", embedding_activation=""))

    config.data = ml_collections.ConfigDict(dict(
        source="synthetic", path="", synthetic_events=2000, synthetic_seed=0, sampling_rate=100.0,
        window=940, pre_p=100, component="Z", components="ZNE", input="stft", stft_margin=100,
        bandpass=(1.0, 20.0), stft_nperseg=30, stft_noverlap=10, stft_floor=1e-3,
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
        config.task.variant = "dec"  # the tests check DEC proper
        config.data.source = "tones"
        config.data.toy_examples = 256
        config.batch_size = 32
        config.optim.stages = ((6 if stage == "pretrain" else 3, 1e-2 if stage == "pretrain" else 1e-3, 1.0),)
        config.task.update_interval = 8
    return config
