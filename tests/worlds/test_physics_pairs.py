"""Violation-of-expectation pairs: identical before the event, the possible clip is the world's, the impossible one
breaks its rule (checked on the ground-truth states and the pixels)."""

import math

import numpy as np
import pytest

from jepa_jax.worlds import BALL_COLORS, BallsWorldConfig, simulate
from jepa_jax.worlds import physics_pairs

CONFIG = BallsWorldConfig(num_frames=16)
SEEDS = range(12)


def _pairs(category, config=CONFIG, seeds=SEEDS):
    return [physics_pairs.make_pair(config, category, seed) for seed in seeds]


def _energy(track, config):
    """Total energy per frame [T]: m (|v|^2 / 2 + g h), m = r^2, h = height above the lowest reachable centre."""
    mass = track.radius.astype(np.float64) ** 2
    v2 = np.sum(track.velocity.astype(np.float64) ** 2, axis=-1)
    height = config.size - track.radius - track.position[..., 1]
    return np.sum(mass * (v2 / 2 + config.gravity * height), axis=-1)


def _centre_pixel(track, t, ball):
    x, y = track.position[t, ball]
    return track.frames[t, int(y), int(x)]


def _free_flight(track, t, ball, config):
    """Ball `ball` flew from frame t - 1 to t without touching a ball or a wall."""
    reach = track.radius[ball] + np.abs(track.velocity[t - 1:t + 1, ball]).max() + 1.0
    position = track.position[t - 1:t + 1, ball]
    clear = np.all((position >= reach) & (position <= config.size - reach))
    return clear and not any(ball in pair for pair in track.contacts[t])


@pytest.mark.parametrize("occluder", [False, True])
@pytest.mark.parametrize("category", physics_pairs.CATEGORIES)
def test_pairs_are_identical_before_the_event_and_differ_after_it(category, occluder):
    config = BallsWorldConfig(num_frames=16, occluder=occluder)
    low, high = physics_pairs.event_range(config.num_frames)
    for pair in _pairs(category, config, range(6)):
        e = pair.event_frame
        assert pair.category == category and low <= e <= high
        np.testing.assert_array_equal(pair.possible.frames[:e], pair.impossible.frames[:e])
        np.testing.assert_array_equal(pair.possible.position[:e], pair.impossible.position[:e])
        assert (pair.possible.frames[e:] != pair.impossible.frames[e:]).any()
        if not occluder:  # in plain view the event frame itself shows it
            assert (pair.possible.frames[e] != pair.impossible.frames[e]).any()


@pytest.mark.parametrize("category", physics_pairs.CATEGORIES)
def test_the_possible_clip_is_the_worlds_own_simulation_and_keeps_its_energy(category):
    for pair in _pairs(category, seeds=range(4)):
        position, velocity, radius = simulate(CONFIG, pair.world_seed)
        np.testing.assert_array_equal(pair.possible.position, position)
        np.testing.assert_array_equal(pair.possible.velocity, velocity)
        np.testing.assert_array_equal(pair.possible.radius, radius)
        energy = _energy(pair.possible, CONFIG)
        assert np.abs(energy / energy[0] - 1).max() < 0.01


def test_permanence_a_ball_that_touches_nothing_vanishes_or_appears():
    variants = set()
    for pair in _pairs("permanence"):
        (ball,), e = pair.balls, pair.event_frame
        variants.add(pair.variant)
        assert not any(ball in p for frame in pair.possible.contacts for p in frame)
        colour = BALL_COLORS[ball]
        present_before = pair.variant == "vanish"
        for track, present_after in ((pair.possible, present_before), (pair.impossible, not present_before)):
            for t in range(CONFIG.num_frames):
                present = present_before if t < e else present_after
                assert track.shown[t, ball] == present
                assert np.array_equal(_centre_pixel(track, t, ball), colour) == present, (pair.variant, t)
    assert variants == {"vanish", "appear"}


def test_permanence_with_the_occluder_happens_behind_it():
    config = BallsWorldConfig(num_frames=16, occluder=True)
    for pair in _pairs("permanence", config, range(6)):
        (ball,), e = pair.balls, pair.event_frame
        x, r = pair.possible.position[e, ball, 0], pair.possible.radius[ball]
        assert pair.occluder_x <= x - r and x + r <= pair.occluder_x + config.occluder_width
        np.testing.assert_array_equal(pair.possible.frames[e], pair.impossible.frames[e])  # hidden: same pixels


