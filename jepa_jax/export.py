"""Checkpoint exchange: export runs for other teams; import official V-JEPA / V-JEPA 2 and Hugging Face weights.

Formats (`jepa-jax export --format F`, `jepa-jax import --from F`):
  native  OUT/model.safetensors   groups "encoder.", "target_encoder.", "predictor." + our parameter names
          OUT/config.json         our resolved config: rebuilds the model (`jepa_jax.load`, train.init_from)
          OUT/README.md           model card (architecture, data, steps, metrics)
  fair    OUT/checkpoint.safetensors and, with torch installed, OUT/checkpoint.pt: the official training
          checkpoint layout, {group: state_dict} with keys "module.backbone.blocks.0.attn.qkv.weight"; an
          action-conditioned model (objective "ac") as V-JEPA 2-AC training saves it, "module." keys and a
          VisionTransformerPredictorAC predictor ("module.action_encoder.weight")
  hf      OUT/config.json + OUT/model.safetensors for `transformers.VJEPA2Model.from_pretrained(OUT)`

Reading never runs pickled code (safetensors, or torch.load(weights_only=True)), and every load is strict: a
missing, unexpected or mis-shaped tensor fails with the list of offending names and shapes.
"""

import json
import math
import os
import re
import zipfile

import ml_collections
import numpy as np

from jepa_jax import checkpoint, config as config_lib, layouts, metrics as metrics_lib, native, recipes, storage
from jepa_jax.models import posemb, vit

GROUPS = native.GROUPS
FORMATS = ("native", "fair", "hf")
WEIGHTS_FILE = native.WEIGHTS_FILE
FAIR_PREFIX = "module.backbone."  # DistributedDataParallel + MultiSeqWrapper, as official training saves
AC_FAIR_PREFIX = "module."  # V-JEPA 2-AC training wraps its encoder and predictor in DDP only
FAIR_FILES = ("checkpoint.safetensors", "checkpoint.pt")
# Entries of official training checkpoints that are not model weights.
CONFIG_KEY = "jepa_jax_config"  # our config (JSON) inside fair exports: exact architecture on re-import
TRAINING_EXTRAS = frozenset({"opt", "scaler", "epoch", "loss", "batch_size", "world_size", "lr", "itr"})
ARCH_SIZES = {"vitl16": "large", "vith16": "huge", "vitg16": "giant"}
ARCH_FAMILIES = {"vjepa": "sincos", "vjepa2": "rope"}  # V-JEPA: sin-cos positions; V-JEPA 2: 3D RoPE
V2_PREDICTOR_HEADS = 12  # V-JEPA's predictor uses the encoder's head count (docs/official_reference.md 3)
AC_PREDICTOR_HEADS = 16  # vit_ac_predictor's default (1024 wide, 24 blocks), as the released V-JEPA 2-AC


# ------------------------------------------------------------------------------------------------ files

def _torch_load(path: str):
    """torch.load(weights_only=True): plain containers of tensors only; one-line errors otherwise."""
    try:
        import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
        raise ValueError(f"{path}: reading PyTorch files needs torch: pip install 'jepa_jax[interop]', or convert "
                         f"the file to safetensors") from None
    try:
        # mmap: a multi-GB training checkpoint (optimizer state included) is paged in, not copied into memory
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as err:  # pylint: disable=broad-except  (torch raises many types for foreign files)
        if "weights only load failed" in str(err).lower():
            raise ValueError(f"refusing to load {path}: it holds Python objects besides tensors, which "
                             f"torch.load(weights_only=True) will not run; get the weights as safetensors or "
                             f"convert them where you trust the file") from None
        raise ValueError(f"{path} is not a PyTorch checkpoint ({type(err).__name__}: {native.one_line(err)}): expected "
                         f"a .pt / .pth.tar file written by torch.save") from None


def _to_numpy(value, path: str, name: str) -> np.ndarray:
    import torch  # pylint: disable=g-import-not-at-top
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{path}: entry {name} is a {type(value).__name__}, not a tensor")
    value = value.detach()
    return (value.float() if value.is_floating_point() else value).numpy()


def _strip(key: str) -> str:
    """Drop the `module.` (DDP) and `backbone.` (multi-mask wrapper) prefixes of official checkpoints."""
    return re.sub(r"^((module|backbone)\.)+", "", key)


