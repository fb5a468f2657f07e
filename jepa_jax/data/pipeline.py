"""Grain input pipeline per host: sources -> shuffle -> mix -> host shard -> load -> batch -> masks -> prefetch.

Clips stay uint8 [B, T, H, W, C] on the host; masks are numpy int32 index arrays sampled once per batch (the
multi-block block size is shared by a batch, positions per sample). Iteration is infinite and step-based; the
iterator state is a small dict (`get_state`/`set_state`) that checkpoints can store.

Video files are decoded by `LoadVideoClip` inside the pipeline. A file that cannot be used is replaced by another
entry of the same manifest chosen deterministically from its index (so a resumed run sees the same stream), its
path is logged once, and the host batch carries `bad_files` [B, len(video.REASONS)] counts, which the training
loop totals on the host (they never go to the device).
"""

import logging
import threading
from typing import Iterator, Sequence

import grain
import jax
import numpy as np

from jepa_jax import masks as masks_lib
from jepa_jax.data import images, packed, sources as sources_lib, transforms, video
from jepa_jax.worlds import BallsWorldConfig, BallsWorldSource

# Enough distinct procedurally generated clips that a run never sees one twice.
WORLD_CLIPS = 2**31 - 1


def world_source(config, seed: int, num_clips: int = WORLD_CLIPS) -> BallsWorldSource:
    """The built-in bouncing-balls world described by config.data.world."""
    return BallsWorldSource(BallsWorldConfig(**config.data.world), num_clips=num_clips, seed=seed)


MOTION_TASKS = ("position", "velocity", "ahead")  # "motion": the three in one probe, scored per task
REGRESSION_TASKS = MOTION_TASKS + ("motion",)
CLASSIFICATION_TASKS = ("count", "collision", "labels")
PROBE_TASKS = REGRESSION_TASKS + CLASSIFICATION_TASKS


def scored_tasks(task: str) -> tuple[str, ...]:
    """The tasks a probe of `task` is scored on: MOTION_TASKS for "motion", else the task itself."""
    return MOTION_TASKS if task == "motion" else (task,)


def task_slices(task: str, num_targets: int) -> dict[str, slice]:
    """{scored task: its slice of the probe's [num_targets] outputs} (ProbeTargets concatenates them in order)."""
    names = scored_tasks(task)
    width = num_targets // len(names)
    return {name: slice(i * width, (i + 1) * width) for i, name in enumerate(names)}


class ProbeTargets:
    """Map: a world clip -> {"video": uint8 [T, S, S, 3], "targets": ...}, a built-in probe task's ground truth.

    Regression (float32 [2 N], the N balls ordered by their fixed colour, in standardised units):
      position:  where each ball is at the middle frame, (p - S/2) / (S/4);
      velocity:  its velocity at the middle frame, over the world's maximum initial speed;
      ahead:     where it will be `ahead` frames after the clip's last frame (a prediction), as position;
      motion:    position, velocity and ahead concatenated ([6 N]; one probe for the three, task_slices).
    Classification (an int32 class):
      count:     the number of balls minus one (the source varies it: `probe_source`);
      collision: 1 if two balls touch within `ahead` frames after the clip's last frame, else 0.
    For "ahead", "motion" and "collision" the source holds `ahead` frames more than the clip (`probe_source`)."""

    def __init__(self, task: str, num_frames: int, size: int, max_speed: float, ahead: int = 0):
        self.task, self.num_frames, self.size, self.max_speed, self.ahead = task, num_frames, size, max_speed, ahead

    def __call__(self, element: dict) -> dict:
        return {"video": element["video"][:self.num_frames], "targets": self.targets(element, self.task)}

    def targets(self, element: dict, task: str) -> np.ndarray:
        middle, last = self.num_frames // 2, self.num_frames - 1
        if task == "count":
            return np.int32(len(element["radius"]) - 1)
        if task == "collision":
            return np.int32(element["contacts"][last + 1:last + 1 + self.ahead].any())
        if task == "motion":
            return np.concatenate([self.targets(element, name) for name in MOTION_TASKS])
        if task == "velocity":
            return (element["velocity"][middle] / self.max_speed).reshape(-1).astype(np.float32)
        frame = middle if task == "position" else last + self.ahead
        return ((element["position"][frame] - self.size / 2) / (self.size / 4)).reshape(-1).astype(np.float32)


