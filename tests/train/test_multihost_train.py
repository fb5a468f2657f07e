"""Four real processes (jax.distributed on localhost, one CPU device each) train; a second four are preempted
(SIGTERM to all), resume with four and end on the uninterrupted run's exact parameters; two processes then
restore that checkpoint, and one process restores it onto other meshes, all with the same parameters."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import pytest

from jepa_jax import checkpoint, config as config_lib, metrics as metrics_lib, storage
from jepa_jax.train import loop
from tests.conftest import REPO, TINY_WORLD
from tests.data.test_multihost import free_port

STEPS = 12


def launch(workdir, processes: int, *flags: str, steps: int = STEPS):
    """`processes` jax.distributed processes training the smoke config into `workdir` (a path or a bucket URL).
    Each writes its output to temporary files (`output`), not to pipes nobody reads while it runs: a full pipe would
    stall that process, and the others with it at their next collective."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device per process
    port = free_port()
    procs = []
    for pid in range(processes):
        logs = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        procs.append(subprocess.Popen(
            ["timeout", "-s", "KILL", "900", sys.executable, "-m", "jepa_jax.cli", "train", "--config",
             f"{TINY_WORLD}:smoke", f"--config.train.steps={steps}", "--config.train.checkpoint_every=4",
             "--config.data.batch_size=8", "--config.probe.at_fractions=()", *flags, "--workdir", str(workdir),
             "--coordinator_address", f"127.0.0.1:{port}", f"--num_processes={processes}", f"--process_id={pid}"],
            cwd=REPO, env=env, stdout=logs[0], stderr=logs[1], text=True))
        procs[-1].logs = logs
    return procs


def output(proc) -> tuple[str, str]:
    """(standard output, standard error) a launched process has written so far."""
    texts = []
    for log in proc.logs:
        log.seek(0)
        texts.append(log.read())
    return texts[0], texts[1]


def finish(procs, workdir, printed: list | None = None) -> dict:
    """Waits for every process (all must exit 0) and returns the run's summary.json; `printed` gets each process's
    standard output."""
    for proc in procs:
        proc.wait(timeout=920)
    outputs = [output(p) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-3000:]
    if printed is not None:
        printed.extend(out for out, _ in outputs)
    return json.loads((storage.path(str(workdir)) / "summary.json").read_text())


@pytest.mark.slow
def test_four_processes_preempted_resume_exactly_and_two_processes_restore(tmp_path):
    uninterrupted, preempted = tmp_path / "uninterrupted", tmp_path / "preempted"
    printed = []
    reference = finish(launch(uninterrupted, 4, "--config.probe.attentive_steps=0"), uninterrupted, printed)
    assert reference["preempted_at"] is None and (uninterrupted / "report.md").exists()
    assert ["# Probe report" in out for out in printed] == [True, False, False, False]  # process 0 wrote and prints it

    procs = launch(preempted, 4, "--config.probe.report=False")
    deadline = time.time() + 800
    while not (preempted / "checkpoints" / "4" / checkpoint.COMMIT_FILE).exists():
        assert all(p.poll() is None for p in procs) and time.time() < deadline, [output(p) for p in procs]
        time.sleep(0.05)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    stopped = finish(procs, preempted)
    assert 4 <= stopped["preempted_at"] < STEPS
    assert checkpoint.Checkpointer(str(preempted)).latest_step() == stopped["preempted_at"]

    resumed = finish(launch(preempted, 4, "--config.probe.report=False"), preempted)
    assert resumed["resumed_from"] == stopped["preempted_at"] and resumed["preempted_at"] is None
    assert resumed["params_fingerprint"] == reference["params_fingerprint"]
    steps = [r["step"] for r in metrics_lib.read_jsonl(str(preempted / "metrics.jsonl"))]
    assert steps == list(range(1, STEPS + 1))  # process 0 alone logs, each step once

    restored = finish(launch(preempted, 2, "--config.probe.report=False"), preempted)
    assert restored["resumed_from"] == STEPS
    assert restored["params_fingerprint"] == reference["params_fingerprint"]

    config = config_lib.load(TINY_WORLD, "smoke")
    config.data.batch_size, config.mesh.data, config.mesh.fsdp = 8, 1, 8
    run = loop.build_run(config)
    ckpt = checkpoint.Checkpointer(str(uninterrupted))
    state = ckpt.restore(STEPS, checkpoint.abstract_like(run.state))
    assert checkpoint.fingerprint(state.params) == reference["params_fingerprint"]
    moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), jax.device_get(state.params),
                         jax.device_get(run.state.params))
    assert all(jax.tree.leaves(moved))
