"""`jepa-jax data inspect`: what is in a manifest, how much of it decodes, and what the model will see.

Probes the headers of (up to `max_probe`, evenly spaced) entries, summarises durations, frame rates and
resolutions, counts unusable files by reason, and draws a PNG contact sheet of a few sampled, augmented clips
with their short-range mask overlaid (target tokens tinted red).
"""

import collections
import json
import os

import numpy as np

from jepa_jax import masks as masks_lib, storage
from jepa_jax.data import sources, transforms, video


def _quantiles(values) -> dict:
    if not values:
        return {}
    q = np.quantile(np.asarray(values, np.float64), [0.0, 0.5, 1.0])
    return {"min": round(float(q[0]), 3), "median": round(float(q[1]), 3), "max": round(float(q[2]), 3)}


def overlay_mask(clip: np.ndarray, target: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """Tint the target tokens of a clip red: clip uint8 [F, S, S, 3], target [K] flat indices -> [F, S, S, 3]."""
    frames, size = clip.shape[0], clip.shape[1]
    mask = masks_lib.mask_to_grid(target, grid)  # [T', H', W']
    mask = mask.repeat(frames // grid[0], 0).repeat(size // grid[1], 1).repeat(size // grid[2], 2)
    tinted = clip.astype(np.float32)
    tinted[mask] = 0.5 * tinted[mask] + 0.5 * np.array([255.0, 0.0, 0.0])
    return tinted.astype(np.uint8)


def inspect_manifest(manifest: str, out_dir: str, *, num_samples: int = 6, frames_per_clip: int = 16,
                     crop_size: int = 224, patch_size: int = 16, tubelet_size: int = 2, frame_step: int | None = None,
                     target_fps: float | None = 4.0, max_probe: int = 500, seed: int = 0) -> dict:
    """Summarise `manifest` and write `inspect.json` and `contact_sheet.png` to `out_dir`; returns the summary."""
    storage.check_local(out_dir, "--out")
    entries = sources.read_manifest(manifest)
    picked = entries if len(entries) <= max_probe else [entries[i] for i in
                                                         np.linspace(0, len(entries) - 1, max_probe).astype(int)]
    infos, bad, examples = {}, collections.Counter(), {}
    for entry in picked:
        try:
            infos[entry.path] = video.probe(entry.path)
        except video.VideoError as err:
            bad[err.reason] += 1
            examples.setdefault(err.reason, entry.path)
    sizes = collections.Counter(f"{i.width}x{i.height}" for i in infos.values())
    summary = {
        "manifest": manifest, "videos": len(entries), "probed": len(picked),
        "decodable_fraction": round(len(infos) / len(picked), 4), "bad_files": dict(bad), "bad_examples": examples,
        "labels": len({e.label for e in entries}),
        "duration_s": _quantiles([i.duration for i in infos.values()]),
        "fps": _quantiles([i.fps for i in infos.values()]),
        "frames": _quantiles([i.num_frames for i in infos.values()]),
        "portrait": sum(i.height > i.width for i in infos.values()),
        "resolutions": dict(sizes.most_common(5)),
    }
    os.makedirs(out_dir, exist_ok=True)
    summary["contact_sheet"] = _contact_sheet(list(infos), os.path.join(out_dir, "contact_sheet.png"), num_samples,
                                              frames_per_clip, crop_size, patch_size, tubelet_size, frame_step,
                                              target_fps, seed)
    with open(os.path.join(out_dir, "inspect.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary


def _contact_sheet(paths, out_path, num_samples, frames_per_clip, crop_size, patch_size, tubelet_size, frame_step,
                   target_fps, seed) -> str | None:
    """Rows: sampled clips after augmentation; columns: 4 frames spread over the clip, mask overlaid."""
    if not paths:
        return None
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng(seed)
    grid = (frames_per_clip // tubelet_size, crop_size // patch_size, crop_size // patch_size)
    masker = masks_lib.MultiBlockMasker(grid, masks_lib.SHORT_RANGE)
    chosen = [paths[i] for i in rng.choice(len(paths), min(num_samples, len(paths)), replace=False)]
    columns = np.linspace(0, frames_per_clip - 1, 4).astype(int)
    fig, axes = plt.subplots(len(chosen), 4, figsize=(8, 2 * len(chosen)), squeeze=False)
    for row, path in zip(axes, chosen):
        clip = video.load_clip(path, frames_per_clip, rng, frame_step=frame_step, target_fps=target_fps)[0][0]
        clip = transforms.train_transform(clip, rng, crop_size)
        _, target = masker(rng, 1)
        shown = overlay_mask(clip, target[0], grid)
        for ax, column in zip(row, columns):
            ax.imshow(shown[column])
            ax.set_axis_off()
        row[0].set_title(os.path.basename(path)[:40], fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(out_path, dpi=80)
    plt.close(fig)
    return out_path
