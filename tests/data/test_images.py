"""Images: class folders (I-JEPA), still clips mixed into video training, unusable images counted."""

import numpy as np
import pytest
from PIL import Image

from jepa_jax import masks as masks_lib
from jepa_jax.data import images, pipeline, sources, video
from tests.data.conftest import write_video


def save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return str(path)


def test_image_folder_labels_are_sorted_class_indices(tmp_path):
    for cls in ("zebra", "ant"):
        for k in range(2):
            save(tmp_path / cls / f"{k}.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "ant" / "readme.txt").write_text("x")
    entries = sources.read_manifest(f"imagefolder:{tmp_path}")
    assert [(e.path.split("/")[-2], e.label) for e in entries] == [("ant", 0), ("ant", 0), ("zebra", 1),
                                                                   ("zebra", 1)]
    with pytest.raises(FileNotFoundError, match="imagefolder:ROOT"):
        sources.read_manifest(f"imagefolder:{tmp_path / 'nope'}")


def test_images_become_rgb_still_clips(tmp_path):
    gray = save(tmp_path / "g.png", np.full((6, 10), 77, np.uint8), "L")
    rgba = save(tmp_path / "a.png", np.full((6, 10, 4), 200, np.uint8), "RGBA")
    for path in (gray, rgba):
        clip = images.image_clip(path, 4)
        assert clip.shape == (4, 6, 10, 3) and clip.dtype == np.uint8
        assert np.all(clip == clip[:1])


@pytest.mark.parametrize("content,reason", [(None, "missing"), (b"", "empty"), (b"hello, not an image", "not_video")])
def test_unusable_images_raise_video_errors(tmp_path, content, reason):
    path = tmp_path / "x.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(video.VideoError) as err:
        images.load_image(str(path))
    assert err.value.reason == reason


def test_truncated_jpeg_is_undecodable(tmp_path):
    good = save(tmp_path / "ok.jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    data = open(good, "rb").read()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 3])
    with pytest.raises(video.VideoError) as err:
        images.load_image(str(tmp_path / "cut.jpg"))
    assert err.value.reason == "undecodable"


def test_images_mixed_into_video_training(tmp_path):
    clip_path = write_video(tmp_path / "v.mp4", 20, 24, 48, 32)
    image_path = save(tmp_path / "img.jpg", np.full((40, 30, 3), 128, np.uint8))
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"{clip_path} 0\n{image_path} 1\n")
    srcs = pipeline.video_sources([str(manifest)])
    maskers = [masks_lib.MultiBlockMasker((2, 2, 2), masks_lib.MaskConfig(num_blocks=1, spatial_scale=(0.25, 0.25)))]
    load = pipeline.LoadVideoClip(srcs, 4, 16, frame_step=2, target_fps=None)
    batch = next(iter(pipeline.make_train_dataset(srcs, maskers, 2, seed=0, load=load, process_index=0,
                                                  process_count=1)))
    assert batch["video"].shape == (2, 4, 16, 16, 3) and batch["bad_files"].sum() == 0
    still = [clip for clip in batch["video"] if np.all(clip == clip[:1])]
    assert len(still) == 1 and abs(float(still[0].mean()) - 128) < 2
