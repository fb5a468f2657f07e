"""Intuitive physics: how surprised a pretrained model is by impossible events (violation of expectation).

Protocol of Garrido et al. 2025 (arXiv 2502.11831; facebookresearch/jepa-intuitive-physics,
evaluation_code/evals/intuitive_physics/eval.py):
- A clip is cut into windows of the model's clip length, every `stride` (2) frames.
- For each context length C (frames, a multiple of the tubelet), the encoder sees the first C frames of the window;
  the predictor predicts every later token.
- Surprise is the L1 distance between those predictions and the layer-normalised target-encoder features of the
  real window ([B, C, W]: clips, context lengths, windows).
- Per clip, surprise is the max (or the mean) over windows.
- Pairwise accuracy is the fraction of pairs whose possible clip is less surprising than its impossible twin
  (ties count half). AUROC is that fraction over all possible x impossible clips of a category, pairs or not.

A pixel-reconstruction model (objective "pixels") gets the same protocol on the normalised pixels of the hidden
tubelets: its decoder's prediction against the real ones (the paper's VideoMAE baseline). A model with
`copy_last_slice` has no predictor: the last time slice of the context, encoded alone by the target encoder, stands
for every later slice (a floor that assumes nothing moves, with the information the predictor has).
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from jepa_jax import config as config_lib, export, native, objectives
from jepa_jax.models import pixel_decoder, vit

REDUCTIONS = ("max", "mean")


@dataclasses.dataclass
class SurpriseModel:
    """A model that can be surprised: encoder (context and target weights) + predictor or pixel decoder."""
    name: str
    config: object  # ml_collections.ConfigDict of the run
    encoder: vit.VisionTransformer
    predictor: object
    params: dict  # {"context": encoder, "target": encoder, "predictor": predictor} parameter trees
    copy_last_slice: bool = False  # predict by copying the last context slice (_copy_last_slice; no predictor)

    @property
    def pixels(self) -> bool:
        return self.config.objective == "pixels"

    @property
    def mask_index(self) -> int:
        """The predictor's mask token for the future: that of the first causal mask config (context_frames_ratio),
        else 0 (the first mask config, as the paper's V-JEPA models, trained on multi-block masks only)."""
        causal = [i for i, m in enumerate(self.config.masks.values()) if "context_frames_ratio" in m]
        return causal[0] if causal else 0

    @property
    def window(self) -> int:
        """Frames per window: the clip length the model trained on."""
        return config_lib.clip_shape(self.config)[0]

    @property
    def grid(self) -> tuple[int, int, int]:
        """(T', H', W') token grid of one window."""
        return vit.token_grid((1, self.window, self.size, self.size, 3), self.config.model.patch_size,
                              self.config.model.tubelet_size)

    @property
    def size(self) -> int:
        return config_lib.clip_shape(self.config)[1]


def load_model(path: str, step: int | None = None, name: str = "trained") -> SurpriseModel:
    """The model of a run directory (default: its newest checkpoint) or an export folder. Context from the online
    encoder, targets from the EMA target encoder when there is one (as the paper)."""
    weights = export.load_weights(path, step)
    if "predictor" not in weights.groups:
        raise ValueError(f"{path} has no predictor: surprise needs one (export it with --groups including predictor)")
    if weights.config.objective not in ("ema", "sigreg", "pixels"):
        raise ValueError(f"{path}: objective {weights.config.objective!r} has no masked-token predictor; physics "
                         f"surprise needs an ema, sigreg or pixels run")
    tree = lambda group: jax.tree.map(jnp.asarray, native.unflatten(weights.groups[group]))
    target = "target_encoder" if "target_encoder" in weights.groups else "encoder"
    return SurpriseModel(name, weights.config, config_lib.build_encoder(weights.config),
                         config_lib.build_predictor(weights.config),
                         {"context": tree("encoder"), "target": tree(target), "predictor": tree("predictor")})


def random_model(config, seed: int = 0, name: str = "random_init") -> SurpriseModel:
    """The same architecture at random init (the floor): one encoder for context and targets."""
    encoder, predictor = config_lib.build_encoder(config), config_lib.build_predictor(config)
    frames, size = config_lib.clip_shape(config)
    encoder_key, predictor_key = jax.random.split(jax.random.key(seed))
    encoder_params = nn.meta.unbox(encoder.init(encoder_key, jnp.zeros((1, frames, size, size, 3)))["params"])
    predictor_params = nn.meta.unbox(predictor.init(predictor_key, *config_lib.predictor_inputs(config))["params"])
    return SurpriseModel(name, config, encoder, predictor,
                         {"context": encoder_params, "target": encoder_params, "predictor": predictor_params})


def context_lengths(model: SurpriseModel) -> tuple[int, ...]:
    """Every context length in frames: one tubelet up to all but the last tubelet of a window."""
    tubelet = model.config.model.tubelet_size
    return tuple(range(tubelet, model.window, tubelet))


def window_starts(num_frames: int, window: int, stride: int = 2) -> np.ndarray:
    """First frames of the sliding windows (the paper's stride 2)."""
    if num_frames < window:
        raise ValueError(f"clips of {num_frames} frames are shorter than the model's {window}-frame window")
    return np.arange(0, num_frames - window + 1, stride)


def _targets(params, windows, encoder, pixels):
    """[B, N, D]: what predictions are scored against: the target encoder's layer-normalised features, or (pixels)
    each tubelet's normalised pixels."""
    if pixels:
        return pixel_decoder.pixel_targets(windows, encoder.patch_size, encoder.tubelet_size)
    return objectives.normalize_targets(vit.encode(encoder, params["target"], windows).astype(jnp.float32))


def _predict_hidden(params, windows, k: int, *, encoder, predictor, grid, mask_index):
    """[B, N - k, D]: the predictor's guess of every token after the first k, from the context encoder's k."""
    batch, num_tokens = windows.shape[0], int(np.prod(grid))
    context_idx = jnp.broadcast_to(jnp.arange(k), (batch, k))
    target_idx = jnp.broadcast_to(jnp.arange(k, num_tokens), (batch, num_tokens - k))
    context = vit.encode(encoder, params["context"], windows, context_idx)
    prediction = predictor.apply({"params": params["predictor"]}, context, context_idx, target_idx, grid, mask_index)
    return prediction.astype(jnp.float32)


def _copy_last_slice(params, windows, targets, k: int, *, encoder, grid, pixels):
    """[B, N - k, D]: the predictor-free guess: the last context time slice (tokens k - H'W' .. k) for every later
    slice, in the targets' space and from the context alone: the target encoder's layer-normalised features of the
    first k tokens encoded without the rest of the window (the targets' own, encoded with the whole window, would
    carry the future), or for pixels (per tubelet, nothing to leak) the targets'."""
    per_slice = grid[1] * grid[2]
    if pixels:
        context = targets[:, :k]
    else:
        context_idx = jnp.broadcast_to(jnp.arange(k), (windows.shape[0], k))
        context = objectives.normalize_targets(
            vit.encode(encoder, params["target"], windows, context_idx).astype(jnp.float32))
    return jnp.tile(context[:, k - per_slice:], (1, (targets.shape[1] - k) // per_slice, 1))


def _hidden_guess(params, windows, targets, k: int, *, encoder, predictor, grid, mask_index, pixels, copy):
    """[B, N - k, D]: the predictor's guess of the tokens after the first k or, with `copy`, _copy_last_slice."""
    if copy:
        return _copy_last_slice(params, windows, targets, k, encoder=encoder, grid=grid, pixels=pixels)
    return _predict_hidden(params, windows, k, encoder=encoder, predictor=predictor, grid=grid, mask_index=mask_index)


_STATIC = ("encoder", "predictor", "grid", "context_tokens", "pixels", "mask_index", "copy")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _window_surprise(params, windows, *, encoder, predictor, grid, context_tokens, pixels, mask_index, copy):
    """uint8 windows [B, W, H, W, 3] -> surprise [B, len(context_tokens)]: mean |prediction - target| over the
    hidden tokens and channels, the context being the first k tokens (whole time slices) for each k."""
    targets = _targets(params, windows, encoder, pixels)
    guess = functools.partial(_hidden_guess, params, windows, targets, encoder=encoder, predictor=predictor,
                              grid=grid, mask_index=mask_index, pixels=pixels, copy=copy)
    return jnp.stack([jnp.mean(jnp.abs(guess(k) - targets[:, k:]), axis=(1, 2)) for k in context_tokens], axis=1)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _guesses_and_targets(params, windows, *, encoder, predictor, grid, context_tokens, pixels, mask_index, copy):
    """(the model's guess, the copy floor's, targets) for the tokens after the first `context_tokens`."""
    targets = _targets(params, windows, encoder, pixels)
    floor = _copy_last_slice(params, windows, targets, context_tokens, encoder=encoder, grid=grid, pixels=pixels)
    guess = floor if copy else _predict_hidden(params, windows, context_tokens, encoder=encoder, predictor=predictor,
                                               grid=grid, mask_index=mask_index)
    return guess, floor, targets


def _context_tokens(model: SurpriseModel, contexts: tuple[int, ...]) -> tuple[int, ...]:
    """Context lengths in frames -> context tokens (whole time slices); a one-line error for a length that is no
    multiple of the tubelet or leaves nothing to predict."""
    tubelet, grid = model.config.model.tubelet_size, model.grid
    if any(c % tubelet or not 0 < c < model.window for c in contexts):
        raise ValueError(f"context lengths {contexts} must be multiples of the tubelet ({tubelet}) below the "
                         f"window ({model.window} frames)")
    return tuple(c // tubelet * grid[1] * grid[2] for c in contexts)


def prediction_check(model: SurpriseModel, windows: np.ndarray, context: int) -> dict:
    """Does the predictor use its context? On uint8 windows [B, window, H, W, 3], context their first `context`
    frames, the L1 to the hidden tokens' targets of: the predictor; each hidden token's mean over the B windows (a
    floor that ignores the context); a copy of the last context time slice (a floor that assumes nothing moves).
    Also the predictions' and the targets' std across windows (a predictor that ignores its context has ~0)."""
    (k,) = _context_tokens(model, (context,))
    prediction, copy, targets = (np.asarray(x, np.float64) for x in _guesses_and_targets(
        model.params, windows, encoder=model.encoder, predictor=model.predictor, grid=model.grid, context_tokens=k,
        pixels=model.pixels, mask_index=model.mask_index, copy=model.copy_last_slice))
    hidden = targets[:, k:]
    return {"predictor": float(np.abs(prediction - hidden).mean()),
            "token_mean": float(np.abs(hidden - hidden.mean(axis=0)).mean()),
            "copy_last_slice": float(np.abs(hidden - copy).mean()),
            "prediction_std": float(prediction.std(axis=0).mean()), "target_std": float(hidden.std(axis=0).mean()),
            "windows": len(windows), "context": context}


def surprise(model: SurpriseModel, clips: np.ndarray, *, stride: int = 2, batch_size: int = 32,
             contexts: tuple[int, ...] | None = None, progress: str = "") -> np.ndarray:
    """Surprise of uint8 clips [B, T, H, W, 3] -> float32 [B, C, W]: per clip, context length (`contexts`, frames;
    default context_lengths(model)) and window (window_starts(T, model.window, stride)). progress: a progress-bar
    label (windows/s, ETA), or "" for none."""
    clips = np.asarray(clips)
    if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[2:] != (model.size, model.size, 3):
        raise ValueError(f"clips must be uint8 [B, T, {model.size}, {model.size}, 3] (the model's frame size), got "
                         f"{clips.dtype} {clips.shape}")
    contexts = contexts or context_lengths(model)
    context_tokens = _context_tokens(model, contexts)
    starts = window_starts(clips.shape[1], model.window, stride)
    windows = np.stack([clips[:, s:s + model.window] for s in starts], axis=1).reshape(-1, model.window,
                                                                                         *clips.shape[2:])
    out = []
    for begin in tqdm.trange(0, len(windows), batch_size, desc=progress, unit="batch", disable=not progress):
        chunk = windows[begin:begin + batch_size]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - len(chunk), axis=0)])
        values = _window_surprise(model.params, padded, encoder=model.encoder, predictor=model.predictor,
                                  grid=model.grid, context_tokens=context_tokens, pixels=model.pixels,
                                  mask_index=model.mask_index, copy=model.copy_last_slice)
        out.append(np.asarray(values)[:len(chunk)])
    return np.concatenate(out).reshape(len(clips), len(starts), len(contexts)).transpose(0, 2, 1)


def per_clip(values: np.ndarray, reduce: str) -> np.ndarray:
    """[..., W] surprise over windows -> [...] by `reduce` (max or mean over time)."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce={reduce!r}: choose one of {list(REDUCTIONS)}")
    return values.max(axis=-1) if reduce == "max" else values.mean(axis=-1)


def pairwise_accuracy(possible: np.ndarray, impossible: np.ndarray) -> float:
    """Fraction of pairs [P] with possible < impossible surprise; ties count half."""
    return float(np.mean((possible < impossible) + 0.5 * (possible == impossible)))


def bootstrap_interval(possible: np.ndarray, impossible: np.ndarray, *, samples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the pairwise accuracy, resampling pairs."""
    wins = (possible < impossible) + 0.5 * (possible == impossible)
    draws = np.random.default_rng(seed).integers(len(wins), size=(samples, len(wins)))
    means = wins[draws].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def auroc(possible: np.ndarray, impossible: np.ndarray) -> float:
    """Area under the ROC curve of telling impossible clips by their surprise: P(impossible > possible) over all
    cross pairs, ties half (the Mann-Whitney statistic)."""
    greater = impossible[:, None] > possible[None, :]
    equal = impossible[:, None] == possible[None, :]
    return float(np.mean(greater + 0.5 * equal))


def category_scores(possible: np.ndarray, impossible: np.ndarray, reduce: str = "max", seed: int = 0) -> dict:
    """Scores of one category from the per-clip surprise [P] of the possible and impossible clips of its pairs."""
    low, high = bootstrap_interval(possible, impossible, seed=seed)
    return {"accuracy": pairwise_accuracy(possible, impossible), "ci95": [low, high],
            "auroc": auroc(possible, impossible), "pairs": len(possible), "reduce": reduce}
