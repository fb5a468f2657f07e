"""PyAV video decoding: probing, official V-JEPA temporal sampling, partial decoding, damaged files."""

import os
import pickle

import numpy as np
import pytest

from jepa_jax.data import video
from jepa_jax.data.video import VideoError


def marks(frames, read_mark) -> list[int]:
    return [read_mark(frame) for frame in frames]


# ---------------------------------------------------------------------------------------------------------------
# probe


@pytest.mark.parametrize("name", ["h264_30", "h264_24", "h264_2997", "vp9_24", "vp9_30", "portrait", "cover_mkv"])
def test_probe_reads_header(videos, video_specs, name):
    spec = video_specs[name]
    info = video.probe(videos[name])
    assert info.num_frames == spec["num_frames"]
    assert info.fps == pytest.approx(spec["fps"], abs=1e-3)
    assert (info.width, info.height) == (spec["width"], spec["height"])
    assert info.duration == pytest.approx(spec["num_frames"] / spec["fps"], abs=0.02)


@pytest.mark.parametrize("name, reason", [("missing", "missing"), ("empty", "empty"), ("text", "not_video"),
                                          ("directory", "not_video"), ("truncated_mp4", "truncated")])
def test_probe_errors_name_the_reason(bad_files, name, reason):
    with pytest.raises(VideoError) as info:
        video.probe(bad_files[name])
    assert info.value.reason == reason
    assert info.value.path == bad_files[name]


@pytest.fixture(name="reads")
def reads_fixture(monkeypatch):
    """Counts the decoder's file reads: {"opens": containers opened, "packets": packets demuxed}."""
    counts = {"opens": 0, "packets": 0}
    real_open = video._open

    class Counted:
        """A container whose demuxed packets are counted."""

        def __init__(self, container):
            self._container = container

        def __enter__(self):
            self._container.__enter__()
            return self

        def __exit__(self, *exc):
            return self._container.__exit__(*exc)

        def demux(self, *args, **kwargs):
            for packet in self._container.demux(*args, **kwargs):
                counts["packets"] += 1
                yield packet

        def __getattr__(self, name):
            return getattr(self._container, name)

    def counted_open(path):
        container = real_open(path)
        counts["opens"] += 1
        return Counted(container)

    monkeypatch.setattr(video, "_open", counted_open)
    return counts


def assert_one_probe_and_at_most_two_passes(reads, num_frames, probes=1):
    """A damaged file fails fast: a probe, at most two decode passes (seek, then from the start), each reading
    every packet (num_frames and the decoder flush) at most once; no retries."""
    assert reads["opens"] <= probes + 2, reads
    assert reads["packets"] <= 2 * (num_frames + 1), reads


@pytest.mark.parametrize("name, source, reasons", [
    ("truncated_mp4", "h264_30", {"truncated"}),
    ("truncated_faststart", "faststart", {"truncated"}),
    ("truncated_webm", "vp9_30", {"truncated"}),
    ("overwritten_mp4", "h264_30", {"undecodable", "truncated"}),
    ("overwritten_faststart", "faststart", {"undecodable", "truncated"}),
    ("overwritten_webm", "vp9_30", {"undecodable", "truncated"}),
])
def test_damaged_files_raise_video_error_quickly(bad_files, video_specs, reads, name, source, reasons):
    with pytest.raises(VideoError) as info:
        video.load_clip(bad_files[name], 16, None, frame_step=4)  # covers every frame of these short files
    assert info.value.reason in reasons
    assert_one_probe_and_at_most_two_passes(reads, video_specs[source]["num_frames"])


def test_randomly_damaged_files_raise_only_video_errors(fuzzed_files, videos, video_specs, reads):
    frames_of = {os.path.basename(path): video_specs[name]["num_frames"] for name, path in videos.items()}
    reasons = set()
    for path in fuzzed_files:  # "{seed}_{source file name}"
        reads.update(opens=0, packets=0)
        try:
            video.decode_frames(path, np.arange(video.probe(path).num_frames))
        except VideoError as e:
            reasons.add(e.reason)
        assert_one_probe_and_at_most_two_passes(reads, frames_of[os.path.basename(path).split("_", 1)[1]])
    assert {"undecodable", "truncated"} <= reasons


