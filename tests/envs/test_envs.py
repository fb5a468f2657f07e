"""The simulated environments (the `sim` extra): interface, determinism, set_state round trips, success."""

import sys
import types

import numpy as np
import pytest

from jepa_jax import envs
from jepa_jax.data import exploration
from tests.conftest import require

SIMULATORS = {"pusht": "gym_pusht", "reacher": "dm_control"}
SHAPES = {"pusht": (2, 2, 5), "reacher": (2, 4, 6)}  # action, proprio, state dims


@pytest.fixture(name="env", params=sorted(envs.ENVS))
def env_fixture(request):
    require(SIMULATORS[request.param])
    return envs.make(request.param, image_size=32)


def rollout(env, seed: int, steps: int) -> list[envs.Observation]:
    """Observations of `steps` scripted (contact-making) actions from reset(seed)."""
    policy = exploration.SCRIPTED[env.name](env, np.random.default_rng(seed))
    observations = [env.reset(seed)]
    for _ in range(steps):
        observations.append(env.step(policy(observations[-1])))
    return observations


def test_interface_shapes_and_dtypes(env):
    action_dim, proprio_dim, state_dim = SHAPES[env.name]
    assert (env.action_dim, env.proprio_dim, env.state_dim, env.image_size) == (action_dim, proprio_dim, state_dim, 32)
    for bound in (env.action_low, env.action_high):
        assert bound.dtype == np.float32 and bound.shape == (action_dim,)
    for observation in (env.reset(0), env.step(env.action_high)):
        assert isinstance(observation, envs.Observation) and len(observation) == 3  # no reward, no success flag
        assert observation.pixels.dtype == np.uint8 and observation.pixels.shape == (32, 32, 3)
        assert observation.proprio.dtype == np.float32 and observation.proprio.shape == (proprio_dim,)
        assert observation.state.dtype == np.float64 and observation.state.shape == (state_dim,)
    with pytest.raises(ValueError, match=rf"{env.name}: action has shape \(3,\), expected \({action_dim},\)"):
        env.step(np.zeros(3))


def test_reset_is_deterministic_per_seed(env):
    first = rollout(env, seed=5, steps=4)
    again = rollout(env, seed=5, steps=4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.pixels, b.pixels)
        np.testing.assert_array_equal(a.state, b.state)
    assert not np.array_equal(env.reset(6).state, first[0].state)


def test_set_state_reproduces_pixels_and_state(env):
    observations = rollout(env, seed=1, steps=12)
    assert not np.allclose(observations[-1].state, observations[0].state)
    env.reset(9)  # another scene (Reacher: another target)
    for observation in (observations[12], observations[0], observations[7]):  # also going back to the start
        restored = env.set_state(observation.state)
        np.testing.assert_allclose(restored.state, observation.state, rtol=0, atol=1e-9)  # PushT: ulps of the turn
        np.testing.assert_array_equal(restored.proprio, observation.proprio)
        np.testing.assert_array_equal(restored.pixels, observation.pixels)


def test_success_and_distance(env):
    state = rollout(env, seed=2, steps=3)[-1].state
    assert env.success(state, state) and env.state_distance(state, state) == 0.0
    far = state.copy()
    if env.name == "pusht":
        far[:4] += 40.0  # agent and block moved by 80 in norm
    else:
        far[:2] += np.pi / 2  # both joints turned a quarter
    assert not env.success(far, state) and env.state_distance(far, state) > 0.05


def test_pusht_success_needs_the_block_angle():
    require("gym_pusht")
    env = envs.make("pusht", image_size=32)
    state = env.reset(0).state
    turned = state.copy()
    turned[4] = (state[4] + np.pi / 6) % (2 * np.pi)
    wrapped = state.copy()
    wrapped[4] = state[4] + 2 * np.pi - 0.01  # the same angle, written the other side of 2π
    assert not env.success(turned, state) and env.success(wrapped, state)


def test_pusht_actions_are_offsets_from_the_agent():
    require("gym_pusht")
    env = envs.make("pusht", image_size=32)
    start = env.reset(0).proprio
    np.testing.assert_array_equal(env.step(np.zeros(2)).proprio, start)  # the zero action stays put
    for _ in range(5):
        moved = env.step(np.array([env.action_high[0], 0.0])).proprio
    assert moved[0] - start[0] > 50 and abs(moved[1] - start[1]) < 1e-3  # along the offset, from a reset at rest


