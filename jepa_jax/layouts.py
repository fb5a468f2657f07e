"""Tensor layouts of other code bases, as tables over our parameter names (no file I/O here).

Our parameters, flattened with "." (`blocks_0.attn.qkv.kernel` [D, 3, h, Dh]), map to:
  - "fair": the official V-JEPA / V-JEPA 2 state dicts (docs/official_reference.md 7), e.g. `blocks.0.attn.qkv.weight`
    [3D, D] (rows [q; k; v], heads contiguous), PyTorch Linear weights [out, in], Conv3d [D, C, t, p, p] (Conv2d
    [D, C, p, p] for one-frame tubelets), one `mask_tokens.{k}` (1, 1, Dp) per mask token;
    and the attentive probes' `AttentiveClassifier` state dict (`pooler.cross_attention_block.xattn.kv.weight`, ...);
  - "hf": Hugging Face `transformers` VJEPA2Model, e.g. `encoder.layer.0.attention.query.weight` [D, D] (q, k, v
    as three Linears), `predictor.embeddings.mask_tokens` [n, 1, 1, Dp].
Each of our tensors becomes one or more tensors there (a `Link`); converting is reshapes, transposes and splits,
so both directions are bit-exact.
"""

import dataclasses
import math
import re
from typing import Callable

import jax
import numpy as np

from jepa_jax import native

FAIR, HF = "fair", "hf"
_BLOCK = re.compile(r"^(predictor_blocks|blocks)_(\d+)\.(.+)$")


@dataclasses.dataclass(frozen=True)
class Link:
    """How one of our tensors appears in another layout: as the tensors `names`."""
    names: tuple[str, ...]
    split: Callable  # our array -> tuple of their arrays, in `names` order (also traced, for shapes)
    join: Callable   # (tuple of their numpy arrays, our shape) -> our numpy array


def _same(name: str) -> Link:
    return Link((name,), lambda x: (x.reshape(-1) if x.ndim > 1 else x,), lambda xs, shape: xs[0].reshape(shape))


def _linear(name: str, num_in: int) -> Link:
    """Kernel [in..., out...] <-> PyTorch Linear weight [out, in]."""
    return Link((name,), lambda x: (x.reshape(math.prod(x.shape[:num_in]), -1).T,),
                lambda xs, shape: xs[0].T.reshape(shape))


def _param(module: str, param: str, num_in: int = 1) -> Link:
    """Our `kernel` / `scale` / `bias` of a module -> PyTorch `weight` / `bias`."""
    if param == "kernel":
        return _linear(f"{module}.weight", num_in)
    return _same(f"{module}.{'weight' if param == 'scale' else 'bias'}")


def _split_qkv(module: str, param: str) -> Link:
    """Fused qkv kernel [D, 3, h, Dh] / bias [3, h, Dh] <-> Linears {module}.query / .key / .value."""
    names = tuple(f"{module}.{part}.{'weight' if param == 'kernel' else 'bias'}" for part in ("query", "key", "value"))
    if param == "kernel":
        return Link(names, lambda x: tuple(x[:, s].reshape(x.shape[0], -1).T for s in range(3)),
                    lambda xs, shape: np.stack([w.T.reshape((shape[0],) + shape[2:]) for w in xs], axis=1))
    return Link(names, lambda x: tuple(x[s].reshape(-1) for s in range(3)),
                lambda xs, shape: np.stack([b.reshape(shape[1:]) for b in xs]))


def _conv(name: str, conv2d: bool) -> Link:
    """Patch kernel [t, p, p, C, D] <-> Conv3d weight [D, C, t, p, p], or Conv2d [D, C, p, p] (t = 1)."""
    if conv2d:
        return Link((name,), lambda x: (x[0].transpose(3, 2, 0, 1),), lambda xs, _: xs[0].transpose(2, 3, 1, 0)[None])
    return Link((name,), lambda x: (x.transpose(4, 3, 0, 1, 2),), lambda xs, _: xs[0].transpose(2, 3, 4, 1, 0))


