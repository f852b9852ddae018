"""`python -m seisjax cluster`: a tiny pulses pretrain -> DEC run clusters a new dataset of clean
up/down pulses (known polarity) by polarity; bad rows are kept and named; the windows are the
task's own evaluation windows; a run that is not DEC at stage 'dec' is refused."""

import h5py
import numpy as np
import pandas as pd
import pytest

from seisjax.cli import main
from seisjax.config import load_config
from seisjax.data.dataset import Dataset, DatasetWriter
from seisjax.dec.assign import cluster_dataset
from seisjax.dec.data import pulse_waveforms
from seisjax.errors import InputError
from seisjax.families import restore_trained, train_and_evaluate
from seisjax.metrics import clustering as cl

FAST_COMPILE = True
CONFIG = "experiments/dec_polarity.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    pre, dec = root / "pre", root / "dec"
    train_and_evaluate(load_config(f"{CONFIG}:pulses,pretrain"), pre)
    train_and_evaluate(load_config(f"{CONFIG}:pulses", {"task.pretrained": str(pre)}), dec)
    return pre, dec


def _pulse_dataset(path, arrays, *, bad_rows=False):
    """The pulses as a one-component dataset; with bad_rows, one trace with NaN inside its window
    and one without a P pick are appended."""
    with DatasetWriter(path, component_order="Z", sampling_rate=100.0) as writer:
        for w, p, pol, snr in zip(arrays["waveforms"], arrays["p"], arrays["polarity"], arrays["log10_snr"]):
            writer.add(w, {"trace_p_arrival_sample": int(p), "trace_polarity": int(pol),
                           "trace_snr_db": 20 * float(snr), "station_code": "PUL"})
        if bad_rows:
            broken = arrays["waveforms"][0].copy()
            broken[0, int(arrays["p"][0]) + 3] = np.nan
            writer.add(broken, {"trace_p_arrival_sample": int(arrays["p"][0]), "trace_polarity": 1,
                                "station_code": "NAN"})
            writer.add(arrays["waveforms"][1], {"trace_polarity": 1, "station_code": "NOP"})
    return path


