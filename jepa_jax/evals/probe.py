"""Held-out scores of a probe run (objective "probe"): every member of its attentive-probe grid, and the best.

A probe run (`jepa-jax train --config.objective=probe`, or `jepa-jax eval probe`) trains G attentive probes (one per
learning rate x weight decay) on a frozen encoder through the engine. Here each member is scored on held-out data
and the best member is the probe's score, as V-JEPA 2 reports its best head:
- built-in tasks: clips of the world seed config.probe.seed, which training never draws; regression tasks are
  scored by R^2 (ridge.r2_score: per output, averaged), classification tasks by top-1 / top-5 accuracy. A ridge
  regression on the same frozen tokens, pooled per time slice into 2 x 2 quadrants, is the linear reference.
- labelled manifests (task "labels"): every clip of config.attentive.val_manifest, S segments x V spatial views
  (pipeline.EvalViews); each view goes through the probe and the views' softmax outputs are averaged (the
  official multi-view protocol); top-1 / top-5. Unusable files are skipped and counted.
Writes probe.json and probe.md next to the run.
"""

import functools
import json

import jax
import numpy as np
import tqdm

from jepa_jax import checkpoint, config as config_lib, storage
from jepa_jax.data import pipeline
from jepa_jax.evals import ridge, world_probe
from jepa_jax.models import probe as probe_lib


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the k highest scores: [M, C] x int [M] -> float."""
    top = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def classification_scores(scores: np.ndarray, labels: np.ndarray) -> dict:
    """{"top1", "top5"} of class scores [M, C] (top-5 is top-min(5, C))."""
    return {"top1": topk_accuracy(scores, labels, 1), "top5": topk_accuracy(scores, labels, min(5, scores.shape[-1]))}


def view_averaged_probabilities(logits) -> np.ndarray:
    """The softmax of each view's logits, averaged over the views: [..., V, C] -> [..., C]."""
    return np.asarray(jax.nn.softmax(np.asarray(logits, np.float32), axis=-1).mean(axis=-2))


def member_predictions(probe, probe_params, tokens: np.ndarray, batch_size: int) -> np.ndarray:
    """Every member's outputs [G, M, K] for frozen tokens [M, N, D] (probe_params leaves [G, ...])."""
    predict = _member_outputs(probe)
    return np.concatenate([np.asarray(predict(probe_params, tokens[i:i + batch_size]))
                           for i in range(0, len(tokens), batch_size)], axis=1)


def _member_outputs(probe):
    return jax.jit(jax.vmap(lambda head, x: probe.apply({"params": head}, x), in_axes=(0, None)))


def _token_reader(config):
    """jitted (encoder params, uint8 clips [B, S T, H, W, 3]) -> the tokens the probe reads [B, S N, D]."""
    return jax.jit(functools.partial(probe_lib.frozen_tokens, config_lib.build_encoder(config),
                                     features=config.attentive.features, segments=config.attentive.segments,
                                     out_layers=tuple(config.attentive.out_layers)))


def held_out_examples(config, num_clips: int) -> dict:
    """{"video": uint8 [M, T, S, S, 3], "targets": [M, ...]} of config.attentive.task, from held-out clips."""
    examples = pipeline.probe_world(config, seed=config.probe.seed, num_clips=num_clips)
    items = [examples[i] for i in range(num_clips)]
    return {key: np.stack([item[key] for item in items]) for key in ("video", "targets")}


def _score_members(config, outputs: np.ndarray, targets: np.ndarray) -> list[dict]:
    """One {"lr", "weight_decay", metric: value, ...} per member from its outputs [G, M, K]. Regression members also
    carry each scored task's R^2 under its name (pipeline.task_slices); their "r2" is the mean over those tasks."""
    if config_lib.probe_classes(config):
        scores = [classification_scores(o, targets) for o in outputs]
    else:
        slices = pipeline.task_slices(config.attentive.task, targets.shape[-1])
        per_task = [{name: ridge.r2_score(targets[:, s], o[:, s]) for name, s in slices.items()} for o in outputs]
        scores = [{"r2": float(np.mean(list(tasks.values()))), **tasks} for tasks in per_task]
    return [{**score, "lr": lr, "weight_decay": wd} for score, (lr, wd) in zip(scores, config_lib.probe_members(config))]


