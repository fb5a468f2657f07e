"""Video manifests through the grain pipeline: shapes, uint8, bad files skipped and counted, exact resume, fuzz."""

import shutil

import numpy as np
import pytest

from jepa_jax import masks as masks_lib
from jepa_jax.data import pipeline, video
from tests.conftest import assert_stream_resumes_exactly
from tests.data.conftest import truncate_file, write_video

FRAMES, CROP = 4, 32


def make_load(srcs, **kwargs):
    return pipeline.LoadVideoClip(srcs, FRAMES, CROP, frame_step=2, target_fps=None, **kwargs)


def stream(manifest, batch_size=4, seed=0, process_index=0, process_count=1, threads=2):
    srcs = pipeline.video_sources([manifest])
    maskers = [masks_lib.MultiBlockMasker((FRAMES // 2, CROP // 8, CROP // 8), masks_lib.SHORT_RANGE)]
    return pipeline.make_train_dataset(srcs, maskers, batch_size, seed, load=make_load(srcs),
                                       process_index=process_index, process_count=process_count,
                                       num_threads=threads)


@pytest.fixture(scope="module")
def mixed_manifest(tmp_path_factory):
    """12 good videos of several sizes, fps and codecs (one portrait, one grayscale) and 4 unusable files."""
    d = tmp_path_factory.mktemp("mixed")
    good = [write_video(d / f"good {i} ü.{'webm' if i % 3 == 0 else 'mp4'}", 24 + 4 * i, (24, 30, 25)[i % 3],
                        (48, 40, 64)[i % 3], (36, 56, 48)[i % 3], "libvpx-vp9" if i % 3 == 0 else "libx264",
                        "gray" if i == 4 else "yuv420p") for i in range(12)]
    (d / "empty.mp4").touch()
    (d / "text.mp4").write_text("not a video\n" * 50)
    bad = {str(d / "missing.mp4"): "missing", str(d / "empty.mp4"): "empty", str(d / "text.mp4"): "not_video",
           truncate_file(good[1], d / "truncated.mp4", 0.05): None}
    lines = [f"{p} {i}" for i, p in enumerate(good + list(bad))]
    manifest = d / "train.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(manifest), bad


def test_batches_are_uint8_crops_and_bad_files_are_counted(mixed_manifest):
    manifest, bad = mixed_manifest
    it = iter(stream(manifest))
    batches = [next(it) for _ in range(8)]  # 32 clips: every entry is drawn at least once (2 epochs of 16)
    for batch in batches:
        assert batch["video"].dtype == np.uint8 and batch["video"].shape == (4, FRAMES, CROP, CROP, 3)
        assert batch["bad_files"].shape == (4, len(video.REASONS))
    totals = sum(b["bad_files"].sum(0) for b in batches)
    assert totals.sum() >= 2 * len(bad)  # each bad entry is a primary draw once per epoch
    for path, reason in bad.items():
        assert path in pipeline.BAD_FILES.reasons
        if reason:
            assert pipeline.BAD_FILES.reasons[path] == reason
            assert totals[video.REASONS.index(reason)] >= 2


def test_stream_after_restore_equals_uninterrupted_stream(mixed_manifest):
    assert_stream_resumes_exactly(lambda: stream(mixed_manifest[0]))


def test_two_hosts_read_disjoint_entries_that_cover_the_manifest(tmp_path):
    """Two hosts' pipelines, built as each host builds its own, read disjoint halves of one epoch.

    Entry i is a still image of solid grey level 8 + 15 i, which survives crop, resize and flip, so every clip
    that comes out of the pipeline names the entry it was read from.
    """
    from PIL import Image  # pylint: disable=g-import-not-at-top
    n, batch_size = 16, 4
    paths = []
    for i in range(n):
        paths.append(str(tmp_path / f"entry{i:02d}.png"))
        Image.fromarray(np.full((40, 48, 3), 8 + 15 * i, np.uint8)).save(paths[-1])
    manifest = tmp_path / "images.csv"
    manifest.write_text("".join(f"{p} {i}\n" for i, p in enumerate(paths)))
    shards = []
    for process in (0, 1):
        it = iter(stream(str(manifest), batch_size=batch_size, process_index=process, process_count=2))
        clips = np.concatenate([next(it)["video"] for _ in range(n // 2 // batch_size)])  # half an epoch each
        levels = clips.reshape(len(clips), -1).astype(np.float64)
        assert np.all(levels.max(1) - levels.min(1) <= 1)  # solid clips: one entry each
        shards.append([int(round((level - 8) / 15)) for level in levels.mean(1)])
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(n))


def expected_counts(bad_kind, n, max_retries=20):
    """Independent replay of LoadVideoClip's replacement rule over one pass of all n indices."""
    counts = np.zeros(len(video.REASONS), np.int64)
    for start in range(n):
        index = start
        for attempt in range(max_retries + 1):
            if index not in bad_kind:
                break
            counts[video.REASONS.index(bad_kind[index])] += 1
            index = (index * 2654435761 + attempt + 1) % n
    return counts


def test_fuzz_200_files_with_a_quarter_bad(tmp_path):
    """200 files, 50 made unusable here in four known ways: one pass over all of them never crashes and counts
    exactly what the test broke (tests/data/test_video.py also fuzzes the decoder with 108 damaged files)."""
    base = [write_video(tmp_path / f"base{i}.mp4", 12, 24, 32, 32) for i in range(3)]
    # entry -> the reason its file must be reported with; at random places, so replacements also hit bad files.
    chosen = np.random.default_rng(0).choice(200, 50, replace=False)
    bad_kind = {int(i): ("missing", "empty", "not_video", "truncated")[j % 4] for j, i in enumerate(chosen)}
    entries = []
    for i in range(200):
        path = tmp_path / f"v{i:03d}.mp4"
        kind = bad_kind.get(i)
        if kind == "empty":
            path.touch()
        elif kind == "not_video":
            path.write_text("garbage " * 100)
        elif kind == "truncated":
            truncate_file(base[i % 3], path, 0.5)  # an interrupted download: ends inside the media data
        elif kind is None:
            shutil.copy(base[i % 3], path)
        entries.append(str(path))
    manifest = tmp_path / "fuzz.csv"
    manifest.write_text("\n".join(f"{p} 0" for p in entries) + "\n")
    srcs = pipeline.video_sources([str(manifest)])
    load = make_load(srcs)
    counts = np.zeros(len(video.REASONS), np.int64)
    for i in range(200):
        out = load({**srcs[0][i], "source": 0}, np.random.default_rng(i))
        assert out["video"].shape == (FRAMES, CROP, CROP, 3)
        counts += out["bad_files"]
    expected = expected_counts(bad_kind, 200)
    assert expected.sum() > len(bad_kind)  # some replacements were bad too
    np.testing.assert_array_equal(counts, expected)
    for i, entry in enumerate(entries):  # every file the test broke is logged with its reason, no good one
        assert pipeline.BAD_FILES.reasons.get(entry) == bad_kind.get(i), entry


def test_budget_stops_a_run_with_too_many_bad_files():
    budget = pipeline.BadFileBudget(max_fraction=0.2, min_files=10)
    one_missing = [int(r == "missing") for r in video.REASONS]
    assert budget.update(one_missing, clips=8)["bad_files_total/missing"] == 1
    with pytest.raises(RuntimeError, match=r"5 of 21 video files could not be used \(missing=1, empty=4\), "
                                           r"more than config.data.video.max_bad_fraction=0.2"):
        budget.update([4 * int(r == "empty") for r in video.REASONS], clips=8)


def test_a_manifest_of_only_bad_files_fails_with_a_clear_error(tmp_path):
    manifest = tmp_path / "bad.csv"
    manifest.write_text(f"{tmp_path / 'a.mp4'} 0\n{tmp_path / 'b.mp4'} 1\n")
    srcs = pipeline.video_sources([str(manifest)])
    with pytest.raises(RuntimeError, match="videos from ManifestSource.* in a row could not be used"):
        make_load(srcs, max_retries=3)({**srcs[0][0], "source": 0}, np.random.default_rng(0))
