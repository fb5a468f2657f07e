"""The pixel-reconstruction baseline (objective "pixels"): VideoMAE's normalised tubelet targets against a numpy
reference, and the loss through the engine equal to the squared error of the predictor's pixels at the target
tubelets, with the same encoder, masks and predictor size as JEPA and no EMA copy."""

import copy

import jax
import numpy as np
import pytest

from jepa_jax import config as config_lib
from jepa_jax.models import pixel_decoder
from jepa_jax.train import loop
from tests.train.test_step import host_batches, run_steps


def reference_targets(video: np.ndarray, p: int, t: int) -> np.ndarray:
    """VideoMAE's targets by loops: tubelet (i, j, k), time-major order; per channel over its t p p pixels in [0, 1],
    (x - mean) / (unbiased std + 1e-6), flattened in (t, p, p, C) order."""
    b, frames, h, w, c = video.shape
    out = []
    for i in range(frames // t):
        for j in range(h // p):
            for k in range(w // p):
                cube = video[:, i * t:(i + 1) * t, j * p:(j + 1) * p, k * p:(k + 1) * p].astype(np.float64) / 255
                cube = cube.reshape(b, t * p * p, c)
                norm = (cube - cube.mean(1, keepdims=True)) / (cube.std(1, ddof=1, keepdims=True) + 1e-6)
                out.append(norm.reshape(b, -1))
    return np.stack(out, axis=1)


def test_targets_are_videomaes_normalised_tubelets():
    video = np.random.default_rng(0).integers(0, 256, (2, 4, 16, 24, 3), dtype=np.uint8)
    video[0, :2, :8, :8] = 7  # a constant tubelet: all zeros, not NaN
    targets = np.asarray(pixel_decoder.pixel_targets(video, 8, 2))
    assert targets.shape == (2, 2 * 2 * 3, 2 * 8 * 8 * 3)
    np.testing.assert_allclose(targets, reference_targets(video, 8, 2), atol=2e-4)
    assert not targets[0, 0].any()


@pytest.mark.slow
def test_pixels_loss_is_the_squared_error_of_predicted_target_tubelets(smoke_config):
    config = copy.deepcopy(smoke_config)
    config.objective = "pixels"
    run = loop.build_run(config)
    assert run.state.ema_params is None  # no target encoder
    batches = host_batches(config, run, 2)
    params = jax.device_get(run.state.params)
    # the loss of the first batch, from the encoder and the decoder applied here by hand
    batch, grid = batches[0], config_lib.token_grid(config)
    video = np.asarray(batch["video"], np.float32) / 255.0
    video = (video - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    targets = reference_targets(batch["video"], config.model.patch_size, config.model.tubelet_size)
    losses = []
    for mask_index, (context_idx, target_idx) in enumerate(batch["masks"]):
        context = run.encoder.apply({"params": params["encoder"]}, video.astype(np.float32), keep=context_idx)
        predicted = np.asarray(run.predictor.apply({"params": params["predictor"]}, context, context_idx, target_idx,
                                                   grid, mask_index=mask_index))
        assert predicted.shape == target_idx.shape + (2 * 8 * 8 * 3,)
        wanted = np.take_along_axis(targets, target_idx[..., None], axis=1)
        losses.append(np.mean(np.square(predicted - wanted)))
    state, history = run_steps(run, batches)
    assert history[0]["loss"] == pytest.approx(np.mean(losses), rel=1e-4)
    assert history[0]["prediction_loss"] == history[0]["loss"] and "sigreg" not in history[0]
    assert np.isfinite(history[0]["target_effective_rank"])  # monitors on the context encoder's outputs
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), jax.device_get(state.params["encoder"]),
                         params["encoder"])
    assert max(jax.tree.leaves(moved)) > 0  # the encoder learns from pixels
