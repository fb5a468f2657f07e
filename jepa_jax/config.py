"""Checks a run config before anything is compiled, and builds the objects it describes.

Every error is one line naming the config field and the valid choices.
"""

import importlib.util
import json
import os

import jax.numpy as jnp
import ml_collections

from jepa_jax import masks as masks_lib, recipes, storage
from jepa_jax.data import pipeline, sources as sources_lib
from jepa_jax.models import ac_predictor, attention, pixel_decoder, posemb, predictor, probe, vit

OBJECTIVES = ("ema", "sigreg", "ac", "probe", "pixels")
LOSSES = ("l1", "l2", "smooth_l1")
POS_EMBEDDINGS = ("rope", "sincos")
DATA_SOURCES = ("balls", "video", "packed", "trajectories")
AC_ENCODERS = ("frozen", "joint")
AC_ROLLOUT_PROPRIO = ("recorded", "predicted")
DTYPES = ("float32", "bfloat16")


def load_module(path: str):
    """Import a Python file (a config or sweep file) as a module."""
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """Load `get_config(arg)` from a config file (what `--config path:arg` does on the command line)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} does not exist: pass a file under experiments/configs/")
    module = load_module(path)
    return module.get_config(arg) if arg is not None else module.get_config()


def load_spec(spec: str) -> ml_collections.ConfigDict:
    """Load a config from "path[:arg]", the form --config and sweep files use."""
    path, _, arg = spec.partition(":")
    return load(path, arg or None)


def override(config: ml_collections.ConfigDict, dotted_key: str, value) -> None:
    """config.<dotted_key> = value (what `--config.a.b=value` does); one-line error for an unknown field."""
    message = missing_key(config, dotted_key)
    if message:
        raise ValueError(message)
    *parents, name = dotted_key.split(".")
    node = config
    for part in parents:
        node = node[part]
    if isinstance(node[name], float) and isinstance(value, int):
        value = float(value)
    node[name] = tuple(value) if isinstance(value, list) else value


def _tuples(value):
    """JSON lists back to the tuples config files use, recursively."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def load_run(run_dir: str) -> ml_collections.ConfigDict:
    """The resolved config a run wrote to {run_dir}/config.json (what `jepa-jax train --rerun DIR` trains)."""
    path = storage.path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: --rerun needs a run directory written by `jepa-jax train`")
    return from_dict(json.loads(path.read_text()))


def _fill_missing(fields: dict, defaults: dict) -> dict:
    """`fields` plus the schema fields it lacks (a config written before they existed), recursively; the user's
    mask configs are left as they are."""
    out = dict(fields)
    for key, default in defaults.items():
        if key not in out:
            out[key] = default
        elif key != "masks" and isinstance(default, dict) and isinstance(out[key], dict):
            out[key] = _fill_missing(out[key], default)
    return out


def to_json(config: ml_collections.ConfigDict, indent: int | None = 2) -> str:
    """The resolved config as JSON, config.masks in the order the run iterates them (= the mask-token order; a
    ConfigDict's JSON otherwise keeps insertion order even where copy.deepcopy made it iterate sorted)."""
    return json.dumps(config.to_dict(), indent=indent)


def write_json(config: ml_collections.ConfigDict, path: str) -> None:
    """to_json(config) in `path` (local or bucket); `load_run` reads it."""
    storage.path(path).write_text(to_json(config))


def copy_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """An independent copy of `config` that keeps config.masks' order (copy.deepcopy of a ConfigDict built with
    sort_keys=False iterates its keys sorted: other mask-token indices, another run)."""
    return from_dict(config.to_dict())


def from_dict(fields: dict) -> ml_collections.ConfigDict:
    """A resolved config from its JSON form (config.json, or the copy inside a checkpoint); fields added to the
    schema since it was written get their defaults."""
    fields = _tuples(_fill_missing(fields, recipes.base_config().to_dict()))
    if isinstance(fields["model"]["remat"], bool):  # written before remat policies had names
        fields["model"]["remat"] = "nothing_saveable" if fields["model"]["remat"] else "none"
    masks = fields.pop("masks")
    config = ml_collections.ConfigDict(fields)
    config.masks = ml_collections.ConfigDict(masks, sort_keys=False)  # JSON order = mask-token order
    return config


