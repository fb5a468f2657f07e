"""Multi-block 3D masks for V-JEPA with static token counts (numpy only).

This is the V-JEPA multi-block masker (``jepa:src/masks/multiblock3d.py``,
docs/official_reference.md section 4), changed so that the number of context
and target tokens is fixed per (grid, mask config). The official collator
truncates every sample's index list to the batch minimum, so the token counts
change every step; under ``jax.jit`` that recompiles the train step. Here the
counts are constants and the step compiles once.

Rule, per (grid ``(T', H', W')``, config):

1. Block size, once per batch, as in the official code: ``t = max(1,
   int(T' * s_t))``; ``keep = int(H' * W' * s)``; aspect ratio ``ar`` uniform in
   the range (linear); ``h = round(sqrt(keep * ar))``, ``w = round(sqrt(keep /
   ar))`` clipped to ``[1, H']`` and ``[1, W']``. Each sample draws its own
   uniform block positions; the target is the union of the ``num_blocks``
   boxes (full temporal tubes when the temporal scale is 1) and the context is
   its complement.
2. Static counts. At construction a deterministic Monte-Carlo simulation
   (fixed seed, ``_SIM_BLOCK_SIZES`` block sizes x ``_SIM_SAMPLES_PER_SIZE``
   position draws) gives the distribution of ``|target|`` over samples that
   leave some context (the official generator rejects the others; a config
   leaving context in under ``_MIN_CONTEXT_RATE`` of samples is a ValueError).
   ``num_target`` is the lower ``QUANTILE`` (an observed value) of ``|target|``
   and ``num_context`` the lower ``QUANTILE`` of ``|context| = N - |target|``.
   For ``q <= 0.5`` this is ``num_target = Q_q(|target|)`` and ``num_context =
   N - Q_{1-q}(|target|)``, so ``num_context + num_target <= N`` always.
   ``q = 0.05`` approximates the official batch-minimum truncation (the official
   generator's measured fractions in batches of 24, docs/official_reference.md
   section 4); fractions of N, ours vs official:

   ============  ===========  ===========  ===========  ===========
   grid          short ctx    short tgt    long ctx     long tgt
   ============  ===========  ===========  ===========  ===========
   (8, 14, 14)   0.240/0.23   0.500/0.48   0.071/0.07   0.714/0.70
   (8, 16, 16)   0.246/0.25   0.500/0.47   0.062/0.06   0.703/0.70
   ============  ===========  ===========  ===========  ===========

3. Per batch, each sample redraws its block positions (vectorised over the
   samples that fail) until ``|target| >= num_target`` and ``|context| >=
   num_context``. If some sample still fails after ``_MAX_POSITION_ROUNDS``
   rounds, the block size is redrawn for the whole batch; after
   ``_MAX_BLOCK_SIZE_DRAWS`` block sizes a ``RuntimeError`` is raised. About
   ``2q`` (~10%) of position draws are rejected; for the V-JEPA configs a
   block-size redraw is very rare, so the block-size distribution stays the
   official one in practice.
4. Each sample keeps a uniformly random subset of exactly ``num_target``
   target and ``num_context`` context tokens. This knowingly departs from the
   official code, which keeps the lowest indices and so drops late frames and
   bottom rows more often. Index lists are sorted ascending, int32, and
   disjoint per sample.

The block size is drawn from the caller's generator rather than from the
official shared step counter; determinism comes from seeding that generator.
Flat token index: ``n = t * H' * W' + i * W' + j``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

Grid = tuple[int, int, int]
BlockSize = tuple[int, int, int]

QUANTILE = 0.05
_SIM_SEED = 0
_SIM_BLOCK_SIZES = 128
_SIM_SAMPLES_PER_SIZE = 8
_MAX_POSITION_ROUNDS = 32
_MAX_BLOCK_SIZE_DRAWS = 64
_MIN_CONTEXT_RATE = 0.5


def _as_range(field: str, value: Sequence[float], upper: float) -> tuple[float, float]:
    """Validates a ``(min, max)`` pair with ``0 < min <= max <= upper``."""
    bound = "1" if upper == 1.0 else "inf"
    message = (
        f"MaskConfig.{field} must be (min, max) with 0 < min <= max <= {bound}, "
        f"got {value!r}"
    )
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not (0.0 < low <= high <= upper and math.isfinite(high)):
        raise ValueError(message)
    return low, high


@dataclasses.dataclass(frozen=True)
class MaskConfig:
    """One multi-block mask config.

    Attributes:
        num_blocks: Number of (possibly overlapping) target blocks, >= 1.
        spatial_scale: Range of the block area as a fraction of ``H' * W'``.
        temporal_scale: Range of the block length as a fraction of ``T'``.
        aspect_ratio: Range of the block height / width ratio.
    """

    num_blocks: int
    spatial_scale: tuple[float, float]
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)

    def __post_init__(self) -> None:
        if (
            isinstance(self.num_blocks, bool)
            or not isinstance(self.num_blocks, (int, np.integer))
            or self.num_blocks < 1
        ):
            raise ValueError(
                f"MaskConfig.num_blocks must be an int >= 1, got {self.num_blocks!r}"
            )
        object.__setattr__(self, "num_blocks", int(self.num_blocks))
        for field, upper in (
            ("spatial_scale", 1.0),
            ("temporal_scale", 1.0),
            ("aspect_ratio", math.inf),
        ):
            object.__setattr__(self, field, _as_range(field, getattr(self, field), upper))


SHORT_RANGE = MaskConfig(num_blocks=8, spatial_scale=(0.15, 0.15))
LONG_RANGE = MaskConfig(num_blocks=2, spatial_scale=(0.7, 0.7))
VJEPA_MASKS = (SHORT_RANGE, LONG_RANGE)


def _validate_grid(grid: Sequence[int]) -> Grid:
    """Returns ``grid`` as a tuple of three positive ints or raises ValueError."""
    message = f"grid must be three positive ints (T', H', W'), got {grid!r}"
    try:
        values = tuple(grid)
    except TypeError:
        raise ValueError(message) from None
    if len(values) != 3 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise ValueError(message)
    return int(values[0]), int(values[1]), int(values[2])


def _covered(starts: np.ndarray, length: int, size: int) -> np.ndarray:
    """Marks ``[start, start + length)`` on an axis: ``[...] -> [..., size]`` bool."""
    axis = np.arange(size)
    return (axis >= starts[..., None]) & (axis < starts[..., None] + length)


def _random_subset(keys: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest keys per row, sorted: ``[B, N] -> [B, k]`` int32."""
    chosen = np.argpartition(keys, k - 1, axis=1)[:, :k]
    return np.sort(chosen, axis=1).astype(np.int32)


