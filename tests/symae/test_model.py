"""SymAE parts: Gaussian pooling and KL terms against hand computations, the model's symmetry,
masking, wiring, shapes and parameter counts, and a short training run on groups of delayed copies
of a source."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.integrate
import scipy.stats

from seisjax.errors import InputError
from seisjax.ops.fourier import fourier_shift
from seisjax.symae.model import (MODELS, SymAE, count_params, gaussian_nll, kl_standard_normal_log_precision,
                                 kl_standard_normal_logvar, pool_gaussians, symae_loss, symae_per_datapoint)

# A small model for everything that runs the network: one init and one compiled forward, shared.
NT, P, Q, B, NTAU = 64, 8, 6, 3, 6


FAST_COMPILE = True  # see conftest.py


@pytest.fixture(scope="module")
def small():
    model = SymAE(nt=NT, p=P, q=Q)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(B, NTAU, NT)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(0), x)
    forward = jax.jit(lambda v, x, mask: model.apply(v, x, mask))
    return model, variables, forward, x


loss_jit = jax.jit(symae_loss, static_argnames=("gamma", "beta_nuisance", "beta_coherent", "shift_penalty"))


def with_random_shift_layer(variables, scale=0.01, bias=0.02, seed=1):
    """Variables whose shift network's zero-initialised last layer is replaced by random values, so
    that the shifts differ between traces (about a sample)."""
    params = jax.tree_util.tree_map(lambda a: a, variables["params"])
    out = params["shift_network"]["out"]
    kernel = scale * np.random.default_rng(seed).normal(size=out["kernel"].shape)
    params["shift_network"]["out"] = {"kernel": jnp.asarray(kernel, jnp.float32),
                                      "bias": jnp.full(out["bias"].shape, bias, jnp.float32)}
    return {**variables, "params": params}


# ----------------------------------------------------------------------------- Gaussians and loss pieces
def test_pool_gaussians_is_the_product_of_valid_gaussians():
    pool = jax.jit(pool_gaussians)
    rng = np.random.default_rng(3)
    mean = rng.normal(size=(2, 5, 4))
    log_prec = rng.normal(size=(2, 5, 4))
    mask = np.array([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0]], bool)
    mean[0, 2] = np.nan            # what masked traces hold must not matter
    pooled_mean, pooled_lp = map(np.asarray, pool(jnp.asarray(mean), jnp.asarray(log_prec), jnp.asarray(mask)))
    prec = np.exp(log_prec[0, mask[0]])
    np.testing.assert_allclose(np.exp(pooled_lp[0]), prec.sum(0), rtol=1e-5)
    np.testing.assert_allclose(pooled_mean[0], (prec * mean[0, mask[0]]).sum(0) / prec.sum(0), rtol=1e-5)
    np.testing.assert_array_equal(pooled_mean[1], 0.0)   # no valid trace: the standard normal
    np.testing.assert_array_equal(pooled_lp[1], 0.0)
    # no mask = all valid; huge log precisions do not overflow
    m2, lp2 = pool(jnp.asarray(mean[1]), jnp.asarray(log_prec[1] + 200.0))
    np.testing.assert_allclose(np.asarray(lp2), np.log(np.exp(log_prec[1]).sum(0)) + 200.0, rtol=1e-5)
    assert np.isfinite(np.asarray(m2)).all()
    # gradients stay finite with NaN in a masked trace
    grad = jax.jit(jax.grad(lambda m: jnp.sum(pool_gaussians(m, jnp.asarray(log_prec), jnp.asarray(mask))[0])))(
        jnp.asarray(mean))
    assert np.isfinite(np.asarray(grad)).all() and np.all(np.asarray(grad)[~mask] == 0)


def test_kl_terms_against_integration_and_zero_at_standard_normal():
    kl_logvar, kl_log_precision = jax.jit(kl_standard_normal_logvar), jax.jit(kl_standard_normal_log_precision)
    rng = np.random.default_rng(4)
    mean, logvar = rng.normal(size=(50, 7)), rng.normal(size=(50, 7))
    assert np.all(np.asarray(kl_logvar(mean, logvar)) >= 0)
    assert np.all(np.asarray(kl_log_precision(mean, logvar)) >= 0)
    np.testing.assert_array_equal(np.asarray(kl_logvar(np.zeros((3, 7)), np.zeros((3, 7)))), 0.0)
    np.testing.assert_array_equal(np.asarray(kl_log_precision(np.zeros(7), np.zeros(7))), 0.0)
    for m, lv in [(0.7, -0.4), (-1.3, 0.9)]:
        sd = math.exp(0.5 * lv)
        p = scipy.stats.norm(m, sd)
        kl, _ = scipy.integrate.quad(lambda z: p.pdf(z) * (p.logpdf(z) - scipy.stats.norm.logpdf(z)), -30, 30)
        np.testing.assert_allclose(float(kl_logvar(np.array([m]), np.array([lv]))), kl, rtol=1e-5)
        np.testing.assert_allclose(float(kl_log_precision(np.array([m]), np.array([-lv]))), kl, rtol=1e-5)
    x, mu, lv = rng.normal(size=10), rng.normal(size=10), rng.normal(size=10)
    np.testing.assert_allclose(np.asarray(gaussian_nll(x, mu, lv)),
                               -scipy.stats.norm.logpdf(x, mu, np.exp(0.5 * lv)), rtol=1e-5)


def fake_outputs(rng, b, ntau, nt, p, q, shifts=None):
    """Model-shaped outputs with random values, for checking the loss arithmetic by hand."""
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return {
        "reconstruction": f32(rng.normal(size=(b, ntau, nt))),
        "shifts": f32(rng.normal(size=(b, ntau)) if shifts is None else shifts),
        "shift_unit": f32(nt / 2),
        "coherent": {"mean": f32(rng.normal(size=(b, p))), "log_precision": f32(rng.normal(size=(b, p)))},
        "nuisance": {"mean": f32(rng.normal(size=(b, ntau, q))), "logvar": f32(rng.normal(size=(b, ntau, q)))},
        "decoder_logvar": f32(0.3),
    }


def test_loss_normalisation_by_hand():
    rng = np.random.default_rng(5)
    b, ntau, nt, p, q = 3, 4, 16, 5, 2
    out = fake_outputs(rng, b, ntau, nt, p, q)
    x = rng.normal(size=(b, ntau, nt)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], np.float32)
    o = jax.tree_util.tree_map(np.asarray, out)
    n = mask.sum()
    lv = float(o["decoder_logvar"])
    nll = (0.5 * (np.log(2 * np.pi) + lv + (x - o["reconstruction"]) ** 2 / np.exp(lv))).sum(-1)
    kl_n = 0.5 * (np.exp(o["nuisance"]["logvar"]) + o["nuisance"]["mean"] ** 2 - 1 - o["nuisance"]["logvar"]).sum(-1)
    lp = o["coherent"]["log_precision"]
    kl_c = 0.5 * (np.exp(-lp) + o["coherent"]["mean"] ** 2 - 1 + lp).sum()
    s = o["shifts"] / (nt / 2) * mask
    loss, terms = loss_jit(out, x, mask, gamma=100.0, beta_nuisance=0.5)
    np.testing.assert_allclose(float(terms["nll"]), (nll * mask).sum() / n, rtol=1e-5)
    np.testing.assert_allclose(float(terms["kl_nuisance"]), 0.5 * (kl_n * mask).sum() / n, rtol=1e-5)
    np.testing.assert_allclose(float(terms["kl_coherent"]), kl_c / n, rtol=1e-5)
    np.testing.assert_allclose(float(terms["shift"]), 100.0 * np.sqrt((s ** 2).sum()) / n, rtol=1e-5)
    weighted = ("nll", "kl_nuisance", "kl_coherent", "shift")
    np.testing.assert_allclose(float(loss), sum(float(terms[k]) for k in weighted),
                               rtol=1e-6)
    np.testing.assert_allclose(float(terms["mse"]), (((x - o["reconstruction"]) ** 2).sum(-1) * mask).sum() / (n * nt),
                               rtol=1e-5)
    _, ms = loss_jit(out, x, mask, gamma=10.0, shift_penalty="mean_square")
    np.testing.assert_allclose(float(ms["shift"]), 10.0 * (s ** 2).sum() / n, rtol=1e-5)
    per = jax.jit(symae_per_datapoint)(out, x, mask)
    np.testing.assert_array_equal(np.asarray(per["traces"]), mask.sum(1))
    # masked traces may hold NaN without touching the loss
    x_nan = x.copy()
    x_nan[0, 3] = np.nan
    assert float(loss_jit(out, x_nan, mask)[0]) == pytest.approx(float(loss_jit(out, x, mask)[0]), rel=1e-6)
    with pytest.raises(InputError, match="shift_penalty"):
        loss_jit(out, x, mask, shift_penalty="l1")


def test_shift_penalty_gradient_is_finite_at_zero_shifts():
    """Every shift starts at exactly 0 (zero-initialised last layer), where ||s|| has no gradient."""
    rng = np.random.default_rng(6)
    out = fake_outputs(rng, 2, 3, 16, 4, 4, shifts=np.zeros((2, 3)))
    x = rng.normal(size=(2, 3, 16)).astype(np.float32)

    def loss_of_shifts(shifts):
        return symae_loss({**out, "shifts": shifts}, x)[0]

    grad = np.asarray(jax.jit(jax.grad(loss_of_shifts))(jnp.zeros((2, 3))))
    np.testing.assert_array_equal(grad, 0.0)


# ----------------------------------------------------------------------------- the model
def layer_counts(nt, p, q):
    """Parameter counts from the layer shapes, by hand: conv k x cin x cout + cout, dense in x out + out."""
    conv = lambda k, cin, cout: k * cin * cout + cout  # noqa: E731
    dense = lambda n_in, n_out: n_in * n_out + n_out  # noqa: E731

    def encoder(size):
        trunk = conv(50, 1, 5) + conv(20, 5, 10) + conv(20, 10, 20) + conv(5, 20, 50) + dense(nt // 16 * 50, size)
        return trunk + 2 * dense(size, size)   # two Gaussian heads

    decoder = (dense(p + q, nt) + dense(nt, nt) + conv(50, 1, 5) + conv(20, 5, 20) + conv(20, 20, 20)
               + conv(5, 20, 50) + conv(5, 50, 1))
    shift = dense(nt, nt) + dense(nt, nt) + dense(nt, 1)
    return {"coherent_encoder": encoder(p), "nuisance_encoder": encoder(q), "decoder": decoder,
            "shift_network": shift, "decoder_logvar": 1}


@pytest.mark.parametrize("nt,p,q", [(192, 30, 30), (NT, P, Q)])
def test_parameter_counts_match_hand_computation(nt, p, q):
    model = MODELS["symae"](nt=nt, p=p, q=q)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 3, nt)))["params"]
    expected = layer_counts(nt, p, q)
    assert {name: count_params(shapes[name]) for name in shapes} == expected
    assert count_params(shapes) == sum(expected.values())
    if (nt, p, q) == (192, 30, 30):
        assert count_params(shapes) == 199_120
        # the reference's flatten: 12 time samples x 50 channels = 600 inputs of Dense(600 -> p)
        assert shapes["coherent_encoder"]["trunk"]["dense"]["kernel"].shape == (600, 30)
    no_shift = jax.eval_shape(SymAE(nt=nt, p=p, q=q, use_shifts=False).init, jax.random.key(0),
                              jnp.zeros((2, 3, nt)))["params"]
    assert count_params(no_shift) == sum(expected.values()) - expected["shift_network"]


def test_output_shapes_and_zero_initial_shift(small):
    model, variables, forward, x = small
    out = forward(variables, x, None)
    expected = {"reconstruction": (B, NTAU, NT), "reconstruction_aligned": (B, NTAU, NT),
                "aligned": (B, NTAU, NT), "shifts": (B, NTAU), "shift_unit": (), "decoder_logvar": (),
                "coherent": {"mean": (B, P), "log_precision": (B, P), "sample": (B, P),
                             "trace_mean": (B, NTAU, P), "trace_log_precision": (B, NTAU, P)},
                "nuisance": {"mean": (B, NTAU, Q), "logvar": (B, NTAU, Q), "sample": (B, NTAU, Q)}}
    assert jax.tree_util.tree_map(lambda a: tuple(a.shape), out) == expected
    np.testing.assert_array_equal(np.asarray(out["shifts"]), 0.0)       # zero-initialised shift layer
    np.testing.assert_allclose(np.asarray(out["aligned"]), np.asarray(x), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["reconstruction"]), np.asarray(out["reconstruction_aligned"]), atol=1e-5)
    assert float(out["decoder_logvar"]) == 1.0 and float(out["shift_unit"]) == NT / 2
    # deterministic mode: the samples are the means; training mode samples around them
    np.testing.assert_array_equal(np.asarray(out["nuisance"]["sample"]), np.asarray(out["nuisance"]["mean"]))

    @jax.jit
    def sample_and_methods(variables, x, key):
        sampled = model.apply(variables, x, train=True, rngs={"sample": key})
        c = model.apply(variables, x, method="encode_coherent")
        n = model.apply(variables, x, method="encode_nuisance")
        decoded = model.apply(variables, c["mean"], n["mean"], method="decode")   # (B, p) with (B, ntau, q)
        return sampled, c, n, decoded

    sampled, c, n, decoded = sample_and_methods(variables, x, jax.random.key(3))
    noise = np.asarray(sampled["nuisance"]["sample"] - sampled["nuisance"]["mean"])
    sd = np.exp(0.5 * np.asarray(sampled["nuisance"]["logvar"]))
    assert 0.6 < np.std(noise / sd) < 1.4 and not np.allclose(np.asarray(sampled["coherent"]["sample"]),
                                                              np.asarray(sampled["coherent"]["mean"]))
    # the methods a task calls after training agree with the forward pass
    np.testing.assert_allclose(np.asarray(c["mean"]), np.asarray(out["coherent"]["mean"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(n["logvar"]), np.asarray(out["nuisance"]["logvar"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(decoded), np.asarray(out["reconstruction_aligned"]), rtol=1e-4, atol=1e-5)
    # the full-size model's shapes, without running it
    full = jax.eval_shape(lambda: SymAE().init_with_output(jax.random.key(0), jnp.zeros((2, 20, 192)))[0])
    assert full["reconstruction"].shape == (2, 20, 192) and full["coherent"]["mean"].shape == (2, 30)


def test_shifts_align_and_are_undone(small):
    """The traces are advanced by their predicted delays before encoding, and the reconstruction is
    delayed back by the same amount; the shift is in samples (unit nt/2) and can be bounded."""
    model, variables, forward, x = small
    shifted = with_random_shift_layer(variables)
    out = forward(shifted, x, None)
    s = np.asarray(out["shifts"])
    assert np.std(s) > 0.1 and np.all(np.abs(s) < 10)
    np.testing.assert_allclose(np.asarray(out["aligned"]), np.asarray(fourier_shift(x, -out["shifts"])), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["reconstruction"]),
                               np.asarray(fourier_shift(out["reconstruction_aligned"], out["shifts"])), atol=1e-5)
    # a constant last layer (kernel 0, bias r) gives the shift r * nt / 2 samples for every trace
    params = jax.tree_util.tree_map(lambda a: a, variables["params"])
    params["shift_network"]["out"] = {"kernel": jnp.zeros((NT, 1)), "bias": jnp.full((1,), 0.25)}
    const = jax.jit(lambda v, x: model.apply(v, x, method="predict_shifts"))({"params": params}, x)
    np.testing.assert_allclose(np.asarray(const), 0.25 * NT / 2, rtol=1e-6)
    bounded_model = SymAE(nt=NT, p=P, q=Q, max_shift=3.0)
    bounded = jax.jit(lambda v, x: bounded_model.apply(v, x, method="predict_shifts"))({"params": params}, x)
    np.testing.assert_allclose(np.asarray(bounded), 3.0 * np.tanh(0.25 * NT / 2 / 3.0), rtol=1e-6)


def test_coherent_code_is_symmetric_and_ignores_masked_traces(small):
    model, variables, forward, x = small
    variables = with_random_shift_layer(variables)
    out = forward(variables, x, None)
    perm = np.array([3, 0, 5, 1, 4, 2])
    permuted = forward(variables, x[:, perm], None)
    for key in ("mean", "log_precision"):
        np.testing.assert_allclose(np.asarray(permuted["coherent"][key]), np.asarray(out["coherent"][key]),
                                   rtol=1e-5, atol=1e-6)
    for key in ("mean", "logvar"):
        np.testing.assert_allclose(np.asarray(permuted["nuisance"][key]), np.asarray(out["nuisance"][key])[:, perm],
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(permuted["shifts"]), np.asarray(out["shifts"])[:, perm], rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(out["coherent"]["mean"][0]), np.asarray(out["coherent"]["mean"][1]))

    # the last two traces of each datapoint masked: their content (noise or NaN) changes nothing
    mask = jnp.asarray(np.repeat([[1, 1, 1, 1, 0, 0]], B, axis=0), jnp.float32)
    rng = np.random.default_rng(7)
    other = np.asarray(x).copy()
    other[:, 4:] = 50.0 * rng.normal(size=(B, 2, NT))
    with_nan = np.asarray(x).copy()
    with_nan[:, 4:] = np.nan
    masked = forward(variables, x, mask)
    for variant in (other, with_nan):
        out2 = forward(variables, jnp.asarray(variant), mask)
        for key in ("mean", "log_precision"):
            np.testing.assert_allclose(np.asarray(out2["coherent"][key]), np.asarray(masked["coherent"][key]),
                                       rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(out2["reconstruction"])[:, :4],
                                   np.asarray(masked["reconstruction"])[:, :4],
                                   rtol=1e-5, atol=1e-5)
        assert float(loss_jit(out2, jnp.asarray(variant), mask)[0]) == pytest.approx(
            float(loss_jit(masked, x, mask)[0]), rel=1e-5)
    # and the pooled code is the product of the four valid traces' Gaussians
    lp = np.asarray(out["coherent"]["trace_log_precision"], np.float64)[:, :4]
    mu = np.asarray(out["coherent"]["trace_mean"], np.float64)[:, :4]
    np.testing.assert_allclose(np.asarray(masked["coherent"]["log_precision"]), np.log(np.exp(lp).sum(1)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(masked["coherent"]["mean"]), (np.exp(lp) * mu).sum(1) / np.exp(lp).sum(1),
                               rtol=1e-4, atol=1e-5)


def test_bad_inputs_are_named(small):
    model, variables, _, x = small
    with pytest.raises(InputError, match="nt = 64"):
        model.apply(variables, jnp.zeros((B, NTAU, 60)))
    with pytest.raises(InputError, match="mask"):
        model.apply(variables, x, jnp.ones((B, NTAU + 1)))
    with pytest.raises(InputError, match="batch, ntau, nt"):
        model.apply(variables, x[0])
    with pytest.raises(InputError, match="multiple of 16"):
        SymAE(nt=100).init(jax.random.key(0), jnp.zeros((1, 2, 100)))
    with pytest.raises(InputError, match="p = 8"):
        model.apply(variables, jnp.zeros((B, 3)), jnp.zeros((B, NTAU, Q)), method="decode")


def delayed_groups(n_events, ntau, nt, seed):
    """Per event a source (two Gaussian pulses of random sign, width and time) copied to ``ntau``
    traces with random delays of up to 4 samples, plus a little noise; per trace zero mean and
    unit standard deviation, as the SymAE data are."""
    rng = np.random.default_rng(seed)
    t = np.arange(nt)
    centres = rng.uniform(0.3 * nt, 0.6 * nt, size=(n_events, 2, 1))
    widths = rng.uniform(1.5, 4.0, size=(n_events, 2, 1))
    signs = rng.choice([-1.0, 1.0], size=(n_events, 2, 1))
    source = np.sum(signs * np.exp(-0.5 * ((t - centres) / widths) ** 2), axis=1)        # (E, nt)
    delays = rng.uniform(-4, 4, size=(n_events, ntau))
    traces = np.asarray(fourier_shift(jnp.asarray(np.repeat(source[:, None], ntau, 1), jnp.float32),
                                      jnp.asarray(delays, jnp.float32)))
    traces = traces + 0.05 * rng.normal(size=traces.shape)
    traces = (traces - traces.mean(-1, keepdims=True)) / traces.std(-1, keepdims=True)
    return jnp.asarray(traces, jnp.float32)


def test_loss_decreases_in_short_training(small):
    model, variables, forward, _ = small
    x = delayed_groups(B, NTAU, NT, seed=8)
    mask = jnp.asarray(np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]), jnp.float32)
    optimizer = optax.adam(3e-3)

    def loss_fn(params, key):
        out = model.apply({"params": params}, x, mask, train=True, rngs={"sample": key})
        return symae_loss(out, x, mask)

    @jax.jit
    def step(params, opt_state, key):
        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, terms

    def deterministic_loss(params):
        return symae_loss(forward({"params": params}, x, mask), x, mask)

    params = variables["params"]
    start, start_terms = deterministic_loss(params)
    opt_state = optimizer.init(params)
    history = []
    for i in range(30):
        params, opt_state, loss, terms = step(params, opt_state, jax.random.key(100 + i))
        assert all(np.isfinite(float(v)) for v in terms.values())
        history.append(float(loss))
    end, end_terms = deterministic_loss(params)
    assert float(end) < float(start) - 5.0               # nats per trace
    assert float(end_terms["mse"]) < 0.7 * float(start_terms["mse"])
    assert np.mean(history[-5:]) < np.mean(history[:5])
    # the shift network left its zero start (the penalty's gradient at 0 did not block it) and the KL
    # terms of a trained model stay non-negative
    assert np.any(np.asarray(forward({"params": params}, x, mask)["shifts"]) != 0)
    assert float(end_terms["kl_nuisance"]) >= 0 and float(end_terms["kl_coherent"]) >= 0
