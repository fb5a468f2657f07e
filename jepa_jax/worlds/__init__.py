"""Procedurally generated video worlds (no download needed).

``bouncing_balls``: coloured balls under gravity bouncing elastically off the
walls and each other, with an optional occluder; uint8 clips plus per-frame
ground-truth state. ``physics_pairs``: violation-of-expectation pairs of those clips (one possible, one
impossible) for intuitive-physics tests.
"""

from jepa_jax.worlds.bouncing_balls import (
    BACKGROUND_COLOR,
    BALL_COLORS,
    MAX_BALLS,
    OCCLUDER_COLOR,
    BallsState,
    BallsWorldConfig,
    BallsWorldSource,
    Clip,
    generate_clip,
    initial_state,
    render,
    simulate,
    step,
)

__all__ = [
    "BACKGROUND_COLOR",
    "BALL_COLORS",
    "MAX_BALLS",
    "OCCLUDER_COLOR",
    "BallsState",
    "BallsWorldConfig",
    "BallsWorldSource",
    "Clip",
    "generate_clip",
    "initial_state",
    "render",
    "simulate",
    "step",
]
