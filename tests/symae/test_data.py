"""SymAE data: windows, groups, polarity, split and rejections on a tiny synthetic teleseismic-p set
with known truth (the ``tele`` fixture, conftest.py), datapoint draws and their resume, and the
preparation of the real Alaska SAC records."""

import numpy as np
import pandas as pd
import pytest

from seisjax.config import load_config
from seisjax.data.dataset import Dataset, DatasetWriter
from seisjax.data.grouping import group_traces
from seisjax.data.ingest import BuildConfig, build_dataset
from seisjax.data.synthetic import read_truth
from seisjax.symae.data import (PREP_DEFAULTS, GroupDrawIterator, cache_path, eval_datapoints,
                                prepare_symae_groups, window_traces)
from tests.conftest import REPO
from tests.symae.conftest import SETTINGS

CONFIG = str(REPO / "experiments" / "symae.py")
FAST_COMPILE = True  # see conftest.py


def _copy_with(dataset, out, edits):
    """Copy of ``dataset`` with ``edits[row](waveform, metadata) -> (waveform, metadata)`` applied."""
    meta = dataset.metadata
    with DatasetWriter(out, component_order=dataset.component_order, sampling_rate=dataset.sampling_rate) as writer:
        for row in range(len(meta)):
            waveform = dataset.get_waveforms(row).astype(np.float32)
            record = {k: v for k, v in meta.iloc[row].items() if k != "trace_name" and not pd.isna(v)}
            if row in edits:
                waveform, record = edits[row](waveform.copy(), record)
            writer.add(waveform, record)
    return Dataset(out)


# ============================================================================ windows
@pytest.mark.parametrize("rate", [10.0, 50.0])
def test_window_places_the_pick_and_filters_above_nyquist(rate):
    """A pulse at the pick peaks at model sample pre_p - trim_start; a 0.8 Hz wave, above the 0.5 Hz
    Nyquist of 1 sample/s, is filtered out instead of aliasing to 0.2 Hz (plain decimation would
    keep it at full amplitude)."""
    settings = dict(PREP_DEFAULTS)
    t = np.arange(int(400 * rate)) / rate
    pick = 173.3 * rate  # not on a 1 s grid
    pulse = np.exp(-0.5 * ((t - pick / rate) / 3.0) ** 2)
    slow = np.sin(2 * np.pi * 0.02 * t)
    fast = np.sin(2 * np.pi * 0.8 * t + 0.3)
    x, start, reason = window_traces([pulse, slow, slow + fast], np.full(3, pick), rate, settings)
    assert list(reason) == [None, None, None] and x.shape == (3, 192)
    assert np.argmax(x[0]) == settings["pre_p"] - settings["trim_start"]
    assert start[0] == round(pick - settings["pre_p"] * rate)
    assert np.corrcoef(x[1], x[2])[0, 1] > 0.999
    naive = (slow + fast)[start[2]::int(rate)][:200][8:]   # decimation without a filter
    assert np.corrcoef(x[1], naive)[0, 1] < 0.8


def test_windows_groups_and_timing_against_truth(tele):
    dataset, prep = tele
    meta = dataset.metadata
    x = prep["trace_x"]
    assert x.shape == (len(prep["trace_row"]), 192) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=1), 1.0, atol=1e-5)
    # The groups are exactly grouping.group_traces' groups of >= 21 stations (no bad trace here).
    expected = group_traces(meta, nside=4, min_stations=21)
    assert len(expected) >= 3
    got = {(s, p): n for s, p, n in zip(prep["group_source_id"], prep["group_pixel"], prep["group_n_stations"])}
    assert got == {(s, p): n for s, p, n in zip(expected.source_id, expected.healpix_pixel, expected.n_stations)}
    small = group_traces(meta, nside=4, min_stations=1)
    n_small = int(small.loc[small.n_stations < 21, "n_traces"].sum())
    assert n_small > 0 and prep["report"]["rejected"] == {"small_group": n_small}
    for g, (s, p) in enumerate(zip(prep["group_source_id"], prep["group_pixel"])):
        rows = expected.trace_indices[(expected.source_id == s) & (expected.healpix_pixel == p)].iloc[0]
        members = prep["trace_row"][prep["trace_group"] == g]
        assert sorted(members) == sorted(rows)
    # The window starts at the predicted P; the true onset is late by the true timing error.
    truth = read_truth(dataset.path)["traces"].set_index("trace_name")
    error = truth.loc[prep["trace_name"], "time_error_s"].to_numpy()
    np.testing.assert_allclose(prep["trace_pick_in_window_s"], 42.0, atol=0.05 + 1e-9)
    np.testing.assert_allclose(prep["trace_p_in_window_s"] - prep["trace_pick_in_window_s"], error, atol=2e-3)
    assert prep["time_start"] == -42.0 and prep["sampling_rate"] == 1.0
    # Padded per-group arrays hold the same traces.
    for g in range(len(prep["group_pixel"])):
        idx = prep["trace_index"][g][prep["mask"][g]]
        np.testing.assert_array_equal(prep["traces"][g][prep["mask"][g]], x[idx])
        assert (prep["trace_ids"][g][prep["mask"][g]] == prep["trace_row"][idx]).all()


