"""Environment trajectories for action-conditioned world models: collection, episode files, a windowed source.

`collect` writes one `episode_{i:06d}.npz` per episode (numpy's format, read with allow_pickle=False) holding
`frames` uint8 [L+1, H, W, 3], `actions` float32 [L, A], `proprio` float32 [L+1, S] and `states` float64
[L+1, D], where actions[t] took the environment from frame t to t+1. Episode i depends on (seed, i) only, so a run
can be interrupted, resumed or partly redone with the same result. `meta.json` records the settings and, once
collection finishes, the per-dimension mean/std of actions and proprio used for normalisation.

`TrajectorySource` serves windows of `num_frames` frames taken every `frameskip` env steps, with the frameskip env
actions between consecutive kept frames concatenated into one macro-action (as DINO-WM does); `trajectory_dataset`
streams host batches of them like the video pipeline.
"""

import concurrent.futures
import dataclasses
import functools
import json
import multiprocessing
import os
import threading
import time
import zipfile
import zlib

import grain
import numpy as np

from jepa_jax import envs, metrics, storage
from jepa_jax.data import exploration, pipeline, video

META = "meta.json"
# Settings that define what episode i is: a folder is only resumed or extended with the same ones.
SETTINGS = ("env", "image_size", "steps_per_episode", "seed", "policy_mix", "exploration")
FIELDS = ("frames", "actions", "proprio", "states")
# np.load parses .npy headers with ast.literal_eval, which CPython 3.11 cannot run in two threads at once
# (python/cpython#106905: "AST constructor recursion depth mismatch"); grain reads episodes from several threads.
_NPY_READ_LOCK = threading.Lock()
EPISODES_PER_TASK = 8  # episodes a collection worker runs per task (progress moves in these steps)


def episode_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"episode_{index:06d}.npz")


def episode_seeds(seed: int, index: int) -> tuple[int, np.random.Generator]:
    """(environment reset seed, policy generator) of episode `index`, from (seed, index) only."""
    env_sequence, policy_sequence = np.random.SeedSequence([seed, index]).spawn(2)
    return int(env_sequence.generate_state(1)[0]), np.random.default_rng(policy_sequence)


def expected_fields(meta: dict) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """field -> (dtype, shape) of an episode file described by meta."""
    steps, size = meta["steps_per_episode"], meta["image_size"]
    return {"frames": (np.dtype(np.uint8), (steps + 1, size, size, 3)),
            "actions": (np.dtype(np.float32), (steps, meta["action_dim"])),
            "proprio": (np.dtype(np.float32), (steps + 1, meta["proprio_dim"])),
            "states": (np.dtype(np.float64), (steps + 1, meta["state_dim"]))}


def read_episode(path: str, fields: dict) -> dict[str, np.ndarray]:
    """The arrays of an episode file, checked against fields {name: (dtype, shape)}.

    Raises video.VideoError for a missing, empty or unreadable (truncated, corrupt) file and ValueError for a
    readable file without a field or with one of another dtype or shape.
    """
    if not os.path.exists(path):
        raise video.VideoError(path, "missing")
    if os.path.getsize(path) == 0:
        raise video.VideoError(path, "empty")
    try:
        with _NPY_READ_LOCK, np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in fields if name in archive.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
        raise video.VideoError(path, "undecodable", str(err)) from err
    for name, (dtype, shape) in fields.items():
        want = f"{dtype} {list(shape)}"
        if name not in arrays:
            raise ValueError(f"{path}: no field {name!r} (expected {want}); collect it again with "
                             f"`jepa-jax data collect`")
        if arrays[name].dtype != dtype or arrays[name].shape != shape:
            raise ValueError(f"{path}: field {name!r} is {arrays[name].dtype} {list(arrays[name].shape)}, expected "
                             f"{want} (meta.json); collect it again with `jepa-jax data collect`")
    return arrays


