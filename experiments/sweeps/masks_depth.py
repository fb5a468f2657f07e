r"""What matters for the probe score: how much is masked, or how deep the predictor is? Tiny built-in world.

    jepa-jax sweep experiments/sweeps/masks_depth.py --workdir runs/sweeps/masks_depth

The long-range mask's block scale sets the masked fraction (0.5 -> about half the tokens, 0.7 -> most of them);
the predictor depth sets how much the predictor can do on its own. Each run trains the default (SIGReg)
objective for 150 steps and reports the frozen-feature probes of ball position and velocity.
"""


def get_sweep():
    return dict(
        config="experiments/configs/tiny_world.py",
        fixed={"train.steps": 150, "train.checkpoint_every": 0, "probe.at_fractions": (1.0,)},
        grid={"masks.long_range.spatial_scale": ((0.5, 0.5), (0.7, 0.7)), "model.predictor.depth": (1, 2, 4)},
        report=("velocity/time", "position/quad", "target_spread", "prediction_loss"),
    )
