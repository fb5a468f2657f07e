"""`jepa-jax ablate jepa-vs-pixels`: does predicting representations beat predicting pixels, on your config?

    rows = ablate.jepa_vs_pixels(config, "runs/ablate")

Trains the config's encoder three ways under one budget (the same data, masks, steps, batch, optimiser and
predictor size; only config.objective differs): JEPA with an EMA target ("ema"), JEPA with SIGReg ("sigreg") and
the pixel-reconstruction baseline ("pixels"). Then probes each trained encoder, and the same architecture at random
init (the floor), with the attentive probe (probing.probe_run) on built-in tasks of the world. Writes
results.csv, results.md and results.png (one bar chart per task score, pretraining FLOPs and wall time) in the
workdir, one row per encoder. Finished runs are skipped, so rerunning the command resumes.
"""

import json
import os

import jax

from jepa_jax import config as config_lib, probing, storage, sweep
from jepa_jax.data import pipeline
from jepa_jax.train import loop

PRETRAINED = ("ema", "sigreg", "pixels")  # objectives trained under one budget
RANDOM_INIT = "random_init"
TASKS = ("motion",)  # position, velocity and ahead, one probe per encoder (data.pipeline.ProbeTargets)
PROBE_STEPS = 300


def pretrain(config, objective: str, workdir: str) -> dict:
    """Train config with `objective` in `workdir` unless it finished there; returns its summary."""
    if loop.is_finished(workdir):
        with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
            return json.load(f)
    run_config = config_lib.copy_config(config)
    run_config.objective = objective
    run_config.probe.report = False
    summary = loop.train(run_config, workdir)
    if summary["preempted_at"] is not None:
        raise RuntimeError(f"{workdir}: stopped at step {summary['preempted_at']}: rerun to resume")
    loop.save_summary(summary, workdir)
    return summary


def jepa_vs_pixels(config, workdir: str, *, tasks=TASKS, probe_steps: int | None = None) -> list[dict]:
    """Pretrain PRETRAINED under config's budget, probe them and the random-init floor on `tasks`; one row per
    encoder {"run", "encoder", "pretrain_flops", "pretrain_wall_s", TASK: the best probe member's held-out score
    (R^2, or top-1 for classification tasks; "motion" gives one per task it scores)}, also written to
    results.csv / .md / .png in `workdir`. Each probe trains `probe_steps` steps (default PROBE_STEPS, which keeps
    the four encoders' probes within the ablation's ~30 CPU-minute budget; the report's probes train longer)."""
    config_lib.validate(config)
    storage.check_local(workdir, "--workdir")
    if config.data.source != "balls":
        raise ValueError(f"ablate jepa-vs-pixels probes the built-in world's tasks: train on it too "
                         f"(config.data.source={config.data.source!r}; set --config.data.source=balls)")
    base = probing.builtin_protocol(config, probe_steps or PROBE_STEPS)
    rows = []
    for name in PRETRAINED + (RANDOM_INIT,):
        row = {"run": name, "encoder": name.replace("_", " "), "pretrain_flops": 0.0, "pretrain_wall_s": 0.0}
        model = os.path.join(workdir, name)
        if name != RANDOM_INIT:
            summary = pretrain(config, name, model)
            row["pretrain_flops"] = float(summary["flops_per_step_per_device"] * summary["steps"]
                                          * jax.device_count())
            row["pretrain_wall_s"] = float(summary["wall_s"])
        for task in tasks:
            probe_config = probing.builtin_probe_config(base, task, "" if name == RANDOM_INIT else model)
            scores = probing.probe_run(probe_config, os.path.join(workdir, "probes", f"{name}_{task}"))
            row.update({scored: float(score["score"]) for scored, score in scores["tasks"].items()})
        rows.append(row)
    columns = tuple(scored for task in tasks for scored in pipeline.scored_tasks(task))
    sweep.write_results(rows, columns + ("pretrain_flops", "pretrain_wall_s"), workdir)
    return rows
