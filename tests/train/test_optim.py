"""Schedules against the official V-JEPA formulas and the weight-decay mask."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jepa_jax.train import optim


def official_lr(step, start, ref, final, warmup, t_max):
    """WarmupCosineSchedule.step() as in the official code (step counted from 1)."""
    if step < warmup:
        return start + step / warmup * (ref - start)
    progress = (step - warmup) / (t_max - warmup)
    return max(final, final + (ref - final) * 0.5 * (1 + math.cos(math.pi * progress)))


def official_wd(step, ref, final, t_max):
    return final + (ref - final) * 0.5 * (1 + math.cos(math.pi * step / t_max))


def test_lr_and_wd_schedules_match_official_formulas():
    lr = optim.warmup_cosine_lr(2e-4, 6.25e-4, 1e-6, 120, 1125)
    wd = optim.cosine_weight_decay(0.04, 0.4, 1125)
    for count in (0, 1, 59, 119, 120, 500, 899):
        np.testing.assert_allclose(float(lr(count)), official_lr(count + 1, 2e-4, 6.25e-4, 1e-6, 120, 1125),
                                   rtol=1e-5)
        np.testing.assert_allclose(float(wd(count)), official_wd(count + 1, 0.04, 0.4, 1125), rtol=1e-5)


def test_weight_decay_skips_biases_and_1d_params():
    params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}, "norm": {"scale": jnp.ones(3)},
              "mask_tokens": jnp.ones((2, 3))}
    mask = optim.decay_mask(params)
    assert mask == {"dense": {"kernel": True, "bias": False}, "norm": {"scale": False}, "mask_tokens": True}


def test_optimizer_exposes_current_hyperparams():
    """At every step the state's lr and weight decay are the config's schedules (computed here from the config),
    and a zero-gradient AdamW update shrinks decayed parameters by exactly lr * wd (decoupled decay), not biases."""
    config = ml_collections.ConfigDict(dict(schedule="warmup_cosine", lr=0.1, start_lr=0.01, final_lr=0.001,
                                            warmup_steps=4, weight_decay=0.04, final_weight_decay=0.4,
                                            ipe_scale=1.25, b1=0.9, b2=0.999, eps=1e-8, grad_clip=1.0))
    total_steps = 16
    horizon = int(config.ipe_scale * total_steps)  # 20: the run stops at 80 % of the cosines
    tx = optim.make_optimizer(config, total_steps=total_steps)
    params = {"dense": {"kernel": np.linspace(0.5, 2.0, 6, dtype=np.float32).reshape(2, 3),
                        "bias": np.full(3, 0.7, np.float32)}}
    params = jax.tree.map(jnp.asarray, params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for count in range(total_steps):
        lr = official_lr(count + 1, config.start_lr, config.lr, config.final_lr, config.warmup_steps, horizon)
        wd = official_wd(count + 1, config.weight_decay, config.final_weight_decay, horizon)
        updates, state = update(zeros, state, params)
        new = optax.apply_updates(params, updates)
        hp = optim.current_hyperparams(state)
        np.testing.assert_allclose(float(hp["lr"]), lr, rtol=1e-5, err_msg=f"lr at count {count}")
        np.testing.assert_allclose(float(hp["weight_decay"]), wd, rtol=1e-5, err_msg=f"wd at count {count}")
        kernel = np.asarray(params["dense"]["kernel"], np.float64)
        np.testing.assert_allclose(kernel - np.asarray(new["dense"]["kernel"]), lr * wd * kernel, rtol=1e-4,
                                   err_msg=f"decoupled decay at count {count}")
        np.testing.assert_array_equal(new["dense"]["bias"], params["dense"]["bias"])  # biases are not decayed
        params = new
