"""Published recipes: every hyper-parameter against a table transcribed from the official configs, parameter
counts against the official models' (both in docs/official_reference.md), and a dry run (abstract init +
lowering) on 8 fake devices."""

import os

import jax
import numpy as np
import pytest

from jepa_jax import config as config_lib
from jepa_jax.models import posemb
from jepa_jax.train import loop, optim
from tests.conftest import REPO

CONFIGS = os.path.join(REPO, "experiments", "configs")

V1 = dict(frames=16, frame_step=4, fps=0.0, steps=90_000, warmup=12_000, start_lr=2e-4, lr=6.25e-4, final_lr=1e-6,
          wd=(0.04, 0.4), ema=(0.998, 1.0), pred=(384, 12, 16), pos="sincos", seed=234, clip=10.0,
          schedule="warmup_cosine", weights=(), remat="none", dtype="bfloat16")
V2 = dict(frames=16, frame_step=0, fps=4.0, warmup=12_000, start_lr=1e-4, lr=5.25e-4, final_lr=5.25e-4,
          wd=(0.04, 0.04), ema=(0.99925, 0.99925), pred=(384, 12, 12), pos="rope", seed=239, clip=0.0,
          schedule="warmup_cosine", weights=(0.335, 0.1, 0.565), remat="nothing_saveable", crop=256, batch=3072,
          dtype="bfloat16")
COOLDOWN = {**V2, "frames": 64, "warmup": 0, "start_lr": 5.25e-4, "final_lr": 1e-6, "schedule": "linear_decay"}
# (file[:arg]) -> expected hyper-parameters (docs/official_reference.md 5.2 V-JEPA, 5.3 V-JEPA 2).
TABLE = {
    "vjepa_vitl16.py": {**V1, "size": "large", "crop": 224, "batch": 3072},
    "vjepa_vith16.py": {**V1, "size": "huge", "crop": 224, "batch": 3072},
    "vjepa_vith16_384.py": {**V1, "size": "huge", "crop": 384, "batch": 2400},
    "vjepa2_vitl16.py": {**V2, "size": "large", "steps": 3_000},
    "vjepa2_vith16.py": {**V2, "size": "huge", "steps": 3_000},
    "vjepa2_vitg16.py": {**V2, "size": "giant", "steps": 240_000},
    "vjepa2_cooldown_64f.py:vitl": {**COOLDOWN, "size": "large", "steps": 12_000},
    "vjepa2_cooldown_64f.py:vith": {**COOLDOWN, "size": "huge", "steps": 12_000},
    "vjepa2_cooldown_64f.py:vitg": {**COOLDOWN, "size": "giant", "steps": 120},
    "vjepa2_cooldown_64f.py:vitg384": {**COOLDOWN, "size": "giant", "crop": 384, "steps": 12_000},
}
# Trainable parameters of the official modules (docs/official_reference.md 1, 3). The official V-JEPA 2 ViT-g
# predictor count includes 10 mask tokens; ours has one per mask config (2), i.e. 8 x 384 fewer.
ENCODER_PARAMS = {"large": 303_885_312, "huge": 631_648_000, "giant": 1_012_173_952}
PREDICTOR_PARAMS = {"large": 22_082_944, "huge": 22_279_808, "giant": 22_381_312 - 8 * 384}


def load(name):
    path, _, arg = name.partition(":")
    return config_lib.load(os.path.join(CONFIGS, path), arg or None)


def test_every_published_config_file_is_in_the_table():
    unpublished = ("tiny_world.py", "ijepa_vith14.py", "pusht_ac.py", "reacher_ac.py", "bench_vjepa2.py")
    files = {f for f in os.listdir(CONFIGS) if f.endswith(".py") and f not in unpublished}
    assert files == {name.partition(":")[0] for name in TABLE}


def test_ijepa_vith14_matches_the_official_recipe():
    """ijepa:configs/in1k_vith14_ep300.yaml (ipe = 1,281,167 // 2048 = 625)."""
    config = load("ijepa_vith14.py")
    config_lib.validate(config)
    m, v, o = config.model, config.data.video, config.optim
    assert (m.size, m.patch_size, m.tubelet_size, m.pos_embedding) == ("huge", 14, 1, "sincos")
    assert (m.predictor.width, m.predictor.depth, m.predictor.num_heads) == (384, 12, 16)
    assert (v.crop_size, v.frames_per_clip, tuple(v.scale), v.flip) == (224, 1, (0.3, 1.0), 0.0)
    assert (config.data.batch_size, config.train.steps, o.warmup_steps) == (2048, 300 * 625, 40 * 625)
    assert (o.start_lr, o.lr, o.final_lr, o.weight_decay, o.final_weight_decay, o.ipe_scale, o.grad_clip) == (
        2e-4, 1e-3, 1e-6, 0.04, 0.4, 1.0, 0.0)
    assert (config.ema.start, config.ema.end, config.objective, config.loss.kind) == (0.996, 1.0, "ema", "smooth_l1")
    assert config.masks.to_dict() == {"ijepa": dict(num_targets=4, target_scale=(0.15, 0.2),
                                                    context_scale=(0.85, 1.0), aspect_ratio=(0.75, 1.5))}
    state = loop.build_run(config, abstract=True).state
    # The official ViT-H/16 count with a 14x14x3 patch embedding instead of 2x16x16x3; predictor with I-JEPA's
    # one mask token.
    assert count(state.params["encoder"]) == ENCODER_PARAMS["huge"] - (2 * 16 * 16 - 14 * 14) * 3 * 1280
    assert count(state.params["predictor"]) == PREDICTOR_PARAMS["huge"] - 384


