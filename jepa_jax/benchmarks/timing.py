"""Wall-clock timing shared by the benchmarks."""

import time


def time_calls(fn, repeats: int) -> tuple[float, list[float]]:
    """fn(0), which compiles or warms up, then fn(1) .. fn(repeats): (seconds of the first call, seconds of each
    further one). fn must block until its work is done (jax.block_until_ready, torch.cuda.synchronize)."""
    seconds = []
    for call in range(repeats + 1):
        started = time.perf_counter()
        fn(call)
        seconds.append(time.perf_counter() - started)
    return seconds[0], seconds[1:]
