r"""Where does the EMA target collapse? EMA start momentum x peak learning rate, tiny built-in world.

    jepa-jax sweep experiments/sweeps/ema_lr.py --workdir runs/sweeps/ema_lr

Question: V-JEPA users report partial collapse and fix it by "exploring LR/EMA parameters" (vjepa2#74, #109).
Each run trains the EMA objective for 150 steps; the table reports the collapse monitors at the end (std across
the batch, effective rank of the target features, predictor-target cosine) and the frozen-feature probe of ball
velocity. Low spread and rank with a high cosine = the predictor matches a collapsed target.
"""


def get_sweep():
    return dict(
        config="experiments/configs/tiny_world.py",
        fixed={"objective": "ema", "train.steps": 150, "train.checkpoint_every": 0, "probe.at_fractions": (1.0,)},
        grid={"ema.start": (0.99, 0.996, 0.999), "optim.lr": (1e-4, 1e-3)},
        report=("target_spread", "target_effective_rank", "prediction_cosine", "loss", "velocity/time"),
    )