class WorldLabels:
    """Map: a world clip -> {"video", "probe_targets": float32 [4 N]}: each ball's position then velocity at the
    middle frame (ProbeTargets' units), the labels of the online probe (config.monitor.online_probe)."""

    def __init__(self, num_frames: int, size: int, max_speed: float):
        self.position = ProbeTargets("position", num_frames, size, max_speed)
        self.velocity = ProbeTargets("velocity", num_frames, size, max_speed)

    def __call__(self, element: dict) -> dict:
        labels = [self.position(element)["targets"], self.velocity(element)["targets"]]
        return {"video": element["video"], "probe_targets": np.concatenate(labels)}


def probe_source(config, seed: int, num_clips: int = WORLD_CLIPS) -> tuple[BallsWorldSource, ProbeTargets]:
    """(world clips of config.data.world, simulated `ahead` frames longer for "ahead" and "collision" and with 1 to
    num_balls balls for "count"; the map that turns each into a probe example of config.attentive.task)."""
    task = config.attentive
    ahead = task.ahead if task.task in ("ahead", "motion", "collision") else 0
    world = BallsWorldConfig(**{**config.data.world, "num_frames": config.data.world.num_frames + ahead})
    source = BallsWorldSource(world, num_clips=num_clips, seed=seed, vary_count=task.task == "count")
    return source, ProbeTargets(task.task, config.data.world.num_frames, world.size, world.max_speed, ahead)


def probe_world(config, seed: int, num_clips: int = WORLD_CLIPS) -> grain.MapDataset:
    """Built-in probe examples {"video", "targets"} of config.attentive.task, by index (probe_source)."""
    source, targets = probe_source(config, seed, num_clips)
    return grain.MapDataset.source(source).map(targets)


class BadFileLog:
    """Process-wide record of unusable files: each path is logged once; keeps examples for error messages."""

    def __init__(self):
        self._lock = threading.Lock()
        self.reasons: dict[str, str] = {}

    def record(self, err: video.VideoError) -> None:
        with self._lock:
            if err.path in self.reasons:
                return
            self.reasons[err.path] = err.reason
        logging.warning("skipping unusable file (replaced by another entry): %s", err)

    def examples(self, count: int = 3) -> list[str]:
        with self._lock:
            return [f"{path} ({reason})" for path, reason in list(self.reasons.items())[:count]]


BAD_FILES = BadFileLog()


class BadFileBudget:
    """Running totals of unusable files over all processes; too large a share of the files tried stops the run."""

    def __init__(self, max_fraction: float, min_files: int = 50):
        self.max_fraction, self.min_files = max_fraction, min_files
        self.bad = dict.fromkeys(video.REASONS, 0)
        self.clips = 0

    def update(self, bad_counts, clips: int) -> dict:
        """Add counts [len(video.REASONS)] of unusable files and the number of clips delivered meanwhile;
        returns the totals {"bad_files_total/<reason>": n}; raises past the budget."""
        for reason, count in zip(video.REASONS, bad_counts):
            self.bad[reason] += int(count)
        self.clips += clips
        bad = sum(self.bad.values())
        attempted = bad + self.clips
        if attempted >= self.min_files and bad > self.max_fraction * attempted:
            counts = ", ".join(f"{r}={n}" for r, n in self.bad.items() if n)
            raise RuntimeError(f"{bad} of {attempted} video files could not be used ({counts}), more than "
                               f"config.data.video.max_bad_fraction={self.max_fraction}; e.g. "
                               f"{', '.join(BAD_FILES.examples())}: fix or remove them from the manifest")
        return {f"bad_files_total/{r}": n for r, n in self.bad.items()}


