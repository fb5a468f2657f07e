"""Reacher (dm_control suite "reacher", "easy"): a two-link planar arm moves its fingertip over a table.

Action: shoulder and wrist torques in [-1, 1] for one control step of 0.02 s (the suite's physics step; it has no
action repeat). Pixels: the suite's fixed top-down camera (camera 0), which also shows the task's target sphere.
Proprio: joint angles and velocities (4). State: qpos (2), qvel (2) and the target's (x, y) (2), since the target
moves with the seed and `set_state` must reproduce the whole scene. Success: the fingertip within 0.02 (the
finger's diameter) of the goal state's fingertip; the suite's own target tolerance (0.05 plus the finger radius)
is looser, and goals here are states, not the target sphere. Rendering needs MUJOCO_GL (egl by default here).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from dm_control import suite  # pylint: disable=g-import-not-at-top,wrong-import-position

from jepa_jax.envs.base import NO_PIXELS, Env, Observation  # pylint: disable=g-import-not-at-top,wrong-import-position

FINGERTIP_TOLERANCE = 0.02
CAMERA = 0


class Reacher(Env):
    """dm_control's reacher-easy with pixels of image_size x image_size (render=False: no pixels)."""

    name = "reacher"
    action_dim, proprio_dim, state_dim = 2, 4, 6

    def __init__(self, image_size: int = 64, render: bool = True):
        self.image_size, self.render = image_size, render
        self.action_low = np.full(2, -1.0, np.float32)
        self.action_high = np.full(2, 1.0, np.float32)
        # No time limit: the collector decides episode lengths. reset(seed) reseeds the task's RandomState in
        # place, which draws what suite.load(..., task_kwargs={"random": seed}) would.
        self._env = suite.load("reacher", "easy", task_kwargs={"random": 0, "time_limit": float("inf")})
        self._physics = self._env.physics
        self._kinematics = mujoco.MjData(self._physics.model.ptr)  # fingertips of given states

    def _observe(self) -> Observation:
        data = self._physics.named
        qpos, qvel = self._physics.data.qpos, self._physics.data.qvel
        target = data.model.geom_pos["target", ["x", "y"]]
        pixels = (self._physics.render(self.image_size, self.image_size, camera_id=CAMERA) if self.render
                  else NO_PIXELS)
        return Observation(pixels, np.concatenate([qpos, qvel]).astype(np.float32),
                           np.concatenate([qpos, qvel, target]).astype(np.float64))

    def reset(self, seed: int) -> Observation:
        self._env.task.random.seed(seed)
        self._env.reset()
        return self._observe()

    def step(self, action) -> Observation:
        self._env.step(self.clip_action(action))
        return self._observe()

    def set_state(self, state) -> Observation:
        state = self.check_state(state)
        with self._physics.reset_context():
            self._physics.data.qpos[:] = state[:2]
            self._physics.data.qvel[:] = state[2:4]
            self._physics.named.model.geom_pos["target", ["x", "y"]] = state[4:]
        return self._observe()

    def fingertip(self, state) -> np.ndarray:
        """(x, y) of the fingertip in state [D] (forward kinematics of its joint angles)."""
        self._kinematics.qpos[:] = np.asarray(state)[:2]
        mujoco.mj_kinematics(self._physics.model.ptr, self._kinematics)
        return self._kinematics.geom("finger").xpos[:2].copy()

    def state_distance(self, state, goal_state) -> float:
        """Distance between the fingertips of the two states."""
        return float(np.linalg.norm(self.fingertip(state) - self.fingertip(goal_state)))

    def success(self, state, goal_state) -> bool:
        return self.state_distance(state, goal_state) < FINGERTIP_TOLERANCE
