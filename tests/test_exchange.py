"""Checkpoint exchange without PyTorch: official key/shape tables, bit-exact round trips, strict loading, one-line
errors, `jepa_jax.load`, export from a real run, the CLI verbs and feature extraction."""

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import safetensors.numpy

import jepa_jax
from jepa_jax import export, layouts, native, pretrained, recipes
from tests.conftest import TINY_WORLD, run_cli


def random_weights(config, seed: int, groups=native.GROUPS) -> native.Weights:
    """Random float32 weights of every tensor the config's model has (distinct values everywhere)."""
    rng = np.random.default_rng(seed)
    shapes = native.param_shapes(config)
    kind = lambda g: "predictor" if g == "predictor" else "encoder"
    return native.Weights(config, {g: {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in shapes[kind(g)].items()}
                                   for g in groups}, step=7, source="random")


def read_flat(directory) -> dict:
    return safetensors.numpy.load_file(os.path.join(directory, export.WEIGHTS_FILE))


def tiny_config(pos_embedding: str = "rope", image: bool = False):
    """A small video (or one-frame image) model: custom width 48 (3 heads of 16), 2 blocks; predictor 24 x 2
    (2 heads); 3 mask tokens."""
    config = recipes.vjepa1("micro", 32) if pos_embedding == "sincos" else recipes.vjepa2("micro", epochs=1)
    config.model.update(size="custom", patch_size=8, tubelet_size=1 if image else 2, dtype="float32")
    config.model.custom.update(width=48, depth=2, num_heads=3, mlp_dim=96)
    config.model.predictor.update(width=24, depth=2, num_heads=2, num_mask_tokens=3)
    config.data.video.update(frames_per_clip=1 if image else 4, crop_size=32)
    return config


def ac_config(**ac):
    """tiny_config's encoder with a V-JEPA 2-AC predictor the official layout can hold: 48 wide (2 heads), 2 blocks,
    3-d actions and proprio, no proprio head; `ac` overrides config.ac fields."""
    config = tiny_config()
    config.objective, config.data.source = "ac", "trajectories"
    config.ac.update({"action_dim": 3, "proprio_dim": 3, "predict_proprio": False, "image_size": 32, "num_frames": 3,
                      **ac})
    config.ac.predictor.update(width=48, depth=2, num_heads=2)
    return config


# ------------------------------------------------------ official layout tables (docs/official_reference.md 7)

def fair_shapes(config) -> dict:
    """{"encoder" / "predictor": {official key: shape}} of what export.to_fair writes for the config (traced with
    eval_shape: nothing of the model's size is allocated)."""
    abstract = {kind: {k: jax.ShapeDtypeStruct(shape, np.float32) for k, shape in shapes.items()}
                for kind, shapes in native.param_shapes(config).items()}
    fair = jax.eval_shape(lambda groups: export.to_fair(native.Weights(config, groups)), abstract)
    return {kind: {k.removeprefix(export.fair_prefix(config)): tuple(v.shape) for k, v in tensors.items()}
            for kind, tensors in fair.items()}


