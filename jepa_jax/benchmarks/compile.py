"""Compile time of the train step (`jepa-jax bench --what compile`): the config's step lowered and compiled with
unrolled blocks and with scanned ones (config.model.scan_layers), side by side in one process. Both are built
abstractly (nothing of the model's size is allocated), with the persistent compilation cache off, so each figure is
a cold compile.
"""

import contextlib
import time

import jax

from jepa_jax import config as config_lib
from jepa_jax.train import loop


@contextlib.contextmanager
def without_persistent_cache():
    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)


def compile_seconds(config) -> dict:
    """{"lower_s", "compile_s", "total_s"} of `config`'s train step, cold."""
    with without_persistent_cache():
        started = time.perf_counter()
        lowered = loop.lower(loop.build_run(config, abstract=True))
        lowered_at = time.perf_counter()
        lowered.compile()
        done = time.perf_counter()
    return {"lower_s": lowered_at - started, "compile_s": done - lowered_at, "total_s": done - started}


def compile_times(config) -> dict:
    """The step's cold lower + compile seconds unrolled and scanned, and ratio = unrolled / scanned (total)."""
    sides = {}
    for name, scan in (("unrolled", False), ("scanned", True)):
        variant = config.copy_and_resolve_references()
        variant.model.scan_layers = scan
        sides[name] = compile_seconds(variant)
    return {"measure": "compile", "backend": jax.default_backend(), "model": config.model.size,
            "encoder_depth": config_lib.encoder_size(config).depth,
            "predictor_depth": config_lib.build_predictor(config).depth, "objective": config.objective,
            "dtype": config.model.dtype, "remat": config.model.remat, **sides,
            "ratio": sides["unrolled"]["total_s"] / sides["scanned"]["total_s"]}
