"""`jepa-jax eval physics`: intuitive-physics scores of a model, its random init and a pixel baseline, per category.

Pairs are the built-in world's (worlds/physics_pairs.py, drawn at the model's frame size, twice its clip length)
or a manifest of the user's own: one `POSSIBLE_PATH IMPOSSIBLE_PATH CATEGORY` line per pair (spaces or commas;
paths relative to the manifest), the two videos of a pair of equal length and size. Writes physics.json,
physics_report.md and physics_surprise.png (surprise over time of example pairs, event frame marked) to `out`.
"""

import dataclasses
import json
import os

import numpy as np
import tqdm
from absl import logging

from jepa_jax import storage
from jepa_jax.data import transforms, video
from jepa_jax.evals import physics
from jepa_jax.worlds import BallsWorldConfig, physics_pairs


CHECK_WINDOWS = 64  # possible clips whose first window the prediction check reads


@dataclasses.dataclass
class PairSet:
    """Clips of N pairs: possible / impossible uint8 [N, T, H, W, 3], categories [N], event frames [N] (-1:
    unknown), names [N] (for the report)."""
    possible: np.ndarray
    impossible: np.ndarray
    categories: list
    events: np.ndarray
    names: list


def builtin_pairs(model: physics.SurpriseModel, num_pairs: int, seed: int, categories=physics_pairs.CATEGORIES):
    """num_pairs built-in pairs per category in the model's world (frame size, balls, occluder), 2 windows long;
    categories the world cannot stage (two-ball events in a one-ball world) are skipped with a warning."""
    world = BallsWorldConfig(**{**dict(model.config.data.world), "size": model.size, "num_frames": 2 * model.window})
    skipped = [c for c in categories if not physics_pairs.stageable(world, c)]
    if skipped:
        logging.warning("skipping %s: a %d-ball world cannot stage them", ", ".join(skipped), world.num_balls)
    staged = [c for c in categories if c not in skipped]
    pairs = physics_pairs.make_pairs(world, staged, num_pairs, seed)
    return PairSet(np.stack([p.possible.frames for p in pairs]), np.stack([p.impossible.frames for p in pairs]),
                   [p.category for p in pairs], np.array([p.event_frame for p in pairs]),
                   [f"{p.category}/{p.variant} seed {p.world_seed}" for p in pairs])


