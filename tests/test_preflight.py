"""Pre-flight sizing for a target topology (topology.py, benchmarks/preflight.py, train --dry_run --topology)."""

import json
import math
import os

import pytest

from jepa_jax import config as config_lib, metrics, topology
from jepa_jax.benchmarks import preflight
from tests.conftest import REPO, TINY_WORLD, require, run_cli


@pytest.mark.parametrize("name,chips,grid", [
    ("v5p-256", 128, (4, 4, 8)), ("v5p-8", 4, (2, 2, 1)), ("v4-32", 16, (2, 2, 4)), ("v5e-8", 8, (2, 4)),
    ("v5litepod-256", 256, (16, 16)), ("v6e-64", 64, (8, 8)), ("gpu:8x8", 64, (8, 8)), ("gpu:2x4", 8, (2, 4)),
])
def test_topology_names_give_chips_and_the_consoles_chip_grid(name, chips, grid):
    target = topology.get(name)
    assert (target.chips, target.chip_grid) == (chips, grid)
    assert math.prod(grid) == chips


@pytest.mark.parametrize("name", ["v5p-3", "v5p-6", "v7-8", "gpu:0x8", "v5e", "tpu-8"])
def test_an_unknown_topology_is_a_one_line_error_listing_the_known_forms(name):
    with pytest.raises(ValueError, match=r"unknown topology .*v5p-N.*gpu:NODESxGPUS") as err:
        topology.get(name)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["v5p-8", "v5e-4", "v6e-4"])
def test_the_mfu_peak_table_reads_libtpus_device_kinds_as_the_topology_table(name):
    require("libtpu")
    target = topology.get(name)
    devices, compiled_for = topology.abstract_devices(target)
    assert compiled_for == "tpu-aot" and len(devices) == target.chips
    assert devices[0].device_kind == topology.GENERATIONS[target.generation].device_kind
    assert metrics.peak_flops_per_device(devices[0]) == target.peak_flops


def test_more_chips_than_devices_names_the_fix():
    with pytest.raises(ValueError, match="needs 4096 devices.*xla_force_host_platform_device_count=4096"):
        topology.abstract_devices(topology.get("gpu:512x8"))


def tiny(batch: int = 16):
    config = config_lib.load(TINY_WORLD, "smoke")
    config.mesh.update(data=1, fsdp=-1, tensor=1)
    config.data.batch_size = batch
    return config


def test_preflight_reports_state_bytes_near_the_ideal_and_the_expected_step_time():
    result = preflight.preflight(tiny(), "v5e-8")
    assert result["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1} and result["chips"] == 8
    for group in ("encoder", "predictor", "optimizer"):
        state = result["state"][group]
        assert state["ideal_bytes_per_device"] <= state["bytes_per_device"] <= 1.5 * state["ideal_bytes_per_device"]
    assert result["fits"] and result["activation_bytes_per_device"] > 0
    assert result["needed_bytes_per_device"] >= result["state_bytes_per_device"]
    peak = 197e12  # v5e: dense bf16 FLOP/s per chip
    assert result["step_s_at_peak"] == pytest.approx(result["flops_per_step"] / (8 * peak))
    assert result["expected_step_s"] == pytest.approx(result["step_s_at_peak"] / 0.4)
    assert "| encoder state per device |" in preflight.table(result)


def test_activations_grow_with_the_batch_and_a_plan_that_cannot_fit_is_refused_in_one_line():
    small = preflight.preflight(tiny(16), "v5e-8")["activation_bytes_per_device"]
    large = preflight.preflight(tiny(64), "v5e-8")["activation_bytes_per_device"]
    assert large > small
    config = tiny(4096)  # ViT-B at 512 clips per chip, every activation kept
    config.model.update(size="base", scan_layers=True, remat="none")
    with pytest.raises(ValueError, match=r"does not fit v5e-8: .* GiB per chip needed, 16.0 GiB there; largest: "
                                         r"activations .*remat=nothing_saveable") as err:
        preflight.preflight(config, "v5e-8")
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_train_dry_run_topology_prints_the_table_and_json(tmp_path):
    result = run_cli("train", "--config", TINY_WORLD + ":smoke", "--dry_run", "--topology", "gpu:2x4",
                     "--config.mesh.data=1", "--config.mesh.fsdp=-1", "--workdir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["topology"] == "gpu:2x4" and summary["mesh"]["fsdp"] == 8 and summary["fits"]
    assert any(line.startswith("| needed per device |") for line in lines)
    assert not os.listdir(tmp_path)
    wrong = run_cli("train", "--config", TINY_WORLD + ":smoke", "--dry_run", "--topology", "v9-8", "--workdir",
                    str(tmp_path))
    assert wrong.returncode != 0 and "unknown topology 'v9-8'" in wrong.stderr




def vitg():
    """V-JEPA 2 ViT-g/16 phase 1 (global batch 3072, FSDP over every chip), its blocks scanned to compile fast."""
    config = config_lib.load(os.path.join(REPO, "experiments", "configs", "vjepa2_vitg16.py"))
    config.model.scan_layers = True
    return config


@pytest.mark.slow
def test_vitg_on_v5p_256_compiled_for_the_tpu_holds_the_ideal_state_bytes_per_chip():
    require("libtpu")  # the tpu extra: the TPU compiler, so the step is compiled for v5p ahead of time
    result = preflight.preflight(vitg(), "v5p-256")
    assert result["compiled_for"] == "tpu-aot" and result["mesh"] == {"data": 1, "fsdp": 128, "tensor": 1}
    ideal = sum(group["ideal_bytes_per_device"] for group in result["state"].values())
    assert ideal <= result["state_bytes_per_device"] <= 1.15 * ideal
    # encoder, EMA copy and two AdamW moments; predictor and its two moments (float32, the official counts)
    assert ideal == pytest.approx(4 * (4 * 1_012_173_952 + 3 * 22_378_240) / 128, rel=1e-3)
    assert result["fits"] and result["activation_bytes_per_device"] > result["state_bytes_per_device"]


@pytest.mark.slow
def test_vitg_with_a_far_too_large_batch_and_no_remat_is_refused_in_one_line():
    require("libtpu")
    config = vitg()
    config.model.remat = "none"
    with pytest.raises(ValueError, match=r"giant with batch 3072 does not fit v5p-16: .* GiB per chip needed, 95.0 "
                                         r"GiB there; largest: activations .*remat=nothing_saveable") as err:
        preflight.preflight(config, "v5p-16")
    assert "\n" not in str(err.value)
