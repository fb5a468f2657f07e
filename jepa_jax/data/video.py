"""Video files -> uint8 RGB clips with PyAV, using the official V-JEPA temporal sampling.

Only the frames a clip needs are decoded: `decode_frames` seeks to the keyframe before the first needed frame and
decodes forward until the last one. Frame `k` of a video is the frame shown at `k / fps` seconds after the start of
its stream, i.e. a decoded frame has index `round((pts - stream.start_time) * time_base * fps)`.

`clip_indices` reproduces `VideoDataset.loadvideo_decord` of the official V-JEPA / V-JEPA 2 code (partitions,
random window, padding of short videos, overlapping evaluation clips). Files that cannot be used raise `VideoError`
with a machine-readable `reason`, so a data loader can log and resample (as the official loader does).

Typical use:

    clips, indices = load_clip(path, frames_per_clip=16, rng=np.random.default_rng(0), frame_step=4)
    # clips: uint8 [1, 16, H, W, 3], indices: int64 [1, 16]
"""

from __future__ import annotations

import dataclasses
import fractions
import io
import math
import os

import numpy as np

from jepa_jax import storage

try:
    import av
except ImportError:  # the `video` extra is not installed: `_open` explains how to get it
    av = None

REASONS = ("missing", "empty", "not_video", "undecodable", "too_short", "truncated")

# Leading bytes of containers that ffmpeg should open: a file starting like this but failing to open is a damaged
# video ("undecodable"), anything else is "not_video".
_MEDIA_SIGNATURES = (b"\x1a\x45\xdf\xa3", b"RIFF", b"OggS", b"FLV", b"\x00\x00\x01\xba")
# Top-level box types that may open an ISO base media file (mp4, mov, m4v, 3gp).
_ISO_FIRST_BOXES = (b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")
_TS_PACKET = 188


class VideoError(Exception):
    """A file that cannot be used.

    Attributes:
      path: the file.
      reason: one of REASONS: "missing" (no such file), "empty" (0 bytes), "not_video" (not a media file, or one
        without a video stream), "undecodable" (a damaged or unsupported video), "too_short" (a needed frame lies
        past the end the file declares), "truncated" (the data ends before the frames the file declares).
      detail: free text.
    """

    def __init__(self, path: str, reason: str, detail: str = ""):
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}, expected one of {REASONS}")
        self.path = str(path)
        self.reason = reason
        self.detail = " ".join(str(detail).split())
        super().__init__(f"{self.path}: {reason}: {self.detail}")

    def __reduce__(self):
        return type(self), (self.path, self.reason, self.detail)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """Stream properties from the container header (nothing is decoded).

    Attributes:
      num_frames: the stream's frame count if the container stores one (mp4/mov), else round(duration * fps).
      fps: average frame rate.
      width: frame width in pixels.
      height: frame height in pixels.
      duration: seconds: the stream's duration (or its Matroska DURATION tag), else the container's (which may
        include longer audio or cover-art streams), else num_frames / fps.
    """

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float


@dataclasses.dataclass(frozen=True)
class _Clock:
    """Maps stream timestamps to frame indices: index = round((pts - start) * time_base * rate)."""

    start: int
    time_base: fractions.Fraction
    rate: fractions.Fraction

    def index(self, pts: int) -> int:
        return math.floor((pts - self.start) * self.time_base * self.rate + fractions.Fraction(1, 2))

    def pts(self, index: int) -> int:
        return self.start + math.floor(index / (self.rate * self.time_base))


def _damaged_reason(path: str) -> str:
    """Why ffmpeg could not open `path`: "truncated", "undecodable" (a damaged media file) or "not_video"."""
    size = storage.size(path)
    with storage.open_binary(path) as f:
        head = f.read(_TS_PACKET + 1)
        if head[4:8] in _ISO_FIRST_BOXES:
            # Walk the top-level boxes: one running past the end of the file means the file was cut short.
            offset = 0
            while offset + 8 <= size:
                f.seek(offset)
                header = f.read(16)
                box_size = int.from_bytes(header[:4], "big")
                if box_size == 1:
                    box_size = int.from_bytes(header[8:16], "big")
                if box_size < 8:  # 0 means "to the end of the file", smaller sizes are garbage
                    return "undecodable"
                offset += box_size
            return "truncated" if offset > size else "undecodable"
    is_ts = head[:1] == b"\x47" and (len(head) <= _TS_PACKET or head[_TS_PACKET:_TS_PACKET + 1] == b"\x47")
    return "undecodable" if is_ts or head.startswith(_MEDIA_SIGNATURES) else "not_video"


def _require_av() -> None:
    if av is None:
        raise ImportError("reading or writing videos needs PyAV: pip install 'jepa_jax[video]'")