class AugmentClip:
    """Element transform for pre-decoded clips: {"video": uint8 [F, H, W, 3], ...} -> {"video": [F, S, S, 3]}
    with the official train augmentation (random-resized crop shared by all frames, horizontal flip)."""

    def __init__(self, crop_size: int, scale=(0.3, 1.0), aspect_ratio=(0.75, 1.35), flip_p: float = 0.5):
        self.crop_size, self.flip_p = crop_size, flip_p
        self.scale, self.aspect_ratio = tuple(scale), tuple(aspect_ratio)

    def __call__(self, element: dict, rng: np.random.Generator) -> dict:
        return {"video": transforms.train_transform(element["video"], rng, self.crop_size, self.scale,
                                                    self.aspect_ratio, self.flip_p)}


def read_clip(path: str, frames_per_clip: int, rng: np.random.Generator | None, *, frame_step: int | None,
              target_fps: float | None, segments: int = 1, allow_clip_overlap: bool = False) -> np.ndarray:
    """uint8 [segments * T, H, W, 3]: `segments` clips of a video from equal partitions of it (official temporal
    sampling; rng None: the centred windows, allow_clip_overlap: evaluation sampling), concatenated in time, or an
    image file as a still clip of repeated frames. Raises video.VideoError for unusable files."""
    if images.is_image(path):
        return images.image_clip(path, frames_per_clip * segments)
    clips = video.load_clip(path, frames_per_clip, rng, frame_step=frame_step, target_fps=target_fps,
                            num_clips=segments, allow_clip_overlap=allow_clip_overlap)[0]
    return clips.reshape((-1,) + clips.shape[2:])


def read_usable(read, index: int, count: int, max_retries: int, what: str):
    """(read(i), bad_files [len(video.REASONS)] int32) for the first i that read does not reject with a VideoError:
    index, then entry (i * 2654435761 + attempt + 1) mod count, up to `max_retries` replacements. `what` names the
    entries in the error raised when all of them fail (e.g. "videos from ManifestSource(...)")."""
    bad = np.zeros(len(video.REASONS), np.int32)
    for attempt in range(max_retries + 1):
        try:
            return read(index), bad
        except video.VideoError as err:
            bad[video.REASONS.index(err.reason)] += 1
            BAD_FILES.record(err)
            index = (index * 2654435761 + attempt + 1) % count
    raise RuntimeError(f"{max_retries + 1} {what} in a row could not be used, e.g. "
                       f"{', '.join(BAD_FILES.examples())}: fix or remove them (see the logged paths)")


class LoadVideoClip:
    """Element transform {"path", "label", "index", "source"} -> {"video": uint8 [S T, C, C, 3], "bad_files": [R]},
    plus "targets": the int32 label of the entry read, with `with_targets` (labelled clips for probes).

    Decodes `segments` (S) clips of T frames from equal partitions of the video (official temporal sampling; an
    image file becomes a still clip of repeated frames), then applies AugmentClip to all of them at once. An
    unusable file is replaced by entry (index * 2654435761 + attempt + 1) mod N of the same source, up to
    `max_retries` times.
    """

    def __init__(self, sources: Sequence[sources_lib.ManifestSource], frames_per_clip: int, crop_size: int, *,
                 frame_step: int | None, target_fps: float | None, scale=(0.3, 1.0), aspect_ratio=(0.75, 1.35),
                 flip_p: float = 0.5, max_retries: int = 20, segments: int = 1, with_targets: bool = False):
        self.sources = tuple(sources)
        self.frames_per_clip, self.segments = frames_per_clip, segments
        self.frame_step, self.target_fps = frame_step, target_fps
        self.augment = AugmentClip(crop_size, scale, aspect_ratio, flip_p)
        self.max_retries, self.with_targets = max_retries, with_targets

    def __call__(self, element: dict, rng: np.random.Generator) -> dict:
        source = self.sources[element["source"]]

        def read(index: int) -> tuple[np.ndarray, int]:
            entry = source[index]
            return read_clip(entry["path"], self.frames_per_clip, rng, frame_step=self.frame_step,
                             target_fps=self.target_fps, segments=self.segments), entry["label"]

        (clip, label), bad = read_usable(read, element["index"], len(source), self.max_retries,
                                         f"videos from {source!r}")
        loaded = {**self.augment({"video": clip}, rng), "bad_files": bad}
        return {**loaded, "targets": np.int32(label)} if self.with_targets else loaded


