"""`data pack`: ArrayRecord shards of decoded clips, counted skips, safe records, and training from them."""

import io
import json

import numpy as np
import pytest

from jepa_jax import masks as masks_lib
from jepa_jax.data import packed, pipeline, video
from tests.data.conftest import read_mark, write_video


@pytest.fixture(scope="module")
def packed_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pack")
    good = [write_video(d / f"v{i}.mp4", 40, 30, 64 + 16 * i, 48) for i in range(5)]
    (d / "empty.mp4").touch()
    lines = [f"{p} {i}" for i, p in enumerate(good)] + [f"{d / 'empty.mp4'} 9", f"{d / 'missing.mp4'} 9"]
    (d / "m.csv").write_text("\n".join(lines) + "\n")
    summary = packed.pack_manifest(str(d / "m.csv"), str(d / "out"), frames_per_clip=4, short_side=32,
                                   frame_step=3, num_shards=2)
    return d / "out", summary


def test_pack_writes_shards_and_counts_skipped_files(packed_dir):
    out, summary = packed_dir
    assert summary["clips"] == 5 and summary["videos"] == 7
    assert summary["bad_files"]["empty"] == 1 and summary["bad_files"]["missing"] == 1
    assert json.loads((out / "pack.json").read_text())["shards"] == ["clips-00000-of-00002.array_record",
                                                                     "clips-00001-of-00002.array_record"]


def test_packed_records_hold_resized_clips_with_labels_and_the_sampled_frames(packed_dir):
    out, _ = packed_dir
    source = packed.PackedClipSource(str(out))
    assert len(source) == 5
    labels = sorted(source[i]["label"] for i in range(5))
    assert labels == [0, 1, 2, 3, 4]
    for i in range(5):
        clip = source[i]["video"]
        assert clip.dtype == np.uint8 and clip.shape[0] == 4 and min(clip.shape[1:3]) == 32
    # The centred window of the official sampling (4 frames, step 3) of a 40-frame video.
    marks = [read_mark(frame) for frame in source[0]["video"]]
    np.testing.assert_array_equal(marks, video.clip_indices(40, 4, 3, None)[0])


def test_records_are_never_unpickled():
    buffer = io.BytesIO()
    np.savez(buffer, video=np.array([{"evil": 1}], dtype=object), label=np.int64(0))
    with pytest.raises(ValueError, match="allow_pickle"):
        packed.decode_record(buffer.getvalue())


def test_training_stream_from_packed_clips(packed_dir):
    out, _ = packed_dir
    maskers = [masks_lib.MultiBlockMasker((2, 3, 3), masks_lib.SHORT_RANGE)]
    stream = pipeline.make_train_dataset(packed.PackedClipSource(str(out)), maskers, 2, seed=0,
                                         load=pipeline.AugmentClip(24), process_index=0, process_count=1)
    batch = next(iter(stream))
    assert batch["video"].shape == (2, 4, 24, 24, 3) and batch["video"].dtype == np.uint8


def test_missing_pack_folder_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="jepa-jax data pack MANIFEST --out"):
        packed.PackedClipSource(str(tmp_path))
