"""Held-out scores of a probe run (objective "probe"): every member of its attentive-probe grid, and the best.

A probe run (`jepa-jax train --config.objective=probe`) trains G attentive probes (one per learning rate x weight
decay) on a frozen encoder through the engine. Here each member predicts the built-in task's targets of held-out
clips (the world seed config.probe.seed, which training never draws) and is scored by R^2 (ridge.r2_score: per
output, averaged); the best member is the probe's score, as V-JEPA 2 reports its best head. A ridge regression on
the same frozen tokens, pooled per time slice into 2 x 2 quadrants, is the linear reference column. Writes
probe.json and probe.md next to the run.
"""

import functools
import json
import os

import jax
import numpy as np

from jepa_jax import checkpoint, config as config_lib
from jepa_jax.data import pipeline
from jepa_jax.evals import ridge, world_probe
from jepa_jax.models import probe as probe_lib


def held_out_examples(config, num_clips: int) -> dict:
    """{"video": uint8 [M, T, S, S, 3], "targets": float32 [M, K]} of config.attentive.task, from held-out clips."""
    examples = pipeline.probe_world(config, seed=config.probe.seed, num_clips=num_clips)
    items = [examples[i] for i in range(num_clips)]
    return {key: np.stack([item[key] for item in items]) for key in ("video", "targets")}


def member_predictions(probe, probe_params, tokens: np.ndarray, batch_size: int) -> np.ndarray:
    """Every member's outputs [G, M, K] for frozen tokens [M, N, D] (probe_params leaves [G, ...])."""
    predict = jax.jit(jax.vmap(lambda head, x: probe.apply({"params": head}, x), in_axes=(0, None)))
    return np.concatenate([np.asarray(predict(probe_params, tokens[i:i + batch_size]))
                           for i in range(0, len(tokens), batch_size)], axis=1)


def probe_run_scores(run_dir: str, step: int | None = None) -> dict:
    """Score checkpoint `step` (default the newest) of the probe run in `run_dir` on config.probe.num_test
    held-out clips; the ridge reference trains on config.probe.num_train more. Writes probe.json and probe.md.

    Returns {"task", "step", "best": {"r2", "lr", "weight_decay"}, "members": [{"r2", "lr", "weight_decay"}, ...],
    "ridge_quad_r2"}.
    """
    config = config_lib.load_run(run_dir)
    if config.objective != "probe":
        raise ValueError(f"{run_dir} is a config.objective={config.objective!r} run, not a probe run: train one with "
                         f"--config.objective=probe")
    step = checkpoint.resolve_step(run_dir, step)
    checkpointer = checkpoint.Checkpointer(run_dir)
    params = checkpointer.restore_params(step)["params"]
    checkpointer.close()
    num_train, num_test = config.probe.num_train, config.probe.num_test
    examples = held_out_examples(config, num_train + num_test)
    encoder, batch = config_lib.build_encoder(config), config.probe.batch_size
    read = jax.jit(functools.partial(probe_lib.frozen_tokens, encoder, features=config.attentive.features))
    tokens = np.concatenate([np.asarray(read(params["encoder"], examples["video"][i:i + batch]))
                             for i in range(0, len(examples["video"]), batch)])
    targets = examples["targets"]
    predictions = member_predictions(config_lib.build_predictor(config), params["probe"], tokens[num_train:], batch)
    members = [{"r2": ridge.r2_score(targets[num_train:], p), "lr": lr, "weight_decay": wd}
               for p, (lr, wd) in zip(predictions, config_lib.probe_members(config))]
    quads = world_probe.pool_tokens(tokens, config_lib.token_grid(config))["quad"]
    reference = ridge.ridge_probe(quads[:num_train], targets[:num_train], quads[num_train:], targets[num_train:])
    probed = ("raw pixels" if config.attentive.features == "pixels" else config.attentive.encoder_from
              or "random init")
    result = {"task": config.attentive.task, "step": step, "encoder_from": probed,
              "best": max(members, key=lambda m: m["r2"]), "members": members, "ridge_quad_r2": reference["r2"]}
    if jax.process_index() == 0:
        with open(os.path.join(run_dir, "probe.json"), "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        _write_markdown(result, config, os.path.join(run_dir, "probe.md"))
    return result


def _write_markdown(result: dict, config, path: str) -> None:
    lines = [f"# Attentive probe: {result['task']} (step {result['step']}, encoder {result['encoder_from']})", "",
             f"Held-out R^2 on {config.probe.num_test} clips of each member of the grid (AdamW, cosine to 0 over "
             f"{config.train.steps} steps); ridge on quadrant-pooled tokens ({config.probe.num_train} train clips): "
             f"{result['ridge_quad_r2']:.3f}. Best member: R^2 {result['best']['r2']:.3f} at lr "
             f"{result['best']['lr']:g}, weight decay {result['best']['weight_decay']:g}.", "",
             "| lr | weight decay | R^2 |", "|---:|---:|---:|"]
    lines += [f"| {m['lr']:g} | {m['weight_decay']:g} | {m['r2']:.3f} |" for m in result["members"]]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
