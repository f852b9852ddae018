"""SymAE on (event, pixel) groups of teleseismic P waves: the Earthquake-SymAE recipe.

Quick run (about 3-4 minutes on a 2-core CPU, data generation included: 24 synthetic
teleseismic-p events are written to <workdir>/data first):

    python -m seisjax train --config experiments/symae.py:quick --workdir runs/symae_quick
    python -m seisjax eval --workdir runs/symae_quick

Reference run (the Earthquake-SymAE settings: nt 192, ntau 20, batches of 32 datapoints, p = q = 30,
gamma = 100, 50/50/100 epochs at 1e-3/1e-4/1e-5 with a 0.99 decay per epoch):

    python -m seisjax train --config experiments/symae.py --workdir runs/symae

Real data (one M4.6 Alaska event at 26 stations, from the repository root):

    python -m seisjax data build --waveforms "../shared/data/mtuq_alaska/20090407201255351/*.BH.?" \\
        --picks ../shared/data/mtuq_alaska/20090407201255351/picks.dat --components ZRT \\
        --out runs/alaska_data
    python -m seisjax train --config experiments/symae.py:alaska --workdir runs/symae_alaska

Variants (the text after the colon):

- ``quick``: 24 events on a smaller station network, batches of 16 datapoints of 10 traces, shifts
  bounded at 3 samples (``model.max_shift``; the reference has no bound), 55
  epochs (385 steps). ``medium``, ``long`` and ``xlong`` train the same setup for 2,800, 12,600 and
  50,400 steps (7, 33 and 131 times as long; ``python -m seisjax demo --variant medium|long|xlong``;
  ``xlong`` is for a GPU: minutes there, over an hour on 2 CPU cores; it overfits the 24 events and
  scores below ``long``, see the README).
- ``alaska``: the dataset that ``data build`` writes to runs/alaska_data (``--config.data.path`` to
  move it). A regional M4.6 has a source of about a second, so windows are at 5 samples/s (200
  samples = 40 s, 10 s before the P pick) instead of 1; P on the vertical of ZRT records. Its 26
  stations, 16-281 km away, fall in the four HEALPix pixels around the pole of the source-centred
  sphere (3, 14, 6 and 3 stations), and two stations (MPEN, SOLD) have an all-zero vertical
  component, which the preparation rejects as ``zero_std``. Groups therefore need 4 stations
  (``min_stations``) instead of 21, which keeps the pixels of 14 and 4 usable stations (the 6
  stations of the two smallest pixels are reported as ``small_group``). Datapoints of 10 traces;
  each group is drawn 16 times per epoch.
  ``--config.data.group_by=event`` makes one group of the event's 24 usable
  stations instead.

Any key can be overridden, e.g. ``--config.data.path=DIR --config.task.gamma=10``.
"""

import ml_collections
from ml_collections import config_dict

from seisjax.data.synthetic import scenario_config

# The quick variant's synthetic network: fewer scattered stations and smaller dense arrays (so that
# generation takes seconds), records long enough for a 200 s window at 1 Hz with margins.
QUICK_SYNTHETIC = ("stations.n_scattered=100", "stations.n_arrays=12", "stations.array_size=40",
                   "window.pre_p_s=80.0", "window.post_p_s=180.0")


