"""DEC's scripts: the flipped-pair real-data dataset, the table that gathers DEC and IDEC runs, the
supervised reference and the composition of a run's clusters."""

import json

import numpy as np
import pandas as pd
import pytest

from seisjax.cli import main as cli
from seisjax.data.dataset import Dataset
from seisjax.data.synthetic import scenario_config, synthesize
from seisjax.errors import InputError


def test_polarity_flips_writes_exact_opposite_pairs(tmp_path, write_pulses, load_script):
    script = load_script("dec_polarity_flips")
    signs = write_pulses(tmp_path / "src", rate=50.0, n=6, length=600, p=300, bad_rows=(2,))
    with Dataset(tmp_path / "src") as src:
        meta = src.metadata
    report = script.make_polarity_flips([tmp_path / "src"], tmp_path / "out", rate=100.0, pre_s=2.0, post_s=2.0,
                                        band=None, progress=False)
    assert report == {"pairs": 5, "rejected": 1}
    rejected = (tmp_path / "out" / "rejected.csv").read_text()
    assert "non-finite samples" in rejected and meta["trace_name"][2] in rejected
    with Dataset(tmp_path / "out") as out:
        m = out.metadata
        x = out.get_waveforms(list(range(len(m))))[:, 0]
    assert len(m) == 10 and x.shape == (10, 400) and out.component_order == "Z"
    assert (m["trace_p_arrival_sample"] == 200).all() and (m["trace_sampling_rate_hz"] == 100.0).all()
    np.testing.assert_array_equal(m["trace_pair"].to_numpy(), np.repeat(np.arange(5), 2))
    np.testing.assert_array_equal(m["trace_flipped"].to_numpy(), np.tile([0, 1], 5))
    np.testing.assert_array_equal(x[1::2], -x[0::2])  # bit for bit
    kept = np.delete(signs, 2)
    np.testing.assert_array_equal(m["trace_polarity"].to_numpy()[0::2], kept)  # clean pulses: estimate right
    np.testing.assert_array_equal(m["trace_polarity"].to_numpy()[1::2], -kept)
    # 50 -> 100 Hz: the onset stays at the window's P sample (zero before, the pulse's sign after)
    assert np.abs(x[0::2, :195]).max() < 0.05
    assert np.abs(x[0::2, 200:230]).max(axis=1).min() > 0.5
    np.testing.assert_array_equal(np.sign(x[0::2, 205]), kept)
    # onset SNR by hand: |mean of the 5 samples after P - mean of the second before| / its std
    before = x[:, 100:200]
    onset = np.abs(x[:, 201:206].mean(1) - before.mean(1)) / before.std(1)
    np.testing.assert_allclose(m["trace_onset_snr"].to_numpy(), onset, rtol=1e-3)
    assert (m["trace_onset_snr"] > 3).all()  # clean pulses: every label clear


def _fake_run(root, name, methods, fingerprint="abc"):
    step = root / name / "eval" / "step_100"
    step.mkdir(parents=True)
    (step / "clustering.json").write_text(json.dumps({"examples": 10, "methods": methods}))
    (step / "metrics.json").write_text(json.dumps({"data": {"fingerprint": fingerprint}}))
    return root / name


def test_dec_table_gathers_dec_and_idec_runs(tmp_path, load_script):
    script = load_script("dec_table")
    base = {"kmeans_raw": {"accuracy": 0.6}, "kmeans_pretrained": {"accuracy": 0.7}}
    dec = _fake_run(tmp_path, "dec", {**base, "dec": {"accuracy": 0.8, "per_snr_bin": {"0-1": {"accuracy": 0.5}}}})
    idec = _fake_run(tmp_path, "idec", {**base, "idec": {"accuracy": 0.9}})
    table = script.gather([dec, idec])
    assert {k: v["accuracy"] for k, v in table["methods"].items()} == {
        "kmeans_raw": 0.6, "kmeans_pretrained": 0.7, "dec": 0.8, "idec": 0.9}
    lines = script.markdown(table).splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["kmeans_raw", "kmeans_pretrained", "dec", "idec"]
    assert "| 0.800 |" in lines[4] and "0.500" in lines[4]
    other = _fake_run(tmp_path, "other", {**base, "idec": {"accuracy": 0.9}}, fingerprint="xyz")
    with pytest.raises(InputError, match="other data"):
        script.gather([dec, other])
    changed = _fake_run(tmp_path, "changed", {"kmeans_raw": {"accuracy": 0.65}, "idec": {"accuracy": 0.9}})
    with pytest.raises(InputError, match="not the same baseline"):
        script.gather([dec, changed])


