"""seisjax.symae.stf_eval: SymAE and baseline STFs scored against a known truth.

The data are built by hand so that every quantity is known: two events with triangle STFs (10 Hz
truth, interval means), groups of traces at 1 sample/s that are the STF delayed by known timing
errors, and SymAE outputs given in the extraction-file layout (or as an Extraction written to and
read back from HDF5)."""

import json

import numpy as np
import pandas as pd
import pytest

from seisjax.errors import InputError
from seisjax.ops.fourier import fourier_shift
from seisjax.symae.data import arrays_from_prepared, padded_groups
from seisjax.symae.extraction import Extraction, ExtractionConfig, aligned_stack, write_extraction_hdf5
from seisjax.symae.stf_eval import (_clustered_standard_error, evaluate_stfs, symae_per_group,
                                    truth_for_groups, write_scores)
from tests.symae.conftest import load_script

RATE, TRUTH_RATE, NT, M = 1.0, 10.0, 96, 8
TIME_START = -30.0          # window sample 0 is 30 s before the pick
DURATIONS = {"ev0": 8.0, "ev1": 14.0}


def triangle(t, duration):
    return np.clip(1.0 - np.abs(2.0 * np.asarray(t) / duration - 1.0), 0.0, None)


def make_case(seed=0, noise=0.0):
    """Prepared groups (one pixel per event), truth, and SymAE outputs that are exact."""
    rng = np.random.default_rng(seed)
    t = TIME_START + np.arange(NT) / RATE
    rows, names, x, errors, snrs, starts = [], [], [], [], [], []
    for e, (source, duration) in enumerate(DURATIONS.items()):
        starts.append(len(x))
        error = rng.normal(0.0, 1.0, M)
        for i in range(M):
            trace = triangle(t - error[i], duration) + noise * rng.standard_normal(NT)
            x.append(trace)
            rows.append(100 * e + i)
            names.append(f"{source}_tr{i}")
        errors += list(error)
        snrs += list(np.exp(rng.uniform(np.log(0.5), np.log(50), M)))
    prepared = {
        "trace_x": np.asarray(x, np.float32), "trace_row": np.asarray(rows), "trace_name": np.asarray(names),
        "trace_station": np.asarray([n.split("_")[1] for n in names]),
        "group_n_train": np.array([M - 1, M - 1]), "group_n_test": np.array([1, 1]),
        "group_start": np.asarray(starts), "group_source_id": np.array(list(DURATIONS)),
        "group_pixel": np.array([7, 11]), "sampling_rate": RATE, "time_start": TIME_START,
    }
    edges = np.arange(int(20 * TRUTH_RATE) + 1) / TRUTH_RATE
    fine = np.linspace(0, 1, 11)
    stf = np.array([[triangle(edges[k] + fine / TRUTH_RATE, d).mean() for k in range(len(edges) - 1)]
                    for d in DURATIONS.values()])
    truth = {"attrs": {"stf_sampling_rate_hz": TRUTH_RATE},
             "events": pd.DataFrame({"source_id": list(DURATIONS), "subevent_onset_s_0": [0.0, 0.0],
                                     "subevent_duration_s_0": list(DURATIONS.values())}),
             "traces": pd.DataFrame({"trace_name": names, "time_error_s": errors, "snr": snrs}),
             "stf": stf}
    return prepared, truth, t


def extraction_file_dict(prepared, stfs, shifts):
    """SymAE outputs in the layout of read_extraction_hdf5 (shifts in seconds, initial in samples)."""
    events = {}
    for g, source in enumerate(prepared["group_source_id"]):
        rows = prepared["trace_row"][prepared["group_start"][g]:prepared["group_start"][g] + M]
        events[str(source)] = {"pixels": {int(prepared["group_pixel"][g]): {
            "stf": stfs[g], "stf_signed": stfs[g], "trace_ids": rows, "shifts": shifts[g],
            "shifts_initial": np.zeros(M)}}}
    return {"attrs": {"sampling_rate": RATE, "time_start": TIME_START, "nt": NT}, "events": events}


