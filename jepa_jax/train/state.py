"""TrainState: everything a training run carries from step to step, as one pytree with one sharding."""

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jepa_jax.models import stacking


@flax.struct.dataclass
class TrainState:
    """step: int32 scalar; params: {'encoder', 'predictor'[, 'online_probe']} (a probe run: {'encoder', 'probe'});
    ema_params: target-encoder params (EMA objective)
    or None; opt_state: optax state; rng: PRNG key for per-step randomness (e.g. SIGReg directions)."""
    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: optax.OptState
    rng: jax.Array


def replicate(boxed_params, members: int):
    """Every parameter repeated along a leading [members] axis (logical name `members`): G copies of one init."""
    def copies(box):
        return box.replace(value=jnp.broadcast_to(box.value, (members,) + box.value.shape),
                           names=("members",) + tuple(box.names))
    return jax.tree.map(copies, boxed_params, is_leaf=lambda x: isinstance(x, nn.Partitioned))


def init_train_state(rng, encoder, predictor, optimizer, sample_video, predictor_inputs, use_ema: bool,
                     stacked: bool = False, members: int = 0, online_probe: tuple[int, int] | None = None):
    """Initialise a TrainState (params keep their logical-partitioning boxes; see parallel.init_sharded).

    Args:
      rng: PRNG key.
      encoder, predictor: the Flax modules.
      optimizer: optax transformation.
      sample_video: float [1, T, H, W, C] array (or abstract value) of the clip shape.
      predictor_inputs: sample arguments of predictor.init (config.predictor_inputs).
      use_ema: keep an EMA copy of the encoder (the `ema` objective).
      stacked: hold the transformer blocks stacked (models/stacking.py; config.model.scan_layers).
      members: > 0 for a probe grid: the predictor is a probe head, held as params["probe"] with `members` copies
        of its initial weights (state.replicate).
      online_probe: (inputs, outputs) of the online probe, a zero-initialised linear map params["online_probe"]
        ({"kernel", "bias"}; config.online_probe_shape), or None.
    """
    enc_key, pred_key, state_key = jax.random.split(rng, 3)
    encoder_params = encoder.init(enc_key, sample_video)["params"]
    predictor_params = predictor.init(pred_key, *predictor_inputs)["params"]
    if members:
        params = {"encoder": encoder_params, "probe": replicate(predictor_params, members)}
    else:
        params = {"encoder": encoder_params, "predictor": predictor_params}
    if online_probe:
        zeros = lambda *shape: nn.Partitioned(jnp.zeros(shape, jnp.float32), (None,) * len(shape))
        params["online_probe"] = {"kernel": zeros(*online_probe), "bias": zeros(online_probe[1])}
    if stacked:
        params = stacking.stack(params)
        encoder_params = params["encoder"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      ema_params=jax.tree.map(jnp.copy, encoder_params) if use_ema else None,
                      opt_state=optimizer.init(params), rng=state_key)
