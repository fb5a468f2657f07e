"""Benchmark helpers: the shared timing loop, and the planning benchmark's random-weight model."""

import chex
import numpy as np

from jepa_jax.benchmarks import planning as planning_bench, timing


def test_time_calls_passes_the_call_index_and_splits_off_the_first_call():
    calls = []
    first, seconds = timing.time_calls(calls.append, repeats=3)
    assert calls == [0, 1, 2, 3]
    assert len(seconds) == 3 and all(s >= 0 for s in seconds + [first])


def test_random_world_model_encodes_with_unit_moments_for_batch_normalised_states():
    model = planning_bench.random_world_model("experiments/configs/pusht_ac.py:smoke")
    assert model.config.ac.state_norm == "batch"
    size = model.image_size
    frames = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    chex.assert_tree_all_finite(model.encode(frames))
