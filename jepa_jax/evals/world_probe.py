"""Frozen-feature probes on held-out built-in-world clips: what does an encoder know about the balls?

Targets (per ball, balls ordered by their fixed colour) at the middle frame of each clip:
  position [x, y] and velocity [vx, vy].
Feature sets (all ridge-probed, see `ridge.py`):
  "time": tokens mean-pooled over space within each time slice, concatenated over time  [T' * D];
  "quad": the same with space pooled into a 2 x 2 grid of quadrants                     [T' * 4 * D].
Raw pixels are probed through the same pooling applied to the pixel tubelets ("pixels"), so the comparison is
between representations, not between pooling schemes.
"""

import numpy as np

from jepa_jax.data import pipeline
from jepa_jax.evals import ridge
from jepa_jax.models import vit

POOLINGS = ("time", "quad")
TARGETS = ("position", "velocity")


def probe_clips(config) -> dict:
    """Held-out clips from a seed the training stream never uses: video [M, T, H, W, 3] and targets [M, 2 N]."""
    num = config.probe.num_train + config.probe.num_test
    source = pipeline.world_source(config, seed=config.probe.seed, num_clips=num)
    clips = [source[i] for i in range(num)]
    middle = config.data.world.num_frames // 2
    return {
        "video": np.stack([c["video"] for c in clips]),
        "position": np.stack([c["position"][middle].reshape(-1) for c in clips]),
        "velocity": np.stack([c["velocity"][middle].reshape(-1) for c in clips]),
    }


def pool_tokens(tokens: np.ndarray, grid: tuple[int, int, int]) -> dict:
    """tokens [M, N, D] in time-major order -> {"time": [M, T' D], "quad": [M, T' 4 D]}."""
    m, _, d = tokens.shape
    x = tokens.reshape((m,) + tuple(grid) + (d,))
    return {"time": x.mean(axis=(2, 3)).reshape(m, -1), "quad": vit.pool_quadrants(tokens, grid)}


def pixel_tokens(video: np.ndarray, patch_size: int, tubelet_size: int) -> np.ndarray:
    """uint8 [M, T, H, W, C] -> [M, N, C] mean colour of every tubelet (the pixel baseline's 'tokens')."""
    m, frames, height, width, c = video.shape
    x = video.astype(np.float32).reshape(m, frames // tubelet_size, tubelet_size, height // patch_size, patch_size,
                                         width // patch_size, patch_size, c)
    return x.mean(axis=(2, 4, 6)).reshape(m, -1, c)


def encoder_tokens(encoder, encoder_params, video: np.ndarray, batch_size: int) -> np.ndarray:
    """Frozen encoder outputs [M, N, D] for uint8 clips [M, T, H, W, C], in batches."""
    return np.concatenate([np.asarray(vit.encode(encoder, encoder_params, video[i:i + batch_size]))
                           for i in range(0, len(video), batch_size)])


def probe_scores(tokens: np.ndarray, clips: dict, grid, num_train: int) -> dict:
    """{"position/time": r2, "velocity/time": r2, ...} for every pooling and target (held-out R^2)."""
    scores = {}
    for pooling, features in pool_tokens(tokens, grid).items():
        for target in TARGETS:
            y = clips[target]
            result = ridge.ridge_probe(features[:num_train], y[:num_train], features[num_train:], y[num_train:])
            scores[f"{target}/{pooling}"] = result["score"]
    return scores