def _ridge_references(config, quads: np.ndarray, targets: np.ndarray) -> dict:
    """{scored task: the ridge reference's held-out score}, ridge regression on quadrant-pooled tokens [M, F]: R^2
    per regression task, or for classification the accuracy of its largest output on one-hot classes."""
    num_train = config.probe.num_train
    classes = config_lib.probe_classes(config)
    if classes:
        onehot = np.eye(classes)[targets]
        return {config.attentive.task: ridge.ridge_probe(quads[:num_train], onehot[:num_train], quads[num_train:],
                                                         onehot[num_train:], score=ridge.onehot_accuracy)["score"]}
    return {name: ridge.ridge_probe(quads[:num_train], targets[:num_train, s], quads[num_train:],
                                    targets[num_train:, s])["score"]
            for name, s in pipeline.task_slices(config.attentive.task, targets.shape[-1]).items()}


def _quadrant_features(config, tokens: np.ndarray) -> np.ndarray:
    """The ridge reference's features: tokens [M, L N, D] (L encoder layers, config.attentive.out_layers) pooled
    per time slice into 2 x 2 quadrants, layer by layer, concatenated: [M, L * T' * 4 * D]."""
    layers = max(1, len(config.attentive.out_layers))
    per_layer = tokens.reshape((len(tokens), layers, -1, tokens.shape[-1]))
    grid = config_lib.token_grid(config)
    return np.concatenate([world_probe.pool_tokens(per_layer[:, layer], grid)["quad"] for layer in range(layers)],
                          axis=-1)


def _world_scores(config, params) -> dict:
    """Members' scores on held-out clips of the built-in world, and the ridge reference on quadrant-pooled tokens."""
    num_train, num_test = config.probe.num_train, config.probe.num_test
    examples = held_out_examples(config, num_train + num_test)
    read, batch = _token_reader(config), config.probe.batch_size
    tokens = np.concatenate([np.asarray(read(params["encoder"], examples["video"][i:i + batch]))
                             for i in range(0, len(examples["video"]), batch)])
    targets = examples["targets"]
    outputs = member_predictions(config_lib.build_predictor(config), params["probe"], tokens[num_train:], batch)
    references = _ridge_references(config, _quadrant_features(config, tokens), targets)
    classes = config_lib.probe_classes(config)
    return {"members": _score_members(config, outputs, targets[num_train:]), "ridge": references,
            "ridge_quad": float(np.mean(list(references.values()))), "num_test": num_test,
            "chance": _chance(targets[num_train:]) if classes else None, "bad_files": 0}