def test_fair_keys_and_shapes_match_the_official_tables():
    vitl2 = fair_shapes(recipes.vjepa2("large", epochs=1))
    assert len(vitl2["encoder"]) == 292 and "pos_embed" not in vitl2["encoder"]
    assert vitl2["encoder"]["patch_embed.proj.weight"] == (1024, 3, 2, 16, 16)
    assert vitl2["encoder"]["blocks.23.attn.qkv.weight"] == (3072, 1024)
    assert vitl2["encoder"]["blocks.23.attn.qkv.bias"] == (3072,)
    assert vitl2["encoder"]["blocks.0.attn.proj.weight"] == (1024, 1024)
    assert vitl2["encoder"]["blocks.0.mlp.fc1.weight"] == (4096, 1024)
    assert vitl2["encoder"]["blocks.0.mlp.fc2.weight"] == (1024, 4096)
    assert vitl2["encoder"]["norm.weight"] == (1024,)

    vitl1 = fair_shapes(recipes.vjepa1("large", 224))
    assert vitl1["encoder"]["pos_embed"] == (1, 1568, 1024) and len(vitl1["encoder"]) == 293
    assert len(vitl1["predictor"]) == 153
    assert vitl1["predictor"]["predictor_pos_embed"] == (1, 1568, 384)
    assert vitl1["predictor"]["predictor_embed.weight"] == (384, 1024)
    assert vitl1["predictor"]["predictor_blocks.11.attn.qkv.weight"] == (1152, 384)
    assert vitl1["predictor"]["predictor_blocks.0.mlp.fc1.weight"] == (1536, 384)
    assert vitl1["predictor"]["predictor_proj.weight"] == (1024, 384)
    assert vitl1["predictor"]["mask_tokens.1"] == (1, 1, 384) and "mask_tokens.2" not in vitl1["predictor"]

    vith1 = fair_shapes(recipes.vjepa1("huge", 384))
    assert vith1["encoder"]["pos_embed"] == (1, 4608, 1280) and len(vith1["encoder"]) == 2 + 32 * 12 + 2 + 1

    giant = recipes.vjepa2("giant", epochs=1)
    giant.model.predictor.num_mask_tokens = 10  # as the hub builds it
    vitg = fair_shapes(giant)
    assert len(vitg["predictor"]) == 160 and vitg["predictor"]["mask_tokens.9"] == (1, 1, 384)
    assert vitg["encoder"]["blocks.39.attn.qkv.weight"] == (4224, 1408)
    assert vitg["encoder"]["blocks.39.mlp.fc1.weight"] == (6144, 1408)

    ijepa = fair_shapes(recipes.ijepa("huge", 14, 224))  # I-JEPA: Conv2d patches, 2D sin-cos table
    assert ijepa["encoder"]["patch_embed.proj.weight"] == (1280, 3, 14, 14)
    assert ijepa["encoder"]["pos_embed"] == (1, 256, 1280)


def test_ac_fair_keys_and_shapes_match_the_official_table():
    """V-JEPA 2-AC's released predictor (vit_ac_predictor on ViT-g features, 7-d actions): 300 keys, 305,220,992
    parameters with the unused extrinsics_encoder (facebookresearch/vjepa2 src/models/ac_predictor.py)."""
    config = ac_config(action_dim=7, proprio_dim=7)
    config.model.update(size="giant", patch_size=16)
    config.ac.predictor.update(width=1024, depth=24, num_heads=16, mlp_ratio=4.0)
    ac = fair_shapes(config)["predictor"]
    assert len(ac) == 300 and sum(math.prod(s) for s in ac.values()) == 305_220_992
    assert ac["predictor_embed.weight"] == (1024, 1408) and ac["predictor_proj.weight"] == (1408, 1024)
    assert ac["action_encoder.weight"] == ac["state_encoder.weight"] == (1024, 7)
    assert ac["extrinsics_encoder.weight"] == (1024, 6) and ac["extrinsics_encoder.bias"] == (1024,)
    assert ac["predictor_blocks.23.attn.qkv.weight"] == (3072, 1024)
    assert ac["predictor_blocks.0.mlp.fc1.weight"] == (4096, 1024)
    assert ac["predictor_norm.weight"] == (1024,) and not any(k.startswith("mask_tokens") for k in ac)
    assert export.fair_prefix(config) == "module."  # V-JEPA 2-AC training wraps in DDP only


def test_layout_conversion_follows_pytorch_conventions():
    """qkv rows are [q; k; v] with heads contiguous; Linear weights are [out, in]; Conv3d is [D, C, t, p, p]."""
    kernel = np.arange(4 * 3 * 2 * 2, dtype=np.float32).reshape(4, 3, 2, 2)  # [D=4, 3, h=2, Dh=2]
    fair = layouts.to_layout("fair", {"blocks_0.attn.qkv.kernel": kernel})["blocks.0.attn.qkv.weight"]
    assert fair.shape == (12, 4)
    np.testing.assert_array_equal(fair[2 * 4 + 1 * 2 + 1], kernel[:, 2, 1, 1])  # v, head 1, channel 1
    hf = layouts.to_layout("hf", {"blocks_0.attn.qkv.kernel": kernel})
    np.testing.assert_array_equal(hf["encoder.layer.0.attention.key.weight"], fair[4:8])
    patch = np.random.default_rng(0).normal(size=(2, 4, 4, 3, 5)).astype(np.float32)  # [t, p, p, C, D]
    conv = layouts.to_layout("fair", {"patch_embed.kernel": patch})["patch_embed.proj.weight"]
    assert conv.shape == (5, 3, 2, 4, 4) and conv[4, 2, 1, 3, 0] == patch[1, 3, 0, 2, 4]


