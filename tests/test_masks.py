"""Tests for jepa_jax.masks (static-count V-JEPA multi-block masks)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from jepa_jax import masks

GRIDS = [(8, 14, 14), (8, 16, 16)]
CONFIGS = {"short": masks.SHORT_RANGE, "long": masks.LONG_RANGE}


@functools.lru_cache(maxsize=None)
def _masker(grid: tuple[int, int, int], config: masks.MaskConfig) -> masks.MultiBlockMasker:
    return masks.MultiBlockMasker(grid, config)


def _all_cases():
    return [(g, n) for g in GRIDS + [(1, 14, 14)] for n in CONFIGS]


@pytest.mark.parametrize("grid,name", _all_cases())
def test_static_shapes_dtype_sorted_unique_in_range(grid, name):
    masker = _masker(grid, CONFIGS[name])
    rng = np.random.default_rng(0)
    for batch_size in (1, 4, 7, 4, 16):
        context, target = masker(rng, batch_size)
        assert context.shape == (batch_size, masker.num_context)
        assert target.shape == (batch_size, masker.num_target)
        for idx in (context, target):
            assert idx.dtype == np.int32
            assert np.all(np.diff(idx, axis=1) > 0)  # sorted and unique
            assert idx.min() >= 0 and idx.max() < masker.num_tokens


@pytest.mark.parametrize("grid,name", _all_cases())
def test_context_and_target_disjoint(grid, name):
    masker = _masker(grid, CONFIGS[name])
    assert masker.num_context >= 1 and masker.num_target >= 1
    assert masker.num_context + masker.num_target <= masker.num_tokens
    context, target = masker(np.random.default_rng(1), 16)
    for ctx, tgt in zip(context, target):
        assert np.intersect1d(ctx, tgt).size == 0


# The official generator's measured fractions (docs/official_reference.md 4): (target fraction, context fraction).
OFFICIAL_FRACTIONS = {
    ((8, 14, 14), "short"): (0.48, 0.23),
    ((8, 14, 14), "long"): (0.70, 0.07),
    ((8, 16, 16), "short"): (0.47, 0.25),
    ((8, 16, 16), "long"): (0.70, 0.06),
}


@pytest.mark.parametrize("grid,name", list(OFFICIAL_FRACTIONS))
def test_fractions_match_the_official_generator(grid, name):
    masker = _masker(grid, CONFIGS[name])
    target_frac, context_frac = OFFICIAL_FRACTIONS[(grid, name)]
    assert abs(masker.num_target / masker.num_tokens - target_frac) <= 0.05
    assert abs(masker.num_context / masker.num_tokens - context_frac) <= 0.05


def test_static_counts_are_deterministic():
    a = masks.MultiBlockMasker((8, 16, 16), masks.SHORT_RANGE)
    b = masks.MultiBlockMasker((8, 16, 16), masks.SHORT_RANGE)
    assert (a.num_context, a.num_target) == (b.num_context, b.num_target)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_targets_are_full_tubes_before_subsampling(name):
    masker = _masker((8, 14, 14), CONFIGS[name])
    block_size, union = masker.sample_union(np.random.default_rng(3), 8)
    assert block_size[0] == 8
    np.testing.assert_array_equal(union.all(axis=1), union.any(axis=1))
    # __call__ draws its targets from the same unions and its context from the rest.
    context, target = masker(np.random.default_rng(3), 8)
    for b in range(8):
        tgt = masks.mask_to_grid(target[b], masker.grid)
        ctx = masks.mask_to_grid(context[b], masker.grid)
        assert not np.any(tgt & ~union[b])
        assert not np.any(ctx & union[b])


def test_partial_temporal_scale_gives_short_boxes():
    config = masks.MaskConfig(num_blocks=1, spatial_scale=(0.15, 0.15), temporal_scale=(0.5, 0.5))
    masker = masks.MultiBlockMasker((8, 14, 14), config)
    (t, h, w), union = masker.sample_union(np.random.default_rng(0), 6)
    assert t == 4
    frames = union.any(axis=(2, 3))  # [B, T']
    assert np.all(frames.sum(axis=1) == 4)
    assert np.all(union.sum(axis=(1, 2, 3)) == t * h * w)


def test_block_size_follows_official_formula():
    masker = _masker((8, 16, 16), masks.LONG_RANGE)
    rng = np.random.default_rng(0)
    sizes = {masker.sample_block_size(rng) for _ in range(200)}
    keep = int(256 * 0.7)
    for t, h, w in sizes:
        assert t == 8
        ar_h, ar_w = h * h / keep, keep / (w * w)  # both ~ aspect ratio before rounding
        assert 0.6 < ar_h < 1.7 and 0.6 < ar_w < 1.7
        assert 1 <= h <= 16 and 1 <= w <= 16
    assert len(sizes) > 1  # the aspect ratio varies between batches


def test_block_size_shared_across_batch_and_positions_differ():
    config = masks.MaskConfig(num_blocks=1, spatial_scale=(0.15, 0.15))
    masker = masks.MultiBlockMasker((8, 14, 14), config)
    seen_sizes = set()
    for seed in range(5):
        (t, h, w), union = masker.sample_union(np.random.default_rng(seed), 16)
        seen_sizes.add((h, w))
        rows = union.any(axis=(1, 3))  # [B, H']
        cols = union.any(axis=(1, 2))  # [B, W']
        np.testing.assert_array_equal(rows.sum(axis=1), h)
        np.testing.assert_array_equal(cols.sum(axis=1), w)
        np.testing.assert_array_equal(union.sum(axis=(1, 2, 3)), t * h * w)  # a single box
        corners = {(int(r.argmax()), int(c.argmax())) for r, c in zip(rows, cols)}
        assert len(corners) > 1
    assert len(seen_sizes) > 1


def test_block_size_redrawn_when_infeasible():
    masker = masks.MultiBlockMasker((8, 14, 14), masks.SHORT_RANGE)
    real = masker.sample_block_size
    draws = iter([(8, 14, 14)])  # a full-grid block leaves no context
    masker.sample_block_size = lambda rng: next(draws, None) or real(rng)
    block_size, union = masker.sample_union(np.random.default_rng(0), 4)
    assert block_size != (8, 14, 14)
    assert np.all((~union).sum(axis=(1, 2, 3)) >= masker.num_context)


def test_impossible_counts_raise_runtime_error():
    masker = masks.MultiBlockMasker((1, 4, 4), masks.MaskConfig(1, (0.25, 0.25)))
    masker.num_target = masker.num_tokens  # no sample can also keep context
    with pytest.raises(RuntimeError, match="no block placement"):
        masker(np.random.default_rng(0), 1)


def test_determinism():
    masker = _masker((8, 16, 16), masks.SHORT_RANGE)
    a = masker(np.random.default_rng(42), 8)
    b = masker(np.random.default_rng(42), 8)
    c = masker(np.random.default_rng(43), 8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a, c):  # another seed: other context and other targets
        assert not np.array_equal(x, y)


def _mean_frame(indices: np.ndarray, grid: tuple[int, int, int]) -> float:
    return float(np.mean(indices // (grid[1] * grid[2])))


def test_subsampling_does_not_favour_low_indices():
    masker = _masker((8, 14, 14), masks.SHORT_RANGE)
    rng = np.random.default_rng(0)
    centre = (masker.grid[0] - 1) / 2
    ctx_means, tgt_means, trunc_means = [], [], []
    for _ in range(10):
        context, target = masker(rng, 16)
        ctx_means.append(_mean_frame(context, masker.grid))
        tgt_means.append(_mean_frame(target, masker.grid))
        # Official rule for comparison: lowest indices of the full union.
        _, union = masker.sample_union(rng, 16)
        flat = union.reshape(16, -1)
        trunc = np.stack([np.flatnonzero(f)[: masker.num_target] for f in flat])
        trunc_means.append(_mean_frame(trunc, masker.grid))
    assert abs(np.mean(tgt_means) - centre) < 0.05
    assert abs(np.mean(ctx_means) - centre) < 0.05
    assert abs(np.mean(trunc_means) - centre) > 0.15  # the check detects truncation bias


def test_image_grid_2d():
    masker = _masker((1, 14, 14), masks.SHORT_RANGE)
    context, target = masker(np.random.default_rng(0), 8)
    assert context.shape == (8, masker.num_context)
    assert target.shape == (8, masker.num_target)
    assert 0.3 < masker.num_target / 196 < 0.7
    for ctx, tgt in zip(context, target):
        grid_tgt = masks.mask_to_grid(tgt, (1, 14, 14))
        assert grid_tgt.shape == (1, 14, 14) and grid_tgt.sum() == masker.num_target
        assert np.intersect1d(ctx, tgt).size == 0


def test_sample_masks_one_pair_per_masker():
    maskers = [_masker((8, 16, 16), c) for c in masks.VJEPA_MASKS]
    out = masks.sample_masks(maskers, np.random.default_rng(0), 4)
    assert len(out) == 2
    for masker, (context, target) in zip(maskers, out):
        assert context.shape == (4, masker.num_context)
        assert target.shape == (4, masker.num_target)
    again = masks.sample_masks(maskers, np.random.default_rng(0), 4)
    other = masks.sample_masks(maskers, np.random.default_rng(1), 4)
    for (c1, t1), (c2, t2), (c3, t3) in zip(out, again, other):
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_array_equal(t1, t2)
        assert not np.array_equal(c1, c3) and not np.array_equal(t1, t3)


def test_mask_to_grid_flat_index_layout():
    grid = (2, 4, 5)
    mask = masks.mask_to_grid(np.array([1 * 20 + 2 * 5 + 3, 0]), grid)
    assert mask.shape == grid and mask.dtype == bool
    assert mask[1, 2, 3] and mask[0, 0, 0] and mask.sum() == 2
    with pytest.raises(ValueError, match="indices"):
        masks.mask_to_grid(np.array([40]), grid)


def test_config_accepts_lists_as_tuples():
    config = masks.MaskConfig(num_blocks=2, spatial_scale=[0.7, 0.7])
    assert config.spatial_scale == (0.7, 0.7)
    assert config == masks.LONG_RANGE


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(num_blocks=0, spatial_scale=(0.1, 0.1)), "num_blocks"),
        (dict(num_blocks=1.5, spatial_scale=(0.1, 0.1)), "num_blocks"),
        (dict(num_blocks=1, spatial_scale=(0.0, 0.1)), "spatial_scale"),
        (dict(num_blocks=1, spatial_scale=(0.2, 1.1)), "spatial_scale"),
        (dict(num_blocks=1, spatial_scale=(0.3, 0.2)), "spatial_scale"),
        (dict(num_blocks=1, spatial_scale=(0.1,)), "spatial_scale"),
        (dict(num_blocks=1, spatial_scale=(0.1, 0.1), temporal_scale=(0.0, 1.0)), "temporal_scale"),
        (dict(num_blocks=1, spatial_scale=(0.1, 0.1), temporal_scale=(0.5, 2.0)), "temporal_scale"),
        (dict(num_blocks=1, spatial_scale=(0.1, 0.1), aspect_ratio=(-1.0, 1.0)), "aspect_ratio"),
        (dict(num_blocks=1, spatial_scale=(0.1, 0.1), aspect_ratio=(2.0, 1.0)), "aspect_ratio"),
        (dict(num_blocks=1, spatial_scale=(0.1, 0.1), aspect_ratio=(1.0, np.inf)), "aspect_ratio"),
    ],
)
def test_bad_config_raises(kwargs, field):
    with pytest.raises(ValueError, match=f"MaskConfig.{field}"):
        masks.MaskConfig(**kwargs)


@pytest.mark.parametrize("grid", [(0, 14, 14), (8, -1, 14), (8, 14), (8, 14.0, 14), "abc", None])
def test_bad_grid_raises(grid):
    with pytest.raises(ValueError, match="grid"):
        masks.MultiBlockMasker(grid, masks.SHORT_RANGE)


def test_config_without_context_raises():
    config = masks.MaskConfig(num_blocks=1, spatial_scale=(1.0, 1.0), aspect_ratio=(1.0, 1.0))
    with pytest.raises(ValueError, match="spatial_scale"):
        masks.MultiBlockMasker((8, 14, 14), config)


def test_bad_batch_size_and_config_type_raise():
    masker = _masker((1, 14, 14), masks.SHORT_RANGE)
    with pytest.raises(ValueError, match="batch_size"):
        masker(np.random.default_rng(0), 0)
    with pytest.raises(ValueError, match="config"):
        masks.MultiBlockMasker((1, 14, 14), {"num_blocks": 8})


@pytest.mark.parametrize("ratio,slices", [(0.5, 4), (0.25, 2), (0.01, 1), (0.99, 7)])
def test_causal_masks_hide_every_token_after_the_first_time_slices(ratio, slices):
    masker = masks.CausalMasker((8, 4, 5), masks.CausalMaskConfig(context_frames_ratio=ratio))
    context, target = masker(np.random.default_rng(0), 3)
    assert masker.shapes(3) == (context.shape, target.shape) == ((3, slices * 20), (3, 160 - slices * 20))
    for c, t in zip(context, target):
        grid = masks.mask_to_grid(c, (8, 4, 5))
        assert grid[:slices].all() and not grid[slices:].any()  # whole time slices, the earliest ones
        np.testing.assert_array_equal(np.sort(np.concatenate([c, t])), np.arange(160))


def test_causal_mask_config_is_validated_and_built_from_the_run_config(smoke_config):
    from jepa_jax import config as config_lib  # pylint: disable=g-import-not-at-top
    with pytest.raises(ValueError, match=r"context_frames_ratio must be a number in \(0, 1\), got 1.0"):
        masks.CausalMaskConfig(context_frames_ratio=1.0)
    with pytest.raises(ValueError, match="causal masks need at least 2 time slices"):
        masks.CausalMasker((1, 4, 4), masks.CausalMaskConfig())
    smoke_config.masks.long_range = {"context_frames_ratio": 0.5}
    built = config_lib.build_maskers(smoke_config)
    assert isinstance(built[0], masks.MultiBlockMasker) and isinstance(built[1], masks.CausalMasker)
    smoke_config.masks.long_range = {"context_frames_ratio": 2.0}
    with pytest.raises(ValueError, match=r"config.masks.long_range: CausalMaskConfig.context_frames_ratio"):
        config_lib.build_maskers(smoke_config)