def labelled_scores(config, params) -> dict:
    """Members' top-1 / top-5 on config.attentive.val_manifest, segments x views per clip, views softmax-averaged."""
    a, v = config.attentive, config.data.video
    views = pipeline.EvalViews(v.frames_per_clip, v.crop_size, frame_step=v.frame_step or None,
                               target_fps=v.fps or None, segments=a.segments, views=a.views)
    read, predict = _token_reader(config), _member_outputs(config_lib.build_predictor(config))
    batches = pipeline.eval_batches(a.val_manifest, views, max(1, config.probe.batch_size // a.views), skipped := [],
                                    num_threads=config.data.num_threads, prefetch=config.data.prefetch)
    probabilities, labels = [], []
    for video, examples in tqdm.tqdm(batches, desc="probe eval", unit="batch"):  # video [E, V, S T, C, C, 3]
        clips = video.reshape((-1,) + video.shape[2:])
        logits = np.asarray(predict(params["probe"], read(params["encoder"], clips)))  # [G, E V, K]
        logits = logits.reshape((len(logits), len(video), a.views, -1))[:, :len(examples)]
        probabilities.append(view_averaged_probabilities(logits))
        labels.extend(e["targets"] for e in examples)
    if not labels:
        raise RuntimeError(f"no clip of {a.val_manifest!r} could be read ({len(skipped)} unusable files, e.g. "
                           f"{skipped[:3]})")
    labels = np.asarray(labels)
    return {"members": _score_members(config, np.concatenate(probabilities, axis=1), labels), "ridge": {},
            "ridge_quad": None, "num_test": len(labels), "chance": _chance(labels), "bad_files": len(skipped)}


def _chance(labels: np.ndarray) -> float:
    """Accuracy of always answering the most frequent class."""
    return float(np.bincount(labels).max() / len(labels))


def probe_run_scores(run_dir: str, step: int | None = None) -> dict:
    """Score checkpoint `step` (default the newest) of the probe run in `run_dir`; writes probe.json and probe.md.

    Returns {"task", "metric" ("r2" or "top1"), "step", "encoder_from", "best": {metric, ..., "lr",
    "weight_decay"}, "tasks": {scored task: {"score" (its best member's), "lr", "weight_decay", "ridge_quad"}},
    "members": [...], "ridge_quad" (the ridge reference's score, built-in tasks; the tasks' mean for "motion"),
    "num_test", "chance" (the most frequent class's share, classification), "bad_files" (unusable files skipped)}.
    """
    config = config_lib.load_run(run_dir)
    if config.objective != "probe":
        raise ValueError(f"{run_dir} is a config.objective={config.objective!r} run, not a probe run: train one with "
                         f"--config.objective=probe")
    if config.attentive.task == "labels" and not config.attentive.val_manifest:
        raise ValueError(f"{run_dir}: config.attentive.val_manifest is empty: give the labelled manifest to score on")
    step = checkpoint.resolve_step(run_dir, step)
    checkpointer = checkpoint.Checkpointer(run_dir)
    params = checkpointer.restore_params(step)["params"]
    checkpointer.close()
    scores = labelled_scores(config, params) if config.attentive.task == "labels" else _world_scores(config, params)
    return write_scores(scores, config, run_dir, step)


def write_scores(scores: dict, config, directory: str, step: int | None) -> dict:
    """The probe result of `scores` (labelled_scores or the built-in tasks'), with the task, its metric and the
    best member, written to probe.json and probe.md in `directory`; returns it."""
    metric = "top1" if config_lib.probe_classes(config) else "r2"
    probed = ("raw pixels" if config.attentive.features == "pixels" else config.attentive.encoder_from
              or "random init")
    scores = dict(scores)
    members, ridge_scores = scores["members"], scores.pop("ridge")
    tasks = {}
    for task in pipeline.scored_tasks(config.attentive.task):  # a classification task is scored by its metric
        key = task if metric == "r2" else metric
        best = max(members, key=lambda m, key=key: m[key])
        tasks[task] = {"score": best[key], "lr": best["lr"], "weight_decay": best["weight_decay"],
                       "ridge_quad": ridge_scores.get(task)}
    result = {"task": config.attentive.task, "metric": metric, "step": step, "encoder_from": probed,
              "best": max(members, key=lambda m: m[metric]), "tasks": tasks, **scores}
    if jax.process_index() == 0:
        storage.path(directory).mkdir(parents=True, exist_ok=True)
        (storage.path(directory) / "probe.json").write_text(json.dumps(result, indent=2))
        _write_markdown(result, config, storage.join(directory, "probe.md"))
    return result


def _write_markdown(result: dict, config, path: str) -> None:
    metric, best, a = result["metric"], result["best"], config.attentive
    if a.task == "labels":
        data = (f"{result['num_test']} clips of {a.val_manifest} ({a.segments} segments x {a.views} views, softmax "
                f"averaged over the views; {result['bad_files']} unusable files skipped)")
    else:
        data = f"{result['num_test']} held-out clips of the built-in world"
    trained = "imported" if result["step"] is None else f"step {result['step']}"
    schedule = "" if result["step"] is None else f" (AdamW, cosine to 0 over {config.train.steps} steps)"
    lines = [f"# Attentive probe: {result['task']} ({trained}, encoder {result['encoder_from']})", "",
             f"{metric} of each member of the grid{schedule} on {data}. "
             f"Best member: {metric} {best[metric]:.3f} at lr {best['lr']:g}, weight decay "
             f"{best['weight_decay']:g}."]
    if result["ridge_quad"] is not None:
        lines.append(f"Ridge regression on quadrant-pooled tokens ({config.probe.num_train} train clips): "
                     f"{metric} {result['ridge_quad']:.3f}.")
    if result["chance"] is not None:
        lines.append(f"Chance (always the most frequent class): {result['chance']:.3f}.")
    if len(result["tasks"]) > 1:
        lines.append("Per task, best member and ridge: " + "; ".join(
            f"{task} {t['score']:.3f} (lr {t['lr']:g}, weight decay {t['weight_decay']:g}; ridge "
            f"{t['ridge_quad']:.3f})" for task, t in result["tasks"].items()) + f"; `{metric}` and the ridge above "
            "are the means over these tasks.")
    columns = ["top1", "top5"] if metric == "top1" else ["r2"] + [t for t in result["tasks"] if t != a.task]
    lines += ["", "| lr | weight decay | " + " | ".join(columns) + " |", "|---:|---:|" + "---:|" * len(columns)]
    lines += [f"| {m['lr']:g} | {m['weight_decay']:g} | " + " | ".join(f"{m[c]:.3f}" for c in columns) + " |"
              for m in result["members"]]
    storage.path(path).write_text("\n".join(lines) + "\n")
