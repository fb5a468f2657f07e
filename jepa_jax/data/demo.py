"""A labelled demo video set: one ball, always the same colour, whose motion is the class (`jepa-jax data demo`).

Classes (MOTIONS): back and forth horizontally, back and forth vertically, a clockwise circle, a counter-clockwise
circle. Only the motion tells them apart (the last two only by the order of the frames), never the colour or the
place: centre, amplitude, period and phase are random per video. Videos are H.264 mp4 files, wider than tall, so
the multi-view evaluation crops (transforms.spatial_views) see different parts; the manifests are train.csv and
val.csv ('PATH LABEL' lines, paths relative to the manifest).
"""

import os

import numpy as np

from jepa_jax import storage
from jepa_jax.data import video
from jepa_jax.worlds import BallsWorldConfig, render

MOTIONS = ("horizontal", "vertical", "clockwise", "counterclockwise")


def motion_path(label: int, num_frames: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Ball centres [T, 2] (x, y in px) of motion class `label`, inside a height x width frame."""
    amplitude = rng.uniform(0.15, 0.3) * min(height, width)
    centre = np.array([rng.uniform(amplitude + 6, width - amplitude - 6),
                       rng.uniform(amplitude + 6, height - amplitude - 6)])
    angle = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(num_frames) / rng.uniform(12, 24)
    unit = {0: (np.cos(angle), 0 * angle), 1: (0 * angle, np.cos(angle)),
            2: (np.cos(angle), np.sin(angle)), 3: (np.cos(angle), -np.sin(angle))}[label]
    return centre + amplitude * np.stack(unit, axis=-1)


def render_motion(label: int, num_frames: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [T, height, width, 3]: the ball of the built-in world (radius 5) moving along motion_path."""
    side = max(height, width)
    frames = render(motion_path(label, num_frames, height, width, rng)[:, None], np.array([5.0]),
                    BallsWorldConfig(size=side, num_balls=1))
    return frames[:, :height, :width]


def write_motion_videos(out: str, *, num_train: int = 64, num_val: int = 32, num_frames: int = 48,
                        height: int = 64, width: int = 80, fps: float = 8.0, seed: int = 0) -> dict:
    """Writes num_train + num_val videos (classes in turn) to `out`, with train.csv and val.csv.

    Returns {"train": train.csv, "val": val.csv, "classes": MOTIONS, "videos": count}.
    """
    storage.check_local(out, "--out")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    manifests = {}
    for split, count in (("train", num_train), ("val", num_val)):
        lines = []
        for i in range(count):
            label = i % len(MOTIONS)
            name = f"{split}_{i:05d}_{MOTIONS[label]}.mp4"
            video.write_video(os.path.join(out, name), render_motion(label, num_frames, height, width, rng), fps)
            lines.append(f"{name} {label}\n")
        manifests[split] = os.path.join(out, f"{split}.csv")
        with open(manifests[split], "w", encoding="utf-8") as f:
            f.writelines(lines)
    return {**manifests, "classes": list(MOTIONS), "videos": num_train + num_val}
