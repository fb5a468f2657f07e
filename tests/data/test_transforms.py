"""Tests for jepa_jax.data.transforms: bilinear resize vs a per-pixel reference, crop statistics, flips, eval."""

import math

import numpy as np
import pytest

from jepa_jax.data import transforms

H, W = 256, 320
LOG_AR = (math.log(0.75), math.log(1.35))


def _random_clip(shape, seed=0, high=256):
    return np.random.default_rng(seed).integers(0, high, shape, dtype=np.uint8)


def _source(i: int, in_size: int, out_size: int) -> tuple[int, int, float]:
    """PyTorch bilinear align_corners=False: source taps of output index i."""
    x = max((i + 0.5) * in_size / out_size - 0.5, 0.0)
    i0 = min(int(math.floor(x)), in_size - 1)
    return i0, min(i0 + 1, in_size - 1), x - i0


def _reference_resize(clip: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Float64 bilinear resize by an explicit loop over every output value: [T, H, W, C] -> [T, out_h, out_w, C]."""
    frames, in_h, in_w, channels = clip.shape
    f = clip.astype(np.float64)
    out = np.zeros((frames, out_h, out_w, channels))
    for t in range(frames):
        for y in range(out_h):
            y0, y1, ly = _source(y, in_h, out_h)
            for x in range(out_w):
                x0, x1, lx = _source(x, in_w, out_w)
                for c in range(channels):
                    top = (1 - lx) * f[t, y0, x0, c] + lx * f[t, y0, x1, c]
                    bottom = (1 - lx) * f[t, y1, x0, c] + lx * f[t, y1, x1, c]
                    out[t, y, x, c] = (1 - ly) * top + ly * bottom
    return out


# ---------------------------------------------------------------------------------------------------- resize_clip


@pytest.mark.parametrize("shape,size", [((1, 5, 7, 1), (3, 4)), ((1, 3, 3, 1), (7, 5)), ((2, 4, 6, 3), (9, 2)),
                                        ((1, 1, 5, 2), (3, 1)), ((3, 6, 2, 4), (6, 5))])
def test_resize_matches_per_pixel_reference(shape, size):
    clip = _random_clip(shape, seed=sum(shape))
    out = transforms.resize_clip(clip, size)
    assert out.dtype == np.uint8 and out.shape == (shape[0], *size, shape[3])
    # Rounded output of the float reference: within 0.5 (plus float32 slack), in particular within 1.
    np.testing.assert_array_less(np.abs(out - _reference_resize(clip, *size)), 0.5 + 1e-3)


def test_resize_known_values_half_pixel_and_edge_clamp():
    # F.interpolate([[0, 255]], size=4, bilinear, align_corners=False) = [0, 63.75, 191.25, 255] -> rint.
    clip = np.array([0, 255], np.uint8).reshape(1, 1, 2, 1)
    np.testing.assert_array_equal(transforms.resize_clip(clip, (1, 4))[0, 0, :, 0], [0, 64, 191, 255])
    # No antialias: 8 -> 2 samples source positions 1.5 and 5.5 only (pixels 1, 2 and 5, 6).
    clip = np.array([200, 0, 100, 0, 0, 50, 150, 0], np.uint8).reshape(1, 1, 8, 1)
    np.testing.assert_array_equal(transforms.resize_clip(clip, (1, 2))[0, 0, :, 0], [50, 100])
    # Rounding is half to even: 2 -> 1 averages the pair, 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4.
    clip = np.array([[0, 1], [1, 2], [2, 3], [3, 4]], np.uint8).reshape(4, 1, 2, 1)
    np.testing.assert_array_equal(transforms.resize_clip(clip, (1, 1)).ravel(), [0, 2, 2, 4])


def test_resize_identity_and_constant():
    clip = _random_clip((3, 17, 23, 3))
    np.testing.assert_array_equal(transforms.resize_clip(clip, (17, 23)), clip)
    np.testing.assert_array_equal(transforms.resize_clip(clip[:, ::-1], (17, 23)), clip[:, ::-1])  # non-contiguous
    constant = np.full((2, 13, 9, 2), 173, np.uint8)
    for size in [(1, 1), (5, 30), (13, 9), (40, 7)]:
        out = transforms.resize_clip(constant, size)
        assert out.shape == (2, *size, 2) and np.all(out == 173)


# ------------------------------------------------------------------------------------------------ crop parameters


def _draw_params(n: int, seed: int = 0) -> np.ndarray:
    """[n, 4] (top, left, height, width) of n crops of an H x W frame."""
    rng = np.random.default_rng(seed)
    params = [transforms.random_resized_crop_params(H, W, rng) for _ in range(n)]
    return np.array([(p.top, p.left, p.height, p.width) for p in params], np.float64)


def _accepted_grid(height: int, width: int, n: int = 1500):
    """Area fraction and log aspect of the accepted (scale, log-aspect) draws on a midpoint grid (exact rule)."""
    u = (np.arange(n) + 0.5) / n
    scale, log_ar = np.meshgrid(0.3 + 0.7 * u, LOG_AR[0] + (LOG_AR[1] - LOG_AR[0]) * u, indexing="ij")
    area = scale * height * width
    w = np.round(np.sqrt(area * np.exp(log_ar)))
    h = np.round(np.sqrt(area / np.exp(log_ar)))
    ok = (w <= width) & (h <= height)
    return (w * h / (height * width))[ok], np.log(w / h)[ok]


def _quarter(offset: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Which quarter (0..3) of its free range [0, room] each offset lies in."""
    return np.minimum(4 * offset // np.maximum(room, 1), 3)


@pytest.fixture(scope="module")
def crop_draws():
    return _draw_params(20000)


def test_crop_area_fraction_mean(crop_draws):
    n = len(crop_draws)
    fraction = crop_draws[:, 2] * crop_draws[:, 3] / (H * W)
    expected, _ = _accepted_grid(H, W)
    tolerance = 5 * fraction.std() / math.sqrt(n)
    assert abs(fraction.mean() - expected.mean()) < tolerance
    # On a 256x320 frame a draw fits only if its area fraction is <= 0.8 * aspect (h <= H) and <= 1.25 / aspect
    # (w <= W): large crops are redrawn, which lowers the mean of U[0.3, 1] (0.65) to ~0.57.
    assert 0.55 < expected.mean() < 0.6 and fraction.mean() < 0.65 - 2 * tolerance
    assert fraction.min() < 0.31 and fraction.max() > 0.98


def test_crop_log_aspect_is_log_uniform(crop_draws):
    n = len(crop_draws)
    log_ar = np.log(crop_draws[:, 3] / crop_draws[:, 2])
    _, expected = _accepted_grid(H, W)
    assert abs(log_ar.mean() - expected.mean()) < 5 * log_ar.std() / math.sqrt(n)
    # Near-uniform on [log 0.75, log 1.35]: both ends reached (up to integer rounding of w and h).
    assert abs(log_ar.min() - LOG_AR[0]) < 0.01 and abs(log_ar.max() - LOG_AR[1]) < 0.01
    edges = np.linspace(LOG_AR[0] - 0.02, LOG_AR[1] + 0.02, 11)
    observed = np.histogram(log_ar, edges)[0] / n
    reference = np.histogram(expected, edges)[0] / len(expected)
    assert np.all(np.abs(observed - reference) < 5 * np.sqrt(reference * (1 - reference) / n) + 1e-3)
    # Uniform in log space, not linearly (a linear-uniform aspect puts fewer draws below 1).
    assert abs(np.mean(log_ar < 0) - np.mean(expected < 0)) < 0.02


def test_crop_inside_frame_and_positions_uniform(crop_draws):
    top, left, height, width = crop_draws.T
    assert np.all((top >= 0) & (left >= 0) & (height >= 1) & (width >= 1))
    assert np.all((top + height <= H) & (left + width <= W))
    n = len(crop_draws)
    for offset, extent, frame in [(top, height, H), (left, width, W)]:
        room = (frame - extent).astype(np.int64)
        # Given its room R, the offset is uniform on {0, ..., R}: offset / R has mean 1/2 ...
        u = offset[room > 0] / room[room > 0]
        assert abs(u.mean() - 0.5) < 5 * u.std() / math.sqrt(len(u))
        # ... and lands in quarter q of its free range with probability #{k in {0..R} in quarter q} / (R + 1).
        probability = np.zeros(4)
        for r, count in zip(*np.unique(room, return_counts=True)):
            probability += count * np.bincount(_quarter(np.arange(r + 1), r), minlength=4) / (r + 1)
        probability /= n
        np.testing.assert_allclose(probability, 0.25, atol=0.03)  # not concentrated
        observed = np.bincount(_quarter(offset.astype(np.int64), room), minlength=4) / n
        np.testing.assert_allclose(observed, probability, atol=5 * math.sqrt(0.25 / n))
        # Crop corners reach all parts of the frame.
        assert offset.min() == 0 and (offset + extent).max() == frame


@pytest.mark.parametrize("height,width,expected", [
    (H, W, transforms.CropParams(0, 0, H, W)),  # aspect 1.25 within range: the whole frame
    (100, 400, transforms.CropParams(0, 132, 100, 135)),  # too wide: aspect clamped to 1.35
    (400, 100, transforms.CropParams(133, 0, 133, 100)),  # too tall: aspect clamped to 0.75
    (3, 1, transforms.CropParams(1, 0, 1, 1)),  # tiny frame: round(1 / 0.75) = 1 row, centred
])
def test_fallback_centre_crop_when_no_try_fits(height, width, expected):
    for seed in range(3):
        params = transforms.random_resized_crop_params(height, width, np.random.default_rng(seed), scale=(2, 3))
        assert params == expected
    assert transforms.random_resized_crop_params(height, width, np.random.default_rng(0), max_tries=0) == expected
    clip = _random_clip((2, height, width, 3))
    out = transforms.random_resized_crop(clip, 16, np.random.default_rng(0), scale=(2, 3))
    np.testing.assert_array_equal(out, transforms.resize_clip(transforms.crop_clip(clip, expected), (16, 16)))


# ------------------------------------------------------------------------------- crops shared by all the frames


def test_identical_frames_stay_identical():
    clip = np.repeat(_random_clip((1, 60, 80, 3)), 6, axis=0)
    for seed in range(10):
        out = transforms.train_transform(clip, np.random.default_rng(seed), 32)
        assert np.all(out == out[:1])


def test_crop_location_shared_across_frames():
    base = _random_clip((1, 60, 80, 3), high=150)
    clip = base + 20 * np.arange(5, dtype=np.uint8)[:, None, None, None]  # frame t = base + 20 t
    for seed in range(10):
        out = transforms.random_resized_crop(clip, 24, np.random.default_rng(seed)).astype(np.int64)
        difference = out - out[:1] - 20 * np.arange(5)[:, None, None, None]
        assert np.abs(difference).max() <= 1
        # Same as cropping every frame with the one set of parameters drawn from the same stream.
        params = transforms.random_resized_crop_params(60, 80, np.random.default_rng(seed))
        expected = transforms.resize_clip(transforms.crop_clip(clip, params), (24, 24))
        np.testing.assert_array_equal(out, expected)


def test_crop_clip_copies():
    clip = _random_clip((2, 10, 12, 1))
    out = transforms.crop_clip(clip, transforms.CropParams(2, 3, 5, 7))
    np.testing.assert_array_equal(out, clip[:, 2:7, 3:10])
    assert not np.shares_memory(out, clip)


# -------------------------------------------------------------------------------------------------------- flips


def test_flip_half_of_clips_all_frames_together():
    clip = _random_clip((4, 6, 9, 3))
    mirrored = clip[:, :, ::-1]
    flipped = 0
    n = 1000
    for seed in range(n):
        out = transforms.horizontal_flip(clip, np.random.default_rng(seed))
        is_flipped = np.array_equal(out, mirrored)
        assert is_flipped or np.array_equal(out, clip)  # never a mix of flipped and unflipped frames
        flipped += is_flipped
    assert abs(flipped - n / 2) < 4 * math.sqrt(n / 4)
    assert np.array_equal(transforms.horizontal_flip(clip, np.random.default_rng(0), p=1.0), mirrored)
    assert np.array_equal(transforms.horizontal_flip(clip, np.random.default_rng(0), p=0.0), clip)


@pytest.mark.parametrize("shape,scale", [((3, 40, 56, 3), (0.3, 1.0)),
                                         ((3, 20, 20, 3), (2.0, 3.0))])  # fallback to the whole frame: no resize
def test_train_transform_is_crop_then_flip(shape, scale):
    clip = _random_clip(shape)
    flipped = 0
    n = 400
    for seed in range(n):
        out = transforms.train_transform(clip, np.random.default_rng(seed), 20, scale=scale)
        rng = np.random.default_rng(seed)
        cropped = transforms.random_resized_crop(clip, 20, rng, scale=scale)
        np.testing.assert_array_equal(out, transforms.horizontal_flip(cropped, rng))
        flipped += not np.array_equal(out, cropped)
    assert abs(flipped - n / 2) < 4 * math.sqrt(n / 4)


# ------------------------------------------------------------------------------- determinism, dtypes and shapes


def test_determinism():
    clip = _random_clip((4, 50, 70, 3))
    a = transforms.train_transform(clip, np.random.default_rng(7), 32)
    b = transforms.train_transform(clip, np.random.default_rng(7), 32)
    c = transforms.train_transform(clip, np.random.default_rng(8), 32)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("shape", [(2, 300, 120, 3), (2, 90, 250, 3), (3, 10, 7, 3), (1, 1, 1, 3), (2, 40, 50, 1),
                                   (2, 40, 50, 4), (0, 20, 30, 3)])
def test_shapes_and_dtype(shape):
    clip = _random_clip(shape)
    frames, channels = shape[0], shape[3]
    for out in (transforms.train_transform(clip, np.random.default_rng(0), 32),
                transforms.random_resized_crop(clip, 32, np.random.default_rng(1)),
                transforms.eval_transform(clip, 32), transforms.center_crop(clip, 32)):
        assert out.shape == (frames, 32, 32, channels) and out.dtype == np.uint8
    assert transforms.horizontal_flip(clip, np.random.default_rng(0)).shape == shape


@pytest.mark.parametrize("shape,size,expected", [((2, 100, 150, 3), 50, (50, 75)), ((2, 150, 100, 3), 50, (75, 50)),
                                                 ((1, 3, 10, 1), 4, (4, 13)), ((1, 7, 7, 2), 20, (20, 20))])
def test_short_side_resize(shape, size, expected):
    out = transforms.short_side_resize(_random_clip(shape), size)
    assert out.shape == (shape[0], *expected, shape[3]) and out.dtype == np.uint8


# --------------------------------------------------------------------------------------------------------- eval


def test_eval_transform_without_resize_is_a_centre_crop():
    clip = _random_clip((2, 256, 384, 3))  # short side already int(224 * 256 / 224) = 256
    np.testing.assert_array_equal(transforms.eval_transform(clip, 224), clip[:, 16:240, 80:304])


@pytest.mark.parametrize("height,width", [(140, 200), (200, 140), (64, 64), (30, 50)])
def test_eval_transform_keeps_centre_marker_centred(height, width):
    clip = np.zeros((2, height, width, 1), np.uint8)
    r, c, k = height // 2, width // 2, max(2, min(height, width) // 8)
    clip[:, r - k:r + k, c - k:c + k] = 255  # centred square (even dims: exact centre)
    out = transforms.eval_transform(clip, 64).astype(np.float64)[..., 0]
    assert out.shape == (2, 64, 64)
    rows, cols = np.indices((64, 64))
    for frame in out:
        assert abs((frame * rows).sum() / frame.sum() - 31.5) <= 1.0
        assert abs((frame * cols).sum() / frame.sum() - 31.5) <= 1.0
    # An off-centre marker is not centred, so the check above can fail.
    clip = np.roll(clip, width // 4, axis=2)
    frame = transforms.eval_transform(clip, 64).astype(np.float64)[0, ..., 0]
    assert abs((frame * cols).sum() / frame.sum() - 31.5) > 2


# --------------------------------------------------------------------------------------------------- bad inputs

_CLIP = np.zeros((2, 8, 8, 3), np.uint8)
_RNG = np.random.default_rng


@pytest.mark.parametrize("call,name", [
    (lambda: transforms.resize_clip(np.zeros((8, 8, 3), np.uint8), (4, 4)), "clip"),
    (lambda: transforms.resize_clip(_CLIP.astype(np.float32), (4, 4)), "clip"),
    (lambda: transforms.train_transform(_CLIP.tolist(), _RNG(0), 4), "clip"),
    (lambda: transforms.eval_transform(np.zeros((2, 0, 8, 3), np.uint8), 4), "clip"),
    (lambda: transforms.resize_clip(_CLIP, (0, 4)), "size"),
    (lambda: transforms.resize_clip(_CLIP, 4), "size"),
    (lambda: transforms.random_resized_crop(_CLIP, 0, _RNG(0)), "size"),
    (lambda: transforms.train_transform(_CLIP, _RNG(0), 4.5), "size"),
    (lambda: transforms.short_side_resize(_CLIP, -1), "size"),
    (lambda: transforms.center_crop(_CLIP, 0), "size"),
    (lambda: transforms.eval_transform(_CLIP, 0), "size"),
    (lambda: transforms.random_resized_crop(_CLIP, 4, _RNG(0), scale=(0.0, 1.0)), "scale"),
    (lambda: transforms.random_resized_crop(_CLIP, 4, _RNG(0), scale=(0.9, 0.3)), "scale"),
    (lambda: transforms.train_transform(_CLIP, _RNG(0), 4, scale=(0.3,)), "scale"),
    (lambda: transforms.random_resized_crop_params(8, 8, _RNG(0), scale=(0.3, float("nan"))), "scale"),
    (lambda: transforms.random_resized_crop(_CLIP, 4, _RNG(0), aspect_ratio=(-1.0, 2.0)), "aspect_ratio"),
    (lambda: transforms.train_transform(_CLIP, _RNG(0), 4, aspect_ratio=(1.35, 0.75)), "aspect_ratio"),
    (lambda: transforms.random_resized_crop_params(0, 8, _RNG(0)), "height"),
    (lambda: transforms.random_resized_crop_params(8, -2, _RNG(0)), "width"),
    (lambda: transforms.random_resized_crop_params(8, 8, _RNG(0), max_tries=-1), "max_tries"),
    (lambda: transforms.horizontal_flip(_CLIP, _RNG(0), p=1.5), "p"),
    (lambda: transforms.horizontal_flip(_CLIP, _RNG(0), p=-0.1), "p"),
    (lambda: transforms.train_transform(_CLIP, _RNG(0), 4, flip_p=2.0), "flip_p"),
    (lambda: transforms.crop_clip(_CLIP, transforms.CropParams(4, 0, 5, 8)), "params"),
    (lambda: transforms.crop_clip(_CLIP, (0, 0, 4, 4)), "params"),
])
def test_bad_inputs_raise_one_line_value_error(call, name):
    with pytest.raises(ValueError) as error:
        call()
    message = str(error.value)
    assert message.startswith(f"{name} must") and "\n" not in message
