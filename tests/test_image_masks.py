"""I-JEPA 2D multi-block masks: static counts, targets outside the context, block geometry, determinism."""

import numpy as np
import pytest

from jepa_jax import masks

GRIDS = [(1, 16, 16), (1, 14, 14), (1, 8, 8)]


def boxes_of(indices, width):
    rows, cols = np.divmod(np.asarray(indices), width)
    return rows.min(), rows.max(), cols.min(), cols.max()


@pytest.mark.parametrize("grid", GRIDS)
def test_shapes_are_static_and_targets_never_in_the_context(grid):
    masker = masks.ImageMultiBlockMasker(grid, masks.ImageMaskConfig())
    rng = np.random.default_rng(0)
    for _ in range(20):
        context, targets = masker(rng, 6)
        assert context.shape == (6, masker.num_context) and targets.shape == (6, 4, masker.num_target)
        assert context.dtype == targets.dtype == np.int32
        for b in range(6):
            assert len(set(context[b])) == masker.num_context
            assert not set(context[b]) & set(targets[b].ravel())
            assert np.all(np.diff(context[b]) > 0) and context[b].max() < grid[1] * grid[2]


def test_target_blocks_are_rectangles_of_the_batch_size_smaller_than_the_grid():
    grid = (1, 16, 16)
    masker = masks.ImageMultiBlockMasker(grid, masks.ImageMaskConfig())
    _, targets = masker(np.random.default_rng(3), 8)
    extents = set()
    for block in targets.reshape(-1, masker.num_target):
        top, bottom, left, right = boxes_of(block, grid[2])
        extents.add((bottom - top + 1, right - left + 1))
        assert bottom - top + 1 < grid[1] and right - left + 1 < grid[2]
    # One block size per batch: every subset spans at most that block (h x w >= num_target tokens).
    h, w = max(e[0] for e in extents), max(e[1] for e in extents)
    assert h * w >= masker.num_target and all(e[0] <= h and e[1] <= w for e in extents)


def test_context_lies_in_one_square_block():
    masker = masks.ImageMultiBlockMasker((1, 16, 16), masks.ImageMaskConfig())
    context, _ = masker(np.random.default_rng(5), 8)
    for sample in context:
        top, bottom, left, right = boxes_of(sample, 16)
        assert bottom - top + 1 <= 15 and right - left + 1 <= 15


def test_token_fractions_match_the_official_scales():
    masker = masks.ImageMultiBlockMasker((1, 16, 16), masks.ImageMaskConfig())
    assert 0.10 <= masker.num_target / 256 <= 0.2  # target scale 0.15-0.2, lower quantile
    assert 0.2 <= masker.num_context / 256 <= 0.6  # a 0.85-1.0 square minus four targets


def test_same_seed_same_masks():
    masker = masks.ImageMultiBlockMasker((1, 14, 14), masks.ImageMaskConfig())
    a, b = masker(np.random.default_rng(7), 4), masker(np.random.default_rng(7), 4)
    c = masker(np.random.default_rng(8), 4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])  # another seed, other masks


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_targets=0), "num_targets must be an int >= 1"),
    (dict(target_scale=(0.3, 0.2)), "target_scale must be"),
])
def test_bad_image_mask_configs_fail(kwargs, message):
    with pytest.raises(ValueError, match=message):
        masks.ImageMaskConfig(**kwargs)


def test_video_grid_is_refused():
    with pytest.raises(ValueError, match=r"token grid must have one time step, got \(4, 8, 8\)"):
        masks.ImageMultiBlockMasker((4, 8, 8), masks.ImageMaskConfig())
