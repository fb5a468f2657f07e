"""Packed clips: a manifest turned into ArrayRecord shards of pre-decoded, resized uint8 clips.

For clusters where video decoding is the bottleneck. Each record is an `.npz` archive (numpy's own format, read
with allow_pickle=False, so loading never unpickles) holding `video` uint8 [F, H, W, 3] and `label` int64. Clips
are decoded with the official temporal sampling (a centred window, or `clips_per_video` random ones) and resized
so the short side is `short_side`; random-resized cropping then happens at training time as for raw videos.
Unusable files are skipped and counted; `pack.json` in the output folder records the settings and the counts.
"""

import io
import json
import os

import numpy as np
from array_record.python import array_record_module

from jepa_jax import storage
from jepa_jax.data import sources as sources_lib, transforms, video

SHARD_PATTERN = "clips-{index:05d}-of-{count:05d}.array_record"


def encode_record(clip: np.ndarray, label: int) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, video=clip, label=np.int64(label))
    return buffer.getvalue()


def decode_record(record: bytes) -> dict:
    """bytes -> {"video": uint8 [F, H, W, 3], "label": int}; never unpickles."""
    with np.load(io.BytesIO(record), allow_pickle=False) as archive:
        return {"video": archive["video"], "label": int(archive["label"])}


def pack_manifest(manifest: str, out_dir: str, *, frames_per_clip: int, short_side: int,
                  frame_step: int | None = None, target_fps: float | None = None, clips_per_video: int = 1,
                  num_shards: int = 1, seed: int = 0) -> dict:
    """Decode every video of `manifest` into `num_shards` ArrayRecord files under `out_dir`.

    Returns the summary written to `out_dir/pack.json`: {"clips", "videos", "bad_files": {reason: n},
    "skipped": [path, ...], "shards": [...], and the settings}.
    """
    storage.check_local(out_dir, "--out")
    entries = sources_lib.read_manifest(manifest)
    os.makedirs(out_dir, exist_ok=True)
    shards = [os.path.join(out_dir, SHARD_PATTERN.format(index=i, count=num_shards)) for i in range(num_shards)]
    writers = [array_record_module.ArrayRecordWriter(path, "group_size:1") for path in shards]
    rng = np.random.default_rng(seed) if clips_per_video > 1 else None
    bad = dict.fromkeys(video.REASONS, 0)
    skipped, clips = [], 0
    try:
        for entry in entries:
            try:
                windows, _ = video.load_clip(entry.path, frames_per_clip, rng, frame_step=frame_step,
                                             target_fps=target_fps, num_clips=clips_per_video)
            except video.VideoError as err:
                bad[err.reason] += 1
                skipped.append(entry.path)
                continue
            for window in windows:
                record = encode_record(transforms.short_side_resize(window, short_side), entry.label)
                writers[clips % num_shards].write(record)
                clips += 1
    finally:
        for writer in writers:
            writer.close()
    summary = {"manifest": manifest, "videos": len(entries), "clips": clips, "bad_files": bad, "skipped": skipped,
               "shards": [os.path.basename(s) for s in shards], "frames_per_clip": frames_per_clip,
               "short_side": short_side, "frame_step": frame_step, "target_fps": target_fps,
               "clips_per_video": clips_per_video}
    with open(os.path.join(out_dir, "pack.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary


class PackedClipSource:
    """Random-access source over packed shards: source[i] -> {"video": uint8 [F, H, W, 3], "label": int}.

    `directory` may be a bucket folder (gs://...): its shards are copied once to ~/.cache/jepa_jax/buckets."""

    def __init__(self, directory: str):
        storage.check(directory, "packed_dir")
        shards = storage.glob(storage.join(directory, "clips-*-of-*.array_record"))
        if not shards:
            raise FileNotFoundError(f"no packed shards (clips-*-of-*.array_record) in {directory!r}: create them "
                                    f"with `jepa-jax data pack MANIFEST --out {directory}`")
        self.shards = storage.local_copies(shards)  # ArrayRecord reads local files: bucket shards are copied once
        import grain  # pylint: disable=g-import-not-at-top
        self.directory = directory
        self._records = grain.sources.ArrayRecordDataSource(self.shards)

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        return decode_record(self._records[index])

    def __repr__(self) -> str:
        return f"PackedClipSource(directory={self.directory!r}, shards={len(self.shards)}, clips={len(self)})"
