"""The benchmarks' shared timing loop."""

from jepa_jax.benchmarks import timing


def test_time_calls_passes_the_call_index_and_splits_off_the_first_call():
    calls = []
    first, seconds = timing.time_calls(calls.append, repeats=3)
    assert calls == [0, 1, 2, 3]
    assert len(seconds) == 3 and all(s >= 0 for s in seconds + [first])
