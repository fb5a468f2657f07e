r"""Action-conditioned world model on PushT, trained from pixels on CPU, that plans (recipes.world_model).

    jepa-jax data collect --env pusht --episodes 1000 --out data/pusht --workers 2
    jepa-jax train --config experiments/configs/pusht_ac.py --config.data.trajectories=data/pusht \
        --workdir runs/pusht_ac
    jepa-jax plan --model runs/pusht_ac --env pusht --episodes 50 --seed 0

PushT (gym-pusht): 2-D agent targets, the agent position as proprio; 64 x 64 frames.
"""

import ml_collections

from jepa_jax import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The PushT world-model config; arg "smoke" shrinks it to a seconds-long run for tests."""
    return recipes.world_model(env_action_dim=2, proprio_dim=2, smoke=arg == "smoke")