def test_pusht_agent_stays_on_the_table():
    require("gym_pusht")
    env = envs.make("pusht", image_size=32)
    env.reset(0)
    for _ in range(40):  # 40 x 40 = 1600 table units towards the corner (0, 512), far past both edges
        agent = env.step(np.array([env.action_low[0], env.action_high[1]])).proprio
    assert -1.0 <= agent[0] < 5.0 and 507.0 < agent[1] <= 513.0  # at the corner of the table, not beyond it


def test_random_walk_reversion_pulls_to_the_middle_of_the_action_box():
    box = types.SimpleNamespace(action_low=np.float32([-4.0, 0.0]), action_high=np.float32([4.0, 2.0]), action_dim=2)
    walk = exploration.RandomWalk(box, np.random.default_rng(0), step=0.0, reversion=0.25)
    first = walk(None)
    for t in range(1, 4):  # without noise, u - 1/2 shrinks by (1 - reversion) per step
        middle = (box.action_low + box.action_high) / 2
        np.testing.assert_allclose(walk(None) - middle, 0.75 ** t * (first - middle), rtol=1e-12)


def test_pusht_random_walks_leave_the_table_edge():
    require("gym_pusht")
    from jepa_jax.envs import pusht  # pylint: disable=g-import-not-at-top
    env, near_edge = pusht.PushT(render=False), []
    for seed in range(6):
        kind, policy = exploration.episode_policy(env, np.random.default_rng(seed), policy_mix=0.0)
        observation = env.reset(seed)
        for _ in range(60):
            observation = env.step(policy(observation))
            near_edge.append(((observation.proprio < 25) | (observation.proprio > 487)).any())
    assert kind == "random_walk" and np.mean(near_edge) < 0.35  # without reversion: 0.6 of 100-step walks


def test_pusht_pusher_moves_the_block_with_capped_offsets():
    require("gym_pusht")
    env, offsets, moved = envs.make("pusht", image_size=32), {"approach": [], "push": []}, []
    for seed in range(3):
        pusher, obs = exploration.PushTPusher(env, np.random.default_rng(seed)), env.reset(seed)
        start = obs.state
        for _ in range(100):
            action = pusher(obs)
            offsets[pusher.phase].append(np.linalg.norm(action))
            obs = env.step(action)
        moved.append(np.linalg.norm(obs.state[2:4] - start[2:4]))
    assert max(offsets["approach"]) == pytest.approx(15.0) and max(offsets["push"]) == pytest.approx(6.0)
    assert min(moved) > 20.0  # slow pushes still make contact: every episode moves the block


def test_pusht_block_centre_is_gym_pushts_centre_of_gravity():
    require("gym_pusht")
    from jepa_jax.envs import pusht  # pylint: disable=g-import-not-at-top
    env = envs.make("pusht", image_size=32)
    state = rollout(env, seed=3, steps=6)[-1].state
    block = env._sim.block  # pylint: disable=protected-access
    np.testing.assert_array_equal(block.center_of_gravity, pusht.BLOCK_COG)
    np.testing.assert_allclose(env.block_centre(state), block.local_to_world(block.center_of_gravity), atol=1e-9)


def test_reacher_reset_matches_suite_load_with_the_seed():
    require("dm_control")
    from dm_control import suite  # pylint: disable=g-import-not-at-top
    env = envs.make("reacher", image_size=32)
    for seed in (3, 11):
        reference = suite.load("reacher", "easy", task_kwargs={"random": seed})
        reference.reset()
        physics = reference.physics
        target = physics.named.model.geom_pos["target", ["x", "y"]]
        expected = np.concatenate([physics.data.qpos, physics.data.qvel, target])
        np.testing.assert_array_equal(env.reset(seed).state, expected)


def test_unknown_environment_is_a_one_line_error():
    with pytest.raises(ValueError) as err:
        envs.make("foo")
    assert str(err.value) == "environment 'foo' is unknown: choose one of ['pusht', 'reacher']"


def test_missing_sim_extra_names_the_install_command(monkeypatch):
    monkeypatch.delitem(sys.modules, "jepa_jax.envs.pusht", raising=False)
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # importing it fails as if it were missing
    with pytest.raises(ImportError, match=r"^environment 'pusht' needs gymnasium, which is not installed: "
                                          r"pip install 'jepa_jax\[sim\]'$"):
        envs.make("pusht")
