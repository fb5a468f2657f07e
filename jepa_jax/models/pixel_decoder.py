"""The pixel-reconstruction baseline (objective "pixels", VideoMAE-style): what the JEPA predictor would be if it
predicted pixels instead of representations.

The decoder is the JEPA predictor (models/predictor.py: context tokens + a mask token at every target position,
narrow ViT blocks) with its output projection widened to a tubelet's pixels (Predictor.out_dim = tubelet_width;
config.build_predictor), so both objectives train the same
encoder, on the same masks, with a predictor of the same size; only the targets differ. Targets are the masked
tubelets' pixels in [0, 1], each channel of each tubelet standardised over its t * p * p positions (VideoMAE's
normalised targets, `MCG-NJU/VideoMAE` engine_for_pretraining.py: unbiased std, + 1e-6), and the loss is their mean
squared error.
"""

import jax.numpy as jnp

from jepa_jax.models import vit

NORM_PIX_EPS = 1e-6  # VideoMAE's: (x - mean) / (std + 1e-6)


def tubelet_width(patch_size: int, tubelet_size: int, channels: int = 3) -> int:
    """Values per tubelet: t * p * p * C."""
    return tubelet_size * patch_size * patch_size * channels


def pixel_targets(video, patch_size: int, tubelet_size: int):
    """uint8 clips [B, T, H, W, C] -> float32 [B, N, t * p * p * C]: every tubelet's pixels (in [0, 1]), each channel
    standardised over the tubelet's t * p * p positions, flattened in (t, p, p, C) order (vit.patchify's)."""
    channels = video.shape[-1]
    tubelets = vit.patchify(video.astype(jnp.float32) / 255.0, patch_size, tubelet_size)
    tubelets = tubelets.reshape(tubelets.shape[:2] + (-1, channels))  # [B, N, t p p, C]
    tubelets = tubelets - tubelets[:, :, :1]  # the same statistics, but a constant tubelet stays exactly 0
    mean = tubelets.mean(axis=-2, keepdims=True)
    std = tubelets.std(axis=-2, keepdims=True, ddof=1)
    return ((tubelets - mean) / (std + NORM_PIX_EPS)).reshape(tubelets.shape[:2] + (-1,))