class MultiBlockMasker:
    """Samples V-JEPA multi-block masks with static token counts.

    Attributes:
        grid: Token grid ``(T', H', W')``; ``T' = 1`` gives 2D image masks.
        config: The mask config.
        num_tokens: ``N = T' * H' * W'``.
        num_target: Target tokens per sample (static).
        num_context: Context tokens per sample (static).
    """

    def __init__(self, grid: tuple[int, int, int], config: MaskConfig) -> None:
        self.grid = _validate_grid(grid)
        if not isinstance(config, MaskConfig):
            raise ValueError(f"config must be a MaskConfig, got {type(config).__name__}")
        self.config = config
        self.num_tokens = math.prod(self.grid)
        self.num_target, self.num_context = self._static_counts()

    def _static_counts(self) -> tuple[int, int]:
        """Lower ``QUANTILE`` of simulated ``|target|`` and ``|context|``.

        Samples without context are dropped first, as the official generator
        rejects them.
        """
        rng = np.random.default_rng(_SIM_SEED)
        sizes = np.concatenate([
            self._draw_unions(rng, self.sample_block_size(rng), _SIM_SAMPLES_PER_SIZE).sum(
                axis=(1, 2, 3)
            )
            for _ in range(_SIM_BLOCK_SIZES)
        ])
        with_context = sizes[sizes < self.num_tokens]
        if with_context.size < _MIN_CONTEXT_RATE * sizes.size:
            c = self.config
            raise ValueError(
                f"MaskConfig(num_blocks={c.num_blocks}, spatial_scale={c.spatial_scale}, "
                f"temporal_scale={c.temporal_scale}) leaves context tokens in only "
                f"{with_context.size / sizes.size:.0%} of samples on grid {self.grid} (need "
                f">= {_MIN_CONTEXT_RATE:.0%}); reduce num_blocks, spatial_scale or temporal_scale"
            )
        num_target = int(np.quantile(with_context, QUANTILE, method="lower"))
        num_context = int(np.quantile(self.num_tokens - with_context, QUANTILE, method="lower"))
        return num_target, num_context

    def sample_block_size(self, rng: np.random.Generator) -> BlockSize:
        """Draws the batch-shared block size ``(t, h, w)`` as the official code."""
        c = self.config
        num_t, num_h, num_w = self.grid
        u_t, u_s, u_ar = rng.random(3)
        s_t = c.temporal_scale[0] + u_t * (c.temporal_scale[1] - c.temporal_scale[0])
        s = c.spatial_scale[0] + u_s * (c.spatial_scale[1] - c.spatial_scale[0])
        ar = c.aspect_ratio[0] + u_ar * (c.aspect_ratio[1] - c.aspect_ratio[0])
        t = max(1, int(num_t * s_t))
        keep = int(num_h * num_w * s)
        h = min(max(round(math.sqrt(keep * ar)), 1), num_h)
        w = min(max(round(math.sqrt(keep / ar)), 1), num_w)
        return t, h, w

    def _draw_unions(self, rng: np.random.Generator, block_size: BlockSize, n: int) -> np.ndarray:
        """Unions of ``num_blocks`` uniformly placed boxes: ``[n, T', H', W']`` bool."""
        t, h, w = block_size
        num_t, num_h, num_w = self.grid
        high = np.array([num_t - t + 1, num_h - h + 1, num_w - w + 1])
        starts = rng.integers(0, high, size=(n, self.config.num_blocks, 3))
        in_t = _covered(starts[..., 0], t, num_t)[:, :, :, None, None]
        in_h = _covered(starts[..., 1], h, num_h)[:, :, None, :, None]
        in_w = _covered(starts[..., 2], w, num_w)[:, :, None, None, :]
        return (in_t & in_h & in_w).any(axis=1)

    def sample_union(
        self, rng: np.random.Generator, batch_size: int
    ) -> tuple[BlockSize, np.ndarray]:
        """Samples accepted target unions before subsampling.

        ``__call__`` starts with this call, so the same generator state gives
        the unions its targets are drawn from.

        Returns:
            The batch block size ``(t, h, w)`` and the unions ``[B, T', H', W']``
            bool, each with ``>= num_target`` targets and ``>= num_context``
            non-targets.

        Raises:
            ValueError: If ``batch_size`` is not a positive int.
            RuntimeError: If no acceptable batch is found within the caps.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
            batch_size < 1
        ):
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        union = np.empty((batch_size, *self.grid), dtype=bool)
        for _ in range(_MAX_BLOCK_SIZE_DRAWS):
            block_size = self.sample_block_size(rng)
            todo = np.ones(batch_size, dtype=bool)
            for _ in range(_MAX_POSITION_ROUNDS):
                redo = np.flatnonzero(todo)
                union[redo] = self._draw_unions(rng, block_size, redo.size)
                sizes = union[redo].sum(axis=(1, 2, 3))
                todo[redo] = (sizes < self.num_target) | (
                    self.num_tokens - sizes < self.num_context
                )
                if not todo.any():
                    return block_size, union
        raise RuntimeError(
            f"no block placement with >= {self.num_target} target and >= {self.num_context} "
            f"context tokens on grid {self.grid} after {_MAX_BLOCK_SIZE_DRAWS} block sizes"
        )

    def shapes(self, batch_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
        return (batch_size, self.num_context), (batch_size, self.num_target)

    def __call__(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples one batch of masks.

        Args:
            rng: Generator for block size, positions and subsampling.
            batch_size: Number of samples ``B``.

        Returns:
            ``(context [B, num_context], target [B, num_target])`` int32 flat
            token indices, sorted ascending and disjoint per sample.
        """
        _, union = self.sample_union(rng, batch_size)
        flat = union.reshape(batch_size, self.num_tokens)
        keys = rng.random(flat.shape)
        target = _random_subset(np.where(flat, keys, np.inf), self.num_target)
        context = _random_subset(np.where(flat, np.inf, keys), self.num_context)
        return context, target


