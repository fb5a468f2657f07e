"""Exploration policies for collecting world-model data (host numpy, seeded by a np.random.Generator).

A policy is built per episode, `policy = make(env, rng)`, and maps the current observation to an action [A]
within the environment's bounds. Random actions alone rarely move PushT's block (and plan poorly), so each
environment also has a noisy scripted policy that makes contact on purpose; `episode_policy` draws one of the two.
"""

import numpy as np

from jepa_jax.envs import Env, Observation


class RandomWalk:
    """Temporally correlated random actions: u_0 ~ U[0, 1]^A,
    u_t = clip(u_{t-1} + step N(0, 1) - reversion (u_{t-1} - 1/2), 0, 1), and action = low + u_t (high - low).

    reversion > 0 pulls u back to the middle of the action box, where PushT's offsets are "stay": without it an
    offset walk holds one heading and pins the agent to the table's edge."""

    def __init__(self, env: Env, rng: np.random.Generator, step: float = 0.1, reversion: float = 0.0):
        self.low, self.high = env.action_low.astype(np.float64), env.action_high.astype(np.float64)
        self.rng, self.step, self.reversion = rng, step, reversion
        self.u = rng.uniform(size=env.action_dim)

    def __call__(self, observation: Observation) -> np.ndarray:
        action = self.low + self.u * (self.high - self.low)
        pull = self.reversion * (self.u - 0.5)
        self.u = np.clip(self.u + self.step * self.rng.normal(size=self.u.shape) - pull, 0.0, 1.0)
        return action


class PushTPusher:
    """Pushes of the T in random directions: the agent's target goes to a point `standoff` behind the block's
    centre (opposite the push direction) until the agent is within `reach` of it or `approach_steps` have passed,
    then to a point `push_length` past the centre for `push_steps`; Gaussian noise (std `noise`) on every target.
    The action is the target's offset from the agent, shortened to at most `approach_offset` / `push_offset` (the
    PD controller's speed grows with the offset) and clipped to the environment's bounds.

    The caps make slow, controlled pushes, as in DINO-WM's expert data. Without them (the environment's 40-unit
    bound) 25 pusher steps from a reset moved the block a median 139 units and turned it 32 degrees (61 pusher
    goals of 100 evaluation episodes of seed 0), goals that an oracle planning with the simulator itself reached
    1 time in 13 (CEM 64 x 5). With the caps, 25 steps from inside a pusher episode (evals.plan.GOAL_WARMUP) move
    it a median 28 units and turn it 10 degrees.
    """

    def __init__(self, env: Env, rng: np.random.Generator, noise: float = 8.0, standoff=(40.0, 60.0),
                 push_length=(40.0, 120.0), push_steps=(4, 12), approach_steps: int = 12, reach: float = 20.0,
                 approach_offset: float = 15.0, push_offset: float = 6.0):
        self.env, self.rng, self.noise = env, rng, noise
        self.max_offset = {"approach": approach_offset, "push": push_offset}
        self.low, self.high = env.action_low.astype(np.float64), env.action_high.astype(np.float64)
        self.standoff, self.push_length, self.push_steps = standoff, push_length, push_steps
        self.approach_steps, self.reach = approach_steps, reach
        self._new_push()

    def _new_push(self) -> None:
        angle = self.rng.uniform(0, 2 * np.pi)
        self.direction = np.array([np.cos(angle), np.sin(angle)])
        self.distance = self.rng.uniform(*self.standoff)
        self.length = self.rng.uniform(*self.push_length)
        self.phase, self.steps_left = "approach", self.approach_steps

    def __call__(self, observation: Observation) -> np.ndarray:
        state = observation.state
        centre = self.env.block_centre(state)
        behind = centre - self.distance * self.direction
        if self.phase == "approach" and (np.linalg.norm(state[:2] - behind) < self.reach or not self.steps_left):
            self.phase, self.steps_left = "push", int(self.rng.integers(*self.push_steps, endpoint=True))
        elif self.phase == "push" and not self.steps_left:
            self._new_push()
        target = behind if self.phase == "approach" else centre + self.length * self.direction
        self.steps_left -= 1
        offset = target + self.noise * self.rng.normal(size=2) - state[:2]
        offset *= min(1.0, self.max_offset[self.phase] / max(np.linalg.norm(offset), 1e-9))
        return np.clip(offset, self.low, self.high)


class ReacherJointTargets:
    """PD torques towards random joint targets (shoulder in [-π, π), wrist within ±`wrist_limit`) held for
    `hold` steps each: clip(kp (wrapped angle error) - kd velocity + N(0, noise²), -1, 1)."""

    def __init__(self, env: Env, rng: np.random.Generator, kp: float = 2.0, kd: float = 0.2, noise: float = 0.2,
                 hold=(15, 40), wrist_limit: float = 2.6):
        self.low, self.high = env.action_low.astype(np.float64), env.action_high.astype(np.float64)
        self.rng, self.kp, self.kd, self.noise = rng, kp, kd, noise
        self.hold, self.wrist_limit = hold, wrist_limit
        self.steps_left = 0

    def __call__(self, observation: Observation) -> np.ndarray:
        if not self.steps_left:
            self.target = np.array([self.rng.uniform(-np.pi, np.pi),
                                    self.rng.uniform(-self.wrist_limit, self.wrist_limit)])
            self.steps_left = int(self.rng.integers(*self.hold, endpoint=True))
        self.steps_left -= 1
        angles, velocities = observation.proprio[:2].astype(np.float64), observation.proprio[2:].astype(np.float64)
        error = (self.target - angles + np.pi) % (2 * np.pi) - np.pi
        torque = self.kp * error - self.kd * velocities + self.noise * self.rng.normal(size=2)
        return np.clip(torque, self.low, self.high)


SCRIPTED = {"pusht": PushTPusher, "reacher": ReacherJointTargets}
# The policies' version, stored in a collected folder's meta.json: `data collect` does not resume a folder of
# another version. 2: PushT's pusher caps its offsets (slow pushes).
VERSION = 2
# PushT random walks of 100 steps from 40 resets: reversion 0 keeps the agent within 25 of the table's edge in
# 61 % of the frames, 0.1 in 32 %, 0.2 in 18 %, 0.3 in 11 % (which moves the block in 10 % of the episodes,
# 0.2 in 20 %).
RANDOM_WALK_REVERSION = {"pusht": 0.2}


def episode_policy(env: Env, rng: np.random.Generator, policy_mix: float):
    """("scripted", policy) with probability policy_mix, else ("random_walk", RandomWalk)."""
    if rng.uniform() < policy_mix:
        return "scripted", SCRIPTED[env.name](env, rng)
    return "random_walk", RandomWalk(env, rng, reversion=RANDOM_WALK_REVERSION.get(env.name, 0.0))