def read_pair_manifest(manifest: str) -> list[tuple[str, str, str]]:
    """(possible, impossible, category) per line; one-line errors naming the line for a malformed line, a missing
    file or an unknown category."""
    if not os.path.isfile(manifest):
        raise FileNotFoundError(f"pairs manifest {manifest!r} does not exist: give a file of 'POSSIBLE_PATH "
                                f"IMPOSSIBLE_PATH CATEGORY' lines")
    rows = []
    with open(manifest, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.replace(",", " ").split()
            if not fields:
                continue
            where = f"{manifest}:{number}"
            if len(fields) != 3:
                raise ValueError(f"{where}: expected 'POSSIBLE_PATH IMPOSSIBLE_PATH CATEGORY', got {line.strip()!r}")
            try:
                physics_pairs.check_category(fields[2])
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None
            paths = [p if os.path.isabs(p) else os.path.join(os.path.dirname(manifest), p) for p in fields[:2]]
            for path in paths:
                if not os.path.isfile(path):
                    raise FileNotFoundError(f"{where}: video {path!r} does not exist")
            rows.append((*paths, fields[2]))
    if not rows:
        raise ValueError(f"pairs manifest {manifest!r} lists no pairs")
    return rows


def manifest_pairs(manifest: str, size: int, window: int) -> PairSet:
    """The pairs of a manifest, every frame, resized (short side) and centre-cropped to size x size. Every header
    is checked (equal length and size within a pair, at least `window` frames) before any frame is decoded."""
    rows = read_pair_manifest(manifest)
    lengths = []
    for number, (possible, impossible, _) in enumerate(rows, start=1):
        a, b = video.probe(possible), video.probe(impossible)
        if (a.num_frames, a.height, a.width) != (b.num_frames, b.height, b.width):
            raise ValueError(f"pair {number} of {manifest}: {possible} is {a.num_frames} x {a.height}x{a.width} but "
                             f"{impossible} is {b.num_frames} x {b.height}x{b.width}: a pair needs equal videos")
        if a.num_frames < window:
            raise ValueError(f"pair {number} of {manifest}: {a.num_frames} frames, fewer than the model's "
                             f"{window}-frame window")
        lengths.append(a.num_frames)
    length = min(lengths)
    load = lambda path: transforms.center_crop(
        transforms.short_side_resize(video.decode_frames(path, np.arange(length)), size), size)
    clips = [(load(p), load(i)) for p, i, _ in tqdm.tqdm(rows, desc="decoding pairs", unit="pair")]
    return PairSet(np.stack([c[0] for c in clips]), np.stack([c[1] for c in clips]), [r[2] for r in rows],
                   np.full(len(rows), -1), [os.path.basename(r[1]) for r in rows])


def _scores(values: dict, pairs: PairSet, context_index: int, reduce: str) -> dict:
    """{category: category_scores} at one context length and reduction, from values {"possible": [N, C, W], ...}."""
    out = {}
    for category in dict.fromkeys(pairs.categories):
        chosen = np.array([c == category for c in pairs.categories])
        possible, impossible = (physics.per_clip(values[k][chosen, context_index], reduce)
                                for k in ("possible", "impossible"))
        out[category] = physics.category_scores(possible, impossible, reduce)
    return out


def evaluate(model_path: str, out: str, *, pairs: str = "", step: int | None = None, baseline: str = "",
             num_pairs: int = 64, seed: int = 0, context: int = 0, reduce: str = "max", stride: int = 2,
             batch_size: int = 32, random_inits: int = 1) -> dict:
    """Surprise-based scores of the model at `model_path`, the same architecture at random init, the model's
    features without its predictor (copy_last_slice) and, with `baseline`, a pixel-reconstruction run; per
    category. context: frames of context of the headline table
    (default: half the window); every context length and both reductions are in physics.json. random_inits: how
    many random-init draws (init seeds seed, seed + 1, ...; named "random_init", then "random_init_SEED"): one
    draw is a noisy floor, several show how far low-level image statistics alone move the scores."""
    storage.check_local(out, "--out")
    physics.per_clip(np.zeros(1), reduce)  # validate before anything loads
    for name, value in (("num_pairs", num_pairs), ("stride", stride), ("batch_size", batch_size),
                        ("random_inits", random_inits)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name}={value!r}: must be a positive integer")
    trained = physics.load_model(model_path, step)
    randoms = [physics.random_model(trained.config, seed + i, "random_init" + (f"_{seed + i}" if i else ""))
               for i in range(random_inits)]
    models = [trained, *randoms, dataclasses.replace(trained, name="copy_last_slice", copy_last_slice=True)]
    if baseline:
        other = physics.load_model(baseline)
        models.append(dataclasses.replace(other, name="pixels" if other.pixels else "baseline"))
    contexts = physics.context_lengths(trained)
    context = context or contexts[len(contexts) // 2]
    if context not in contexts:
        raise ValueError(f"--context {context}: choose one of {list(contexts)} (frames)")
    pair_set = (manifest_pairs(pairs, trained.size, trained.window) if pairs
                else builtin_pairs(trained, num_pairs, seed))
    values, results, checks = {}, {}, {}
    spread = max(1, len(pair_set.possible) // CHECK_WINDOWS)  # every category, not just the first
    first_windows = pair_set.possible[::spread][:CHECK_WINDOWS, :trained.window]
    for model in models:
        checks[model.name] = physics.prediction_check(model, first_windows, context)
        values[model.name] = {kind: physics.surprise(model, getattr(pair_set, kind), stride=stride,
                                                     batch_size=batch_size, progress=f"surprise: {model.name}, {kind}")
                              for kind in ("possible", "impossible")}
        results[model.name] = {f"{c}/{r}": _scores(values[model.name], pair_set, i, r)
                               for i, c in enumerate(contexts) for r in physics.REDUCTIONS}
    os.makedirs(out, exist_ok=True)
    summary = {"model": model_path, "pairs": pairs or "builtin", "num_pairs": len(pair_set.categories),
               "context": context, "reduce": reduce, "stride": stride, "window": trained.window,
               "scores": {name: r[f"{context}/{reduce}"] for name, r in results.items()}, "prediction_check": checks}
    with open(os.path.join(out, "physics.json"), "w", encoding="utf-8") as f:
        json.dump({**summary, "by_context": results}, f, indent=2)
    _write_markdown(summary, os.path.join(out, "physics_report.md"))
    _plot_examples(values[trained.name], pair_set, trained, context, stride, os.path.join(out, "physics_surprise.png"))
    return {**summary, "report": os.path.join(out, "physics_report.md")}


def _check_lines(checks: dict) -> list[str]:
    """The prediction check as a table: does each predictor use its context at all?"""
    any_check = next(iter(checks.values()))
    lines = ["## Does the predictor predict?", "",
             f"L1 to the hidden tokens' targets on the first window of {any_check['windows']} possible clips, "
             f"{any_check['context']} frames of context: the predictor, each hidden token's mean over those clips (a "
             "floor that ignores the context) and a copy of the last context time slice (a floor that assumes "
             "nothing moves); and the predictions' std across clips next to the targets'. A predictor no better "
             "than both floors cannot tell a possible future from an impossible one.", "",
             "| model | predictor | token mean | copy last slice | prediction std | target std |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, c in checks.items():
        lines.append(f"| {name} | {c['predictor']:.3f} | {c['token_mean']:.3f} | {c['copy_last_slice']:.3f} | "
                     f"{c['prediction_std']:.3f} | {c['target_std']:.3f} |")
    return lines + [""]


def _write_markdown(summary: dict, path: str) -> None:
    names = list(summary["scores"])
    categories = list(summary["scores"][names[0]])
    lines = [f"# Intuitive physics: {summary['model']}", "",
             f"Pairwise accuracy: how often the possible clip is less surprising than its impossible twin (ties "
             f"half; chance 0.5), per clip the {summary['reduce']} surprise over {summary['window']}-frame windows "
             f"every {summary['stride']} frames, {summary['context']} frames of context; bootstrap 95% interval "
             f"over pairs; AUROC over all clips of the category. Pairs: {summary['pairs']} "
             f"({summary['num_pairs']}). copy_last_slice: the trained model without its predictor, the last time "
             f"slice of the context (encoded alone by the target encoder) standing for every later one. "
             f"Every context length and the mean over time: physics.json.", "",
             "| category | pairs | " + " | ".join(f"{n} accuracy [95% CI] | {n} AUROC" for n in names) + " |",
             "|---|---:|" + "---:|" * 2 * len(names)]
    for category in categories:
        cells = []
        for name in names:
            s = summary["scores"][name][category]
            cells.append(f"{s['accuracy']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}] | {s['auroc']:.3f}")
        lines.append(f"| {category} | {summary['scores'][names[0]][category]['pairs']} | " + " | ".join(cells) + " |")
    lines += ["", "![surprise over time](physics_surprise.png)", ""] + _check_lines(summary["prediction_check"])
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def _plot_examples(values: dict, pairs: PairSet, model, context: int, stride: int, path: str) -> None:
    """Surprise over time of the first pair of each category: possible (solid) vs impossible (dashed)."""
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    firsts = {c: pairs.categories.index(c) for c in dict.fromkeys(pairs.categories)}
    fig, axes = plt.subplots(1, len(firsts), figsize=(3 * len(firsts), 3), squeeze=False)
    index = physics.context_lengths(model).index(context)
    for ax, (category, i) in zip(axes[0], firsts.items()):
        frames = physics.window_starts(pairs.possible.shape[1], model.window, stride) + context
        ax.plot(frames, values["possible"][i, index], "-o", color="C0", label="possible")
        ax.plot(frames, values["impossible"][i, index], "--s", color="C3", label="impossible")
        if pairs.events[i] >= 0:
            ax.axvline(pairs.events[i], color="gray", ls=":", label="event")
        ax.set_title(f"{category}\n{pairs.names[i]}", fontsize=8)
        ax.set_xlabel("first predicted frame")
    axes[0][0].set_ylabel("surprise (L1)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