@pytest.mark.parametrize("name", list(TABLE))
def test_hyperparameters_match_the_official_recipe(name):
    config, want = load(name), TABLE[name]
    config_lib.validate(config)
    v, o = config.data.video, config.optim
    got = dict(size=config.model.size, crop=v.crop_size, frames=v.frames_per_clip, frame_step=v.frame_step,
               fps=v.fps, batch=config.data.batch_size, steps=config.train.steps, warmup=o.warmup_steps,
               start_lr=o.start_lr, lr=o.lr, final_lr=o.final_lr, wd=(o.weight_decay, o.final_weight_decay),
               ema=(config.ema.start, config.ema.end),
               pred=(config.model.predictor.width, config.model.predictor.depth, config.model.predictor.num_heads),
               pos=config.model.pos_embedding, seed=config.seed, clip=o.grad_clip, schedule=o.schedule,
               weights=tuple(v.weights), remat=config.model.remat, dtype=config.model.dtype)
    assert got == want
    assert (config.model.patch_size, config.model.tubelet_size, o.ipe_scale) == (16, 2, 1.25)
    assert (config.objective, config.loss.kind, config.data.source) == ("ema", "l1", "video")
    assert list(config.masks) == ["short_range", "long_range"]
    assert tuple(config.masks.short_range.spatial_scale) == (0.15, 0.15) and config.masks.short_range.num_blocks == 8
    assert tuple(config.masks.long_range.spatial_scale) == (0.7, 0.7) and config.masks.long_range.num_blocks == 2
    assert (tuple(v.scale), tuple(v.aspect_ratio), v.flip) == ((0.3, 1.0), (0.75, 1.35), 0.5)


def test_schedules_end_where_the_official_schedules_do():
    """V-JEPA: lr ~7.5e-5 and wd ~0.366 at the last of 90K steps (ipe_scale); cooldown: lr ~1.06e-4 at 12K
    (docs/official_reference.md 5.2, 5.3)."""
    v1 = load("vjepa_vitl16.py").optim
    horizon = int(1.25 * 90_000)
    assert float(optim.learning_rate_schedule(v1, horizon)(90_000 - 1)) == pytest.approx(7.5e-5, rel=0.02)
    assert float(optim.cosine_weight_decay(0.04, 0.4, horizon)(90_000 - 1)) == pytest.approx(0.366, abs=0.002)
    v2 = load("vjepa2_vitg16.py").optim
    assert float(optim.learning_rate_schedule(v2, int(1.25 * 240_000))(100_000)) == pytest.approx(5.25e-4)
    cool = load("vjepa2_cooldown_64f.py:vitl").optim
    schedule = optim.learning_rate_schedule(cool, int(1.25 * 12_000))
    assert float(schedule(0)) == pytest.approx(5.25e-4, rel=1e-3)
    assert float(schedule(12_000 - 1)) == pytest.approx(1.06e-4, rel=0.01)


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", ["vjepa_vitl16.py", "vjepa_vith16.py", "vjepa2_vitg16.py"])
def test_models_have_the_official_parameter_counts(name):
    config = load(name)
    state = loop.build_run(config, abstract=True).state
    assert count(state.params["encoder"]) == ENCODER_PARAMS[config.model.size]
    assert count(state.params["predictor"]) == PREDICTOR_PARAMS[config.model.size]
    assert count(state.ema_params) == ENCODER_PARAMS[config.model.size]


@pytest.mark.parametrize("name", [*TABLE, "ijepa_vith14.py"])
def test_dry_run_lowers_the_sharded_step_on_8_devices(name):
    config = load(name)
    text = loop.lower(loop.build_run(config, abstract=True)).as_text()
    # The patch-embedding kernel [t, p, p, C, D] of the encoder, its EMA copy and both Adam moments: D over fsdp.

    patch_kernel = 'sharding<@mesh, [{}, {}, {}, {}, {"fsdp"}]>'
    assert text.count(patch_kernel) >= 4
    assert "tf.aliasing_output" in text  # the state is donated


def test_config_copies_and_config_json_keep_the_mask_order_the_run_uses(tmp_path):
    """config.masks' order is the mask-token order. copy.deepcopy makes a ConfigDict iterate its keys sorted; the
    project's copies keep the order, and config.json records the order the run iterates, whichever it is."""
    import copy  # pylint: disable=g-import-not-at-top
    config = config_lib.load(os.path.join(REPO, "experiments", "configs", "tiny_world.py"))
    assert list(config.masks) == ["short_range", "long_range"]
    assert list(config_lib.copy_config(config).masks) == ["short_range", "long_range"]
    deep = copy.deepcopy(config)
    for source in (config, deep):
        config_lib.write_json(source, str(tmp_path / "config.json"))
        assert list(config_lib.load_run(str(tmp_path)).masks) == list(source.masks)


def test_tiny_world_physics_variant_predicts_the_later_half_from_the_first():
    config = config_lib.load(os.path.join(CONFIGS, "tiny_world.py"), "physics,smoke")
    (masker,) = config_lib.build_maskers(config)
    time_slices, height, width = config_lib.token_grid(config)
    context, target = masker(np.random.default_rng(0), 2)
    np.testing.assert_array_equal(context[0], np.arange(time_slices // 2 * height * width))
    np.testing.assert_array_equal(target[0], np.arange(time_slices // 2 * height * width, time_slices * height * width))
    assert config.loss.kind == "l2"
    # The predictor's mask tokens know where they are only through RoPE: at least 5 frequencies per axis.
    predictor = config.model.predictor
    assert posemb.rope_axis_dim(predictor.width // predictor.num_heads) // 2 >= 5