@pytest.fixture(scope="module")
def case():
    prepared, truth, t = make_case()
    true_error = truth["traces"]["time_error_s"].to_numpy().reshape(2, M)
    exact = np.stack([triangle(t, d) for d in DURATIONS.values()])
    file = extraction_file_dict(prepared, exact, true_error + 0.7)   # a constant offset is not an error
    return prepared, truth, t, exact, file


def by_method(scores, method):
    return [r for r in scores["groups"] if r["method"] == method]


def test_exact_estimates_score_perfectly_and_baselines_recover_delays(case):
    prepared, truth, _, _, file = case
    scores = evaluate_stfs(file, prepared, truth)
    for record in by_method(scores, "symae_envelope"):
        assert record["correlation"] > 0.995
        assert abs(record["lag_s"]) < 0.15                     # the estimate's 0 is the truth's onset
        assert record["abs_duration_error_s"] < 0.3
        assert record["subevent_fraction_found"] == 1.0 and record["subevent_mean_abs_dt_s"] < 0.3
        assert record["shift_rms_s"] < 1e-9                    # exact shifts up to a constant
    for record in by_method(scores, "symae_network"):          # zero shifts: rms = std of the true errors
        errors = truth["traces"]["time_error_s"].to_numpy().reshape(2, M)[record["group"]]
        assert record["shift_rms_s"] == pytest.approx(np.std(errors), rel=1e-9)
    for method in ("mccc_linear", "iccs_linear"):
        for record in by_method(scores, method):               # noise-free traces: delays within 0.15 s
            assert record["shift_rms_s"] < 0.15
            assert record["correlation"] > 0.8                 # the envelope of a one-sided pulse is wider
        for record in by_method(scores, f"{method}_signed"):   # the signed stack is the pulse itself
            assert record["correlation"] > 0.99
    # group SNR = median of the traces' true SNRs
    snr = truth["traces"]["snr"].to_numpy().reshape(2, M)
    assert [r["snr"] for r in by_method(scores, "symae_envelope")] == pytest.approx(np.median(snr, axis=1))
    # strict JSON and the tables name every method
    json.dumps(scores, allow_nan=False)
    for method in ("symae_envelope", "symae_signed", "mccc_pws", "iccs_pws_signed", "symae_network"):
        assert method in scores["summary_md"] and method in scores["table_md"]


def test_delay_is_measured_on_the_truths_clock(case):
    prepared, truth, t, _, file = case
    late = np.stack([triangle(t - 3.0, d) for d in DURATIONS.values()])
    file = extraction_file_dict(prepared, late, np.zeros((2, M)))
    scores = evaluate_stfs(file, prepared, truth, methods=())
    for record in by_method(scores, "symae_envelope"):
        assert record["lag_s"] == pytest.approx(3.0, abs=0.15)
        assert record["correlation"] > 0.995
        assert record["subevent_mean_abs_dt_s"] < 0.3          # peaks dated back with the lag


def test_wrong_estimate_scores_worse_and_the_goal_says_so(case, tmp_path):
    prepared, truth, t, _, _ = case
    wrong = np.stack([triangle(t, 3 * d) for d in DURATIONS.values()])   # three times too long
    scores = evaluate_stfs(extraction_file_dict(prepared, wrong, np.zeros((2, M))), prepared, truth,
                           methods=("mccc_linear",))
    for record in by_method(scores, "symae_envelope"):
        assert record["correlation"] < 0.9
        assert record["duration_error_s"] > 5.0
    goal = [v for v in scores["goal"].values() if v["groups"]]
    assert goal and all(v["symae_minus_best"] < 0 and v["best_baseline"] == "mccc_linear" for v in goal)
    for part in goal:   # each SymAE estimate against the baseline of its own kind, paired per group
        rows = {row["symae"]: row for row in part["comparisons"]}
        assert rows["symae_envelope"]["baseline"] == "mccc_linear"
        assert rows["symae_signed"]["baseline"] == "mccc_linear_signed"
        envelope = rows["symae_envelope"]
        assert envelope["mean_difference"] == pytest.approx(envelope["symae_correlation"] - envelope["baseline_correlation"])
        assert envelope["mean_difference"] < 0 and envelope["symae_wins"] == 0.0
    goal_section = write_scores(scores, tmp_path, figure=False)["markdown"].read_text().split("## Goal")[1]
    assert "| symae_signed " in goal_section and "| mccc_linear_signed " in goal_section


