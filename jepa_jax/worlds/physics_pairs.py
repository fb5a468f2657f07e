"""Violation-of-expectation pairs in the bouncing-balls world, for intuitive-physics tests.

A pair is two clips of one scene that are pixel-identical before ``event_frame``. From there the *possible* clip
goes on under the world's physics (it is exactly ``simulate(config, world_seed)``), and the *impossible* clip
breaks one rule, its ``category`` (the properties tested on infants and by Garrido et al. 2025, arXiv 2502.11831):

- ``permanence``: a ball vanishes (variant ``vanish``), or one appears from nowhere (``appear``; its possible twin
  never shows it). IntPhys's quadruplet, as two pairs. The ball touches no other ball in the whole clip, so whether
  it is drawn changes nothing else. With the world's occluder on, the event happens while the ball is behind it.
- ``continuity``: a ball teleports (a jump no speed the world allows could make in one frame).
- ``solidity``: two balls that collide in the possible clip pass through each other.
- ``inertia``: a ball in free flight, away from walls and balls, turns round without cause (an impulse of at least
  1.7 times its speed).
- ``gravity``: a ball starts falling upwards (gravity reversed for it from the event on).
- ``constancy``: two balls swap colours. Every frame keeps the world's palette, so only each ball's identity over
  time gives it away (a colour no ball has would be a novelty that even a random-init encoder notices).

Each pair is a pure function of ``(config, category, seed)``: attempts draw scenes from
``np.random.SeedSequence([seed, attempt])`` until one allows the event (e.g. a collision for ``solidity``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from jepa_jax.worlds.bouncing_balls import (BALL_COLORS, BallsState, BallsWorldConfig, initial_state,
                                            occluder_left_edge, render, step)

CATEGORIES = ("permanence", "continuity", "solidity", "inertia", "gravity", "constancy")
_MAX_ATTEMPTS = 2000


@dataclasses.dataclass(frozen=True)
class Track:
    """One clip of a pair with its ground truth.

    Attributes:
        frames: uint8 ``[T, H, W, 3]``.
        position: float32 ``[T, N, 2]`` ball centres ``(x, y)`` in px (also of balls not drawn).
        velocity: float32 ``[T, N, 2]`` px per frame.
        radius: float32 ``[N]`` px (physical: mass is proportional to ``radius**2``).
        shown: bool ``[T, N]``: ball drawn in frame t.
        color: uint8 ``[T, N, 3]`` colour of each ball in each frame.
        contacts: per frame, the pairs ``(i, j)`` of balls that touched during the step into it.
    """

    frames: np.ndarray
    position: np.ndarray
    velocity: np.ndarray
    radius: np.ndarray
    shown: np.ndarray
    color: np.ndarray
    contacts: tuple[frozenset, ...]


@dataclasses.dataclass(frozen=True)
class PhysicsPair:
    """A possible clip and its impossible twin, identical before ``event_frame``.

    Attributes:
        possible, impossible: the two clips.
        category: one of ``CATEGORIES``; variant: what happens (e.g. ``vanish`` or ``appear``).
        event_frame: the first frame in which the impossible clip's state differs.
        balls: the balls that break the rule.
        world_seed: ``possible`` is ``simulate(config, world_seed)``.
        occluder_x: left edge of the occluder in px, or nan.
    """

    possible: Track
    impossible: Track
    category: str
    variant: str
    event_frame: int
    balls: tuple[int, ...]
    world_seed: int
    occluder_x: float


@dataclasses.dataclass(frozen=True)
class _Scene:
    """What one attempt draws: a world seed, its rng for the event, the base trajectory."""
    world_seed: int
    rng: np.random.Generator
    start: BallsState
    base: dict


def _simulate(config: BallsWorldConfig, start: BallsState, *, perturb: Callable | None = None,
              force: Callable | None = None, passes: frozenset = frozenset()) -> dict:
    """The world's frame loop (as ``simulate``) with per-frame contact pairs, an optional ``force(t)`` ``[N, 2]``
    during the step into frame t, and pairs that pass through each other."""
    state, frames = start, []
    for t in range(config.num_frames):
        touched: list = []
        if t > 0:
            state = step(state, config, force=force(t) if force else None, contacts=touched, passes=passes)
        if perturb is not None:
            state = perturb(t, state)
        frames.append((state.position.copy(), state.velocity.copy(), frozenset(touched)))
    position, velocity, contacts = zip(*frames)
    return {"position": np.array(position, np.float32), "velocity": np.array(velocity, np.float32),
            "radius": start.radius.astype(np.float32), "contacts": tuple(contacts)}


def _track(config: BallsWorldConfig, sim: dict, occluder_x: float, shown=None, color=None) -> Track:
    num_frames, n = sim["position"].shape[:2]
    shown = np.ones((num_frames, n), bool) if shown is None else shown
    color = np.broadcast_to(BALL_COLORS[:n], (num_frames, n, 3)).copy() if color is None else color
    frames = render(sim["position"], np.where(shown, sim["radius"], 0.0), config, occluder_x, colors=color)
    return Track(frames, sim["position"], sim["velocity"], sim["radius"], shown, color, sim["contacts"])


def event_range(num_frames: int) -> tuple[int, int]:
    """Frames ``[low, high]`` an event may happen in: the middle half of the clip, so windows see it coming."""
    margin = max(2, num_frames // 4)
    return margin, num_frames - margin


def _touching(contacts: tuple[frozenset, ...], ball: int) -> np.ndarray:
    """bool [T]: ball touched another ball during the step into frame t."""
    return np.array([any(ball in pair for pair in frame) for frame in contacts])


def _hidden(config: BallsWorldConfig, position: np.ndarray, radius: float, occluder_x: float) -> np.ndarray:
    """bool [T]: a ball of this radius at x = position[:, 0] is entirely behind the occluder (its 1-px soft edge
    clear of the occluder's partly covered edge columns)."""
    x = position[:, 0]
    return (x - radius - 1.5 >= occluder_x) & (x + radius + 1.5 <= occluder_x + config.occluder_width)


def _permanence(config, scene, occluder_x):
    base, rng = scene.base, scene.rng
    low, high = event_range(config.num_frames)
    free = [k for k in range(config.num_balls) if not _touching(base["contacts"], k).any()]
    if not free:
        return None
    ball = int(rng.choice(free))
    frames = np.arange(low, high + 1)
    if not math.isnan(occluder_x):  # vanish / appear behind the occluder, and be seen again after it
        hidden = _hidden(config, base["position"][:, ball], base["radius"][ball], occluder_x)
        frames = [t for t in frames if hidden[t] and not hidden[t:].all()]
        if not frames:
            return None
    event = int(rng.choice(frames))
    variant = str(rng.choice(["vanish", "appear"]))
    shown = np.ones((config.num_frames, config.num_balls), bool)
    if variant == "appear":
        shown[:, ball] = False
    broken = shown.copy()
    broken[event:, ball] = variant == "appear"
    return (_track(config, base, occluder_x, shown), _track(config, base, occluder_x, broken), variant, event,
            (ball,))


def _free_spot(config, others: np.ndarray, other_radii: np.ndarray, radius: float, avoid: np.ndarray,
               min_jump: float, rng) -> np.ndarray | None:
    """A centre inside the walls, >= min_jump from `avoid`, overlapping no other ball (1 px margin)."""
    candidates = rng.uniform(radius, config.size - radius, size=(64, 2))
    far = np.linalg.norm(candidates - avoid, axis=-1) >= min_jump
    gap = np.linalg.norm(candidates[:, None] - others[None], axis=-1)
    free = np.all(gap >= other_radii + radius + 1.0, axis=1)
    fits = np.flatnonzero(far & free)
    return candidates[fits[0]] if len(fits) else None


def max_frame_displacement(config: BallsWorldConfig) -> float:
    """An upper bound on how far a ball can move in one frame: twice the fastest speed energy allows (an elastic
    collision can at most double a light ball's speed)."""
    return 2 * math.sqrt(config.max_speed**2 + 2 * config.gravity * config.size)


def _ball_and_event(config, rng) -> tuple[int, int]:
    """A uniformly drawn ball, then an event frame uniform in event_range."""
    ball = int(rng.integers(config.num_balls))
    return ball, int(rng.integers(*event_range(config.num_frames), endpoint=True))


def _continuity(config, scene, occluder_x):
    base, rng = scene.base, scene.rng
    ball, event = _ball_and_event(config, rng)
    others = np.arange(config.num_balls) != ball
    target = _free_spot(config, base["position"][event, others], base["radius"][others], base["radius"][ball],
                        base["position"][event - 1, ball], 1.5 * max_frame_displacement(config), rng)
    if target is None:
        return None

    def teleport(t, state):
        if t != event:
            return state
        position = state.position.copy()
        position[ball] = target
        return dataclasses.replace(state, position=position)

    broken = _simulate(config, scene.start, perturb=teleport)
    return _track(config, base, occluder_x), _track(config, broken, occluder_x), "teleport", event, (ball,)


def _solidity(config, scene, occluder_x):
    base, rng = scene.base, scene.rng
    low, high = event_range(config.num_frames)
    first: dict = {}
    for t, frame in enumerate(base["contacts"]):
        for pair in frame:
            first.setdefault(pair, t)
    pairs = sorted(pair for pair, t in first.items() if low <= t <= high)
    if not pairs:
        return None
    i, j = pairs[int(rng.integers(len(pairs)))]
    broken = _simulate(config, scene.start, passes=frozenset({(i, j)}))
    gap = np.linalg.norm(broken["position"][:, i] - broken["position"][:, j], axis=-1)
    if gap.min() > 0.5 * (base["radius"][i] + base["radius"][j]):  # a graze: they must visibly interpenetrate
        return None
    return _track(config, base, occluder_x), _track(config, broken, occluder_x), "pass_through", first[(i, j)], (i, j)


def _clear_of_walls(config, position: np.ndarray, margin: float) -> np.ndarray:
    return np.all((position >= margin) & (position <= config.size - margin), axis=-1)


def _inertia(config, scene, occluder_x):
    base, rng = scene.base, scene.rng
    ball = int(rng.integers(config.num_balls))
    radius = base["radius"][ball]
    low, high = event_range(config.num_frames)
    reach = radius + 3 * config.max_speed
    speed = np.linalg.norm(base["velocity"][:, ball], axis=-1)
    touching = _touching(base["contacts"], ball)
    ok = [t for t in range(low, high + 1) if speed[t - 1] >= config.min_speed and not touching[t - 1:t + 2].any()
          and _clear_of_walls(config, base["position"][t - 1:t + 2, ball], reach).all()]
    if not ok:
        return None
    event = int(rng.choice(ok))
    angle = rng.uniform(2 * np.pi / 3, np.pi) * rng.choice([-1, 1])
    v = base["velocity"][event - 1, ball].astype(np.float64)
    turned = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ v
    kick = np.zeros((config.num_balls, 2))
    kick[ball] = turned - v  # an impulse over the step into the event frame: velocity change turned - v

    broken = _simulate(config, scene.start, force=lambda t: kick if t == event else None)
    if _touching(broken["contacts"], ball)[event:event + 2].any():  # the turn must not look like a bounce
        return None
    return _track(config, base, occluder_x), _track(config, broken, occluder_x), "turn", event, (ball,)


def _gravity(config, scene, occluder_x):
    ball, event = _ball_and_event(config, scene.rng)
    lift = np.zeros((config.num_balls, 2))
    lift[ball, 1] = -2 * config.gravity  # net acceleration -gravity: it falls upwards
    broken = _simulate(config, scene.start, force=lambda t: lift if t >= event else None)
    return _track(config, scene.base, occluder_x), _track(config, broken, occluder_x), "fall_up", event, (ball,)


def _constancy(config, scene, occluder_x):
    rng, n = scene.rng, config.num_balls
    ball, event = _ball_and_event(config, rng)
    other = int(rng.choice(np.delete(np.arange(n), ball)))
    color = np.broadcast_to(BALL_COLORS[:n], (config.num_frames, n, 3)).copy()
    color[event:, [ball, other]] = BALL_COLORS[[other, ball]]
    possible = _track(config, scene.base, occluder_x)
    return possible, _track(config, scene.base, occluder_x, color=color), "swap", event, (ball, other)


_TWO_BALLS = {"solidity": "two of them collide", "constancy": "two of them swap colours"}
_MAKERS = {"permanence": _permanence, "continuity": _continuity, "solidity": _solidity, "inertia": _inertia,
           "gravity": _gravity, "constancy": _constancy}


def stageable(config: BallsWorldConfig, category: str) -> bool:
    """Whether this world can stage the category's event (``solidity`` and ``constancy`` need two balls)."""
    return category not in _TWO_BALLS or config.num_balls >= 2


def check_category(category: str) -> str:
    """The category, or a one-line ValueError listing the valid ones."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown physics category {category!r}: choose from {', '.join(CATEGORIES)}")
    return category


def make_pair(config: BallsWorldConfig, category: str, seed: int) -> PhysicsPair:
    """One pair of ``category`` (see the module docstring); a pure function of its arguments.

    Raises:
        ValueError: for an unknown category, a clip too short for an event window, or one ball where the event
            needs two.
        RuntimeError: when no scene of this world allows the event (e.g. no collisions ever).
    """
    check_category(category)
    if config.num_frames < 6:
        raise ValueError(f"num_frames={config.num_frames}: physics pairs need at least 6 frames")
    if not stageable(config, category):
        raise ValueError(f"{category} pairs need two balls (num_balls={config.num_balls}): {_TWO_BALLS[category]}")
    for attempt in range(_MAX_ATTEMPTS):
        rng = np.random.default_rng(np.random.SeedSequence([seed, attempt]))
        world_seed = int(rng.integers(2**31))
        start = initial_state(config, np.random.default_rng(world_seed))
        scene = _Scene(world_seed, rng, start, _simulate(config, start))
        occluder_x = occluder_left_edge(config, world_seed)
        made = _MAKERS[category](config, scene, occluder_x)
        if made is not None:
            possible, impossible, variant, event, balls = made
            return PhysicsPair(possible, impossible, category, variant, event, balls, world_seed, occluder_x)
    raise RuntimeError(f"no {category} event found in {_MAX_ATTEMPTS} scenes of {config}")


def make_pairs(config: BallsWorldConfig, categories=CATEGORIES, num_pairs: int = 64, seed: int = 0):
    """``num_pairs`` pairs per category; pair i of category c is ``make_pair(config, c, seed_ci)`` with
    ``seed_ci`` from ``SeedSequence([seed, CATEGORIES.index(c), i])``, so adding a category changes no other."""
    pairs = []
    for category in categories:
        index = CATEGORIES.index(check_category(category))
        for i in range(num_pairs):
            pair_seed = np.random.SeedSequence([seed, index, i]).generate_state(1)[0]
            pairs.append(make_pair(config, category, int(pair_seed)))
    return pairs