def get_config(arg=None):
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 32  # datapoints per global batch

    config.task = ml_collections.ConfigDict({
        "name": "symae", "gamma": 100.0, "beta_nuisance": 1.0, "beta_coherent": 1.0, "shift_penalty": "norm"})
    config.model = ml_collections.ConfigDict({
        "name": "symae", "nt": 192, "p": 30, "q": 30, "leak": 0.1, "use_shifts": True, "shift_unit": 0.0,
        "max_shift": 0.0, "decoder_logvar_init": 1.0, "sample_coherent": True})

    config.data = ml_collections.ConfigDict({
        "source": "synthetic", "path": "", "synthetic": scenario_config("teleseismic-p", events=100),
        "events_split": "",
        # windows (seisjax.symae.data): 200 samples at 1 Hz around the travel-time prediction
        "component": "Z", "pick_column": "trace_p_predicted_sample", "sampling_rate": 1.0, "window": 200, "pre_p": 50,
        "trim_start": 8, "taper_alpha": 0.1,
        # groups and their 90/10 station split
        "group_by": "healpix", "nside": 4, "min_stations": 21, "test_fraction": 0.1, "split_seed": 0,
        "polarity_max_lag": 10, "snr_column": "auto",
        # datapoints
        "ntau": 20, "draws_per_group": 1, "prefetch": 2})

    config.optim = ml_collections.ConfigDict({
        "optimizer": "adam", "b1": 0.9, "b2": 0.999, "eps": 1e-8, "momentum": 0.9,
        "schedule": "stages",
        "stages": ((50, 1e-3, 0.99), (50, 1e-4, 0.99), (100, 1e-5, 0.99)),  # (epochs, lr, decay/epoch)
        "lr": 1e-3, "warmup_steps": config_dict.placeholder(int), "warmup_epochs": config_dict.placeholder(float),
        "cosine_final_fraction": 0.0, "clip_norm": 0.0, "weight_decay": 0.0, "frozen": ()})

    config.train = ml_collections.ConfigDict({
        "num_steps": config_dict.placeholder(int), "num_epochs": config_dict.placeholder(float),
        "log_every_steps": 20, "figure_every_steps": 200,
        "eval_every_steps": config_dict.placeholder(int), "eval_every_epochs": 10.0,
        "checkpoint_every_steps": config_dict.placeholder(int), "checkpoint_every_epochs": 10.0,
        "keep_last": 3, "best_metric": "eval/loss", "best_mode": "min", "async_checkpointing": True})

    config.eval = ml_collections.ConfigDict({"batch_size": 64})

    config.distributed = ml_collections.ConfigDict({
        "coordinator_address": "", "num_processes": config_dict.placeholder(int),
        "process_id": config_dict.placeholder(int), "auto": False})

    config.debug = ml_collections.ConfigDict({"nan_at_step": -1, "step_delay_s": 0.0})

    if arg in ("quick", "medium", "long", "xlong"):
        config.batch_size = 16
        config.data.synthetic = scenario_config("teleseismic-p", QUICK_SYNTHETIC, events=24)
        config.data.ntau = 10
        # Bounded shifts: unbounded, the briefly trained shift network drifts to ~5 samples RMS
        # against true timing errors of ~1 s (1 sample); bounded at 3 samples its STFs score better
        # (envelope correlation 0.75 against 0.67) and its shifts beat MCCC's.
        config.model.max_shift = 3.0
        config.optim.stages = ((40, 1e-3, 0.99), (15, 1e-4, 0.99))
        config.train.log_every_steps = 10
        config.train.figure_every_steps = 50
        config.train.eval_every_epochs = 11.0
        config.train.checkpoint_every_epochs = 11.0
        config.eval.batch_size = 32
        if arg == "medium":   # the quick setup trained about 7 times longer
            config.optim.stages = ((300, 1e-3, 0.995), (100, 1e-4, 0.99))
            config.train.log_every_steps = 50
            config.train.figure_every_steps = 500
            config.train.eval_every_epochs = 50.0
            config.train.checkpoint_every_epochs = 50.0
        if arg == "long":     # about 33 times the quick steps (18 minutes of training on 2 cores)
            config.optim.stages = ((1600, 1e-3, 0.998), (200, 1e-4, 0.99))
            config.train.log_every_steps = 50
            config.train.figure_every_steps = 2000
            config.train.eval_every_epochs = 200.0
            config.train.checkpoint_every_epochs = 200.0
        if arg == "xlong":    # 4x the long's steps, the same learning-rate path stretched 4x
            config.optim.stages = ((6400, 1e-3, 0.9995), (800, 1e-4, 0.9975))
            config.train.log_every_steps = 200
            config.train.figure_every_steps = 10000
            config.train.eval_every_epochs = 800.0
            config.train.checkpoint_every_epochs = 800.0
    elif arg == "alaska":
        config.batch_size = 16
        config.data.source = "dataset"
        config.data.path = "runs/alaska_data"
        config.data.pick_column = "trace_p_arrival_sample"
        config.data.sampling_rate = 5.0
        config.data.min_stations = 4
        config.data.ntau = 10
        config.data.draws_per_group = 16
        config.optim.stages = ((100, 1e-3, 0.99), (50, 1e-4, 0.99))
        config.train.log_every_steps = 10
        config.train.eval_every_epochs = 25.0
        config.train.checkpoint_every_epochs = 25.0
        config.eval.batch_size = 8
    elif arg not in (None, ""):
        raise ValueError(f"symae: unknown variant {arg!r} (expected quick, medium, long, xlong or alaska)")
    return config