# --------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("pos_embedding,image", [("rope", False), ("sincos", False), ("sincos", True)])
def test_native_fair_native_is_bit_exact(tmp_path, pos_embedding, image):
    export.write_native(random_weights(tiny_config(pos_embedding, image), seed=1), str(tmp_path / "native"))
    export.export(str(tmp_path / "native"), str(tmp_path / "fair"), "fair")
    export.import_weights("fair", str(tmp_path / "fair" / "checkpoint.safetensors"), str(tmp_path / "back"))
    original, back = read_flat(tmp_path / "native"), read_flat(tmp_path / "back")
    assert original.keys() == back.keys() and len(original) > 40
    for key, value in original.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    assert export.load_weights(str(tmp_path / "back")).config.to_dict() == tiny_config(pos_embedding, image).to_dict()
    patch = safetensors.numpy.load_file(tmp_path / "fair" / "checkpoint.safetensors")[
        "encoder.module.backbone.patch_embed.proj.weight"]
    assert patch.shape == ((48, 3, 8, 8) if image else (48, 3, 2, 8, 8))  # official: Conv2d for one-frame models


def test_ac_native_fair_native_is_bit_exact(tmp_path):
    """An AC model through the official layout and back, with our config inside (exact) and without it (detected:
    the same weights and AC predictor, the encoder's heads given); extrinsics_encoder written as zeros."""
    export.write_native(random_weights(ac_config(), seed=11), str(tmp_path / "native"))
    export.export(str(tmp_path / "native"), str(tmp_path / "fair"), "fair")
    tensors = safetensors.numpy.load_file(tmp_path / "fair" / "checkpoint.safetensors")
    assert not tensors["predictor.module.extrinsics_encoder.weight"].any()
    assert "predictor.module.action_encoder.weight" in tensors and "encoder.module.norm.weight" in tensors
    safetensors.numpy.save_file(tensors, tmp_path / "official.safetensors")  # no config inside
    export.import_weights("fair", str(tmp_path / "fair" / "checkpoint.safetensors"), str(tmp_path / "back"))
    export.import_weights("fair", str(tmp_path / "official.safetensors"), str(tmp_path / "detected"), num_heads=3,
                          predictor_heads=2)
    original = read_flat(tmp_path / "native")
    assert export.load_weights(str(tmp_path / "back")).config.to_dict() == ac_config().to_dict()
    for folder in ("back", "detected"):
        back = read_flat(tmp_path / folder)
        assert original.keys() == back.keys() and "predictor.action_encoder.kernel" in back
        for key, value in original.items():
            np.testing.assert_array_equal(back[key], value, err_msg=f"{folder} {key}")
    detected = export.load_weights(str(tmp_path / "detected")).config
    assert (detected.objective, detected.model.size, detected.ac.predict_proprio) == ("ac", "custom", False)
    assert detected.ac.predictor.to_dict() == ac_config().ac.predictor.to_dict()
    assert (detected.ac.action_dim, detected.ac.proprio_dim) == (3, 3)


def test_native_hf_native_is_bit_exact(tmp_path):
    export.write_native(random_weights(tiny_config(), seed=2, groups=("encoder", "predictor")), str(tmp_path / "a"))
    summary = export.export(str(tmp_path / "a"), str(tmp_path / "hf"), "hf")
    assert summary["groups"] == ["encoder", "predictor"]
    with open(tmp_path / "hf" / "config.json", encoding="utf-8") as f:
        hf = json.load(f)
    assert (hf["hidden_size"], hf["num_attention_heads"], hf["pred_num_mask_tokens"], hf["crop_size"]) == (48, 3, 3, 32)
    export.import_weights("hf", str(tmp_path / "hf"), str(tmp_path / "b"))
    original, back = read_flat(tmp_path / "a"), read_flat(tmp_path / "b")
    assert original.keys() == back.keys()
    for key, value in original.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_hf_export_says_what_it_cannot_express(tmp_path):
    export.write_native(random_weights(tiny_config("sincos"), seed=3), str(tmp_path / "v1"))
    with pytest.raises(ValueError, match=r"cannot export to Hugging Face VJEPA2Model: VJEPA2Model has 3D RoPE only, "
                                         r"this model uses sin-cos positions"):
        export.export(str(tmp_path / "v1"), str(tmp_path / "hf"), "hf")