def test_video_error_is_one_line_and_picklable():
    err = VideoError("/data/a.mp4", "undecodable", "bad\npacket")
    assert str(err) == "/data/a.mp4: undecodable: bad packet"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.reason, str(copy)) == (err.path, err.reason, str(err))
    with pytest.raises(ValueError):
        VideoError("/data/a.mp4", "broken")


# ---------------------------------------------------------------------------------------------------------------
# frame_step_for_fps and clip_indices


@pytest.mark.parametrize("video_fps, target_fps, step", [(30, 4, 7), (25, 4, 6), (29.97, 4, 7), (24, 4, 6),
                                                         (60, 8, 7), (14.2, 5, 3), (30, 7.5, 4), (2, 4, 1)])
def test_frame_step_for_fps(video_fps, target_fps, step):
    assert video.frame_step_for_fps(video_fps, target_fps) == step


@pytest.mark.parametrize("args, kwargs, expected", [
    # long video, centred window: clip_len 8, end 8 + 92 // 2 = 54, linspace(46, 54, 4) clipped to 53.
    ((100, 4, 2), {}, [[46, 48, 51, 53]]),
    # two partitions of 50: end 8 + 42 // 2 = 29 in each, second shifted by 50.
    ((100, 4, 2), dict(num_clips=2), [[21, 23, 26, 28], [71, 73, 76, 78]]),
    # short video: linspace(0, 10, 10 // 4 = 2) = [0, 10], padded with 10, clipped to 9.
    ((10, 8, 4), {}, [[0, 9, 9, 9, 9, 9, 9, 9]]),
    # short video: linspace(0, 12, 3) = [0, 6, 12] + [12] -> clipped to 11.
    ((12, 4, 4), {}, [[0, 6, 11, 11]]),
    # partition == clip_len takes the short branch: linspace(0, 16, 4) clipped to 15.
    ((16, 4, 4), {}, [[0, 5, 10, 15]]),
    # short partitions of 20 (clip_len 24): linspace(0, 20, 3) + [20] clipped to 19, shifted by 20.
    ((40, 4, 6), dict(num_clips=2), [[0, 10, 19, 19], [20, 30, 39, 39]]),
    # overlap: sample_len 15, linspace(0, 15, 3) + [15] clipped to 14; clip i shifted by i * (30 - 16) // 1.
    ((30, 4, 4), dict(num_clips=2, allow_clip_overlap=True), [[0, 7, 14, 14], [14, 21, 28, 28]]),
    # overlap with a video shorter than a clip: sample_len 9, linspace(0, 9, 2) + [9, 9] clipped to 8, no shift.
    ((10, 4, 4), dict(num_clips=3, allow_clip_overlap=True), [[0, 8, 8, 8]] * 3),
    # overlap does not change long partitions.
    ((100, 4, 2), dict(num_clips=2, allow_clip_overlap=True), [[21, 23, 26, 28], [71, 73, 76, 78]]),
])
def test_clip_indices_official_values(args, kwargs, expected):
    indices = video.clip_indices(*args, rng=None, **kwargs)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected)


def test_clip_indices_random_window_matches_official_draws():
    # 100 frames, F=4, step 2: end ~ U{8, ..., 99} (one draw per clip), linspace(end - 8, end, 4) -> offsets
    # [-8, -5.33, -2.67, 0] truncated to [-8, -6, -3, 0], the last clipped to end - 1.
    for seed in range(5):
        end = np.random.default_rng(seed).integers(8, 100)
        indices = video.clip_indices(100, 4, 2, np.random.default_rng(seed))
        np.testing.assert_array_equal(indices, [[end - 8, end - 6, end - 3, end - 1]])
    draws = np.stack([video.clip_indices(100, 4, 2, np.random.default_rng(s))[0] for s in range(400)])
    assert draws[:, 0].min() == 0 and draws[:, -1].max() == 98  # end spans exactly {8, ..., 99}