def sample_masks(
    maskers: Sequence[MultiBlockMasker], rng: np.random.Generator, batch_size: int
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Samples ``(context [B, Kc], target [B, Kt])`` for each masker, in order."""
    return tuple(masker(rng, batch_size) for masker in maskers)


def mask_to_grid(indices: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """Scatters flat token indices ``[K]`` into a ``[T', H', W']`` bool mask."""
    grid = _validate_grid(grid)
    indices = np.asarray(indices)
    num_tokens = math.prod(grid)
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(
            f"indices must be a 1D int array, got shape {indices.shape} {indices.dtype}"
        )
    if indices.size and (indices.min() < 0 or indices.max() >= num_tokens):
        raise ValueError(f"indices must lie in [0, {num_tokens}) for grid {grid}")
    mask = np.zeros(num_tokens, dtype=bool)
    mask[indices] = True
    return mask.reshape(grid)


@dataclasses.dataclass(frozen=True)
class ImageMaskConfig:
    """I-JEPA multi-block 2D masks (ijepa:src/masks/multiblock.py, configs/in1k_vith14_ep300.yaml).

    Attributes:
        num_targets: Target blocks per image, each predicted separately from the same context (4).
        target_scale: Range of a target block's area as a fraction of ``H' * W'`` (0.15, 0.2).
        context_scale: Range of the (square) context block's area (0.85, 1.0), before the targets are removed.
        aspect_ratio: Range of the target blocks' height / width (0.75, 1.5).
    """

    num_targets: int = 4
    target_scale: tuple[float, float] = (0.15, 0.2)
    context_scale: tuple[float, float] = (0.85, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)

    def __post_init__(self) -> None:
        if isinstance(self.num_targets, bool) or not isinstance(self.num_targets, (int, np.integer)) or \
                self.num_targets < 1:
            raise ValueError(f"ImageMaskConfig.num_targets must be an int >= 1, got {self.num_targets!r}")
        for field, upper in (("target_scale", 1.0), ("context_scale", 1.0), ("aspect_ratio", math.inf)):
            object.__setattr__(self, field, _as_range(field, getattr(self, field), upper))


class ImageMultiBlockMasker:
    """Samples I-JEPA masks with static token counts: ``(context [B, Kc], targets [B, n, Kt])``.

    As the official collator: one target block size per batch, drawn with a single uniform number for both the
    scale and the aspect ratio (the official quirk); a square context block of its own scale; every block stays
    strictly smaller than the grid (top/left drawn in ``[0, H' - h)``); per image ``n`` target positions and one
    context position, and the context loses every target token. Unlike the official batch-minimum truncation,
    ``num_target`` (per block) and ``num_context`` are the lower ``QUANTILE`` of their simulated sizes, so the step
    compiles once: each target block keeps a random subset of ``num_target`` of its tokens (block sizes below it
    are redrawn) and the context one of ``num_context`` (images with fewer redraw their positions).
    """

    def __init__(self, grid: tuple[int, int, int], config: ImageMaskConfig) -> None:
        self.grid = _validate_grid(grid)
        if self.grid[0] != 1:
            raise ValueError(f"I-JEPA masks are 2D: the token grid must have one time step, got {self.grid}; "
                             f"use model.tubelet_size = data.video.frames_per_clip")
        self.config = config
        self.height, self.width = self.grid[1:]
        self.num_tokens = self.height * self.width
        self.num_target = 0  # no lower bound on block sizes while simulating them
        self.num_target, self.num_context = self._static_counts()

    def _block(self, rng: np.random.Generator, scale, aspect_ratio) -> tuple[int, int]:
        r = rng.random()  # one number for scale and aspect ratio, as the official code
        keep = int(self.num_tokens * (scale[0] + r * (scale[1] - scale[0])))
        ratio = aspect_ratio[0] + r * (aspect_ratio[1] - aspect_ratio[0])
        h = min(int(round(math.sqrt(keep * ratio))), self.height - 1)
        w = min(int(round(math.sqrt(keep / ratio))), self.width - 1)
        return max(h, 1), max(w, 1)

    def _sizes(self, rng: np.random.Generator) -> tuple[tuple[int, int], tuple[int, int]]:
        """(target (h, w), context (h, w)) of one batch, target blocks of at least num_target tokens."""
        for _ in range(_MAX_BLOCK_SIZE_DRAWS):
            target = self._block(rng, self.config.target_scale, self.config.aspect_ratio)
            if target[0] * target[1] >= self.num_target:
                return target, self._block(rng, self.config.context_scale, (1.0, 1.0))
        raise ValueError(f"no target block of >= {self.num_target} tokens in {_MAX_BLOCK_SIZE_DRAWS} draws")

    def _boxes(self, rng: np.random.Generator, size: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
        """Random boxes of `size` placed as the official code does: bool [*shape, H', W']."""
        tops = rng.integers(0, max(self.height - size[0], 1), shape)
        lefts = rng.integers(0, max(self.width - size[1], 1), shape)
        return _covered(tops, size[0], self.height)[..., :, None] & _covered(lefts, size[1], self.width)[..., None, :]

    def _draw(self, rng, batch_size, target_size, context_size):
        targets = self._boxes(rng, target_size, (batch_size, self.config.num_targets))
        context = self._boxes(rng, context_size, (batch_size,)) & ~targets.any(axis=1)
        return targets, context

    def _static_counts(self) -> tuple[int, int]:
        rng = np.random.default_rng(_SIM_SEED)
        target_sizes, context_sizes = [], []
        for _ in range(_SIM_BLOCK_SIZES):
            target, context = self._sizes(rng)
            target_sizes.append(target[0] * target[1])
            _, context_mask = self._draw(rng, _SIM_SAMPLES_PER_SIZE, target, context)
            context_sizes.extend(context_mask.reshape(_SIM_SAMPLES_PER_SIZE, -1).sum(axis=1))
        num_target = int(np.quantile(target_sizes, QUANTILE, method="lower"))
        num_context = int(np.quantile(context_sizes, QUANTILE, method="lower"))
        if num_context < 1:
            raise ValueError(f"{self.config} leaves no context on a {self.height}x{self.width} token grid in "
                             f"{QUANTILE:.0%} of images: lower target_scale or num_targets")
        return num_target, num_context

    def shapes(self, batch_size: int) -> tuple[tuple[int, int], tuple[int, int, int]]:
        return (batch_size, self.num_context), (batch_size, self.config.num_targets, self.num_target)

    def __call__(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples one batch: ``(context [B, Kc], targets [B, n, Kt])`` int32 flat token indices, sorted per
        block; no target token is in the context."""
        target_size, context_size = self._sizes(rng)
        targets = np.zeros((batch_size, self.config.num_targets, self.height, self.width), bool)
        context = np.zeros((batch_size, self.height, self.width), bool)
        todo = np.arange(batch_size)
        for _ in range(_MAX_POSITION_ROUNDS):
            drawn_targets, drawn_context = self._draw(rng, len(todo), target_size, context_size)
            targets[todo], context[todo] = drawn_targets, drawn_context
            todo = todo[context[todo].reshape(len(todo), -1).sum(axis=1) < self.num_context]
            if not len(todo):
                break
        else:
            raise ValueError(f"no context of >= {self.num_context} tokens outside the targets after "
                             f"{_MAX_POSITION_ROUNDS} placements")
        flat_targets = targets.reshape(batch_size * self.config.num_targets, self.num_tokens)
        keys = rng.random(flat_targets.shape)
        target_idx = _random_subset(np.where(flat_targets, keys, np.inf), self.num_target)
        context_keys = rng.random((batch_size, self.num_tokens))
        context_idx = _random_subset(np.where(context.reshape(batch_size, -1), context_keys, np.inf),
                                     self.num_context)
        return context_idx, target_idx.reshape(batch_size, self.config.num_targets, self.num_target)


@dataclasses.dataclass(frozen=True)
class CausalMaskConfig:
    """Predict the future: the first time slices are the context, every later token the target
    (jepa-intuitive-physics evaluation_code/src/masks/causal.py, its `ctxt_frames_ratio`).

    Attributes:
        context_frames_ratio: fraction of the ``T'`` time slices in the context; ``max(1, int(T' * ratio))``.
    """

    context_frames_ratio: float = 0.5

    def __post_init__(self) -> None:
        ratio = self.context_frames_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio < 1.0:
            raise ValueError(f"CausalMaskConfig.context_frames_ratio must be a number in (0, 1), got {ratio!r}")


class CausalMasker:
    """The same causal mask for every sample: ``(context [B, Kc], target [B, Kt])``, context the first
    ``num_slices`` time slices (token indices below ``num_slices * H' * W'``), target all later tokens."""

    def __init__(self, grid: tuple[int, int, int], config: CausalMaskConfig) -> None:
        self.grid = _validate_grid(grid)
        if self.grid[0] < 2:
            raise ValueError(f"causal masks need at least 2 time slices, the token grid is {self.grid}")
        self.config = config
        self.num_slices = min(max(1, int(self.grid[0] * config.context_frames_ratio)), self.grid[0] - 1)
        self.num_tokens = math.prod(self.grid)
        self.num_context = self.num_slices * self.grid[1] * self.grid[2]
        self.num_target = self.num_tokens - self.num_context

    def shapes(self, batch_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
        return (batch_size, self.num_context), (batch_size, self.num_target)

    def __call__(self, rng: np.random.Generator, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """One batch; ``rng`` is not used (the mask is fixed), so adding this config changes no other mask."""
        del rng
        indices = np.arange(self.num_tokens, dtype=np.int32)
        return (np.tile(indices[:self.num_context], (batch_size, 1)),
                np.tile(indices[self.num_context:], (batch_size, 1)))