def missing_key(config: ml_collections.ConfigDict, dotted_key: str) -> str | None:
    """One-line message if `dotted_key` (e.g. "model.sise") is not a field of `config`, else None."""
    node, path = config, "config"
    for part in dotted_key.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            valid = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            return f"{path}.{part} does not exist: valid keys under {path} are {valid}"
        node, path = node[part], f"{path}.{part}"
    return None


def _choice(value, field: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"config.{field}={value!r} is not valid: choose one of {list(choices)}")


def _field(config: ml_collections.ConfigDict, dotted_key: str):
    """config["a"]["b"] for "a.b"."""
    for part in dotted_key.split("."):
        config = config[part]
    return config


def _positive(value, field: str) -> None:
    if not isinstance(value, int) or value <= 0:
        raise ValueError(f"config.{field}={value!r} must be a positive integer")


def _validate_custom_size(custom) -> None:
    for name in ("width", "depth", "num_heads", "mlp_dim"):
        _positive(custom[name], f"model.custom.{name}")
    if custom.width % custom.num_heads:
        raise ValueError(f"config.model.custom.width={custom.width} must be divisible by "
                         f"config.model.custom.num_heads={custom.num_heads}")


def validate(config: ml_collections.ConfigDict) -> None:
    """Raise ValueError (one line: field, bad value, valid values) for anything that cannot run."""
    _choice(config.objective, "objective", OBJECTIVES)
    _choice(config.model.size, "model.size", sorted(vit.SIZES) + ["custom"])
    if config.model.size == "custom":
        _validate_custom_size(config.model.custom)
    _choice(config.model.pos_embedding, "model.pos_embedding", POS_EMBEDDINGS)
    _choice(config.model.rope_pairing, "model.rope_pairing", ("repeat", "interleave"))
    _choice(config.model.attention, "model.attention", attention.IMPLEMENTATIONS)
    _choice(config.model.dtype, "model.dtype", DTYPES)
    reason = attention.unavailable(config.model.attention, jnp.dtype(config.model.dtype))
    if reason and config.model.attention_strict:
        raise ValueError(f"config.{reason}, and config.model.attention_strict=True: choose another "
                         f"config.model.attention or set attention_strict=False to fall back")
    _choice(config.model.remat, "model.remat", list(vit.REMAT_POLICIES))
    _choice(config.loss.kind, "loss.kind", LOSSES)
    _choice(config.data.source, "data.source", DATA_SOURCES)
    _choice(config.train.on_nonfinite, "train.on_nonfinite", ("stop", "skip"))
    _choice(config.optim.schedule, "optim.schedule", ("warmup_cosine", "linear_decay"))
    for field in ("model.patch_size", "model.tubelet_size", "data.batch_size", "train.steps", "train.log_every",
                  "train.grad_accum",
                  "model.predictor.width", "model.predictor.depth", "model.predictor.num_heads"):
        _positive(_field(config, field), field)
    if config.data.source == "video":
        _validate_video(config.data.video)
    if config.data.source == "packed" and not config.data.packed_dir:
        raise ValueError("config.data.packed_dir is empty: give the folder written by `jepa-jax data pack`")
    token_grid(config)
    if config.objective == "ac":
        _validate_ac(config)
        return
    if config.objective == "probe":
        _validate_probe(config)
        return
    if config.model.predictor.width % config.model.predictor.num_heads:
        raise ValueError(f"config.model.predictor.width={config.model.predictor.width} must be divisible by "
                         f"config.model.predictor.num_heads={config.model.predictor.num_heads}")
    if not config.masks:
        raise ValueError("config.masks is empty: give at least one mask config, e.g. short_range")
    if not isinstance(config.model.predictor.num_mask_tokens, int) or config.model.predictor.num_mask_tokens < 0:
        raise ValueError(f"config.model.predictor.num_mask_tokens={config.model.predictor.num_mask_tokens!r} must "
                         f"be 0 (one per mask config) or a positive integer")
    if config.model.pos_embedding == "rope" and posemb.rope_axis_dim(
            config.model.predictor.width // config.model.predictor.num_heads) == 0:
        raise ValueError("config.model.predictor: head dim width/num_heads must be >= 6 for 3D RoPE")
    if config.monitor.online_probe:
        online_probe_shape(config)
    if not isinstance(config.monitor.every, int) or config.monitor.every < 0:
        raise ValueError(f"config.monitor.every={config.monitor.every!r} must be 0 (every logged step) or a positive "
                         f"number of steps")
    if not all(0 < f <= 1 for f in config.probe.at_fractions):
        raise ValueError(f"config.probe.at_fractions={config.probe.at_fractions} must lie in (0, 1]")
    if not isinstance(config.probe.attentive_steps, int) or config.probe.attentive_steps < 0:
        raise ValueError(f"config.probe.attentive_steps={config.probe.attentive_steps!r} must be a number of steps "
                         f"(0: the report has ridge probes only)")


def _validate_probe(config) -> None:
    """Attentive probes (objective "probe") on a built-in task of the world, or on labelled video manifests."""
    task = config.attentive
    _choice(task.task, "attentive.task", pipeline.PROBE_TASKS)
    source = "video" if task.task == "labels" else "balls"
    if config.data.source != source:
        raise ValueError(f"config.attentive.task={task.task!r} reads config.data.source={source!r}, not "
                         f"{config.data.source!r}: set --config.data.source={source}")
    _choice(task.flavour, "attentive.flavour", probe.FLAVOURS)
    _choice(task.features, "attentive.features", probe.FEATURES)
    if task.features == "pixels" and task.encoder_from:
        raise ValueError("config.attentive.features='pixels' reads no encoder: leave config.attentive.encoder_from "
                         "empty")
    for field in ("attentive.depth", "attentive.num_heads", "attentive.ahead", "attentive.segments",
                  "attentive.views"):
        _positive(_field(config, field), field)
    depth = encoder_size(config).depth
    if task.features == "pixels" and task.out_layers:
        raise ValueError("config.attentive.out_layers selects encoder blocks; features='pixels' reads none: set it "
                         "to ()")
    if any(not isinstance(layer, int) or not 0 <= layer < depth for layer in task.out_layers):
        raise ValueError(f"config.attentive.out_layers={tuple(task.out_layers)}: encoder blocks are numbered 0 to "
                         f"{depth - 1} (config.model has {depth}); () reads the last block's output")
    width = probe_token_width(config)
    if width % task.num_heads:
        raise ValueError(f"config.attentive.num_heads={task.num_heads} must divide the {task.features} token width "
                         f"{width}")
    if not task.learning_rates or not task.weight_decays:
        raise ValueError("config.attentive.learning_rates and weight_decays must each hold at least one value")
    if task.task == "labels":
        _check_labelled_manifests(config)
    elif (task.segments, task.views) != (1, 1):
        raise ValueError(f"config.attentive.segments={task.segments} and views={task.views} apply to labelled "
                         f"videos (task 'labels'); the built-in task {task.task!r} reads one clip: set both to 1")


def _check_labelled_manifests(config) -> None:
    """One-line errors for labelled manifests a classification probe cannot use: a label outside
    [0, attentive.num_classes), a training manifest with a single class, an empty one (sources.read_manifest)."""
    num_classes = config.attentive.num_classes
    manifests = list(config.data.video.manifests) + ([config.attentive.val_manifest]
                                                     if config.attentive.val_manifest else [])
    labels = {m: [e.label for e in sources_lib.read_manifest(m)] for m in manifests}
    train_labels = sorted({label for m in config.data.video.manifests for label in labels[m]})
    if len(train_labels) < 2:
        raise ValueError(f"the training manifests {list(config.data.video.manifests)} hold one class only "
                         f"(label {train_labels[0]}): a classification probe needs 'PATH LABEL' lines of at least "
                         f"two classes")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"config.attentive.num_classes={num_classes!r}: set it to the number of classes (the "
                         f"training manifests' labels run up to {train_labels[-1]}, so at least "
                         f"{train_labels[-1] + 1})")
    for manifest, values in labels.items():
        outside = [label for label in values if not 0 <= label < num_classes]
        if outside:
            raise ValueError(f"manifest {manifest!r}: label {outside[0]} lies outside [0, {num_classes}) "
                             f"(config.attentive.num_classes={num_classes}): fix the label or raise num_classes")


