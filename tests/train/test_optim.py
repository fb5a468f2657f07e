"""Schedules against the official V-JEPA formulas and the weight-decay mask."""

import math

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
    config = ml_collections.ConfigDict(dict(schedule="warmup_cosine", lr=1e-3, start_lr=0.0, final_lr=0.0,
                                            warmup_steps=10, weight_decay=0.04, final_weight_decay=0.4,
                                            ipe_scale=1.25, b1=0.9, b2=0.999, eps=1e-8, grad_clip=1.0))
    tx = optim.make_optimizer(config, total_steps=100)
    params = {"w": jnp.ones((2, 2))}
    state = tx.init(params)
    _, state = tx.update({"w": jnp.ones((2, 2))}, state, params)
    hp = optim.current_hyperparams(state)
    np.testing.assert_allclose(float(hp["lr"]), 1e-4, rtol=1e-5)  # (count 0 + 1) / 10 * 1e-3
    assert isinstance(tx, optax.GradientTransformation)
