r"""Action-conditioned world model on Reacher (dm_control reacher-easy), trained from pixels on CPU
(recipes.world_model).

    jepa-jax data collect --env reacher --episodes 200 --steps_per_episode 50 --out data/reacher
    jepa-jax train --config experiments/configs/reacher_ac.py --config.data.trajectories=data/reacher \
        --workdir runs/reacher_ac
    jepa-jax plan --model runs/reacher_ac --env reacher --episodes 50 --seed 0

Reacher: 2 joint torques, joint angles and velocities as proprio (4); 64 x 64 frames.
"""

import ml_collections

from jepa_jax import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The Reacher world-model config; arg "smoke" shrinks it to a seconds-long run for tests."""
    return recipes.world_model(env_action_dim=2, proprio_dim=4, smoke=arg == "smoke")
