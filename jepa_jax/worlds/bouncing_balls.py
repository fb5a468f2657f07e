"""Bouncing balls: a deterministic procedural physics video world (numpy only).

Several coloured balls move under gravity inside a square box, bouncing
elastically off the four walls and off each other; an optional fixed-colour
vertical bar (the occluder) is drawn over them. Clips are rendered as uint8
``[T, H, W, 3]`` videos together with the ground-truth state of every frame.

Coordinates. Positions are ``(x, y)`` in pixels, ``x`` to the right and ``y``
downwards (image coordinates), so gravity accelerates ``+y``. Pixel ``(row i,
column j)`` covers ``[j, j + 1) x [i, i + 1)``; its centre is ``(j + 0.5,
i + 0.5)``. The walls are at ``0`` and ``size``; a ball of radius ``r`` always
satisfies ``r <= x, y <= size - r``.

Physics. Each frame is ``substeps`` equal substeps of ``dt = 1 / substeps``
frames. A substep:

1. Free flight under the constant acceleration ``a = (0, gravity) + force``:
   ``p += v dt + a dt^2 / 2``, ``v += a dt`` (exact for constant ``a``).
2. Walls: a ball that crossed a wall while moving outwards is mirrored back
   into the box (penetration scaled by ``restitution``) and its normal velocity
   is reversed. The reversed speed is recomputed from energy conservation in
   the uniform field ``a`` at the mirrored position, ``v'^2 = v^2 + 2 a (p' -
   p)``, so a bounce under gravity neither creates nor destroys energy; it is
   then scaled by ``restitution``.
3. Ball-ball: overlapping pairs (detected for all pairs at once) are resolved
   one pair at a time in index order. An approaching pair exchanges momentum
   along the contact normal (mass proportional to ``r^2``, coefficient of
   restitution ``restitution``); equal masses with restitution 1 swap their
   normal velocity components. The overlap is removed by moving both balls
   apart along the normal in inverse proportion to their mass, which keeps
   the pair's centre of mass, hence the potential energy, unchanged.
   Resolving pairs one at a time keeps each contact exactly energy-conserving
   even when three balls touch at once.
4. Positions are clamped into the walls.

With ``restitution == 1`` the total energy ``sum_i m_i (|v_i|^2 / 2 + gravity
h_i)``, ``h_i = size - r_i - y_i`` (height above the lowest reachable centre),
is conserved up to the clamps in steps 2 and 4 (measured drift below 0.3%
over 128 frames for up to 8 balls; the tests allow 1%).

Randomness comes only from ``np.random.default_rng(seed)``; every function is
pure (inputs are never modified).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable

import numpy as np

BALL_COLORS = np.array(
    [
        [230, 25, 75],  # red
        [60, 180, 75],  # green
        [255, 225, 25],  # yellow
        [0, 130, 200],  # blue
        [245, 130, 48],  # orange
        [145, 30, 180],  # purple
        [70, 240, 240],  # cyan
        [240, 50, 230],  # magenta
    ],
    dtype=np.uint8,
)
"""uint8 ``[8, 3]``: RGB colour of ball ``i`` is ``BALL_COLORS[i]``."""

BACKGROUND_COLOR = np.array([20, 20, 28], dtype=np.uint8)
"""uint8 ``[3]``: constant dark background."""

OCCLUDER_COLOR = np.array([128, 128, 128], dtype=np.uint8)
"""uint8 ``[3]``: colour of the occluder bar."""

MAX_BALLS = len(BALL_COLORS)

# Fraction of the frame area that the balls (at the largest radius) may cover;
# keeps the rejection sampling of initial positions fast and reliable.
_MAX_BALL_AREA_FRACTION = 0.25
# Candidate positions drawn at once per ball, and restarts of the whole
# placement, in the rejection sampling of initial positions.
_PLACEMENT_CANDIDATES = 64
_PLACEMENT_RESTARTS = 100


def _check_int(name: str, value: object, low: int, high: float) -> int:
    if (
        not isinstance(value, numbers.Integral)
        or isinstance(value, bool)
        or not low <= value <= high
    ):
        raise ValueError(
            f"{name}={value!r} is invalid: must be an integer in [{low}, {high}]"
        )
    return int(value)


def _check_float(name: str, value: object, low: float, high: float) -> float:
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise ValueError(
            f"{name}={value!r} is invalid: must be a finite number in [{low}, {high}]"
        )
    return float(value)


@dataclasses.dataclass(frozen=True)
class BallsWorldConfig:
    """Configuration of the bouncing-balls world.

    Attributes:
        num_frames: frames ``T`` per clip.
        size: frames are ``size x size`` pixels; the box is ``[0, size]^2``.
        num_balls: balls ``N`` per clip (at most ``MAX_BALLS``); ball ``i``
            always has colour ``BALL_COLORS[i]``.
        radius: ``(low, high)`` px; each ball's radius is uniform in it.
        min_speed: px per frame; initial speeds are uniform in
            ``[min_speed, max_speed]`` with a uniform random direction.
        max_speed: px per frame, upper bound of the initial speed.
        gravity: px / frame^2, downwards (``+y``).
        restitution: coefficient of restitution of wall and ball-ball
            collisions (1 = elastic).
        substeps: physics substeps per frame.
        occluder: draw a vertical bar of colour ``OCCLUDER_COLOR`` over the
            balls, at a random ``x`` per clip.
        occluder_width: width of the occluder bar in px.
    """

    num_frames: int = 16
    size: int = 64
    num_balls: int = 3
    radius: tuple[float, float] = (4.0, 6.0)
    min_speed: float = 1.5
    max_speed: float = 4.0
    gravity: float = 0.15
    restitution: float = 1.0
    substeps: int = 4
    occluder: bool = False
    occluder_width: int = 14

    def __post_init__(self) -> None:
        """Validates every field and normalises it to a Python scalar.

        Normalising (e.g. ``np.int64(16)`` to ``16``, ``4`` to ``4.0``) keeps
        ``repr`` identical for equal configs.

        Raises:
            ValueError: naming the field, its value and the valid range.
        """
        for name, low, high in (
            ("num_frames", 1, 100_000),
            ("size", 8, 4096),
            ("num_balls", 1, MAX_BALLS),
        ):
            object.__setattr__(
                self, name, _check_int(name, getattr(self, name), low, high)
            )
        radius = self.radius
        if not isinstance(radius, (tuple, list)) or len(radius) != 2:
            raise ValueError(
                f"radius={radius!r} is invalid: must be a pair (low, high) with "
                f"1 <= low <= high <= size / 4 = {self.size / 4}"
            )
        low = _check_float("radius[0]", radius[0], 1.0, self.size / 4)
        high = _check_float("radius[1]", radius[1], low, self.size / 4)
        object.__setattr__(self, "radius", (low, high))
        ball_area = self.num_balls * math.pi * high**2
        if ball_area > _MAX_BALL_AREA_FRACTION * self.size**2:
            limit = int(_MAX_BALL_AREA_FRACTION * self.size**2 / (math.pi * high**2))
            raise ValueError(
                f"num_balls={self.num_balls} is invalid: balls of radius "
                f"{high} may cover at most {_MAX_BALL_AREA_FRACTION:.0%} of a "
                f"{self.size}x{self.size} frame, so num_balls must be in "
                f"[1, {limit}]"
            )
        max_speed = _check_float("max_speed", self.max_speed, 0.0, self.size / 2)
        object.__setattr__(self, "max_speed", max_speed)
        object.__setattr__(
            self, "min_speed", _check_float("min_speed", self.min_speed, 0.0, max_speed)
        )
        object.__setattr__(
            self, "gravity", _check_float("gravity", self.gravity, 0.0, self.size / 8)
        )
        object.__setattr__(
            self,
            "restitution",
            _check_float("restitution", self.restitution, 0.0, 1.0),
        )
        # Speed bound from energy conservation (a ball falling the whole box).
        # Two balls must not pass through each other in one substep.
        speed_bound = math.sqrt(max_speed**2 + 2 * self.gravity * self.size)
        min_substeps = max(1, math.ceil(speed_bound / low))
        object.__setattr__(
            self, "substeps", _check_int("substeps", self.substeps, min_substeps, 1000)
        )
        if not isinstance(self.occluder, (bool, np.bool_)):
            raise ValueError(
                f"occluder={self.occluder!r} is invalid: must be True or False"
            )
        object.__setattr__(self, "occluder", bool(self.occluder))
        object.__setattr__(
            self,
            "occluder_width",
            _check_int("occluder_width", self.occluder_width, 1, self.size),
        )


@dataclasses.dataclass(frozen=True)
class BallsState:
    """Physical state of all balls at one instant (float64 numpy arrays).

    Attributes:
        position: ``[N, 2]`` ball centres ``(x, y)`` in px.
        velocity: ``[N, 2]`` px per frame.
        radius: ``[N]`` px; mass is proportional to ``radius**2``.
    """

    position: np.ndarray
    velocity: np.ndarray
    radius: np.ndarray


@dataclasses.dataclass(frozen=True)
class Clip:
    """One rendered clip with its ground-truth state.

    Attributes:
        frames: uint8 ``[T, H, W, 3]``.
        position: float32 ``[T, N, 2]`` ball centres ``(x, y)`` in px.
        velocity: float32 ``[T, N, 2]`` px per frame.
        radius: float32 ``[N]`` px.
        occluder_x: left edge of the occluder in px, or nan without occluder.
        contacts: bool ``[T]``: two balls touched during the step into
            frame ``t`` (``simulate``).
    """

    frames: np.ndarray
    position: np.ndarray
    velocity: np.ndarray
    radius: np.ndarray
    occluder_x: float
    contacts: np.ndarray


def initial_state(config: BallsWorldConfig, rng: np.random.Generator) -> BallsState:
    """Draws radii, non-overlapping positions and velocities.

    Positions are placed one ball at a time by rejection sampling (uniform
    inside the walls, no overlap with the balls already placed); if a ball
    finds no room the whole placement restarts.

    Args:
        config: world configuration.
        rng: the only source of randomness.

    Returns:
        State with ``position [N, 2]``, ``velocity [N, 2]``, ``radius [N]``.

    Raises:
        RuntimeError: if no non-overlapping placement is found (not expected
            for configurations that pass validation).
    """
    n = config.num_balls
    radius = rng.uniform(config.radius[0], config.radius[1], size=n)
    position = _place_balls(radius, config.size, rng)
    speed = rng.uniform(config.min_speed, config.max_speed, size=n)
    angle = rng.uniform(0.0, 2 * np.pi, size=n)
    velocity = speed[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    return BallsState(position=position, velocity=velocity, radius=radius)


def _place_balls(radius: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Non-overlapping centres ``[N, 2]`` inside the walls, by rejection."""
    n = len(radius)
    for _ in range(_PLACEMENT_RESTARTS):
        position = np.empty((n, 2))
        for i in range(n):
            candidates = rng.uniform(
                radius[i], size - radius[i], size=(_PLACEMENT_CANDIDATES, 2)
            )
            gap = candidates[:, None, :] - position[None, :i, :]
            fits = np.all(
                np.sum(gap**2, axis=-1) >= (radius[i] + radius[:i]) ** 2, axis=1
            )
            if not fits.any():
                break
            position[i] = candidates[np.argmax(fits)]
        else:
            return position
    raise RuntimeError(
        f"could not place {n} non-overlapping balls in a {size}x{size} frame"
    )


