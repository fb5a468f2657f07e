"""Real (tiny) video files written with PyAV for the video decoding tests, plus damaged and non-video files.

Every frame shows its own index as 8 vertical black/white stripes (bit b of the index is stripe b, white = 1), which
survives lossy coding and pixel-format conversion; `read_mark` recovers the index from a decoded RGB frame.
"""

import fractions
import os

import av
import numpy as np
import pytest

_BITS = 8


def mark_frame(index: int, width: int, height: int) -> np.ndarray:
    """uint8 [height, width, 3] frame showing `index` (< 256) as stripes."""
    frame = np.zeros((height, width, 3), np.uint8)
    for bit in range(_BITS):
        if (index >> bit) & 1:
            frame[:, bit * width // _BITS:(bit + 1) * width // _BITS] = 255
    return frame


def read_mark(frame: np.ndarray) -> int:
    """The index shown by a decoded [H, W, 3] frame (middle column of each stripe, thresholded at 128)."""
    width = frame.shape[1]
    columns = [(2 * bit + 1) * width // (2 * _BITS) for bit in range(_BITS)]
    return sum(1 << bit for bit, x in enumerate(columns) if frame[:, x].mean() > 128)


def write_video(path, num_frames: int, fps: float, width: int, height: int, codec: str = "libx264",
                pix_fmt: str = "yuv420p", *, gop: int = 12, first_pts: int = 0, noise: int = 0,
                skip: tuple[int, ...] = (), cover: bool = False, container_options: dict | None = None) -> str:
    """Writes `num_frames` marked frames; the container comes from the file extension.

    Args:
      path: output file (.mp4, .webm, .mkv, .mov, .ts, ...).
      num_frames: frames to write (<= 256 so that the marks stay distinct).
      fps: frame rate (29.97 is stored as 30000/1001).
      width: frame width.
      height: frame height.
      codec: encoder, e.g. "libx264", "libvpx-vp9", "ffv1", "prores_ks".
      pix_fmt: encoder pixel format, e.g. "yuv420p", "gray", "yuva420p", "yuv420p10le".
      gop: keyframe interval.
      first_pts: timestamp (in frames) of the first frame, to make streams that do not start at 0.
      noise: adds uniform noise in [-noise, noise] (seeded) so that frames take many bytes (marks stay readable
        for noise < 100).
      skip: frames left out (a variable-frame-rate stream with gaps); the others keep their timestamps.
      cover: first adds a 16x16 one-frame mjpeg stream (cover art, not the video; keeps its place in .mkv).
      container_options: muxer options, e.g. {"movflags": "faststart"}.

    Returns:
      str(path).
    """
    rate = fractions.Fraction(fps).limit_denominator(1001)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options=container_options or {}) as container:
        if cover:
            still = container.add_stream("mjpeg", rate=1)
            still.width, still.height, still.pix_fmt = 16, 16, "yuvj420p"
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.gop_size = gop
        if cover:
            container.mux(still.encode(av.VideoFrame.from_ndarray(np.full((16, 16, 3), 255, np.uint8), "rgb24")))
            container.mux(still.encode())
        for i in range(num_frames):
            if i in skip:
                continue
            image = mark_frame(i, width, height)
            if noise:
                image = np.clip(image + rng.integers(-noise, noise + 1, image.shape), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = first_pts + i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return str(path)


def truncate_file(src: str, dst, fraction: float = 0.3) -> str:
    """Copies the first `fraction` of the bytes of `src` to `dst` (an interrupted download)."""
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[:int(len(data) * fraction)])
    return str(dst)


def overwrite_middle(src: str, dst, fraction: float = 0.2, seed: int = 0) -> str:
    """Copies `src` to `dst` with the middle `fraction` of its bytes replaced by random bytes."""
    with open(src, "rb") as f:
        data = bytearray(f.read())
    n = int(len(data) * fraction)
    begin = (len(data) - n) // 2
    data[begin:begin + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    with open(dst, "wb") as f:
        f.write(bytes(data))
    return str(dst)


def damage_randomly(src: str, dst, seed: int) -> str:
    """Copies `src` to `dst` with one seeded damage: a random chunk (seed % 3 == 0), bit flips (1), a cut (2)."""
    rng = np.random.default_rng(seed)
    with open(src, "rb") as f:
        data = bytearray(f.read())
    if seed % 3 == 0:
        n = int(rng.integers(1, 256))
        at = int(rng.integers(0, len(data) - n))
        data[at:at + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    elif seed % 3 == 1:
        for at in rng.integers(0, len(data), 20):
            data[at] ^= 1 << int(rng.integers(8))
    else:
        data = data[:int(rng.integers(1, len(data)))]
    with open(dst, "wb") as f:
        f.write(bytes(data))
    return str(dst)


# name -> (file name, write_video arguments): the valid files shared by the tests.
VIDEOS = {
    "h264_30": ("h264_30.mp4", dict(num_frames=120, fps=30, width=64, height=48)),
    "h264_24": ("h264_24.mp4", dict(num_frames=48, fps=24, width=48, height=32)),
    "h264_2997": ("h264_2997.mp4", dict(num_frames=60, fps=29.97, width=32, height=24)),
    "vp9_24": ("vp9_24.webm", dict(num_frames=48, fps=24, width=32, height=24, codec="libvpx-vp9")),
    "vp9_30": ("vp9_30.webm", dict(num_frames=60, fps=30, width=64, height=48, codec="libvpx-vp9")),
    "portrait": ("portrait.mp4", dict(num_frames=30, fps=30, width=32, height=48)),
    "gray": ("gray.mkv", dict(num_frames=20, fps=30, width=32, height=24, codec="ffv1", pix_fmt="gray")),
    "alpha": ("alpha.mkv", dict(num_frames=20, fps=30, width=32, height=24, codec="ffv1", pix_fmt="yuva420p")),
    "alpha_12bit": ("alpha_12bit.mov", dict(num_frames=10, fps=30, width=32, height=24, codec="prores_ks",
                                            pix_fmt="yuva444p10le")),
    "h264_10bit": ("h264_10bit.mp4", dict(num_frames=20, fps=30, width=32, height=24, pix_fmt="yuv420p10le")),
    "offset_mp4": ("offset.mp4", dict(num_frames=40, fps=30, width=32, height=24, first_pts=5)),
    "vfr_mkv": ("vfr.mkv", dict(num_frames=30, fps=30, width=32, height=24, skip=(10, 11, 12, 20))),
    "cover_mkv": ("cover.mkv", dict(num_frames=10, fps=30, width=32, height=24, cover=True)),
    "mpegts": ("stream.ts", dict(num_frames=60, fps=30, width=32, height=24)),
    "faststart": ("faststart.mp4", dict(num_frames=60, fps=30, width=64, height=48, noise=60,
                                        container_options={"movflags": "faststart"})),
}


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, str]:
    """name -> path of the valid VIDEOS."""
    directory = tmp_path_factory.mktemp("videos")
    return {name: write_video(directory / file_name, **kwargs) for name, (file_name, kwargs) in VIDEOS.items()}


@pytest.fixture(scope="session")
def video_specs() -> dict[str, dict]:
    """name -> write_video arguments of the VIDEOS (the expected frame count, fps and size)."""
    return {name: kwargs for name, (_, kwargs) in VIDEOS.items()}


@pytest.fixture(scope="session")
def bad_files(tmp_path_factory, videos) -> dict[str, str]:
    """name -> path of unusable files: missing, empty, text, directory, truncated and overwritten videos."""
    directory = tmp_path_factory.mktemp("bad_videos")
    empty = directory / "empty.mp4"
    empty.touch()
    text = directory / "notes.mp4"
    text.write_text("This is a text file, not a video.\n" * 20)
    folder = directory / "folder.mp4"
    folder.mkdir()
    return {
        "missing": str(directory / "missing.mp4"),
        "empty": str(empty),
        "text": str(text),
        "directory": str(folder),
        "truncated_mp4": truncate_file(videos["h264_30"], directory / "truncated.mp4"),
        "truncated_faststart": truncate_file(videos["faststart"], directory / "truncated_faststart.mp4"),
        "truncated_webm": truncate_file(videos["vp9_30"], directory / "truncated.webm"),
        "overwritten_mp4": overwrite_middle(videos["h264_30"], directory / "overwritten.mp4"),
        "overwritten_faststart": overwrite_middle(videos["faststart"], directory / "overwritten_faststart.mp4"),
        "overwritten_webm": overwrite_middle(videos["vp9_30"], directory / "overwritten.webm"),
    }


@pytest.fixture(scope="session")
def fuzzed_files(tmp_path_factory, videos) -> list[str]:
    """36 randomly damaged copies (damage_randomly) of each of an mp4, a webm and an MPEG-TS video."""
    directory = tmp_path_factory.mktemp("fuzzed_videos")
    return [damage_randomly(videos[name], directory / f"{seed}_{os.path.basename(videos[name])}", seed)
            for name in ("h264_30", "vp9_30", "mpegts") for seed in range(36)]


@pytest.fixture(name="read_mark")
def read_mark_fixture():
    """`read_mark` for tests: the frame index shown by a decoded frame."""
    return read_mark


@pytest.fixture
def video_writer(tmp_path):
    """write_video into the test's tmp_path: writer(file_name, num_frames, fps, width, height, ...) -> path."""
    def writer(file_name: str, *args, **kwargs) -> str:
        return write_video(os.path.join(tmp_path, file_name), *args, **kwargs)
    return writer