def _grouped(flat: dict, path: str) -> dict:
    """{"encoder.module.backbone.x": a, ...} -> {"encoder": {"x": a}}; a bare state dict is one encoder group."""
    if not any(k.split(".", 1)[0] in GROUPS for k in flat):
        return {"encoder": {_strip(k): v for k, v in flat.items()}}
    groups = {}
    for key, value in flat.items():
        group, _, rest = key.partition(".")
        if group not in GROUPS:
            raise ValueError(f"{path}: tensor {key} belongs to no group of {GROUPS}")
        groups.setdefault(group, {})[_strip(rest)] = value
    return groups


def read_fair(path: str) -> tuple[dict, dict | None]:
    """({group: {official key without prefixes: array}}, our config dict if a jepa_jax export wrote the file) of
    an official-layout .pt / .pth.tar / .safetensors file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: give an official checkpoint (.pt, .pth.tar) or the "
                                f"checkpoint.safetensors of a `jepa-jax export --format fair`")
    if path.endswith(".safetensors"):
        tensors, metadata = native.read_safetensors(path)
        return _grouped(tensors, path), json.loads(metadata[CONFIG_KEY]) if CONFIG_KEY in metadata else None
    content = _torch_load(path)
    if not isinstance(content, dict):
        raise ValueError(f"{path} holds a {type(content).__name__}, not a checkpoint dict")
    if not any(k in GROUPS for k in content):
        return _grouped({k: _to_numpy(v, path, k) for k, v in content.items()}, path), None
    unknown = sorted(k for k in content if k not in GROUPS and k not in TRAINING_EXTRAS and k != CONFIG_KEY)
    if unknown:
        raise ValueError(f"{path}: unexpected entries {unknown}: expected {list(GROUPS)} (and training state)")
    groups = {g: {_strip(k): _to_numpy(v, path, f"{g}.{k}") for k, v in content[g].items()}
              for g in GROUPS if content.get(g) is not None}
    return groups, json.loads(content[CONFIG_KEY]) if CONFIG_KEY in content else None


def read_fair_probe(path: str) -> dict:
    """{official key: array} of an attentive probe (the official AttentiveClassifier): a V-JEPA 2 probe checkpoint
    (its first head of "classifiers", as the released probes are read), a V-JEPA one ("classifier"), a bare state
    dict, or a .safetensors file of one; `module.` prefixes dropped."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: give an official probe checkpoint (.pt) or its state dict "
                                f"as .safetensors")
    if path.endswith(".safetensors"):
        tensors = native.read_safetensors(path)[0]
    else:
        content = _torch_load(path)
        if isinstance(content, dict) and isinstance(content.get("classifiers"), list) and content["classifiers"]:
            content = content["classifiers"][0]
        elif isinstance(content, dict) and isinstance(content.get("classifier"), dict):
            content = content["classifier"]
        if not isinstance(content, dict):
            raise ValueError(f"{path} holds a {type(content).__name__}, not a probe state dict")
        tensors = content
    tensors = {_strip(k): v for k, v in tensors.items()}
    if not {"pooler.query_tokens", "linear.weight"} <= set(tensors):
        raise ValueError(f"{path} is not an attentive probe: no pooler.query_tokens / linear.weight among its "
                         f"{len(tensors)} entries (e.g. {sorted(tensors)[:3]})")
    return {k: v if isinstance(v, np.ndarray) else _to_numpy(v, path, k) for k, v in tensors.items()}


# ------------------------------------------------------------------------------------------------ native

def write_native(weights: native.Weights, out: str, groups=GROUPS) -> list[str]:
    """Write a native folder (model.safetensors + config.json, see `jepa_jax.native`) and its README.md model card;
    returns the groups written."""
    chosen = native.write(weights, out, groups)
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write(model_card(weights, chosen))
    return chosen


# ------------------------------------------------------------------------------------------------ official layout

def _is_image(config) -> bool:
    """One-frame clips: the official code builds these models with a Conv2d patch embedding (I-JEPA too)."""
    return config_lib.clip_shape(config)[0] == 1


def fair_prefix(config) -> str:
    """The key prefix official training gives this model's state dicts: `module.` for V-JEPA 2-AC, else
    `module.backbone.`."""
    return AC_FAIR_PREFIX if config.objective == "ac" else FAIR_PREFIX