# --------------------------------------------------------------------------- strict loading and bad input

@pytest.fixture(name="fair_file")
def fair_file_fixture(tmp_path):
    """The official-layout safetensors of a tiny RoPE model, as {key: array}, and a function that writes a copy."""
    export.write_native(random_weights(tiny_config(), seed=4), str(tmp_path / "native"))
    export.export(str(tmp_path / "native"), str(tmp_path / "fair"), "fair")
    tensors = safetensors.numpy.load_file(tmp_path / "fair" / "checkpoint.safetensors")

    def write(changed: dict, name: str) -> str:
        path = str(tmp_path / name)
        safetensors.numpy.save_file(changed, path)  # no config inside: the architecture is detected
        return path
    return tensors, write


def official_config(pos_embedding: str):
    """A named-size (nano) model whose every architecture field can be read back from its official tensors:
    V-JEPA 2 predictors have 12 heads, V-JEPA ones the encoder's; only a sin-cos table tells the clip shape."""
    config = tiny_config(pos_embedding)
    config.model.update(size="nano")
    if pos_embedding == "rope":
        config.model.predictor.update(width=72, depth=1, num_heads=12, mlp_ratio=2.0, num_mask_tokens=3)
    else:
        config.model.predictor.update(width=24, depth=2, num_heads=2, mlp_ratio=4.0, num_mask_tokens=2)
        config.data.video.update(frames_per_clip=4, crop_size=24)  # 2 x 3 x 3 tokens: one T' x S x S grid
    return config


@pytest.mark.parametrize("pos_embedding", ["rope", "sincos"])
def test_official_file_without_our_config_is_detected_and_imported(tmp_path, fair_file, pos_embedding):
    """A fair-format file without our config: architecture read from the tensors, weights imported exactly; a
    size that is no known one asks for --arch."""
    config = official_config(pos_embedding)
    export.write_native(random_weights(config, seed=6), str(tmp_path / "native"))
    export.export(str(tmp_path / "native"), str(tmp_path / "fair"), "fair")
    tensors = safetensors.numpy.load_file(tmp_path / "fair" / "checkpoint.safetensors")
    official = str(tmp_path / "official.safetensors")
    safetensors.numpy.save_file(tensors, official)  # no metadata: nothing of our config travels
    with safetensors.safe_open(official, framework="np") as f:
        assert not f.metadata()
    export.import_weights("fair", official, str(tmp_path / "imported"))
    detected = export.load_weights(str(tmp_path / "imported")).config
    m, want = detected.model, config.model
    assert (m.size, m.pos_embedding, m.patch_size, m.tubelet_size) == ("nano", pos_embedding, 8, 2)
    assert m.predictor.to_dict() == want.predictor.to_dict()
    if pos_embedding == "sincos":  # the table's grid gives the clip shape
        assert (detected.data.video.frames_per_clip, detected.data.video.crop_size) == (4, 24)
    original, imported = read_flat(tmp_path / "native"), read_flat(tmp_path / "imported")
    assert original.keys() == imported.keys() and len(original) > 20
    for key, value in original.items():
        np.testing.assert_array_equal(imported[key], value, err_msg=key)

    unknown, write = fair_file  # custom width 48: no named size, and head counts are not in the tensors
    with pytest.raises(ValueError, match="width 48, 2 blocks, MLP 96 is no known size.*pass --arch FAMILY_SIZE, or "
                                         r"--num_heads N \(and --predictor_heads N\)"):
        export.import_weights("fair", write(unknown, "unknown.safetensors"), str(tmp_path / "x"))


