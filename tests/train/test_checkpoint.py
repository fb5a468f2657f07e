"""Checkpoints: restore onto other meshes, incomplete saves, retention, stored config, mismatched runs."""

import shutil

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax import checkpoint
from jepa_jax.models import stacking
from jepa_jax.train import loop
from tests.train.test_step import host_batches, run_steps


def fsdp_trained_state(config):
    """An FSDP-8 run after one step (so values differ from any fresh init) and its host copy."""
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 8, 1
    run = loop.build_run(config)
    state, _ = run_steps(run, host_batches(config, run, 1))
    return state


@pytest.mark.slow
@pytest.mark.parametrize("mesh,devices", [((1, 1, 1), 1), ((2, 4, 1), 8)])
def test_fsdp_8_device_checkpoint_restores_onto_another_mesh(smoke_config, tmp_path, mesh, devices):
    smoke_config.objective = "ema"
    saved = fsdp_trained_state(smoke_config)
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    ckpt.save(1, saved)
    ckpt.wait()
    expected = jax.device_get(saved)

    smoke_config.mesh.data, smoke_config.mesh.fsdp, smoke_config.mesh.tensor = mesh
    target = loop.build_run(smoke_config, devices=jax.devices()[:devices])
    restored = checkpoint.Checkpointer(str(tmp_path)).restore(1, checkpoint.abstract_like(target.state))
    assert [x.sharding for x in jax.tree.leaves(restored)] == [x.sharding for x in jax.tree.leaves(target.state)]
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.params), expected.params)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.ema_params), expected.ema_params)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.opt_state), expected.opt_state)
    assert int(restored.step) == 1


def small_state(value: float):
    return {"w": jnp.full((4, 3), value), "step": jnp.asarray(int(value), jnp.int32)}


def test_an_interrupted_save_is_never_picked_as_latest(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    for step in (1, 2):
        ckpt.save(step, small_state(step))
    ckpt.wait()
    root = tmp_path / "checkpoints"
    # What a process killed mid-save leaves behind: Orbax's temporary folder, or a step folder without its commit.
    shutil.copytree(root / "2", root / "3.orbax-checkpoint-tmp-1234")
    shutil.copytree(root / "2", root / "4")
    (root / "4" / checkpoint.COMMIT_FILE).unlink()
    reopened = checkpoint.Checkpointer(str(tmp_path))
    assert reopened.steps() == [1, 2]
    assert reopened.latest_step() == 2
    restored = reopened.restore(2, checkpoint.abstract_like(small_state(0.0)))
    np.testing.assert_array_equal(restored["w"], np.full((4, 3), 2.0))


def test_retention_keeps_latest_k_every_mth_and_chosen_steps(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, keep_every=4, keep_steps=(1,))
    for step in range(1, 10):
        ckpt.save(step, small_state(step))
    ckpt.wait()
    assert ckpt.steps() == [1, 4, 8, 9]


def test_checkpoint_stores_the_resolved_config(smoke_config, tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    ckpt.save(3, small_state(3.0), config=smoke_config)
    ckpt.wait()
    stored = ckpt.restore_config(3)
    assert stored["model"]["size"] == "nano" and stored["train"]["steps"] == smoke_config.train.steps
    assert list(stored["masks"]) == list(smoke_config.masks)  # mask order (= mask-token index) survives


def test_resuming_into_another_models_run_fails_naming_the_tensor(smoke_config, tmp_path):
    run = loop.build_run(smoke_config, devices=jax.devices()[:1])
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    ckpt.save(0, run.state)
    ckpt.wait()
    smoke_config.model.size = "micro"
    other = loop.build_run(smoke_config, devices=jax.devices()[:1])
    with pytest.raises(ValueError, match=r"checkpoints/0 holds another model: params\.encoder\.blocks_0\.attn\.proj"
                                         r"\.bias is \(32,\) there and \(128,\) in this config; use a new --workdir"):
        ckpt.restore(0, checkpoint.abstract_like(other.state))


def test_existing_checkpoints_without_resume_fail_before_training(smoke_config, tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    ckpt.save(0, small_state(0.0))
    ckpt.close()
    smoke_config.train.resume = False
    with pytest.raises(ValueError, match=r"already holds checkpoints \[0\]: use a new --workdir or "
                                         r"--config.train.resume=True"):
        loop.train(smoke_config, str(tmp_path))


def advanced_stream(batches: int):
    it = iter(grain.MapDataset.range(100).batch(4).to_iter_dataset())
    for _ in range(batches):
        next(it)
    return it


def test_a_data_position_written_by_another_process_count_carries_over_when_all_agree(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    ckpt.save(2, small_state(2.0), advanced_stream(3))
    ckpt.wait()
    folder = tmp_path / "checkpoints" / "2" / "data"
    written = (folder / "process_0-of-1.json").read_text()
    (folder / "process_0-of-1.json").unlink()
    for process in range(4):  # as if four processes had written it
        (folder / f"process_{process}-of-4.json").write_text(written)
    fresh = advanced_stream(0)
    ckpt.restore(2, checkpoint.abstract_like(small_state(0.0)), fresh)
    np.testing.assert_array_equal(next(fresh), np.arange(12, 16))

    (folder / "process_3-of-4.json").write_text(written.replace("3", "5"))
    with pytest.raises(ValueError, match="process_3-of-4.json.*differ.*resume it with the process count"):
        ckpt.restore(2, checkpoint.abstract_like(small_state(0.0)), advanced_stream(0))


def reference_word_sum(leaf) -> int:
    """sum_i mix(bits(x_i) ^ (i * 0x9E3779B9)) mod 2^32 in numpy, mix murmur3's 32-bit finalizer (32-bit leaves)."""
    words = np.asarray(leaf).reshape(-1).view(np.uint32).astype(np.uint64)
    m = 2**32
    h = words ^ (np.arange(words.size, dtype=np.uint64) * 0x9E3779B9 % m)
    h = (h ^ (h >> 16)) * 0x85EBCA6B % m
    h = (h ^ (h >> 13)) * 0xC2B2AE35 % m
    return int((h ^ (h >> 16)).sum() % m)


def test_fingerprint_mixes_bits_with_positions_and_is_the_same_on_any_mesh_or_layout():
    mesh = jax.make_mesh((8,), ("fsdp",))
    params = {"blocks_0": {"w": jnp.arange(48.0).reshape(8, 6)}, "blocks_1": {"w": -jnp.arange(48.0).reshape(8, 6)},
              "scale": jnp.float32(0.5)}
    sums = checkpoint._mixed_word_sums([params["blocks_1"]["w"], params["scale"]])
    assert [int(s) for s in sums] == [reference_word_sum(params["blocks_1"]["w"]), reference_word_sum(np.float32(0.5))]
    reference = checkpoint.fingerprint(params)
    sharded = jax.device_put(params, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    sharded["blocks_0"]["w"] = jax.device_put(params["blocks_0"]["w"], jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec(mesh.axis_names)))
    assert checkpoint.fingerprint(sharded) == reference
    assert checkpoint.fingerprint(stacking.stack(params)) == reference
    one_ulp = params["blocks_0"]["w"].at[3, 2].set(np.nextafter(np.float32(20.0), np.float32(21.0)))
    assert checkpoint.fingerprint({**params, "blocks_0": {"w": one_ulp}}) != reference
    for changed in ({**params, "blocks_0": params["blocks_1"], "blocks_1": params["blocks_0"]},  # sign bits only
                    {**params, "blocks_0": {"w": params["blocks_0"]["w"].T.reshape(8, 6)}}):  # positions only
        assert checkpoint.fingerprint(changed) != reference