def step(
    state: BallsState,
    config: BallsWorldConfig,
    force: np.ndarray | None = None,
    contacts: list | None = None,
    passes: frozenset = frozenset(),
) -> BallsState:
    """Advances the state by one frame (``config.substeps`` substeps).

    Args:
        state: current state.
        config: world configuration (gravity, restitution, substeps, size).
        force: optional ``[N, 2]`` extra acceleration in px / frame^2, held
            constant during this frame (e.g. an agent pushing the balls).
            Collisions are only reliable while every ball moves less than its
            radius per substep, which ``config`` validation guarantees
            without ``force``.
        contacts: optional list; the pairs ``(i, j)`` of balls that touch
            during this frame are appended to it (once per substep).
        passes: pairs ``(i, j)``, ``i < j``, that pass through each other
            instead of colliding (impossible events, ``worlds.physics_pairs``);
            they are not reported in ``contacts``.

    Returns:
        The state one frame later; ``state`` is not modified.
    """
    position = np.array(state.position, dtype=np.float64)
    velocity = np.array(state.velocity, dtype=np.float64)
    radius = np.array(state.radius, dtype=np.float64)
    n = len(radius)
    accel = np.zeros((n, 2))
    accel[:, 1] = config.gravity
    if force is not None:
        force = np.asarray(force, dtype=np.float64)
        if force.shape != (n, 2):
            raise ValueError(f"force has shape {force.shape}, expected {(n, 2)}")
        accel += force
    dt = 1.0 / config.substeps
    accel_dt = accel * dt
    half_accel_dt = 0.5 * accel_dt
    low = np.repeat(radius[:, None], 2, axis=1)
    high = config.size - low
    pair_i, pair_j, pair_offset = _pairs(n)
    contact2 = (radius[pair_i] + radius[pair_j]) ** 2
    # np.count_nonzero is used as a fast "any" on these tiny arrays.
    for _ in range(config.substeps):
        position += (velocity + half_accel_dt) * dt
        velocity += accel_dt
        if np.count_nonzero((position < low) | (position > high)):
            _bounce_walls(position, velocity, accel, low, high, config.restitution)
        offset2 = pair_offset @ position
        offset2 *= offset2
        overlap = offset2[:, 0] + offset2[:, 1] < contact2
        if np.count_nonzero(overlap):
            for i, j in zip(pair_i[overlap], pair_j[overlap], strict=True):
                if passes and (int(i), int(j)) in passes:
                    continue
                if contacts is not None:
                    contacts.append((int(i), int(j)))
                _collide_pair(position, velocity, radius, i, j, config.restitution)
            np.clip(position, low, high, out=position)
    return BallsState(position=position, velocity=velocity, radius=radius)


