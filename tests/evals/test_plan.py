"""Goal-reaching evaluation (evals.plan): the protocol's goals, the oracle's energy, the interval, one-line errors
and what `evaluate` / `jepa-jax plan` write, on a seconds-long PushT model."""

import json
import math
import os

import chex
import numpy as np
import pytest
from PIL import Image

from jepa_jax import config as config_lib, envs, planning
from jepa_jax.data import trajectories
from jepa_jax.evals import plan
from jepa_jax.models import vit
from tests.conftest import REPO, require, run_cli

PUSHT_AC = os.path.join(REPO, "experiments", "configs", "pusht_ac.py")
TINY_PLANNER = planning.planner_settings("cem", horizon=2, num_samples=16, num_elites=4, iterations=2)


@pytest.fixture(name="pusht_run", scope="module")
def pusht_run_fixture(tmp_path_factory):
    """A 4-step `pusht_ac.py:smoke` run on 3 collected episodes: (run directory, trajectory folder)."""
    require("gym_pusht")
    from jepa_jax.train import loop  # pylint: disable=g-import-not-at-top
    root = tmp_path_factory.mktemp("pusht")
    data, run = str(root / "data"), str(root / "run")
    trajectories.collect("pusht", 3, data, steps_per_episode=12, seed=0, image_size=32)
    config = config_lib.load(PUSHT_AC, "smoke")
    config.data.trajectories = data
    loop.train(config, run)
    return run, data


@pytest.mark.parametrize("trials", [1, 7, 50])
def test_wilson_interval_matches_its_closed_forms(trials):
    z2 = 1.96 ** 2
    assert plan.wilson_interval(0, trials) == (0.0, pytest.approx(z2 / (trials + z2)))
    assert plan.wilson_interval(trials, trials) == (pytest.approx(trials / (trials + z2)), 1.0)
    for successes in range(trials + 1):
        low, high = plan.wilson_interval(successes, trials)
        mirror_low, mirror_high = plan.wilson_interval(trials - successes, trials)
        assert low <= successes / trials <= high
        assert (low, high) == (pytest.approx(1 - mirror_high), pytest.approx(1 - mirror_low))
    assert all(math.isnan(x) for x in plan.wilson_interval(0, 0))


def test_goal_episode_is_seeded_and_held_out():
    require("gym_pusht")
    env = envs.make("pusht", image_size=32)
    episode = plan.goal_episode(env, seed=3, index=1)
    again = plan.goal_episode(envs.make("pusht", image_size=32), seed=3, index=1)
    assert again.env_seed == episode.env_seed
    np.testing.assert_array_equal(again.goal.state, episode.goal.state)
    np.testing.assert_array_equal(again.goal.pixels, episode.goal.pixels)
    assert not np.allclose(episode.goal.state, episode.start.state)  # 25 steps of exploration moved the agent
    others = [plan.goal_episode(env, seed, index) for seed, index in ((3, 2), (4, 1))]
    assert len({episode.env_seed, *(o.env_seed for o in others)}) == 3
    kinds = {plan.goal_episode(env, 3, index).goal_policy for index in range(8)}
    assert kinds == {"scripted", "random_walk"}  # policy_mix 0.5: both kinds among 8 goals (seeded, so fixed)


def test_goal_episode_leaves_the_env_at_its_start_and_restart_returns_there():
    require("gym_pusht")
    env = envs.make("pusht", image_size=32)
    episode = plan.goal_episode(env, seed=0, index=0, warmup=30)
    assert len(episode.warmup_actions) > 0  # seeded: this start lies inside the trajectory
    moved = env.step(env.action_high)
    fresh = envs.make("pusht", image_size=32)
    np.testing.assert_array_equal(episode.restart(fresh).pixels, episode.start.pixels)
    np.testing.assert_array_equal(fresh.step(env.action_high).state, moved.state)


def test_goal_episode_starts_inside_the_held_out_trajectory():
    require("gym_pusht")
    env = envs.make("pusht", image_size=32)
    lengths = [len(plan.goal_episode(env, seed=1, index=i, warmup=30).warmup_actions) for i in range(6)]
    assert all(0 <= n <= 30 for n in lengths) and len(set(lengths)) > 1
    from_reset = plan.goal_episode(env, seed=1, index=0, warmup=0)
    assert from_reset.warmup_actions.shape == (0, env.action_dim)
    np.testing.assert_array_equal(from_reset.start.state, env.reset(from_reset.env_seed).state)


