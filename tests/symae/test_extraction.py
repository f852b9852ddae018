"""Coherent-information extraction (seisjax.symae.extraction) with a randomly initialised small SymAE:
the properties of the algorithm do not need a trained model.

Checks: KL scoring and top-N selection against a per-trace loop; the optimisation lowers its
objective and its history is the objective recomputed from the returned codes; STF normalisation
and the Hilbert envelope against scipy; the vmapped extraction over all events equals each event
extracted alone (through the lax.map and lax.scan paths); shift refinement recovers known sub-sample
shifts; the HDF5 layout; bad input."""

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from seisjax.errors import InputError
from seisjax.ops.fourier import fourier_shift
from seisjax.symae.baselines import phase_weighted_stack
from seisjax.symae.data import GroupArrays
from seisjax.symae.extraction import (ExtractionConfig, _masked_mean, _phase_coherence, analytic_envelope,
                                      extract_coherent, kl_gaussians, read_extraction_hdf5, refine_shifts,
                                      target_groups, write_extraction_hdf5)
from seisjax.symae.model import SymAE
from seisjax.symae.plots import mean_displacement_envelope, write_figures

NT, P, Q, M = 64, 8, 6, 7
CONFIG = ExtractionConfig(n_best=4, steps=15, lr=0.1, alpha=0.1, shift_steps=8)
# 3 events x 2 pixels; valid traces per group (the first group of event 1 is the smaller one)
VALID = [7, 5, 4, 6, 7, 3]
EVENT = [0, 0, 1, 1, 2, 2]
FAST_COMPILE = True   # conftest: XLA optimisations off for this module (compiling dominates)
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.fixture(scope="module")
def model_params():
    model = SymAE(nt=NT, p=P, q=Q)
    x = jnp.zeros((1, 2, NT), jnp.float32)
    # compiled without XLA's optimisations, which take ~20 s on the random initialisers here
    init = jax.jit(model.init).lower(jax.random.key(0), x).compile(compiler_options=INIT_COMPILER_OPTIONS)
    params = init(jax.random.key(0), x)["params"]
    # a random last layer of the shift network, so that the network's shifts differ between traces
    out = params["shift_network"]["out"]
    rng = np.random.default_rng(1)
    params["shift_network"]["out"] = {"kernel": jnp.asarray(0.01 * rng.normal(size=out["kernel"].shape), jnp.float32),
                                      "bias": jnp.full(out["bias"].shape, 0.01, jnp.float32)}
    # At initialisation the code heads give codes of ~0.005 that hardly differ between traces; scaled
    # up they vary as a trained model's do, so that the KL scores of the traces are well separated.
    for encoder in ("coherent_encoder", "nuisance_encoder"):
        head = params[encoder]["mean"]
        params[encoder]["mean"] = {"kernel": 300.0 * head["kernel"], "bias": head["bias"]}
    return model, params


def make_groups(seed=0) -> GroupArrays:
    rng = np.random.default_rng(seed)
    t = np.arange(NT)
    traces = np.empty((len(VALID), M, NT), np.float32)
    for g in range(len(VALID)):  # a pulse per event, delayed and scaled per trace, plus noise
        centre = 20 + 4 * EVENT[g] + rng.uniform(-3, 3, size=(M, 1))
        traces[g] = (np.exp(-0.5 * ((t - centre) / 2.5) ** 2) * rng.uniform(0.5, 1.5, (M, 1))
                     + 0.2 * rng.normal(size=(M, NT)))
    mask = np.arange(M)[None, :] < np.asarray(VALID)[:, None]
    traces[~mask] = np.nan   # masked entries may hold anything
    trace_ids = np.where(mask, np.arange(len(VALID) * M).reshape(len(VALID), M), -1)
    return GroupArrays(traces, mask, EVENT, ["ev/0", "ev1", "ev2"], [10, 11, 12, 13, 14, 15], trace_ids,
                       time_start=-8.0, sampling_rate=1.0)


@pytest.fixture(scope="module")
def extracted(model_params):
    model, params = model_params
    groups = make_groups()
    return groups, extract_coherent(model, params, groups, CONFIG)


@pytest.fixture(scope="module")
def per_trace(model_params):
    """Jitted single-datapoint model pieces for the reference loops."""
    model, params = model_params
    call = lambda method, **kw: jax.jit(lambda *a: model.apply({"params": params}, *a, method=method, **kw))
    return {"coherent": call("encode_coherent"), "coherent_plain": call("encode_coherent", align=False),
            "nuisance": call("encode_nuisance"), "decode": call("decode")}


def np_kl(ma, lpa, mb, lpb):
    ma, lpa, mb, lpb = (np.asarray(v, np.float64) for v in (ma, lpa, mb, lpb))
    var_a, var_b = np.exp(-lpa), np.exp(-lpb)
    return 0.5 * np.sum(np.log(var_b / var_a) + (var_a + (ma - mb) ** 2) / var_b - 1.0, axis=-1)


