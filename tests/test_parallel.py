"""Mesh resolution and multi-host detection."""

import pytest

from jepa_jax import parallel


@pytest.mark.parametrize("mesh,devices,expected", [
    ({"data": -1, "fsdp": 1, "tensor": 1}, 8, (8, 1, 1)),
    ({"data": 2, "fsdp": -1, "tensor": 2}, 8, (2, 2, 2)),
    ({"data": 1, "fsdp": 4, "tensor": 2}, 8, (1, 4, 2)),
])
def test_mesh_shape_fills_the_minus_one_axis(mesh, devices, expected):
    assert parallel.mesh_shape(mesh, devices) == expected


@pytest.mark.parametrize("mesh,message", [
    ({"data": -1, "fsdp": 3, "tensor": 1}, "does not divide 8 devices"),
    ({"data": -1, "fsdp": -1, "tensor": 1}, "at most one -1"),
    ({"data": 0, "fsdp": 8, "tensor": 1}, "sizes must be positive"),
])
def test_bad_mesh_shapes_fail_with_one_line(mesh, message):
    with pytest.raises(ValueError, match=message):
        parallel.mesh_shape(mesh, 8)


@pytest.mark.parametrize("environ,expected", [
    ({}, False),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, False),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "16"}, True),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.2:1234"}, True),
    ({"TPU_WORKER_HOSTNAMES": "t1k-0"}, False),
    ({"TPU_WORKER_HOSTNAMES": "t1k-0,t1k-1"}, True),
])
def test_cluster_detection_from_the_environment(environ, expected):
    assert parallel.cluster_detected(environ) is expected


def test_coordinator_without_process_count_fails():
    with pytest.raises(ValueError, match="--coordinator_address needs --num_processes and --process_id"):
        parallel.initialize_distributed("127.0.0.1:1234")
