"""Trained models for the teams that receive them: `jepa_jax.load(DIR)` and feature extraction.

    model = jepa_jax.load("exports/vitl16")             # an export/import folder, or a training run directory
    tokens = model.features(video)                       # uint8 [B, T, H, W, 3] -> [B, N, D]
    guess = model.predict(video, context_idx, target_idx)  # [B, Kt, D]: the predictor's features of hidden tokens

Normalisation (ImageNet mean/std, as in training) happens inside; tokens are in time-major order
(n = t * H' * W' + i * W' + j for the grid `model.grid(video.shape)`).
"""

import dataclasses
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from jepa_jax import config as config_lib, export, native, storage
from jepa_jax.data import pipeline
from jepa_jax.models import vit

POOLINGS = ("mean", "tokens")
CONTEXTS = ("masked", "full")


@functools.partial(jax.jit, static_argnames=("encoder", "predictor", "grid", "mask_index", "full_context"))
def _predict(params, video, context_idx, target_idx, *, encoder, predictor, grid, mask_index, full_context):
    if full_context:  # encode the whole clip, keep the context tokens' features
        context = vit.gather_tokens(vit.encode(encoder, params["encoder"], video, None), context_idx)
    else:  # encode only the context tokens, as during training
        context = vit.encode(encoder, params["encoder"], video, context_idx)
    return predictor.apply({"params": params["predictor"]}, context, context_idx, target_idx, grid, mask_index)


def _check_video(video) -> None:
    if getattr(video, "dtype", None) != np.uint8 or np.ndim(video) not in (4, 5) or np.shape(video)[-1] != 3:
        raise ValueError(f"video must be uint8 [B, T, H, W, 3] (or [B, H, W, 3] images), got "
                         f"{getattr(video, 'dtype', type(video).__name__)} {np.shape(video)}")


def _check_indices(indices, name: str, batch: int) -> None:
    if np.ndim(indices) != 2 or np.shape(indices)[0] != batch or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"{name} must be integer token indices [B={batch}, K], got {np.shape(indices)}")


@dataclasses.dataclass
class PretrainedModel:
    """An encoder (and predictor) with weights; methods are jitted pure functions of these weights."""
    config: ml_collections.ConfigDict
    encoder: vit.VisionTransformer
    predictor: object  # models.predictor.Predictor, or None when the weights have no predictor
    params: dict       # {"encoder": tree, "predictor": tree or None}
    encoder_group: str  # which weights the encoder carries: "target_encoder" (EMA) or "encoder"
    step: int | None = None

    def grid(self, video_shape) -> tuple[int, int, int]:
        """(T', H', W') token grid of a [B, T, H, W, 3] clip."""
        shape = tuple(video_shape) if len(video_shape) == 5 else (video_shape[0], 1) + tuple(video_shape[1:])
        return vit.token_grid(shape, self.config.model.patch_size, self.config.model.tubelet_size)

    def features(self, video, keep=None) -> jax.Array:
        """Encoder features: uint8 [B, T, H, W, 3] -> [B, N, D]; `keep` [B, K] encodes only those tokens."""
        _check_video(video)
        if keep is not None:
            _check_indices(keep, "keep", np.shape(video)[0])
        return vit.encode(self.encoder, self.params["encoder"], video, keep)

    def predict(self, video, context_idx, target_idx, *, mask_index: int = 0, context: str = "masked") -> jax.Array:
        """Predicted features of the target tokens: [B, Kt, D].

        Args:
          video: uint8 [B, T, H, W, 3].
          context_idx: [B, Kc] visible tokens; target_idx: [B, Kt] tokens to predict.
          mask_index: which learned mask token the predictor uses (training: the mask config's index).
          context: "masked" encodes only the visible tokens (as in training); "full" encodes the whole clip and
            keeps the visible tokens' features (Hugging Face VJEPA2Model, V-JEPA 2 anticipation).
        """
        if self.predictor is None:
            raise ValueError("these weights have no predictor: export them with the predictor group")
        if context not in CONTEXTS:
            raise ValueError(f"context={context!r}: choose one of {list(CONTEXTS)}")
        _check_video(video)
        for name, indices in (("context_idx", context_idx), ("target_idx", target_idx)):
            _check_indices(indices, name, np.shape(video)[0])
        return _predict(self.params, video, context_idx, target_idx, encoder=self.encoder, predictor=self.predictor,
                        grid=self.grid(np.shape(video)), mask_index=mask_index, full_context=context == "full")


