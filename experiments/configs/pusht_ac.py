r"""Action-conditioned world model on PushT (a first CPU configuration; planning and its success rate come next).

    jepa-jax data collect --env pusht --episodes 200 --out data/pusht
    jepa-jax train --config experiments/configs/pusht_ac.py --config.data.trajectories=data/pusht \
        --workdir runs/pusht_ac

The data are `jepa-jax data collect` trajectories (64 x 64 frames, 2-D agent targets, agent position as proprio).
Windows of 4 frames, one every 5 environment steps as DINO-WM's PushT setting (frameskip 5: the 5 actions between
kept frames are concatenated into one 10-d action). The encoder is trained jointly from pixels with SIGReg
(LeWorldModel style; config.ac.encoder="frozen" with config.ac.encoder_from=RUN takes a pretrained jepa_jax
encoder instead, V-JEPA 2-AC style). The loss is V-JEPA 2-AC's teacher-forcing + 2-step rollout L1, plus the
next-proprio term.
"""

import ml_collections

from jepa_jax import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The PushT world-model config; arg "smoke" shrinks it to a seconds-long run for tests."""
    config = recipes.base_config()
    config.objective = "ac"
    config.data.source = "trajectories"
    config.model.update(size="micro", patch_size=8, tubelet_size=2)
    config.ac.update(encoder="joint", num_frames=4, frameskip=5, image_size=64, action_dim=10, proprio_dim=2,
                     rollout_steps=3, predict_proprio=True, pool_grid=1)
    config.ac.predictor.update(width=64, depth=3, num_heads=4)
    config.data.batch_size = 32
    config.train.update(steps=2000, log_every=20, checkpoint_every=500)
    config.optim.update(lr=5e-4, start_lr=1e-4, final_lr=1e-5, warmup_steps=100)
    config.probe.report = False  # the built-in-world probes do not apply; `jepa-jax plan` evaluates this model
    if arg == "smoke":
        config.model.size = "nano"
        config.ac.update(image_size=32, num_frames=3, frameskip=2, action_dim=4, rollout_steps=2)
        config.ac.predictor.update(width=32, depth=2, num_heads=2)
        config.data.batch_size = 8
        config.train.update(steps=4, log_every=1, checkpoint_every=2)
    return config