class EvalViews:
    """Map for evaluation: a manifest entry {"path", "label", "index"} -> {"path", "video": uint8 [V, S T, C, C, 3]
    (S segments with the official evaluation sampling, centred and overlapping, concatenated in time; V spatial
    views, transforms.spatial_views), "targets": int32 label, "bad": ""}, or for an unusable file {"path", "video":
    None, "targets": label, "bad": the reason} (evaluation skips and counts it instead of reading another entry)."""

    def __init__(self, frames_per_clip: int, crop_size: int, *, frame_step: int | None, target_fps: float | None,
                 segments: int = 1, views: int = 1):
        self.frames_per_clip, self.crop_size, self.segments, self.views = frames_per_clip, crop_size, segments, views
        self.frame_step, self.target_fps = frame_step, target_fps

    def __call__(self, element: dict) -> dict:
        label = np.int32(element["label"])
        try:
            clip = read_clip(element["path"], self.frames_per_clip, None, frame_step=self.frame_step,
                             target_fps=self.target_fps, segments=self.segments, allow_clip_overlap=True)
        except video.VideoError as err:
            BAD_FILES.record(err)
            return {"path": element["path"], "video": None, "targets": label, "bad": err.reason}
        return {"path": element["path"], "video": transforms.spatial_views(clip, self.crop_size, self.views),
                "targets": label, "bad": ""}


