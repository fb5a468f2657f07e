"""Action-conditioned predictor (V-JEPA 2-AC layout): given the features of frames 0..t and the actions and proprio
taken there, predict the features of frame t + 1, for every t at once.

Per frame t the sequence holds [action_t, proprio_t, P patch tokens]; attention is frame-block causal (every token
of frame t sees all tokens of frames 0..t, nothing later). Positions enter through 3D RoPE: patch tokens rotate
by (t, i, j), the two conditioning tokens by their frame index t only (their height/width channels stay unrotated,
which is a rotation by position 0). Output slot t (patch tokens only) is the prediction of frame t + 1.

Parameter names follow the official `VisionTransformerPredictorAC`: `predictor_embed` (D -> Dp),
`action_encoder` (A -> Dp), `state_encoder` (S -> Dp), `predictor_blocks_{i}`, `predictor_norm`,
`predictor_proj` (Dp -> D). `proprio_proj` (Dp -> S, on the proprio token's output) is ours: it predicts the next
proprio so a planner can roll out without a simulator; it is absent when `predict_proprio` is False (the official
layout).
"""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jepa_jax import objectives
from jepa_jax.models import attention as attention_lib, posemb, vit

CONDITIONING_TOKENS = 2  # action, proprio
STATE_NORMS = ("layer", "batch")


def block_causal_mask(num_frames: int, tokens_per_frame: int) -> np.ndarray:
    """[N, N] bool, N = num_frames * tokens_per_frame: query token q may attend to key k iff frame(k) <= frame(q)."""
    frame = np.arange(num_frames * tokens_per_frame) // tokens_per_frame
    return frame[:, None] >= frame[None, :]


def token_coordinates(num_frames: int, grid_hw: tuple[int, int]) -> np.ndarray:
    """(t, i, j) RoPE positions of the sequence [a_t, s_t, patches_t]_t: [T * (2 + H' * W'), 3] float32.

    Conditioning tokens sit at (t, 0, 0); patch (i, j) of frame t at (t, i, j * H' / W') (the official code scales
    the width position by grid_height / W', which is 1 for square grids).
    """
    height, width = grid_hw
    patches = posemb.grid_coordinates((1, height, width)).astype(np.float32)
    patches[:, 2] *= height / width
    per_frame = np.concatenate([np.zeros((CONDITIONING_TOKENS, 3), np.float32), patches])
    coords = np.tile(per_frame, (num_frames, 1))
    coords[:, 0] = np.repeat(np.arange(num_frames), per_frame.shape[0])
    return coords