def write_episode(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes the episode atomically: a temporary file, then os.replace."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)


def run_episode(env: envs.Env, policy, env_seed: int, steps: int) -> dict[str, np.ndarray]:
    """One episode of `steps` actions from env.reset(env_seed): {"frames", "actions", "proprio", "states"}."""
    observations, actions = [env.reset(env_seed)], []
    for _ in range(steps):
        actions.append(env.clip_action(policy(observations[-1])).astype(np.float32))
        observations.append(env.step(actions[-1]))
    return {"frames": np.stack([o.pixels for o in observations]), "actions": np.stack(actions),
            "proprio": np.stack([o.proprio for o in observations]),
            "states": np.stack([o.state for o in observations])}


def read_meta(directory: str) -> dict:
    path = os.path.join(directory, META)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file; collect trajectories with `jepa-jax data collect --env NAME "
                                f"--episodes N --out {directory}`")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_meta(directory: str, meta: dict) -> None:
    tmp = os.path.join(directory, f"{META}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    os.replace(tmp, os.path.join(directory, META))


def _check_resumable(directory: str, meta: dict) -> None:
    """A folder that already has meta.json must have been collected with the same settings and no more episodes."""
    if not os.path.isfile(os.path.join(directory, META)):
        return
    old = read_meta(directory)
    changed = [f"{key}={old.get(key)!r} (now {meta[key]!r})" for key in SETTINGS if old.get(key) != meta[key]]
    if changed:
        raise ValueError(f"{os.path.join(directory, META)} was collected with {', '.join(changed)}: rerun with its "
                         f"settings to resume, or use another --out")
    if old["episodes"] > meta["episodes"]:
        raise ValueError(f"{os.path.join(directory, META)} holds {old['episodes']} episodes: ask for at least "
                         f"{old['episodes']} (--episodes) or use another --out")


def _is_complete(path: str, fields: dict) -> bool:
    try:
        read_episode(path, fields)
    except (video.VideoError, ValueError):
        return False
    return True


def _moments(arrays: list[np.ndarray]) -> tuple[list[float], list[float]]:
    values = np.concatenate(arrays).astype(np.float64)
    return values.mean(0).tolist(), values.std(0).tolist()


def _collect_episodes(indices: list[int], *, env_name: str, out_dir: str, steps: int, seed: int, image_size: int,
                      policy_mix: float, env: envs.Env | None = None) -> int:
    """Runs and writes episodes `indices` (in a worker process: env None, made here); returns how many."""
    env = env or envs.make(env_name, image_size=image_size)
    for i in indices:
        env_seed, rng = episode_seeds(seed, i)
        _, policy = exploration.episode_policy(env, rng, policy_mix)
        write_episode(episode_path(out_dir, i), run_episode(env, policy, env_seed, steps))
    return len(indices)


def collect(env_name: str, episodes: int, out_dir: str, *, steps_per_episode: int = 100, seed: int = 0,
            image_size: int = 64, policy_mix: float = 0.5, workers: int = 1) -> dict:
    """Writes episodes 0..episodes-1 of `env_name` to out_dir (skipping complete ones) and meta.json.

    Episode i uses exploration.episode_policy (scripted with probability policy_mix, else a random walk) and
    seeds from episode_seeds(seed, i), so the files do not depend on `workers`, the number of processes that
    run episodes (in chunks of at most EPISODES_PER_TASK). Returns {"env", "out_dir", "episodes", "episodes_written",
    "episodes_skipped", "frames_written", "seconds"}.
    """
    storage.check_local(out_dir, "--out")
    if episodes < 1 or steps_per_episode < 1 or workers < 1 or not 0.0 <= policy_mix <= 1.0:
        raise ValueError(f"collect needs episodes >= 1, steps_per_episode >= 1, workers >= 1 and 0 <= policy_mix <= "
                         f"1 (got {episodes}, {steps_per_episode}, {workers}, {policy_mix})")
    started = time.perf_counter()
    env = envs.make(env_name, image_size=image_size)
    meta = {"env": env_name, "image_size": image_size, "action_dim": env.action_dim,
            "proprio_dim": env.proprio_dim, "state_dim": env.state_dim, "steps_per_episode": steps_per_episode,
            "episodes": episodes, "seed": seed, "policy_mix": policy_mix, "exploration": exploration.VERSION}
    os.makedirs(out_dir, exist_ok=True)
    _check_resumable(out_dir, meta)
    _write_meta(out_dir, meta)  # without statistics until every episode is there
    fields = expected_fields(meta)
    todo = [i for i in range(episodes) if not _is_complete(episode_path(out_dir, i), fields)]
    progress = metrics.Progress(episodes, initial_step=episodes - len(todo), unit="episode")
    size = max(1, min(EPISODES_PER_TASK, -(-len(todo) // workers)))  # every worker busy on small folders too
    chunks = [todo[k:k + size] for k in range(0, len(todo), size)]
    task = dict(env_name=env_name, out_dir=out_dir, steps=steps_per_episode, seed=seed, image_size=image_size,
                policy_mix=policy_mix)
    if workers == 1:
        for chunk in chunks:
            progress.update(count=_collect_episodes(chunk, env=env, **task))
    else:  # fresh interpreters: forking a process that holds JAX or simulator state is unsafe
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for written in pool.map(functools.partial(_collect_episodes, **task), chunks):
                progress.update(count=written)
    progress.close()
    small = {"actions": fields["actions"], "proprio": fields["proprio"]}
    data = [read_episode(episode_path(out_dir, i), small) for i in range(episodes)]
    meta["action_mean"], meta["action_std"] = _moments([d["actions"] for d in data])
    meta["proprio_mean"], meta["proprio_std"] = _moments([d["proprio"] for d in data])
    _write_meta(out_dir, meta)
    return {"env": env_name, "out_dir": out_dir, "episodes": episodes, "episodes_written": len(todo),
            "episodes_skipped": episodes - len(todo), "frames_written": len(todo) * (steps_per_episode + 1),
            "seconds": round(time.perf_counter() - started, 3)}


@dataclasses.dataclass(frozen=True)
class TrajectoryStats:
    """Per-dimension mean and std of env actions [A] and proprio [S]; macro-actions [..., k*A] (k env actions
    concatenated) use the per-step statistics tiled k times. A dimension with std 0 is only centred."""
    action_mean: np.ndarray
    action_std: np.ndarray
    proprio_mean: np.ndarray
    proprio_std: np.ndarray

    @classmethod
    def from_meta(cls, meta: dict) -> "TrajectoryStats":
        if "action_mean" not in meta:
            raise ValueError(f"meta.json of {meta['env']} trajectories has no statistics: collection did not finish; "
                             f"rerun the same `jepa-jax data collect` command")
        arrays = {name: np.asarray(meta[name], np.float32) for name in
                  ("action_mean", "action_std", "proprio_mean", "proprio_std")}
        for name in ("action_std", "proprio_std"):
            arrays[name] = np.where(arrays[name] > 0, arrays[name], np.float32(1))
        return cls(**arrays)

    def _tiled(self, mean, std, x):
        repeats = x.shape[-1] // mean.shape[0]
        return np.tile(mean, repeats), np.tile(std, repeats)

    def normalize_actions(self, actions):
        mean, std = self._tiled(self.action_mean, self.action_std, actions)
        return (actions - mean) / std

    def denormalize_actions(self, actions):
        mean, std = self._tiled(self.action_mean, self.action_std, actions)
        return actions * std + mean

    def normalize_proprio(self, proprio):
        return (proprio - self.proprio_mean) / self.proprio_std

    def denormalize_proprio(self, proprio):
        return proprio * self.proprio_std + self.proprio_mean


class TrajectorySource:
    """Random-access grain source of trajectory windows.

    source[i] -> {"frames": uint8 [T, H, W, 3], "actions": float32 [T-1, frameskip*A], "proprio": float32 [T, S],
    "states": float64 [T, D], "bad_files": int32 [len(video.REASONS)]}: window i starts at env step
    i % windows_per_episode of episode i // windows_per_episode and keeps every frameskip-th frame; actions and
    proprio are normalised with `normalizer` (meta.json). An unreadable episode file is replaced by another
    window (pipeline.read_usable: logged once, counted in bad_files).
    """

    def __init__(self, directory: str, num_frames: int, frameskip: int = 1, max_retries: int = 20):
        self.directory, self.num_frames, self.frameskip = directory, num_frames, frameskip
        self.max_retries = max_retries
        self.meta = read_meta(directory)
        self.normalizer = TrajectoryStats.from_meta(self.meta)
        self.fields = expected_fields(self.meta)
        span = (num_frames - 1) * frameskip
        if num_frames < 2 or frameskip < 1 or span > self.meta["steps_per_episode"]:
            raise ValueError(f"num_frames={num_frames} frames every frameskip={frameskip} steps do not fit the "
                             f"{self.meta['steps_per_episode']}-step episodes of {directory}: need num_frames >= 2, "
                             f"frameskip >= 1 and (num_frames - 1) * frameskip <= steps_per_episode")
        self.windows_per_episode = self.meta["steps_per_episode"] - span + 1

    def __len__(self) -> int:
        return self.meta["episodes"] * self.windows_per_episode

    def _window(self, index: int) -> dict:
        episode, start = divmod(index, self.windows_per_episode)
        arrays = read_episode(episode_path(self.directory, episode), self.fields)
        kept = slice(start, start + (self.num_frames - 1) * self.frameskip + 1, self.frameskip)
        actions = arrays["actions"][start:kept.stop - 1].reshape(self.num_frames - 1, -1)
        return {"frames": arrays["frames"][kept], "actions": self.normalizer.normalize_actions(actions),
                "proprio": self.normalizer.normalize_proprio(arrays["proprio"][kept]), "states": arrays["states"][kept]}

    def __getitem__(self, index: int) -> dict:
        window, bad = pipeline.read_usable(self._window, int(index), len(self), self.max_retries,
                                           f"trajectory files of {self.directory}")
        return {**window, "bad_files": bad}

    def __repr__(self) -> str:
        return (f"TrajectorySource(directory={self.directory!r}, num_frames={self.num_frames}, "
                f"frameskip={self.frameskip}, windows={len(self)})")


def _training_fields(element: dict) -> dict:
    return {name: element[name] for name in ("frames", "actions", "proprio", "bad_files")}


def trajectory_dataset(directory: str, num_frames: int, frameskip: int, local_batch_size: int, seed: int, *,
                       process_index: int | None = None, process_count: int | None = None, num_threads: int = 2,
                       prefetch: int = 4) -> grain.IterDataset:
    """Infinite stream of host-local batches {"frames": uint8 [b, T, H, W, 3], "actions": float32 [b, T-1, kA],
    "proprio": float32 [b, T, S], "bad_files": int32 [b, R] (host-only counts)} of TrajectorySource windows,
    shuffled with `seed` (pipeline.host_share); its iterator state checkpoints like the video pipeline's."""
    source = TrajectorySource(directory, num_frames, frameskip)
    dataset = pipeline.host_share(source, seed, process_index=process_index, process_count=process_count)
    dataset = dataset.map(_training_fields).batch(local_batch_size, drop_remainder=True)
    return dataset.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
