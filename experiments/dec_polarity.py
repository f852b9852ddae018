"""First-motion polarity by deep embedded clustering (Mousavi et al. 2019, the polarity network).

Two runs: pretrain the autoencoder, then DEC (or IDEC) from it. Quick version (a few minutes on a
2-core CPU; the synthetic `local` data is generated in <pretrain workdir>/data first):

    python -m seisjax train --config experiments/dec_polarity.py:quick_pretrain --workdir runs/dec_pol_pre
    python -m seisjax train --config experiments/dec_polarity.py:quick \\
        --config.task.pretrained=runs/dec_pol_pre --config.data.path=runs/dec_pol_pre/data --workdir runs/dec_pol
    python -m seisjax eval --workdir runs/dec_pol      # eval/step_N/clustering.json, confusion.png, embedding.png
    python -m seisjax cluster --workdir runs/dec_pol --data DIR --out clusters.csv

Full version: the same with ``:pretrain`` and no variant. The fine-tuning is IDEC by default (it
beat DEC on the quick data: 0.877 against 0.767; ``--config.task.variant=dec`` for DEC);
``--config.task.init=gmm`` starts the centres from a diagonal Gaussian mixture instead of k-means.

Data: local records only (``data.query``), 32 samples centred on P (``pre_p = 16``, as in Mousavi's
code), demeaned and max-abs normalised per trace. The synthetic data mixes local and teleseismic
records; with both, every clustering split them by kind instead of polarity (k-means on the raw
windows 0.65; 0.90 on local records alone).

Real data (``real_pretrain`` / ``real``): real P-aligned vertical records and their sign-flipped
copies, written by ``scripts/make_polarity_flips.py`` (its docstring has the commands). Within a
pair the labels are exactly opposite by construction; the recorded trace's own label is estimated
from its first motion, so the accuracy carries the estimate's errors. ``pair_split`` in
clustering.json (pairs whose copies land in different clusters) is exact but only necessary: any
clustering that is odd under x -> -x (k-means on this symmetric data) splits every pair, whatever
feature it uses. Result of the quick run on 228 pairs (STEAD 50, PhaseNet 154, MTUQ Alaska 24):
accuracy 0.575 (k-means raw), 0.513 (k-means pretrained), 0.515 (IDEC), with pair splits 1.0, 0.97,
0.94: the clusters do not follow the estimated first motion (on these band-limited, partly
emergent real onsets the 32-sample window is dominated by later swings; not examined further).

    python -m seisjax train --config experiments/dec_polarity.py:real_pretrain \\
        --config.data.path=runs/polarity_flips --workdir runs/dec_pol_real_pre
    python -m seisjax train --config experiments/dec_polarity.py:real --config.data.path=runs/polarity_flips \\
        --config.task.pretrained=runs/dec_pol_real_pre --workdir runs/dec_pol_real
    python -m seisjax eval --workdir runs/dec_pol_real

Variants: ``pretrain``, ``quick_pretrain``, ``quick`` (fine-tuning stage), ``real_pretrain`` / ``real``,
``pulses_pretrain`` / ``pulses`` (in-memory clean up/down pulses; tests).
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg=None):
    arg = arg or ""
    stage = "pretrain" if arg.endswith("pretrain") else "dec"
    size = arg.removesuffix("pretrain").removesuffix("_") or "full"
    if size not in ("full", "quick", "pulses", "real"):
        raise ValueError(f"dec_polarity: unknown variant {arg!r} "
                         "(expected [quick_|pulses_|real_]pretrain, quick, pulses, real)")

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 256

    config.task = ml_collections.ConfigDict(dict(
        name="dec", stage=stage, variant="idec", gamma=0.1, alpha=1.0, n_clusters=2, update_interval=140,
        tol=0.001, kmeans_n_init=20, init="kmeans", pretrained=""))
    config.model = ml_collections.ConfigDict(dict(
        name="mousavi_polarity", channels=(8, 4, 2, 1), kernels=(11, 9, 3, 3), activation="tanh", embedding_activation=""))

    config.data = ml_collections.ConfigDict(dict(
        source="synthetic", path="", synthetic_events=2000, synthetic_seed=0, sampling_rate=100.0,
        window=32, pre_p=16, component="Z", components="ZNE", label_column="trace_polarity",
        snr_column="trace_snr_db", train_split="", eval_split="", query="path_distance_class == 'local'",
        pair_column="", prefetch=2,
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
        # 40 epochs at 1e-3 for both stages: IDEC 0.877 (2e-3 pretraining and 20 IDEC epochs: 0.837)
        config.optim.stages = ((40, 1e-3, 1.0),)
        config.train.log_every_steps = 10
        config.train.checkpoint_every_epochs = 10.0
        config.task.kmeans_n_init = 10
    if size == "real":
        # real records and their sign-flipped copies (scripts/make_polarity_flips.py): all local,
        # trace_polarity of a recorded trace estimated from its first motion, exact within a pair
        config.data.source = "dataset"
        config.data.query = ""
        config.data.pair_column = "trace_pair"
        config.data.components = "Z"
        config.batch_size = 32
        config.task.update_interval = 20
        config.optim.stages = ((200 if stage == "pretrain" else 40, 2e-3 if stage == "pretrain" else 1e-3, 1.0),)
        config.train.log_every_steps = 20
        config.train.checkpoint_every_epochs = 50.0
        config.task.kmeans_n_init = 10
    if size == "pulses":
        config.task.variant = "dec"  # the tests check DEC proper
        config.data.source = "pulses"
        config.data.toy_examples = 640
        config.optim.stages = ((8 if stage == "pretrain" else 4, 3e-3 if stage == "pretrain" else 1e-3, 1.0),)
        config.task.update_interval = 10
    return config
