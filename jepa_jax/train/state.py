"""TrainState: everything a training run carries from step to step, as one pytree with one sharding."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jepa_jax.models import vit


@flax.struct.dataclass
class TrainState:
    """step: int32 scalar; params: {'encoder', 'predictor'}; ema_params: target-encoder params (EMA objective)
    or None; opt_state: optax state; rng: PRNG key for per-step randomness (e.g. SIGReg directions)."""
    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: optax.OptState
    rng: jax.Array


def init_train_state(rng, encoder, predictor, optimizer, sample_video, grid, use_ema: bool):
    """Initialise a TrainState (params keep their logical-partitioning boxes; see parallel.init_sharded).

    Args:
      rng: PRNG key.
      encoder, predictor: the Flax modules.
      optimizer: optax transformation.
      sample_video: float [1, T, H, W, C] array (or abstract value) of the clip shape.
      grid: (T', H', W') token grid.
      use_ema: keep an EMA copy of the encoder (the `ema` objective).
    """
    enc_key, pred_key, state_key = jax.random.split(rng, 3)
    encoder_params = encoder.init(enc_key, sample_video)["params"]
    # The predictor's weights do not depend on how many tokens it sees: one context and one target token.
    context = jnp.zeros((1, 1, vit.get_size(encoder.size).width), jnp.float32)
    index = jnp.zeros((1, 1), jnp.int32)
    predictor_params = predictor.init(pred_key, context, index, index, grid)["params"]
    params = {"encoder": encoder_params, "predictor": predictor_params}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      ema_params=jax.tree.map(jnp.copy, encoder_params) if use_ema else None,
                      opt_state=optimizer.init(params), rng=state_key)
