"""Local vs teleseismic records by deep embedded clustering with the zClust network (after
Nooshiri's zClust package): five stride-2 3x3 convolutions 1-8-16-32-64-128 with leaky ReLU (0.02),
a Linear layer to a 9-d embedding, the mirror decoder (``seisjax/models/dec.py``, :class:`ZClust`).

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

Quick-run result (5,423 synthetic `local` traces, 10 pretraining epochs, 3 IDEC epochs):
Hungarian accuracy 0.980 for IDEC, 0.981 for k-means on the pretrained embeddings, 0.788 for
k-means on the raw spectrograms (paper's distance DEC with its own network: 0.984).

Full version: the same with ``:pretrain`` and no variant. Variants: ``pretrain``, ``quick_pretrain``,
``quick`` (DEC stage; IDEC by default as in the other quick configs' best result, set
``--config.task.variant=dec`` for DEC).
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
    config.task.variant = "idec"
    if size == "quick":
        config.optim.stages = ((10 if stage == "pretrain" else 3, 1e-3, 1.0),)
    return config
