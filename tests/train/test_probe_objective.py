"""The probe objective through the engine: built-in task targets, a grid of attentive probes trained on a frozen
pretrained encoder (only the probes move, each member its own way), held-out scores of a probe run, config
errors."""

import copy
import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from jepa_jax import checkpoint, config as config_lib
from jepa_jax.data import pipeline
from jepa_jax.evals import probe as probe_eval, ridge, world_probe
from jepa_jax.models import probe as probe_lib, vit
from jepa_jax.train import loop
from tests.train.test_step import host_batches, run_steps


def probe_config(smoke_config, **attentive):
    config = copy.deepcopy(smoke_config)
    config.objective = "probe"
    config.attentive.update(depth=2, num_heads=4, learning_rates=(3e-3, 3e-4), weight_decays=(0.01, 0.4),
                            **attentive)
    config.probe.update(num_train=32, num_test=16, batch_size=16)
    return config


@pytest.mark.parametrize("task", ["position", "velocity", "ahead"])
def test_task_targets_are_the_worlds_states_in_standardised_units(smoke_config, task):
    config = probe_config(smoke_config, task=task, ahead=3)
    frames, size = config.data.world.num_frames, config.data.world.size
    example = pipeline.probe_world(config, seed=5, num_clips=2)[1]
    longer = copy.deepcopy(config.data.world)
    longer.num_frames = frames + (3 if task == "ahead" else 0)
    clip = pipeline.BallsWorldSource(pipeline.BallsWorldConfig(**longer), num_clips=2, seed=5)[1]
    short = pipeline.world_source(config, seed=5, num_clips=2)[1]
    np.testing.assert_array_equal(example["video"], short["video"])  # the longer run starts as the clip does
    if task == "velocity":
        expected = clip["velocity"][frames // 2] / pipeline.BallsWorldConfig().max_speed
    else:
        expected = (clip["position"][frames // 2 if task == "position" else frames - 1 + 3] - size / 2) / (size / 4)
    np.testing.assert_allclose(example["targets"], expected.reshape(-1), rtol=1e-6)
    assert example["targets"].shape == (2 * config.data.world.num_balls,)


def test_motion_targets_are_position_velocity_and_ahead_of_the_same_clip(smoke_config):
    motion = pipeline.probe_world(probe_config(smoke_config, task="motion", ahead=3), seed=5, num_clips=2)[1]
    parts = [pipeline.probe_world(probe_config(smoke_config, task=task, ahead=3), seed=5, num_clips=2)[1]
             for task in pipeline.MOTION_TASKS]
    np.testing.assert_array_equal(motion["video"], parts[0]["video"])
    np.testing.assert_array_equal(motion["targets"], np.concatenate([p["targets"] for p in parts]))
    slices = pipeline.task_slices("motion", motion["targets"].shape[0])
    for task, part in zip(pipeline.MOTION_TASKS, parts):
        np.testing.assert_array_equal(motion["targets"][slices[task]], part["targets"])


@pytest.mark.parametrize("task", ["count", "collision"])
def test_classification_targets_come_from_the_worlds_ground_truth(smoke_config, task):
    config = probe_config(smoke_config, task=task, ahead=3)
    frames = config.data.world.num_frames
    examples = pipeline.probe_world(config, seed=5, num_clips=24)
    longer = copy.deepcopy(config.data.world)
    longer.num_frames = frames + (3 if task == "collision" else 0)
    source = pipeline.BallsWorldSource(pipeline.BallsWorldConfig(**longer), num_clips=24, seed=5,
                                       vary_count=task == "count")
    labels = [int(examples[i]["targets"]) for i in range(24)]
    if task == "count":  # one to num_balls balls, label = count - 1
        expected = [len(source[i]["radius"]) - 1 for i in range(24)]
    else:  # two balls touch during one of the 3 steps after the clip's last frame
        expected = [int(source[i]["contacts"][frames:frames + 3].any()) for i in range(24)]
    assert labels == expected and len(set(labels)) > 1
    assert config_lib.probe_classes(config) == (config.data.world.num_balls if task == "count" else 2)
    np.testing.assert_array_equal(examples[0]["video"], source[0]["video"][:frames])


def saved_jepa_run(smoke_config, directory: str):
    """A smoke EMA run after two steps, checkpointed at step 2 with its config."""
    config = copy.deepcopy(smoke_config)
    config.objective = "ema"
    run = loop.build_run(config)
    state, _ = run_steps(run, host_batches(config, run, 2))
    saver = checkpoint.Checkpointer(directory)
    saver.save(2, state, config=config)
    saver.wait()
    saver.close()
    return jax.device_get(state.ema_params)


@pytest.mark.slow
def test_probe_grid_trains_on_the_frozen_pretrained_encoder(smoke_config, tmp_path):
    target_encoder = saved_jepa_run(smoke_config, str(tmp_path / "jepa"))
    config = probe_config(smoke_config, encoder_from=str(tmp_path / "jepa"))
    run = loop.build_run(config)
    state, _, _ = loop.restore_or_start(config, run, checkpoint.Checkpointer(str(tmp_path / "probe")), None,
                                        str(tmp_path / "probe"))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.params["encoder"]), target_encoder)
    start = jax.device_get(state.params["probe"])
    assert jax.tree.leaves(start)[0].shape[0] == 4  # 2 rates x 2 decays, one copy of one init each
    stream = iter(loop.data_stream(config, run.maskers, config.data.batch_size))
    batches = [next(stream) for _ in range(3)]
    assert {k: v.shape for k, v in batches[0].items()} == {"video": (8, 8, 64, 64, 3), "targets": (8, 6)}
    trained, history = run_steps(dataclasses.replace(run, state=state), batches)
    trained = jax.device_get(trained)
    jax.tree.map(np.testing.assert_array_equal, trained.params["encoder"], target_encoder)  # frozen
    kernels = trained.params["probe"]["linear"]["kernel"]
    moved = [float(np.abs(kernels[g] - start["linear"]["kernel"][g]).max()) for g in range(4)]
    assert moved[0] > moved[2] > 0 and moved[1] > moved[3] > 0  # lr 3e-3 members move further than 3e-4 ones
    assert all(np.isfinite(m["loss"]) and m["best_probe_loss"] <= m["mean_probe_loss"] + 1e-6 for m in history)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["position", "motion"])
