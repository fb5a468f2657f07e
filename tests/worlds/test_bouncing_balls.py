"""Tests for the bouncing-balls procedural world."""

import dataclasses
import math

import chex
import grain
import numpy as np
import pytest

from jepa_jax.worlds import (
    BACKGROUND_COLOR,
    BALL_COLORS,
    OCCLUDER_COLOR,
    BallsState,
    BallsWorldConfig,
    BallsWorldSource,
    generate_clip,
    initial_state,
    render,
    simulate,
    step,
)
from jepa_jax.worlds.bouncing_balls import _place_balls

# Relative drift of the total energy allowed over a clip with restitution 1
# (the module docstring reports the measured drift, below 0.3%).
ENERGY_TOLERANCE = 0.01


def _energy(position, velocity, radius, config):
    """Total energy ``[T]``: kinetic plus potential above the lowest centre."""
    position = position.astype(np.float64)
    velocity = velocity.astype(np.float64)
    radius = radius.astype(np.float64)
    mass = radius**2
    height = config.size - radius - position[..., 1]
    kinetic = 0.5 * np.sum(velocity**2, axis=-1)
    return np.sum(mass * (kinetic + config.gravity * height), axis=-1)


def _state(position, velocity, radius):
    return BallsState(
        position=np.array(position, dtype=np.float64),
        velocity=np.array(velocity, dtype=np.float64),
        radius=np.array(radius, dtype=np.float64),
    )


def _run(state, config, num_frames, force=None):
    for _ in range(num_frames):
        state = step(state, config, force)
    return state


# ----------------------------------------------------------------------------
# Shapes, dtypes, determinism.


@pytest.mark.parametrize(
    "config",
    [
        BallsWorldConfig(),
        BallsWorldConfig(
            num_frames=5,
            size=32,
            num_balls=2,
            radius=(2.0, 3.0),
            occluder=True,
            occluder_width=6,
        ),
    ],
)
def test_clip_shapes_and_dtypes(config):
    clip = generate_clip(config, seed=3)
    t, s, n = config.num_frames, config.size, config.num_balls
    chex.assert_shape(clip.frames, (t, s, s, 3))
    chex.assert_type(clip.frames, np.uint8)
    chex.assert_shape([clip.position, clip.velocity], (t, n, 2))
    chex.assert_shape(clip.radius, (n,))
    chex.assert_type([clip.position, clip.velocity, clip.radius], np.float32)
    assert np.all((clip.radius >= config.radius[0]) & (clip.radius <= config.radius[1]))
    if config.occluder:
        assert 0.0 <= clip.occluder_x <= config.size - config.occluder_width
    else:
        assert math.isnan(clip.occluder_x)