def test_noise_lowers_baseline_scores(case):
    prepared, truth, _, _, file = case
    noisy, _, _ = make_case(noise=1.0)
    clean = evaluate_stfs(file, prepared, truth, methods=("mccc_linear",))
    dirty = evaluate_stfs(file, noisy, truth, methods=("mccc_linear",))
    mean = lambda s: np.mean([r["correlation"] for r in by_method(s, "mccc_linear")])  # noqa: E731
    assert mean(dirty) < mean(clean) - 0.02


def test_extraction_object_and_its_hdf5_file_score_identically(case, tmp_path):
    prepared, truth, _, exact, _ = case
    full = {**prepared, **padded_groups(prepared, "all"), "pixels": prepared["group_pixel"],
            "source_ids": prepared["group_source_id"], "group_event": np.arange(2)}
    groups = arrays_from_prepared(full)
    error = truth["traces"]["time_error_s"].to_numpy().reshape(2, M)
    z = lambda *shape: np.zeros(shape)  # noqa: E731
    result = Extraction(stf=exact, stf_signed=exact, virtual=z(2, 1, NT), aligned=groups.traces, shifts=error,
                        shifts_initial=error * 0.5, reconstruction=groups.traces, scores=z(2, M),
                        coherent_mean=z(2, 3), target_group=np.arange(2), best_traces=np.zeros((2, 1, 2), int),
                        best_mask=np.ones((2, 1), bool), nuisance_initial=z(2, 1, 3), nuisance=z(2, 1, 3),
                        loss_history=z(2, 2), kl_history=z(2, 2), l1_history=z(2, 2),
                        config=ExtractionConfig(n_best=1, sampling_rate=RATE), stf_stack=exact * 0.5,
                        stf_stack_signed=-exact)
    path = write_extraction_hdf5(tmp_path / "stf.h5", groups, result)
    from_object = symae_per_group(result, prepared)
    from_file = symae_per_group(path, prepared)
    np.testing.assert_allclose(from_file["stf_stack_signed"], -exact)
    for key in ("stf", "stf_signed", "stf_stack", "stf_stack_signed", "shifts_s", "shifts_initial_s"):
        np.testing.assert_allclose(from_file[key], from_object[key], rtol=1e-6, equal_nan=True)
    a = evaluate_stfs(result, prepared, truth, methods=())
    b = evaluate_stfs(path, prepared, truth, methods=())
    assert a["groups"] == b["groups"]
    paths = write_scores(a, tmp_path / "scores")
    assert json.loads(paths["json"].read_text())["groups"] == a["groups"]
    assert "symae_envelope" in paths["markdown"].read_text() and paths["figure"].stat().st_size > 0


def test_bad_input_is_named(case):
    prepared, truth, _, _, file = case
    other = {**truth, "events": truth["events"].assign(source_id=["ev0", "evX"])}
    with pytest.raises(InputError, match="ev1"):
        truth_for_groups(other, prepared)
    renamed = {**truth, "traces": truth["traces"].assign(trace_name=[f"x{i}" for i in range(2 * M)])}
    with pytest.raises(InputError, match="no truth row"):
        truth_for_groups(renamed, prepared)
    moved = {**file, "attrs": {**file["attrs"], "sampling_rate": 5.0}}
    with pytest.raises(InputError, match="sampling_rate"):
        evaluate_stfs(moved, prepared, truth, methods=())
    missing = {**file, "events": {"ev0": file["events"]["ev0"]}}
    with pytest.raises(InputError, match="ev1/11"):
        evaluate_stfs(missing, prepared, truth, methods=())
    with pytest.raises(InputError, match="unknown baseline"):
        evaluate_stfs(file, prepared, truth, methods=("stack",))


