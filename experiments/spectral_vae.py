"""Spectrogram AE, beta-VAE and CVAE of the Marmara study (task spectral_vae, issue 6).

Input size: records are windowed P - 10 s .. P + 60 s and turned into STFTs (nperseg 256,
noverlap 192, nfft 256: 129 frequencies, ceil(W / 64) + 1 frames). The frequencies are cropped to
128 (the dropped Nyquist bin lies above every band of the bandpass table) and the frames zero-padded
to a multiple of 16, with a mask in the loss: at 100 Hz (7000 samples, 111 frames) the model sees
128 x 112 x 3; the quick variants resample to 50 Hz (3500 samples, 56 frames): 128 x 64 x 3.

Quick runs (a few minutes each on a 2-core CPU; the synthetic `local` data is made in
<workdir>/data first, about a minute):

    python -m seisjax train --config experiments/spectral_vae.py:quick_ae --workdir runs/spectral_quick_ae
    python -m seisjax train --config experiments/spectral_vae.py:quick_vae --workdir runs/spectral_quick_vae
    python -m seisjax train --config experiments/spectral_vae.py:quick_cvae --workdir runs/spectral_quick_cvae
    python -m seisjax eval --workdir runs/spectral_quick_cvae      # metrics.json + spectral_report.json
    python -m seisjax generate --workdir runs/spectral_quick_cvae --magnitude 3 --lat 38.2 --lon 23.1 \
        --depth 10 --station SJ05 -n 8 --out runs/spectral_quick_cvae/generated

Generation trends of ``:quick_cvae`` (issue 6; ``eval`` on the data above, 103 held-out records of
6 events whose magnitude and log10 distance correlate at 0.96, so the joint slopes trade off; the
within-event slope, one intercept per event, is free of that). Slopes of the spectral centroid (Hz):

    | centroid slope                  | held-out     | generated before | generated now |
    | vs magnitude (joint)            | -0.06 ± 0.30 | -1.40 ± 0.20     | -0.39 ± 0.24  |
    | vs log10 distance (joint)       | -1.39 ± 0.49 | +1.29 ± 0.33     | -1.03 ± 0.40  |
    | vs log10 distance within events | -2.65 ± 0.56 | +0.95 ± 0.41     | -2.04 ± 0.46  |

(peak amplitude: magnitude 1.16 held-out / 1.22 now, log10 distance -2.20 / -2.00, within events
-1.72 / -1.47.) The sign flipped where z ~ N(0, I) replaced the posterior (reconstructions keep
-2.63 within events) and not at Griffin-Lim; the fixes are generation defaults, ``task.generation_prior``
and ``task.generation_floor`` (see :mod:`seisjax.spectrogram.task`). Each step's trend:

    python -c "from seisjax.spectrogram.generation import centroid_stage_trends as f; \
        print(f('runs/spectral_quick_cvae'))"

Learned conditional prior p(z | c) (``task.prior = "learned"``, Sohn et al. 2015; generation from it
with ``task.generation_prior = "learned"``), same data and schedule:

    python -m seisjax train --config experiments/spectral_vae.py:quick_cvae --workdir runs/sq_cvae_learned_prior \
        --config.task.prior=learned --config.task.generation_prior=learned
    python -m seisjax eval --workdir runs/sq_cvae_learned_prior
    # + --config.task.prior_weight=0.5: the GSNN term then decodes draws from p(z | c)

It does not recover the spectral shape's trend: within-event centroid slope vs log10 distance
+1.23 ± 0.46 (learned prior), -0.29 ± 0.25 (learned prior + prior_weight 0.5), against -2.04 ± 0.46
(neighbours) and -2.65 ± 0.56 held-out; joint slopes vs magnitude / log10 distance -1.62 / +2.06 and
-1.15 / +0.20; peak amplitude vs magnitude 1.16 / 1.21, held-out MSE 0.0032 / 0.0035, LSD 11.0 /
12.7 dB (neighbour-prior run 0.0032, 9.5 dB). Freed from N(0, I), the codes spread out and a
Gaussian p(z | c) explains little of their spread from the conditions, so its draws are mostly
condition-free. The neighbour prior stays the default.

Full runs: ``experiments/spectral_vae.py:ae`` (also the default), ``:vae``, ``:cvae``. On the STEAD
sample (converted once into <workdir>/data_stead):

    python -m seisjax train --config experiments/spectral_vae.py:quick_cvae --workdir runs/spectral_stead \
        --config.data.source=dataset --config.data.path=../shared/data/stead50

Any key can be overridden (``--config.task.beta=0.5``, ``--config.model.upsample=resize``); an unknown
key is an error.
"""

