"""Our own weights format, the one home of weights I/O that the engine, export and the feature API share.

A native folder (written by `jepa-jax export --format native` and `jepa-jax import`) holds
  DIR/model.safetensors  groups "encoder.", "target_encoder.", "predictor." + our flattened parameter names
                         (`blocks_0.attn.qkv.kernel`), float32, metadata {"format", "groups", "step"}
  DIR/config.json        the resolved config that rebuilds the model.
Reading is strict: a missing, unexpected or mis-shaped tensor fails with the offending names and shapes.
"""

import dataclasses
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import safetensors
import safetensors.numpy

from jepa_jax import config as config_lib

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
GROUPS = ("encoder", "target_encoder", "predictor")


class TensorMismatch(ValueError):
    """A checkpoint's tensors are not the ones the architecture needs (names and shapes in the message)."""


@dataclasses.dataclass
class Weights:
    """A model's weights: `groups` maps "encoder" / "target_encoder" / "predictor" to {our name: float32 array}."""
    config: ml_collections.ConfigDict
    groups: dict
    step: int | None = None
    source: str = ""


def flatten(tree, leaf=np.asarray, prefix: str = "") -> dict:
    """Nested parameter dict -> {"blocks_0.attn.qkv.kernel": leaf(array)} (default: numpy arrays)."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        flat.update(flatten(value, leaf, name + ".") if isinstance(value, dict) else {name: leaf(value)})
    return flat


def unflatten(flat: dict) -> dict:
    """{"a.b.c": x} -> {"a": {"b": {"c": x}}} (the inverse of `flatten`)."""
    tree = {}
    for name, value in flat.items():
        *parents, leaf = name.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def kind(group: str) -> str:
    """The model a weight group belongs to: "predictor", or "encoder" (the online and the target encoder)."""
    return "predictor" if group == "predictor" else "encoder"


def param_shapes(config) -> dict:
    """{"encoder": {name: shape}, "predictor": {name: shape}} of the config's models (nothing is allocated)."""
    encoder, predictor = config_lib.build_encoder(config), config_lib.build_predictor(config)
    m, key = config.model, jax.random.key(0)
    video = jax.ShapeDtypeStruct((1, 2 * m.tubelet_size, m.patch_size, m.patch_size, 3), jnp.float32)
    inputs = config_lib.predictor_inputs(config)
    shapes = {
        "encoder": jax.eval_shape(lambda v: nn.meta.unbox(encoder.init(key, v)["params"]), video),
        "predictor": jax.eval_shape(lambda: nn.meta.unbox(predictor.init(key, *inputs)["params"])),
    }
    return {group: flatten(tree, lambda x: tuple(x.shape)) for group, tree in shapes.items()}


def check_tensors(source: str, expected: dict, found: dict, what: str) -> None:
    """Raise TensorMismatch naming every missing, unexpected and mis-shaped tensor ({name: shape} dicts)."""
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    misshaped = sorted(k for k in expected.keys() & found.keys() if tuple(expected[k]) != tuple(found[k]))
    if not (missing or unexpected or misshaped):
        return
    problems = ([f"missing {k} {tuple(expected[k])}" for k in missing] +
                [f"unexpected {k} {tuple(found[k])}" for k in unexpected] +
                [f"{k} is {tuple(found[k])}, expected {tuple(expected[k])}" for k in misshaped])
    shown = "; ".join(problems[:25]) + (f"; and {len(problems) - 25} more" if len(problems) > 25 else "")
    raise TensorMismatch(f"{source}: {len(missing)} missing, {len(unexpected)} unexpected, {len(misshaped)} "
                         f"mis-shaped tensors for {what}: {shown}")


def one_line(err: Exception) -> str:
    """An exception's message folded onto one line (at most 300 characters)."""
    return " ".join(str(err).split())[:300]


def read_safetensors(path: str) -> tuple[dict, dict]:
    """({name: numpy array}, metadata) of a safetensors file (bf16 tensors come back as float32)."""
    try:
        with safetensors.safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            bf16 = [k for k in f.keys() if f.get_slice(k).get_dtype() == "BF16"]
            tensors = {k: f.get_tensor(k) for k in f.keys() if k not in bf16}
        if bf16:  # numpy has no bfloat16: read those through JAX
            with safetensors.safe_open(path, framework="flax") as f:
                tensors.update({k: np.asarray(f.get_tensor(k), np.float32) for k in bf16})
        return tensors, metadata
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors file ({one_line(err)}): re-export or "
                         f"re-download it") from None


def write_safetensors(tensors: dict, path: str, metadata: dict) -> None:
    safetensors.numpy.save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path, metadata=metadata)


def is_folder(path: str) -> bool:
    """True for a native folder (model.safetensors + config.json)."""
    return all(os.path.isfile(os.path.join(path, name)) for name in (WEIGHTS_FILE, CONFIG_FILE))


def write(weights: Weights, out: str, groups=GROUPS) -> list[str]:
    """Write OUT/model.safetensors (the chosen groups present in `weights`) and OUT/config.json; returns the
    groups written."""
    chosen = [g for g in groups if g in weights.groups]
    if not chosen:
        raise ValueError(f"{weights.source} has none of the groups {list(groups)} (it has {sorted(weights.groups)})")
    os.makedirs(out, exist_ok=True)
    tensors = {f"{g}.{k}": v for g in chosen for k, v in weights.groups[g].items()}
    write_safetensors(tensors, os.path.join(out, WEIGHTS_FILE),
                      {"format": "jepa_jax", "groups": ",".join(chosen), "step": str(weights.step)})
    config_lib.write_json(weights.config, os.path.join(out, CONFIG_FILE))
    return chosen


def read(directory: str) -> Weights:
    """Weights of a native folder, checked strictly against the model its config.json describes."""
    path = os.path.join(directory, WEIGHTS_FILE)
    config = config_lib.load_run(directory)
    flat, metadata = read_safetensors(path)
    step = metadata.get("step", "None")
    groups = {}
    for key, value in flat.items():
        group, _, name = key.partition(".")
        groups.setdefault(group, {})[name] = value
    expected = param_shapes(config)
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise TensorMismatch(f"{path}: unexpected groups {unknown}: expected some of {list(GROUPS)}")
    for group, tensors in groups.items():
        check_tensors(path, expected[kind(group)], {k: v.shape for k, v in tensors.items()},
                      f"the {group} of the model in {directory}/{CONFIG_FILE}")
    return Weights(config, groups, None if step == "None" else int(step), directory)
