"""End-of-run report for built-in-world runs: probe tables (Markdown + JSON) and plots (PNG) in the run dir.

First table (probing.run_report): attentive probes (V-JEPA's frozen-encoder protocol; task "motion": position,
velocity and ahead) on the final encoder, the same architecture at random init and raw pixels, each next to the
ridge regression on the same tokens. The probe runs live in {run}/probes/ and resume when interrupted.
Second table, a learning curve: ridge probes on raw pixels, the encoder at random init (the run's own step-0
checkpoint) and at every saved probe-step checkpoint. Only the encoder weights of those checkpoints are read.
For `ema` runs the probed encoder is the EMA target encoder (the one released V-JEPA checkpoints recommend
downstream); for `sigreg` runs it is the single encoder.
"""

import json

import jax

from jepa_jax import checkpoint, config as config_lib, storage
from jepa_jax.data import pipeline
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


def world_report(config, workdir: str, attentive: list[dict] = ()) -> dict:
    """Ridge-probe the checkpoints at the probe steps of the run in `workdir`; write report.md, report.json and
    report.png, with the attentive probes' rows (probing.attentive_rows: {"name", TASK: {"score", "ridge_quad",
    ...}}) first and report_attentive.png where given.

    Returns {"attentive": [...], "rows": [{"name", "step", "position/time", "velocity/time", ...}], "paths": {...}}.
    """
    attentive = list(attentive)
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
    names = ("report.md", "report.json", "report.png") + (("report_attentive.png",) if attentive else ())
    paths = {name: storage.join(workdir, name) for name in names}
    if jax.process_index() == 0:
        _write_markdown(attentive, rows, config, paths["report.md"])
        storage.path(paths["report.json"]).write_text(json.dumps({"attentive": attentive, "ridge": rows}, indent=2))
        _plot_probes(rows, paths["report.png"])
        if attentive:
            _plot_attentive(attentive, paths["report_attentive.png"])
    return {"attentive": attentive, "rows": rows, "paths": paths}


def _write_markdown(attentive, rows, config, path: str) -> None:
    lines = [f"# Probe report ({config.objective}, {config.train.steps} steps)", ""]
    if attentive:
        a = config.attentive
        lines += [
            "## Attentive probes (final encoder)", "",
            f"Held-out R^2 on {config.probe.num_test} clips of the best of "
            f"{len(a.learning_rates) * len(a.weight_decays)} attentive probes (lr x weight decay, "
            f"{config.probe.attentive_steps} steps, depth {a.depth}), trained on the frozen tokens to read each "
            "ball's position and velocity at the middle frame and its position "
            f"{a.ahead} frames after the clip (`ahead`); `ridge`: ridge regression on the same tokens pooled into 2x2 "
            "quadrants per time slice. Probe runs: probes/.", "",
            "| encoder | " + " | ".join(f"{t} | {t} ridge" for t in pipeline.MOTION_TASKS) + " |",
            "|---|" + "---:|" * 2 * len(pipeline.MOTION_TASKS)]
        for row in attentive:
            lines.append(f"| {row['name']} | " + " | ".join(f"{row[t]['score']:.3f} | {row[t]['ridge_quad']:.3f}"
                                                            for t in pipeline.MOTION_TASKS) + " |")
        lines += ["", "![attentive probes](report_attentive.png)", "", "## Ridge probes over training", ""]
    columns = [f"{t}/{p}" for p in world_probe.POOLINGS for t in world_probe.TARGETS]
    lines += [
        f"Held-out ridge-regression R^2 on {config.probe.num_test} clips (trained on {config.probe.num_train}), "
        "targets at the middle frame. `time`: tokens pooled over space per time slice; `quad`: pooled into 2x2 "
        "quadrants per time slice. Higher is better; 1 is perfect.", "",
        "| encoder | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for row in rows:
        lines.append(f"| {row['name']} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    lines += ["", "![probe learning curve](report.png)", "", "![training curves](training.png)", ""]
    storage.path(path).write_text("\n".join(lines))


def _plot_attentive(attentive, path: str) -> None:
    """One panel per task: each encoder's attentive-probe R^2 (filled) beside its ridge R^2 (hatched)."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    fig, axes = plt.subplots(1, len(pipeline.MOTION_TASKS), figsize=(10, 3.5))
    for ax, task in zip(axes, pipeline.MOTION_TASKS):
        for i, row in enumerate(attentive):
            ax.bar(i - 0.2, row[task]["score"], 0.4, color=f"C{i}", label="attentive" if i == 0 else None)
            ax.bar(i + 0.2, row[task]["ridge_quad"], 0.4, color="none", edgecolor=f"C{i}", hatch="//",
                   label="ridge" if i == 0 else None)
        ax.set_xticks(range(len(attentive)), [row["name"] for row in attentive], fontsize=8)
        ax.set_title(f"{task}: held-out R^2")
        ax.set_ylim(min(0.0, *(row[task]["ridge_quad"] for row in attentive)), 1.0)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    storage.save_figure(fig, path)
    plt.close(fig)


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
    storage.save_figure(fig, path)
    plt.close(fig)