def _mask_tokens(layout: str, count: int) -> Link:
    """Our mask tokens [n, Dp] <-> n tensors `mask_tokens.{k}` (1, 1, Dp) ("fair") or one [n, 1, 1, Dp] ("hf")."""
    if layout == FAIR:
        return Link(tuple(f"mask_tokens.{k}" for k in range(count)),
                    lambda x: tuple(x[k].reshape(1, 1, -1) for k in range(count)),
                    lambda xs, shape: np.concatenate([t.reshape(1, -1) for t in xs]).reshape(shape))
    return Link(("predictor.embeddings.mask_tokens",), lambda x: (x.reshape(count, 1, 1, -1),),
                lambda xs, shape: xs[0].reshape(shape))


_HF_MODULES = {"patch_embed": "encoder.embeddings.patch_embeddings.proj", "norm": "encoder.layernorm",
               "predictor_embed": "predictor.embeddings.predictor_embeddings", "predictor_norm": "predictor.layernorm",
               "predictor_proj": "predictor.proj"}


_PROBE_BLOCK = re.compile(r"^pooler\.blocks_(\d+)\.(.+)$")


def _probe_link(name: str) -> Link:
    """An attentive probe's tensor (models/probe.py) in the official AttentiveClassifier state dict: `pooler.blocks_i`
    -> `pooler.blocks.i`, the query tokens as they are, Linears transposed (attention output projections from
    [h, Dh, D])."""
    if name == "pooler.query_tokens":
        return Link((name,), lambda x: (x,), lambda xs, shape: xs[0].reshape(shape))
    block = _PROBE_BLOCK.match(name)
    module, param = (f"pooler.blocks.{block.group(1)}.{block.group(2)}" if block else name).rsplit(".", 1)
    return _param(module, param, 2 if module.endswith(("attn.proj", "xattn.proj")) else 1)


def link(layout: str, name: str, shape: tuple[int, ...], image: bool = False) -> Link:
    """Where our tensor `name` (shape `shape`) lives in `layout` ("fair" or "hf"); `image`: a one-frame model, whose
    official patch embedding is a Conv2d. Attentive-probe tensors (`pooler.*`, `linear.*`) map to "fair" only."""
    if name.startswith(("pooler.", "linear.")):
        return _probe_link(name)
    block = _BLOCK.match(name)
    if block:
        kind, index, rest = block.groups()
        module, param = rest.rsplit(".", 1)
        num_in = 2 if module == "attn.proj" else 1
        if layout == FAIR:
            return _param(f"{kind}.{index}.{module}", param, num_in)
        base = f"{'encoder' if kind == 'blocks' else 'predictor'}.layer.{index}."
        module = module.replace("attn.", "attention.")
        return _split_qkv(base + "attention", param) if module == "attention.qkv" else _param(base + module, param, num_in)
    if name == "mask_tokens":
        return _mask_tokens(layout, shape[0])
    module, param = name.rsplit(".", 1)
    if layout == FAIR:
        if name == "patch_embed.kernel":
            return _conv("patch_embed.proj.weight", conv2d=image)
        return _param("patch_embed.proj" if module == "patch_embed" else module, param)
    if name == "patch_embed.kernel":
        return _conv(f"{_HF_MODULES['patch_embed']}.weight", conv2d=False)
    return _param(_HF_MODULES[module], param)


def to_layout(layout: str, flat: dict, image: bool = False) -> dict:
    """Our flat tensors {name: array} -> {their name: array} (numpy in, numpy out; or traced for shapes)."""
    out = {}
    for name, value in flat.items():
        tensor_link = link(layout, name, tuple(value.shape), image)
        out.update(zip(tensor_link.names, tensor_link.split(value)))
    return out


def layout_shapes(layout: str, shapes: dict, image: bool = False) -> dict:
    """{our name: shape} -> {their name: shape}, without touching any data."""
    abstract = {k: jax.ShapeDtypeStruct(tuple(s), np.float32) for k, s in shapes.items()}
    return {k: tuple(v.shape) for k, v in jax.eval_shape(lambda f: to_layout(layout, f, image), abstract).items()}


def from_layout(layout: str, theirs: dict, expected: dict, source: str, what: str, image: bool = False) -> dict:
    """{their name: numpy array} -> our {name: array} of the `expected` {name: shape}; strict (see native.check_tensors)."""
    native.check_tensors(source, layout_shapes(layout, expected, image), {k: v.shape for k, v in theirs.items()}, what)
    out = {}
    for name, shape in expected.items():
        tensor_link = link(layout, name, tuple(shape), image)
        out[name] = np.ascontiguousarray(tensor_link.join(tuple(theirs[n] for n in tensor_link.names), tuple(shape)))
    return out