def test_a_probe_run_scores_every_member_on_held_out_clips(smoke_config, tmp_path, task):
    config = probe_config(smoke_config, task=task)
    config.train.update(steps=3, log_every=1)
    workdir = str(tmp_path / "probe")
    loop.train(config, workdir)
    result = probe_eval.probe_run_scores(workdir)
    assert [(m["lr"], m["weight_decay"]) for m in result["members"]] == config_lib.probe_members(config)
    assert result["best"] == max(result["members"], key=lambda m: m["r2"])
    assert result["step"] == 3 and np.isfinite(result["ridge_quad"]) and result["metric"] == "r2"
    # member 2's score, recomputed here from its own weights and the held-out clips
    weights = checkpoint.Checkpointer(workdir).restore_params(3)["params"]
    examples = probe_eval.held_out_examples(config, config.probe.num_train + config.probe.num_test)
    test_video, test_targets = examples["video"][32:], examples["targets"][32:]
    encoder, head = config_lib.build_encoder(config), config_lib.build_predictor(config)
    tokens = vit.encode(encoder, weights["encoder"], test_video)
    member = jax.tree.map(lambda x: x[2], weights["probe"])
    outputs = np.asarray(head.apply({"params": member}, tokens))
    slices = pipeline.task_slices(task, test_targets.shape[-1])
    per_task = {name: ridge.r2_score(test_targets[:, s], outputs[:, s]) for name, s in slices.items()}
    assert result["members"][2]["r2"] == pytest.approx(np.mean(list(per_task.values())), abs=1e-5)
    assert list(result["tasks"]) == list(pipeline.scored_tasks(task))
    for name, score in per_task.items():  # each task: its own best member, and the ridge on its own targets
        assert result["members"][2][name] == pytest.approx(score, abs=1e-5)
        assert result["tasks"][name]["score"] == max(m[name] for m in result["members"])
    quads = world_probe.pool_tokens(vit.encode(encoder, weights["encoder"], examples["video"]),
                                    config_lib.token_grid(config))["quad"]
    name, s = list(slices.items())[-1]
    ridge_score = ridge.ridge_probe(quads[:32], examples["targets"][:32, s], quads[32:], test_targets[:, s])["score"]
    assert result["tasks"][name]["ridge_quad"] == pytest.approx(ridge_score, abs=1e-6)
    with open(os.path.join(workdir, "probe.json"), encoding="utf-8") as f:
        assert json.load(f)["best"] == result["best"]
    assert os.path.exists(os.path.join(workdir, "probe.md"))


