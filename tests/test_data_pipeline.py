"""The grain training stream: shapes, dtypes, masks, determinism, resumable iterator state, host shards."""

import numpy as np

from jepa_jax import config as config_lib, masks as masks_lib
from jepa_jax.data import pipeline
from tests.conftest import assert_stream_resumes_exactly


def make_stream(config, process_index=0, process_count=1, seed=0):
    source = pipeline.world_source(config, seed=seed)
    return pipeline.make_train_dataset(source, config_lib.build_maskers(config), config.data.batch_size, seed=seed,
                                       process_index=process_index, process_count=process_count)


def test_batches_are_uint8_clips_with_static_disjoint_masks(smoke_config):
    maskers = config_lib.build_maskers(smoke_config)
    it = iter(make_stream(smoke_config))
    for _ in range(3):
        batch = next(it)
        world = smoke_config.data.world
        assert batch["video"].dtype == np.uint8
        assert batch["video"].shape == (8, world.num_frames, world.size, world.size, 3)
        for masker, (context, target) in zip(maskers, batch["masks"]):
            assert context.shape == (8, masker.num_context) and target.shape == (8, masker.num_target)
            for c, t in zip(context, target):
                assert not set(c.tolist()) & set(t.tolist())


def test_stream_is_deterministic_and_seed_dependent(smoke_config):
    a, b, c = iter(make_stream(smoke_config)), iter(make_stream(smoke_config)), iter(make_stream(smoke_config, seed=1))
    first_a, first_b, first_c = next(a), next(b), next(c)
    np.testing.assert_array_equal(first_a["video"], first_b["video"])
    np.testing.assert_array_equal(first_a["masks"][0][0], first_b["masks"][0][0])
    assert not np.array_equal(first_a["video"], first_c["video"])


def test_iterator_state_restores_the_exact_stream(smoke_config):
    assert_stream_resumes_exactly(lambda: make_stream(smoke_config), check=2)


def test_hosts_read_different_clips_and_masks(smoke_config):
    host0, host1 = next(iter(make_stream(smoke_config, 0, 2))), next(iter(make_stream(smoke_config, 1, 2)))
    assert not np.array_equal(host0["video"], host1["video"])
    assert not np.array_equal(host0["masks"][0][1], host1["masks"][0][1])


def test_mask_configs_keep_their_order_so_mask_token_0_is_short_range(smoke_config):
    assert list(smoke_config.masks.keys()) == ["short_range", "long_range"]
    short, long = config_lib.build_maskers(smoke_config)
    assert short.config.num_blocks == 8 and long.config.num_blocks == 2
    assert short.num_target < long.num_target


class ConstantSource:
    """Clips filled with `value + index` so a batch tells where each clip came from."""

    def __init__(self, value: int, size: int):
        self.value, self.size = value, size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        return {"video": np.full((2, 8, 8, 3), self.value + index, np.uint8)}

    def __repr__(self):
        return f"ConstantSource({self.value}, {self.size})"


def first_pixels(stream, batches):
    it = iter(stream)
    return np.concatenate([next(it)["video"][:, 0, 0, 0, 0] for _ in range(batches)])


def test_mixing_follows_the_weights_and_epochs_are_reshuffled():
    maskers = [masks_lib.MultiBlockMasker((1, 4, 4), masks_lib.MaskConfig(num_blocks=1, spatial_scale=(0.25, 0.25)))]
    mixed = pipeline.make_train_dataset([ConstantSource(0, 10), ConstantSource(100, 10)], maskers, 10, seed=0,
                                        weights=(0.75, 0.25), process_index=0, process_count=1)
    values = first_pixels(mixed, 40)
    assert abs((values >= 100).mean() - 0.25) < 0.05
    single = first_pixels(pipeline.make_train_dataset(ConstantSource(0, 10), maskers, 10, seed=0,
                                                      process_index=0, process_count=1), 3)
    epochs = single.reshape(3, 10)
    assert all(sorted(e) == list(range(10)) for e in epochs)  # each epoch is a permutation
    assert not np.array_equal(epochs[0], epochs[1])  # and a new one every epoch


class StampDraw:
    """A loader that writes the element's clip index and its first random draw into the clip."""

    def __call__(self, element, rng):
        draw = int(rng.integers(256))
        return {"video": np.stack([element["video"][..., 0], np.full_like(element["video"][..., 0], draw)], -1)}


def global_batches(process_count: int, steps: int = 3, global_batch: int = 8) -> list[set]:
    """Per step, the (clip, draw) pairs of the processes' local batches together."""
    maskers = [masks_lib.MultiBlockMasker((1, 4, 4), masks_lib.MaskConfig(num_blocks=1, spatial_scale=(0.25, 0.25)))]
    streams = [iter(pipeline.make_train_dataset(ConstantSource(0, 100), maskers, global_batch // process_count,
                                                seed=3, load=StampDraw(), process_index=p,
                                                process_count=process_count)) for p in range(process_count)]
    batches = []
    for _ in range(steps):
        pixels = np.concatenate([next(s)["video"][:, 0, 0, 0] for s in streams])
        batches.append(set(map(tuple, pixels.tolist())))
    return batches


def test_global_batches_hold_the_same_clips_and_draws_at_any_process_count():
    one = global_batches(1)
    assert all(len(b) == 8 for b in one)
    assert global_batches(2) == one
    assert global_batches(4) == one
