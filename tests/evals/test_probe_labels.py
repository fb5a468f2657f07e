"""Attentive probes on labelled videos: segments and spatial views, the labelled stream, top-k accuracy, view
averaging, bad manifests, and an end-to-end probe run on generated motion-class mp4 files (multi-clip x
multi-view) that must beat chance and whose score must equal the separately computed views'."""

import copy

import jax
import numpy as np
import pytest

from jepa_jax import config as config_lib, probing
from jepa_jax.data import demo, pipeline, sources, transforms, video
from jepa_jax.evals import probe as probe_eval
from jepa_jax.models import probe as probe_lib
from jepa_jax.train import loop
from tests.data.conftest import truncate_file, write_video
from tests.train.test_probe_objective import saved_jepa_run


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_view_averaging_averages_each_views_softmax():
    logits = np.random.default_rng(0).normal(size=(3, 5, 4, 7)) * 3  # [G, E, V, C]
    expected = np.mean([softmax(logits[:, :, v]) for v in range(4)], axis=0)
    np.testing.assert_allclose(probe_eval.view_averaged_probabilities(logits), expected, rtol=1e-5, atol=1e-7)


def test_topk_accuracy_counts_labels_among_the_k_best():
    scores = np.array([[0.1, 0.5, 0.2, 0.9], [0.8, 0.1, 0.05, 0.05], [0.2, 0.3, 0.4, 0.1]])
    labels = np.array([1, 0, 0])
    assert probe_eval.topk_accuracy(scores, labels, 1) == pytest.approx(1 / 3)  # only row 1
    assert probe_eval.topk_accuracy(scores, labels, 2) == pytest.approx(2 / 3)  # row 0: 1 is second best
    assert probe_eval.classification_scores(scores, labels) == {"top1": pytest.approx(1 / 3), "top5": 1.0}


