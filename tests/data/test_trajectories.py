"""Trajectory data: deterministic, resumable collection; episode files; windowed source; the grain stream."""

import json
import os
import sys

import numpy as np
import pytest

from tests.conftest import assert_stream_resumes_exactly, require, run_cli

require("gym_pusht")

from jepa_jax import envs  # pylint: disable=g-import-not-at-top,wrong-import-position
from jepa_jax.data import exploration  # pylint: disable=g-import-not-at-top,wrong-import-position
from jepa_jax.data import pipeline, trajectories  # pylint: disable=g-import-not-at-top,wrong-import-position

SETTINGS = dict(steps_per_episode=10, seed=3, image_size=32, policy_mix=0.5)


def collect(out, episodes=4, env="pusht", **overrides):
    return trajectories.collect(env, episodes, str(out), **{**SETTINGS, **overrides})


def episode(directory, index) -> dict:
    with np.load(trajectories.episode_path(str(directory), index), allow_pickle=False) as archive:
        return dict(archive)


@pytest.fixture(scope="module")
def pusht_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("pusht")
    collect(out)
    return str(out)


def assert_same_folders(a, b, episodes):
    meta_a, meta_b = trajectories.read_meta(str(a)), trajectories.read_meta(str(b))
    assert meta_a == meta_b
    for i in range(episodes):
        for name, array in episode(a, i).items():
            np.testing.assert_array_equal(array, episode(b, i)[name], err_msg=f"episode {i} {name}")


def test_episode_files_and_meta(pusht_data):
    meta = trajectories.read_meta(pusht_data)
    assert {k: meta[k] for k in SETTINGS} == SETTINGS and meta["episodes"] == 4 and meta["env"] == "pusht"
    assert (meta["action_dim"], meta["proprio_dim"], meta["state_dim"]) == (2, 2, 5)
    data = episode(pusht_data, 2)
    assert {name: (a.dtype, a.shape) for name, a in data.items()} == {
        "frames": (np.uint8, (11, 32, 32, 3)), "actions": (np.float32, (10, 2)), "proprio": (np.float32, (11, 2)),
        "states": (np.float64, (11, 5))}
    actions = np.concatenate([episode(pusht_data, i)["actions"] for i in range(4)])
    np.testing.assert_allclose(meta["action_mean"], actions.mean(0), rtol=1e-5)
    np.testing.assert_allclose(meta["action_std"], actions.std(0), rtol=1e-5)
    assert sorted(os.listdir(pusht_data)) == [f"episode_{i:06d}.npz" for i in range(4)] + ["meta.json"]


def test_episode_replays_from_its_seed(pusht_data):
    """actions[t] is the action that took states[t] to states[t + 1]."""
    env = envs.make("pusht", image_size=32)
    for i in range(4):
        data = episode(pusht_data, i)
        observation = env.reset(trajectories.episode_seeds(SETTINGS["seed"], i)[0])
        np.testing.assert_array_equal(observation.state, data["states"][0])
        for t, action in enumerate(data["actions"]):
            observation = env.step(action)
            np.testing.assert_array_equal(observation.state, data["states"][t + 1])
            np.testing.assert_array_equal(observation.pixels, data["frames"][t + 1])


def test_collect_is_deterministic(tmp_path, pusht_data):
    summary = collect(tmp_path)
    assert {k: summary[k] for k in ("episodes", "episodes_written", "episodes_skipped", "frames_written")} == {
        "episodes": 4, "episodes_written": 4, "episodes_skipped": 0, "frames_written": 44}
    assert_same_folders(tmp_path, pusht_data, 4)
    collect(tmp_path / "other", episodes=1, seed=4)
    assert not np.array_equal(episode(tmp_path / "other", 0)["states"], episode(pusht_data, 0)["states"])


def test_collection_workers_write_the_same_files(tmp_path, pusht_data):
    summary = collect(tmp_path, workers=2)  # two chunks of two episodes, one per worker process
    assert (summary["episodes_written"], summary["episodes_skipped"]) == (4, 0)
    assert_same_folders(tmp_path, pusht_data, 4)


def test_interrupted_collection_resumes_to_the_same_data(tmp_path):
    out = tmp_path / "resumed"
    collect(out, episodes=3)
    with open(trajectories.episode_path(str(out), 1), "r+b") as f:  # a damaged episode is collected again
        f.truncate(100)
    summary = collect(out, episodes=5)
    assert (summary["episodes_written"], summary["episodes_skipped"]) == (3, 2)
    collect(tmp_path / "at_once", episodes=5)
    assert_same_folders(out, tmp_path / "at_once", 5)
    assert collect(out, episodes=5)["episodes_written"] == 0


