"""model.scan_layers through the engine: a scanned run trains like the unrolled one on any mesh, keeps its blocks
stacked in memory and unrolled on disk, so the two read each other's checkpoints and export the same weights."""

import copy

import jax
import numpy as np
import pytest

from jepa_jax import checkpoint, export
from jepa_jax.models import stacking
from jepa_jax.train import loop
from tests.train.test_step import host_batches, run_steps


def trained(config, scan: bool, steps: int = 3):
    config = copy.deepcopy(config)
    config.model.scan_layers = scan
    run = loop.build_run(config)
    state, history = run_steps(run, host_batches(config, run, steps))
    return run, state, [float(m["loss"]) for m in history]


def assert_close(a, b, atol=2e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol), a, b)


def contents(state):
    """What a train state carries, on the host (the PRNG key aside)."""
    return jax.device_get((state.step, state.params, state.ema_params, state.opt_state))


@pytest.mark.slow
@pytest.mark.parametrize("objective,mesh", [("ema", (-1, 1, 1)), ("sigreg", (2, 2, 2))])
def test_scanned_run_trains_like_the_unrolled_one(smoke_config, objective, mesh):
    smoke_config.objective = objective
    smoke_config.mesh.data, smoke_config.mesh.fsdp, smoke_config.mesh.tensor = mesh
    _, unrolled, unrolled_losses = trained(smoke_config, scan=False)
    run, scanned, scanned_losses = trained(smoke_config, scan=True)
    assert sorted(run.state.params["encoder"]) == ["blocks", "norm", "patch_embed"]
    qkv = run.state_shardings.params["encoder"]["blocks"]["attn"]["qkv"]["kernel"]
    assert qkv.spec[0] is None and len(qkv.spec) == 5  # the [L] axis is never split
    np.testing.assert_allclose(scanned_losses, unrolled_losses, rtol=1e-5)
    assert_close(contents(stacking.unstack(scanned)), contents(unrolled))


@pytest.mark.slow
def test_checkpoints_hold_one_layout_and_exports_are_equal(smoke_config, tmp_path):
    """Each run saves after the same three steps; both checkpoints are unrolled on disk and export the same
    weights; each restores into the other's layout (an unrolled checkpoint from before scan_layers keeps working)."""
    smoke_config.objective = "ema"
    runs = {}
    for scan in (False, True):
        run, state, _ = trained(smoke_config, scan)
        directory = str(tmp_path / f"scan_{scan}")
        saver = checkpoint.Checkpointer(directory)
        saver.save(3, state, config=run.config)
        saver.wait()
        saver.close()
        runs[scan] = (run, state, directory)
    stored = checkpoint.Checkpointer(runs[True][2])._state_metadata(3)
    assert "blocks_1" in stored["params"]["encoder"] and "blocks" not in stored["params"]["encoder"]
    exports = [export.load_weights(runs[scan][2]).groups for scan in (False, True)]
    assert sorted(exports[0]) == sorted(exports[1]) == ["encoder", "predictor", "target_encoder"]
    assert_close(exports[1], exports[0])
    for scan in (False, True):  # restore the other layout's checkpoint onto this run's (sharded) state
        run, own_state, _ = runs[scan]
        restored = checkpoint.Checkpointer(runs[not scan][2]).restore(3, checkpoint.abstract_like(run.state))
        assert [x.sharding for x in jax.tree.leaves(restored)] == [x.sharding for x in jax.tree.leaves(run.state)]
        assert_close(contents(restored), contents(own_state))


def test_a_scanned_step_lowers_one_block_per_stack(smoke_config):
    """What makes it compile faster: the lowered step holds each block once (in a scan body) instead of `depth`
    times, so it shrinks as the model deepens while the unrolled one grows."""
    smoke_config.model.update(size="custom", custom=dict(width=32, depth=8, num_heads=2, mlp_dim=64))
    lines = {}
    for scan in (False, True):
        smoke_config.model.scan_layers = scan
        lines[scan] = loop.lower(loop.build_run(smoke_config, abstract=True)).as_text().count("\n")
    assert lines[True] < 0.5 * lines[False], lines