def _source(path: str):
    """What av.open reads: a local path, or an open bucket file (opening it is the only metadata request: no
    separate existence, folder and size checks, each a round trip). VideoError for a missing, folder or empty one."""
    if storage.is_remote(path):
        try:
            source = storage.open_binary(path)
        except FileNotFoundError as e:
            raise VideoError(path, "missing", "no such file") from e
        except IsADirectoryError as e:
            raise VideoError(path, "not_video", "is a directory") from e
        if source.seek(0, io.SEEK_END) == 0:  # an empty object, or a folder (gcsfs opens those too)
            source.close()
            if storage.path(path).is_dir():
                raise VideoError(path, "not_video", "is a directory")
            raise VideoError(path, "empty", "0 bytes")
        source.seek(0)
        return source
    if not os.path.exists(path):
        raise VideoError(path, "missing", "no such file")
    if os.path.isdir(path):
        raise VideoError(path, "not_video", "is a directory")
    if os.path.getsize(path) == 0:
        raise VideoError(path, "empty", "0 bytes")
    return path


def _open(path: str) -> av.container.InputContainer:
    """Opens `path` for reading; raises VideoError(missing / empty / not_video / undecodable / truncated)."""
    _require_av()
    try:
        return av.open(_source(path), metadata_errors="ignore")
    except av.FFmpegError as e:
        raise VideoError(path, _damaged_reason(path), f"cannot open: {e}") from e
    except OSError as e:
        raise VideoError(path, "undecodable", f"cannot read: {e}") from e


def _video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    """ffmpeg's best video stream (skips cover art, prefers the largest picture)."""
    stream = container.streams.best("video")
    if stream is None:
        raise VideoError(path, "not_video", f"no video stream in {container.format.name} container")
    if stream.codec_context is None:
        raise VideoError(path, "undecodable", f"no decoder for video stream #{stream.index}")
    return stream


def _clock(stream: av.video.stream.VideoStream, path: str) -> _Clock:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0 or stream.time_base is None:
        raise VideoError(path, "undecodable", "no frame rate or time base")
    return _Clock(start=stream.start_time or 0, time_base=stream.time_base, rate=fractions.Fraction(rate))


def _tag_seconds(value: str | None) -> float | None:
    """Seconds in a Matroska "DURATION" tag ("HH:MM:SS.nnnnnnnnn"), None if absent or malformed."""
    try:
        hours, minutes, seconds = value.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except (AttributeError, ValueError):
        return None


def _info(container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: str) -> VideoInfo:
    fps = float(_clock(stream, path).rate)
    tagged = _tag_seconds(stream.metadata.get("DURATION"))
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif tagged:
        duration = tagged
    elif container.duration:
        duration = container.duration / av.time_base
    else:
        duration = stream.frames / fps
    num_frames = stream.frames if stream.frames > 0 else round(duration * fps)
    width, height = stream.codec_context.width, stream.codec_context.height
    if num_frames <= 0 or width <= 0 or height <= 0:
        raise VideoError(path, "undecodable", f"{num_frames} frames of {width}x{height} pixels in the header")
    return VideoInfo(num_frames=num_frames, fps=fps, width=width, height=height, duration=duration)


def probe(path: str) -> VideoInfo:
    """Reads frame count, frame rate, size and duration from the header; raises VideoError if unusable."""
    with _open(path) as container:
        return _info(container, _video_stream(container, path), path)