def test_data_stacked_on_the_right_shifts_recover_the_stf():
    """symae_stack: the phase-weighted stack of traces aligned by SymAE's shifts. Noisy traces aligned
    by their true delays stack to the STF; the same traces aligned by wrong delays do not, and the
    evaluation scores the stack it is given (older files without one give NaN, not an error)."""
    prepared, truth, t = make_case(seed=3, noise=0.3)
    traces = prepared["trace_x"].reshape(2, M, NT).astype(np.float64)
    delays = truth["traces"]["time_error_s"].to_numpy().reshape(2, M) * RATE
    mask = np.ones((2, M), bool)
    wrong = delays + np.random.default_rng(1).normal(0.0, 4.0, delays.shape)
    exact = np.stack([triangle(t, d) for d in DURATIONS.values()])
    scores = {}
    for label, shifts in (("true", delays), ("wrong", wrong)):
        envelope, signed = aligned_stack(np.asarray(fourier_shift(traces, -shifts)), mask)
        assert np.allclose(np.abs(signed).max(-1), 1.0) and np.allclose(envelope.max(-1), 1.0)
        file = extraction_file_dict(prepared, exact, shifts / RATE)
        for g, source in enumerate(prepared["group_source_id"]):
            item = file["events"][str(source)]["pixels"][int(prepared["group_pixel"][g])]
            item["stf_stack"], item["stf_stack_signed"] = envelope[g], signed[g]
        scores[label] = evaluate_stfs(file, prepared, truth, methods=())
    mean = lambda s, m: np.mean([r["correlation"] for r in by_method(s, m)])  # noqa: E731
    assert mean(scores["true"], "symae_stack_signed") > 0.95
    assert mean(scores["wrong"], "symae_stack_signed") < mean(scores["true"], "symae_stack_signed") - 0.05
    assert all(v["symae_stack"] is not None for v in scores["true"]["goal"].values() if v["groups"])
    old_file = extraction_file_dict(prepared, exact, delays / RATE)        # no stacks in it
    old = evaluate_stfs(old_file, prepared, truth, methods=())
    assert all(r["correlation"] is None for r in by_method(old, "symae_stack"))


def test_goal_standard_error_counts_events_not_groups():
    rng = np.random.default_rng(0)
    independent = rng.normal(size=200)
    # one group per event: the ordinary standard error of the mean
    assert _clustered_standard_error(independent, np.arange(200)) == pytest.approx(
        independent.std(ddof=1) / np.sqrt(200))
    # ten events whose five groups agree: the evidence of ten values, not of fifty
    shared = np.repeat(rng.normal(size=10), 5)
    clustered = _clustered_standard_error(shared, np.repeat(np.arange(10), 5))
    assert clustered == pytest.approx(shared[::5].std(ddof=1) / np.sqrt(10))
    assert clustered > 2 * shared.std(ddof=1) / np.sqrt(50)
    assert np.isnan(_clustered_standard_error(independent, np.zeros(200)))


def test_goal_table_pools_runs_as_separate_events(case, tmp_path, capsys):
    prepared, truth, t, exact, file = case
    wrong = np.stack([triangle(t, 3 * d) for d in DURATIONS.values()])
    runs = []
    for name, estimate in (("good", exact), ("bad", wrong)):
        scores = evaluate_stfs(extraction_file_dict(prepared, estimate, np.zeros((2, M))), prepared, truth,
                               methods=("mccc_linear",))
        runs.append(write_scores(scores, tmp_path / name, figure=False)["json"])
    table = load_script("symae_stf_goal_table")
    frames = [table.load_groups(p, f"run{i}") for i, p in enumerate(runs)]
    pooled = pd.concat(frames, ignore_index=True)
    assert pooled["source_id"].nunique() == 2 * frames[0]["source_id"].nunique()   # the same ids, other runs
    per_run = [table.rows_for(f, str(i), ["mccc_linear"]) for i, f in enumerate(frames)]
    both = table.rows_for(pooled, "all", ["mccc_linear"])
    envelope = lambda rows: [r for r in rows if r["symae"] == "symae_envelope"]  # noqa: E731
    assert envelope(both) and all(len(envelope(r)) == len(envelope(both)) for r in per_run)
    for run_rows, pooled_row in zip(zip(*(envelope(r) for r in per_run)), envelope(both)):
        # the pooled SymAE mean is the mean over both runs' groups (equal group counts)
        assert pooled_row["correlation"] == pytest.approx(np.mean([r["correlation"] for r in run_rows]))
    table.main([str(p.parent) for p in runs])
    out = capsys.readouterr().out
    assert "all pooled" in out and "mccc_linear_signed" in out
    with pytest.raises(InputError, match="no scores.json"):
        table.main([str(tmp_path / "missing")])
