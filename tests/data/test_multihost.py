"""Two real processes (jax.distributed on localhost) read disjoint shards that together cover the data."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "multihost_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_read_disjoint_shards_covering_the_data():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen(["timeout", "-s", "KILL", "120", sys.executable, WORKER, str(port), str(pid)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for pid in (0, 1)]
    outputs = [p.communicate(timeout=150) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-2000:]
    results = sorted((json.loads(out.strip().splitlines()[-1]) for out, _ in outputs), key=lambda r: r["process"])
    assert [r["count"] for r in results] == [2, 2]
    first, second = (set(r["indices"]) for r in results)
    assert len(results[0]["indices"]) == len(first) == 12 and not first & second
    assert first | second == set(range(24))
    # The global batch holds both processes' first local batches (4 clips each).
    assert results[0]["global_shape"] == [8, 2, 8, 8, 3]
    expected_sum = sum(results[p]["indices"][j] for p in (0, 1) for j in range(4)) * 2 * 8 * 8 * 3
    assert results[0]["global_sum"] == results[1]["global_sum"] == expected_sum
    assert np.all(np.asarray(results[0]["indices"]) < 24)
