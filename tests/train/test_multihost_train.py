"""Two real processes (jax.distributed on localhost, one CPU device each): train, checkpoint, SIGKILL both,
resume with the same two processes, then restore their checkpoint in this one process onto other meshes."""

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jepa_jax import checkpoint, config as config_lib, metrics as metrics_lib
from jepa_jax.train import loop
from tests.conftest import REPO, TINY_WORLD
from tests.data.test_multihost import free_port

STEPS = 40


def launch(workdir, port):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device per process
    return [subprocess.Popen(
        ["timeout", "-s", "KILL", "400", sys.executable, "-m", "jepa_jax.cli", "train", "--config",
         f"{TINY_WORLD}:smoke", f"--config.train.steps={STEPS}", "--config.train.checkpoint_every=4",
         "--config.probe.at_fractions=(1.0,)", "--config.probe.report=False", "--workdir", str(workdir),
         "--coordinator_address", f"127.0.0.1:{port}", "--num_processes=2", f"--process_id={pid}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for pid in (0, 1)]


@pytest.mark.slow
def test_two_processes_train_get_killed_resume_and_one_process_restores(tmp_path):
    procs = launch(tmp_path, free_port())
    deadline = time.time() + 300
    while not (tmp_path / "checkpoints" / "4" / checkpoint.COMMIT_FILE).exists():
        assert all(p.poll() is None for p in procs) and time.time() < deadline, [p.communicate() for p in procs]
        time.sleep(0.05)
    for proc in procs:
        proc.kill()
        proc.wait()
    killed_at = checkpoint.Checkpointer(str(tmp_path)).latest_step()
    assert 4 <= killed_at < STEPS

    procs = launch(tmp_path, free_port())
    outputs = [p.communicate(timeout=420) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["resumed_from"] == killed_at
    steps = [r["step"] for r in metrics_lib.read_jsonl(str(tmp_path / "metrics.jsonl"))]
    assert steps == list(range(1, STEPS + 1))  # process 0 alone logs, each step once

    config = config_lib.load(TINY_WORLD, "smoke")
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    restored = {}
    for name, devices in (("one device", jax.devices()[:1]), ("fsdp 8", jax.devices())):
        config.mesh.data, config.mesh.fsdp = (-1, 1) if len(devices) == 1 else (1, 8)
        run = loop.build_run(config, devices=devices)
        restored[name] = jax.device_get(ckpt.restore(STEPS, checkpoint.abstract_like(run.state)))
    fresh = jax.device_get(run.state)
    assert int(restored["one device"].step) == STEPS
    jax.tree.map(np.testing.assert_array_equal, restored["one device"].params, restored["fsdp 8"].params)
    moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), restored["one device"].params, fresh.params)
    assert all(jax.tree.leaves(moved))
