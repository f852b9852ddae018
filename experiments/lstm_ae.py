"""LSTM autoencoder of whole variable-length three-component records (synthetic `local` data).

Quick run (about 4 minutes on a 2-core CPU: 2 to generate 100 events in <workdir>/data, 2 to train
2700 steps on 5 Hz records of at most 64 samples), its evaluation (reconstruction error per length
bucket, linear probes, embedding map) and the embeddings of every record of a dataset:

    python -m seisjax train --config experiments/lstm_ae.py:quick --workdir runs/lstm_ae_quick
    python -m seisjax eval --workdir runs/lstm_ae_quick
    python -m seisjax embed --workdir runs/lstm_ae_quick --data runs/lstm_ae_quick/data \
        --out runs/lstm_ae_quick/embeddings.h5

Variants (after the colon, comma-separated): size ``full`` (default: 1000 events, 40 Hz, records up
to 2048 samples; a GPU job), ``quick``, ``medium`` (20 Hz, up to 512 samples, 10 minutes) or ``toy``
(small in-memory records, for tests); mode ``bottleneck`` (default: the decoder reads only the
embedding) or ``reference`` (signal_autoencoder's layout), e.g. ``:quick,reference``.
PhaseNet-style single-channel records: ``--config.data.missing_components=zeros`` or
``--config.data.components=Z``.

Headline: the quick bottleneck embeddings tell local from teleseismic records almost perfectly, but
not the magnitudes of local records; the reconstruction passes through the embedding at short
lengths, and at realistic lengths only with a reversed encoder and a length curriculum. Results,
all commands and how the model differs from signal_autoencoder: seisjax/lstm_ae/README.md.
"""

import ml_collections

from seisjax.config import base_config, parse_variant
from seisjax.data.synthetic import scenario_config


def get_config(arg=None):
    variant = parse_variant(arg, size=("full", "quick", "medium", "toy"), mode=("bottleneck", "reference"))
    config = base_config()
    config.task = ml_collections.ConfigDict(dict(name="lstm_ae"))
    config.model = ml_collections.ConfigDict(dict(
        name="lstm_ae", channels=(64, 128, 256), hidden=256, lstm_layers=1, dropout=0.1, mode=variant.mode,
        decoder_blocks="relu", embed_cell=True, lstm_impl="scan", decoder_time=True, time_scale=128.0,
        pools=(4, 4, 2), reverse_encoder=True))
    config.data = ml_collections.ConfigDict(dict(
        source="synthetic", path="", synthetic=scenario_config("local", events=1000),
        components="ZNE", missing_components="error",
        sampling_rate=40.0, pre_p=80, end="s_coda", s_coda_factor=1.5,
        # a 256 bucket for the curriculum's first crops, which padded to 512 trained at half the speed
        min_length=64, max_length=2048, bucket_lengths=(256, 512, 1024, 1536, 2048), bucket_chunk=16,
        difference=False, record_scale="peak",
        # the medium recipe scaled to 40 Hz: a curriculum from 6.4 s crops to whole records
        length_schedule=((0, 256), (500, 512), (1000, 1024), (1500, 2048)),
        train_split="train", eval_split="dev", toy_examples=96, toy_seed=0,
        # "auto": a split stays in memory when rows x max_length x channels x 4 bytes is below
        # memory_limit_mb MiB, else each batch reads and prepares its own rows; true / false force it
        records_in_memory="auto", memory_limit_mb=2048.0,
        prefetch=2))  # training batches made ahead in a background thread
    config.optim.update(stages=((30, 1e-3, 0.98), (20, 2e-4, 0.98)), clip_norm=1.0)
    config.train.update(eval_every_epochs=5.0, checkpoint_every_epochs=5.0)
    config.eval.magnitude_bins = (2.0, 3.0, 4.0, 5.0)

    if variant.size in ("quick", "toy"):
        # Short, coarsely sampled records (5 Hz, 64 samples from 4 s before P), where the bottleneck
        # decoder can carry every oscillation's phase through the embedding.
        config.batch_size = 16
        config.model.update(channels=(16, 32, 32), hidden=64, time_scale=16.0, pools=(2, 2, 2),
                            reverse_encoder=False,
                            dropout=0.0)  # decoder dropout pushed the bottleneck back to the all-zero output
        config.data.synthetic = scenario_config("local", events=100)
        config.data.update(sampling_rate=5.0, pre_p=20, min_length=24, max_length=64, bucket_lengths=(32, 64),
                           length_schedule=())
        config.optim.stages = ((24, 2e-3, 0.95), (6, 5e-4, 0.9))
        config.train.update(log_every_steps=50, figure_every_steps=1000, eval_every_epochs=10.0,
                            checkpoint_every_epochs=10.0)
        config.eval.batch_size = 32
    elif variant.size == "medium":
        # 20 Hz, up to 512 samples: the encoder reads each record backwards and pools 4x, 4x, 2x (16
        # recurrent steps of 1.6 s), and training crops grow 128 -> 256 -> 512 samples; without
        # these the bottleneck stayed at the all-zero output (the page has the study).
        config.batch_size = 16
        config.model.update(channels=(16, 32, 32), dropout=0.0, time_scale=32.0)
        config.data.synthetic = scenario_config("local", events=100)
        config.data.update(sampling_rate=20.0, min_length=96, max_length=512, bucket_lengths=(128, 256, 512),
                           length_schedule=((0, 128), (250, 256), (500, 512)))
        config.optim.stages = ((30, 1e-3, 0.98), (6, 3e-4, 0.9))
        config.train.update(log_every_steps=100, figure_every_steps=1000, eval_every_epochs=12.0,
                            checkpoint_every_epochs=12.0)
        config.eval.batch_size = 32
    if variant.size == "toy":
        config.data.update(source="toy", min_length=16, max_length=64, bucket_lengths=(32, 64))
        config.model.update(channels=(4, 8, 8), hidden=8)
        config.optim.stages = ((2, 3e-3, 1.0),)

    if variant.mode == "reference":
        # signal_autoencoder's layout: forward encoder, 2x pooling at each level, the encoder's conv
        # block in the decoder, dropout 0.5, differenced input, the embedding h alone
        config.model.update(pools=(2, 2, 2), reverse_encoder=False, decoder_blocks="encoder", embed_cell=False,
                            dropout=0.5)
        config.data.update(length_schedule=(), difference=True)
    return config
