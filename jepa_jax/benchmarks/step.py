"""The train-step measurement of `jepa-jax bench` (`--what step`), optionally side by side with PyTorch.

Our jitted step and, with compare="torch", the PyTorch reference (`torch_step.TorchStep`: transformers'
VJEPA2Model modules, loaded with our initial weights) run alternately in one process on the same batch: the same
clips and the same mask indices, so both sides process the same tokens (printed per side). Peak memory is measured
per side: on an accelerator the device's peak in this process; on CPU the peak resident memory of a fresh process
that runs only that side (a spawned child), as `/usr/bin/time` would report it.
"""

import json
import time

import jax
import numpy as np

from jepa_jax import (config as config_lib, export, layouts, masks as masks_lib, metrics as metrics_lib, native,
                      parallel)
from jepa_jax.benchmarks import flops as flops_lib, memory, torch_step
from jepa_jax.models import stacking
from jepa_jax.train import loop

MEMORY_STEPS = 3  # steps each side runs in its memory-measuring process


def sample_batch(config, maskers, seed: int = 0) -> dict:
    """A host batch of the config's shape: random uint8 clips [B, T, H, W, C] and masks from the config's
    maskers (the token counts a real batch has)."""
    rng = np.random.default_rng(seed)
    frames, size = config_lib.clip_shape(config)
    batch = config.data.batch_size
    return {"video": rng.integers(0, 256, (batch, frames, size, size, 3), dtype=np.uint8),
            "masks": masks_lib.sample_masks(maskers, rng, batch)}


def token_counts(num_tokens: int, masks) -> dict:
    """Tokens one side processes per clip: the whole clip (target encoder), and per mask config the context
    tokens (context encoder) and the predicted ones."""
    counts = flops_lib.mask_token_counts(masks)
    return {"clip": num_tokens, "context": [c for c, _, _ in counts], "predicted": [t * n for _, t, n in counts]}


class JaxStep:
    """Our train step on a fixed device batch; calling it runs one step and waits for it."""

    def __init__(self, config, host_batch: dict):
        self.run = loop.build_run(config)
        self.state = self.run.state
        with parallel.on_mesh(self.run.mesh):
            self.batch = parallel.host_to_global(host_batch, self.run.mesh)
            started = time.perf_counter()
            self.step = self.run.train_step.lower(self.state, self.batch).compile()
            self.compile_s = time.perf_counter() - started

    def __call__(self) -> float:
        with parallel.on_mesh(self.run.mesh):
            self.state, metrics = self.step(self.state, self.batch)
            return float(metrics["loss"])


def torch_options(config) -> dict:
    """TorchStep's keyword arguments for `config`; one-line error where VJEPA2Model cannot hold its model."""
    reasons = export.hf_unsupported(config) + ([f"it times the EMA objective, not config.objective="
                                                f"{config.objective!r}: set --config.objective=ema"]
                                               if config.objective != "ema" else [])
    if reasons:
        raise ValueError(f"--compare torch: the PyTorch reference cannot run this config: {'; '.join(reasons)}")
    return {"lr": config.optim.lr, "weight_decay": config.optim.weight_decay, "ema": config.ema.start,
            "dtype": config.model.dtype, "device": "cuda" if jax.default_backend() == "gpu" else "cpu"}


def torch_reference(config, params, host_batch: dict):
    """(TorchStep with `params`' encoder and predictor, its device batch)."""
    options = torch_options(config)
    params = stacking.unstack(jax.device_get(params))
    flat = {**native.flatten(params["encoder"]), **native.flatten(params["predictor"])}
    reference = torch_step.TorchStep(export.hf_config(config), layouts.to_layout(layouts.HF, flat), **options)
    return reference, reference.to_device(host_batch["video"], host_batch["masks"])


def _jax_peak_resident_bytes(config_json: str, host_batch: dict, steps: int, queue) -> None:
    """Child-process target: `steps` of our step only, then this process's peak resident bytes into `queue`."""
    step = JaxStep(config_lib.from_dict(json.loads(config_json)), host_batch)
    for _ in range(steps):
        step()
    queue.put(memory.resident_high_water_bytes())


def step_flops_xla(config) -> float:
    """XLA's FLOPs of the whole train step (cost analysis of the lowered step with XLA attention, see
    flops.with_xla_attention; includes what the analytic count leaves out: norms, softmax, optimizer)."""
    run = loop.build_run(flops_lib.with_xla_attention(config), abstract=True)
    return float(loop.lower(run).cost_analysis()["flops"])