def probe_members(config) -> list[tuple[float, float]]:
    """The probe grid: every (learning rate, weight decay) of config.attentive, rates outermost."""
    return [(lr, wd) for lr in config.attentive.learning_rates for wd in config.attentive.weight_decays]


def probe_token_width(config) -> int:
    """Width of the tokens the probe reads: the encoder's, or a tubelet's pixels (t * p * p * 3)."""
    m = config.model
    if config.attentive.features == "pixels":
        return m.tubelet_size * m.patch_size * m.patch_size * 3
    return encoder_size(config).width


def probe_classes(config) -> int:
    """Classes of a classification probe task (count: 1..num_balls balls; collision: yes/no; labels:
    config.attentive.num_classes); 0 for the regression tasks."""
    task = config.attentive.task
    return {"count": config.data.world.num_balls, "collision": 2,
            "labels": config.attentive.num_classes}.get(task, 0)


def probe_num_targets(config) -> int:
    """Outputs of the probe: one logit per class, or x and y of every ball per scored regression task."""
    tasks = pipeline.scored_tasks(config.attentive.task)
    return probe_classes(config) or 2 * config.data.world.num_balls * len(tasks)


def probe_token_grid(config) -> tuple[int, int, int]:
    """(S T', H', W'): the token grid the probe reads, config.attentive.segments clips' tokens concatenated (once
    per block of config.attentive.out_layers)."""
    frames, height, width = token_grid(config)
    return frames * config.attentive.segments, height, width