@pytest.mark.parametrize("height,width", [(40, 64), (64, 40)])
def test_spatial_views_are_crops_along_the_long_side(height, width):
    clip = np.random.default_rng(1).integers(0, 256, (3, height, width, 3), dtype=np.uint8)
    views = transforms.spatial_views(clip, 32, 3)
    assert views.shape == (3, 3, 32, 32, 3)
    resized = transforms.resize_clip(clip, (32, 32 * width // height) if height < width else (32 * height // width,
                                                                                              32))
    long_side = max(resized.shape[1:3])
    for k in range(3):  # vjepa2 EvalVideoTransform: start = k * ((long - crop) // (views - 1))
        offset = k * ((long_side - 32) // 2)
        expected = resized[:, :, offset:offset + 32] if height < width else resized[:, offset:offset + 32]
        np.testing.assert_array_equal(views[k], expected)
    np.testing.assert_array_equal(transforms.spatial_views(clip, 32, 1)[0], transforms.eval_transform(clip, 32))


def test_segment_tokens_are_each_segment_encoded_alone_then_concatenated(smoke_config):
    encoder = config_lib.build_encoder(smoke_config)
    video_ = np.random.default_rng(2).integers(0, 256, (2, 16, 64, 64, 3), dtype=np.uint8)
    params = encoder.init(jax.random.key(0), video_[:, :8].astype(np.float32))["params"]
    tokens = probe_lib.frozen_tokens(encoder, params, video_, segments=2)
    alone = [probe_lib.frozen_tokens(encoder, params, video_[:, s * 8:(s + 1) * 8]) for s in range(2)]
    np.testing.assert_allclose(tokens, np.concatenate(alone, axis=1), atol=1e-5)
    assert tokens.shape[1] == 2 * alone[0].shape[1]


def test_labelled_clips_carry_the_label_of_the_file_actually_read(tmp_path):
    good = [write_video(tmp_path / f"c{i}.mp4", num_frames=20, fps=25.0, width=48, height=40) for i in range(3)]
    broken = truncate_file(good[0], tmp_path / "broken.mp4")
    manifest = tmp_path / "train.csv"
    manifest.write_text(f"{good[0]} 0\n{broken} 3\n{good[1]} 1\n{good[2]} 2\n")
    source = sources.ManifestSource(str(manifest))
    load = pipeline.LoadVideoClip([source], 4, 32, frame_step=2, target_fps=None, segments=2, with_targets=True)
    rng = np.random.default_rng(0)
    for index in range(4):
        out = load({"index": index, "source": 0}, rng)
        assert out["video"].shape == (8, 32, 32, 3)
        if index == 1:  # replaced by entry (1 * 2654435761 + 1) mod 4; its label, not the broken file's
            assert out["bad_files"].sum() == 1
            assert out["targets"] == source[(2654435761 + 1) % 4]["label"]
        else:
            assert out["targets"] == source[index]["label"] and out["bad_files"].sum() == 0


def test_eval_views_sample_segments_and_views_and_flag_unusable_files(tmp_path):
    good = write_video(tmp_path / "a.mp4", num_frames=40, fps=25.0, width=64, height=48)
    broken = truncate_file(good, tmp_path / "broken.mp4")
    views = pipeline.EvalViews(4, 32, frame_step=2, target_fps=None, segments=2, views=3)
    out = views({"path": good, "label": 2, "index": 0})
    assert out["video"].shape == (3, 8, 32, 32, 3) and out["targets"] == 2 and out["bad"] == ""
    clips, _ = video.load_clip(good, 4, None, frame_step=2, num_clips=2, allow_clip_overlap=True)
    np.testing.assert_array_equal(out["video"], transforms.spatial_views(clips.reshape((8,) + clips.shape[2:]), 32, 3))
    bad = views({"path": broken, "label": 1, "index": 1})
    assert bad["video"] is None and bad["bad"] in video.REASONS and bad["targets"] == 1


def test_eval_batches_keep_order_skip_unusable_files_and_pad_the_last_batch(tmp_path):
    good = [write_video(tmp_path / f"c{i}.mp4", num_frames=20 + 4 * i, fps=25.0, width=48, height=40)
            for i in range(5)]
    broken = truncate_file(good[0], tmp_path / "broken.mp4")
    manifest = tmp_path / "val.csv"
    manifest.write_text(f"{good[0]} 0\n{broken} 3\n{good[1]} 1\n{good[2]} 2\n{good[3]} 1\n{good[4]} 0\n")
    views = pipeline.EvalViews(4, 32, frame_step=2, target_fps=None, segments=1, views=2)
    skipped = []
    batches = list(pipeline.eval_batches(str(manifest), views, 3, skipped))
    assert [[e["path"] for e in examples] for _, examples in batches] == [good[:3], good[3:]]
    assert [int(e["targets"]) for _, examples in batches for e in examples] == [0, 1, 2, 1, 0]
    assert skipped == [{"path": broken, "reason": skipped[0]["reason"]}] and skipped[0]["reason"] in video.REASONS
    for clips, examples in batches:  # one shape; the last batch repeats its last clip
        assert clips.shape == (3, 2, 4, 32, 32, 3)
        for clip, example in zip(clips, examples + examples[-1:] * (3 - len(examples))):
            np.testing.assert_array_equal(clip, views({"path": example["path"], "label": 0, "index": 0})["video"])


def labels_config(smoke_config, train: str, val: str, **attentive):
    config = copy.deepcopy(smoke_config)
    config.objective, config.data.source = "probe", "video"
    config.data.video.update(manifests=(train,), frame_step=2)
    config.attentive.update(task="labels", num_classes=4, val_manifest=val, segments=2, views=3, num_heads=4,
                            **attentive)
    return config


@pytest.mark.parametrize("lines,field,message", [
    ("a.mp4 0\nb.mp4 7\n", None, r"train.csv': label 7 lies outside \[0, 4\) \(config.attentive.num_classes=4\)"),
    ("a.mp4 2\nb.mp4 2\n", None, r"hold one class only \(label 2\): a classification probe needs"),
    ("\n", None, r"lists no videos or images"),
    ("a.mp4 0\nb.mp4 3\n", ("attentive.num_classes", 0), r"num_classes=0: set it to the number of classes \(the "
                                                          r"training manifests' labels run up to 3, so at least 4\)"),
    ("a.mp4 0\nb.mp4 3\n", ("data.source", "balls"), r"task='labels' reads config.data.source='video', not 'balls'"),
])
def test_bad_labelled_manifests_are_one_line_errors(smoke_config, tmp_path, lines, field, message):
    (tmp_path / "train.csv").write_text(lines)
    (tmp_path / "val.csv").write_text("c.mp4 1\n")
    config = labels_config(smoke_config, str(tmp_path / "train.csv"), str(tmp_path / "val.csv"))
    if field:
        config_lib.override(config, *field)
    with pytest.raises(ValueError, match=message):
        config_lib.validate(config)


def test_a_val_label_outside_the_classes_is_an_error(smoke_config, tmp_path):
    (tmp_path / "train.csv").write_text("a.mp4 0\nb.mp4 1\n")
    (tmp_path / "val.csv").write_text("c.mp4 5\n")
    config = labels_config(smoke_config, str(tmp_path / "train.csv"), str(tmp_path / "val.csv"))
    with pytest.raises(ValueError, match=r"val.csv': label 5 lies outside \[0, 4\)"):
        config_lib.validate(config)


def test_probe_config_takes_the_models_architecture_and_counts_the_classes(smoke_config, tmp_path):
    model = tmp_path / "model"
    saved_jepa_run(smoke_config, str(model))
    trained = copy.deepcopy(smoke_config)
    trained.attentive.depth, trained.data.world.num_balls = 3, 2  # a pretraining run's own probe fields
    config_lib.write_json(trained, str(model / "config.json"))
    builtin = probing.probe_config(str(model), "builtin:count")
    assert builtin.attentive.depth == 1 and builtin.data.world.num_balls == 2  # schema protocol, model's world
    paths = demo.write_motion_videos(str(tmp_path / "videos"), num_train=4, num_val=4)
    base = copy.deepcopy(smoke_config)
    base.model.size = "tiny"  # the model's own architecture wins
    config = probing.probe_config(str(model), paths["train"], paths["val"], base=base)
    assert config.model.size == smoke_config.model.size and config.attentive.num_classes == 4
    assert (config.objective, config.data.source, config.attentive.task) == ("probe", "video", "labels")
    assert probing.probe_config(str(model), "builtin:count").attentive.task == "count"
    with pytest.raises(ValueError, match=r"--data .*train.csv is a labelled manifest: give the held-out one with --val"):
        probing.probe_config(str(model), paths["train"])


@pytest.mark.slow
def test_probe_on_motion_videos_beats_chance_with_views_averaged(smoke_config, tmp_path):
    paths = demo.write_motion_videos(str(tmp_path / "videos"), num_train=32, num_val=32)
    config = labels_config(smoke_config, paths["train"], paths["val"], features="pixels",
                           learning_rates=(5e-3, 2e-3), weight_decays=(0.01,))
    config.train.update(steps=150, log_every=50)
    config.probe.batch_size = 24
    workdir = str(tmp_path / "probe")
    loop.train(config, workdir)
    result = probe_eval.probe_run_scores(workdir)
    assert result["chance"] == 0.25 and result["num_test"] == 32 and result["bad_files"] == 0
    assert result["best"]["top1"] >= 0.5, result  # chance is 0.25; P(>= 16 of 32 right by chance) < 1e-3
    # member 1's top-1, from each view's logits computed separately and their softmax averaged here
    params = probe_eval.checkpoint.Checkpointer(workdir).restore_params(150)["params"]
    member = jax.tree.map(lambda x: x[1], params["probe"])
    head, encoder = config_lib.build_predictor(config), config_lib.build_encoder(config)
    correct = 0
    for entry in sources.ManifestSource(paths["val"]).entries:
        clips, _ = video.load_clip(entry.path, 8, None, frame_step=2, num_clips=2, allow_clip_overlap=True)
        views = transforms.spatial_views(clips.reshape((16,) + clips.shape[2:]), 64, 3)
        logits = [np.asarray(head.apply({"params": member}, probe_lib.frozen_tokens(
            encoder, None, view[None], "pixels", segments=2)))[0] for view in views]
        correct += int(np.argmax(np.mean([softmax(l) for l in logits], axis=0)) == entry.label)
    assert result["members"][1]["top1"] == pytest.approx(correct / 32)