def peak_memory(side: str, config, host_batch: dict, reference=None) -> int:
    """Peak memory of one side: the device's peak in this process on an accelerator (after the timed steps), or
    on CPU the peak resident bytes of a fresh process that runs only that side (the torch one imports no JAX)."""
    on_cpu = jax.default_backend() == "cpu"
    if side == "torch":
        if on_cpu:
            return memory.in_fresh_process(torch_step.peak_resident_bytes, export.hf_config(config),
                                           torch_options(config), host_batch, MEMORY_STEPS)
        return int(reference.torch.cuda.max_memory_allocated())
    if on_cpu:
        return memory.in_fresh_process(_jax_peak_resident_bytes, config_lib.to_json(config), host_batch,
                                       MEMORY_STEPS)
    return int(jax.local_devices()[0].memory_stats()["peak_bytes_in_use"])


def _spread(seconds: list[float]) -> dict:
    return {"step_s_median": float(np.median(seconds)), "step_s_min": float(np.min(seconds)),
            "step_s_max": float(np.max(seconds))}


def measure_step(config, repeats: int = 5, compare: str | None = None, with_memory: bool = True) -> dict:
    """Time the train step of `config` (and, compare="torch", the PyTorch reference alternately): one dict with
    compile time, step time (median, min, max over `repeats` steps after a warm-up step), tokens/s, clips/s,
    FLOPs per step (analytic and XLA's), MFU, peak memory and, with a reference, its figures and the ratio."""
    if config.objective == "ac":
        raise ValueError("--what step times the JEPA objectives (ema, sigreg) on masked clips; for an `ac` world "
                         "model use --what plan, or --what checkpoint for its train loop")
    host_batch = sample_batch(config, config_lib.build_maskers(config))
    ours = JaxStep(config, host_batch)
    sides, reference = {"jepa_jax": ours}, None
    num_tokens = flops_lib.clip_tokens(config)
    result = {"measure": "step", "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
              "devices": jax.device_count(), "model": config.model.size, "objective": config.objective,
              "dtype": config.model.dtype, "attention": config.model.attention, "scan_layers": config.model.scan_layers,
              "batch": config.data.batch_size,
              "clip": list(config_lib.clip_shape(config)),
              "predictor": [config.model.predictor.width, config.model.predictor.depth],
              "tokens": {"jepa_jax": token_counts(num_tokens, host_batch["masks"])}}
    if compare == "torch":
        reference, (video, masks) = torch_reference(config, ours.state.params, host_batch)
        sides["torch"] = lambda: reference.step(video, masks)
        _, frames, _, height, width = video.shape  # [B, T, C, H, W]
        m = config.model
        torch_tokens = frames // m.tubelet_size * (height // m.patch_size) * (width // m.patch_size)
        result["tokens"]["torch"] = token_counts(torch_tokens, masks)
        result["torch_threads"] = reference.torch.get_num_threads()
    first_losses, seconds = {}, {name: [] for name in sides}
    for round_index in range(repeats + 1):  # round 0 warms up; the sides alternate within each round
        for name, step in sides.items():
            started = time.perf_counter()
            loss = step()
            if round_index == 0:
                first_losses[name] = loss
            else:
                seconds[name].append(time.perf_counter() - started)
    spread = _spread(seconds["jepa_jax"])
    step_s = spread["step_s_median"]
    analytic = flops_lib.jepa_step_flops(config, host_batch["masks"])
    peak = metrics_lib.peak_flops_per_device(override=config.monitor.peak_flops) * jax.device_count()
    result.update(compile_s=ours.compile_s, **spread, first_loss=first_losses,
                  clips_per_s=config.data.batch_size / step_s,
                  tokens_per_s=config.data.batch_size * num_tokens / step_s,
                  flops_per_step_analytic=analytic, flops_per_step_xla=step_flops_xla(config),
                  peak_flops=peak, mfu=analytic / step_s / peak,
                  flops_check=flops_lib.forward_flops_check(config, host_batch["masks"]))
    if reference is not None:
        result["torch"] = _spread(seconds["torch"])
        result["ratio"] = step_s / result["torch"]["step_s_median"]
    if with_memory:
        result["peak_memory_bytes"] = {name: peak_memory(name, config, host_batch, reference) for name in sides}
        if reference is not None:
            result["memory_ratio"] = result["peak_memory_bytes"]["jepa_jax"] / result["peak_memory_bytes"]["torch"]
    return result