def test_clip_indices_deterministic_with_seed_and_in_range():
    a = video.clip_indices(300, 16, 4, np.random.default_rng(3), num_clips=3)
    b = video.clip_indices(300, 16, 4, np.random.default_rng(3), num_clips=3)
    c = video.clip_indices(300, 16, 4, np.random.default_rng(4), num_clips=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, fpc, step, clips = (int(rng.integers(1, 400)), int(rng.integers(1, 20)), int(rng.integers(1, 8)),
                               int(rng.integers(1, 5)))
        if n < clips:
            continue
        for overlap in (False, True):
            indices = video.clip_indices(n, fpc, step, rng, num_clips=clips, allow_clip_overlap=overlap)
            assert indices.shape == (clips, fpc)
            assert indices.min() >= 0 and indices.max() < n
            assert np.all(np.diff(indices, axis=1) >= 0)


def test_clip_indices_rejects_impossible_requests():
    with pytest.raises(ValueError):
        video.clip_indices(2, 4, 1, None, num_clips=3)
    with pytest.raises(ValueError):
        video.clip_indices(10, 0, 1, None)


# ---------------------------------------------------------------------------------------------------------------
# decode_frames


def test_decode_first_middle_last_frames_of_every_video(videos, video_specs, read_mark):
    for name, spec in video_specs.items():
        n = spec["num_frames"]
        indices = np.array([n - 1, n // 2, 0, n // 2 + 1])
        frames = video.decode_frames(videos[name], indices)
        assert frames.dtype == np.uint8, name
        assert frames.shape == (4, spec["height"], spec["width"], 3), name
        assert marks(frames, read_mark) == indices.tolist(), name


def test_decode_unsorted_repeated_indices_from_the_middle(videos, read_mark):
    indices = np.array([70, 64, 64, 90, 65, 70])
    frames = video.decode_frames(videos["h264_30"], indices)
    assert marks(frames, read_mark) == indices.tolist()
    np.testing.assert_array_equal(frames[1], frames[2])


def test_decode_reads_only_what_it_needs(videos, read_mark):
    path = videos["h264_30"]  # 120 frames, a keyframe at least every 12
    frames, decoded = video._decode(path, np.arange(116, 120))
    assert marks(frames, read_mark) == [116, 117, 118, 119]
    assert 4 <= decoded <= 16
    frames, decoded = video._decode(path, np.array([61, 63, 60]))
    assert marks(frames, read_mark) == [61, 63, 60]
    assert decoded <= 16
    frames, decoded = video._decode(path, np.array([3, 0, 2]))
    assert marks(frames, read_mark) == [3, 0, 2]
    assert decoded == 4


def test_decode_falls_back_when_seeking_overshoots(videos, read_mark):
    # MPEG-TS seeks land after the requested time; the frames must still be the right ones.
    indices = np.array([45, 30, 31])
    frames, decoded = video._decode(videos["mpegts"], indices)
    assert marks(frames, read_mark) == indices.tolist()
    assert decoded >= 32


def test_decode_missing_timestamps_repeat_the_frame_on_screen(videos, read_mark):
    # Frames 10, 11, 12 and 20 were never written: their times show the frame before.
    indices = np.array([9, 10, 11, 12, 13, 20, 21])
    frames = video.decode_frames(videos["vfr_mkv"], indices)
    assert marks(frames, read_mark) == [9, 9, 9, 9, 13, 19, 21]


@pytest.mark.parametrize("name", ["gray", "alpha", "alpha_12bit", "h264_10bit", "portrait"])
def test_decode_converts_pixel_formats_to_rgb(videos, video_specs, read_mark, name):
    spec = video_specs[name]
    frames = video.decode_frames(videos[name], np.arange(spec["num_frames"]))
    assert frames.dtype == np.uint8
    assert frames.shape == (spec["num_frames"], spec["height"], spec["width"], 3)
    assert marks(frames, read_mark) == list(range(spec["num_frames"]))
    white = frames[1][:, :spec["width"] // 8]  # frame 1 lights only stripe 0
    assert white.min() > 200
    if name == "gray":
        np.testing.assert_array_equal(frames[..., 0], frames[..., 1])
        np.testing.assert_array_equal(frames[..., 0], frames[..., 2])


def test_decode_past_the_end_and_bad_indices(videos):
    path = videos["h264_30"]
    with pytest.raises(VideoError) as info:
        video.decode_frames(path, np.array([10, 120]))
    assert info.value.reason == "too_short"
    with pytest.raises(ValueError):
        video.decode_frames(path, np.array([-1, 3]))
    with pytest.raises(ValueError):
        video.decode_frames(path, np.array([[1, 2]]))
    assert video.decode_frames(path, np.zeros(0, np.int64)).shape == (0, 48, 64, 3)


def test_decode_truncated_stream(bad_files):
    with pytest.raises(VideoError) as info:
        video.decode_frames(bad_files["truncated_webm"], np.array([0, 50]))
    assert info.value.reason == "truncated"


# ---------------------------------------------------------------------------------------------------------------
# load_clip


@pytest.mark.parametrize("name, step", [("h264_30", 7), ("h264_2997", 7), ("h264_24", 6), ("vp9_24", 6)])
def test_load_clip_at_target_fps(videos, video_specs, read_mark, name, step):
    clips, indices = video.load_clip(videos[name], 8, np.random.default_rng(0), target_fps=4)
    spec = video_specs[name]
    assert clips.shape == (1, 8, spec["height"], spec["width"], 3) and clips.dtype == np.uint8
    np.testing.assert_array_equal(indices, video.clip_indices(spec["num_frames"], 8, step, np.random.default_rng(0)))
    # Sampled frames are ~1 / target_fps seconds apart (linspace stretches the step by up to 8 / 7).
    gaps = np.diff(indices[0]) / spec["fps"]
    assert np.all(np.abs(gaps * 4 - 1) < 0.25), gaps
    assert marks(clips[0], read_mark) == indices[0].tolist()


def test_load_clip_segments_and_padding(videos, read_mark):
    clips, indices = video.load_clip(videos["h264_30"], 8, None, frame_step=2, num_clips=3)
    np.testing.assert_array_equal(indices, video.clip_indices(120, 8, 2, None, num_clips=3))
    assert clips.shape == (3, 8, 48, 64, 3)
    assert [marks(clip, read_mark) for clip in clips] == indices.tolist()
    clips, indices = video.load_clip(videos["portrait"], 16, np.random.default_rng(0), frame_step=4)
    assert indices[0, -1] == 29 and clips.shape == (1, 16, 48, 32, 3)  # 30 frames < 64: padded with the last
    assert marks(clips[0], read_mark) == indices[0].tolist()


def test_load_clip_is_deterministic_given_the_seed(videos):
    a = video.load_clip(videos["vp9_30"], 4, np.random.default_rng(5), frame_step=3)
    b = video.load_clip(videos["vp9_30"], 4, np.random.default_rng(5), frame_step=3)
    c = video.load_clip(videos["vp9_30"], 4, np.random.default_rng(6), frame_step=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1]) and not np.array_equal(a[0], c[0])  # another seed, another window


def test_load_clip_argument_errors(videos):
    with pytest.raises(ValueError):
        video.load_clip(videos["h264_30"], 4, None)
    with pytest.raises(ValueError):
        video.load_clip(videos["h264_30"], 4, None, frame_step=2, target_fps=4)
    with pytest.raises(VideoError) as info:
        video.load_clip(videos["alpha_12bit"], 4, None, frame_step=1, num_clips=11)
    assert info.value.reason == "too_short"
