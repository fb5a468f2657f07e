"""Ablation sweeps: expand a grid (or list) of config overrides into runs, run them one after another (or print one
launch command per run), skip finished runs, and collect each run's final metrics into results.csv / .md / .png.

A sweep file defines `get_sweep()` returning a dict:
  config:  base config, "path[:arg]" as for --config;
  fixed:   {"dotted.field": value} applied to every run;
  grid:    {"dotted.field": (values, ...)} -> the cartesian product, or
  runs:    [{"dotted.field": value, ...}, ...] -> one run each;
  report:  metric names for the tables and plots (final training metrics, or probe scores from the run's
           report.json such as "velocity/time" (ridge) or "attentive/velocity", see report_metrics).
"""

import csv
import itertools
import json
import math
import os
import shlex

from jepa_jax import config as config_lib, probing, storage
from jepa_jax.evals import report
from jepa_jax.train import loop


def load_sweep(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sweep file {path!r} does not exist: sweeps live in experiments/sweeps/")
    spec = config_lib.load_module(path).get_sweep()
    if ("grid" in spec) == ("runs" in spec):
        raise ValueError(f"{path}: get_sweep() must give exactly one of 'grid' and 'runs'")
    return spec


def expand(spec: dict, path: str = "sweep") -> list[dict]:
    """[{"name", "varied": {field: value}, "overrides": fixed + varied}]; one-line errors for unknown fields or
    a sweep with no runs. Names are `field=value` pairs of what varies, so they are stable across re-runs."""
    if "grid" in spec:
        fields = list(spec["grid"])
        varied = [dict(zip(fields, values)) for values in itertools.product(*(spec["grid"][f] for f in fields))]
    else:
        varied = [dict(run) for run in spec["runs"]]
    if not varied:
        raise ValueError(f"{path}: the sweep expands to zero runs: give at least one value per grid field")
    base = config_lib.load_spec(spec["config"])
    for field in {**spec.get("fixed", {}), **{k: v for run in varied for k, v in run.items()}}:
        message = config_lib.missing_key(base, field)
        if message:
            raise ValueError(f"{path}: {message}")
    return [{"name": ",".join(f"{k}={v}" for k, v in run.items()), "varied": run,
             "overrides": {**spec.get("fixed", {}), **run}} for run in varied]


def run_config(spec: dict, overrides: dict):
    config = config_lib.load_spec(spec["config"])
    for field, value in overrides.items():
        config_lib.override(config, field, value)
    return config


def launch_command(spec: dict, run: dict, workdir: str) -> str:
    """The `jepa-jax train` command line that trains one run of the sweep (for a cluster scheduler)."""
    flags = [f"--config.{field}={_flag_value(value)}" for field, value in run["overrides"].items()]
    return shlex.join(["jepa-jax", "train", "--config", spec["config"], *flags, "--workdir", workdir])


def _flag_value(value) -> str:
    return str(tuple(value)) if isinstance(value, (list, tuple)) else str(value)


def run_sweep(path: str, out_dir: str, print_commands: bool = False) -> list[dict]:
    """Run (or print the launch commands of) every unfinished run under out_dir/NAME, then collect the results.

    Returns the result rows (also written to results.csv, results.md and results.png in out_dir).
    """
    storage.check_local(out_dir, "--workdir")
    spec = load_sweep(path)
    runs = expand(spec, path)
    os.makedirs(out_dir, exist_ok=True)
    for index, run in enumerate(runs):
        workdir = os.path.join(out_dir, run["name"])
        if print_commands:
            print(launch_command(spec, run, workdir))
            continue
        if loop.is_finished(workdir):
            print(f"[{index + 1}/{len(runs)}] {run['name']}: finished, skipped")
            continue
        print(f"[{index + 1}/{len(runs)}] {run['name']}")
        config = run_config(spec, run["overrides"])
        summary = loop.train(config, workdir)
        if report.wanted_after_training(config, summary):
            probing.run_report(config, workdir)
        loop.save_summary(summary, workdir)
    if print_commands:
        return []
    metrics = tuple(spec.get("report", ("loss",)))
    rows = collect(runs, out_dir, metrics)
    write_results(rows, metrics, out_dir)
    return rows


def collect(runs: list[dict], out_dir: str, metrics: tuple[str, ...]) -> list[dict]:
    """One row per run: its varied fields and the requested final metrics (NaN where missing)."""
    rows = []
    for run in runs:
        workdir = os.path.join(out_dir, run["name"])
        values = {}
        if loop.is_finished(workdir):
            with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
                values.update(json.load(f))
            report_path = os.path.join(workdir, "report.json")
            if os.path.isfile(report_path):
                with open(report_path, encoding="utf-8") as f:
                    values.update(report_metrics(json.load(f)))
        rows.append({"run": run["name"], **run["varied"],
                     **{m: float(values.get(m, math.nan)) for m in metrics}})
    return rows


def report_metrics(stored) -> dict:
    """A run's report.json as metrics: the ridge probes' of its last checkpoint ("position/time", ...) and the
    attentive probes' of its trained encoder ("attentive/position", ...). A list is the ridge-only report of older
    runs."""
    ridge, attentive = (stored, []) if isinstance(stored, list) else (stored["ridge"], stored["attentive"])
    final = [r for r in ridge if r["step"] is not None][-1]
    metrics = {k: v for k, v in final.items() if k not in ("name", "step")}
    for row in attentive[:1]:  # the trained encoder
        metrics.update({f"attentive/{task}": score["score"] for task, score in row.items() if task != "name"})
    return metrics


def write_results(rows: list[dict], metrics: tuple[str, ...], out_dir: str) -> None:
    fields = list(rows[0])
    with open(os.path.join(out_dir, "results.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(fields[1:]) + " |", "|" + "---|" * (len(fields) - 1)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k])
                                       for k in fields[1:]) + " |")
    with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    _plot(rows, [f for f in fields[1:] if f not in metrics], list(metrics), os.path.join(out_dir, "results.png"))


def _plot(rows, varied: list[str], metrics: list[str], path: str) -> None:
    """Per metric: a heatmap over two varied fields, else one bar per run."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        if len(varied) == 2:
            xs = sorted({r[varied[1]] for r in rows})
            ys = sorted({r[varied[0]] for r in rows})
            grid = np.full((len(ys), len(xs)), np.nan)
            for r in rows:
                grid[ys.index(r[varied[0]]), xs.index(r[varied[1]])] = r[metric]
            image = ax.imshow(grid, cmap="viridis", aspect="auto")
            for (i, j), value in np.ndenumerate(grid):
                ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="w", fontsize=8)
            ax.set_xticks(range(len(xs)), [str(x) for x in xs])
            ax.set_yticks(range(len(ys)), [str(y) for y in ys])
            ax.set_xlabel(varied[1])
            ax.set_ylabel(varied[0])
            fig.colorbar(image, ax=ax)
        else:
            ax.bar(range(len(rows)), [r[metric] for r in rows])
            ax.set_xticks(range(len(rows)), [r["run"] for r in rows], rotation=60, ha="right", fontsize=7)
        ax.set_title(metric)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