def _validate_ac(config) -> None:
    """The action-conditioned world model (objective "ac") trains on trajectories, without masks."""
    ac = config.ac
    if config.model.dtype != "float32":
        raise ValueError(f"config.model.dtype={config.model.dtype!r}: mixed precision covers the JEPA objectives "
                         f"(ema, sigreg); objective 'ac' runs in float32: set --config.model.dtype=float32")
    if config.data.source != "trajectories":
        raise ValueError(f"config.objective='ac' trains on trajectories, not config.data.source="
                         f"{config.data.source!r}: set --config.data.source=trajectories")
    if not config.data.trajectories:
        raise ValueError("config.data.trajectories is empty: give the folder written by `jepa-jax data collect`")
    _choice(ac.encoder, "ac.encoder", AC_ENCODERS)
    _choice(ac.state_norm, "ac.state_norm", ac_predictor.STATE_NORMS)
    _choice(ac.rollout_proprio, "ac.rollout_proprio", AC_ROLLOUT_PROPRIO)
    if ac.rollout_proprio == "predicted" and not ac.predict_proprio:
        raise ValueError("config.ac.rollout_proprio='predicted' feeds back predicted proprio: set "
                         "--config.ac.predict_proprio=True, or rollout_proprio='recorded'")
    for field in ("num_frames", "frameskip", "image_size", "action_dim", "proprio_dim", "rollout_steps",
                  "predictor.width", "predictor.depth", "predictor.num_heads"):
        _positive(_field(ac, field), f"ac.{field}")
    if ac.num_frames < 2 or ac.rollout_steps > ac.num_frames - 1:
        raise ValueError(f"config.ac.rollout_steps={ac.rollout_steps} needs config.ac.num_frames >= rollout_steps "
                         f"+ 1 (and >= 2), got num_frames={ac.num_frames}")
    if ac.predictor.width % ac.predictor.num_heads or posemb.rope_axis_dim(
            ac.predictor.width // ac.predictor.num_heads) == 0:
        raise ValueError(f"config.ac.predictor: width={ac.predictor.width} must be divisible by num_heads="
                         f"{ac.predictor.num_heads}, with a head dim >= 6 for 3D RoPE")
    grid = token_grid(config)[1:]
    if ac.pool_grid < 0 or (ac.pool_grid and any(n % ac.pool_grid for n in grid)):
        raise ValueError(f"config.ac.pool_grid={ac.pool_grid} must be 0 (no pooling) or divide the "
                         f"{grid[0]} x {grid[1]} patch grid of each frame")


def _validate_video(video) -> None:
    if not video.manifests:
        raise ValueError("config.data.video.manifests is empty: give one or more manifests, e.g. "
                         "--config.data.video.manifests=\"('train.csv',)\"")
    if video.weights and len(video.weights) != len(video.manifests):
        raise ValueError(f"config.data.video.weights has {len(video.weights)} entries for "
                         f"{len(video.manifests)} manifests: give one weight per manifest or none")
    if (video.frame_step > 0) == (video.fps > 0):
        raise ValueError(f"config.data.video: set exactly one of frame_step (>0) and fps (>0), got "
                         f"frame_step={video.frame_step}, fps={video.fps}")
    _positive(video.frames_per_clip, "data.video.frames_per_clip")
    _positive(video.crop_size, "data.video.crop_size")


def clip_shape(config) -> tuple[int, int]:
    """(frames, size) of the square clips the model sees."""
    if config.data.source in ("video", "packed"):
        return config.data.video.frames_per_clip, config.data.video.crop_size
    if config.data.source == "trajectories":
        return config.ac.num_frames, config.ac.image_size
    return config.data.world.num_frames, config.data.world.size


def token_grid(config) -> tuple[int, int, int]:
    """(T', H', W') of the configured clips (objective "ac": of its frames, each encoded as its own clip, before
    config.ac.pool_grid pooling; `ac_state_grid` is the grid the AC predictor sees)."""
    frames, size = clip_shape(config)
    if config.objective == "ac":
        return (frames,) + vit.token_grid((1, config.model.tubelet_size, size, size, 3), config.model.patch_size,
                                          config.model.tubelet_size)[1:]
    return vit.token_grid((1, frames, size, size, 3), config.model.patch_size, config.model.tubelet_size)


def ac_state_grid(config) -> tuple[int, int]:
    """(H', W') of the per-frame state tokens the AC predictor sees: the patch grid, or pool_grid x pool_grid."""
    k = config.ac.pool_grid
    return (k, k) if k else token_grid(config)[1:]


def online_probe_shape(config) -> tuple[int, int] | None:
    """(inputs, outputs) of the online probe's linear map: T' x 4 quadrants x D pooled target features -> x, y and
    vx, vy of every ball; None when config.monitor.online_probe is off. One-line errors where it cannot run."""
    if not config.monitor.online_probe:
        return None
    if config.objective not in ("ema", "sigreg") or config.data.source != "balls":
        raise ValueError(f"config.monitor.online_probe reads the built-in world's labels and the JEPA targets: it "
                         f"needs config.data.source='balls' and objective ema or sigreg, not "
                         f"{config.data.source!r} / {config.objective!r}")
    frames, height, width = token_grid(config)
    if height % 2 or width % 2:
        raise ValueError(f"config.monitor.online_probe pools each time slice into 2 x 2 quadrants: the {height} x "
                         f"{width} token grid must have even sides")
    return frames * 4 * encoder_size(config).width, 4 * config.data.world.num_balls


def probe_steps(config) -> list[int]:
    """Steps whose train state is checkpointed for the probe learning curve: 0 (random init) and the fractions."""
    steps = config.train.steps
    return sorted({0} | {max(1, round(f * steps)) for f in config.probe.at_fractions})


def build_maskers(config) -> list:
    """One masker per entry of config.masks, in the order given (= the mask-token index): a V-JEPA 3D multi-block
    masker (MaskConfig fields), an I-JEPA 2D one for entries with `num_targets` (ImageMaskConfig fields), or a
    causal one (predict the later time slices) for entries with `context_frames_ratio` (CausalMaskConfig).

    Build config.masks as ConfigDict(..., sort_keys=False): a plain dict is sorted by key.
    """
    if config.objective == "ac":
        return []
    grid = token_grid(config)
    maskers = []
    for name, cfg in config.masks.items():
        fields = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in cfg.items()}
        try:
            if "num_targets" in fields:
                maskers.append(masks_lib.ImageMultiBlockMasker(grid, masks_lib.ImageMaskConfig(**fields)))
            elif "context_frames_ratio" in fields:
                maskers.append(masks_lib.CausalMasker(grid, masks_lib.CausalMaskConfig(**fields)))
            else:
                maskers.append(masks_lib.MultiBlockMasker(grid, masks_lib.MaskConfig(**fields)))
        except (TypeError, ValueError) as err:
            raise ValueError(f"config.masks.{name}: {err}") from None
    return maskers