def fair_unsupported(config) -> list[str]:
    """Why the official code cannot run this model from its official-layout weights (empty if it can): each reason
    names the config field and the fix."""
    m, reasons = config.model, []
    if m.rope_pairing != "repeat" and (m.pos_embedding == "rope" or config.objective == "ac"):
        reasons.append(f"config.model.rope_pairing={m.rope_pairing!r}: the official code rotates with the released "
                       f"'repeat' pairing (train with rope_pairing='repeat')")
    if config.objective != "ac":
        return reasons
    ac = config.ac
    if m.pos_embedding != "rope":
        reasons.append("config.model.pos_embedding='sincos': V-JEPA 2-AC's encoder uses 3D RoPE (set "
                       "pos_embedding='rope')")
    if ac.predict_proprio:
        reasons.append("config.ac.predict_proprio=True adds proprio_proj, which VisionTransformerPredictorAC lacks "
                       "(train with predict_proprio=False, or export --format native)")
    if ac.proprio_dim != ac.action_dim:
        reasons.append(f"config.ac.proprio_dim={ac.proprio_dim} differs from config.ac.action_dim={ac.action_dim}: "
                       f"VisionTransformerPredictorAC sizes its state and action encoders by one action_embed_dim "
                       f"(pad proprio to action_dim, or export --format native)")
    return reasons


def _fair_extras(config, kind: str) -> dict:
    """Official tensors that are none of our parameters, as export writes them: {key: array}. V-JEPA's frozen
    sin-cos tables `pos_embed` / `predictor_pos_embed` [1, N, width] (import checks their values), and V-JEPA
    2-AC's `extrinsics_encoder` Linear (action_dim - 1 -> Dp), built but unused (use_extrinsics=False): zeros on
    export, required and dropped on import whatever its values."""
    if config.objective == "ac":
        if kind == "encoder":
            return {}
        width, inputs = config.ac.predictor.width, config.ac.action_dim - 1
        return {"extrinsics_encoder.weight": np.zeros((width, inputs), np.float32),
                "extrinsics_encoder.bias": np.zeros((width,), np.float32)}
    if config.model.pos_embedding != "sincos":
        return {}
    grid = config_lib.token_grid(config)
    if kind == "encoder":
        return {"pos_embed": posemb.sincos_3d(config_lib.encoder_size(config).width, grid)[None]}
    return {"predictor_pos_embed": posemb.sincos_3d(config.model.predictor.width, grid)[None]}


def to_fair(weights: native.Weights) -> dict:
    """{group: official state dict (keys with the fair_prefix)} of `weights`; ValueError (one line) for a model
    the official code cannot run."""
    config = weights.config
    reasons = fair_unsupported(config)
    if reasons:
        raise ValueError(f"{weights.source}: cannot export to the official layout: {'; '.join(reasons)}")
    extras = {kind: _fair_extras(config, kind) for kind in ("encoder", "predictor")}
    image, prefix = _is_image(config), fair_prefix(config)
    return {group: {prefix + k: v for k, v in {**extras[native.kind(group)],
                                               **layouts.to_layout(layouts.FAIR, tensors, image)}.items()}
            for group, tensors in weights.groups.items()}


def write_fair(weights: native.Weights, out: str) -> list[str]:
    """OUT/checkpoint.safetensors, and OUT/checkpoint.pt when torch is installed; returns the files written."""
    fair = to_fair(weights)
    os.makedirs(out, exist_ok=True)
    written = [os.path.join(out, FAIR_FILES[0])]
    config_json = config_lib.to_json(weights.config, indent=None)
    native.write_safetensors({f"{g}.{k}": v for g, sd in fair.items() for k, v in sd.items()}, written[0],
                       {"format": "pt", "layout": "vjepa-official", CONFIG_KEY: config_json})
    try:
        import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
        return written
    written.append(os.path.join(out, FAIR_FILES[1]))
    torch.save({**{g: {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()} for g, sd in fair.items()},
                CONFIG_KEY: config_json}, written[1])  # official loaders read the groups by name and skip the rest
    return written


def _check_extras(tensors: dict, extras: dict, path: str, what: str) -> None:
    """The official-only tensors `extras` ({key: array}) are all there with their shapes; sin-cos tables also hold
    this architecture's values."""
    native.check_tensors(path, {k: v.shape for k, v in extras.items()},
                         {k: tensors[k].shape for k in extras if k in tensors}, what)
    for key in (k for k in extras if k.endswith("pos_embed")):
        if not np.allclose(tensors[key], extras[key], atol=1e-5):
            raise native.TensorMismatch(f"{path}: {key} {tensors[key].shape} is not the 3D sin-cos table of this "
                                         f"architecture: another grid or an interpolated table")