def test_supervised_reference_scores_every_record_once_by_a_model_blind_to_its_event(tmp_path, load_script):
    synthesize(scenario_config("local", {"catalog.teleseismic_fraction": 0.5, "taup.local_depth_step_km": 6.0,
                                         "taup.local_distance_step_deg": 0.3}, events=16, seed=2),
               tmp_path / "data", figure=False, progress=False)
    script = load_script("dec_supervised_reference")
    args = ["--config", "experiments/dec_distance.py:quick,pretrain", "--data", str(tmp_path / "data"),
            "--steps", "300", "--methods", "linear", "--out", str(tmp_path / "ref.json")]
    results = script.main(args)
    linear = results["methods"]["linear"]
    assert results["events"] == 16 and linear["all"]["examples"] == results["records"]
    assert sum(v["examples"] for k, v in linear.items() if k != "all") == results["records"]
    # above log10 SNR 2 the 1-20 Hz spectrogram tells local from teleseismic almost surely
    loud = [v for k, v in linear.items() if k in ("2-3", "3-4", ">4")]
    assert sum(v["accuracy"] * v["examples"] for v in loud) / sum(v["examples"] for v in loud) > 0.95
    assert json.loads((tmp_path / "ref.json").read_text())["methods"]["linear"] == linear
    with pytest.raises(InputError, match="unknown"):
        script.main(args[:-4] + ["--methods", "forest"])
    with pytest.raises(InputError, match="labels"):
        script.main(args[:6] + ["--config.data.label_column=nothing"])

    # a probe reads a trained run's code of the same records, and refuses a run of other records
    assert cli(["train", "--config", "experiments/dec_distance.py:quick,pretrain", "--workdir", str(tmp_path / "pre"),
                "--config.data.source=dataset", "--config.data.path", str(tmp_path / "data"),
                "--config.train.num_steps", "8"]) in (0, None)
    probed = script.main(args[:6] + ["--steps", "100", "--methods", "", "--probe", str(tmp_path / "pre")])
    assert list(probed["methods"]) == ["probe pre"]
    assert probed["methods"]["probe pre"]["all"]["examples"] == results["records"]
    with pytest.raises(InputError, match="not the records"):
        script.main(args[:6] + ["--methods", "", "--probe", str(tmp_path / "pre"),
                                "--config.data.query=path_distance_class == 'local'"])


def test_composition_splits_each_class_by_where_its_s_pick_falls(load_script):
    module = load_script("dec_composition")
    # P at sample 500 (100 Hz); S 5 s, 8.39 s, 8.41 s and 12 s later, or no S pick
    metadata = pd.DataFrame({
        "trace_name": [f"t{i}" for i in range(6)],
        "path_distance_class": ["local"] * 4 + ["teleseismic"] * 2,
        "trace_p_arrival_sample": [500.0] * 6,
        "trace_s_arrival_sample": [1000.0, 1339.0, 1341.0, 1700.0, np.nan, 400.0],
        "trace_sampling_rate_hz": [100.0] * 6,
    })
    groups = module.s_groups(metadata, "path_distance_class", 8.4)
    assert groups.tolist() == ["local, S in window", "local, S in window", "local, S after window",
                               "local, S after window", "teleseismic, no S pick", "teleseismic, no S pick"]
    clusters = pd.DataFrame({"trace_name": ["t0", "t1", "t2", "t3", "t4", "t5"], "cluster": [0, 0, 1, 1, 1, -1],
                             "log10_snr": [0.5, 2.5, 2.5, 4.5, np.nan, 0.5]})
    counts = module.composition(clusters, metadata, label_column="path_distance_class", window_after_p_s=8.4)
    as_dict = {(r.group, r.snr_bin, r.cluster): r.traces for r in counts.itertuples()}
    assert as_dict == {("local, S in window", "0-1", 0): 1, ("local, S in window", "2-3", 0): 1,
                       ("local, S after window", "2-3", 1): 1, ("local, S after window", ">4", 1): 1,
                       ("teleseismic, no S pick", "unknown", 1): 1, ("teleseismic, no S pick", "0-1", -1): 1}
    table = module.markdown(counts)
    assert "| local, S in window | 0 / 2 / 0 |" in table  # clusters -1 / 0 / 1
    with pytest.raises(InputError, match="not in the dataset"):
        module.composition(pd.concat([clusters, clusters.assign(trace_name="elsewhere").iloc[:1]]), metadata,
                           label_column="path_distance_class", window_after_p_s=8.4)