def test_continuity_the_ball_jumps_farther_than_any_speed_allows():
    bound = 2 * math.sqrt(CONFIG.max_speed**2 + 2 * CONFIG.gravity * CONFIG.size)  # energy + elastic collision
    for pair in _pairs("continuity"):
        (ball,), e = pair.balls, pair.event_frame
        jumps = np.linalg.norm(np.diff(pair.possible.position, axis=0), axis=-1)
        assert jumps.max() <= bound
        jump = np.linalg.norm(pair.impossible.position[e, ball] - pair.impossible.position[e - 1, ball])
        assert jump > 1.5 * bound


def test_solidity_two_balls_pass_through_each_other_where_the_world_bounces_them():
    for pair in _pairs("solidity"):
        (i, j), e = pair.balls, pair.event_frame
        assert (i, j) in pair.possible.contacts[e]
        touching = pair.possible.radius[i] + pair.possible.radius[j]
        for track, deepest in ((pair.possible, 0.99), (pair.impossible, 0.5)):
            gap = np.linalg.norm(track.position[:, i] - track.position[:, j], axis=-1)
            if track is pair.possible:
                assert gap.min() >= deepest * touching  # the world never lets balls sink into each other
            else:
                assert gap[e:].min() <= deepest * touching


def test_inertia_a_ball_in_free_flight_turns_without_cause():
    gravity = np.array([0.0, CONFIG.gravity])
    for pair in _pairs("inertia"):
        (ball,), e = pair.balls, pair.event_frame
        for track in (pair.possible, pair.impossible):
            assert _free_flight(track, e, ball, CONFIG)
        change = lambda track: track.velocity[e, ball] - track.velocity[e - 1, ball] - gravity
        np.testing.assert_allclose(change(pair.possible), 0.0, atol=1e-4)
        speed = np.linalg.norm(pair.possible.velocity[e - 1, ball])
        assert np.linalg.norm(change(pair.impossible)) >= 1.7 * speed


def test_gravity_the_ball_falls_upwards_from_the_event_on():
    checked = 0
    for pair in _pairs("gravity"):
        (ball,), e = pair.balls, pair.event_frame
        for track, sign in ((pair.possible, 1.0), (pair.impossible, -1.0)):
            for t in range(e + 1, CONFIG.num_frames):
                if _free_flight(track, t, ball, CONFIG):
                    change = track.velocity[t, ball] - track.velocity[t - 1, ball]
                    np.testing.assert_allclose(change, [0.0, sign * CONFIG.gravity], atol=1e-4)
                    checked += 1
    assert checked >= len(SEEDS)


def test_constancy_two_balls_swap_colours_and_the_palette_stays_the_worlds():
    for pair in _pairs("constancy"):
        (ball, other), e = pair.balls, pair.event_frame
        world = BALL_COLORS[:CONFIG.num_balls]
        np.testing.assert_array_equal(pair.possible.color, np.broadcast_to(world, pair.possible.color.shape))
        np.testing.assert_array_equal(pair.impossible.color[:e], pair.possible.color[:e])
        np.testing.assert_array_equal(pair.impossible.color[e:, [ball, other]],
                                      np.broadcast_to(world[[other, ball]], (CONFIG.num_frames - e, 2, 3)))
        assert ball != other
        for t in range(CONFIG.num_frames):  # every frame shows the world's colours, each on one ball
            assert sorted(map(tuple, pair.impossible.color[t])) == sorted(map(tuple, world))
        np.testing.assert_array_equal(_centre_pixel(pair.impossible, e, ball), world[other])
        np.testing.assert_array_equal(_centre_pixel(pair.possible, e, ball), world[ball])


def test_pairs_are_deterministic_per_seed():
    first = physics_pairs.make_pairs(CONFIG, ("continuity", "solidity"), num_pairs=3, seed=5)
    again = physics_pairs.make_pairs(CONFIG, ("continuity", "solidity"), num_pairs=3, seed=5)
    other = physics_pairs.make_pairs(CONFIG, ("continuity", "solidity"), num_pairs=3, seed=6)
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a.impossible.frames, b.impossible.frames)
        assert (a.event_frame, a.world_seed) == (b.event_frame, b.world_seed)
        assert a.world_seed != c.world_seed
    only = physics_pairs.make_pairs(CONFIG, ("solidity",), num_pairs=3, seed=5)  # one category alone: the same
    assert [p.world_seed for p in only] == [p.world_seed for p in first[3:]]


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match="unknown physics category 'levitation': choose from permanence"):
        physics_pairs.make_pair(CONFIG, "levitation", 0)
    with pytest.raises(ValueError, match="num_frames=4: physics pairs need at least 6 frames"):
        physics_pairs.make_pair(BallsWorldConfig(num_frames=4), "gravity", 0)
    with pytest.raises(ValueError, match=r"constancy pairs need two balls \(num_balls=1\): two of them swap colours"):
        physics_pairs.make_pair(BallsWorldConfig(num_frames=16, num_balls=1), "constancy", 0)
