"""PushT (gym_pusht): a round agent pushes a T-shaped block on a 512 x 512 table.

Action: the offset (dx, dy) in [-MAX_OFFSET, MAX_OFFSET] of the agent's target from the agent's current position
(DINO-WM's relative actions); gym_pusht's PD controller follows the target for 10 physics steps of 0.01 s (a 10 Hz
control step). The target is clipped to the table (gym_pusht's absolute action box, [0, 512]^2): gym_pusht's agent
is a kinematic body that walls do not stop, and unclipped offsets walked it off the table (37 % of the frames of
1000 collected episodes, where the pixels show no agent). Relative actions make "stay" the zero action, where a
planner's search starts; with gym_pusht's absolute targets a fresh plan's samples jump across the table (an oracle
planning with the simulator itself reached none of 20 goals with absolute targets, CEM 64 x 5, and 11 of 12 with
offsets, CEM 100 x 10).
Proprio: the agent's position (2). State: (agent_x, agent_y, block_x, block_y, block_angle) (5), gym_pusht's own
state layout with the angle in [0, 2π); it holds no velocities, so `set_state` starts both bodies at rest. The
pixels also show gym_pusht's fixed green goal T (the same in every episode, unrelated to the goals planners are
given) and its contact points as red dots.
Success is DINO-WM's: agent and block positions within 20 (Euclidean norm over the 4 numbers) and the block angle
within π/9 of the goal's.
"""

import gymnasium
import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
import numpy as np

from jepa_jax.envs.base import NO_PIXELS, Env, Observation

POSITION_TOLERANCE = 20.0
ANGLE_TOLERANCE = np.pi / 9
# The T's centre of gravity in block coordinates (gym_pusht's add_tee: a 120 x 30 bar with a 30 x 90 stem).
BLOCK_COG = np.array([0.0, 45.0])
MAX_OFFSET = 40.0  # table units; held from rest, the agent covers about 15 per control step


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


class PushT(Env):
    """gym_pusht's PushT-v0 with pixels of image_size x image_size (render=False: no pixels, a faster simulator
    for planners that use it as their model)."""

    name = "pusht"
    action_dim, proprio_dim, state_dim = 2, 2, 5

    def __init__(self, image_size: int = 64, render: bool = True):
        self.image_size, self.render = image_size, render
        self.action_low = np.full(2, -MAX_OFFSET, np.float32)
        self.action_high = np.full(2, MAX_OFFSET, np.float32)
        # The bare simulator: no time limit or checker wrappers (the collector decides episode lengths).
        self._sim = gymnasium.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos" if render else "state",
                                   render_mode="rgb_array",
                                   observation_width=image_size, observation_height=image_size).unwrapped

    def _observe(self, obs: dict) -> Observation:
        sim = self._sim
        state = np.array([*sim.agent.position, *sim.block.position, sim.block.angle % (2 * np.pi)], np.float64)
        pixels = obs["pixels"] if self.render else NO_PIXELS
        return Observation(pixels, np.asarray(sim.agent.position, np.float32), state)

    def reset(self, seed: int) -> Observation:
        return self._observe(self._sim.reset(seed=seed)[0])

    def step(self, action) -> Observation:
        """Move the agent's target to its position + action [2] (clipped to +-MAX_OFFSET), kept on the table."""
        box = self._sim.action_space
        target = np.asarray(self._sim.agent.position, np.float64) + self.clip_action(action)
        target = np.clip(target, box.low, box.high)
        return self._observe(self._sim.step(target)[0])

    def set_state(self, state) -> Observation:
        """A fresh table (all velocities 0) with the bodies where `state` says, through gym_pusht's own reset."""
        state = self.check_state(state)
        # gym_pusht places the block at its position with angle 0 and then turns it about its centre of gravity,
        # which moves its origin by (I - R) BLOCK_COG: ask for the position that ends where `state` says.
        position = state[2:4] + (_rotation(state[4]) - np.eye(2)) @ BLOCK_COG
        obs, _ = self._sim.reset(options={"reset_to_state": np.array([*state[:2], *position, state[4]])})
        return self._observe(obs)

    def block_centre(self, state) -> np.ndarray:
        """World (x, y) of the T's centre of gravity in state [D]."""
        return np.asarray(state)[2:4] + _rotation(state[4]) @ BLOCK_COG

    def state_distance(self, state, goal_state) -> float:
        """Norm of the difference of (agent_x, agent_y, block_x, block_y)."""
        return float(np.linalg.norm(np.asarray(goal_state)[:4] - np.asarray(state)[:4]))

    def success(self, state, goal_state) -> bool:
        angle = abs(float(goal_state[4]) - float(state[4])) % (2 * np.pi)
        angle = min(angle, 2 * np.pi - angle)
        return self.state_distance(state, goal_state) < POSITION_TOLERANCE and angle < ANGLE_TOLERANCE