def from_fair(groups: dict, config, path: str) -> dict:
    """Official state dicts -> our {group: flat tensors}, strict. RoPE checkpoints may carry an unused pos_embed
    (the released V-JEPA 2 files do; the official hub loader ignores it too)."""
    expected = native.param_shapes(config)
    out = {}
    for group, tensors in groups.items():
        kind, what = native.kind(group), f"the {group} of {describe(config)}"
        extras = _fair_extras(config, kind)
        _check_extras(tensors, extras, path, what)
        if config.model.pos_embedding == "rope" and kind == "encoder":
            tensors = {k: v for k, v in tensors.items() if k != "pos_embed"}
        tensors = {k: v for k, v in tensors.items() if k not in extras}
        out[group] = layouts.from_layout(layouts.FAIR, tensors, expected[kind], path, what, _is_image(config))
    return out


def parse_arch(arch: str) -> tuple[str, str]:
    """"vjepa2_vitl16" / "vjepa_huge" -> (pos embedding, size name); one-line error for other names."""
    family, _, size = arch.partition("_")
    size = ARCH_SIZES.get(size, size)
    if family not in ARCH_FAMILIES or size not in vit.SIZES:
        raise ValueError(f"--arch {arch!r} is unknown: use FAMILY_SIZE with FAMILY in {sorted(ARCH_FAMILIES)} and "
                         f"SIZE in {sorted(ARCH_SIZES) + sorted(vit.SIZES)}, e.g. vjepa2_vitl16")
    return ARCH_FAMILIES[family], size


def _blocks(tensors: dict, prefix: str) -> int:
    return 1 + max((int(m[1]) for k in tensors for m in [re.match(rf"{prefix}\.(\d+)\.", k)] if m), default=-1)


def _named_size(width: int, depth: int, mlp_dim: int, heads: int | None = None) -> str | None:
    for name, size in vit.SIZES.items():
        if (size.width, size.depth, size.mlp_dim) == (width, depth, mlp_dim) and heads in (None, size.num_heads):
            return name
    return None


