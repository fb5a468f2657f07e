"""The environment interface of the planning world models: pixels, proprioception and a settable state.

An environment hides its reward and success signal: observations carry only what a camera and the robot's own
sensors see (`pixels`, `proprio`) and the full simulator `state`, which data collection stores for evaluation and
which `set_state` restores (goals are reached by stepping from a start state and going back; oracle planners use
it too). Success is a function of two states, never part of an observation.
"""

import abc
from typing import NamedTuple

import numpy as np


NO_PIXELS = np.zeros((0, 0, 3), np.uint8)  # the pixels of an environment made with render=False


class Observation(NamedTuple):
    """pixels uint8 [H, W, 3] (NO_PIXELS without rendering), proprio float32 [S], state float64 [D]."""
    pixels: np.ndarray
    proprio: np.ndarray
    state: np.ndarray


class Env(abc.ABC):
    """A seeded simulator with continuous actions in [action_low, action_high] (float32 [A])."""

    name: str
    action_dim: int
    proprio_dim: int
    state_dim: int
    image_size: int
    action_low: np.ndarray
    action_high: np.ndarray

    @abc.abstractmethod
    def reset(self, seed: int) -> Observation:
        """Start an episode; the same seed gives the same start."""

    @abc.abstractmethod
    def step(self, action: np.ndarray) -> Observation:
        """Apply action [A] (clipped to the bounds) for one control step."""

    @abc.abstractmethod
    def set_state(self, state: np.ndarray) -> Observation:
        """Put the simulator in state [D] and observe it."""

    @abc.abstractmethod
    def success(self, state: np.ndarray, goal_state: np.ndarray) -> bool:
        """Whether state [D] counts as having reached goal_state [D]."""

    @abc.abstractmethod
    def state_distance(self, state: np.ndarray, goal_state: np.ndarray) -> float:
        """A task distance between state [D] and goal_state [D] (0 at the goal)."""

    def clip_action(self, action) -> np.ndarray:
        """action [A] as float64, clipped to the bounds; a wrong shape is a one-line error."""
        action = np.asarray(action, np.float64)
        if action.shape != (self.action_dim,):
            raise ValueError(f"{self.name}: action has shape {action.shape}, expected ({self.action_dim},)")
        return np.clip(action, self.action_low, self.action_high)

    def check_state(self, state) -> np.ndarray:
        """state [D] as float64; a wrong shape is a one-line error."""
        state = np.asarray(state, np.float64)
        if state.shape != (self.state_dim,):
            raise ValueError(f"{self.name}: state has shape {state.shape}, expected ({self.state_dim},)")
        return state