def test_other_settings_for_an_existing_folder_are_a_one_line_error(tmp_path):
    collect(tmp_path, episodes=2)
    with pytest.raises(ValueError, match=r"meta.json was collected with image_size=32 \(now 64\), seed=3 \(now 4\): "
                                         r"rerun with its settings to resume, or use another --out$"):
        collect(tmp_path, episodes=2, seed=4, image_size=64)
    with pytest.raises(ValueError, match="holds 2 episodes: ask for at least 2"):
        collect(tmp_path, episodes=1)
    meta = trajectories.read_meta(str(tmp_path))
    meta["exploration"] = exploration.VERSION - 1  # collected by older policies
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"with exploration={exploration.VERSION - 1} \(now {exploration.VERSION}\)"):
        collect(tmp_path, episodes=2)


def test_windows_line_up_with_the_episodes(pusht_data):
    source = trajectories.TrajectorySource(pusht_data, num_frames=3, frameskip=2)
    assert source.windows_per_episode == 10 - 4 + 1 and len(source) == 4 * 7
    for index in (0, 6, 7, 16, 27):
        i, start = divmod(index, 7)
        data, window = episode(pusht_data, i), source[index]
        kept = [start, start + 2, start + 4]
        np.testing.assert_array_equal(window["frames"], data["frames"][kept])
        np.testing.assert_array_equal(window["states"], data["states"][kept])
        assert window["actions"].dtype == np.float32 and window["actions"].shape == (2, 4)
        macro = source.normalizer.denormalize_actions(window["actions"])
        for k in range(2):  # the two env actions between kept frames k and k + 1, in order
            np.testing.assert_allclose(macro[k].reshape(2, 2), data["actions"][kept[k]:kept[k + 1]], rtol=1e-5)
        np.testing.assert_allclose(source.normalizer.denormalize_proprio(window["proprio"]), data["proprio"][kept],
                                   rtol=1e-5)
        assert window["bad_files"].sum() == 0


def test_normalizer_standardises_the_data_and_tiles_macro_actions(pusht_data):
    stats = trajectories.TrajectorySource(pusht_data, num_frames=2).normalizer
    actions = np.concatenate([episode(pusht_data, i)["actions"] for i in range(4)])
    normalized = stats.normalize_actions(actions)
    np.testing.assert_allclose(normalized.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(normalized.std(0), 1, atol=1e-5)
    macro = actions[:6].reshape(2, 6)  # three env actions each
    np.testing.assert_allclose(stats.normalize_actions(macro).reshape(6, 2), normalized[:6], rtol=1e-6)
    np.testing.assert_allclose(stats.denormalize_actions(stats.normalize_actions(macro)), macro, rtol=1e-6)


def test_window_that_does_not_fit_and_unfinished_collection_are_errors(tmp_path, pusht_data):
    with pytest.raises(ValueError, match="num_frames=4 frames every frameskip=4 steps do not fit the 10-step"):
        trajectories.TrajectorySource(pusht_data, num_frames=4, frameskip=4)
    collect(tmp_path, episodes=1)
    meta = trajectories.read_meta(str(tmp_path))
    del meta["action_mean"]
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="has no statistics: collection did not finish"):
        trajectories.TrajectorySource(str(tmp_path), num_frames=2)
    with pytest.raises(FileNotFoundError, match="meta.json: no such file; collect trajectories with"):
        trajectories.TrajectorySource(str(tmp_path / "nothing"), num_frames=2)


def copy_folder(src, dst, episodes=4):
    os.makedirs(dst)
    for name in ["meta.json"] + [os.path.basename(trajectories.episode_path("", i)) for i in range(episodes)]:
        with open(os.path.join(src, name), "rb") as f, open(os.path.join(dst, name), "wb") as g:
            g.write(f.read())
    return str(dst)


def test_episode_without_actions_names_the_file_and_field(tmp_path, pusht_data):
    folder = copy_folder(pusht_data, tmp_path / "data")
    path = trajectories.episode_path(folder, 1)
    data = episode(folder, 1)
    np.savez(path, **{k: v for k, v in data.items() if k != "actions"})
    source = trajectories.TrajectorySource(folder, num_frames=2)
    with pytest.raises(ValueError, match=rf"^{path}: no field 'actions' \(expected float32 \[10, 2\]\); collect it "):
        source[source.windows_per_episode]
    np.savez(path, **{**data, "proprio": data["proprio"][:, :1]})
    with pytest.raises(ValueError, match=rf"^{path}: field 'proprio' is float32 \[11, 1\], expected float32 \[11, 2\]"):
        source[source.windows_per_episode]


