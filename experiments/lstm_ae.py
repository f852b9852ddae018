"""LSTM autoencoder of whole variable-length three-component records (synthetic `local` data).

Quick run (about 4 minutes on a busy 2-core CPU: 2 to generate its data in <workdir>/data, 2 to
train 2700 steps on 5 Hz records of at most 64 samples, 0.3 to evaluate), its
evaluation (reconstruction error by length bucket, linear probes, embedding map) and the embeddings
of every record of a dataset:

    python -m seisjax train --config experiments/lstm_ae.py:quick --workdir runs/lstm_ae_quick
    python -m seisjax eval --workdir runs/lstm_ae_quick
    python -m seisjax embed --workdir runs/lstm_ae_quick --data runs/lstm_ae_quick/data \
        --out runs/lstm_ae_quick/embeddings.h5

Medium run at a realistic length (20 Hz, records of up to 512 samples = 25.6 s from 4 s before P,
same 100-event synthetic data; 8.5 minutes to train 3240 steps on a busy 2-core CPU, plus about 1
to generate the data, 0.5 to evaluate):

    python -m seisjax train --config experiments/lstm_ae.py:medium --workdir runs/lstm_ae_medium
    python -m seisjax eval --workdir runs/lstm_ae_medium
    python -m seisjax embed --workdir runs/lstm_ae_medium --data runs/lstm_ae_medium/data \
        --out runs/lstm_ae_medium/embeddings.h5

Full run (1000 events, 40 Hz, records up to 2048 samples), and the reference (PyTorch project's)
mode. The full run takes the medium's recipe (encoder reading backwards, 4x/4x/2x pooling, a length
curriculum from 6.4 s to whole records), because the forward encoder with 2x/2x/2x pooling stayed at
the all-zero output at 512 samples already. It is a job for a GPU: on one H100 its 22,600 steps
(50 epochs of 452) took 6.6 minutes (about 75 steps/s, plus 4 minutes to generate the data); on
2 CPU cores a step of 32 records takes about 1.6 s on the first 256-sample crops (20 examples/s,
the ``examples_per_s`` of a 40-step run, ``--config.train.num_steps=40``; with
``--config.data.bucket_lengths='(512, 1024, 1536, 2048)'``, the former buckets: 9.8) and longer on
whole records, over a day in all. Its result (README): dev L1 0.941 of the all-zero
reconstruction's, learnt on the longest (teleseismic) records only. The reference mode keeps the
PyTorch project's layout (2x/2x/2x, forward, no curriculum):

    python -m seisjax train --config experiments/lstm_ae.py --workdir runs/lstm_ae
    python -m seisjax train --config experiments/lstm_ae.py:reference --workdir runs/lstm_ae_reference

Variants (after the colon, combined with commas, e.g. ``quick,reference``): ``quick`` shrinks the
data, the model and the schedule; ``medium`` keeps realistic lengths (see below); ``bottleneck``
(default) / ``reference`` choose the decoder; ``toy`` trains on small in-memory records (tests).
Any key can be overridden, e.g. ``--config.data.path=DIR --config.data.components=Z``.
PhaseNet-style data with single-channel records: ``--config.data.missing_components=zeros``
(zero-filled, flagged) or ``components=Z``.

What an embedding means (for the README)
----------------------------------------
An embedding is the encoder LSTM's final hidden and cell state, ``[h_1, c_1, (h_2, c_2)]``
(512 numbers with one layer of 256 units), read at the record's own last step: padding never
changes it, so it describes the whole record, whatever its length and whatever it was batched with.
Inputs are normalised per record (demeaned, divided by the record's peak: ``data.record_scale``)
and then per channel with the training set's statistics, so by default the embedding describes
the waveform's shape, frequency content, duration and relative amplitudes between components, not
its absolute amplitude. With ``model.reverse_encoder`` (the ``medium`` variant) the LSTM reads the
record from its end to its start, so the embedding is the state reached at the first pooled step:
still a function of the whole record and of nothing in the padding.

- ``bottleneck`` mode: the decoder starts from the embedding and reads only the embedding at every
  step; the reconstruction must come through the embedding, so it is a complete summary of the
  record (up to the reconstruction error): records with similar embeddings look alike.
- ``reference`` mode (as the PyTorch signal_autoencoder): the decoder also reads the encoder's
  whole output sequence (one vector per 8 samples), so the reconstruction can bypass the
  embedding; the embedding is then a by-product of the encoder, trained only indirectly, and says
  less about the record. Use it to compare with the original project.

Quick-run results (synthetic `local`, 100 events, 5 Hz, records of 24-64 samples from 4 s before P;
dev split, 168 records, all of 33-64 samples; all-zero reconstruction L1 = 1.545; probe baseline =
the majority class of the training records, "best constant" = the most frequent class on dev):

    mode        eval L1 (33-64)  / zero   distance class (base, best const)  magnitude bin (base, best const)
    bottleneck  1.278            0.83     0.988 (0.423, 0.577)               0.667 (0.577, 0.577)
    reference   0.848            0.55     0.899 (0.423, 0.577)               0.571 (0.577, 0.577)

    (magnitude bin among the 71 local dev records only: 0.211 and 0.169 against a best constant
    of 0.775: the quick embeddings do not tell local magnitudes apart)

``bottleneck`` with ``--config.seed=1``: L1 1.307; without the decoder clock
(``--config.model.decoder_time=False``): 1.345. At the earlier quick settings (20 Hz, records up
to 512 samples, dropout 0.1, hidden 32) the bottleneck decoder stayed at the all-zero output (the
L1 optimum when the phase of the oscillations cannot be predicted): it must carry every
oscillation's phase through the embedding, which is far easier for short, coarsely sampled
records. Compare ``eval/loss`` with ``eval/l1_zero_baseline`` to see such a collapse.

Medium-run results (``medium``: 20 Hz, records of 117-512 samples, 4x/4x/2x pooling = 16 recurrent
steps, encoder LSTM reading backwards, hidden 256, length curriculum 128 -> 256 -> 512 samples at
steps 0/250/500; dev split, 168 records; L1 per length bucket beside the all-zero reconstruction's):

    run                         eval L1 (all / 129-256 / 257-512)   / zero (all / 129-256 / 257-512)
    all-zero reconstruction     1.394 / 0.829 / 1.418
    medium (3240 steps)         1.249 / 0.829 / 1.268                0.896 / 1.000 / 0.894
      at steps 1080 / 2160      1.303 / 1.270
    medium --config.seed=1      1.267 / 0.833 / 1.286                0.909 / 1.006 / 0.907
    medium without curriculum   1.394 (step 2160)                    1.001: all-zero output
      (--config.data.length_schedule='()')

    probe (medium)               accuracy (seed 0, seed 1)  majority baseline  best constant
    distance class               1.000, 1.000               0.423              0.577
    magnitude bin                0.839, 0.845               0.577              0.577
    magnitude bin, local only    0.648, 0.606               0.000              0.775

The distance class is also told by the record's length (every teleseismic record fills the 512
samples; local ones end 1.5 S-P times after S), so its probe says little, and as every synthetic
teleseismic event has M >= 5 the magnitude bin largely repeats it: among the 71 local dev records
(``magnitude_bin_within_local``; a few events in two bins, the training majority bin absent) the
probe is below the best constant. The gain is in the long (257-512) records and mostly on Z (L1 0.320 against
about 0.455 at the all-zero plateau; N 0.440, E 0.489, little below it); the 7 records of 129-256
samples (161 are longer) stay at the all-zero error.

What made the bottleneck learn at this length (short runs of 600-900 steps at a constant learning
rate of 1e-3 unless said, train L1 / all-zero L1 over the last 100 steps): 2x/2x/2x pooling (64
recurrent steps) with hidden 256: 1.00, also with the length curriculum; 4x/4x/2x pooling alone:
1.00; 4x/4x/2x with the encoder reading backwards (``reverse_encoder``: the embedding is the state
at the onset, where the decoder starts): 0.94 from one initialisation but 1.00 from the engine's
(the full run without curriculum above), and 0.99 with a learning rate of 2e-3; with the
curriculum added it left the plateau on the short crops and was at 0.95 by step 800, then 0.90 on
eval by the end. At 5 Hz and 128 samples (16 recurrent steps) the same happens: 1.00 (even for
the records as short as the quick's), 0.97 with the encoder reversed.

How much an embedding knows is measured by linear probes (``eval``: ``embeddings.json``): a
logistic regression from the embeddings of the training records to the distance class (local /
teleseismic) and a magnitude bin, scored on the evaluation records beside the majority-class
baseline.
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg=None):
    variants = [v for v in (arg or "").split(",") if v]
    unknown = set(variants) - {"quick", "medium", "toy", "bottleneck", "reference"}
    if unknown:
        raise ValueError(f"lstm_ae: unknown variant(s) {sorted(unknown)} (expected quick, medium, toy, bottleneck, "
                         "reference)")
    if {"quick", "medium"} <= set(variants):
        raise ValueError("lstm_ae: choose one of the variants quick and medium")
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.batch_size = 32

    config.task = ml_collections.ConfigDict(dict(name="lstm_ae"))
    config.model = ml_collections.ConfigDict(dict(
        name="lstm_ae", channels=(64, 128, 256), hidden=256, lstm_layers=1, dropout=0.1,
        mode="reference" if "reference" in variants else "bottleneck", lstm_impl="scan",
        decoder_time=True, time_scale=128.0, pools=(4, 4, 2), reverse_encoder=True))

    config.data = ml_collections.ConfigDict(dict(
        source="synthetic", path="", synthetic_events=1000, synthetic_seed=0,
        components="ZNE", missing_components="error",
        sampling_rate=40.0, pre_p=80, end="s_coda", s_coda_factor=1.5,
        # a 256 bucket for the curriculum's first crops: padded to 512 they trained at half the speed
        # (9.8 against 20.3 examples/s on 2 CPU cores; command in the docstring)
        min_length=64, max_length=2048, bucket_lengths=(256, 512, 1024, 1536, 2048), bucket_chunk=16,
        difference=False, record_scale="peak",
        # the medium variant's recipe, scaled to 40 Hz (untested at this size: see the docstring)
        length_schedule=((0, 256), (500, 512), (1000, 1024), (1500, 2048)),
        train_split="train", eval_split="dev", toy_examples=96, toy_seed=0,
        # "auto": a split's records stay in memory when rows x max_length x channels x 4 bytes is
        # below memory_limit_mb MiB, else each batch reads and prepares its own rows; true / false force it
        records_in_memory="auto", memory_limit_mb=2048.0,
        prefetch=2))  # training batches made ahead in a background thread

    if "reference" in variants:   # the PyTorch project's layout
        config.model.update(pools=(2, 2, 2), reverse_encoder=False, time_scale=64.0)
        config.data.length_schedule = ()

    config.optim = ml_collections.ConfigDict(dict(
        optimizer="adam", b1=0.9, b2=0.999, eps=1e-8, momentum=0.9,
        schedule="stages", stages=((30, 1e-3, 0.98), (20, 2e-4, 0.98)),
        lr=1e-3, warmup_steps=config_dict.placeholder(int), warmup_epochs=config_dict.placeholder(float),
        cosine_final_fraction=0.0, clip_norm=1.0, weight_decay=0.0, frozen=()))

    config.train = ml_collections.ConfigDict(dict(
        num_steps=config_dict.placeholder(int), num_epochs=config_dict.placeholder(float),
        log_every_steps=20, figure_every_steps=200,
        eval_every_steps=config_dict.placeholder(int), eval_every_epochs=5.0,
        checkpoint_every_steps=config_dict.placeholder(int), checkpoint_every_epochs=5.0,
        keep_last=3, best_metric="eval/loss", best_mode="min", async_checkpointing=True))

    config.eval = ml_collections.ConfigDict(dict(batch_size=64, magnitude_bins=(2.0, 3.0, 4.0, 5.0)))

    config.distributed = ml_collections.ConfigDict(dict(
        coordinator_address="", num_processes=config_dict.placeholder(int),
        process_id=config_dict.placeholder(int), auto=False))

    config.debug = ml_collections.ConfigDict(dict(nan_at_step=-1, step_delay_s=0.0))

    if "quick" in variants or "toy" in variants:
        # Short, coarsely sampled records: the bottleneck decoder must carry every oscillation's
        # phase through the embedding, and at 20 Hz / 512 samples it could not (it sat at the
        # all-zero L1 optimum); 5 Hz / 64 samples (12.8 s from 4 s before P) it learns.
        config.batch_size = 16
        config.model.channels = (16, 32, 32)
        config.model.hidden = 64
        config.model.dropout = 0.0  # decoder dropout pushed the bottleneck back to zero output
        config.model.time_scale = 16.0  # the clock channel spans [0, 0.5) over 8 pooled steps
        config.model.pools = (2, 2, 2)  # the quick results were measured with these three
        config.model.reverse_encoder = False
        config.data.length_schedule = ()
        config.data.synthetic_events = 100
        config.data.sampling_rate = 5.0
        config.data.pre_p = 20
        config.data.min_length = 24
        config.data.max_length = 64
        config.data.bucket_lengths = (32, 64)
        config.optim.stages = ((24, 2e-3, 0.95), (6, 5e-4, 0.9))
        config.train.log_every_steps = 50
        config.train.figure_every_steps = 1000
        config.train.eval_every_epochs = 10.0
        config.train.checkpoint_every_epochs = 10.0
        config.eval.batch_size = 32
    if "medium" in variants:
        # Realistic length: 20 Hz, up to 512 samples (25.6 s from 4 s before P). Two changes make the
        # bottleneck learn there (at 8x pooling and a forward encoder it stayed at the all-zero output):
        # the encoder LSTM reads each record backwards, so its final state (the embedding, and the
        # decoder's initial state) sits at the onset the decoder starts from, and 4x, 4x, 2x pooling
        # leaves 16 recurrent steps of 1.6 s (as the quick's 8 steps of 1.6 s).
        config.batch_size = 16
        config.model.channels = (16, 32, 32)
        config.model.dropout = 0.0
        config.model.pools = (4, 4, 2)
        config.model.reverse_encoder = True
        config.model.time_scale = 32.0  # the clock channel spans [0, 0.5) over 16 pooled steps
        config.data.synthetic_events = 100
        config.data.sampling_rate = 20.0
        config.data.pre_p = 80
        config.data.min_length = 96
        config.data.max_length = 512
        config.data.bucket_lengths = (128, 256, 512)
        # curriculum: the first 6.4 s, then 12.8 s, then whole records (without it this run stayed
        # at the all-zero output; with it the error leaves that plateau on the short crops first)
        config.data.length_schedule = ((0, 128), (250, 256), (500, 512))
        config.optim.stages = ((30, 1e-3, 0.98), (6, 3e-4, 0.9))
        config.train.log_every_steps = 100
        config.train.figure_every_steps = 1000
        config.train.eval_every_epochs = 12.0
        config.train.checkpoint_every_epochs = 12.0
        config.eval.batch_size = 32
    if "toy" in variants:
        config.data.source = "toy"
        config.data.min_length = 16
        config.data.max_length = 64
        config.data.bucket_lengths = (32, 64)
        config.model.channels = (4, 8, 8)
        config.model.hidden = 8
        config.optim.stages = ((2, 3e-3, 1.0),)
    return config