def test_split_is_ninety_ten_disjoint_and_stable(tele, tmp_path):
    dataset, prep = tele
    for g in range(len(prep["group_pixel"])):
        sel = prep["trace_group"] == g
        train = set(prep["trace_station"][sel & ~prep["trace_is_test"]])
        test = set(prep["trace_station"][sel & prep["trace_is_test"]])
        n = prep["group_n_stations"][g]
        assert not train & test and len(train | test) == n
        assert len(test) == max(1, round(0.1 * n)) == prep["group_n_test"][g]
    # Stable: again (through the cache, then without it) and on a subset of the events.
    first = prepare_symae_groups(dataset, SETTINGS, cache_dir=tmp_path)
    cached = prepare_symae_groups(dataset, SETTINGS, cache_dir=tmp_path)
    assert cached["report"]["cache"] == str(cache_path(tmp_path, first["fingerprint"]))
    for name in ("trace_x", "trace_row", "trace_is_test", "traces", "mask"):
        np.testing.assert_array_equal(cached[name], prep[name])
        np.testing.assert_array_equal(first[name], prep[name])
    keep_events = sorted(set(prep["group_source_id"]))[1:]
    subset = prepare_symae_groups(dataset.select(dataset.metadata.source_id.isin(keep_events).to_numpy()), SETTINGS)
    split = dict(zip(dataset.metadata.trace_name.to_numpy()[prep["trace_row"]], prep["trace_is_test"]))
    assert all(split[name] == t for name, t in zip(subset["trace_name"], subset["trace_is_test"]))
    other = prepare_symae_groups(dataset, {**SETTINGS, "split_seed": 1}, cache_dir=tmp_path)
    assert set(other["trace_row"][other["trace_is_test"]]) != set(prep["trace_row"][prep["trace_is_test"]])
    assert len(list(tmp_path.glob("symae_groups_*.npz"))) == 2
    # events_split keeps one split's events; rows still index the whole dataset.
    train = prepare_symae_groups(dataset, {**SETTINGS, "events_split": "train"})
    split_of = dataset.metadata.split.to_numpy()
    assert (split_of[train["trace_row"]] == "train").all()
    assert set(train["trace_row"]) == set(prep["trace_row"][split_of[prep["trace_row"]] == "train"])


def test_polarity_flip_and_bad_traces_counted_per_reason(tele, tmp_path):
    """A sign-flipped copy of a trace comes back identical with the opposite flip; a NaN trace, a
    dead one, one too short for its window and one without a pick are counted, not used."""
    dataset, prep = tele
    meta = dataset.metadata
    references = set(prep["event_reference_row"])
    big = np.flatnonzero(prep["group_n_stations"] >= 26)
    candidates = [r for r, g in zip(prep["trace_row"], prep["trace_group"]) if g in big and r not in references]
    flipped, nan_row, dead, short, nopick = candidates[0], candidates[3], candidates[-1], candidates[-3], candidates[-5]
    events = meta.source_id.to_numpy()
    assert len({flipped, nan_row, dead, short, nopick}) == 5
    p = meta.trace_p_predicted_sample.to_numpy()

    def negate(w, m):
        return -w, m

    def nan(w, m):
        w[0, int(p[nan_row])] = np.nan
        return w, m

    def zero(w, m):
        return np.zeros_like(w), m

    def late(w, m):
        return w, {**m, "trace_p_predicted_sample": w.shape[-1] - 20.0}

    def unpicked(w, m):
        return w, {k: v for k, v in m.items() if k != "trace_p_predicted_sample"}

    copy = _copy_with(dataset, tmp_path / "copy", {flipped: negate, nan_row: nan, dead: zero, short: late,
                                                   nopick: unpicked})
    try:
        assert (copy.metadata.trace_name.to_numpy() != "").all() and len(copy) == len(meta)
        again = prepare_symae_groups(copy, SETTINGS)
    finally:
        copy.close()
    assert again["report"]["rejected"] == {"small_group": prep["report"]["rejected"]["small_group"],
                                           "nan_or_inf": 1, "zero_std": 1, "too_short": 1, "no_pick": 1}
    listed = {r["row"]: r["reason"] for r in again["report"]["rejected_rows"]}
    assert listed == {nan_row: "nan_or_inf", dead: "zero_std", short: "too_short", nopick: "no_pick"}
    assert not {nan_row, dead, short, nopick} & set(again["trace_row"])
    position = {r: i for i, r in enumerate(prep["trace_row"])}
    position_again = {r: i for i, r in enumerate(again["trace_row"])}
    i, j = position[flipped], position_again[flipped]
    np.testing.assert_allclose(again["trace_x"][j], prep["trace_x"][i], atol=1e-6)
    assert again["trace_polarity_flip"][j] == -prep["trace_polarity_flip"][i]
    # Every other trace of the flipped trace's event keeps its flip (same reference trace).
    same_event = [r for r in again["trace_row"] if events[r] == events[flipped] and r != flipped]
    assert all(again["trace_polarity_flip"][position_again[r]] == prep["trace_polarity_flip"][position[r]]
               for r in same_event)


