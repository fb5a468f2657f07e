"""Numpy clip transforms for grain workers (official V-JEPA pretraining and eval augmentation).

Clips are uint8 `[T, H, W, C]` (any C >= 1, any H, W) and stay uint8: normalisation happens later on device.

Pretraining (`train_transform`, V-JEPA `app/vjepa/transforms.py`): one random-resized crop shared by all frames,
resized to `size x size` with bilinear interpolation (`align_corners=False`, no antialias, as
`F.interpolate(mode="bilinear")`), then a horizontal flip of the whole clip with probability 0.5.
Eval (`eval_transform`, single spatial view): resize the short side to `int(size * 256 / 224)`, centre crop;
`spatial_views`: several crops along the long side (the official multi-view evaluation).

Choices where the reference code is silent or float-valued:
- Resizing is computed in float32 and rounded back to uint8 with round-half-to-even (`np.rint`); the official
  pipeline keeps float, so values differ from it by at most 0.5.
- When no sampled crop fits in `max_tries` tries, the fallback is the official (torchvision-style) centre crop:
  the whole frame if its aspect (W / H) lies in `aspect_ratio`, else the largest centred crop whose aspect is
  clamped to the nearest bound (with at least one pixel per side).
- Short-side resizing sets the long side to `floor(size * long / short)` (official `int(...)` truncation);
  centre-crop offsets are `int(round((H - size) / 2))`, as torchvision / the official `CenterCrop`.
"""

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class CropParams:
    """A spatial crop: rows `[top, top + height)`, columns `[left, left + width)`."""

    top: int
    left: int
    height: int
    width: int


def _check_clip(clip) -> None:
    if not isinstance(clip, np.ndarray) or clip.ndim != 4 or clip.dtype != np.uint8 or min(clip.shape[1:]) < 1:
        got = (f"{clip.dtype} array of shape {clip.shape}" if isinstance(clip, np.ndarray)
               else type(clip).__name__)
        raise ValueError(f"clip must be a uint8 array [T, H, W, C] with H, W, C >= 1; got {got}")


def _check_positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}")


def _check_range(value, name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise ValueError(f"{name} must be a pair (low, high) of finite floats with 0 < low <= high; got {value!r}")
    return low, high


def _check_probability(p, name: str) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0 <= p <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1]; got {p!r}")


