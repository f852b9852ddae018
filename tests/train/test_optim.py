"""Schedules and optimizers from config data, against hand computation."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from seisjax.errors import InputError
from seisjax.train import optim


def optim_config(**kw):
    base = dict(optimizer="adam", schedule="stages", stages=(), lr=1.0, warmup_steps=0, warmup_epochs=None,
                cosine_final_fraction=0.0, clip_norm=0.0, weight_decay=0.0, frozen=(), b1=0.9, b2=0.999,
                eps=1e-8, momentum=None)
    base.update(kw)
    return ml_collections.ConfigDict(base)


def lrs(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_staged_schedule_matches_hand_computation():
    # 4 steps per epoch: stage 1 = epochs 0-1 (steps 0-7), stage 2 = epoch 2 (8-11), stage 3 = 12-19.
    cfg = optim_config(stages=((2, 1e-2, 0.5), (1, 1e-3, 0.9), (2, 1e-4, 0.8)))
    assert optim.stage_boundaries(cfg, 4) == [8, 12, 20]
    schedule = optim.make_schedule(cfg, steps_per_epoch=4, total_steps=20)
    steps = [0, 3, 4, 7, 8, 11, 12, 15, 16, 19, 24]
    expected = [1e-2, 1e-2, 5e-3, 5e-3,           # stage 1: decays by 0.5 after one epoch
                1e-3, 1e-3,                       # stage 2 starts at its own lr at its boundary
                1e-4, 1e-4, 0.8e-4, 0.8e-4,       # stage 3: decays by 0.8 per epoch
                0.8 ** 3 * 1e-4]                  # past the end: the last stage keeps decaying
    np.testing.assert_allclose(lrs(schedule, steps), expected, rtol=1e-6)


def test_symae_seed_recipe_length():
    cfg = optim_config(stages=((50, 1e-3, 0.99), (50, 1e-4, 0.99), (100, 1e-5, 0.99)))
    schedule = optim.make_schedule(cfg, steps_per_epoch=10, total_steps=2000)
    train = ml_collections.ConfigDict(dict(num_steps=None, num_epochs=None))
    total = optim.total_train_steps(ml_collections.ConfigDict(dict(optim=cfg, train=train)), 10)
    assert total == 2000
    np.testing.assert_allclose(lrs(schedule, [499, 500, 999, 1000, 1999]),
                               [1e-3 * 0.99 ** 49, 1e-4, 1e-4 * 0.99 ** 49, 1e-5, 1e-5 * 0.99 ** 99], rtol=1e-5)


def test_warmup_ramps_without_moving_stage_boundaries():
    cfg = optim_config(stages=((2, 1e-2, 0.5), (1, 1e-3, 1.0)), warmup_steps=4)
    schedule = optim.make_schedule(cfg, steps_per_epoch=4, total_steps=12)
    np.testing.assert_allclose(lrs(schedule, [0, 1, 2, 4, 8]), [0.0, 0.25e-2, 0.5e-2, 5e-3, 1e-3], rtol=1e-6)


def test_cosine_with_warmup_and_epochs_converted_once():
    cfg = optim_config(schedule="cosine", lr=1.0, warmup_steps=None, warmup_epochs=0.5, cosine_final_fraction=0.1)
    schedule = optim.make_schedule(cfg, steps_per_epoch=4, total_steps=10)  # warmup = 2 steps
    half = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8))
    np.testing.assert_allclose(lrs(schedule, [0, 1, 2, 6, 10]), [0.0, 0.5, 1.0, half, 0.1], rtol=1e-6)


def test_durations_in_steps_or_epochs_not_both():
    section = ml_collections.ConfigDict(dict(every_steps=None, every_epochs=2.5))
    assert optim.to_steps(section, "every", 4) == 10
    section.every_steps = 3
    with pytest.raises(InputError, match="every_steps or every_epochs, not both"):
        optim.to_steps(section, "every", 4)
    with pytest.raises(InputError, match=r"stages\[0\]"):
        optim.make_schedule(optim_config(stages=((1, 1e-3, 1.5),)), 4, 4)


def _params():
    return {"encoder": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones((2,))},
            "decoder": {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.zeros((3,))}}


def _run(tx, params, steps=3):
    loss = lambda p: sum(jnp.sum(jnp.sin(x) * (i + 1)) for i, x in enumerate(jax.tree_util.tree_leaves(p)))

    @jax.jit
    def run(params):
        state = tx.init(params)
        for _ in range(steps):
            updates, state = tx.update(jax.grad(loss)(params), state, params)
            params = optax.apply_updates(params, updates)
        return params

    return run(params)


def test_frozen_groups_do_not_change():
    params = _params()
    cfg = optim_config(frozen=("encoder/*",), weight_decay=0.1, clip_norm=10.0)
    tx = optim.make_optimizer(cfg, optax.constant_schedule(0.1))
    after = _run(tx, params)
    for name in ("kernel", "bias"):
        np.testing.assert_array_equal(after["encoder"][name], params["encoder"][name])
        assert not np.array_equal(after["decoder"][name], params["decoder"][name])
    with pytest.raises(InputError, match="'encodr/\\*' matches no parameter"):
        optim.make_optimizer(optim_config(frozen=("encodr/*",)), optax.constant_schedule(0.1)).init(params)


def test_clipping_bounds_the_update():
    params = {"w": jnp.zeros(4)}
    tx = optim.make_optimizer(optim_config(optimizer="sgd", clip_norm=0.5), optax.constant_schedule(1.0))
    grads = {"w": jnp.array([30.0, 40.0, 0.0, 0.0])}  # norm 50 -> clipped to 0.5
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.3, -0.4, 0.0, 0.0], rtol=1e-6)


def test_weight_decay_on_kernels_only():
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    tx = optim.make_optimizer(optim_config(optimizer="sgd", weight_decay=0.5), optax.constant_schedule(1.0))
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -0.5 * np.ones((2, 2)))
    np.testing.assert_allclose(updates["bias"], np.zeros(2))