def test_kl_gaussians_against_closed_form():
    rng = np.random.default_rng(3)
    ma, mb, lpa, lpb = (rng.normal(size=(4, 5)) for _ in range(4))
    np.testing.assert_allclose(kl_gaussians(ma, lpa, mb, lpb), np_kl(ma, lpa, mb, lpb), rtol=1e-5)
    np.testing.assert_allclose(kl_gaussians(ma, lpa, ma, lpa), 0.0, atol=1e-6)


def test_target_group_is_the_pixel_with_most_stations():
    mask = np.arange(6)[None, :] < np.array([3, 5, 5, 2, 6, 1])[:, None]
    np.testing.assert_array_equal(target_groups(mask, [0, 0, 0, 1, 1, 2], 4), [1, 4, 5, -1])  # tie -> first
    np.testing.assert_array_equal(target_groups(mask, [0, 0, 0, 1, 1, 2], 4, n_stations=[9, 1, 1, 1, 1, 1]),
                                  [0, 3, 5, -1])


def test_kl_scoring_picks_smallest_kl(extracted, per_trace):
    groups, res = extracted
    np.testing.assert_array_equal(res.target_group, [0, 3, 4])
    for e in range(groups.n_events):
        tg = res.target_group[e]
        target = per_trace["coherent"](jnp.asarray(groups.traces[tg][None]), jnp.asarray(groups.mask[tg][None]))
        scores = {}
        for g in np.flatnonzero(groups.group_event == e):
            for j in np.flatnonzero(groups.mask[g]):
                n = per_trace["nuisance"](jnp.asarray(groups.traces[g, j][None]))["mean"]
                virtual = per_trace["decode"](target["mean"], n)
                re = per_trace["coherent_plain"](virtual[:, None, :])
                scores[(g, j)] = np_kl(target["mean"][0], target["log_precision"][0], re["mean"][0],
                                       re["log_precision"][0])
                np.testing.assert_allclose(res.scores[g, j], scores[(g, j)], rtol=2e-3, atol=1e-3)
        best = sorted(scores, key=scores.get)[:CONFIG.n_best]
        assert [tuple(p) for p in res.best_traces[e]] == best
        assert res.best_mask[e].all()
    assert np.isinf(res.scores[~groups.mask]).all()


def test_optimisation_lowers_the_objective(extracted, per_trace):
    groups, res = extracted
    assert res.loss_history.shape == (groups.n_events, CONFIG.steps + 1)
    np.testing.assert_allclose(res.kl_history[:, 0], 1.0, atol=1e-5)   # KL normalised by its initial value
    assert (res.loss_history[:, -1] < res.loss_history[:, 0] - 1e-4).all()
    assert not np.allclose(res.nuisance, res.nuisance_initial)
    # the recorded final objective is the objective of the returned codes, recomputed here
    for e in range(groups.n_events):
        tg = res.target_group[e]
        target = per_trace["coherent"](jnp.asarray(groups.traces[tg][None]), jnp.asarray(groups.mask[tg][None]))
        terms = []
        for codes in (res.nuisance_initial[e], res.nuisance[e]):
            virtual = np.asarray(per_trace["decode"](target["mean"], jnp.asarray(codes[None])))[0]
            re = per_trace["coherent_plain"](jnp.asarray(virtual[:, None, :]))
            kl = np_kl(target["mean"], target["log_precision"], re["mean"], re["log_precision"])
            z = (virtual - virtual.mean(-1, keepdims=True)) / (virtual.std(-1, keepdims=True) + 1e-6)
            terms.append((kl, np.abs(z).mean(-1)))
        (kl0, _), (kl1, l1) = terms
        np.testing.assert_allclose(res.loss_history[e, -1], np.mean(kl1 / kl0 + CONFIG.alpha * l1), rtol=2e-3)


