"""Grain input pipeline per host: source -> shuffle -> host shard -> batch -> mask sampler -> prefetch.

Clips stay uint8 [B, T, H, W, C] on the host; masks are numpy int32 index arrays sampled once per batch (the
multi-block block size is shared by a batch, positions per sample). Iteration is infinite and step-based; the
iterator state is a small dict (`get_state`/`set_state`) that checkpoints can store.
"""

from typing import Sequence

import grain
import jax
import numpy as np

from jepa_jax import masks as masks_lib
from jepa_jax.worlds import BallsWorldConfig, BallsWorldSource

# Enough distinct procedurally generated clips that a run never sees one twice.
WORLD_CLIPS = 2**31 - 1


def world_source(config, seed: int, num_clips: int = WORLD_CLIPS) -> BallsWorldSource:
    """The built-in bouncing-balls world described by config.data.world."""
    return BallsWorldSource(BallsWorldConfig(**config.data.world), num_clips=num_clips, seed=seed)


class SampleMasks:
    """Batch transform: adds ((context [B, Kc], target [B, Kt]), ...) drawn from the maskers."""

    def __init__(self, maskers: Sequence[masks_lib.MultiBlockMasker], stream: int):
        self.maskers = tuple(maskers)
        self.stream = stream  # decorrelates hosts, which otherwise draw the same per-index seeds

    def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
        rng = np.random.default_rng([int(rng.integers(2**63)), self.stream])
        batch_size = batch["video"].shape[0]
        return {"video": batch["video"], "masks": masks_lib.sample_masks(self.maskers, rng, batch_size)}


def make_train_dataset(source, maskers, local_batch_size: int, seed: int,
                       process_index: int | None = None, process_count: int | None = None,
                       num_threads: int = 2, prefetch: int = 4) -> grain.IterDataset:
    """Infinite stream of host-local batches {"video": uint8 [b, T, H, W, C], "masks": (...)} for this process."""
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    dataset = grain.MapDataset.source(source).seed(seed).shuffle().repeat()
    dataset = dataset[process_index::process_count]
    dataset = dataset.map(lambda clip: clip["video"])
    dataset = dataset.batch(local_batch_size, drop_remainder=True)
    dataset = dataset.map(lambda video: {"video": video})
    dataset = dataset.random_map(SampleMasks(maskers, stream=process_index))
    return dataset.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
