"""Intuitive-physics surprise (evals.physics) against a direct reference, its metrics against brute force, and what
`evaluate` / `jepa-jax eval physics` write, on the built-in pairs and on a manifest of video pairs."""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from jepa_jax import config as config_lib, export
from jepa_jax.data import video
from jepa_jax.evals import physics, physics_report
from jepa_jax.models import pixel_decoder, vit
from jepa_jax.worlds import BallsWorldConfig, physics_pairs
from tests.conftest import run_cli


def _with_future_mask(config):
    masks = {k: v.to_dict() for k, v in config_lib.copy_config(config).masks.items()}
    config.masks = ml_collections.ConfigDict({**masks, "future": {"context_frames_ratio": 0.5}}, sort_keys=False)
    return config


def _layer_norm(x):
    x = np.asarray(x, np.float64)
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)


def _reference(model, clip, start, context, pixels=False):
    """Surprise of one window computed directly: context = the first `context` frames' tokens."""
    window = clip[None, start:start + model.window]
    k = context // model.config.model.tubelet_size * (model.size // model.config.model.patch_size) ** 2
    n = model.window // model.config.model.tubelet_size * (model.size // model.config.model.patch_size) ** 2
    frames = vit.normalize_video(window)
    if pixels:
        targets = np.asarray(pixel_decoder.pixel_targets(window, model.encoder.patch_size, model.encoder.tubelet_size))
    else:
        targets = _layer_norm(model.encoder.apply({"params": model.params["target"]}, frames))
    context_idx, target_idx = np.arange(k)[None], np.arange(k, n)[None]
    features = model.encoder.apply({"params": model.params["context"]}, frames, keep=context_idx)
    grid = vit.token_grid(window.shape, model.config.model.patch_size, model.config.model.tubelet_size)
    prediction = model.predictor.apply({"params": model.params["predictor"]}, features, context_idx, target_idx, grid,
                                       mask_index=model.mask_index)
    return np.abs(np.asarray(prediction, np.float64) - targets[:, k:]).mean()


@pytest.mark.parametrize("objective", ["sigreg", "pixels"])
def test_surprise_matches_a_direct_computation_per_clip_context_and_window(smoke_config, objective):
    config = _with_future_mask(smoke_config)
    config.objective = objective
    model = physics.random_model(config, seed=0)
    other = physics.random_model(config, seed=1)  # distinct target weights: context and targets must not swap
    tokens = model.params["predictor"]["mask_tokens"]
    model.params = {**model.params, "target": other.params["target"],
                    "predictor": {**model.params["predictor"],
                                  "mask_tokens": jax.random.normal(jax.random.key(2), tokens.shape)}}
    assert model.mask_index == 2  # the causal config's token
    clips = np.random.default_rng(0).integers(0, 256, (2, 12, 64, 64, 3), dtype=np.uint8)
    values = physics.surprise(model, clips, stride=2, batch_size=4)  # 6 windows: one padded chunk
    assert values.shape == (2, 3, 3)  # clips, contexts (2, 4, 6 frames), windows (starts 0, 2, 4)
    for b in range(2):
        for c, context in enumerate((2, 4, 6)):
            for w, start in enumerate((0, 2, 4)):
                want = _reference(model, clips[b], start, context, pixels=objective == "pixels")
                np.testing.assert_allclose(values[b, c, w], want, rtol=2e-5, err_msg=(b, context, start))


def _context_features(model, window, k):
    """[k, D]: the target encoder's layer-normalised features of a window's first k tokens, encoded alone."""
    frames = vit.normalize_video(window[None])
    return _layer_norm(model.encoder.apply({"params": model.params["target"]}, frames, keep=np.arange(k)[None]))[0]


def _distinct_targets(model, seed: int = 1):
    """The model with target-encoder weights of another seed (so that a mix-up of context and target shows)."""
    other = physics.random_model(model.config, seed=seed)
    model.params = {**model.params, "target": other.params["target"]}
    return model


def test_prediction_check_compares_the_predictor_with_the_token_mean_and_the_copy_floors(smoke_config):
    model = _distinct_targets(physics.random_model(_with_future_mask(smoke_config), seed=0))
    windows = np.random.default_rng(1).integers(0, 256, (3, 8, 64, 64, 3), dtype=np.uint8)
    check = physics.prediction_check(model, windows, context=4)  # 2 of 4 time slices of 64 tokens
    targets = np.stack([_layer_norm(model.encoder.apply({"params": model.params["target"]},
                                                        vit.normalize_video(w[None])))[0] for w in windows])
    hidden = targets[:, 128:]
    last = np.stack([_context_features(model, w, 128)[64:] for w in windows])
    assert check["predictor"] == pytest.approx(np.mean([_reference(model, w, 0, 4) for w in windows]), rel=2e-5)
    assert check["token_mean"] == pytest.approx(np.abs(hidden - hidden.mean(0)).mean(), rel=2e-5)
    # rel 1e-6: on noise the copy of the targets' own last slice (which saw the future) is off by only ~6e-6
    assert check["copy_last_slice"] == pytest.approx(
        np.abs(hidden - np.concatenate([last, last], axis=1)).mean(), rel=1e-6)
    assert check["target_std"] == pytest.approx(hidden.std(0).mean(), rel=2e-5)
    assert check["windows"] == 3 and check["context"] == 4


