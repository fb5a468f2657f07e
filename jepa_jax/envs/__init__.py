"""Simulated environments for planning world models (the `sim` extra): `make("pusht")`, `make("reacher")`.

Every environment follows `base.Env`: seeded `reset`, `step(action)`, `set_state(state)` and state-based
`success` / `state_distance`; observations are `base.Observation(pixels, proprio, state)`.
"""

import importlib

from jepa_jax.envs.base import Env, Observation

# name -> (module, class): imported on demand, so that this package loads without the simulators.
ENVS = {"pusht": ("jepa_jax.envs.pusht", "PushT"), "reacher": ("jepa_jax.envs.reacher", "Reacher")}
SIM_PACKAGES = ("gymnasium", "gym_pusht", "pymunk", "pygame", "cv2", "dm_control", "mujoco")


def check_name(name: str) -> None:
    """A one-line error for an environment name that is not a key of ENVS."""
    if name not in ENVS:
        raise ValueError(f"environment {name!r} is unknown: choose one of {sorted(ENVS)}")


def make(name: str, image_size: int = 64, **kwargs) -> Env:
    """The environment `name` (a key of ENVS) rendering image_size x image_size pixels (render=False: none)."""
    check_name(name)
    module_name, class_name = ENVS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] in SIM_PACKAGES:
            raise ImportError(f"environment {name!r} needs {err.name}, which is not installed: "
                              f"pip install 'jepa_jax[sim]'") from err
        raise
    return getattr(module, class_name)(image_size=image_size, **kwargs)


__all__ = ["ENVS", "Env", "Observation", "check_name", "make"]
