"""JEPA objectives: the latent prediction loss, the EMA target, and SIGReg (EMA-free).

- `ema` (V-JEPA): targets are LayerNorm'd (no affine, eps 1e-5) outputs of an EMA copy of the encoder.
- `sigreg` (LeJEPA, arXiv 2511.08544; LeWorldModel, arXiv 2603.19312): one encoder; the targets are its own
  stop-gradient LayerNorm'd outputs and lambda * SIGReg pushes its embeddings towards an isotropic Gaussian, which
  rules out collapse without an EMA copy.
"""

import jax
import jax.numpy as jnp


def normalize_targets(features, eps: float = 1e-5):
    """LayerNorm over the last axis without affine parameters (F.layer_norm in the official code): [..., D]."""
    mean = features.mean(-1, keepdims=True)
    var = jnp.square(features - mean).mean(-1, keepdims=True)
    return (features - mean) * jax.lax.rsqrt(var + eps)


def prediction_loss(prediction, target, kind: str = "l1"):
    """Mean over all elements of |pred - target| ("l1", V-JEPA's loss_exp=1), squared error ("l2") or Huber with
    beta 1 ("smooth_l1", I-JEPA's F.smooth_l1_loss): scalar."""
    diff = prediction.astype(jnp.float32) - target.astype(jnp.float32)
    if kind == "smooth_l1":
        return jnp.where(jnp.abs(diff) < 1.0, 0.5 * jnp.square(diff), jnp.abs(diff) - 0.5).mean()
    return jnp.abs(diff).mean() if kind == "l1" else jnp.square(diff).mean()


def batch_spread(features):
    """Collapse monitor: std across the batch at each fixed token, averaged over tokens and channels.

    features [B, N, D] -> scalar. It falls towards 0 when every clip maps to the same representation, which a
    falling loss alone cannot tell apart from learning.
    """
    return features.astype(jnp.float32).std(axis=0).mean()


def ema_update(target_params, online_params, momentum):
    """theta_target <- m * theta_target + (1 - m) * theta_online, leaf by leaf."""
    return jax.tree.map(lambda t, o: momentum * t + (1.0 - momentum) * o.astype(t.dtype), target_params,
                        online_params)


def ema_momentum(step, start: float, end: float, total_steps: int):
    """Linear ramp from `start` to `end` over `total_steps` optimizer steps (V-JEPA's momentum scheduler)."""
    frac = jnp.clip(step / max(total_steps, 1), 0.0, 1.0)
    return start + (end - start) * frac


def epps_pulley(projections, t_max: float = 5.0, num_points: int = 17):
    """Epps–Pulley statistic of each column of `projections` [M, S] against N(0, 1): [S].

    T = M * integral over t in [-t_max, t_max] of |phi_emp(t) - exp(-t^2/2)|^2 * exp(-t^2/2) dt (trapezoid rule on
    `num_points` nodes), where phi_emp(t) = mean_m exp(i t x_m) is the empirical characteristic function. The
    integrand is even in t, so it is evaluated on t >= 0 only and doubled (same nodes when num_points is odd).
    For Gaussian samples E[T] = sqrt(2 pi) - sqrt(2 pi / 3) ~ 1.06 (independent of M); it grows like M otherwise.
    """
    t = jnp.linspace(0.0, t_max, (num_points + 1) // 2)
    gauss = jnp.exp(-0.5 * t ** 2)
    xt = projections.astype(jnp.float32)[:, :, None] * t  # [M, S, P]
    real = jnp.cos(xt).mean(0) - gauss
    imag = jnp.sin(xt).mean(0)
    err = (jnp.square(real) + jnp.square(imag)) * gauss  # [S, P]
    return 2.0 * jnp.trapezoid(err, t, axis=-1) * projections.shape[0]


def sigreg(embeddings, key, num_slices: int = 256, t_max: float = 5.0, num_points: int = 17):
    """SIGReg: Epps–Pulley statistic over `num_slices` fresh random unit directions, averaged, divided by M.

    Dividing by the sample count M keeps the loss scale independent of how many samples (clips x tokens) are
    pooled: ~1.06 / M for isotropic standard Gaussian embeddings, up to ~0.41 for fully collapsed ones.
    (LeJEPA's lambda multiplies the undivided statistic, so lambda_here ~ lambda_LeJEPA x M.)

    Args:
      embeddings: [M, D] samples (e.g. all tokens of a batch).
      key: PRNG key; draw a fresh one every step.

    Returns:
      scalar.
    """
    directions = jax.random.normal(key, (embeddings.shape[-1], num_slices))
    directions = directions / jnp.linalg.norm(directions, axis=0, keepdims=True)
    projections = embeddings.astype(jnp.float32) @ directions
    return epps_pulley(projections, t_max, num_points).mean() / embeddings.shape[0]