def test_cluster_command_recovers_polarity_and_keeps_bad_rows(runs, tmp_path, capsys):
    _, dec = runs
    arrays = pulse_waveforms(300, length=128, seed=7, noise=0.02)  # new pulses, not the training ones
    data = _pulse_dataset(tmp_path / "new", arrays, bad_rows=True)
    out = tmp_path / "clusters.csv"
    assert main(["cluster", "--workdir", str(dec), "--data", str(data), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    with Dataset(data) as ds:
        assert len(table) == len(ds) == 302
        assert table["trace_name"].tolist() == ds.metadata["trace_name"].tolist()
    assert table["row"].tolist() == list(range(302))
    good, bad = table.iloc[:300], table.iloc[300:]
    q = good[["q_0", "q_1"]].to_numpy()
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(good["cluster"], q.argmax(1))
    assert {"embedding_0", "embedding_1"} <= set(table.columns)
    np.testing.assert_array_equal(good["trace_polarity"], arrays["polarity"])
    assert cl.hungarian_accuracy(arrays["polarity"], good["cluster"].to_numpy()) > 0.9
    # bad rows: kept, unclustered, with the reason, and printed by name
    assert (bad["cluster"] == -1).all() and bad[["q_0", "q_1"]].isna().all(axis=None)
    assert bad["problem"].tolist() == ["non-finite samples", "no trace_p_arrival_sample"]
    assert good["problem"].isna().all()  # empty in the CSV
    printed = capsys.readouterr().out
    for name in bad["trace_name"]:
        assert name in printed
    counts = np.bincount(good["cluster"], minlength=2)
    for j in range(2):
        assert f"cluster {j}: {counts[j]} traces" in printed

    # --refine gmm_full: the same table plus the good rows' clusters re-drawn by the mixture
    refined_out = tmp_path / "refined.csv"
    assert main(["cluster", "--workdir", str(dec), "--data", str(data), "--out", str(refined_out),
                 "--refine", "gmm_full"]) == 0
    refined = pd.read_csv(refined_out)
    pd.testing.assert_frame_equal(refined.drop(columns="cluster_gmm_full"), table)
    embedding = good[["embedding_0", "embedding_1"]].to_numpy()  # this run clusters the code itself
    expected = cl.gmm_full(embedding, good["cluster"].to_numpy())["labels"]
    np.testing.assert_array_equal(refined["cluster_gmm_full"].iloc[:300], expected)
    assert (refined["cluster_gmm_full"].iloc[300:] == -1).all()
    assert cl.hungarian_accuracy(arrays["polarity"], expected) > 0.9


def test_clusters_are_named_by_the_runs_evaluation_once_it_exists(runs, tmp_path, capsys):
    """Before ``eval`` scored the checkpoint, the output says how to name the clusters; after it, each
    trace carries the class its cluster matched there (here up/down polarity, right for > 90% of new
    pulses), and the clustered component's log10 SNR comes along."""
    _, dec = runs
    arrays = pulse_waveforms(200, length=128, seed=11, noise=0.02)
    data = _pulse_dataset(tmp_path / "new", arrays)
    step = restore_trained(dec)[3]
    evaluation = dec / "eval" / f"step_{step}" / "clustering.json"
    if evaluation.exists():   # another test of this module may have evaluated the run already
        evaluation.unlink()
    out = tmp_path / "unnamed.csv"
    assert main(["cluster", "--workdir", str(dec), "--data", str(data), "--out", str(out)]) == 0
    assert "cluster_class" not in pd.read_csv(out).columns
    assert f"python -m seisjax eval --workdir {dec} --step {step}" in capsys.readouterr().out
    assert main(["eval", "--workdir", str(dec)]) == 0
    out = tmp_path / "named.csv"
    assert main(["cluster", "--workdir", str(dec), "--data", str(data), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    truth = np.where(arrays["polarity"] > 0, "up", "down")
    assert (table["cluster_class"] == truth).mean() > 0.9
    printed = capsys.readouterr().out
    for j in range(2):
        name = table.loc[table["cluster"] == j, "cluster_class"].iloc[0]
        assert f"({name} in the run's evaluation)" in printed
    np.testing.assert_allclose(table["log10_snr"], arrays["log10_snr"], rtol=1e-5)


def test_windows_and_assignment_are_the_tasks_own(runs, tmp_path):
    """The training pulses written as a dataset: the command's windows equal the task's evaluation
    windows and its HDF5 output equals the task's own assignment of them."""
    _, dec = runs
    config = load_config(f"{CONFIG}:pulses")
    d = config.data
    arrays = pulse_waveforms(int(d.toy_examples), length=int(d.toy_length), seed=int(d.toy_seed),
                             noise=float(d.toy_noise), sampling_rate=float(d.sampling_rate))
    data = _pulse_dataset(tmp_path / "same", arrays)
    out = tmp_path / "clusters.h5"
    assert main(["cluster", "--workdir", str(dec), "--data", str(data), "--out", str(out)]) == 0
    _, task, state, step = restore_trained(dec)
    try:
        with Dataset(data) as ds:
            windows = task.data.dataset_windows(ds)
        np.testing.assert_allclose(windows["x"], task.data.eval["x"], atol=1e-6)
        assert (windows["problem"] == "").all()
        clusters, q, z = task.assign(state.params, task.data.eval["x"])
    finally:
        task.close()
    with h5py.File(out) as f:
        assert f.attrs["checkpoint_step"] == step
        np.testing.assert_array_equal(f["cluster"][()], clusters)
        np.testing.assert_allclose(f["q"][()], q, atol=1e-5)
        np.testing.assert_allclose(f["embedding"][()], z, atol=1e-4)
        np.testing.assert_array_equal(f["trace_polarity"][()], arrays["polarity"])
        assert len(f["trace_name"]) == int(d.toy_examples)


def test_pretrain_run_is_refused(runs, tmp_path, capsys):
    pre, _ = runs
    data = _pulse_dataset(tmp_path / "d", pulse_waveforms(8, seed=1))
    with pytest.raises(InputError, match="stage 'dec'"):
        cluster_dataset(pre, data, tmp_path / "x.csv")
    assert main(["cluster", "--workdir", str(pre), "--data", str(data), "--out", str(tmp_path / "x.csv")]) == 2
    assert "'pretrain'" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_unknown_output_format_is_refused(runs, tmp_path, capsys):
    _, dec = runs
    data = _pulse_dataset(tmp_path / "d", pulse_waveforms(8, seed=1))
    assert main(["cluster", "--workdir", str(dec), "--data", str(data), "--out", str(tmp_path / "x.txt")]) == 2
    assert ".csv, .h5 or .hdf5" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()