def random_resized_crop_params(height: int, width: int, rng: np.random.Generator,
                               scale=(0.3, 1.0), aspect_ratio=(0.75, 1.35), max_tries: int = 10) -> CropParams:
    """Samples a crop of an `height x width` frame (official `_get_param_spatial_crop`).

    Each try draws an area `U[scale] * H * W` and a log-uniform aspect `w / h` in `aspect_ratio`, sets
    `w = round(sqrt(area * aspect))`, `h = round(sqrt(area / aspect))` and accepts if `0 < w <= W`, `0 < h <= H`,
    placing the crop uniformly (`top ~ U{0..H-h}`, `left ~ U{0..W-w}`). After `max_tries` failures (0 goes straight
    there) it returns the centre crop of the whole frame with its aspect clamped to `aspect_ratio`.
    """
    _check_positive_int(height, "height")
    _check_positive_int(width, "width")
    scale_low, scale_high = _check_range(scale, "scale")
    ratio_low, ratio_high = _check_range(aspect_ratio, "aspect_ratio")
    if isinstance(max_tries, bool) or not isinstance(max_tries, (int, np.integer)) or max_tries < 0:
        raise ValueError(f"max_tries must be an int >= 0; got {max_tries!r}")
    height, width = int(height), int(width)
    log_ratio = (math.log(ratio_low), math.log(ratio_high))
    for _ in range(max_tries):
        area = rng.uniform(scale_low, scale_high) * height * width
        ratio = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(area * ratio))
        h = round(math.sqrt(area / ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return CropParams(top, left, h, w)
    w, h = width, height
    if width / height < ratio_low:
        h = max(1, round(width / ratio_low))
    elif width / height > ratio_high:
        w = max(1, round(height * ratio_high))
    return CropParams((height - h) // 2, (width - w) // 2, h, w)


def _taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear `align_corners=False` source taps: indices i0, i1 and the float32 weight of i1 (PyTorch formula)."""
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * np.float32(in_size / out_size) - np.float32(0.5)
    src = np.maximum(src, np.float32(0))  # PyTorch clamps negative source coordinates to 0
    i0 = np.minimum(src.astype(np.intp), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (src - i0).astype(np.float32)


def _resize_region(clip: np.ndarray, region: CropParams, size: tuple[int, int], flip: bool = False) -> np.ndarray:
    """Resizes `clip[:, region]` to `size`, optionally flipped left-right: uint8 [T, H, W, C] -> [T, *size, C].

    Separable and copy-free until the first gather: columns (a byte gather on the uint8 source), then rows (gather
    of whole float32 rows); each pass is `a + (b - a) * weight` in float32 with weights expanded over the trailing
    axes so numpy's inner loops stay long. Flipping reverses the column taps, which is exact and free.
    """
    frames, _, width, channels = clip.shape
    if size == (region.height, region.width):  # identity taps (weights 0) are exact: just copy the region
        crop = clip[:, region.top:region.top + region.height, region.left:region.left + region.width]
        return (crop[:, :, ::-1] if flip else crop).copy()
    r0, r1, wr = _taps(region.height, size[0])
    c0, c1, wc = _taps(region.width, size[1])
    if flip:
        c0, c1, wc = c0[::-1], c1[::-1], wc[::-1]
    # Column taps as byte offsets into each row of W * C bytes: one element per byte gathers faster than pixels.
    channel = np.arange(channels)
    b0 = ((c0[:, None] + region.left) * channels + channel).ravel()
    b1 = ((c1[:, None] + region.left) * channels + channel).ravel()
    rows = clip[:, region.top:region.top + region.height].reshape(frames, region.height, width * channels)
    a = np.take(rows, b0, axis=2)
    x = np.subtract(np.take(rows, b1, axis=2), a, dtype=np.float32)
    x *= np.repeat(wc, channels)
    np.add(x, a, out=x)
    a = np.take(x, r0, axis=1)
    x = np.take(x, r1, axis=1)
    x -= a
    x *= wr[:, None]
    x += a
    out = np.empty((frames, size[0], size[1], channels), np.uint8)
    np.rint(x.reshape(out.shape), out=out, casting="unsafe")  # round half to even in float32, then cast
    return out


def resize_clip(clip: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (align_corners=False, no antialias) of uint8 [T, H, W, C] to uint8 [T, h, w, C], size=(h, w)."""
    _check_clip(clip)
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in size)):
        raise ValueError(f"size must be a pair (height, width) of positive ints; got {size!r}")
    _, height, width, _ = clip.shape
    return _resize_region(clip, CropParams(0, 0, height, width), (int(size[0]), int(size[1])))


def crop_clip(clip: np.ndarray, params: CropParams) -> np.ndarray:
    """Crops every frame: [T, H, W, C] -> [T, params.height, params.width, C] (a copy, never a view)."""
    _check_clip(clip)
    _, height, width, _ = clip.shape
    if not (isinstance(params, CropParams) and 0 <= params.top and 0 <= params.left and 0 < params.height
            and 0 < params.width and params.top + params.height <= height and params.left + params.width <= width):
        raise ValueError(f"params must be a non-empty CropParams inside the {height}x{width} frame; got {params!r}")
    return clip[:, params.top:params.top + params.height, params.left:params.left + params.width].copy()


def random_resized_crop(clip: np.ndarray, size: int, rng: np.random.Generator,
                        scale=(0.3, 1.0), aspect_ratio=(0.75, 1.35)) -> np.ndarray:
    """One random crop for all frames, resized to [T, size, size, C] (see `random_resized_crop_params`)."""
    _check_clip(clip)
    _check_positive_int(size, "size")
    _, height, width, _ = clip.shape
    params = random_resized_crop_params(height, width, rng, scale=scale, aspect_ratio=aspect_ratio)
    return _resize_region(clip, params, (int(size), int(size)))


def horizontal_flip(clip: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Flips the whole clip left-right with probability p (one draw per call); returns a new [T, H, W, C] array."""
    _check_clip(clip)
    _check_probability(p, "p")
    if rng.random() < p:
        return clip[:, :, ::-1].copy()
    return clip.copy()


def short_side_resize(clip: np.ndarray, size: int) -> np.ndarray:
    """Resizes so the short side is `size`, the long side `floor(size * long / short)`: [T, H, W, C] -> [T, h, w, C]."""
    _check_clip(clip)
    _check_positive_int(size, "size")
    _, height, width, _ = clip.shape
    size = int(size)
    if height <= width:
        return resize_clip(clip, (size, size * width // height))
    return resize_clip(clip, (size * height // width, size))


def center_crop(clip: np.ndarray, size: int) -> np.ndarray:
    """Central `size x size` crop: [T, H, W, C] -> [T, size, size, C].

    A clip whose short side is below `size` is first resized up (`short_side_resize`) so the crop fits.
    """
    _check_clip(clip)
    _check_positive_int(size, "size")
    size = int(size)
    if min(clip.shape[1:3]) < size:
        clip = short_side_resize(clip, size)
    _, height, width, _ = clip.shape
    top = int(round((height - size) / 2))
    left = int(round((width - size) / 2))
    return crop_clip(clip, CropParams(top, left, size, size))


def train_transform(clip: np.ndarray, rng: np.random.Generator, size: int, scale=(0.3, 1.0),
                    aspect_ratio=(0.75, 1.35), flip_p: float = 0.5) -> np.ndarray:
    """Official pretraining augmentation: shared random-resized crop, then flip; [T, H, W, C] -> [T, size, size, C]."""
    _check_clip(clip)
    _check_positive_int(size, "size")
    _check_probability(flip_p, "flip_p")
    _, height, width, _ = clip.shape
    params = random_resized_crop_params(height, width, rng, scale=scale, aspect_ratio=aspect_ratio)
    # Same draws in the same order as random_resized_crop -> horizontal_flip; the flip is folded into the resize.
    flip = bool(rng.random() < flip_p)
    return _resize_region(clip, params, (int(size), int(size)), flip=flip)


def eval_transform(clip: np.ndarray, size: int) -> np.ndarray:
    """Official single-view eval: short side -> `int(size * 256 / 224)`, centre crop; -> uint8 [T, size, size, C]."""
    _check_clip(clip)
    _check_positive_int(size, "size")
    return center_crop(short_side_resize(clip, int(size) * 256 // 224), int(size))


def spatial_views(clip: np.ndarray, size: int, views: int) -> np.ndarray:
    """The official multi-view evaluation crops: uint8 [T, H, W, C] -> [views, T, size, size, C].

    One view is `eval_transform`. Several: resize the short side to `size`, then take `views` square crops along the
    long side at offsets k * ((long - size) // (views - 1)) (vjepa2 `evals/video_classification_frozen/utils.py`,
    EvalVideoTransform).
    """
    _check_positive_int(views, "views")
    if views == 1:
        return eval_transform(clip, size)[None]
    clip = short_side_resize(clip, size)
    _, height, width, _ = clip.shape
    step = (max(height, width) - int(size)) // (views - 1)
    crops = [CropParams(k * step, 0, size, size) if height > width else CropParams(0, k * step, size, size)
             for k in range(views)]
    return np.stack([crop_clip(clip, crop) for crop in crops])