def pool_states(features, grid_hw: tuple[int, int], pool_grid: int):
    """Average-pool each frame's patch features [B, T, H' * W', D] to [B, T, k * k, D] state tokens (k =
    pool_grid, dividing H' and W'; row-major like the patches); pool_grid 0 returns the features unchanged."""
    if not pool_grid:
        return features
    (batch, frames, _, width), (height, cols), k = features.shape, grid_hw, pool_grid
    cells = features.reshape(batch, frames, k, height // k, k, cols // k, width)
    return cells.mean(axis=(3, 5)).reshape(batch, frames, k * k, width)


def batch_moments(features, eps: float = 1e-12):
    """Mean and std of every (token slot, feature) over batch and frames: [B, T, P, D] -> ([P, D], [P, D]).

    eps only guards a constant feature: a larger one (BatchNorm's 1e-5) would let a jointly trained encoder shrink
    its features below sqrt(eps) and so shrink the standardised states and the prediction loss with them."""
    mean = features.mean(axis=(0, 1))
    return mean, jnp.sqrt(jnp.square(features - mean).mean(axis=(0, 1)) + eps)


def normalize_states(features, state_norm: str, moments=None):
    """State tokens [..., P, D] as the predictor sees them. "layer": LayerNorm over D without affine (V-JEPA
    2-AC). "batch": standardised per (token slot, feature) by `moments` = (mean, std) [P, D], LeWorldModel's
    BatchNorm projector: the batch's moments in training (`batch_moments`), the training data's when planning.
    A batch-standardised state cannot collapse: each feature keeps unit variance over the data."""
    if state_norm == "layer":
        return objectives.normalize_targets(features)
    mean, std = moments
    return (features - mean) / std


def fed_back(prediction, state_norm: str):
    """A predicted state [..., P, D] as the next step's input: LayerNorm-ed for "layer" (as the true states are),
    as it comes for "batch" (the prediction is already in standardised units)."""
    return objectives.normalize_targets(prediction) if state_norm == "layer" else prediction


class ACPredictor(nn.Module):
    """frame features [B, T, P, D], actions [B, T, A], proprio [B, T, S] -> (next features [B, T, P, D],
    next proprio [B, T, S] or None)."""
    embed_dim: int            # encoder width D (input and output width)
    width: int = 1024         # predictor width Dp
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    predict_proprio: bool = False
    rope_pairing: posemb.RopePairing = "repeat"
    remat: str = "none"  # a name in vit.REMAT_POLICIES
    attention: attention_lib.Implementation = "auto"
    scan: bool = False  # blocks as one lax.scan (vit.transformer_blocks); the weights' layout is the same

    @nn.compact
    def __call__(self, frames, actions, proprio, grid_hw: tuple[int, int], cache=None):
        """Predict frame t + 1 from frames, actions and proprio of steps 0..t, for every t.

        Args:
          frames: [B, T, P, D] encoder features (P = H' * W' patch tokens per frame, row-major).
          actions: [B, T, A] the action taken at each frame.
          proprio: [B, T, S] the proprioceptive state at each frame.
          grid_hw: (H', W') patch grid of one frame.
          cache: None, or the attention cache of the F frames before these (`empty_cache`, then the cache this
            call returns): the T frames are frames F..F+T-1 of the sequence and attend to the cached ones too.

        Returns:
          ([B, T, P, D] predicted features of frames 1..T, [B, T, S] predicted proprio of frames 1..T or None),
          plus the cache extended by these T frames when `cache` is given.
        """
        batch, num_frames, tokens, _ = frames.shape
        if tokens != grid_hw[0] * grid_hw[1]:
            raise ValueError(f"frames have {tokens} tokens per frame, expected {grid_hw[0]} x {grid_hw[1]}")
        x = vit.dense(self.width, ("embed", "mlp"), "predictor_embed")(frames)
        a = vit.dense(self.width, (None, "mlp"), "action_encoder")(actions.astype(x.dtype))[:, :, None]
        s = vit.dense(self.width, (None, "mlp"), "state_encoder")(proprio.astype(x.dtype))[:, :, None]
        per_frame = CONDITIONING_TOKENS + tokens
        x = jnp.concatenate([a, s, x], axis=2).reshape(batch, num_frames * per_frame, self.width)
        cached = 0 if cache is None else cache[0][0].shape[1]  # tokens of earlier frames
        total = cached // per_frame + num_frames
        coords = jnp.asarray(token_coordinates(total, grid_hw)[cached:])
        mask = jnp.asarray(block_causal_mask(total, per_frame)[cached:])[None, None]
        x = vit.transformer_blocks(self, x, coords, mask, prefix="predictor_blocks", depth=self.depth,
                                   num_heads=self.num_heads, mlp_dim=int(self.width * self.mlp_ratio), rope=True,
                                   rope_pairing=self.rope_pairing, remat=self.remat, attention=self.attention,
                                   scan=self.scan, caches=cache)
        if cache is not None:
            x, cache = x
        x = x.reshape(batch, num_frames, per_frame, self.width)
        patches = vit.layer_norm("predictor_norm")(x[:, :, CONDITIONING_TOKENS:])
        prediction = vit.dense(self.embed_dim, ("mlp", "embed"), "predictor_proj")(patches)
        next_proprio = None
        if self.predict_proprio:
            next_proprio = vit.dense(proprio.shape[-1], ("mlp", None), "proprio_proj")(x[:, :, 1])
        return (prediction, next_proprio) if cache is None else (prediction, next_proprio, cache)


def empty_cache(predictor: ACPredictor, batch: int, dtype=jnp.float32) -> tuple:
    """The attention cache of no frames: per block (keys, values) [batch, 0, heads, head_dim]."""
    empty = jnp.zeros((batch, 0, predictor.num_heads, predictor.width // predictor.num_heads), dtype)
    return tuple((empty, empty) for _ in range(predictor.depth))


def rollout(predictor: ACPredictor, params, state, proprio, actions, grid_hw: tuple[int, int],
            state_norm: str = "layer"):
    """Imagine H steps from one observed frame: each prediction (`fed_back`, as in training's rollout) and the
    predicted proprio are fed back as the next frame's inputs; one frame of new tokens per step (attention cache).

    Args:
      params: the predictor's weights.
      state: [B, P, D] normalised features of the current frame (`normalize_states`); proprio: [B, S] its proprio.
      actions: [B, H, A] the actions to imagine.

    Returns:
      ([B, H, P, D] predicted features of the next H frames, [B, H, S] their proprio; the input proprio repeated
      when the predictor does not predict proprio).
    """
    cache = empty_cache(predictor, state.shape[0], state.dtype)
    frame, frame_proprio, states, proprios = state[:, None], proprio[:, None], [], []
    for step in range(actions.shape[1]):
        prediction, next_proprio, cache = predictor.apply({"params": params}, frame, actions[:, step:step + 1],
                                                          frame_proprio, grid_hw, cache)
        frame = fed_back(prediction, state_norm)
        frame_proprio = frame_proprio if next_proprio is None else next_proprio
        states.append(frame[:, 0])
        proprios.append(frame_proprio[:, 0])
    return jnp.stack(states, axis=1), jnp.stack(proprios, axis=1)