def test_custom_size_official_checkpoint_imports_with_head_counts(tmp_path, fair_file):
    """No named size: `import --num_heads --predictor_heads` records explicit dimensions (model.size "custom"), and
    the folder loads and gives the features and predictions of the original weights."""
    tensors, write = fair_file  # tiny_config: custom width 48 (3 heads), predictor 24 wide (2 heads)
    official = write(tensors, "custom.safetensors")
    result = run_cli("import", "--from", "fair", "--src", official, "--out", str(tmp_path / "imported"),
                     "--num_heads", "3", "--predictor_heads", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ViT custom/8 (width 48, 2 blocks, 3 heads)" in json.loads(result.stdout.strip().splitlines()[-1])["model"]
    with open(tmp_path / "imported" / "config.json", encoding="utf-8") as f:
        model = json.load(f)["model"]
    assert model["size"] == "custom" and model["custom"] == {"width": 48, "depth": 2, "num_heads": 3, "mlp_dim": 96}
    assert (model["predictor"]["width"], model["predictor"]["num_heads"]) == (24, 2)
    original, imported = jepa_jax.load(tmp_path / "native"), jepa_jax.load(tmp_path / "imported")
    video = np.random.default_rng(0).integers(0, 256, (1, 4, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(imported.features(video)), np.asarray(original.features(video)))
    context, target = np.arange(20)[None], np.arange(20, 32)[None]
    np.testing.assert_array_equal(np.asarray(imported.predict(video, context, target)),
                                  np.asarray(original.predict(video, context, target)))
    with pytest.raises(ValueError, match="width 48, 2 blocks, MLP 96: --num_heads 5 does not divide the width 48"):
        export.import_weights("fair", official, str(tmp_path / "x"), num_heads=5)
    with pytest.raises(ValueError, match=r"a RoPE predictor of width 24 cannot have 5 heads \(--predictor_heads\)"):
        export.import_weights("fair", official, str(tmp_path / "x"), num_heads=3, predictor_heads=5)
    with pytest.raises(ValueError, match="give --arch or --num_heads, not both"):
        export.import_weights("fair", official, str(tmp_path / "x"), arch="vjepa2_nano", num_heads=3)


@pytest.mark.parametrize("change,expected", [
    ("missing", r"1 missing, 0 unexpected, 0 mis-shaped tensors .*missing blocks.1.mlp.fc2.bias \(48,\)"),
    ("unexpected", r"0 missing, 1 unexpected, 0 mis-shaped .*unexpected blocks.1.extra.weight \(3,\)"),
    ("misshaped", r"0 missing, 0 unexpected, 1 mis-shaped .*blocks.0.attn.proj.weight is \(48, 47\), expected "
                  r"\(48, 48\)"),
])
def test_one_missing_extra_or_misshaped_tensor_fails_with_its_name(tmp_path, fair_file, change, expected):
    tensors, _ = fair_file
    path = tmp_path / "fair" / "checkpoint.safetensors"
    with safetensors.safe_open(path, framework="np") as f:
        metadata = f.metadata()
    prefix = "encoder.module.backbone."
    if change == "missing":
        del tensors[prefix + "blocks.1.mlp.fc2.bias"]
    elif change == "unexpected":
        tensors[prefix + "blocks.1.extra.weight"] = np.zeros(3, np.float32)
    else:
        tensors[prefix + "blocks.0.attn.proj.weight"] = tensors[prefix + "blocks.0.attn.proj.weight"][:, :47].copy()
    safetensors.numpy.save_file(tensors, path, metadata=metadata)
    with pytest.raises(native.TensorMismatch, match=expected):
        export.import_weights("fair", str(path), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change,expected", [
    ("missing", r"1 missing, 0 unexpected, 0 mis-shaped tensors for the predictor .*missing "
                r"extrinsics_encoder.weight \(48, 2\)"),
    ("unexpected", r"0 missing, 1 unexpected, 0 mis-shaped .*unexpected proprio_proj.weight \(3, 48\)"),
    ("misshaped", r"0 missing, 0 unexpected, 1 mis-shaped .*state_encoder.weight is \(48, 2\), expected \(48, 3\)"),
    ("misshaped_extrinsics", r"1 mis-shaped .*extrinsics_encoder.bias is \(47,\), expected \(48,\)"),
])
def test_ac_missing_extra_or_misshaped_tensor_fails_with_its_name(tmp_path, change, expected):
    export.write_native(random_weights(ac_config(), seed=12), str(tmp_path / "native"))
    export.export(str(tmp_path / "native"), str(tmp_path / "fair"), "fair")
    path = tmp_path / "fair" / "checkpoint.safetensors"
    with safetensors.safe_open(path, framework="np") as f:
        metadata = f.metadata()
    tensors, prefix = safetensors.numpy.load_file(path), "predictor.module."
    if change == "missing":
        del tensors[prefix + "extrinsics_encoder.weight"]
    elif change == "unexpected":
        tensors[prefix + "proprio_proj.weight"] = np.zeros((3, 48), np.float32)
    elif change == "misshaped":
        tensors[prefix + "state_encoder.weight"] = tensors[prefix + "state_encoder.weight"][:, :2].copy()
    else:
        tensors[prefix + "extrinsics_encoder.bias"] = tensors[prefix + "extrinsics_encoder.bias"][:47].copy()
    safetensors.numpy.save_file(tensors, path, metadata=metadata)
    with pytest.raises(native.TensorMismatch, match=expected):
        export.import_weights("fair", str(path), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fields,expected", [
    ({"ac.predict_proprio": True}, r"config.ac.predict_proprio=True adds proprio_proj, which "
                                   r"VisionTransformerPredictorAC lacks \(train with predict_proprio=False"),
    ({"ac.proprio_dim": 2}, r"config.ac.proprio_dim=2 differs from config.ac.action_dim=3: .*one action_embed_dim"),
    ({"model.rope_pairing": "interleave"}, r"config.model.rope_pairing='interleave': the official code rotates with "
                                           r"the released 'repeat' pairing"),
    ({"model.pos_embedding": "sincos"}, r"config.model.pos_embedding='sincos': V-JEPA 2-AC's encoder uses 3D RoPE"),
])
def test_ac_options_the_official_layout_cannot_hold_are_refused(tmp_path, fields, expected):
    config = ac_config()
    for field, value in fields.items():
        group, name = field.split(".")
        config[group][name] = value
    export.write_native(random_weights(config, seed=13), str(tmp_path / "native"))
    with pytest.raises(ValueError, match=r"native: cannot export to the official layout: " + expected):
        export.export(str(tmp_path / "native"), str(tmp_path / "fair"), "fair")
    assert not (tmp_path / "fair").exists()