def _grid_of(num_tokens: int, frames_hint: int) -> tuple[int, int]:
    """(T', S) with T' S S = num_tokens, preferring T' = frames_hint (a sin-cos table's grid)."""
    for t in [frames_hint] + list(range(1, num_tokens + 1)):
        side = math.isqrt(num_tokens // t) if num_tokens % t == 0 else 0
        if side and t * side * side == num_tokens:
            return t, side
    raise ValueError(f"a sin-cos table of {num_tokens} tokens is not T' x S x S")


def _family(encoder: dict, predictor: dict | None, path: str) -> str:
    """"sincos" or "rope", from the tensors: only V-JEPA predictors carry a sin-cos table."""
    if predictor is not None:
        return "sincos" if "predictor_pos_embed" in predictor else "rope"
    if "pos_embed" in encoder:
        raise ValueError(f"{path}: an encoder alone with a pos_embed can be V-JEPA (sin-cos) or V-JEPA 2 (RoPE): "
                         f"pass --arch, e.g. vjepa_vitl16 or vjepa2_vitl16")
    return "rope"


def _encoder_size(dims: tuple[int, int, int], arch: str | None, num_heads: int | None, path: str) -> tuple:
    """(size name, ViTSize) of an encoder of dims (width, depth, MLP): the --arch size, explicit dimensions with
    --num_heads ("custom"), or the named size those dims are; one-line error otherwise."""
    width, depth, mlp_dim = dims
    held = f"{path} holds a ViT of width {width}, {depth} blocks, MLP {mlp_dim}"
    if arch and num_heads:
        raise ValueError(f"--arch {arch} names a size with its head count: give --arch or --num_heads, not both")
    if arch:
        name = parse_arch(arch)[1]
        want = vit.SIZES[name]
        if (want.width, want.depth, want.mlp_dim) != dims:
            raise ValueError(f"{held}; --arch {arch} expects width {want.width}, {want.depth} blocks, MLP "
                             f"{want.mlp_dim}")
        return name, want
    if num_heads:
        if width % num_heads:
            raise ValueError(f"{held}: --num_heads {num_heads} does not divide the width {width}")
        return "custom", vit.ViTSize(width=width, depth=depth, num_heads=num_heads, mlp_dim=mlp_dim)
    name = _named_size(width, depth, mlp_dim)
    if name is None:
        raise ValueError(f"{path}: a ViT of width {width}, {depth} blocks, MLP {mlp_dim} is no known size, and "
                         f"head counts cannot be read from tensors: pass --arch FAMILY_SIZE, or --num_heads N "
                         f"(and --predictor_heads N)")
    return name, vit.SIZES[name]


def _predictor_dims(predictor: dict, default_heads: int, heads: int | None, rope: bool, path: str) -> dict:
    """{width, depth, num_heads, mlp_ratio} of an official predictor: heads = --predictor_heads, else the official
    default for its family; one-line error when they do not divide the width (into RoPE heads of >= 6 dims)."""
    width = int(predictor["predictor_embed.weight"].shape[0])
    given, heads = heads, heads or default_heads
    if width % heads or (rope and posemb.rope_axis_dim(width // heads) == 0):
        source = "--predictor_heads" if given else "the official default"
        raise ValueError(f"{path}: a {'RoPE ' if rope else ''}predictor of width {width} cannot have {heads} heads "
                         f"({source}): pass --predictor_heads N")
    return dict(width=width, depth=_blocks(predictor, "predictor_blocks"), num_heads=heads,
                mlp_ratio=predictor["predictor_blocks.0.mlp.fc1.weight"].shape[0] / width)


def _as_action_conditioned(config, predictor: dict, dims: dict) -> None:
    """Make `config` the V-JEPA 2-AC world model of an official VisionTransformerPredictorAC (in place): actions and
    proprio of action_embed_dim each, no proprio head, every patch a state token, 8-frame clips at the crop size."""
    action_dim = int(predictor["action_encoder.weight"].shape[1])
    config.objective, config.data.source = "ac", "trajectories"
    config.ac.update(encoder="frozen", num_frames=8, image_size=config.data.video.crop_size, action_dim=action_dim,
                     proprio_dim=action_dim, predict_proprio=False, pool_grid=0)
    config.ac.predictor.update(dims)


def config_from_fair(groups: dict, path: str, arch: str | None = None, num_heads: int | None = None,
                     predictor_heads: int | None = None) -> ml_collections.ConfigDict:
    """The config of an official checkpoint: dimensions read from the tensors, head counts from the size name
    (--arch or detected) or given (num_heads: the encoder's, recorded as model.size="custom"; predictor_heads)."""
    encoder = groups.get("encoder") or groups.get("target_encoder")
    if encoder is None or "patch_embed.proj.weight" not in encoder:
        raise ValueError(f"{path} has no encoder (patch_embed.proj.weight): groups {sorted(groups)}")
    patch = encoder["patch_embed.proj.weight"]
    width, tubelet = patch.shape[0], patch.shape[2] if patch.ndim == 5 else 1
    depth = _blocks(encoder, "blocks")
    mlp_dim = encoder["blocks.0.mlp.fc1.weight"].shape[0] if depth else 0
    predictor = groups.get("predictor")
    pos = parse_arch(arch)[0] if arch else _family(encoder, predictor, path)
    name, size = _encoder_size((width, depth, mlp_dim), arch, num_heads, path)
    frames, crop = 1 if patch.ndim == 4 else 16, 256 if pos == "rope" else 224  # Conv2d: an image model
    if pos == "sincos":
        table = encoder.get("pos_embed", (predictor or {}).get("predictor_pos_embed"))
        if table is not None:
            t, side = _grid_of(table.shape[1], frames // tubelet)
            frames, crop = t * tubelet, side * patch.shape[-1]
    recipe_size = "large" if name == "custom" else name
    config = recipes.vjepa1(recipe_size, crop) if pos == "sincos" else recipes.vjepa2(recipe_size, epochs=10)
    # Imported weights compute in float32 (features equal the official model's); training may set bfloat16.
    config.model.update(size=name, patch_size=int(patch.shape[-1]), tubelet_size=int(tubelet), dtype="float32")
    if name == "custom":
        config.model.custom.update(width=size.width, depth=size.depth, num_heads=size.num_heads, mlp_dim=size.mlp_dim)
    config.data.video.update(frames_per_clip=int(frames), crop_size=int(crop))
    if predictor is not None and "action_encoder.weight" in predictor:
        _as_action_conditioned(config, predictor, _predictor_dims(predictor, AC_PREDICTOR_HEADS, predictor_heads,
                                                                  True, path))
    elif predictor is not None and "predictor_embed.weight" in predictor:
        default = size.num_heads if pos == "sincos" else V2_PREDICTOR_HEADS
        config.model.predictor.update(**_predictor_dims(predictor, default, predictor_heads, pos == "rope", path),
                                      num_mask_tokens=sum(1 for k in predictor if k.startswith("mask_tokens.")))
    return config


def describe(config) -> str:
    """"a V-JEPA 2 (RoPE) ViT large/16 (...), predictor width 384 x 12 blocks" (", AC predictor ..." for objective
    "ac") for messages and model cards."""
    m = config.model
    size = config_lib.encoder_size(config)
    family = "V-JEPA 2 (RoPE)" if m.pos_embedding == "rope" else "V-JEPA (sin-cos)"
    p, kind = (config.ac.predictor, "AC predictor") if config.objective == "ac" else (m.predictor, "predictor")
    return (f"a {family} ViT {m.size}/{m.patch_size} (width {size.width}, {size.depth} blocks, {size.num_heads} "
            f"heads), {kind} width {p.width} x {p.depth} blocks")


# ------------------------------------------------------------------------------------------------ Hugging Face

HF_FIXED = {"in_chans": 3, "layer_norm_eps": 1e-6, "qkv_bias": True, "hidden_act": "gelu", "drop_path_rate": 0.0}


def hf_unsupported(config) -> list[str]:
    """Why `transformers.VJEPA2Model` cannot hold this model (empty if it can)."""
    m, size = config.model, config_lib.encoder_size(config)
    reasons = []
    if m.pos_embedding != "rope":
        reasons.append("VJEPA2Model has 3D RoPE only, this model uses sin-cos positions (V-JEPA 1 / I-JEPA)")
    if m.rope_pairing != "repeat":
        reasons.append("VJEPA2Model rotates with the released V-JEPA 2 'repeat' pairing, this model uses "
                       f"rope_pairing={m.rope_pairing!r}")
    if int(size.width * (size.mlp_dim / size.width)) != size.mlp_dim:
        reasons.append(f"an MLP of {size.mlp_dim} is not int(width x mlp_ratio) for width {size.width}")
    return reasons


def hf_config(config) -> dict:
    """The VJEPA2Config (config.json) of our model."""
    m, size = config.model, config_lib.encoder_size(config)
    frames, crop = config_lib.clip_shape(config)
    return {"architectures": ["VJEPA2Model"], "model_type": "vjepa2", "torch_dtype": "float32", **HF_FIXED,
            "hidden_size": size.width, "num_hidden_layers": size.depth, "num_attention_heads": size.num_heads,
            "mlp_ratio": size.mlp_dim / size.width, "patch_size": m.patch_size, "tubelet_size": m.tubelet_size,
            "crop_size": crop, "frames_per_clip": frames, "pred_hidden_size": m.predictor.width,
            "pred_num_hidden_layers": m.predictor.depth, "pred_num_attention_heads": m.predictor.num_heads,
            "pred_mlp_ratio": m.predictor.mlp_ratio, "pred_num_mask_tokens": config_lib.num_mask_tokens(config),
            "pred_zero_init_mask_tokens": True}


def encoder_group(weights: native.Weights, encoder: str = "auto") -> str:
    """The encoder to use where only one fits (HF export, features): "auto" = the EMA target encoder if the weights
    have one (what V-JEPA evaluations use), else the online encoder; or "target" / "online"."""
    if encoder == "auto":
        return "target_encoder" if "target_encoder" in weights.groups else "encoder"
    group = {"target": "target_encoder", "online": "encoder"}.get(encoder)
    if group not in weights.groups:
        raise ValueError(f"--encoder={encoder}: {weights.source} has groups {sorted(weights.groups)}")
    return group


def write_hf(weights: native.Weights, out: str, encoder: str = "auto") -> list[str]:
    """OUT/config.json + OUT/model.safetensors loadable by transformers.VJEPA2Model.from_pretrained(OUT)."""
    reasons = hf_unsupported(weights.config)
    if reasons:
        raise ValueError(f"{weights.source}: cannot export to Hugging Face VJEPA2Model: {'; '.join(reasons)}")
    if "predictor" not in weights.groups:
        raise ValueError(f"{weights.source} has no predictor: VJEPA2Model needs one (export with the predictor)")
    os.makedirs(out, exist_ok=True)
    flat = {**weights.groups[encoder_group(weights, encoder)], **weights.groups["predictor"]}
    native.write_safetensors(layouts.to_layout(layouts.HF, flat), os.path.join(out, WEIGHTS_FILE), {"format": "pt"})
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(hf_config(weights.config), f, indent=2)
    return [os.path.join(out, "config.json"), os.path.join(out, WEIGHTS_FILE)]


def read_hf(directory: str) -> tuple[dict, dict]:
    """(VJEPA2Config dict, {name: array}) of a Hugging Face model folder (one or sharded safetensors files)."""
    config_path = os.path.join(directory, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{config_path} does not exist: give a Hugging Face VJEPA2 model folder "
                                f"(config.json + model.safetensors)")
    with open(config_path, encoding="utf-8") as f:
        hf = json.load(f)
    if hf.get("model_type") != "vjepa2":
        raise ValueError(f"{config_path}: model_type {hf.get('model_type')!r} is not 'vjepa2'")
    index = os.path.join(directory, WEIGHTS_FILE + ".index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = [WEIGHTS_FILE]
    tensors = {}
    for name in files:
        tensors.update(native.read_safetensors(os.path.join(directory, name))[0])
    return hf, {re.sub(r"^vjepa2\.", "", k): v for k, v in tensors.items()}


def config_from_hf(hf: dict, path: str) -> ml_collections.ConfigDict:
    """Our config for a VJEPA2Config (V-JEPA 2 recipe fields, the checkpoint's dimensions)."""
    patch = hf.get("patch_size", 16)
    if not isinstance(patch, int):
        raise ValueError(f"{path}: patch_size {patch} is not square; jepa_jax patches are square")
    width, depth, heads = hf.get("hidden_size", 1024), hf.get("num_hidden_layers", 24), hf.get("num_attention_heads", 16)
    mlp_dim = int(width * hf.get("mlp_ratio", 4.0))
    size = _named_size(width, depth, mlp_dim, heads)
    config = recipes.vjepa2(size or "large", epochs=10)
    config.model.update(size=size or "custom", patch_size=patch, tubelet_size=hf.get("tubelet_size", 2),
                        dtype="float32")  # as config_from_fair
    if size is None:
        config.model.custom.update(width=width, depth=depth, num_heads=heads, mlp_dim=mlp_dim)
    config.model.predictor.update(width=hf.get("pred_hidden_size", 384), depth=hf.get("pred_num_hidden_layers", 12),
                                  num_heads=hf.get("pred_num_attention_heads", 12),
                                  mlp_ratio=float(hf.get("pred_mlp_ratio", 4.0)),
                                  num_mask_tokens=hf.get("pred_num_mask_tokens", 10))
    config.data.video.update(frames_per_clip=hf.get("frames_per_clip", 64), crop_size=hf.get("crop_size", 256))
    return config


# ------------------------------------------------------------------------------------------------ entry points

def load_weights(path: str, step: int | None = None) -> native.Weights:
    """Weights of a native export folder or of a training run directory (step: default its newest checkpoint)."""
    if native.is_folder(path):
        return native.read(path)
    if not os.path.isdir(os.path.join(path, "checkpoints")):
        raise FileNotFoundError(f"{path} is neither a `jepa-jax export`/`import` folder ({WEIGHTS_FILE} + "
                                f"config.json) nor a `jepa-jax train` run directory (checkpoints/)")
    step = checkpoint.resolve_step(path, step)
    checkpointer = checkpoint.Checkpointer(path)
    try:
        config = config_lib.from_dict(checkpointer.restore_config(step))
        restored = checkpointer.restore_params(step)
    finally:
        checkpointer.close()
    groups = {kind: native.flatten(restored["params"][kind]) for kind in ("encoder", "predictor")}
    if restored["ema_params"] is not None:
        groups["target_encoder"] = native.flatten(restored["ema_params"])
    return native.Weights(config, groups, step, path)


def export(source: str, out: str, fmt: str, *, step: int | None = None, groups=GROUPS, encoder: str = "auto") -> dict:
    """`jepa-jax export`: write `source` (run dir or native folder) to `out` in format `fmt`; returns a summary."""
    storage.check_local(out, "--out")
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r} is unknown: choose one of {list(FORMATS)}")
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise ValueError(f"--groups {unknown} unknown: choose from {list(GROUPS)}")
    weights = load_weights(source, step)
    weights.groups = {g: t for g, t in weights.groups.items() if g in groups}
    if fmt == "native":
        written = [os.path.join(out, f) for f in (WEIGHTS_FILE, "config.json", "README.md")]
        chosen = write_native(weights, out, groups)
    elif fmt == "fair":
        chosen, written = sorted(weights.groups), write_fair(weights, out)
    else:
        chosen = [encoder_group(weights, encoder), "predictor"]
        written = write_hf(weights, out, encoder)
    return {"format": fmt, "source": source, "step": weights.step, "groups": chosen, "files": written,
            "model": describe(weights.config)}


def import_weights(fmt: str, src: str, out: str, arch: str | None = None, num_heads: int | None = None,
                   predictor_heads: int | None = None) -> dict:
    """`jepa-jax import`: official ("fair") or Hugging Face ("hf") weights -> a native folder at `out`. arch,
    num_heads, predictor_heads: what a fair checkpoint's tensors cannot say (see config_from_fair); given, they
    win over the config a jepa_jax export carries."""
    storage.check_local(out, "--out")
    given = arch or num_heads or predictor_heads
    if fmt == "fair":
        groups, ours = read_fair(src)
        config = config_lib.from_dict(ours) if ours and not given else config_from_fair(
            groups, src, arch, num_heads, predictor_heads)
        flat = from_fair(groups, config, src)
    elif fmt == "hf":
        hf, tensors = read_hf(src)
        config = config_from_hf(hf, src)
        if given:
            raise ValueError("--arch, --num_heads and --predictor_heads are for official checkpoints; a Hugging Face "
                             "folder describes itself")
        shapes = native.param_shapes(config)
        merged = layouts.from_layout(layouts.HF, tensors, {**shapes["encoder"], **shapes["predictor"]},
                                     os.path.join(src, WEIGHTS_FILE), describe(config))
        flat = {g: {k: merged[k] for k in shapes[g]} for g in ("encoder", "predictor")}
    else:
        raise ValueError(f"--from {fmt!r} is unknown: choose fair (official V-JEPA / V-JEPA 2) or hf")
    weights = native.Weights(config, flat, None, src)
    chosen = write_native(weights, out)
    return {"from": fmt, "source": src, "out": out, "groups": chosen, "model": describe(config)}


# ------------------------------------------------------------------------------------------------ model card

def _metrics_at(run_dir: str, step: int | None) -> dict:
    """The last metrics.jsonl record at or before `step` (empty if the run logged none)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if step is None or not os.path.isfile(path):
        return {}
    return ([{}] + [r for r in metrics_lib.read_jsonl(path) if r["step"] <= step])[-1]


def model_card(weights: native.Weights, groups) -> str:
    """README.md of a native export: architecture, data, steps, metrics, how to load."""
    config, counts = weights.config, {g: sum(int(np.prod(v.shape)) for v in weights.groups[g].values()) for g in groups}
    frames, crop = config_lib.clip_shape(config)
    data = {"balls": "the built-in bouncing-balls world", "packed": f"packed clips in {config.data.packed_dir}",
            "video": f"videos listed in {', '.join(config.data.video.manifests)}",
            "trajectories": f"trajectories in {config.data.trajectories or 'a folder not recorded'}"}[config.data.source]
    metrics = _metrics_at(weights.source, weights.step)
    shown = {k: float(f"{metrics[k]:.4g}") for k in ("loss", "prediction_loss", "target_effective_rank",
                                                      "target_spread", "prediction_cosine") if k in metrics}
    lines = [f"# jepa_jax model: {describe(config)}", "",
             f"- Objective: {config.objective}; trained {weights.step if weights.step is not None else 'unknown'} "
             f"steps at batch {config.data.batch_size}; clips {frames} frames at {crop}x{crop}.",
             f"- Data: {data}.", f"- Source: {weights.source}.",
             "- Groups: " + ", ".join(f"{g} ({counts[g]:,} parameters)" for g in groups) + ".",
             f"- Metrics at this step: {json.dumps(shown) if shown else 'not logged'}.", "",
             "Load it with `jepa_jax.load(DIR)` (`.features(video_uint8[B, T, H, W, 3])` -> [B, N, D]), extract "
             "features with `jepa-jax extract --model DIR --data MANIFEST --out FILE`, or continue training with "
             "`--config.train.init_from=DIR`. `config.json` is the full training config."]
    return "\n".join(lines) + "\n"