def test_simulator_energy_is_the_state_distance_after_replaying_each_sequence():
    require("gym_pusht")
    frameskip, env = 2, envs.make("pusht", image_size=32)
    start, goal = env.reset(1), plan.goal_episode(env, seed=0, index=0).goal
    centre, scale = np.zeros(2 * frameskip), np.full(2 * frameskip, 20.0)
    energy = plan.simulator_energy(envs.make("pusht", 32, render=False), frameskip, centre, scale)
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 2, 2 * frameskip)).astype(np.float32)
    got = np.asarray(energy({"state": start.state.astype(np.float32), "goal_state": goal.state.astype(np.float32)},
                            actions))
    for sequence, value in zip(actions, got):
        env.set_state(start.state.astype(np.float32).astype(np.float64))
        for action in (centre + scale * sequence.astype(np.float64)).reshape(-1, 2):
            obs = env.step(action)
        assert value == pytest.approx(env.state_distance(obs.state, goal.state), rel=1e-5)
    assert len(set(got.tolist())) == 3


def test_world_model_errors_name_the_field_and_the_fix(pusht_run):
    run, data = pusht_run
    model = plan.load_world_model(run)
    assert model.config.objective == "ac" and model.step == model.config.train.steps
    with pytest.raises(ValueError, match=r"^config.ac.proprio_dim=2 of the model does not match environment "
                                         r"'reacher''s 4-d proprio$"):
        model.check_env(envs.make("reacher", 32))
    model.config.ac.frameskip = 3
    with pytest.raises(ValueError, match=r"^config.ac.action_dim=4 of the model does not match environment 'pusht': "
                                         r"2-d actions x frameskip 3 = 6; plan with"):
        model.check_env(envs.make("pusht", 32))
    with pytest.raises(ValueError, match=r"frames must be uint8 \[B, 32, 32, 3\] \(config.ac.image_size\), got "
                                         r"uint8 \[1, 64, 64, 3\]"):
        model.encode(np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="meta.json .* pass the collected folder with --data"):
        plan.load_world_model(run, data=os.path.dirname(data))
    with pytest.raises(ValueError, match=r"distance='cosine': choose one of \['l1', 'l2'\]"):
        model.energy("cosine")


def test_batch_normalised_states_use_the_training_datas_moments(pusht_run):
    """pusht_ac.py standardises states (state_norm "batch"); the planner's moments are numpy's mean and std of
    the pooled features of every frameskip-th frame of the collected episodes, and its states use them."""
    run, data = pusht_run
    model = plan.load_world_model(run)
    assert model.config.ac.state_norm == "batch" and model.config.ac.pool_grid == 1
    meta = trajectories.read_meta(data)
    frames = np.concatenate([trajectories.read_episode(trajectories.episode_path(data, i),
                                                       trajectories.expected_fields(meta))["frames"][::model.frameskip]
                             for i in range(meta["episodes"])])
    patches = vit.encode_frames(model.encoder, model.params["encoder"], vit.normalize_video(frames[:, None]))
    features = np.asarray(patches, np.float64)[:, 0].mean(axis=1, keepdims=True)  # pool_grid 1: [N, 1, D]
    mean, std = (np.asarray(x) for x in model.state_moments)
    np.testing.assert_allclose(mean, features.mean(0), atol=1e-5)
    np.testing.assert_allclose(std, features.std(0), rtol=1e-3)
    states = np.asarray(model.encode(frames))
    np.testing.assert_allclose(states, (features - features.mean(0)) / features.std(0), atol=1e-2)


def test_evaluate_reports_model_random_and_oracle_with_report_strip_and_json(pusht_run, tmp_path):
    model = plan.load_world_model(pusht_run[0])
    out = tmp_path / "plan"
    results = plan.evaluate(model, "pusht", episodes=2, seed=5, out_dir=str(out), settings=TINY_PLANNER, replans=2,
                            oracle_settings=TINY_PLANNER, oracle_episodes=1, progress=False)
    assert {k: results[k]["episodes"] for k in ("model", "random", "oracle")} == {"model": 2, "random": 2,
                                                                                  "oracle": 1}
    for name in ("model", "random", "oracle"):
        summary = results[name]
        low, high = summary["success_ci95"]
        assert low <= summary["success_rate"] <= high and summary["mean_final_distance"] > 0
    assert results["model"]["replan_seconds_median"] > 0
    assert json.loads((out / "plan.json").read_text())["model"] == results["model"]
    report = (out / "plan_report.md").read_text()
    assert sum(line.startswith(("| model |", "| random |", "| oracle |")) for line in report.splitlines()) == 3
    strip = np.asarray(Image.open(out / "plan_strip.png"))
    assert strip.ndim == 3 and strip.shape[0] > 100 and strip.shape[1] > 300  # 2 rows; goal, start, 2 replans