def test_native_folder_loads_strictly(tmp_path):
    export.write_native(random_weights(tiny_config(), seed=5), str(tmp_path / "m"))
    tensors = read_flat(tmp_path / "m")
    del tensors["predictor.mask_tokens"]
    safetensors.numpy.save_file(tensors, tmp_path / "m" / export.WEIGHTS_FILE)
    with pytest.raises(native.TensorMismatch, match=r"missing mask_tokens \(3, 24\)"):
        jepa_jax.load(tmp_path / "m")


def test_truncated_or_foreign_safetensors_is_one_line(tmp_path, fair_file):
    source = tmp_path / "fair" / "checkpoint.safetensors"
    data = source.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.safetensors is not a readable safetensors file \(.*\): re-export"):
        export.import_weights("fair", str(tmp_path / "cut.safetensors"), str(tmp_path / "out"))
    (tmp_path / "text.safetensors").write_text("not tensors")
    with pytest.raises(ValueError, match=r"text.safetensors is not a readable safetensors file"):
        export.import_weights("fair", str(tmp_path / "text.safetensors"), str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="is neither a `jepa-jax export`/`import` folder"):
        jepa_jax.load(tmp_path)
    with pytest.raises(ValueError, match=r"--arch 'vjepa3_vitl16' is unknown"):
        export.import_weights("fair", str(source), str(tmp_path / "out"), arch="vjepa3_vitl16")


# --------------------------------------------------------------------------- a real run, the CLI, extraction

