"""Peak resident memory of work run in a fresh process: the CPU memory figures of `jepa-jax bench`. Imports
neither JAX nor torch, so a child process holds only what its work imports."""

import multiprocessing


def resident_high_water_bytes() -> int:
    """This process's peak resident memory (VmHWM of /proc/self/status; unlike ru_maxrss it does not carry over
    the parent's peak into a spawned child)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM line: peak resident memory is measured on Linux only")


def in_fresh_process(target, *args):
    """Run target(*args, queue) in a spawned process (nothing of this one's memory carried over) and return what
    it put in the queue (e.g. its resident_high_water_bytes())."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=target, args=(*args, queue))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"{target.__name__} failed in its own process (exit code {child.exitcode})")
    return queue.get()