def test_the_copy_floor_scores_the_last_slice_of_the_context_alone_against_every_later_one(smoke_config):
    import dataclasses  # pylint: disable=g-import-not-at-top
    model = _distinct_targets(physics.random_model(smoke_config, seed=0))
    copy = dataclasses.replace(model, name="copy_last_slice", copy_last_slice=True)
    clips = np.random.default_rng(2).integers(0, 256, (2, 10, 64, 64, 3), dtype=np.uint8)
    values = physics.surprise(copy, clips, stride=2, batch_size=4)  # windows at 0 and 2; contexts 2, 4, 6
    for b in range(2):
        for w, start in enumerate((0, 2)):
            window = clips[b, start:start + 8]
            targets = _layer_norm(model.encoder.apply({"params": model.params["target"]},
                                                      vit.normalize_video(window[None])))[0]
            slices = targets.reshape(4, 64, -1)  # 4 time slices of 8 x 8 tokens
            for c, context in enumerate((2, 4, 6)):
                k = context // 2 * 64
                last = _context_features(model, window, k)[k - 64:]  # what the context alone gives: no future
                want = np.abs(slices[context // 2:] - last).mean()
                np.testing.assert_allclose(values[b, c, w], want, rtol=2e-5, err_msg=(b, start, context))
    assert not np.allclose(values, physics.surprise(model, clips, stride=2, batch_size=4))  # not the predictor's


def test_mask_index_is_the_causal_configs_token_or_the_first(smoke_config):
    assert physics.random_model(smoke_config).mask_index == 0
    assert physics.random_model(_with_future_mask(smoke_config)).mask_index == 2


def test_pairwise_accuracy_counts_ties_half_and_auroc_is_the_mann_whitney_statistic():
    assert physics.pairwise_accuracy(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 1.0])) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    possible, impossible = rng.integers(0, 5, 30).astype(float), rng.integers(1, 6, 40).astype(float)
    brute = np.mean([float(i > p) + 0.5 * float(i == p) for i in impossible for p in possible])
    assert physics.auroc(possible, impossible) == pytest.approx(brute)
    assert physics.per_clip(np.array([[1.0, 3.0, 2.0]]), "max")[0] == 3.0
    assert physics.per_clip(np.array([[1.0, 3.0, 2.0]]), "mean")[0] == 2.0


def test_bootstrap_interval_covers_the_accuracy_and_is_deterministic():
    rng = np.random.default_rng(1)
    possible, impossible = rng.normal(size=400), rng.normal(size=400)
    low, high = physics.bootstrap_interval(possible, impossible, seed=3)
    accuracy = physics.pairwise_accuracy(possible, impossible)
    assert low < accuracy < high and 0.05 < high - low < 0.15  # about +-1.96 sqrt(0.25 / 400) = +-0.049
    assert physics.bootstrap_interval(possible, impossible, seed=3) == (low, high)
    assert physics.bootstrap_interval(possible, possible + 1) == (1.0, 1.0)


@pytest.fixture(name="smoke_run", scope="module")
def smoke_run_fixture(tmp_path_factory):
    """A 4-step tiny-world smoke run with a causal mask config: its run directory."""
    from jepa_jax.train import loop  # pylint: disable=g-import-not-at-top
    from tests.conftest import TINY_WORLD  # pylint: disable=g-import-not-at-top
    config = _with_future_mask(config_lib.load(TINY_WORLD, "smoke"))
    config.probe.report = False
    run = str(tmp_path_factory.mktemp("physics") / "run")
    loop.train(config, run)
    return run