def frame_step_for_fps(video_fps: float, target_fps: float) -> int:
    """Official fps-mode step, ceil(video_fps) // target_fps, at least 1 (30 -> 7, 25 -> 6 at target 4)."""
    if video_fps <= 0 or target_fps <= 0:
        raise ValueError(f"frame rates must be positive, got {video_fps} and {target_fps}")
    return max(1, int(math.ceil(video_fps) // target_fps))


def _padded_linspace(length: int, frame_step: int, frames_per_clip: int) -> np.ndarray:
    """linspace(0, length, length // step), then `length` repeated up to frames_per_clip, clipped to length - 1."""
    num = length // frame_step
    values = np.concatenate([np.linspace(0, length, num=num), np.full(frames_per_clip - num, length)])
    return np.clip(values, 0, max(length - 1, 0)).astype(np.int64)


def clip_indices(num_video_frames: int, frames_per_clip: int, frame_step: int, rng: np.random.Generator | None,
                 num_clips: int = 1, allow_clip_overlap: bool = False) -> np.ndarray:
    """Source frame indices of `num_clips` clips, as the official `VideoDataset.loadvideo_decord`.

    The video is split into `num_clips` partitions of `P = num_video_frames // num_clips` frames; clip `i` covers
    `clip_len = frames_per_clip * frame_step` source frames. Per clip:

    * `P > clip_len`: a window `[start, end)` with `end ~ U{clip_len, ..., P - 1}` (`rng.integers`, one draw per
      clip) or, if `rng` is None, `end = clip_len + (P - clip_len) // 2`; `start = end - clip_len`; indices are
      `int(clip(linspace(start, end, F), start, end - 1)) + i * P`.
      E.g. (100 frames, F=4, step=2, rng=None): clip_len 8, end 54 -> [[46, 48, 51, 53]].
    * `P <= clip_len`, no overlap: `linspace(0, P, P // step)` truncated, then `P - 1` repeated up to F
      (`+ i * P`). E.g. (10 frames, F=8, step=4): [[0, 9, 9, 9, 9, 9, 9, 9]]; (40 frames, 2 clips, F=4,
      step=6): [[0, 10, 19, 19], [20, 30, 39, 39]].
    * `P <= clip_len`, `allow_clip_overlap` (evaluation): every clip samples `S = min(clip_len, N) - 1` as above but
      clipped to `S - 1` (as the official code), and clip `i` is shifted by `i * ((N - clip_len) // (num_clips - 1))`
      when `N > clip_len` (else 0). E.g. (30 frames, 2 clips, F=4, step=4): S 15, [[0, 7, 14, 14], [14, 21, 28, 28]].

    Args:
      num_video_frames: N, frames in the video.
      frames_per_clip: F.
      frame_step: source frames between sampled frames.
      rng: draws the window ends; None for the deterministic centred window.
      num_clips: clips (temporal segments), one per partition.
      allow_clip_overlap: evaluation mode for partitions shorter than a clip (see above).

    Returns:
      int64 [num_clips, F], all in [0, N).
    """
    if frames_per_clip < 1 or frame_step < 1 or num_clips < 1:
        raise ValueError(f"need frames_per_clip, frame_step, num_clips >= 1, got "
                         f"{frames_per_clip}, {frame_step}, {num_clips}")
    if num_video_frames < num_clips:
        raise ValueError(f"{num_video_frames} frames cannot be split into {num_clips} clips")
    clip_len = frames_per_clip * frame_step
    partition_len = num_video_frames // num_clips
    clips = []
    for i in range(num_clips):
        if partition_len > clip_len:
            if rng is None:
                end = clip_len + (partition_len - clip_len) // 2
            else:
                end = int(rng.integers(clip_len, partition_len))
            start = end - clip_len
            window = np.clip(np.linspace(start, end, num=frames_per_clip), start, end - 1).astype(np.int64)
            clips.append(window + i * partition_len)
        elif not allow_clip_overlap:
            clips.append(_padded_linspace(partition_len, frame_step, frames_per_clip) + i * partition_len)
        else:
            sample_len = min(clip_len, num_video_frames) - 1
            shift = (num_video_frames - clip_len) // (num_clips - 1) if num_video_frames > clip_len else 0
            clips.append(_padded_linspace(sample_len, frame_step, frames_per_clip) + i * shift)
    return np.stack(clips).astype(np.int64)


def _decode_pass(path: str, container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 clock: _Clock, wanted: np.ndarray, seek: bool) -> tuple[dict | None, int, int]:
    """One forward decode; wanted: sorted unique indices.

    Returns ({index: av.VideoFrame}, or None if seeking failed or landed after wanted[0]; frames decoded; last
    index seen). Index `j` gets the last frame with index <= j (the frame on screen at time j / fps), or the very
    first frame of the stream when none precedes it.
    """
    if seek:
        try:
            container.seek(clock.pts(int(wanted[0])), stream=stream, backward=True)
        except av.FFmpegError:
            return None, 0, -1
    picked, pending, num_decoded = {}, 0, 0
    previous, last_index = None, -1
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError as e:
            cut = packet.is_corrupt or (packet.pos is not None and packet.pos + packet.size >= container.size)
            raise VideoError(path, "truncated" if cut else "undecodable",
                             f"decoding failed after frame {last_index}: {e}") from e
        for frame in frames:
            num_decoded += 1
            index = last_index + 1 if frame.pts is None else clock.index(frame.pts)
            if previous is None and seek and index > wanted[0]:
                return None, num_decoded, index
            while pending < len(wanted) and wanted[pending] < index:
                picked[int(wanted[pending])] = frame if previous is None else previous
                pending += 1
            if pending < len(wanted) and wanted[pending] == index:
                picked[index] = frame
                pending += 1
            previous, last_index = frame, index
            if pending == len(wanted):
                return picked, num_decoded, last_index
    if seek and previous is None:  # the seek went past the end
        return None, num_decoded, last_index
    return picked, num_decoded, last_index


def _decode(path: str, indices: np.ndarray) -> tuple[np.ndarray, int]:
    """decode_frames plus the number of frames the decoder produced (all passes)."""
    indices = np.asarray(indices)
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
        raise ValueError(f"indices must be a 1-D integer array, got {indices.dtype} {indices.shape}")
    if indices.size and indices.min() < 0:
        raise ValueError(f"negative frame index {indices.min()}")
    wanted = np.unique(indices)
    if not wanted.size:
        info = probe(path)
        return np.zeros((0, info.height, info.width, 3), np.uint8), 0
    total_decoded = 0
    for seek in (True, False) if wanted[0] > 0 else (False,):  # the second pass only if the seek overshot
        with _open(path) as container:
            stream = _video_stream(container, path)
            info = _info(container, stream, path)
            try:
                picked, num_decoded, last_index = _decode_pass(path, container, stream, _clock(stream, path),
                                                                  wanted, seek)
            except av.FFmpegError as e:
                raise VideoError(path, "undecodable", str(e)) from e
        total_decoded += num_decoded
        if picked is not None:
            break
    if len(picked) < wanted.size:
        reason = "truncated" if last_index + 1 < info.num_frames else "too_short"
        raise VideoError(path, reason, f"needs frame {wanted[-1]} but the stream ends after frame {last_index} "
                                       f"({info.num_frames} frames declared)")
    rgb = {}
    try:
        for frame in picked.values():
            if id(frame) not in rgb:
                rgb[id(frame)] = frame.to_ndarray(format="rgb24", width=info.width, height=info.height)
    except (av.FFmpegError, ValueError) as e:
        raise VideoError(path, "undecodable", f"cannot convert {picked[wanted[0]].format.name} to rgb24: {e}") from e
    return np.stack([rgb[id(picked[int(j)])] for j in indices]), total_decoded


def decode_frames(path: str, indices: np.ndarray) -> np.ndarray:
    """Decodes the frames `indices` (any order, repeats allowed) of a video.

    Seeks to the keyframe before min(indices) and decodes forward until max(indices); if the container's seek lands
    after the first needed frame (e.g. MPEG-TS), decodes again from the start of the file. An index with no frame of
    its own (a gap in a variable-frame-rate stream) gets the frame on screen at that time. Any pixel format is
    converted to RGB (alpha dropped, high bit depths reduced to 8 bits); frames are scaled to the stream's size if
    it changes mid-stream.

    Args:
      path: video file.
      indices: int [T] frame indices (0 = first frame of the video stream).

    Returns:
      uint8 [T, H, W, 3].

    Raises:
      VideoError: with reason missing / empty / not_video / undecodable, or truncated / too_short when the stream
        ends before max(indices) (truncated if it also ends before the frame count in its header).
    """
    return _decode(path, indices)[0]


def load_clip(path: str, frames_per_clip: int, rng: np.random.Generator | None, *, frame_step: int | None = None,
              target_fps: float | None = None, num_clips: int = 1,
              allow_clip_overlap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Samples and decodes `num_clips` clips of a video (official V-JEPA temporal sampling).

    Args:
      path: video file.
      frames_per_clip: F.
      rng: draws the clip windows (see `clip_indices`); None for centred windows.
      frame_step: source frames between sampled frames; exactly one of frame_step and target_fps.
      target_fps: sample at about this rate: frame_step = frame_step_for_fps(video fps, target_fps).
      num_clips: clips from equal partitions of the video (evaluation segments).
      allow_clip_overlap: evaluation sampling for partitions shorter than a clip.

    Returns:
      (uint8 [num_clips, F, H, W, 3] clips, int64 [num_clips, F] source frame indices).

    Raises:
      VideoError: the file cannot be used (see `decode_frames`); "too_short" if it has fewer frames than clips.
    """
    if (frame_step is None) == (target_fps is None):
        raise ValueError("pass exactly one of frame_step and target_fps")
    info = probe(path)
    step = frame_step if frame_step is not None else frame_step_for_fps(info.fps, target_fps)
    if info.num_frames < num_clips:
        raise VideoError(path, "too_short", f"{info.num_frames} frames for {num_clips} clips")
    indices = clip_indices(info.num_frames, frames_per_clip, step, rng, num_clips, allow_clip_overlap)
    frames = decode_frames(path, indices.reshape(-1))
    return frames.reshape(indices.shape + frames.shape[1:]), indices


def write_video(path: str, frames: np.ndarray, fps: float = 30.0, gop: int = 12) -> str:
    """Writes uint8 [T, H, W, 3] frames as an H.264 (yuv420p) video; the container comes from the extension."""
    _require_av()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fractions.Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.gop_size = gop
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(stream.encode())
    return str(path)