def test_the_ridge_reference_pools_each_encoder_layers_tokens_on_its_own(smoke_config):
    config = probe_config(smoke_config, out_layers=(0, 1))
    grid = config_lib.token_grid(config)
    layers = np.random.default_rng(0).normal(size=(2, 5, int(np.prod(grid)), 32))  # [L, M, N, D]
    features = probe_eval._quadrant_features(config, np.concatenate(layers, axis=1))  # pylint: disable=protected-access
    np.testing.assert_allclose(features, np.concatenate([vit.pool_quadrants(x, grid) for x in layers], axis=-1))


def test_pixel_features_are_each_tubelets_normalised_pixels(smoke_config):
    config = probe_config(smoke_config, features="pixels")
    config_lib.validate(config)
    assert config_lib.probe_token_width(config) == 2 * 8 * 8 * 3
    video = np.random.default_rng(0).integers(0, 256, (2, 8, 64, 64, 3), dtype=np.uint8)
    tokens = probe_lib.frozen_tokens(config_lib.build_encoder(config), None, video, "pixels")
    np.testing.assert_allclose(tokens, vit.patchify(vit.normalize_video(video), 8, 2))


@pytest.mark.parametrize("field,value,message", [
    ("data.source", "video", r"config.attentive.task='position' reads config.data.source='balls', not 'video'"),
    ("attentive.segments", 2, r"config.attentive.segments=2 and views=1 apply to labelled videos"),
    ("attentive.num_heads", 5, r"config.attentive.num_heads=5 must divide the encoder token width 32"),
    ("attentive.encoder_from", "runs/x", r"config.attentive.features='pixels' reads no encoder"),
    ("attentive.task", "colour", r"config.attentive.task='colour' is not valid: choose one of"),
    ("attentive.learning_rates", (), r"config.attentive.learning_rates and weight_decays must each hold"),
    ("attentive.out_layers", (0, 2), r"config.attentive.out_layers=\(0, 2\): encoder blocks are numbered 0 to 1 "
                                     r"\(config.model has 2\)"),
])
def test_bad_probe_configs_are_one_line_errors(smoke_config, field, value, message):
    config = probe_config(smoke_config)
    section, name = field.split(".")
    config[section][name] = value
    if field == "data.source":
        config.data.video.manifests = ("unused.csv",)
    if field == "attentive.encoder_from":
        config.attentive.features = "pixels"
    with pytest.raises(ValueError, match=message):
        config_lib.validate(config)


def test_an_encoder_of_another_architecture_is_a_one_line_error_before_building(smoke_config, tmp_path):
    saved_jepa_run(smoke_config, str(tmp_path / "jepa"))
    config_lib.write_json(smoke_config, str(tmp_path / "jepa" / "config.json"))
    config = probe_config(smoke_config, encoder_from=str(tmp_path / "jepa"))
    config.model.patch_size = 16  # 4 x 4 x 4 tokens instead of 4 x 8 x 8
    with pytest.raises(ValueError, match=r"encoder_from='.*jepa' holds an encoder with model.patch_size=8, this "
                                         r"config has 16: set --config.model.patch_size=8"):
        loop.build_run(config)

