"""End-of-run report for built-in-world runs: probe table (Markdown + JSON) and plots (PNG) in the run dir.

Rows: raw pixels, the encoder at random init (the run's own step-0 checkpoint) and at every saved probe-step
checkpoint, so the table is a learning curve. Only the encoder weights of those checkpoints are read (no optimizer
state, no train state or train step is built). For `ema` runs the probed encoder is the EMA target encoder (the one released
V-JEPA checkpoints recommend downstream); for `sigreg` runs it is the single encoder.
"""

import json
import os

import jax

from jepa_jax import checkpoint, config as config_lib
from jepa_jax.evals import world_probe

MAIN_POOLING = "time"


def backbone_params(weights: dict, objective: str):
    """The probed encoder of checkpoint weights {"params", "ema_params"}: the EMA target (ema) or the encoder."""
    return weights["ema_params"] if objective == "ema" else weights["params"]["encoder"]


def wanted_after_training(config, summary: dict) -> bool:
    """A finished training run gets the probe report if it asks for one, trained on the built-in world and is not
    itself a probe run (that one gets evals.probe's scores)."""
    return (config.probe.report and config.data.source == "balls" and config.objective != "probe"
            and summary["preempted_at"] is None)


def world_report(config, workdir: str) -> dict:
    """Probe the checkpoints at the probe steps of the run in `workdir`; write report.md, report.json, report.png.

    Returns {"rows": [{"name", "step", "position/time", "velocity/time", ...}], "paths": {...}}.
    """
    encoder, grid = config_lib.build_encoder(config), config_lib.token_grid(config)
    clips = world_probe.probe_clips(config)
    num_train = config.probe.num_train
    rows = []
    pixels = world_probe.pixel_tokens(clips["video"], config.model.patch_size, config.model.tubelet_size)
    rows.append({"name": "raw pixels", "step": None,
                 **world_probe.probe_scores(pixels, clips, grid, num_train)})
    checkpointer = checkpoint.Checkpointer(workdir)
    for step in [s for s in checkpointer.steps() if s in config_lib.probe_steps(config)]:
        weights = checkpointer.restore_params(step)
        tokens = world_probe.encoder_tokens(encoder, backbone_params(weights, config.objective), clips["video"],
                                            config.probe.batch_size)
        rows.append({"name": "random init" if step == 0 else f"trained, step {step}", "step": step,
                     **world_probe.probe_scores(tokens, clips, grid, num_train)})
    checkpointer.close()
    paths = {name: os.path.join(workdir, name) for name in ("report.md", "report.json", "report.png")}
    if jax.process_index() == 0:
        _write_markdown(rows, config, paths["report.md"])
        with open(paths["report.json"], "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
        _plot_probes(rows, paths["report.png"])
    return {"rows": rows, "paths": paths}


def _write_markdown(rows, config, path: str) -> None:
    columns = [f"{t}/{p}" for p in world_probe.POOLINGS for t in world_probe.TARGETS]
    lines = [
        f"# Probe report ({config.objective}, {config.train.steps} steps)", "",
        f"Held-out ridge-regression R^2 on {config.probe.num_test} clips (trained on {config.probe.num_train}), "
        "targets at the middle frame. `time`: tokens pooled over space per time slice; `quad`: pooled into 2x2 "
        "quadrants per time slice. Higher is better; 1 is perfect.", "",
        "| encoder | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for row in rows:
        lines.append(f"| {row['name']} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    lines += ["", "![probe learning curve](report.png)", "", "![training curves](training.png)", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def _plot_probes(rows, path: str) -> None:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    trained = [r for r in rows if r["step"]]
    baselines = {r["name"]: r for r in rows if not r["step"]}
    fig, axes = plt.subplots(1, len(world_probe.TARGETS), figsize=(10, 3.5))
    for ax, target in zip(axes, world_probe.TARGETS):
        for pooling, style in zip(world_probe.POOLINGS, ("-o", "-s")):
            key = f"{target}/{pooling}"
            ax.plot([r["step"] for r in trained], [r[key] for r in trained], style, label=f"trained ({pooling})")
            for (name, row), color in zip(baselines.items(), ("gray", "tab:red")):
                ax.axhline(row[key], color=color, ls="--" if pooling == MAIN_POOLING else ":",
                           label=f"{name} ({pooling})")
        ax.set_title(f"{target}: held-out R^2")
        ax.set_xlabel("training step")
        ax.set_ylim(top=1.0)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