def encoder_size(config) -> vit.ViTSize:
    """The encoder's dimensions: a named size, or config.model.custom for size="custom"."""
    m = config.model
    return vit.ViTSize(**m.custom) if m.size == "custom" else vit.get_size(m.size)


def num_mask_tokens(config) -> int:
    """Learned predictor mask tokens: config.model.predictor.num_mask_tokens, or one per mask config if 0."""
    return config.model.predictor.num_mask_tokens or len(config.masks)


def build_encoder(config) -> vit.VisionTransformer:
    m = config.model
    return vit.VisionTransformer(size=encoder_size(config), patch_size=m.patch_size, tubelet_size=m.tubelet_size,
                                 pos_embedding=m.pos_embedding, rope_pairing=m.rope_pairing, remat=m.remat,
                                 attention=m.attention, dtype=m.dtype, scan=m.scan_layers)


def build_predictor(config) -> "predictor.Predictor | ac_predictor.ACPredictor":
    """The objective's predictor: the mask-token predictor (JEPA; for "pixels" predicting each target tubelet's
    pixels: models/pixel_decoder.py), the action-conditioned one ("ac") or the attentive probe ("probe")."""
    m = config.model
    if config.objective == "probe":
        a = config.attentive
        return probe.AttentiveProbe(num_outputs=probe_num_targets(config), depth=a.depth, num_heads=a.num_heads,
                                    flavour=a.flavour, attention=m.attention,
                                    positions=probe_token_grid(config) if a.positions else None)
    if config.objective == "ac":
        p = config.ac.predictor
        return ac_predictor.ACPredictor(embed_dim=encoder_size(config).width, width=p.width, depth=p.depth,
                                        num_heads=p.num_heads, mlp_ratio=p.mlp_ratio,
                                        predict_proprio=config.ac.predict_proprio, rope_pairing=m.rope_pairing,
                                        remat=m.remat, attention=m.attention, scan=m.scan_layers)
    out_dim = pixel_decoder.tubelet_width(m.patch_size, m.tubelet_size) if config.objective == "pixels" else 0
    return predictor.Predictor(embed_dim=encoder_size(config).width, width=m.predictor.width,
                               depth=m.predictor.depth, num_heads=m.predictor.num_heads,
                               mlp_ratio=m.predictor.mlp_ratio, num_mask_tokens=num_mask_tokens(config),
                               pos_embedding=m.pos_embedding, rope_pairing=m.rope_pairing, remat=m.remat,
                               attention=m.attention, dtype=m.dtype, scan=m.scan_layers, out_dim=out_dim)


def predictor_inputs(config) -> tuple:
    """Sample arguments for the predictor's init: its weights do not depend on how many tokens it sees."""
    width = encoder_size(config).width
    if config.objective == "probe":
        return (jnp.zeros((1, 1, probe_token_width(config))),)
    if config.objective == "ac":
        ac = config.ac
        return (jnp.zeros((1, 1, 1, width)), jnp.zeros((1, 1, ac.action_dim)), jnp.zeros((1, 1, ac.proprio_dim)),
                (1, 1))
    index = jnp.zeros((1, 1), jnp.int32)
    return jnp.zeros((1, 1, width)), index, index, (2, 1, 1)