def test_analytic_envelope_matches_scipy():
    x = np.random.default_rng(4).normal(size=(3, 65))
    np.testing.assert_allclose(analytic_envelope(jnp.asarray(x[:, :64])), np.abs(scipy.signal.hilbert(x[:, :64])),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(analytic_envelope(jnp.asarray(x)), np.abs(scipy.signal.hilbert(x)), rtol=1e-4, atol=1e-5)


def test_phase_coherence_weights_as_the_baselines_phase_weighted_stack():
    rng = np.random.default_rng(5)
    pulse = np.exp(-0.5 * ((np.arange(NT) - 60.0) / 3.0) ** 2)
    traces = pulse + 0.5 * rng.normal(size=(6, NT))
    valid = np.array([True, True, True, True, False, True])
    traces[4] = 50 * rng.normal(size=NT)   # a row that does not count must not weigh
    weighted = _masked_mean(jnp.asarray(traces), jnp.asarray(valid), 0) * _phase_coherence(
        jnp.asarray(traces), jnp.asarray(valid)) ** 2
    np.testing.assert_allclose(weighted, phase_weighted_stack(traces[valid], nu=2.0), rtol=1e-4, atol=1e-6)
    # identical traces are fully coherent: the weighting leaves their stack alone
    same = np.repeat(traces[:1], 4, axis=0)
    np.testing.assert_allclose(_phase_coherence(jnp.asarray(same), jnp.ones(4, bool)), 1.0, atol=1e-5)


def test_stf_normalisation_and_signed_estimate(extracted):
    groups, res = extracted
    assert np.isfinite(res.stf).all() and np.isfinite(res.stf_signed).all() and np.isfinite(res.aligned).all()
    np.testing.assert_allclose(res.stf.max(axis=1), 1.0, atol=1e-6)
    assert res.stf.min() >= 0.0
    np.testing.assert_allclose(np.abs(res.stf_signed).max(axis=1), 1.0, atol=1e-6)
    # the STF is the normalised mean Hilbert envelope of the pixel's virtual seismograms
    envelope = np.abs(scipy.signal.hilbert(res.virtual.astype(np.float64))).mean(axis=1)
    np.testing.assert_allclose(res.stf, envelope / envelope.max(axis=1, keepdims=True), atol=1e-4)
    # its sign: positive correlation (at the strongest lag) with the mean of the network-aligned inputs
    for g in range(len(groups.pixels)):
        m = groups.mask[g]
        inputs = np.asarray(fourier_shift(jnp.asarray(groups.traces[g][m]), -jnp.asarray(res.shifts_initial[g][m])))
        mean = inputs.mean(0) - inputs.mean()
        cc = np.fft.irfft(np.fft.rfft(res.stf_signed[g] - res.stf_signed[g].mean()) * np.conj(np.fft.rfft(mean)), NT)
        assert cc[np.argmax(np.abs(cc))] > 0
    # the data stacked on SymAE's clock: a phase-weighted stack of the traces advanced by the refined shifts
    for g in range(len(groups.pixels)):
        m = groups.mask[g]
        advanced = np.asarray(fourier_shift(jnp.asarray(groups.traces[g][m]), -jnp.asarray(res.shifts[g][m])))
        stack = phase_weighted_stack(advanced.astype(np.float64))
        np.testing.assert_allclose(res.stf_stack_signed[g], stack / np.abs(stack).max(), atol=2e-4)
        envelope = np.abs(scipy.signal.hilbert(stack))
        np.testing.assert_allclose(res.stf_stack[g], envelope / envelope.max(), atol=2e-4)


def test_vmapped_extraction_equals_each_event_alone(extracted, model_params):
    groups, res = extracted
    model, params = model_params
    # the other code paths: groups in lax.map batches, the gradient steps in one lax.scan
    batched = ExtractionConfig(**{**CONFIG.__dict__, "group_batch": 1, "loop": "scan"})
    for e in range(groups.n_events):
        rows = np.flatnonzero(groups.group_event == e)
        alone = extract_coherent(model, params, groups.select_events([e]), batched)
        np.testing.assert_array_equal(rows[alone.target_group], res.target_group[e:e + 1])
        np.testing.assert_allclose(alone.scores, res.scores[rows], rtol=1e-4)
        np.testing.assert_allclose(alone.loss_history[0], res.loss_history[e], rtol=1e-4)
        np.testing.assert_allclose(alone.nuisance[0], res.nuisance[e], atol=1e-4)
        for name in ("stf", "stf_signed", "virtual", "aligned", "shifts", "reconstruction"):
            np.testing.assert_allclose(getattr(alone, name), getattr(res, name)[rows], atol=2e-4, err_msg=name)


def test_shift_refinement_recovers_subsample_shifts(model_params):
    model, params = model_params
    rng = np.random.default_rng(5)
    # a decoded trace as the template, and shifted copies of it as the traces
    decoded = model.apply({"params": params}, jnp.asarray(rng.normal(size=P), jnp.float32),
                          jnp.asarray(rng.normal(size=(1, Q)), jnp.float32), method="decode")[0]
    true = np.array([-2.3, -0.7, 0.0, 0.45, 1.6, 2.9], np.float32)
    traces = fourier_shift(jnp.broadcast_to(decoded, (len(true), NT)), jnp.asarray(true))
    refine = jax.jit(refine_shifts, static_argnames=("steps", "search"))
    start = true + rng.uniform(-1.5, 1.5, size=true.shape).astype(np.float32)   # the network's guess
    shifts, corr = refine(traces, decoded, jnp.asarray(start), steps=30)
    np.testing.assert_allclose(shifts, true, atol=0.02)
    assert (np.asarray(corr) > 0.999).all()   # not 1: a fractional shift scales the Nyquist bin by cos(pi s)
    shifts, _ = refine(traces, decoded, jnp.zeros_like(true), steps=30, search=4)   # from 0 with a search
    np.testing.assert_allclose(shifts, true, atol=0.02)


def test_hdf5_layout(extracted, tmp_path):
    groups, res = extracted
    env = mean_displacement_envelope(groups.traces, groups.mask, groups.sampling_rate)
    path = write_extraction_hdf5(tmp_path / "stf.h5", groups, res, checkpoint_step=123, displacement_envelope=env)
    with h5py.File(path) as f:
        assert sorted(f) == ["ev1", "ev2", "ev_0"]                  # "/" in a source id becomes "_"
        assert sorted(f["ev_0"]) == ["10", "11", "best_trace_ids", "kl_history", "l1_history", "loss_history",
                                     "nuisance"]
        assert set(f["ev1/12"]) == {"stf", "stf_signed", "stf_stack", "stf_stack_signed", "virtual", "aligned",
                                    "shifts", "shifts_samples", "shifts_initial", "trace_ids", "displacement_envelope"}
        attrs = dict(f.attrs)
    assert attrs["time_start"] == -8.0 and attrs["sampling_rate"] == 1.0 and attrs["nt"] == NT
    assert (attrs["N"], attrs["alpha"], attrs["lr"], attrs["steps"], attrs["checkpoint_step"]) == (4, 0.1, 0.1, 15, 123)
    back = read_extraction_hdf5(path)
    assert set(back["events"]) == {"ev/0", "ev1", "ev2"}
    for g in range(len(groups.pixels)):
        e = groups.group_event[g]
        pix = back["events"][groups.source_ids[e]]["pixels"][groups.pixels[g]]
        valid = groups.mask[g]
        np.testing.assert_array_equal(pix["stf"], res.stf[g])
        np.testing.assert_array_equal(pix["stf_stack_signed"], res.stf_stack_signed[g])
        np.testing.assert_array_equal(pix["virtual"], res.virtual[g])
        np.testing.assert_array_equal(pix["aligned"], res.aligned[g][valid])
        np.testing.assert_array_equal(pix["shifts_samples"], res.shifts[g][valid])
        np.testing.assert_array_equal(pix["trace_ids"], groups.trace_ids[g][valid])
        assert pix["aligned"].shape == (VALID[g], NT) and pix["attrs"]["n_traces"] == VALID[g]
        assert pix["attrs"]["is_target"] == (res.target_group[e] == g)
    ev = back["events"]["ev1"]
    assert ev["attrs"]["target_pixel"] == 13
    np.testing.assert_array_equal(ev["loss_history"], res.loss_history[1])
    assert ev["loss_history"].shape == (CONFIG.steps + 1,)
    figures = write_figures(tmp_path / "figures", groups, res, max_events=1)
    assert sorted(p.name for p in figures) == ["loss_history.png", "reconstructions_ev_0.png", "stf_ev_0.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in figures)


def test_mean_displacement_envelope_of_a_velocity_pulse():
    t = np.arange(128.0)
    centres = np.array([60.0, 62.0, 58.0])
    displacement = np.exp(-0.5 * ((t - centres[:, None]) / 4.0) ** 2)
    velocity = np.gradient(displacement, axis=-1)
    env = mean_displacement_envelope(velocity[None], np.ones((1, 3), bool), 1.0)[0]
    assert abs(np.argmax(env) - 60) <= 1 and env.max() == pytest.approx(1.0)
    env_direct = mean_displacement_envelope(displacement[None], np.ones((1, 3), bool), 1.0, integrate=False)[0]
    assert abs(np.argmax(env_direct) - 60) <= 1


def test_bad_input_is_named(model_params):
    model, params = model_params
    groups = make_groups()
    traces = groups.traces.copy()
    traces[2, 1, 5] = np.nan
    with pytest.raises(InputError, match=r"trace 1 of group 2 .*ev1.*pixel 12.*row 15"):
        GroupArrays(traces, groups.mask, EVENT, groups.source_ids, groups.pixels, groups.trace_ids)
    with pytest.raises(InputError, match="group_event"):
        GroupArrays(groups.traces, groups.mask, [0, 0, 1, 1, 2, 3], groups.source_ids, groups.pixels, groups.trace_ids)
    short = GroupArrays(groups.traces[..., :48], groups.mask, EVENT, groups.source_ids, groups.pixels, groups.trace_ids)
    with pytest.raises(InputError, match="48 samples.*nt = 64"):
        extract_coherent(model, params, short, CONFIG)
    with pytest.raises(InputError, match="n_best"):
        ExtractionConfig(n_best=0)
