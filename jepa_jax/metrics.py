"""Metrics: on-device collapse monitors, MFU, writing (JSONL + TensorBoard, process 0 only), progress, plots."""

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from jepa_jax import storage

# Dense bf16 peak FLOP/s per device, keyed by a substring of jax.Device.device_kind (first match wins). MFU is
# reported against these even for fp32 runs, as is customary. CPU has no meaningful peak: CPU_PEAK_PER_CORE is an
# estimate (fp32 AVX2 FMA at ~3 GHz); override any entry with config.monitor.peak_flops.
PEAK_FLOPS = (
    ("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("L4", 121e12), ("A10G", 70e12),
    # libtpu's device kinds: v5e "TPU v5 lite", v5p "TPU v5", v6e "TPU v6 lite" (first match wins)
    ("TPU v6", 918e12), ("TPU v5 lite", 197e12), ("TPU v5", 459e12), ("TPU v4", 275e12), ("TPU v3", 123e12),
)
CPU_PEAK_PER_CORE = 1e11


def feature_std(features):
    """Per-dimension std of features [..., D] over all tokens and clips, averaged over D: scalar (-> 0 = collapse)."""
    return features.reshape(-1, features.shape[-1]).astype(jnp.float32).std(axis=0).mean()


def effective_rank(features):
    """RankMe effective rank of a feature matrix [M, D]: exp(entropy of its normalised singular values), in [1, D].

    Computed from the eigenvalues of the D x D Gram matrix, so the cost is O(M D^2 + D^3) whatever M is;
    eigenvalues below float32 rounding of the largest (D * eps * max) count as zero.
    """
    x = features.astype(jnp.float32)
    eigenvalues = jnp.linalg.eigvalsh(x.T @ x)
    floor = eigenvalues.max() * x.shape[-1] * jnp.finfo(jnp.float32).eps
    singular = jnp.sqrt(jnp.where(eigenvalues > floor, eigenvalues, 0.0))
    p = singular / singular.sum() + 1e-12
    return jnp.exp(-(p * jnp.log(p)).sum())


def mean_cosine(a, b):
    """Mean cosine similarity of matching vectors of a and b [..., D]: scalar."""
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    cos = (a * b).sum(-1) * jax.lax.rsqrt((a * a).sum(-1) * (b * b).sum(-1) + 1e-12)
    return cos.mean()


def peak_flops_per_device(device=None, override: float = 0.0) -> float:
    """Peak FLOP/s of one device from PEAK_FLOPS (or `override` if > 0); CPU: cores x estimate / local devices."""
    if override > 0:
        return override
    device = device or jax.local_devices()[0]
    if device.platform == "cpu":
        return (os.cpu_count() or 1) * CPU_PEAK_PER_CORE / jax.local_device_count()
    return peak_flops_of_kind(device.device_kind)


def peak_flops_of_kind(device_kind: str) -> float:
    """Peak FLOP/s of an accelerator by its device kind (e.g. "TPU v5 lite", "NVIDIA H100 80GB HBM3"), PEAK_FLOPS."""
    for name, flops in PEAK_FLOPS:
        if name.lower() in device_kind.lower():
            return flops
    raise ValueError(f"no peak FLOP/s known for device kind {device_kind!r}: set "
                     f"--config.monitor.peak_flops=<FLOP/s per device>")


def compiled_flops(compiled) -> float:
    """FLOPs of one call of a compiled (per-device, SPMD-partitioned) function, from XLA's cost analysis."""
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis.get("flops", float("nan")))


class MetricWriter:
    """Appends {"step": s, name: value, ...} lines to metrics.jsonl and scalars to TensorBoard (tensorboardX), in a
    local or bucket run directory."""

    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top  (no TF needed)
        self._lines = storage.JsonLines(storage.join(workdir, "metrics.jsonl"))
        self._tb = SummaryWriter(storage.join(workdir, "tensorboard"))

    def write(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        self._lines.write({"step": step, **scalars})
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, step)

    def flush(self) -> None:
        """Everything logged so far is in the run directory (a bucket's metrics.jsonl is rewritten in batches)."""
        if self.enabled:
            self._lines.flush()
            self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._lines.close()
            self._tb.close()


def truncate_jsonl(path: str, last_step: int) -> None:
    """Drop records after `last_step` (a resumed run rewrites the steps after its checkpoint)."""
    if storage.path(path).exists() and jax.process_index() == 0:
        kept = [r for r in read_jsonl(path) if r["step"] <= last_step]
        storage.path(path).write_text("".join(json.dumps(r) + "\n" for r in kept))


def read_jsonl(path: str) -> list[dict]:
    return [json.loads(line) for line in storage.path(path).read_text().splitlines() if line.strip()]


class Progress:
    """A progress bar with steps/s (or another `unit`) and ETA (tqdm); the rate excludes the first (compiling) step."""

    def __init__(self, total_steps: int, initial_step: int = 0, unit: str = "step"):
        self.bar = tqdm.tqdm(total=total_steps, initial=initial_step, unit=unit, dynamic_ncols=True,
                             disable=jax.process_index() != 0, smoothing=0.1)
        self.started = None
        self.steps_timed = 0

    def update(self, scalars: dict | None = None, count: int = 1) -> None:
        """`count` more steps done (the first update's are not timed), showing `scalars`."""
        self.bar.update(count)
        if self.started is None:
            self.started = time.perf_counter()
        else:
            self.steps_timed += count
        if scalars:
            self.bar.set_postfix({k: f"{float(v):.4g}" for k, v in scalars.items()}, refresh=False)

    def steps_per_second(self) -> float:
        if not self.steps_timed:
            return float("nan")
        return self.steps_timed / (time.perf_counter() - self.started)

    def close(self) -> None:
        self.bar.close()


def plot_training_curves(records: list[dict], names, path: str, columns: int = 4) -> None:
    """One panel per metric name against step (a grid `columns` wide), saved as PNG."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    names = [n for n in names if any(n in r for r in records)]
    if not names:
        return
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, min(columns, len(names)), figsize=(4 * min(columns, len(names)), 3 * rows),
                             squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        points = np.array([(r["step"], r[name]) for r in records if name in r])
        ax.plot(points[:, 0], points[:, 1])
        ax.set_title(name)
        ax.set_xlabel("step")
    fig.tight_layout()
    storage.save_figure(fig, path)
    plt.close(fig)
