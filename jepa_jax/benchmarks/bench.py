"""`jepa-jax bench`: speed measurements of one config, each printed as one JSON object.

  step        compile time, step time, tokens/s, clips/s, FLOPs (analytic and XLA's, with the encoder and
              predictor checked apart), MFU, peak memory; with compare="torch" the PyTorch reference step on the
              same batch and weights, alternating with ours, and ratio = jepa_jax / torch (benchmarks.step)
  compile     cold lower + compile seconds of the train step with unrolled and with scanned blocks
              (model.scan_layers), and ratio = unrolled / scanned (benchmarks.compile)
  attention   forward and forward + backward of each attention kernel at the config's encoder shape, and torch's
              scaled_dot_product_attention on the same arrays (benchmarks.attention)
  data        host pipeline clips/s per core: our decoder, packed ArrayRecord clips, decode-everything (official
              style) (benchmarks.data)
  plan        latency of one CEM replan at DINO-WM's PushT budget, one episode and a batch (benchmarks.planning)
  checkpoint  train-loop step time with an asynchronous checkpoint after every step vs none
              (benchmarks.checkpoint)
  profile     a jax.profiler trace of one step, summed per op kind and per layer kind, with each lane's (CPU
              thread, accelerator stream) busy time and how long one lane worked alone (benchmarks.profile)
"""

from typing import Iterator

from jepa_jax import config as config_lib, storage
from jepa_jax.benchmarks import (attention, checkpoint, compile as compile_lib, data, planning,
                                 profile as profile_lib, step)

MEASURES = ("step", "compile", "attention", "data", "plan", "checkpoint", "profile")
COMPARE = ("none", "torch")


def check(what, compare: str, out: str | None = None) -> None:
    """One-line errors for unknown measures or references, or a bucket trace folder, before anything is built."""
    unknown = sorted(set(what) - set(MEASURES))
    if unknown:
        raise ValueError(f"--what {','.join(unknown)}: choose from {','.join(MEASURES)}")
    if compare not in COMPARE:
        raise ValueError(f"--compare {compare}: choose one of {', '.join(COMPARE)}")
    if out:
        storage.check_local(out, "--out")


def run(config, what=("step",), *, compare: str = "none", repeats: int = 5, manifest: str | None = None,
        model: str | None = None, out: str | None = None) -> Iterator[dict]:
    """Yield one dict per measurement of `what` (MEASURES) for `config`.

    compare: "torch" adds the PyTorch reference to the step and attention measurements. manifest: videos for the
    data measurement (default: generated test videos). model: an `ac` run directory for the plan measurement
    (default: config's architecture with random weights, which must then be an `ac` config). out: the profile's
    trace folder (default: a new temporary folder).
    """
    check(what, compare, out)
    config_lib.validate(config)
    if "step" in what:
        yield step.measure_step(config, repeats, compare if compare != "none" else None)
    if "compile" in what:
        yield compile_lib.compile_times(config)
    if "attention" in what:
        yield from attention.kernel_times(attention.encoder_shape(config), config.model.dtype, repeats,
                                          with_torch=compare == "torch")
    if "data" in what:
        yield data.host_pipeline(manifest)
    if "plan" in what:
        yield planning.replan_latency(model, config, repeats)
    if "checkpoint" in what:
        yield checkpoint.checkpoint_stall(config, steps=max(repeats, 2) * 4)
    if "profile" in what:
        yield profile_lib.profile_step(config, out)
