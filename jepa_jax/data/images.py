"""Still images as clips: decode with Pillow, repeat along time (how V-JEPA 2 mixes ImageNet into video data)."""

import numpy as np

from jepa_jax import storage
from jepa_jax.data import video
from jepa_jax.data.sources import IMAGE_EXTENSIONS


def is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def load_image(path: str) -> np.ndarray:
    """uint8 [H, W, 3] RGB (grayscale, palette and alpha images converted); VideoError for unusable files."""
    from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
    if not storage.path(path).exists():
        raise video.VideoError(path, "missing", "no such file")
    if storage.size(path) == 0:
        raise video.VideoError(path, "empty", "0 bytes")
    try:
        with storage.open_binary(path) as f, Image.open(f) as image:
            return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError as err:
        raise video.VideoError(path, "not_video", f"not an image: {err}") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise video.VideoError(path, "undecodable", str(err)) from None


def image_clip(path: str, frames_per_clip: int) -> np.ndarray:
    """The image repeated as a still clip: uint8 [F, H, W, 3]."""
    return np.repeat(load_image(path)[None], frames_per_clip, axis=0)
