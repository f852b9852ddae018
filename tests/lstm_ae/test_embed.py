"""The embed command on a small dataset: every row, in order, with the model's embedding or a reason."""

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

from seisjax.cli import main
from seisjax.data.dataset import Dataset
from seisjax.errors import InputError
from seisjax.families import restore_trained, train_and_evaluate
from seisjax.lstm_ae.embeddings import embed_dataset
from tests.lstm_ae.conftest import toy_config, write_records_dataset

FAST_COMPILE = True


def test_embed_command_writes_every_row_and_the_models_embedding(tmp_path, capsys):
    write_records_dataset(tmp_path / "ds")
    config = toy_config(source="dataset", path=str(tmp_path / "ds"), sampling_rate=20.0, pre_p=10,
                              min_length=16, max_length=64, bucket_lengths=(64,), missing_components="zeros")
    config.batch_size = 4
    config.eval.batch_size = 4
    config.optim.stages = ((1, 1e-3, 1.0),)
    config.train.eval_every_epochs = None
    train_and_evaluate(config, tmp_path / "run")
    out = tmp_path / "emb.h5"
    assert main(["embed", "--workdir", str(tmp_path / "run"), "--data", str(tmp_path / "ds"), "--out", str(out)]) == 0
    assert "not embedded: 2" in capsys.readouterr().out
    with h5py.File(out) as f:
        names = f["trace_name"][()].astype(str)
        z = f["embedding"][()]
        problem = f["problem"][()].astype(str)
        missing = f["missing_components"][()].astype(str)
        assert f.attrs["mode"] == "bottleneck"
    with Dataset(tmp_path / "ds") as ds:
        assert names.tolist() == ds.metadata["trace_name"].tolist()  # every row, in order
    assert problem[3] == "non-finite samples" and problem[4].startswith("too short")
    assert np.isnan(z[[3, 4]]).all() and np.isfinite(np.delete(z, [3, 4], axis=0)).all()
    assert missing[5] == "NE" and missing[0] == ""
    # the stored embedding is the model's embedding of that record, computed here directly
    _, task, state, _ = restore_trained(tmp_path / "run")
    with Dataset(tmp_path / "ds") as ds:
        recs = task.data.prepare(ds, progress=False)
    norm = task.data.normalisation()
    for row in (0, 1, 5):
        record = (recs.records[row] - norm["mean"]) / norm["std"]
        record[:, [task.data.components.index(c) for c in recs.missing[row]]] = 0.0
        steps = -(-len(record) // 8) * 8  # padded only to a multiple of 8, alone in its batch
        x = np.zeros((1, steps, 3), np.float32)
        x[0, :len(record)] = record
        direct = task.model.apply({"params": state.params, **state.model_state}, jnp.asarray(x),
                                  jnp.array([len(record)]), method="encode")
        np.testing.assert_allclose(z[row], np.asarray(direct[0]), atol=1e-5)
    task.close()


def test_embed_refuses_other_runs(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text('{"task": {"name": "dec"}}')
    with pytest.raises(InputError, match="lstm_ae"):
        embed_dataset(tmp_path / "run", tmp_path, tmp_path / "x.h5")
