"""Metric writing (JSONL + TensorBoard, process 0 only), progress display and training-curve plots."""

import json
import os
import time

import jax
import numpy as np
import tqdm


class MetricWriter:
    """Appends {"step": s, name: value, ...} lines to metrics.jsonl and scalars to TensorBoard (tensorboardX)."""

    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top  (no TF needed)
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._file = open(self.path, "a", encoding="utf-8")
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        self._file.write(json.dumps({"step": step, **scalars}) + "\n")
        self._file.flush()
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, step)

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            self._tb.close()


def truncate_jsonl(path: str, last_step: int) -> None:
    """Drop records after `last_step` (a resumed run rewrites the steps after its checkpoint)."""
    if os.path.exists(path) and jax.process_index() == 0:
        kept = [r for r in read_jsonl(path) if r["step"] <= last_step]
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class Progress:
    """A progress bar with steps/s and ETA (tqdm); the rate excludes the first (compiling) step."""

    def __init__(self, total_steps: int, initial_step: int = 0):
        self.bar = tqdm.tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True,
                             disable=jax.process_index() != 0, smoothing=0.1)
        self.started = None
        self.steps_timed = 0

    def update(self, scalars: dict | None = None) -> None:
        self.bar.update(1)
        if self.started is None:
            self.started = time.perf_counter()
        else:
            self.steps_timed += 1
        if scalars:
            self.bar.set_postfix({k: f"{float(v):.4g}" for k, v in scalars.items()}, refresh=False)

    def steps_per_second(self) -> float:
        if not self.steps_timed:
            return float("nan")
        return self.steps_timed / (time.perf_counter() - self.started)

    def close(self) -> None:
        self.bar.close()


def plot_training_curves(records: list[dict], names: list[str], path: str) -> None:
    """One panel per metric name against step, saved as PNG."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    names = [n for n in names if any(n in r for r in records)]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names):
        points = np.array([(r["step"], r[name]) for r in records if name in r])
        ax.plot(points[:, 0], points[:, 1])
        ax.set_title(name)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
