"""Checkpoint exchange against PyTorch code: Hugging Face VJEPA2Model parity, official .pt / .pth.tar files, and
refusal of pickles that would run code. Needs the `interop` extra (CI installs it)."""

import os

import chex
import numpy as np
import pytest

from tests.conftest import require

torch = require("torch")
transformers = require("transformers")

import jepa_jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from jepa_jax import export  # pylint: disable=g-import-not-at-top,wrong-import-position
from jepa_jax.models import vit  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests.official.vjepa2 import ac_predictor as official_ac  # pylint: disable=g-import-not-at-top,wrong-import-position
from tests.test_exchange import ac_config, random_weights, read_flat  # pylint: disable=g-import-not-at-top,wrong-import-position

# Several small VJEPA2Config settings: widths, depths, heads (RoPE dims with and without pass-through channels),
# MLP ratios, patch and tubelet sizes, frames, crops, mask-token counts. The last one is our named "nano" size.
HF_CASES = {
    "w64_h4": dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, mlp_ratio=4.0, patch_size=8,
                   tubelet_size=2, crop_size=32, frames_per_clip=4, pred_hidden_size=48, pred_num_attention_heads=4,
                   pred_num_hidden_layers=2, pred_mlp_ratio=4.0, pred_num_mask_tokens=3),
    "w96_h2_d3": dict(hidden_size=96, num_attention_heads=2, num_hidden_layers=3, mlp_ratio=2.0, patch_size=16,
                      tubelet_size=2, crop_size=48, frames_per_clip=8, pred_hidden_size=64,
                      pred_num_attention_heads=2, pred_num_hidden_layers=1, pred_mlp_ratio=3.0,
                      pred_num_mask_tokens=10),
    "w120_h3_t1": dict(hidden_size=120, num_attention_heads=3, num_hidden_layers=1, mlp_ratio=4.0, patch_size=16,
                       tubelet_size=1, crop_size=64, frames_per_clip=2, pred_hidden_size=60,
                       pred_num_attention_heads=6, pred_num_hidden_layers=2, pred_mlp_ratio=4.0,
                       pred_num_mask_tokens=2),
    "nano": dict(hidden_size=32, num_attention_heads=2, num_hidden_layers=2, mlp_ratio=4.0, patch_size=8,
                 tubelet_size=2, crop_size=32, frames_per_clip=6, pred_hidden_size=36, pred_num_attention_heads=6,
                 pred_num_hidden_layers=2, pred_mlp_ratio=4.0, pred_num_mask_tokens=10),
}
TOLERANCE = 1e-4  # max abs error, fp32


def random_hf_model(case: dict, seed: int):
    """A VJEPA2Model with every parameter (LayerNorms and mask tokens too) perturbed away from its init."""
    torch.manual_seed(seed)
    model = transformers.VJEPA2Model(transformers.VJEPA2Config(**case)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape))
    return model


