"""The train loop: SIGTERM checkpoints and exits cleanly; a non-finite loss stops (or skips) with good checkpoints."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jepa_jax import checkpoint, metrics as metrics_lib
from jepa_jax.train import loop
from tests.conftest import REPO, TINY_WORLD


@pytest.mark.slow
def test_sigterm_checkpoints_the_current_step_exits_0_and_resume_finishes(tmp_path):
    command = [sys.executable, "-m", "jepa_jax.cli", "train", "--config", f"{TINY_WORLD}:smoke",
               "--config.train.steps=400", "--config.train.checkpoint_every=0", "--config.probe.at_fractions=(1.0,)",
               "--workdir", str(tmp_path)]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics_path = tmp_path / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics_path.exists() and len(metrics_path.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.time() < deadline, "run ended before training started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    stopped = summary["preempted_at"]
    assert 3 <= stopped < 400
    assert checkpoint.Checkpointer(str(tmp_path)).steps() == [0, stopped]
    assert not (tmp_path / "report.md").exists()  # a preempted run skips the probes

    resumed = subprocess.run(command + ["--config.train.steps=" + str(stopped + 3), "--config.probe.report=False"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["resumed_from"] == stopped and summary["preempted_at"] is None
    steps = [r["step"] for r in metrics_lib.read_jsonl(str(metrics_path))]
    assert steps == list(range(1, stopped + 4))


def diverging(config, on_nonfinite):
    config.optim.lr = config.optim.start_lr = 1e30
    config.train.steps, config.train.on_nonfinite = 6, on_nonfinite
    config.probe.at_fractions = (0.5,)  # checkpoints at 0, 3 and 6
    return config


def all_finite(tree) -> bool:
    return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree) if np.asarray(x).dtype.kind == "f")


@pytest.mark.slow
def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(smoke_config, tmp_path):
    config = diverging(smoke_config, "stop")
    with pytest.raises(FloatingPointError, match=r"at step (\d+); stopped with the last good checkpoint \(step "
                                                 r"(\d+)\) kept") as err:
        loop.train(config, str(tmp_path))
    bad_step = int(str(err.value).split(" at step ")[1].split(";")[0])
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    assert ckpt.latest_step() < bad_step
    run = loop.build_run(config)
    state = ckpt.restore(ckpt.latest_step(), checkpoint.abstract_like(run.state))
    assert all_finite(state.params) and all_finite(state.opt_state)


@pytest.mark.slow
def test_nonfinite_updates_are_skipped_when_asked(smoke_config, tmp_path):
    summary = loop.train(diverging(smoke_config, "skip"), str(tmp_path))
    records = metrics_lib.read_jsonl(str(tmp_path / "metrics.jsonl"))
    skipped = [r["step"] for r in records if r["skipped_update"] == 1.0]
    assert skipped and summary["steps"] == 6
    assert all(not math.isfinite(r["loss"]) or not math.isfinite(r["grad_norm"])
               for r in records if r["step"] in skipped)
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    state = ckpt.restore(6, checkpoint.abstract_like(loop.build_run(smoke_config).state))
    assert all_finite(state.params)


def test_an_unsupported_object_store_workdir_is_refused_before_anything_is_written(smoke_config, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"--workdir s3://bucket/run: s3:// is not supported; use gs://BUCKET/PATH"):
        loop.train(smoke_config, "s3://bucket/run")
    assert not os.listdir(tmp_path)