@functools.cache
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` of ``n`` balls, as read-only arrays.

    Returns:
        ``pair_i [P]``, ``pair_j [P]`` and the matrix ``[P, N]`` that maps
        positions ``[N, 2]`` to the offsets ``p_j - p_i`` ``[P, 2]``.
    """
    pair_i, pair_j = np.triu_indices(n, k=1)
    pair_offset = np.zeros((len(pair_i), n))
    pair_offset[np.arange(len(pair_i)), pair_i] = -1.0
    pair_offset[np.arange(len(pair_i)), pair_j] = 1.0
    for array in (pair_i, pair_j, pair_offset):
        array.flags.writeable = False
    return pair_i, pair_j, pair_offset


def _bounce_walls(
    position: np.ndarray,
    velocity: np.ndarray,
    accel: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    e: float,
) -> None:
    """Reflects, in place, balls that crossed a wall moving outwards.

    All arrays are ``[N, 2]``; a ball past a wall but already moving inwards
    is only clamped.
    """
    below = (position < low) & (velocity < 0)
    above = (position > high) & (velocity > 0)
    hit = below | above
    wall = np.where(below, low, high)
    mirrored = 2 * wall - position
    # Speed at the mirrored point from energy conservation in the field accel.
    speed = e * np.sqrt(
        np.maximum(velocity**2 + 2 * accel * (mirrored - position), 0.0)
    )
    velocity[hit] = np.where(below, speed, -speed)[hit]
    position[hit] = (wall + e * (mirrored - wall))[hit]
    np.clip(position, low, high, out=position)


def _collide_pair(
    position: np.ndarray,
    velocity: np.ndarray,
    radius: np.ndarray,
    i: int,
    j: int,
    e: float,
) -> None:
    """Resolves, in place, the contact of balls ``i`` and ``j`` if they overlap.

    An approaching pair exchanges the impulse along the contact normal that
    conserves momentum (and kinetic energy when ``e == 1``); the overlap is
    removed by moving both balls along the normal in inverse proportion to
    their mass, which keeps their centre of mass fixed.
    """
    offset = position[j] - position[i]
    dist = math.hypot(offset[0], offset[1])
    contact = radius[i] + radius[j]
    if dist >= contact:
        return
    normal = offset / dist if dist > 0 else np.array([1.0, 0.0])
    mass_i, mass_j = radius[i] ** 2, radius[j] ** 2
    share_i = mass_j / (mass_i + mass_j)  # fraction of the change taken by i
    share_j = 1.0 - share_i
    approach = float(np.dot(velocity[j] - velocity[i], normal))
    if approach < 0:
        velocity[i] += (1 + e) * share_i * approach * normal
        velocity[j] -= (1 + e) * share_j * approach * normal
    overlap = contact - dist
    position[i] -= share_i * overlap * normal
    position[j] += share_j * overlap * normal


def simulate(
    config: BallsWorldConfig,
    seed: int,
    perturb: Callable[[int, BallsState], BallsState] | None = None,
    contacts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulates one clip's trajectory from ``np.random.default_rng(seed)``.

    Args:
        config: world configuration.
        seed: non-negative integer seed.
        perturb: optional ``perturb(t, state) -> state``, called for every
            frame ``t`` in ``[0, T)`` on the state of frame ``t`` before it is
            recorded; the returned state is recorded and the simulation goes
            on from it. It is the hook for violation-of-expectation variants,
            e.g. teleporting a ball (replace its position) or stopping it
            (replace its velocity). The radius is constant over a clip and
            must be returned unchanged; to make a ball vanish, render with a
            per-frame radius ``[T, N]`` that is 0 where it is gone.
        contacts: optional bool ``[T]``, filled in place: ``contacts[t]``
            is True when two balls touched during the step into frame ``t``.

    Returns:
        ``position`` float32 ``[T, N, 2]``, ``velocity`` float32 ``[T, N, 2]``,
        ``radius`` float32 ``[N]``.

    Raises:
        ValueError: if ``perturb`` changes the radius.
    """
    rng = np.random.default_rng(seed)
    state = initial_state(config, rng)
    n = config.num_balls
    position = np.empty((config.num_frames, n, 2), dtype=np.float32)
    velocity = np.empty((config.num_frames, n, 2), dtype=np.float32)
    touched: list = []
    for t in range(config.num_frames):
        if t > 0:
            touched.clear()
            state = step(state, config, contacts=touched)
            if contacts is not None:
                contacts[t] = bool(touched)
        if perturb is not None:
            perturbed = perturb(t, state)
            if not np.array_equal(perturbed.radius, state.radius):
                raise ValueError(f"perturb changed the radius at frame {t}")
            state = perturbed
        position[t] = state.position
        velocity[t] = state.velocity
    return position, velocity, state.radius.astype(np.float32)


def render(
    position: np.ndarray,
    radius: np.ndarray,
    config: BallsWorldConfig,
    occluder_x: float = math.nan,
    colors: np.ndarray | None = None,
) -> np.ndarray:
    """Renders anti-aliased balls, vectorised over frames.

    Ball ``i`` is a disc of colour ``BALL_COLORS[i]`` (or ``colors``) whose coverage (alpha)
    of a pixel is ``clip(r + 0.5 - d, 0, 1)`` with ``d`` the distance from the
    pixel centre to the ball centre (a 1-px soft edge, so sub-pixel motion
    changes the image); a radius ``<= 0`` draws nothing. Balls are composited
    in index order over ``BACKGROUND_COLOR``, then the occluder (exact
    per-column coverage of ``[occluder_x, occluder_x + occluder_width)``) over
    everything, each layer rounded to uint8. Each ball only touches the
    square patch of pixels it can cover in each frame.

    Args:
        position: ``[T, N, 2]`` ball centres ``(x, y)`` in px.
        radius: ``[N]`` or per-frame ``[T, N]`` radii in px.
        config: world configuration (``size``, ``occluder_width``).
        occluder_x: left edge of the occluder in px; nan draws none.
        colors: optional uint8 ``[N, 3]`` or per-frame ``[T, N, 3]`` ball
            colours instead of ``BALL_COLORS[:N]``.

    Returns:
        uint8 ``[T, size, size, 3]``.
    """
    position = np.asarray(position, dtype=np.float32)
    num_frames, n, _ = position.shape
    if n > MAX_BALLS:
        raise ValueError(f"render supports at most {MAX_BALLS} balls, got {n}")
    radius = np.broadcast_to(np.asarray(radius, dtype=np.float32), (num_frames, n))
    reach = np.where(radius > 0, radius + 0.5, 0.0)  # [T, N] alpha > 0 within
    size = config.size
    # Compositing in uint8 avoids large float temporaries. Filling row by row
    # is much faster than broadcasting a [3] colour.
    image = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    image.reshape(num_frames * size, size * 3)[...] = np.tile(BACKGROUND_COLOR, size)
    side = int(np.ceil(2 * reach.max(initial=0.0))) + 1  # patch side covering any disc
    offsets = np.arange(side)
    frame = np.arange(num_frames)[:, None, None]
    colors = BALL_COLORS[:n] if colors is None else np.asarray(colors)
    colors = np.broadcast_to(colors.astype(np.float32), (num_frames, n, 3))
    for i in range(n):
        centre = position[:, i, :]  # [T, 2]
        start = np.floor(centre - reach[:, i, None]).astype(np.int64)
        pixel = np.clip(start[:, :, None] + offsets, 0, size - 1)  # [T, 2, side]
        d2 = (pixel + 0.5 - centre[:, :, None]) ** 2
        dist = np.sqrt(d2[:, 1, :, None] + d2[:, 0, None, :])  # [T, side, side]
        alpha = np.clip(reach[:, i, None, None] - dist, 0.0, 1.0)[..., None]
        index = (frame, pixel[:, 1, :, None], pixel[:, 0, None, :])
        patch = image[index].astype(np.float32)
        image[index] = np.rint(patch + alpha * (colors[:, i, None, None] - patch))
    if not math.isnan(occluder_x):
        centres = np.arange(size) + 0.5
        cover = np.clip(
            np.minimum(centres + 0.5, occluder_x + config.occluder_width)
            - np.maximum(centres - 0.5, occluder_x),
            0.0,
            1.0,
        )
        columns = np.flatnonzero(cover)
        alpha = cover[columns, None].astype(np.float32)
        band = image[:, :, columns].astype(np.float32)
        image[:, :, columns] = np.rint(band + alpha * (OCCLUDER_COLOR - band))
    return image


def occluder_left_edge(config: BallsWorldConfig, seed: int) -> float:
    """Left edge of the occluder for clip ``seed``, or nan when disabled.

    Drawn from its own stream so that switching the occluder on or off leaves
    the ball trajectories of a seed unchanged.
    """
    if not config.occluder:
        return math.nan
    rng = np.random.default_rng([seed, 1])  # stream 1; the balls use seed
    return float(rng.uniform(0.0, config.size - config.occluder_width))


def generate_clip(config: BallsWorldConfig, seed: int) -> Clip:
    """Simulates and renders one clip; a pure function of ``(config, seed)``.

    Args:
        config: world configuration.
        seed: non-negative integer seed.

    Returns:
        The rendered clip and its ground-truth state.
    """
    contacts = np.zeros(config.num_frames, dtype=bool)
    position, velocity, radius = simulate(config, seed, contacts=contacts)
    occluder_x = occluder_left_edge(config, seed)
    frames = render(position, radius, config, occluder_x)
    return Clip(
        frames=frames,
        position=position,
        velocity=velocity,
        radius=radius,
        occluder_x=occluder_x,
        contacts=contacts,
    )


class BallsWorldSource:
    """Random-access data source of bouncing-balls clips (for grain).

    Clip ``index`` is ``generate_clip(config, s)`` with ``s`` derived from
    ``np.random.SeedSequence([seed, index])``, so clips are deterministic per
    ``(seed, index)`` and a held-out set is just another ``seed``.
    """

    def __init__(self, config: BallsWorldConfig, num_clips: int, seed: int = 0, vary_count: bool = False):
        """Creates the source.

        Args:
            config: world configuration.
            num_clips: number of clips (``len``).
            seed: non-negative source seed.
            vary_count: clip ``index`` holds ``1 + s % config.num_balls``
                balls (``s`` its seed) instead of ``config.num_balls``.
        """
        _check_int("num_clips", num_clips, 0, np.iinfo(np.int64).max)
        _check_int("seed", seed, 0, np.iinfo(np.int64).max)
        self.config = config
        self.num_clips = int(num_clips)
        self.seed = int(seed)
        self.vary_count = bool(vary_count)

    def __len__(self) -> int:
        """Number of clips."""
        return self.num_clips

    def clip_seed(self, index: int) -> int:
        """The ``generate_clip`` seed of clip ``index``."""
        sequence = np.random.SeedSequence([self.seed, index])
        return int(sequence.generate_state(1, dtype=np.uint64)[0])

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """Returns clip ``index`` as a dict of numpy arrays.

        Args:
            index: integer in ``[0, len(self))``.

        Returns:
            ``video`` uint8 ``[T, H, W, 3]``, ``position`` and ``velocity``
            float32 ``[T, N, 2]``, ``radius`` float32 ``[N]``, ``contacts``
            bool ``[T]`` (two balls touched during the step into frame t).
        """
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"index must be an integer, got {type(index).__name__}")
        if not 0 <= index < self.num_clips:
            raise IndexError(f"index {index} out of range [0, {self.num_clips})")
        seed = self.clip_seed(int(index))
        config = self.config
        if self.vary_count:
            config = dataclasses.replace(config, num_balls=1 + seed % config.num_balls)
        clip = generate_clip(config, seed)
        return {
            "video": clip.frames,
            "position": clip.position,
            "velocity": clip.velocity,
            "radius": clip.radius,
            "contacts": clip.contacts,
        }

    def __repr__(self) -> str:
        """Complete and stable: config fields, ``num_clips`` and ``seed``."""
        return (
            f"BallsWorldSource(config={self.config!r}, "
            f"num_clips={self.num_clips}, seed={self.seed}"
            + (", vary_count=True)" if self.vary_count else ")")
        )