def load(path: str, *, step: int | None = None, encoder: str = "auto") -> PretrainedModel:
    """A model from a `jepa-jax export`/`import` folder or a training run directory (default: its newest
    checkpoint). encoder: "auto" (the EMA target encoder when there is one), "target" or "online"."""
    weights = export.load_weights(path, step)
    group = export.encoder_group(weights, encoder)
    as_tree = lambda flat: jax.tree.map(jnp.asarray, native.unflatten(flat))
    predictor = weights.groups.get("predictor")
    return PretrainedModel(weights.config, config_lib.build_encoder(weights.config),
                           config_lib.build_predictor(weights.config) if predictor is not None else None,
                           {"encoder": as_tree(weights.groups[group]),
                            "predictor": as_tree(predictor) if predictor is not None else None},
                           group, weights.step)


def _write_features(out: str, features: np.ndarray, labels: np.ndarray, info: dict) -> list[str]:
    if out.endswith(".npy"):
        np.save(out, features)
        with open(out + ".json", "w", encoding="utf-8") as f:
            json.dump({**info, "labels": labels.tolist()}, f, indent=2)
        return [out, out + ".json"]
    import safetensors.numpy  # pylint: disable=g-import-not-at-top
    safetensors.numpy.save_file({"features": features, "labels": labels}, out,
                                metadata={k: json.dumps(v) for k, v in info.items()})
    return [out]


def extract(model_path: str, manifest: str, out: str, *, pool: str = "mean", batch_size: int = 8,
            step: int | None = None, encoder: str = "auto") -> dict:
    """`jepa-jax extract`: features of every clip of a manifest, written to `out` (.npy or .safetensors).

    Each video gives its centred evaluation clip (pipeline.EvalViews) at the model's clip length, frame rate and
    crop. pool "mean": [M, D] (tokens averaged); "tokens": [M, N, D]. Unreadable videos are skipped and listed (with
    the reason).
    Returns a summary: clips, skipped, shape, seconds, files.
    """
    storage.check_local(out, "--out")
    if pool not in POOLINGS:
        raise ValueError(f"--pool {pool!r}: choose one of {list(POOLINGS)}")
    if not out.endswith((".npy", ".safetensors")):
        raise ValueError(f"--out {out!r}: give a .npy or .safetensors file name")
    model = load(model_path, step=step, encoder=encoder)
    frames, crop = config_lib.clip_shape(model.config)
    v = model.config.data.video
    views = pipeline.EvalViews(frames, crop, frame_step=v.frame_step or None, target_fps=v.fps or None)
    start, kept, skipped, outputs = time.time(), [], [], []
    for clips, examples in tqdm.tqdm(pipeline.eval_batches(manifest, views, batch_size, skipped), desc="extract",
                                     unit="batch"):
        tokens = np.asarray(model.features(clips[:, 0]))[:len(examples)]  # one view: [B, 1, T, C, C, 3]
        outputs.append(tokens.mean(axis=1) if pool == "mean" else tokens)
        kept.extend(examples)
    if not kept:
        raise ValueError(f"{manifest}: none of its {len(skipped)} files could be read (e.g. {skipped[:3]})")
    features = np.concatenate(outputs)
    info = {"model": os.path.abspath(model_path), "encoder": model.encoder_group, "pool": pool,
            "clip": [frames, crop], "paths": [e["path"] for e in kept], "skipped": skipped}
    files = _write_features(out, features, np.asarray([e["targets"] for e in kept], np.int64), info)
    return {"clips": len(kept), "skipped": len(skipped), "shape": list(features.shape),
            "seconds": round(time.time() - start, 2), "files": files}