# ============================================================================ batches
def test_draws_are_train_traces_of_the_group_and_resume_exactly(tele):
    _, prep = tele
    ntau = 24   # more than some groups' train stations: those datapoints are padded with mask 0
    kwargs = {"ntau": ntau, "global_batch_size": 4, "seed": 3, "draws_per_group": 4, "prefetch": 0}
    it = GroupDrawIterator(prep, **kwargs)
    rows_of = {tuple(np.round(x, 6)): i for i, x in enumerate(prep["trace_x"])}
    seen = []
    for _ in range(it.steps_per_epoch + 2):
        batch = next(it)
        for x, mask, g in zip(batch["x"], batch["mask"], batch["group"]):
            idx = [rows_of[tuple(np.round(t, 6))] for t in x[mask > 0]]
            assert len(idx) == len(set(idx)) == min(ntau, prep["group_n_train"][g])
            assert (prep["trace_group"][idx] == g).all() and not prep["trace_is_test"][idx].any()
            assert (x[mask == 0] == 0).all()
        seen.append(batch)
    assert not np.array_equal(seen[0]["x"], seen[it.steps_per_epoch]["x"])  # new draws every epoch
    # Restore to a saved position: the same batches again; two processes' shares make the batch.
    resumed = GroupDrawIterator(prep, **kwargs)
    resumed.restore({"seed": 3, "epoch": 1, "index": 1})
    np.testing.assert_array_equal(next(resumed)["x"], seen[it.steps_per_epoch + 1]["x"])
    halves = [next(GroupDrawIterator(prep, **kwargs, process_index=k, process_count=2)) for k in (0, 1)]
    for name in ("x", "mask", "group"):
        np.testing.assert_array_equal(np.concatenate([h[name] for h in halves]), seen[0][name])
    # Evaluation: every test trace exactly once.
    ev = eval_datapoints(prep, 2)
    got = sorted(rows_of[tuple(np.round(t, 6))] for x, m in zip(ev["x"], ev["mask"]) for t in x[m > 0])
    assert got == list(np.flatnonzero(prep["trace_is_test"]))


# ============================================================================ real data
def test_alaska_preparation_on_real_sac_records(shared_data, tmp_path):
    folder = shared_data / "mtuq_alaska" / "20090407201255351"
    build_dataset([str(folder / "*.BH.?")], tmp_path / "ak", picks=str(folder / "picks.dat"),
                  config=BuildConfig(components="ZRT", progress=False))
    config = load_config(f"{CONFIG}:alaska")
    with Dataset(tmp_path / "ak") as dataset:
        prep = prepare_symae_groups(dataset, config.data)
        meta = dataset.metadata
    # Two pixel groups (14 and 4 usable stations); MPEN and SOLD have an all-zero vertical.
    assert sorted(prep["group_n_stations"]) == [4, 14]
    assert prep["report"]["rejected"] == {"small_group": 6, "zero_std": 2}
    dead = {meta.station_code[r["row"]] for r in prep["report"]["rejected_rows"] if r["reason"] == "zero_std"}
    assert dead == {"MPEN", "SOLD"}
    assert prep["trace_x"].shape == (18, 192) and prep["sampling_rate"] == 5.0
    np.testing.assert_allclose(prep["trace_x"].std(axis=1), 1.0, atol=1e-5)
    # The pick sits 8.4 s into the model window (42 samples at 5 Hz), to within half a 50 Hz sample.
    np.testing.assert_allclose(prep["trace_pick_in_window_s"], 8.4, atol=0.01 + 1e-9)
    # The P onset is in the window: the energy after the pick dominates the energy before it.
    before = np.square(prep["trace_x"][:, 10:40]).mean(axis=1)
    after = np.square(prep["trace_x"][:, 42:72]).mean(axis=1)
    assert np.median(after / before) > 3