import ml_collections
from ml_collections import config_dict

VARIANTS = ("ae", "vae", "cvae", "quick_ae", "quick_vae", "quick_cvae", "toy_ae", "toy_cvae")


def get_config(arg=None):
    arg = arg or "ae"
    if arg not in VARIANTS:
        raise ValueError(f"spectral_vae: unknown variant {arg!r} (expected one of {', '.join(VARIANTS)})")
    kind = arg.rsplit("_", 1)[-1]

    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 32

    config.task = ml_collections.ConfigDict(dict(
        name="spectral_vae", beta=1.0, scale_weight=1.0, station_dropout=0.1, griffin_lim_iters=32,
        generation_seed=0, distance_condition=True, prior_weight=0.0, generation_prior="neighbours",
        generation_floor="train_median", prior_neighbours=8,
        # "standard": KL against N(0, I); "learned" (CVAE): against a learned prior p(z | c), which
        # generation_prior="learned" then samples
        prior="standard"))
    model = dict(name=f"spectral_{kind}", features=(32, 64, 128, 256), upsample="subpixel", bn_momentum=0.9)
    if kind in ("vae", "cvae"):
        model.update(latent=128)
    if kind == "cvae":
        model.update(station_dim=16, cond_dim=64)
    config.model = ml_collections.ConfigDict(model)

    config.data = ml_collections.ConfigDict(dict(
        source="synthetic", path="", synthetic_events=500, synthetic_seed=0, toy_records=64, toy_seed=0,
        components="ENZ", sampling_rate=100.0, before_s=10.0, after_s=60.0, nperseg=256, noverlap=192, nfft=256,
        snr_min=1.5, taper=0.05, max_fill=0.25, gain=0.0, train_split="train", eval_split="dev", prefetch=2))

    config.optim = ml_collections.ConfigDict(dict(
        optimizer="adam", b1=0.9, b2=0.999, eps=1e-8, momentum=0.9,
        schedule="stages", stages=((40, 1e-3, 0.97), (20, 2e-4, 0.97)),
        lr=1e-3, warmup_steps=config_dict.placeholder(int), warmup_epochs=config_dict.placeholder(float),
        cosine_final_fraction=0.0, clip_norm=1.0, weight_decay=0.0, frozen=()))

    config.train = ml_collections.ConfigDict(dict(
        num_steps=config_dict.placeholder(int), num_epochs=config_dict.placeholder(float),
        log_every_steps=20, figure_every_steps=500,
        eval_every_steps=config_dict.placeholder(int), eval_every_epochs=10.0,
        checkpoint_every_steps=config_dict.placeholder(int), checkpoint_every_epochs=10.0,
        keep_last=3, best_metric="eval/loss", best_mode="min", async_checkpointing=True))

    config.eval = ml_collections.ConfigDict(dict(batch_size=64))

    config.distributed = ml_collections.ConfigDict(dict(
        coordinator_address="", num_processes=config_dict.placeholder(int),
        process_id=config_dict.placeholder(int), auto=False))

    config.debug = ml_collections.ConfigDict(dict(nan_at_step=-1, step_delay_s=0.0))

    if arg.startswith(("quick", "toy")):
        config.batch_size = 16
        config.model.features = (16, 32, 64, 128)
        if kind in ("vae", "cvae"):
            config.model.latent = 32
        if kind == "cvae":
            config.model.cond_dim = 32
        config.data.synthetic_events = 60
        config.data.sampling_rate = 50.0
        config.optim.stages = ((10, 2e-3, 0.9), (5, 5e-4, 0.9))
        if kind == "cvae":  # twice the epochs: held-out LSD 12.4 -> 9.8 dB in about 4 minutes (issue 6)
            config.optim.stages = ((20, 2e-3, 0.9), (10, 5e-4, 0.9))
        config.train.log_every_steps = 10
        config.train.eval_every_epochs = 5.0
        config.train.checkpoint_every_epochs = 5.0
        config.eval.batch_size = 32
        config.task.griffin_lim_iters = 16
    if arg.startswith("toy"):
        config.data.source = "toy"
        config.model.features = (8, 16, 32, 64)
        config.optim.stages = ((6, 3e-3, 1.0),)
        config.train.eval_every_epochs = 6.0
        config.train.checkpoint_every_epochs = 6.0
        config.eval.batch_size = 16
        config.task.griffin_lim_iters = 4
    return config
