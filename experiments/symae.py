"""SymAE on (event, pixel) groups of teleseismic P waves: the Earthquake-SymAE recipe.

Quick run (3-4 minutes on a 2-core CPU; it first writes 24 synthetic teleseismic-p events to
<workdir>/data):

    python -m seisjax train --config experiments/symae.py:quick --workdir runs/symae_quick
    python -m seisjax eval --workdir runs/symae_quick

Reference run (Earthquake-SymAE's settings on 100 synthetic events): the same without ``:quick``.
Real data (one Alaska event; `data build` writes runs/alaska_data first, see the page):

    python -m seisjax train --config experiments/symae.py:alaska --workdir runs/symae_alaska

Variants: a size, ``quick`` or the same setup trained longer, ``medium``, ``long``, ``xlong``
(``python -m seisjax demo --variant ...``); or the data ``alaska``, which has its own sizes and
schedule and takes no size. Any key can be overridden, e.g. ``--config.task.gamma=10``, the synthetic
data's as ``--config.data.synthetic.noise.snr=(0.2,2)``.

Result: SymAE's per-trace timing beats every classical baseline; its sign-keeping STF falls a little
short of the best classical stack on the demo's data and, after long training, beats it on noisy
records on average. Tables and commands: seisjax/symae/README.md.
"""

from seisjax.config import base_config, parse_variant
from seisjax.data.synthetic import scenario_config
from seisjax.errors import InputError

# The quick sizes' synthetic network: fewer scattered stations and smaller dense arrays (so that
# generation takes seconds), records long enough for a 200 s window at 1 Hz with margins.
QUICK_SYNTHETIC = ("stations.n_scattered=100", "stations.n_arrays=12", "stations.array_size=40",
                   "window.pre_p_s=80.0", "window.post_p_s=180.0")

# size -> (stages (epochs, lr, decay per epoch), log_every_steps, figure_every_steps, eval and
# checkpoint every N epochs): the quick setup and the same setup trained longer.
SIZES = {
    "quick": (((40, 1e-3, 0.99), (15, 1e-4, 0.99)), 10, 50, 11.0),
    "medium": (((300, 1e-3, 0.995), (100, 1e-4, 0.99)), 50, 500, 50.0),
    "long": (((1600, 1e-3, 0.998), (200, 1e-4, 0.99)), 50, 2000, 200.0),
    "xlong": (((6400, 1e-3, 0.9995), (800, 1e-4, 0.9975)), 200, 10000, 800.0),   # the long's path, 4x
}


def get_config(arg=None):
    variant = parse_variant(arg, size=("full", *SIZES), data=("synthetic", "alaska"))
    config = base_config()
    config.task = dict(name="symae", gamma=100.0, beta_nuisance=1.0, beta_coherent=1.0, shift_penalty="norm")
    config.model = dict(name="symae", nt=192, p=30, q=30, leak=0.1, use_shifts=True, shift_unit=0.0, max_shift=0.0,
                        decoder_logvar_init=1.0, sample_coherent=True)
    config.data = dict(
        source="synthetic", path="", synthetic=scenario_config("teleseismic-p", events=100), events_split="",
        # windows (seisjax.symae.data): 200 samples at 1 Hz around the travel-time prediction
        component="Z", pick_column="trace_p_predicted_sample", sampling_rate=1.0, window=200, pre_p=50,
        trim_start=8, taper_alpha=0.1,
        # groups and their 90/10 station split
        group_by="healpix", nside=4, min_stations=21, test_fraction=0.1, split_seed=0, polarity_max_lag=10,
        snr_column="auto",
        # datapoints
        ntau=20, draws_per_group=1, prefetch=2)
    config.optim.stages = ((50, 1e-3, 0.99), (50, 1e-4, 0.99), (100, 1e-5, 0.99))
    config.train.eval_every_epochs = 10.0

    if variant.data == "alaska":
        if variant.size != "full":
            raise InputError(f"symae variant {arg!r}: alaska has its own sizes and schedule; leave out "
                             f"{variant.size!r}")
        # A regional M4.6: a source of about a second, so 5 samples/s; few stations, so groups of 4.
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
        config.train.eval_every_epochs = config.train.checkpoint_every_epochs = 25.0
        config.eval.batch_size = 8
    elif variant.size != "full":
        config.batch_size = 16
        config.data.synthetic = scenario_config("teleseismic-p", QUICK_SYNTHETIC, events=24)
        config.data.ntau = 10
        # Bounded shifts: unbounded, the briefly trained shift network drifts far beyond the true
        # timing errors (seisjax/symae/README.md).
        config.model.max_shift = 3.0
        stages, log_every, figure_every, every_epochs = SIZES[variant.size]
        config.optim.stages = stages
        config.train.log_every_steps = log_every
        config.train.figure_every_steps = figure_every
        config.train.eval_every_epochs = config.train.checkpoint_every_epochs = every_epochs
        config.eval.batch_size = 32
    return config
