"""Host data-pipeline throughput (`jepa-jax bench --what data [--data train.csv]`): clips/s per core for our
decoder and the official approach.

Without a manifest it writes 256p h264 test videos (10 s at 30 fps, keyframe every 250 frames, like typical
web video) to a temporary folder. Each measured clip is the V-JEPA 2 pretraining recipe on one core: 16 frames at
4 fps, random-resized crop to 224 shared by all frames, horizontal flip, short- and long-range masks for a batch
of one. Variants:
  ours_seek_decode:  PyAV, seek to the keyframe before the clip, decode only up to its last frame;
  packed:            read pre-decoded clips from ArrayRecord shards (`jepa-jax data pack`, short side 256);
  official_style:    decode every frame of the file (what decord's full-resolution get_batch costs through PyAV;
                     decord itself is unmaintained and not installed), then pick the clip's frames.
"""

import os
import tempfile
import time

import numpy as np

from jepa_jax import masks as masks_lib
from jepa_jax.data import packed, sources, transforms, video


def write_test_videos(directory: str, count: int = 4) -> list[str]:
    """256p (456x256) h264 mp4 files, 300 frames at 30 fps, with moving content so they compress realistically."""
    rng = np.random.default_rng(0)
    paths = []
    for k in range(count):
        base = rng.integers(0, 255, (256, 456 + 300, 3), dtype=np.uint8)
        frames = np.stack([base[:, i:i + 456] for i in range(300)])
        paths.append(video.write_video(os.path.join(directory, f"bench{k}.mp4"), frames, fps=30, gop=250))
    return paths


def decode_all_then_select(path: str, indices: np.ndarray) -> np.ndarray:
    """The official approach's cost: every frame decoded at full resolution, then the clip's frames picked."""
    import av  # pylint: disable=g-import-not-at-top
    with av.open(path) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack([frames[min(i, len(frames) - 1)] for i in indices])


def measure(paths: list[str], num_clips: int, variant: str, packed_source=None) -> float:
    """Clips per second on one core for the whole per-clip host work of `variant`."""
    rng = np.random.default_rng(0)
    maskers = [masks_lib.MultiBlockMasker((8, 14, 14), cfg) for cfg in masks_lib.VJEPA_MASKS]
    started = time.perf_counter()
    for n in range(num_clips):
        path = paths[n % len(paths)]
        if variant == "official_style":
            info = video.probe(path)
            step = video.frame_step_for_fps(info.fps, 4)
            clip = decode_all_then_select(path, video.clip_indices(info.num_frames, 16, step, rng)[0])
        elif variant == "packed":
            clip = packed_source[n % len(packed_source)]["video"]
        else:
            clip = video.load_clip(path, 16, rng, target_fps=4)[0][0]
        clip = transforms.train_transform(clip, rng, 224)
        masks_lib.sample_masks(maskers, rng, 1)
        assert clip.shape == (16, 224, 224, 3)
    return num_clips / (time.perf_counter() - started)


def host_pipeline(manifest: str | None = None, clips: int = 48) -> dict:
    """Clips/s per core of each variant over `clips` clips of `manifest` (default: generated test videos), and
    each variant's speed-up over the official style."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        path = manifest or os.path.join(tmp, "bench.csv")
        if manifest is None:
            with open(path, "w", encoding="utf-8") as f:
                f.write("".join(f"{p} 0\n" for p in write_test_videos(tmp)))
        paths = [e.path for e in sources.read_manifest(path)]
        packed.pack_manifest(path, os.path.join(tmp, "packed"), frames_per_clip=16, short_side=256, target_fps=4)
        packed_source = packed.PackedClipSource(os.path.join(tmp, "packed"))
        measure(paths, 2, "ours_seek_decode")  # warm-up (imports, codec init)
        rates = {"ours_seek_decode": measure(paths, clips, "ours_seek_decode"),
                 "packed_array_record": measure(paths, clips, "packed", packed_source),
                 "official_style_full_decode": measure(paths, max(4, clips // 4), "official_style")}
    return {"measure": "data", "clip": "16 frames @ 4 fps, 224 crop, flip, masks",
            "videos": manifest or "generated 456x256 h264, 300 frames @ 30 fps, keyframe every 250",
            "clips_per_s": {k: round(v, 2) for k, v in rates.items()},
            "speedup_vs_official": {k: round(v / rates["official_style_full_decode"], 2) for k, v in rates.items()}}