def eval_batches(manifest: str, views: EvalViews, batch_size: int, skipped: list, *, num_threads: int = 2,
                 prefetch: int = 4) -> Iterator[tuple[np.ndarray, list[dict]]]:
    """Every usable entry of `manifest` once, in order, through `views`, in batches: (uint8 [batch_size, V, S T, C,
    C, 3], padded by repeating the last clip so that one compiled shape serves all batches; the batch's examples,
    without padding). Unusable files are appended to `skipped` as {"path", "reason"}."""
    examples = grain.MapDataset.source(sources_lib.ManifestSource(manifest)).map(views).to_iter_dataset(
        grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
    batch = []
    for example in examples:
        if example["bad"]:
            skipped.append({"path": example["path"], "reason": example["bad"]})
            continue
        batch.append(example)
        if len(batch) == batch_size:
            yield np.stack([e["video"] for e in batch]), batch
            batch = []
    if batch:
        yield np.stack([e["video"] for e in batch + batch[-1:] * (batch_size - len(batch))]), batch


def video_sources(manifests: Sequence[str]) -> list[sources_lib.ManifestSource]:
    return [sources_lib.ManifestSource(m) for m in manifests]


class SampleMasks:
    """Batch transform: adds ((context [B, Kc], target [B, Kt]), ...) drawn from the maskers."""

    def __init__(self, maskers: Sequence[masks_lib.MultiBlockMasker], stream: int):
        self.maskers = tuple(maskers)
        self.stream = stream  # decorrelates hosts, which otherwise draw the same per-index seeds

    def __call__(self, batch: dict, rng: np.random.Generator) -> dict:
        rng = np.random.default_rng([int(rng.integers(2**63)), self.stream])
        batch_size = batch["video"].shape[0]
        return {**batch, "masks": masks_lib.sample_masks(self.maskers, rng, batch_size)}


def batch_spec(frames: int, size: int, maskers: Sequence, batch_size: int, labels: int = 0) -> dict:
    """The device batch as ShapeDtypeStructs: {"video": uint8 [B, T, S, S, 3], "masks": ((context [B, Kc],
    target [B, Kt] or [B, n, Kt]), ...)}, one index pair per masker (what `make_train_dataset` yields, less the
    host-only `bad_files` counts), and "probe_targets" float32 [B, labels] when labels > 0 (WorldLabels)."""
    spec = {"video": jax.ShapeDtypeStruct((batch_size, frames, size, size, 3), np.uint8),
            "masks": tuple(tuple(jax.ShapeDtypeStruct(shape, np.int32) for shape in m.shapes(batch_size))
                           for m in maskers)}
    if labels:
        spec["probe_targets"] = jax.ShapeDtypeStruct((batch_size, labels), np.float32)
    return spec


def probe_batch_spec(frames: int, size: int, num_targets: int, batch_size: int, classes: bool = False) -> dict:
    """The device batch of a probe task as ShapeDtypeStructs: {"video": uint8 [B, T, S, S, 3], "targets": float32
    [B, K] (regression), or int32 [B] class indices with `classes`}."""
    targets = (jax.ShapeDtypeStruct((batch_size,), np.int32) if classes else
               jax.ShapeDtypeStruct((batch_size, num_targets), np.float32))
    return {"video": jax.ShapeDtypeStruct((batch_size, frames, size, size, 3), np.uint8), "targets": targets}


# The official probe training augmentation (vjepa2 evals/video_classification_frozen: random-resized crop, no flip;
# its RandAugment and random erasing are not applied here).
PROBE_SCALE, PROBE_ASPECT_RATIO = (0.08, 1.0), (0.75, 4 / 3)


def probe_dataset(config, local_batch_size: int) -> grain.IterDataset:
    """This process's infinite, shuffled stream of probe batches (probe_batch_spec): the built-in world's task, or
    for config.attentive.task="labels" labelled clips of config.data.video.manifests (config.attentive.segments
    clips per video, concatenated in time; PROBE_SCALE / PROBE_ASPECT_RATIO crops, no flip) with "bad_files"."""
    read = grain.ReadOptions(num_threads=config.data.num_threads, prefetch_buffer_size=config.data.prefetch)
    if config.attentive.task != "labels":
        source, targets = probe_source(config, seed=config.seed)
        examples = host_share(source, config.seed).map(targets)
        return examples.batch(local_batch_size, drop_remainder=True).to_iter_dataset(read)
    v = config.data.video
    sources = video_sources(v.manifests)
    load = LoadVideoClip(sources, v.frames_per_clip, v.crop_size, frame_step=v.frame_step or None,
                         target_fps=v.fps or None, scale=PROBE_SCALE, aspect_ratio=PROBE_ASPECT_RATIO, flip_p=0.0,
                         max_retries=v.max_retries, segments=config.attentive.segments, with_targets=True)
    examples = host_share(sources, config.seed, weights=v.weights or None, tag=True, load=load)
    return examples.batch(local_batch_size, drop_remainder=True).to_iter_dataset(read)


def trajectory_batch_spec(frames: int, size: int, action_dim: int, proprio_dim: int, batch_size: int) -> dict:
    """The device batch of trajectory windows as ShapeDtypeStructs: {"frames": uint8 [B, T, S, S, 3],
    "actions": float32 [B, T-1, A], "proprio": float32 [B, T, P]} (action t leads from frame t to frame t + 1)."""
    return {"frames": jax.ShapeDtypeStruct((batch_size, frames, size, size, 3), np.uint8),
            "actions": jax.ShapeDtypeStruct((batch_size, frames - 1, action_dim), np.float32),
            "proprio": jax.ShapeDtypeStruct((batch_size, frames, proprio_dim), np.float32)}


def _tag(source_id: int):
    return lambda element: {**element, "source": source_id}


def _video_only(element: dict) -> dict:
    return {"video": element["video"]}


def host_share(sources, seed: int, *, weights: Sequence[float] | None = None, tag: bool = False, load=None,
               process_index: int | None = None, process_count: int | None = None) -> grain.MapDataset:
    """This process's share of an infinite, shuffled stream of source elements (not yet batched): every
    process_count-th element from process_index on, so that the processes' k-th local batches together hold
    global elements [k G, (k + 1) G) at any process count (G the global batch).

    Each source is shuffled with seed + k and repeated; several are mixed with `weights` (default equal); `tag` adds
    "source": k to every element, for loaders that read from the source it came from. `load`, a grain random-map
    callable, runs on the global stream, so an element's random draws (crop, flip) follow its global position,
    not which process reads it.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    sources = [sources] if not isinstance(sources, (list, tuple)) else list(sources)
    datasets = [grain.MapDataset.source(source).seed(seed + k).shuffle().repeat() for k, source in
                enumerate(sources)]
    if tag:
        datasets = [d.map(_tag(k)) for k, d in enumerate(datasets)]
    dataset = datasets[0] if len(datasets) == 1 else grain.MapDataset.mix(datasets, weights)
    if load is not None:
        dataset = dataset.random_map(load)
    return dataset[process_index::process_count]


def make_train_dataset(sources, maskers, local_batch_size: int, seed: int, *, weights: Sequence[float] | None = None,
                       load=None, labels=None, process_index: int | None = None, process_count: int | None = None,
                       num_threads: int = 2, prefetch: int = 4) -> grain.IterDataset:
    """Infinite stream of host-local batches {"video": uint8 [b, T, H, W, C], "masks": (...), ...} for this process.

    Args:
      sources: one random-access source or several (mixed with `weights`, default equal).
      maskers: one multi-block masker per mask config.
      local_batch_size: clips per batch on this process.
      seed: shuffling, mixing, augmentation and mask seed.
      load: optional grain random-map callable (element, rng) -> {"video": ..., ...} that turns source elements
        into clips (e.g. LoadVideoClip); by default elements already hold "video".
      labels: optional map element -> {"video", ...labels} (e.g. WorldLabels) for sources whose elements hold
        "video"; by default only "video" is kept.
    """
    process_index = jax.process_index() if process_index is None else process_index
    dataset = host_share(sources, seed, weights=weights, tag=load is not None, load=load, process_index=process_index,
                         process_count=process_count)
    if load is None:
        dataset = dataset.map(labels or _video_only)
    dataset = dataset.batch(local_batch_size, drop_remainder=True)
    dataset = dataset.random_map(SampleMasks(maskers, stream=process_index))
    return dataset.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))


def train_dataset(config, maskers, local_batch_size: int) -> grain.IterDataset:
    """The training stream config.data describes (built-in world, video manifests or packed clips) for this
    process."""
    data = config.data
    common = dict(seed=config.seed, num_threads=data.num_threads, prefetch=data.prefetch)
    if data.source == "balls":
        world = world_source(config, seed=config.seed)
        labels = (WorldLabels(world.config.num_frames, world.config.size, world.config.max_speed)
                  if config.monitor.online_probe else None)
        return make_train_dataset(world, maskers, local_batch_size, labels=labels, **common)
    v = data.video
    if data.source == "packed":
        source = packed.PackedClipSource(data.packed_dir)
        return make_train_dataset(source, maskers, local_batch_size, load=AugmentClip(
            v.crop_size, v.scale, v.aspect_ratio, v.flip), **common)
    sources = video_sources(v.manifests)
    load = LoadVideoClip(sources, v.frames_per_clip, v.crop_size, frame_step=v.frame_step or None,
                         target_fps=v.fps or None, scale=v.scale, aspect_ratio=v.aspect_ratio, flip_p=v.flip,
                         max_retries=v.max_retries)
    return make_train_dataset(sources, maskers, local_batch_size, weights=v.weights or None, load=load, **common)
