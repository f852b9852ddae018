"""Spectrogram AE, beta-VAE and CVAE of the Marmara study on three-component STFT spectrograms.

Quick runs (1.5-4 minutes each on a 2-core CPU; the synthetic `local` data is written to
<workdir>/data first, about a minute):

    python -m seisjax train --config experiments/spectrogram.py:quick,ae --workdir runs/spectrogram_quick_ae
    python -m seisjax train --config experiments/spectrogram.py:quick,vae --workdir runs/spectrogram_quick_vae
    python -m seisjax train --config experiments/spectrogram.py:quick,cvae --workdir runs/spectrogram_quick_cvae
    python -m seisjax eval --workdir runs/spectrogram_quick_cvae      # metrics.json + spectral_report.json
    python -m seisjax generate --workdir runs/spectrogram_quick_cvae --magnitude 3 --lat 38.2 --lon 23.1 \\
        --depth 10 --station SJ05 -n 8 --out runs/spectrogram_quick_cvae/generated

Variants (the words after the colon): a size, ``full`` (default; the study's 100 Hz records),
``quick`` (60 events at 50 Hz, narrower models) or ``toy`` (small in-memory-made records, for tests);
a model, ``ae`` (default), ``vae`` or ``cvae``. Any key can be overridden, e.g.
``--config.task.beta=0.5``, ``--config.model.upsample=transpose``, the synthetic data's as
``--config.data.synthetic.noise.snr=(0.2,2)``.

Result: the CVAE reconstructs held-out spectrograms best by log-spectral distance, and its generated
records follow the held-out records' trends of amplitude and spectral centroid with magnitude and
distance (the centroid's more weakly). Tables, the studies behind the defaults and the STEAD run:
seisjax/spectrogram/README.md.
"""

from seisjax.config import base_config, parse_variant
from seisjax.data.synthetic import scenario_config


def get_config(arg=None):
    variant = parse_variant(arg, size=("full", "quick", "toy"), model=("ae", "vae", "cvae"))
    config = base_config()
    config.task = dict(
        name="spectral_vae", beta=1.0, scale_weight=1.0, station_dropout=0.1, griffin_lim_iters=32,
        generation_seed=0, distance_condition=True, prior_weight=0.0, generation_prior="neighbours",
        generation_floor="train_median", prior_neighbours=8,
        # "standard": KL against N(0, I); "learned" (CVAE): against a learned prior p(z | c), which
        # generation_prior="learned" then samples
        prior="standard")
    config.model = dict(name=f"spectral_{variant.model}", features=(32, 64, 128, 256), upsample="subpixel",
                        bn_momentum=0.9, encoder_conv_impl="auto", decoder_conv_impl="auto")
    if variant.model in ("vae", "cvae"):
        config.model.latent = 128
    if variant.model == "cvae":
        config.model.station_dim = 16
        config.model.cond_dim = 64
    config.data = dict(
        source="synthetic", path="", synthetic=scenario_config("local", events=500), toy_records=64, toy_seed=0,
        components="ENZ", sampling_rate=100.0, before_s=10.0, after_s=60.0, nperseg=256, noverlap=192, nfft=256,
        snr_min=1.5, taper=0.05, max_fill=0.25, gain=0.0, train_split="train", eval_split="dev", prefetch=2)
    config.optim.stages = ((40, 1e-3, 0.97), (20, 2e-4, 0.97))
    config.optim.clip_norm = 1.0
    config.train.figure_every_steps = 500
    config.train.eval_every_epochs = 10.0

    if variant.size in ("quick", "toy"):
        config.batch_size = 16
        config.model.features = (16, 32, 64, 128)
        if variant.model in ("vae", "cvae"):
            config.model.latent = 32
        if variant.model == "cvae":
            config.model.cond_dim = 32
        config.data.synthetic = scenario_config("local", events=60)
        config.data.sampling_rate = 50.0
        # the CVAE twice the epochs: its held-out log-spectral distance still falls (the page)
        config.optim.stages = ((20, 2e-3, 0.9), (10, 5e-4, 0.9)) if variant.model == "cvae" \
            else ((10, 2e-3, 0.9), (5, 5e-4, 0.9))
        config.train.log_every_steps = 10
        config.train.eval_every_epochs = 5.0
        config.train.checkpoint_every_epochs = 5.0
        config.eval.batch_size = 32
        config.task.griffin_lim_iters = 16
    if variant.size == "toy":
        config.data.source = "toy"
        config.model.features = (8, 16, 32, 64)
        config.optim.stages = ((6, 3e-3, 1.0),)
        config.train.eval_every_epochs = 6.0
        config.train.checkpoint_every_epochs = 6.0
        config.eval.batch_size = 16
        config.task.griffin_lim_iters = 4
    return config