def test_damaged_episode_is_replaced_and_counted(tmp_path, pusht_data):
    folder = copy_folder(pusht_data, tmp_path / "data")
    path = trajectories.episode_path(folder, 2)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    source = trajectories.TrajectorySource(folder, num_frames=2)
    window = source[2 * source.windows_per_episode]
    assert window["bad_files"].sum() >= 1 and window["frames"].shape == (2, 32, 32, 3)
    assert pipeline.BAD_FILES.reasons[path] == "undecodable"
    assert source[0]["bad_files"].sum() == 0


def test_stream_batches_and_resumes_exactly(pusht_data):
    # Reads in this thread: grain threads left prefetching would run numpy's header parsing (ast.literal_eval)
    # while later tests parse source files, which CPython 3.11 can fail with "AST constructor recursion depth
    # mismatch" (python/cpython#106905).
    def stream():
        return trajectories.trajectory_dataset(pusht_data, num_frames=3, frameskip=2, local_batch_size=5, seed=0,
                                               process_index=0, process_count=1, num_threads=0)
    batch = next(iter(stream()))
    assert {name: (a.dtype, a.shape) for name, a in batch.items()} == {
        "frames": (np.uint8, (5, 3, 32, 32, 3)), "actions": (np.float32, (5, 2, 4)),
        "proprio": (np.float32, (5, 3, 2)), "bad_files": (np.int32, (5, 6))}
    assert_stream_resumes_exactly(stream, skip=2, check=2)


@pytest.mark.slow
def test_reacher_collection(tmp_path):
    require("dm_control")
    collect(tmp_path, episodes=2, env="reacher", steps_per_episode=6, policy_mix=1.0)
    meta = trajectories.read_meta(str(tmp_path))
    assert (meta["action_dim"], meta["proprio_dim"], meta["state_dim"]) == (2, 4, 6)
    window = trajectories.TrajectorySource(str(tmp_path), num_frames=4, frameskip=2)[1]
    assert window["frames"].shape == (4, 32, 32, 3) and window["actions"].shape == (3, 4)


def test_cli_help_of_data_collect(capsys):
    from jepa_jax import cli  # pylint: disable=g-import-not-at-top
    cli.main(["jepa-jax", "data", "collect", "--help"])
    text = capsys.readouterr().out
    assert "usage: jepa-jax data collect --env NAME --episodes N --out DIR [flags]" in text
    assert "--policy_mix" in text and "jepa-jax data collect --env pusht --episodes 1000" in text


def test_cli_without_the_sim_extra_is_a_one_line_error(monkeypatch, tmp_path):
    from absl import flags  # pylint: disable=g-import-not-at-top
    from jepa_jax import cli  # pylint: disable=g-import-not-at-top
    monkeypatch.delitem(sys.modules, "jepa_jax.envs.pusht", raising=False)
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # importing it fails as if it were missing
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.main(["jepa-jax", "data", "collect", "--env", "pusht", "--episodes", "1", "--out", str(tmp_path)])
    finally:
        flags.FLAGS.unparse_flags()
    assert str(exit_.value) == ("jepa-jax: error: environment 'pusht' needs gymnasium, which is not installed: "
                                "pip install 'jepa_jax[sim]'")


@pytest.mark.slow
def test_cli_data_collect_prints_a_json_summary_and_errors_in_one_line(tmp_path):
    args = ("data", "collect", "--env", "pusht", "--episodes", "2", "--out", str(tmp_path), "--steps_per_episode",
            "3", "--image_size", "32")
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["episodes_written"], summary["episodes_skipped"], summary["out_dir"]) == (2, 0, str(tmp_path))
    assert json.loads(run_cli(*args).stdout)["episodes_skipped"] == 2
    result = run_cli(*args[:-1], "64")
    assert result.returncode != 0 and result.stderr.strip().count("\n") == 0
    assert "was collected with image_size=32 (now 64)" in result.stderr
    result = run_cli("data", "collect", "--env", "foo", "--episodes", "1", "--out", str(tmp_path / "x"))
    assert result.stderr.strip() == ("jepa-jax: error: environment 'foo' is unknown: choose one of "
                                     "['pusht', 'reacher']")