def test_plan_cli_prints_one_json_line(pusht_run, tmp_path):
    run, _ = pusht_run
    proc = run_cli("plan", "--model", run, "--env", "pusht", "--episodes", "2", "--replans", "1",
                   "--baselines=false", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["episodes"] == 2 and 0 <= line["success_rate"] <= 1 and "random" not in line
    assert (tmp_path / "out" / "plan_report.md").exists()
    wrong = run_cli("plan", "--model", str(tmp_path / "missing"), "--env", "pong")  # the name fails first
    assert wrong.returncode != 0
    assert wrong.stderr.strip().splitlines()[-1].endswith("environment 'pong' is unknown: choose one of "
                                                          "['pusht', 'reacher']")


@pytest.mark.slow
def test_reacher_collects_trains_and_plans_end_to_end(tmp_path):
    """reacher_ac.py:smoke on 3 collected Reacher episodes: the config fits the environment (4-d proprio, 2-d
    torques x frameskip) and `evaluate` reports the model, random actions and the oracle."""
    require("dm_control")
    from jepa_jax.train import loop  # pylint: disable=g-import-not-at-top
    data, run = str(tmp_path / "data"), str(tmp_path / "run")
    trajectories.collect("reacher", 3, data, steps_per_episode=12, seed=0, image_size=32)
    config = config_lib.load(os.path.join(REPO, "experiments", "configs", "reacher_ac.py"), "smoke")
    config.data.trajectories = data
    loop.train(config, run)
    results = plan.evaluate(plan.load_world_model(run), "reacher", episodes=2, seed=1, settings=TINY_PLANNER,
                            replans=2, oracle_settings=TINY_PLANNER, oracle_episodes=1, progress=False)
    assert {k: results[k]["episodes"] for k in ("model", "random", "oracle")} == {"model": 2, "random": 2,
                                                                                  "oracle": 1}
    assert all(0 <= results[k]["success_rate"] <= 1 for k in ("model", "random", "oracle"))


def test_strip_shows_episodes_that_stopped_early_beside_longer_ones(tmp_path):
    """An episode that reached its goal has fewer frames than one that kept replanning; both rows are drawn."""
    frame = lambda v: np.full((8, 8, 3), v, np.uint8)
    goal = envs.Observation(frame(0), np.zeros(2), np.zeros(5))
    episodes = [plan.Episode(0, np.zeros((0, 2)), goal, goal, [frame(50)], reached_at=5),
                plan.Episode(1, np.zeros((0, 2)), goal, goal, [frame(100), frame(150), frame(200)])]
    path = tmp_path / "strip.png"
    plan._plot_strip(episodes, str(path))  # pylint: disable=protected-access
    assert np.asarray(Image.open(path)).shape[0] > 100


def test_summary_counts_successes_per_goal_policy():
    goal = envs.Observation(np.zeros((8, 8, 3), np.uint8), np.zeros(2), np.zeros(5))
    episode = lambda reached, kind: plan.Episode(0, np.zeros((0, 2)), goal, goal, [], reached_at=reached,
                                                 final_distance=1.0, goal_policy=kind)
    summary = plan.summarise([episode(5, "scripted"), episode(None, "scripted"), episode(10, "random_walk"),
                              episode(None, "random_walk"), episode(None, "random_walk")], {})
    assert summary["success_by_goal_policy"] == {"random_walk": [1, 3], "scripted": [1, 2]}
    assert summary["success_rate"] == 0.4 and summary["episodes"] == 5


def test_plan_cli_proprio_weight_default_is_the_librarys():
    from jepa_jax import cli  # pylint: disable=g-import-not-at-top
    assert cli._PROPRIO_WEIGHT.default == plan.DEFAULT_PROPRIO_WEIGHT  # pylint: disable=protected-access


def test_random_world_model_encodes_with_unit_moments_for_batch_normalised_states():
    model = plan.random_world_model(config_lib.load_spec("experiments/configs/pusht_ac.py:smoke"))
    assert model.config.ac.state_norm == "batch"
    size = model.image_size
    frames = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    chex.assert_tree_all_finite(model.encode(frames))