@pytest.fixture(scope="module", name="ema_run")
def ema_run_fixture(tmp_path_factory):
    """A 4-step EMA-objective run of the nano model on the built-in world (has a target encoder)."""
    workdir = tmp_path_factory.mktemp("run")
    result = run_cli("train", "--config", f"{TINY_WORLD}:smoke", "--workdir", str(workdir), "--config.objective=ema",
                  "--config.probe.report=False")
    assert result.returncode == 0, result.stderr[-2000:]
    return workdir


@pytest.mark.slow
def test_run_exports_and_loads_with_features_and_predictions(tmp_path, ema_run):
    result = run_cli("export", "--run", str(ema_run), "--out", str(tmp_path / "native"), "--format", "native")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["step"] == 4 and summary["groups"] == ["encoder", "target_encoder", "predictor"]
    card = (tmp_path / "native" / "README.md").read_text()
    assert "trained 4 steps" in card and "target_effective_rank" in card and "ViT nano/8" in card
    from_run, from_export = jepa_jax.load(ema_run), jepa_jax.load(tmp_path / "native")
    assert from_run.encoder_group == from_export.encoder_group == "target_encoder"
    video = np.random.default_rng(0).integers(0, 256, (2, 8, 64, 64, 3), dtype=np.uint8)
    features = np.asarray(from_export.features(video))
    assert features.shape == (2, 256, 32)
    np.testing.assert_array_equal(features, np.asarray(from_run.features(video)))
    online = np.asarray(jepa_jax.load(ema_run, encoder="online").features(video))
    assert np.abs(online - features).max() > 0  # the EMA copy has moved away from the online encoder
    context, target = np.tile(np.arange(100), (2, 1)), np.tile(np.arange(200, 230), (2, 1))
    assert from_export.predict(video, context, target).shape == (2, 30, 32)
    with pytest.raises(ValueError, match=r"video must be uint8 \[B, T, H, W, 3\].*float32"):
        from_export.features(video.astype(np.float32))