def clip_and_masks(case: dict, seed: int, batch: int = 2):
    """uint8 video [B, T, H, W, 3] and per-sample context / target token indices [B, K]."""
    rng = np.random.default_rng(seed)
    frames, crop, patch = case["frames_per_clip"], case["crop_size"], case["patch_size"]
    video = rng.integers(0, 256, (batch, frames, crop, crop, 3), dtype=np.uint8)
    num_tokens = frames // case["tubelet_size"] * (crop // patch) ** 2
    order = np.stack([rng.permutation(num_tokens) for _ in range(batch)])
    num_context = num_tokens // 2
    return video, order[:, :num_context], order[:, num_context:num_context + max(1, num_tokens // 3)]


def hf_outputs(model, video, context_idx, target_idx):
    """(encoder features [B, N, D], predictions [B, Kt, D]) of the PyTorch model, as numpy."""
    pixels = np.asarray(vit.normalize_video(video)).transpose(0, 1, 4, 2, 3)  # [B, T, C, H, W]
    with torch.no_grad():
        out = model(pixel_values_videos=torch.from_numpy(pixels), context_mask=[torch.from_numpy(context_idx)],
                    target_mask=[torch.from_numpy(target_idx)])
    return out.last_hidden_state.numpy(), out.predictor_output.last_hidden_state.numpy()


def ours(model_dir, video, context_idx, target_idx):
    """Our features and predictions, in the way VJEPA2Model computes them (whole clip encoded; mask token 1)."""
    model = jepa_jax.load(model_dir)
    return (np.asarray(model.features(video)),
            np.asarray(model.predict(video, context_idx, target_idx, mask_index=1, context="full")))


@pytest.mark.parametrize("name", sorted(HF_CASES))
def test_hf_import_matches_transformers(tmp_path, name):
    case = HF_CASES[name]
    model = random_hf_model(case, seed=len(name))
    model.save_pretrained(tmp_path / "hf")
    export.import_weights("hf", str(tmp_path / "hf"), str(tmp_path / "ours"))
    video, context_idx, target_idx = clip_and_masks(case, seed=1)
    want_features, want_predictions = hf_outputs(model, video, context_idx, target_idx)
    features, predictions = ours(tmp_path / "ours", video, context_idx, target_idx)
    assert features.shape == want_features.shape and predictions.shape == want_predictions.shape
    assert np.abs(features - want_features).max() <= TOLERANCE
    assert np.abs(predictions - want_predictions).max() <= TOLERANCE
    assert np.abs(want_predictions).mean() > 0.1  # not a trivially small output


@pytest.mark.parametrize("name", ["w96_h2_d3", "nano"])
def test_hf_export_loads_in_transformers_with_our_outputs(tmp_path, name):
    case = HF_CASES[name]
    config = export.config_from_hf(case, "case")
    export.write_native(random_weights(config, seed=3, groups=("encoder", "predictor")), str(tmp_path / "ours"))
    export.export(str(tmp_path / "ours"), str(tmp_path / "hf"), "hf")
    model, info = transformers.VJEPA2Model.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    video, context_idx, target_idx = clip_and_masks(case, seed=2)
    want_features, want_predictions = ours(tmp_path / "ours", video, context_idx, target_idx)
    features, predictions = hf_outputs(model.eval(), video, context_idx, target_idx)
    assert np.abs(features - want_features).max() <= TOLERANCE
    assert np.abs(predictions - want_predictions).max() <= TOLERANCE


def test_fair_pt_round_trip_is_bit_exact_and_official_shaped(tmp_path):
    config = export.config_from_hf(HF_CASES["w64_h4"], "case")
    export.write_native(random_weights(config, seed=4), str(tmp_path / "native"))
    export.export(str(tmp_path / "native"), str(tmp_path / "fair"), "fair")
    saved = torch.load(tmp_path / "fair" / "checkpoint.pt", weights_only=True)
    assert set(saved) == {"encoder", "target_encoder", "predictor", export.CONFIG_KEY}
    assert saved["encoder"]["module.backbone.blocks.1.attn.qkv.weight"].shape == (192, 64)
    assert saved["predictor"]["module.backbone.mask_tokens.2"].shape == (1, 1, 48)
    export.import_weights("fair", str(tmp_path / "fair" / "checkpoint.pt"), str(tmp_path / "back"))
    original, back = read_flat(tmp_path / "native"), read_flat(tmp_path / "back")
    assert original.keys() == back.keys()
    for key, value in original.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)


def _v1_state_dicts(seed: int) -> dict:
    """An official V-JEPA (sin-cos) ViT 'micro' checkpoint, names and shapes as in docs/official_reference.md 7:
    width 128, 4 blocks, MLP 512, patch 16, tubelet 2, 16 frames at 32 px (8 x 2 x 2 tokens); predictor 64 x 2."""
    from jepa_jax.models import posemb  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng(seed)
    tensor = lambda *shape: torch.from_numpy(rng.normal(0, 0.02, shape).astype(np.float32))
    width, mlp, pwidth, grid = 128, 512, 64, (8, 2, 2)

    def blocks(prefix, dim, hidden, depth):
        out = {}
        for i in range(depth):
            for name, shape in (("norm1", (dim,)), ("norm2", (dim,))):
                out.update({f"{prefix}.{i}.{name}.weight": tensor(*shape), f"{prefix}.{i}.{name}.bias": tensor(*shape)})
            for name, (rows, cols) in (("attn.qkv", (3 * dim, dim)), ("attn.proj", (dim, dim)),
                                       ("mlp.fc1", (hidden, dim)), ("mlp.fc2", (dim, hidden))):
                out.update({f"{prefix}.{i}.{name}.weight": tensor(rows, cols), f"{prefix}.{i}.{name}.bias": tensor(rows)})
        return out

    encoder = {"pos_embed": torch.from_numpy(posemb.sincos_3d(width, grid)[None]),
               "patch_embed.proj.weight": tensor(width, 3, 2, 16, 16), "patch_embed.proj.bias": tensor(width),
               **blocks("blocks", width, mlp, 4), "norm.weight": tensor(width), "norm.bias": tensor(width)}
    predictor = {"predictor_embed.weight": tensor(pwidth, width), "predictor_embed.bias": tensor(pwidth),
                 "mask_tokens.0": tensor(1, 1, pwidth), "mask_tokens.1": tensor(1, 1, pwidth),
                 "predictor_pos_embed": torch.from_numpy(posemb.sincos_3d(pwidth, grid)[None]),
                 **blocks("predictor_blocks", pwidth, 4 * pwidth, 2),
                 "predictor_norm.weight": tensor(pwidth), "predictor_norm.bias": tensor(pwidth),
                 "predictor_proj.weight": tensor(width, pwidth), "predictor_proj.bias": tensor(width)}
    prefixed = lambda sd: {"module.backbone." + k: v for k, v in sd.items()}
    return {"encoder": prefixed(encoder), "predictor": prefixed(predictor), "target_encoder": prefixed(encoder),
            "epoch": 3, "lr": 6.25e-4}


def test_official_v1_checkpoint_imports_and_exports_back_identically(tmp_path):
    original = _v1_state_dicts(seed=5)
    torch.save(original, tmp_path / "vitm16-latest.pth.tar")
    summary = export.import_weights("fair", str(tmp_path / "vitm16-latest.pth.tar"), str(tmp_path / "ours"))
    assert "V-JEPA (sin-cos) ViT micro/16" in summary["model"]
    model = jepa_jax.load(tmp_path / "ours")
    assert model.config.model.pos_embedding == "sincos" and model.config.data.video.crop_size == 32
    assert model.predictor.num_heads == 4  # V-JEPA's predictor uses the encoder's head count
    export.export(str(tmp_path / "ours"), str(tmp_path / "fair"), "fair")
    back = torch.load(tmp_path / "fair" / "checkpoint.pt", weights_only=True)
    for group in ("encoder", "target_encoder", "predictor"):
        assert back[group].keys() == original[group].keys()
        for key, value in original[group].items():
            np.testing.assert_array_equal(back[group][key].numpy(), value.numpy(), err_msg=f"{group}.{key}")


def test_wrong_arch_for_the_tensors_is_one_line(tmp_path):
    torch.save(_v1_state_dicts(seed=6), tmp_path / "v1.pth.tar")
    with pytest.raises(ValueError, match=r"v1.pth.tar holds a ViT of width 128, 4 blocks, MLP 512; --arch "
                                         r"vjepa_vitl16 expects width 1024, 24 blocks, MLP 4096"):
        export.import_weights("fair", str(tmp_path / "v1.pth.tar"), str(tmp_path / "out"), arch="vjepa_vitl16")


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    payload = _RunsCode()
    payload.marker = marker
    torch.save({"encoder": {"patch_embed.proj.weight": torch.zeros(2)}, "epoch": payload}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"refusing to load .*evil.pt: it holds Python objects besides tensors"):
        export.import_weights("fair", str(tmp_path / "evil.pt"), str(tmp_path / "out"))
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_file_that_is_not_a_checkpoint_is_one_line(tmp_path):
    (tmp_path / "notes.pt").write_text("these are not weights\n")
    with pytest.raises(ValueError, match=r"notes.pt is not a PyTorch checkpoint .*expected a .pt / .pth.tar file"):
        export.import_weights("fair", str(tmp_path / "notes.pt"), str(tmp_path / "out"))


def _official_to_hf(state_dict: dict) -> dict:
    """Official V-JEPA 2 keys (docs/official_reference.md 7) -> VJEPA2Model keys, written from the two layouts' module
    names: fused qkv rows [q; k; v] split in three, mask_tokens.k stacked."""
    out, tokens = {}, {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.backbone.")
        if key.startswith("mask_tokens."):
            tokens[int(key.split(".")[1])] = value
            continue
        for old, new in (("patch_embed.", "encoder.embeddings.patch_embeddings."), ("norm.", "encoder.layernorm."),
                         ("predictor_embed.", "predictor.embeddings.predictor_embeddings."),
                         ("predictor_norm.", "predictor.layernorm."), ("predictor_proj.", "predictor.proj."),
                         ("predictor_blocks.", "predictor.layer."), ("blocks.", "encoder.layer.")):
            if key.startswith(old):
                key = new + key[len(old):]
                break
        key = key.replace(".attn.", ".attention.")
        if ".attention.qkv." in key:
            for part, chunk in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                out[key.replace(".qkv.", f".{part}.")] = chunk
        else:
            out[key] = value
    out["predictor.embeddings.mask_tokens"] = torch.stack([tokens[k] for k in sorted(tokens)])
    return out


def test_fair_export_has_the_official_numerics(tmp_path):
    """Our official-layout .pt, renamed key by key to VJEPA2Model's modules, loads strictly and gives our outputs."""
    case = HF_CASES["w120_h3_t1"]
    config = export.config_from_hf(case, "case")
    export.write_native(random_weights(config, seed=8, groups=("encoder", "predictor")), str(tmp_path / "ours"))
    export.export(str(tmp_path / "ours"), str(tmp_path / "fair"), "fair")
    saved = torch.load(tmp_path / "fair" / "checkpoint.pt", weights_only=True)
    model = transformers.VJEPA2Model(transformers.VJEPA2Config(**case)).eval()
    model.load_state_dict(_official_to_hf({**saved["encoder"], **saved["predictor"]}), strict=True)
    video, context_idx, target_idx = clip_and_masks(case, seed=9)
    want_features, want_predictions = ours(tmp_path / "ours", video, context_idx, target_idx)
    features, predictions = hf_outputs(model, video, context_idx, target_idx)
    assert np.abs(features - want_features).max() <= TOLERANCE
    assert np.abs(predictions - want_predictions).max() <= TOLERANCE


# ------------------------------------------------------------------ V-JEPA 2-AC against the vendored official code

# Official VisionTransformerPredictorAC settings (tests/official/vjepa2): non-square patch grids (RoPE width
# positions scaled by H'/W'), more than two frames (block-causal mask sliced from a longer one), head dims with and
# without pass-through RoPE channels (24: 3 x 8 rotated; 16: 3 x 4 rotated + 4), 3-d and 7-d actions.
AC_CASES = {
    "grid2x3_t3_h2_a3": dict(grid=(2, 3), frames=3, heads=2, action_dim=3),
    "grid3x2_t4_h3_a7": dict(grid=(3, 2), frames=4, heads=3, action_dim=7),
}
AC_WIDTH = 48  # encoder width (tiny_config's custom ViT, 3 heads) and predictor width


def official_ac_checkpoint(case: dict, path, seed: int) -> dict:
    """Write an official V-JEPA 2-AC training checkpoint (groups with the `module.` prefix) whose predictor is the
    vendored VisionTransformerPredictorAC with every parameter perturbed; returns the predictor's state dict."""
    torch.manual_seed(seed)
    (height, width), patch = case["grid"], 16
    model = official_ac.vit_ac_predictor(img_size=(height * patch, width * patch), patch_size=patch,
                                         num_frames=2 * (case["frames"] + 1), tubelet_size=2, embed_dim=AC_WIDTH,
                                         predictor_embed_dim=AC_WIDTH, depth=2, num_heads=case["heads"],
                                         action_embed_dim=case["action_dim"]).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn(param.shape))
    encoder = export.to_fair(random_weights(ac_config(), seed, groups=("encoder",)))["encoder"]
    torch.save({"encoder": {k: torch.from_numpy(v) for k, v in encoder.items()},
                "predictor": {"module." + k: v for k, v in model.state_dict().items()}, "epoch": 1}, path)
    return model


def ac_inputs(case: dict, seed: int, batch: int = 2) -> tuple:
    """Frame features [B, T, H' W', D], actions and states [B, T, A] (float32 numpy)."""
    rng = np.random.default_rng(seed)
    tokens, frames, action_dim = case["grid"][0] * case["grid"][1], case["frames"], case["action_dim"]
    return (rng.normal(size=(batch, frames, tokens, AC_WIDTH)).astype(np.float32),
            rng.normal(size=(batch, frames, action_dim)).astype(np.float32),
            rng.normal(size=(batch, frames, action_dim)).astype(np.float32))


def our_ac_predictions(model_dir, case: dict, frames, actions, states) -> np.ndarray:
    """Our imported AC predictor's output, in the official [B, T H' W', D] token order."""
    model = jepa_jax.load(model_dir)
    prediction, _ = model.predictor.apply({"params": model.params["predictor"]}, frames, actions, states,
                                          case["grid"])
    chex.assert_shape(prediction, frames.shape)
    return np.asarray(prediction).reshape(frames.shape[0], -1, AC_WIDTH)


@pytest.mark.parametrize("name", sorted(AC_CASES))
def test_official_ac_predictor_imports_with_its_outputs_and_exports_back(tmp_path, name):
    case = AC_CASES[name]
    official = official_ac_checkpoint(case, tmp_path / "ac.pt", seed=len(name))
    export.import_weights("fair", str(tmp_path / "ac.pt"), str(tmp_path / "ours"), num_heads=3,
                          predictor_heads=case["heads"])
    frames, actions, states = ac_inputs(case, seed=3)
    with torch.no_grad():
        want = official(torch.from_numpy(frames.reshape(frames.shape[0], -1, AC_WIDTH)), torch.from_numpy(actions),
                        torch.from_numpy(states)).numpy()
    got = our_ac_predictions(tmp_path / "ours", case, frames, actions, states)
    assert got.shape == want.shape and np.abs(got - want).max() <= TOLERANCE
    assert np.abs(want).mean() > 0.1  # not a trivially small output

    export.export(str(tmp_path / "ours"), str(tmp_path / "fair"), "fair")
    back = {k.removeprefix("module."): v
            for k, v in torch.load(tmp_path / "fair" / "checkpoint.pt", weights_only=True)["predictor"].items()}
    original = official.state_dict()
    assert back.keys() == original.keys()
    for key, value in original.items():
        expected = torch.zeros_like(value) if key.startswith("extrinsics_encoder.") else value  # dropped on import
        np.testing.assert_array_equal(back[key].numpy(), expected.numpy(), err_msg=key)
    official.load_state_dict(back, strict=True)