def test_same_seed_same_clip_and_different_seed_different_clip():
    config = BallsWorldConfig(occluder=True)
    a, b, c = (
        generate_clip(config, 7),
        generate_clip(config, 7),
        generate_clip(config, 8),
    )
    for field in ("frames", "position", "velocity", "radius"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.occluder_x == b.occluder_x
    assert not np.array_equal(a.frames, c.frames)
    assert not np.allclose(a.position, c.position)
    assert a.occluder_x != c.occluder_x


def test_occluder_does_not_change_trajectories():
    plain = generate_clip(BallsWorldConfig(), 5)
    occluded = generate_clip(BallsWorldConfig(occluder=True), 5)
    np.testing.assert_array_equal(plain.position, occluded.position)
    assert not np.array_equal(plain.frames, occluded.frames)


def test_balls_move_several_pixels_per_frame():
    speeds = np.concatenate(
        [
            np.linalg.norm(generate_clip(BallsWorldConfig(), s).velocity, axis=-1)
            for s in range(10)
        ]
    )
    assert np.median(speeds) > 2.0


# ----------------------------------------------------------------------------
# Data source.


def test_source_items_and_index_mapping():
    config = BallsWorldConfig(num_frames=4)
    source = BallsWorldSource(config, num_clips=5, seed=11)
    assert len(source) == 5
    item = source[2]
    assert set(item) == {"video", "position", "velocity", "radius", "contacts"}
    chex.assert_shape(item["video"], (4, 64, 64, 3))
    chex.assert_shape(item["radius"], (3,))
    chex.assert_type(item["contacts"], bool)
    chex.assert_type(item["video"], np.uint8)
    chex.assert_shape([item["position"], item["velocity"]], (4, 3, 2))
    # Deterministic per (seed, index) and equal to the documented clip seed.
    again = BallsWorldSource(config, num_clips=5, seed=11)[np.int64(2)]
    np.testing.assert_array_equal(item["video"], again["video"])
    clip = generate_clip(config, source.clip_seed(2))
    np.testing.assert_array_equal(item["video"], clip.frames)
    # Other indices and other source seeds give other clips.
    assert not np.allclose(item["position"], source[3]["position"])
    other = BallsWorldSource(config, num_clips=5, seed=12)[2]
    assert not np.allclose(item["position"], other["position"])
    with pytest.raises(IndexError):
        source[5]
    with pytest.raises(IndexError):
        source[-1]


# A valid non-default value for every config field.
_OTHER_VALUES = {
    "num_frames": 8,
    "size": 48,
    "num_balls": 2,
    "radius": (3.0, 5.0),
    "min_speed": 1.0,
    "max_speed": 3.0,
    "gravity": 0.1,
    "restitution": 0.9,
    "substeps": 5,
    "occluder": True,
    "occluder_width": 10,
}


def test_source_repr_is_stable_and_complete():
    fields = {f.name for f in dataclasses.fields(BallsWorldConfig)}
    assert set(_OTHER_VALUES) == fields
    config = BallsWorldConfig()
    base = repr(BallsWorldSource(config, 100, seed=1))
    assert base == repr(BallsWorldSource(BallsWorldConfig(), 100, seed=1))
    # Fields are normalised to Python scalars, so equal values give equal reprs.
    numpy_config = BallsWorldConfig(
        num_frames=np.int64(16),
        max_speed=4,
        radius=[4, np.float32(6)],
        occluder=np.False_,
    )
    assert base == repr(BallsWorldSource(numpy_config, np.int64(100), seed=1))
    variants = [
        repr(BallsWorldSource(config, 101, seed=1)),
        repr(BallsWorldSource(config, 100, seed=2)),
    ]
    for name, value in _OTHER_VALUES.items():
        changed = dataclasses.replace(config, **{name: value})
        variants.append(repr(BallsWorldSource(changed, 100, seed=1)))
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_source_works_with_grain():
    source = BallsWorldSource(BallsWorldConfig(num_frames=2), num_clips=4, seed=0)
    dataset = grain.MapDataset.source(source).batch(2)
    assert len(dataset) == 2
    batch = dataset[1]
    chex.assert_shape(batch["video"], (2, 2, 64, 64, 3))
    np.testing.assert_array_equal(batch["video"][1], source[3]["video"])


# ----------------------------------------------------------------------------
# Physics.


def test_initial_state_is_valid():
    config = BallsWorldConfig(num_balls=8)
    for seed in range(20):
        state = initial_state(config, np.random.default_rng(seed))
        p, v, r = state.position, state.velocity, state.radius
        assert np.all((p >= r[:, None]) & (p <= config.size - r[:, None]))
        dist = np.linalg.norm(p[:, None] - p[None], axis=-1)
        contact = r[:, None] + r[None]
        off_diagonal = ~np.eye(len(r), dtype=bool)
        assert np.all(dist[off_diagonal] >= contact[off_diagonal])
        speed = np.linalg.norm(v, axis=-1)
        assert np.all(
            (speed >= config.min_speed - 1e-9) & (speed <= config.max_speed + 1e-9)
        )


def test_placement_restarts_when_crowded_and_fails_when_impossible():
    # 14 balls of radius 6 cover 39% of the frame (more than a valid config
    # allows), which needs restarts of the rejection sampling.
    radius = np.full(14, 6.0)
    for seed in range(3):
        p = _place_balls(radius, 64, np.random.default_rng(seed))
        dist = np.linalg.norm(p[:, None] - p[None], axis=-1)
        assert np.all(dist[~np.eye(14, dtype=bool)] >= 12.0)
        assert np.all((p >= 6.0) & (p <= 58.0))
    with pytest.raises(RuntimeError, match="could not place"):
        _place_balls(np.full(2, 30.0), 64, np.random.default_rng(0))


@pytest.mark.parametrize("num_balls", [1, 3, 8])
def test_balls_stay_inside_walls(num_balls):
    config = BallsWorldConfig(
        num_frames=300, num_balls=num_balls, gravity=0.3, max_speed=6.0, substeps=6
    )
    for seed in range(3):
        position, _, radius = simulate(config, seed)
        r = radius[None, :, None]
        assert np.all(position >= r - 1e-4)
        assert np.all(position <= config.size - r + 1e-4)


def test_ball_bounces_off_right_wall():
    config = BallsWorldConfig(num_balls=1, gravity=0.0)
    state = _state([[50.0, 32.0]], [[3.0, 0.0]], [5.0])
    # x: 50 -> 53 -> 56 -> 59 (touching the wall at size - r) -> 62, mirrored to 56.
    state = _run(state, config, 3)
    np.testing.assert_allclose(state.velocity, [[3.0, 0.0]])
    state = step(state, config)
    np.testing.assert_allclose(state.position, [[56.0, 32.0]])
    np.testing.assert_allclose(state.velocity, [[-3.0, 0.0]])


def test_ball_bounces_off_floor_under_gravity_without_energy_change():
    config = BallsWorldConfig(num_balls=1, gravity=0.2)
    state = _state([[32.0, 40.0]], [[0.0, 2.0]], [5.0])

    def energy(s):
        return _energy(s.position, s.velocity, s.radius, config)

    before = energy(state)
    bounced = False
    for _ in range(40):
        state = step(state, config)
        bounced |= bool(state.velocity[0, 1] < 0)
        assert state.position[0, 1] <= config.size - 5.0
        np.testing.assert_allclose(energy(state), before, rtol=1e-9)
    assert bounced


def test_equal_balls_head_on_exchange_velocities():
    config = BallsWorldConfig(num_balls=2, gravity=0.0)
    state = _state([[20.0, 32.0], [44.0, 32.0]], [[2.0, 0.0], [-1.0, 0.0]], [5.0, 5.0])
    state = _run(state, config, 8)
    np.testing.assert_allclose(state.velocity, [[-1.0, 0.0], [2.0, 0.0]], atol=1e-12)
    assert state.position[1, 0] - state.position[0, 0] >= 10.0


def test_overlapping_separating_balls_are_pushed_apart_without_impulse():
    # E.g. after a teleport: overlapping by 3 px but already moving apart.
    # One substep, so that a wrong impulse cannot be undone by a later one.
    config = BallsWorldConfig(num_balls=2, gravity=0.0, substeps=1)
    before = _state([[30.0, 32.0], [36.0, 32.0]], [[-1.0, 0.0], [1.0, 0.0]], [3.0, 6.0])
    after = step(before, config)
    np.testing.assert_allclose(after.velocity, before.velocity)
    assert after.position[1, 0] - after.position[0, 0] >= 9.0 - 1e-9
    # The push keeps the centre of mass (mass ~ r^2) on its free path.
    mass = before.radius**2 / np.sum(before.radius**2)
    centre = mass @ before.position + mass @ before.velocity
    np.testing.assert_allclose(mass @ after.position, centre)


def test_equal_balls_oblique_swap_only_normal_components():
    config = BallsWorldConfig(num_balls=2, gravity=0.0)
    # Ball 0 moves right, ball 1 is at rest; they touch with a vertical offset.
    state = _state([[20.0, 30.0], [32.0, 36.0]], [[2.0, 0.0], [0.0, 0.0]], [5.0, 5.0])
    state = _run(state, config, 6)
    v0, v1 = state.velocity
    assert v1[0] > 0 and v1[1] > 0  # pushed along the normal (down-right)
    assert v0[1] < 0  # deflected upwards
    np.testing.assert_allclose(np.dot(v0, v1), 0.0, atol=1e-9)  # right angle
    np.testing.assert_allclose(v0 + v1, [2.0, 0.0], atol=1e-12)


def test_unequal_collision_conserves_momentum_and_energy():
    config = BallsWorldConfig(num_balls=2, gravity=0.0, radius=(3.0, 6.0))
    state = _state([[15.0, 30.0], [40.0, 32.0]], [[3.0, 0.5], [-1.0, 0.0]], [3.0, 6.0])
    mass = state.radius**2

    def momentum(s):
        return np.sum(mass[:, None] * s.velocity, axis=0)

    def kinetic(s):
        return np.sum(mass * np.sum(s.velocity**2, axis=-1))

    after = _run(state, config, 8)
    assert not np.allclose(after.velocity, state.velocity)
    np.testing.assert_allclose(momentum(after), momentum(state), atol=1e-12)
    np.testing.assert_allclose(kinetic(after), kinetic(state), rtol=1e-12)


@pytest.mark.parametrize("num_balls", [3, 8])
def test_energy_is_conserved(num_balls):
    config = BallsWorldConfig(num_frames=128, num_balls=num_balls)
    for seed in range(5):
        position, velocity, radius = simulate(config, seed)
        energy = _energy(position, velocity, radius, config)
        drift = np.max(np.abs(energy / energy[0] - 1.0))
        assert drift < ENERGY_TOLERANCE, (seed, drift)


def test_restitution_below_one_loses_energy():
    config = BallsWorldConfig(num_frames=128, restitution=0.5)
    position, velocity, radius = simulate(config, 0)
    energy = _energy(position, velocity, radius, config)
    assert energy[-1] < 0.7 * energy[0]


def test_step_does_not_modify_its_input():
    config = BallsWorldConfig()
    state = initial_state(config, np.random.default_rng(0))
    copy = _state(state.position, state.velocity, state.radius)
    step(state, config, force=np.ones((3, 2)))
    np.testing.assert_array_equal(state.position, copy.position)
    np.testing.assert_array_equal(state.velocity, copy.velocity)


# ----------------------------------------------------------------------------
# Hooks.


def test_force_is_a_constant_extra_acceleration():
    config = BallsWorldConfig(num_balls=1, gravity=0.0)
    state = _state([[20.0, 32.0]], [[1.0, 0.0]], [5.0])
    force = np.array([[0.5, -0.25]])
    pushed = _run(state, config, 4, force)
    free = _run(state, config, 4)
    # Exact for a constant acceleration: p + v t + f t^2 / 2, v + f t.
    np.testing.assert_allclose(pushed.position, [[20.0 + 4.0 + 4.0, 32.0 - 2.0]])
    np.testing.assert_allclose(pushed.velocity, [[3.0, -1.0]])
    np.testing.assert_allclose(free.position, [[24.0, 32.0]])
    with pytest.raises(ValueError, match="force"):
        step(state, config, force=np.zeros((2, 2)))


def test_perturb_hook_is_applied():
    config = BallsWorldConfig()
    calls = []

    def teleport(t, state):
        calls.append(t)
        if t != 5:
            return state
        position = state.position.copy()
        position[0] = (32.0, 32.0)
        return dataclasses.replace(state, position=position)

    position, velocity, radius = simulate(config, 3, perturb=teleport)
    base_position, base_velocity, base_radius = simulate(config, 3)
    assert calls == list(range(config.num_frames))
    np.testing.assert_array_equal(position[:5], base_position[:5])
    np.testing.assert_array_equal(position[5, 0], [32.0, 32.0])
    np.testing.assert_array_equal(velocity[5], base_velocity[5])
    assert not np.allclose(position[6:, 0], base_position[6:, 0])
    np.testing.assert_array_equal(radius, base_radius)


def test_perturb_must_not_change_radius():
    def shrink(t, state):
        return dataclasses.replace(state, radius=state.radius * 0.5)

    with pytest.raises(ValueError, match="radius"):
        simulate(BallsWorldConfig(), 0, perturb=shrink)


# ----------------------------------------------------------------------------
# Rendering.


def _render_one(x, y, radius=5.0, index=0, occluder_x=math.nan, **config_kwargs):
    """Renders one frame with ball ``index`` at ``(x, y)``; others far away."""
    config = BallsWorldConfig(**config_kwargs)
    position = np.full((1, index + 1, 2), -100.0, dtype=np.float32)
    position[0, index] = (x, y)
    return render(position, np.full(index + 1, radius), config, occluder_x)[0]


@pytest.mark.parametrize("index", [0, 1, 4])
def test_ball_colour_at_its_position(index):
    frame = _render_one(30.3, 20.6, index=index)
    np.testing.assert_array_equal(frame[20, 30], BALL_COLORS[index])
    np.testing.assert_array_equal(frame[20, 37], BACKGROUND_COLOR)  # just outside
    np.testing.assert_array_equal(frame[0, 0], BACKGROUND_COLOR)
    # Roughly pi r^2 pixels carry the ball colour exactly.
    full = np.all(frame == BALL_COLORS[index], axis=-1).sum()
    assert math.pi * 4.0**2 <= full <= math.pi * 5.5**2


def test_half_pixel_motion_changes_the_frame():
    a = _render_one(30.0, 20.5)
    b = _render_one(30.5, 20.5)
    assert not np.array_equal(a, b)
    # Pixel (20, 35) has its centre 5.5 px from a's ball (outside the soft
    # edge) and 5.0 px from b's (half covered).
    np.testing.assert_array_equal(a[20, 35], BACKGROUND_COLOR)
    half = (BALL_COLORS[0].astype(int) + BACKGROUND_COLOR) / 2
    np.testing.assert_allclose(b[20, 35], half, atol=1)


def test_zero_radius_draws_nothing():
    position = np.array([[[20.0, 20.0]], [[20.0, 20.0]]], dtype=np.float32)
    radius = np.array([[5.0], [0.0]])  # per-frame [T, N]: vanished in frame 1
    frames = render(position, radius, BallsWorldConfig(num_balls=1))
    np.testing.assert_array_equal(frames[0, 20, 20], BALL_COLORS[0])
    assert np.all(frames[1] == BACKGROUND_COLOR)


def test_occluder_hides_ball_behind_it():
    visible = _render_one(32.0, 32.0)
    hidden = _render_one(32.0, 32.0, occluder_x=25.0, occluder_width=14)
    assert np.any(np.all(visible == BALL_COLORS[0], axis=-1))
    np.testing.assert_array_equal(hidden[32, 32], OCCLUDER_COLOR)
    assert np.all(hidden[:, 25:39] == OCCLUDER_COLOR)
    outside = np.concatenate([hidden[:, :25], hidden[:, 39:]], axis=1)
    assert np.all(outside == BACKGROUND_COLOR)


def test_generated_occluder_is_drawn():
    config = BallsWorldConfig(occluder=True)
    clip = generate_clip(config, 2)
    column = int(clip.occluder_x) + config.occluder_width // 2
    assert np.all(clip.frames[:, :, column] == OCCLUDER_COLOR)


# ----------------------------------------------------------------------------
# Config validation.


def test_default_config_suits_8px_patches():
    config = BallsWorldConfig()
    # A ball is one to two 8-px patches wide, moves over a pixel per frame,
    # and fits behind the occluder.
    assert 2 * config.radius[0] >= 8 and 2 * config.radius[1] <= 16
    assert config.min_speed > 1.0 and config.max_speed > config.min_speed
    assert config.occluder_width > 2 * config.radius[1]


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"num_frames": 0}, "num_frames"),
        ({"num_frames": 2.5}, "num_frames"),
        ({"size": 4}, "size"),
        ({"num_balls": 0}, "num_balls"),
        ({"num_balls": 9}, "num_balls"),
        ({"num_balls": True}, "num_balls"),
        ({"size": 32, "num_balls": 4}, "num_balls"),  # too crowded
        ({"radius": (0.5, 2.0)}, "radius[0]"),
        ({"radius": (5.0, 4.0)}, "radius[1]"),
        ({"radius": (4.0, 40.0)}, "radius[1]"),
        ({"radius": (4.0,)}, "radius"),
        ({"radius": 4.0}, "radius"),
        ({"min_speed": -1.0}, "min_speed"),
        ({"min_speed": 5.0}, "min_speed"),
        ({"max_speed": -1.0}, "max_speed"),
        ({"max_speed": float("nan")}, "max_speed"),
        ({"gravity": -0.1}, "gravity"),
        ({"gravity": "0.1"}, "gravity"),
        ({"restitution": 1.5}, "restitution"),
        ({"substeps": 0}, "substeps"),
        ({"substeps": 1}, "substeps"),  # balls could pass through each other
        ({"occluder": "yes"}, "occluder"),
        ({"occluder_width": 0}, "occluder_width"),
        ({"occluder_width": 65}, "occluder_width"),
    ],
)
def test_invalid_config_raises(kwargs, field):
    with pytest.raises(ValueError) as info:
        BallsWorldConfig(**kwargs)
    message = str(info.value)
    assert message.startswith(f"{field}="), message
    assert "\n" not in message