@pytest.mark.slow
def test_cli_export_import_and_errors(tmp_path, ema_run):
    assert run_cli("export", "--run", str(ema_run), "--out", str(tmp_path / "fair"), "--format", "fair").returncode == 0
    result = run_cli("import", "--from", "fair", "--src", str(tmp_path / "fair" / "checkpoint.safetensors"),
                  "--out", str(tmp_path / "back"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["groups"] == ["encoder", "target_encoder", "predictor"]
    (tmp_path / "junk.safetensors").write_text("junk")
    result = run_cli("import", "--from", "fair", "--src", str(tmp_path / "junk.safetensors"), "--out", str(tmp_path / "x"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("jepa-jax: error: ")
    assert "junk.safetensors is not a readable safetensors file" in result.stderr
    result = run_cli("export", "--run", str(ema_run), "--out", str(tmp_path / "y"), "--format", "onnx")
    assert result.returncode != 0 and "--format 'onnx' is unknown" in result.stderr


@pytest.mark.slow
def test_extract_writes_pooled_features_and_skips_bad_videos(tmp_path, ema_run):
    from tests.data.conftest import write_video  # pylint: disable=g-import-not-at-top
    lines = []
    for i in range(3):
        lines.append(f"{write_video(tmp_path / f'v{i}.mp4', 40, 25.0, 80, 64)} {i}")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    lines.insert(1, f"{tmp_path / 'broken.mp4'} 9")
    (tmp_path / "clips.csv").write_text("\n".join(lines) + "\n")
    result = run_cli("extract", "--model", str(ema_run), "--data", str(tmp_path / "clips.csv"), "--out",
                  str(tmp_path / "features.npy"), "--batch_size", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["clips"] == 3 and summary["skipped"] == 1 and summary["shape"] == [3, 32]
    features = np.load(tmp_path / "features.npy")
    info = json.loads((tmp_path / "features.npy.json").read_text())
    assert info["labels"] == [0, 1, 2] and info["skipped"][0]["path"].endswith("broken.mp4")
    tokens = pretrained.extract(str(ema_run), str(tmp_path / "clips.csv"), str(tmp_path / "t.safetensors"),
                                         pool="tokens", batch_size=4)
    stored = safetensors.numpy.load_file(tmp_path / "t.safetensors")
    assert tokens["shape"] == [3, 256, 32] and stored["features"].shape == (3, 256, 32)
    np.testing.assert_allclose(stored["features"].mean(axis=1), features, atol=1e-5)  # batch 4 vs 2: same clips


@pytest.mark.slow
def test_exported_weights_start_a_new_stage_on_an_fsdp_mesh(tmp_path, ema_run, smoke_config):
    """train.init_from=EXPORT_DIR: the run's born-sharded state takes the exported weights, shard by shard."""
    from jepa_jax.train import loop  # pylint: disable=g-import-not-at-top
    export.export(str(ema_run), str(tmp_path / "native"), "native")
    smoke_config.objective = "ema"
    smoke_config.mesh.update(data=1, fsdp=8, tensor=1)
    smoke_config.train.init_from = str(tmp_path / "native")
    run = loop.build_run(smoke_config)
    state = loop.state_from_export(run.state, str(tmp_path / "native"))
    exported = read_flat(tmp_path / "native")
    for group, tree in (("encoder", state.params["encoder"]), ("predictor", state.params["predictor"]),
                        ("target_encoder", state.ema_params)):
        for name, value in native.flatten(tree).items():
            np.testing.assert_array_equal(value, exported[f"{group}.{name}"], err_msg=f"{group}.{name}")
    kernel = state.params["encoder"]["patch_embed"]["kernel"]
    assert kernel.sharding.spec == run.state.params["encoder"]["patch_embed"]["kernel"].sharding.spec
    assert len(kernel.addressable_shards) == 8 and kernel.addressable_shards[0].data.shape[-1] == 32 // 8
    smoke_config.model.size = "micro"
    with pytest.raises(native.TensorMismatch, match=r"for the encoder of this run's config.model \(set its fields as "
                                                     r"in .*native/config.json\)"):
        loop.state_from_export(loop.build_run(smoke_config).state, str(tmp_path / "native"))


def test_a_config_written_before_the_exchange_fields_still_loads(tmp_path):
    """Runs saved before model.custom / predictor.num_mask_tokens existed: the new fields get their defaults."""
    from jepa_jax import config as config_lib  # pylint: disable=g-import-not-at-top
    old = json.loads(config_lib.load(TINY_WORLD).to_json())
    del old["model"]["custom"], old["model"]["predictor"]["num_mask_tokens"]
    config = config_lib.from_dict(old)
    assert config.model.custom.width == 0 and config_lib.num_mask_tokens(config) == 2
    assert list(config.masks) == list(old["masks"])
    assert native.param_shapes(config)["predictor"]["mask_tokens"] == (2, 64)


@pytest.mark.parametrize("written, policy", [(True, "nothing_saveable"), (False, "none")])
def test_a_config_written_with_a_boolean_remat_loads_as_a_named_policy(written, policy):
    from jepa_jax import config as config_lib  # pylint: disable=g-import-not-at-top
    old = json.loads(config_lib.load(TINY_WORLD).to_json())
    del old["model"]["dtype"]  # also written before mixed precision
    old["model"]["remat"] = written
    config = config_lib.from_dict(old)
    assert (config.model.remat, config.model.dtype) == (policy, "float32")
    config_lib.validate(config)


@pytest.mark.slow
def test_core_package_works_without_torch(tmp_path):
    """With torch unimportable: native and fair-safetensors export work, and reading a .pt says what to install."""
    export.write_native(random_weights(tiny_config(), seed=6), str(tmp_path / "native"))
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04")
    script = f"""
import sys
sys.modules["torch"] = None  # import torch now fails
from jepa_jax import export
print(export.export({str(tmp_path / 'native')!r}, {str(tmp_path / 'fair')!r}, "fair")["files"])
try:
    export.read_fair({str(tmp_path / 'model.pt')!r})
except ValueError as err:
    print(err)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert result.returncode == 0, result.stderr[-2000:]
    files, message = result.stdout.strip().splitlines()[-2:]
    assert files.endswith("checkpoint.safetensors']")
    assert "reading PyTorch files needs torch: pip install 'jepa_jax[interop]'" in message
