"""Exact resume: a run killed with SIGKILL after a checkpoint and restarted equals an uninterrupted run, on the
built-in world, on a manifest of real video files (one of them broken), for the action-conditioned world model
on collected PushT trajectories, and for attentive probes on labelled videos (same held-out accuracy)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.conftest import REPO, TINY_WORLD, require
from tests.data.conftest import truncate_file, write_video

ARGS = ["--config.train.steps=12", "--config.train.checkpoint_every=4", "--config.probe.at_fractions=(1.0,)",
        "--config.probe.report=False"]


def video_manifest(directory) -> str:
    """A CSV manifest of five short mp4 files and one truncated one."""
    paths = [write_video(directory / f"clip{i}.mp4", num_frames=36, fps=25.0, width=80, height=72, noise=i + 1)
             for i in range(5)]
    paths.append(truncate_file(paths[0], directory / "broken.mp4"))
    manifest = directory / "train.csv"
    manifest.write_text("".join(f"{path} 0\n" for path in paths))
    return str(manifest)


def train_command(workdir, extra):
    return [sys.executable, "-m", "jepa_jax.cli", "train", *extra, *ARGS, "--workdir", str(workdir)]


def env():
    return {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def final_params(workdir):
    with ocp.StandardCheckpointer() as ckpt:
        restored = ckpt.restore(os.path.join(workdir, "checkpoints", "12", "state"))
    return restored["params"]


def metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return {r["step"]: r for r in map(json.loads, f)}


PUSHT_AC = os.path.join(REPO, "experiments", "configs", "pusht_ac.py")


def pusht_trajectories(directory) -> str:
    require("gym_pusht")
    from jepa_jax.data import trajectories  # pylint: disable=g-import-not-at-top
    trajectories.collect("pusht", 3, str(directory), steps_per_episode=10, seed=0, image_size=32)
    return str(directory)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["balls", "video", "trajectories", "probe"])
def test_sigkill_after_checkpoint_then_resume_matches_uninterrupted_run(tmp_path, source):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    extra = ["--config", f"{TINY_WORLD}:smoke"]
    if source == "video":
        (tmp_path / "videos").mkdir()
        extra = ["--config", f"{TINY_WORLD}:smoke,video",
                 f"--config.data.video.manifests=('{video_manifest(tmp_path / 'videos')}',)"]
    if source == "trajectories":
        extra = ["--config", f"{PUSHT_AC}:smoke",
                 f"--config.data.trajectories={pusht_trajectories(tmp_path / 'pusht')}"]
    if source == "probe":  # a random-init encoder's probes on motion-class videos, 2 segments x 2 views
        from jepa_jax.data import demo  # pylint: disable=g-import-not-at-top
        videos = demo.write_motion_videos(str(tmp_path / "videos"), num_train=8, num_val=8)
        extra = ["--config", f"{TINY_WORLD}:smoke,video", "--config.objective=probe", "--config.attentive.task=labels",
                 f"--config.data.video.manifests=('{videos['train']}',)", "--config.data.video.frame_step=2",
                 f"--config.attentive.val_manifest={videos['val']}", "--config.attentive.num_classes=4",
                 "--config.attentive.num_heads=4", "--config.attentive.segments=2", "--config.attentive.views=2"]
    command = lambda workdir: train_command(workdir, extra)
    subprocess.run(command(straight), cwd=REPO, env=env(), check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(command(killed), cwd=REPO, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "4" / "_CHECKPOINT_METADATA").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before its step-4 checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoints" / "12").exists()  # really interrupted
    resumed = subprocess.run(command(killed), cwd=REPO, env=env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["resumed_from"] in (4, 8)

    a, b = metrics(straight), metrics(killed)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    for step in a:
        # Not timings, and not the bad-file running totals (they restart with the process).
        compared = {k for k in a[step].keys() & b[step].keys()
                    if k not in ("steps_per_s", "step_time_s", "mfu") and not k.startswith("bad_files_total/")}
        assert ({"loss", "best_probe_loss", "best_probe_accuracy", "grad_norm"} if source == "probe" else
                {"loss", "prediction_loss", "grad_norm", "target_spread"}) <= compared
        for key in compared:
            assert a[step][key] == b[step][key], (step, key)
    pa, pb = final_params(straight), final_params(killed)
    for x, y in zip(jax_leaves(pa), jax_leaves(pb)):
        np.testing.assert_array_equal(x, y)
    if source == "probe":
        scores = [json.loads((run / "probe.json").read_text()) for run in (straight, killed)]
        assert scores[0]["members"] == scores[1]["members"] and scores[0]["num_test"] == 8


def jax_leaves(tree):
    import jax  # pylint: disable=g-import-not-at-top
    return jax.tree.leaves(tree)