def test_evaluate_scores_every_category_for_the_model_and_its_random_init(smoke_run, tmp_path):
    out = str(tmp_path / "physics")
    summary = physics_report.evaluate(smoke_run, out, num_pairs=3, baseline=smoke_run)
    assert summary["context"] == 4 and summary["num_pairs"] == 3 * len(physics_pairs.CATEGORIES)
    assert set(summary["scores"]) == {"trained", "random_init", "copy_last_slice", "baseline"}
    for scores in summary["scores"].values():
        assert set(scores) == set(physics_pairs.CATEGORIES)
        for s in scores.values():
            assert s["pairs"] == 3 and s["ci95"][0] <= s["accuracy"] <= s["ci95"][1] and 0 <= s["auroc"] <= 1
    assert summary["scores"]["baseline"] == summary["scores"]["trained"]  # the same weights score the same
    written = json.load(open(os.path.join(out, "physics.json"), encoding="utf-8"))
    assert set(written["by_context"]["trained"]) == {f"{c}/{r}" for c in (2, 4, 6) for r in ("max", "mean")}
    assert written["by_context"]["trained"]["4/max"] == summary["scores"]["trained"]
    assert summary["prediction_check"]["trained"]["windows"] == 3 * len(physics_pairs.CATEGORIES)
    report = open(os.path.join(out, "physics_report.md"), encoding="utf-8").read()
    assert "| random_init |" in report and "copy_last_slice accuracy" in report
    check = summary["prediction_check"]["copy_last_slice"]
    assert check["predictor"] == pytest.approx(check["copy_last_slice"])  # it is the copy
    for name in ("physics_report.md", "physics_surprise.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0


def test_evaluate_scores_one_floor_per_random_init_draw(smoke_run, tmp_path):
    summary = physics_report.evaluate(smoke_run, str(tmp_path / "physics"), num_pairs=2, seed=3, random_inits=2)
    assert set(summary["scores"]) == {"trained", "random_init", "random_init_4", "copy_last_slice"}
    checks = summary["prediction_check"]
    assert checks["random_init"]["predictor"] != pytest.approx(checks["random_init_4"]["predictor"])  # two draws
    with pytest.raises(ValueError, match="--random_inits=0"):
        physics_report.evaluate(smoke_run, str(tmp_path / "bad"), random_inits=0)


def _write_pairs(folder, rows):
    """Pairs of the built-in world as mp4 files and a manifest; rows: (category, frames of the impossible clip)."""
    lines = []
    config = BallsWorldConfig(num_frames=12)
    for i, (category, frames) in enumerate(rows):
        pair = physics_pairs.make_pair(config, category, i)
        video.write_video(os.path.join(folder, f"p{i}.mp4"), pair.possible.frames, 8)
        video.write_video(os.path.join(folder, f"i{i}.mp4"), pair.impossible.frames[:frames], 8)
        lines.append(f"p{i}.mp4 i{i}.mp4 {category}\n")
    manifest = os.path.join(folder, "pairs.txt")
    with open(manifest, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return manifest


def test_a_manifest_of_video_pairs_runs_through_the_same_evaluation(smoke_run, tmp_path):
    manifest = _write_pairs(str(tmp_path), [("continuity", 12), ("gravity", 12), ("continuity", 12)])
    summary = physics_report.evaluate(smoke_run, str(tmp_path / "out"), pairs=manifest)
    assert summary["num_pairs"] == 3 and set(summary["scores"]["trained"]) == {"continuity", "gravity"}
    assert summary["scores"]["trained"]["continuity"]["pairs"] == 2


def test_bad_pairs_and_models_are_one_line_errors(smoke_run, tmp_path):
    folder = str(tmp_path)
    manifest = _write_pairs(folder, [("continuity", 12), ("gravity", 10)])
    with pytest.raises(ValueError, match=r"pair 2 of .*pairs.txt: .*p1.mp4 is 12 x 64x64 but .*i1.mp4 is 10 x"):
        physics_report.evaluate(smoke_run, folder, pairs=manifest)
    with open(manifest, "a", encoding="utf-8") as f:
        f.write("p0.mp4 i0.mp4 levitation\n")
    with pytest.raises(ValueError, match=r"pairs.txt:3: unknown physics category 'levitation'"):
        physics_report.read_pair_manifest(manifest)
    with open(manifest, "w", encoding="utf-8") as f:
        f.write("p0.mp4 missing.mp4 gravity\n")
    with pytest.raises(FileNotFoundError, match=r"pairs.txt:1: video .*missing.mp4' does not exist"):
        physics_report.read_pair_manifest(manifest)
    encoder_only = os.path.join(folder, "encoder_only")
    export.export(smoke_run, encoder_only, "native", groups=("encoder",))
    with pytest.raises(ValueError, match="has no predictor: surprise needs one"):
        physics_report.evaluate(encoder_only, folder)
    with pytest.raises(ValueError, match="reduce='median': choose one of"):
        physics_report.evaluate(smoke_run, folder, reduce="median")
    with pytest.raises(ValueError, match="--num_pairs=0: must be a positive integer"):
        physics_report.evaluate(smoke_run, folder, num_pairs=0)


@pytest.mark.slow
def test_cli_eval_physics_prints_one_json_line(smoke_run, tmp_path):
    out = str(tmp_path / "cli")
    result = run_cli("eval", "physics", "--model", smoke_run, "--out", out, "--num_pairs", "2")
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["num_pairs"] == 12 and line["report"] == os.path.join(out, "physics_report.md")
    assert set(line["scores"]["random_init"]) == set(physics_pairs.CATEGORIES)


def test_a_one_ball_world_skips_the_categories_that_need_two_balls(smoke_config):
    config = config_lib.copy_config(smoke_config)
    config.data.world.num_balls = 1
    pairs = physics_report.builtin_pairs(physics.random_model(config, seed=0), num_pairs=1, seed=0)
    assert pairs.categories == [c for c in physics_pairs.CATEGORIES if c not in ("solidity", "constancy")]