def test_invalid_source_arguments_raise():
    with pytest.raises(ValueError, match="num_clips"):
        BallsWorldSource(BallsWorldConfig(), num_clips=-1)
    with pytest.raises(ValueError, match="seed"):
        BallsWorldSource(BallsWorldConfig(), num_clips=1, seed=-3)


def test_contacts_mark_the_frame_two_balls_meet():
    # Two balls on a line, closing at 4 px per frame without gravity: their gap of 24 - r0 - r1 px closes during
    # the step into frame ceil(gap / 4), and they separate after the bounce.
    config = BallsWorldConfig(num_frames=12, num_balls=2, gravity=0.0, radius=(4.0, 6.0))

    def head_on(t, state):
        if t:
            return state
        return BallsState(position=np.array([[20.0, 32.0], [44.0, 32.0]]), velocity=np.array([[2.0, 0.0],
                                                                                                [-2.0, 0.0]]),
                          radius=state.radius)

    contacts = np.zeros(12, bool)
    _, velocity, radius = simulate(config, seed=3, perturb=head_on, contacts=contacts)
    meet = int(np.ceil((24.0 - radius.sum()) / 4.0))
    assert contacts.tolist() == [t == meet for t in range(12)]
    assert velocity[meet + 1, 0, 0] < 0 < velocity[meet + 1, 1, 0]  # they bounced
    clip = generate_clip(config, seed=3)
    source_item = BallsWorldSource(config, num_clips=1)[0]
    chex.assert_shape([clip.contacts, source_item["contacts"]], (12,))


def test_vary_count_draws_one_to_num_balls_balls_per_clip():
    config = BallsWorldConfig(num_frames=2, num_balls=4)
    source = BallsWorldSource(config, num_clips=40, seed=2, vary_count=True)
    counts = [len(source[i]["radius"]) for i in range(40)]
    assert counts == [1 + source.clip_seed(i) % 4 for i in range(40)]
    assert set(counts) == {1, 2, 3, 4}
    assert [source[i]["position"].shape for i in range(3)] == [(2, n, 2) for n in counts[:3]]
    assert "vary_count=True" in repr(source) and "vary_count" not in repr(BallsWorldSource(config, 40, seed=2))

