"""Vision Transformer over images (2D patches) and videos (3D tubelets), V-JEPA / V-JEPA 2 layout.

Pre-LN blocks (LayerNorm eps 1e-6, qkv bias, exact-GELU MLP), no CLS token, final LayerNorm. Parameter names
mirror the official PyTorch state dict (`patch_embed`, `blocks_{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,
mlp.fc2}`, `norm`), so converting weights is a renaming table plus transposes/reshapes. Every parameter carries
logical axis names (`embed`, `mlp`, `heads`, `kv`); only `jepa_jax.parallel` maps them to mesh axes.
"""

import dataclasses
import functools
from typing import Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jepa_jax.models import attention as attention_lib, posemb, stacking

PosEmbedding = Literal["sincos", "rope"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class ViTSize:
    width: int
    depth: int
    num_heads: int
    mlp_dim: int


# Official factories (docs/official_reference.md 1); "giant" is V-JEPA 2's vit_giant_xformers (22 heads of 64).
# "nano" and "micro" are CPU test sizes.
SIZES = {
    "nano": ViTSize(32, 2, 2, 128),
    "micro": ViTSize(128, 4, 4, 512),
    "tiny": ViTSize(192, 12, 3, 768),
    "small": ViTSize(384, 12, 6, 1536),
    "base": ViTSize(768, 12, 12, 3072),
    "large": ViTSize(1024, 24, 16, 4096),
    "huge": ViTSize(1280, 32, 16, 5120),
    "giant": ViTSize(1408, 40, 22, 6144),
}


def get_size(name: "str | ViTSize") -> ViTSize:
    """Size by name (or a ViTSize, returned as is); one-line error listing the valid names."""
    if isinstance(name, ViTSize):
        return name
    if name not in SIZES:
        raise ValueError(f"model size {name!r} is unknown: choose one of {sorted(SIZES)}")
    return SIZES[name]


def trunc_normal(std: float = 0.02):
    return nn.initializers.truncated_normal(stddev=std)


def _param_init(init, names: Sequence[str | None]):
    return nn.with_logical_partitioning(init, tuple(names))


def layer_norm(name: str, dtype=None, epsilon: float = 1e-6) -> nn.LayerNorm:
    """LayerNorm with float32 statistics and parameters; output in `dtype` (the input's, for mixed precision)."""
    return nn.LayerNorm(epsilon=epsilon, name=name, dtype=dtype,
                        scale_init=_param_init(nn.initializers.ones, ("embed",)),
                        bias_init=_param_init(nn.initializers.zeros, ("embed",)))


class Dense(nn.Module):
    """Linear layer over the trailing `num_in` axes with a multi-axis kernel (e.g. [D, 3, heads, head_dim]).

    Kernels keep their multi-axis shape (unlike nn.DenseGeneral, which initialises a flattened kernel) so that
    each axis has its own logical name.
    """
    features: tuple[int, ...]
    names: tuple[str | None, ...]  # logical names of the kernel axes: inputs then outputs
    num_in: int = 1
    std: float = 0.02

    @nn.compact
    def __call__(self, x):
        in_shape = x.shape[-self.num_in:]
        kernel = self.param("kernel", _param_init(trunc_normal(self.std), self.names), in_shape + self.features)
        bias = self.param("bias", _param_init(nn.initializers.zeros, self.names[self.num_in:]), self.features)
        contracted = tuple(range(x.ndim - self.num_in, x.ndim))
        y = jax.lax.dot_general(x, kernel.astype(x.dtype), ((contracted, tuple(range(self.num_in))), ((), ())))
        return y + bias.astype(x.dtype)


def dense(features, names, name, num_in=1, std=0.02) -> Dense:
    """Dense with trunc-normal(std) kernel and zero bias; `features` an int or a tuple of output sizes."""
    features = (features,) if isinstance(features, int) else tuple(features)
    return Dense(features, tuple(names), num_in, std, name=name)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection and optional 3D RoPE on q and k."""
    num_heads: int
    rope: bool = False
    rope_pairing: posemb.RopePairing = "repeat"
    proj_std: float = 0.02
    implementation: attention_lib.Implementation = "auto"

    @nn.compact
    def __call__(self, x, coords=None, mask=None, cache=None):
        """x [B, N, D], coords [B, N, 3] (needed for RoPE), mask [B, 1|h, N, M + N] bool -> [B, N, D].

        cache: None, or the (keys, values) [B, M, h, Dh] (rotated) of M earlier tokens that x also attends to
        (incremental decoding); then returns (out, (keys, values) of all M + N tokens).
        """
        width = x.shape[-1]
        head_dim = width // self.num_heads
        qkv = dense((3, self.num_heads, head_dim), ("embed", None, "heads", "kv"), "qkv")(x)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, N, h, Dh]
        if self.rope:
            q = posemb.apply_rope_3d(q, coords, self.rope_pairing)
            k = posemb.apply_rope_3d(k, coords, self.rope_pairing)
        if cache is not None:
            k, v = jnp.concatenate([cache[0], k], axis=1), jnp.concatenate([cache[1], v], axis=1)
        out = attention_lib.dot_product_attention(q, k, v, mask, self.implementation)
        out = dense(width, ("heads", "kv", "embed"), "proj", num_in=2, std=self.proj_std)(out)
        return out if cache is None else (out, (k, v))


def gelu(x):
    """Exact GELU, x Phi(x), written with erf: the same values as jax.nn.gelu(approximate=False) (within 1e-6),
    whose erfc form runs about 2.5x slower on XLA:CPU."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(0.5 ** 0.5, x.dtype)))


class Mlp(nn.Module):
    hidden_dim: int
    fc2_std: float = 0.02

    @nn.compact
    def __call__(self, x):
        """[B, N, D] -> [B, N, D]; exact (erf) GELU as in torch.nn.GELU()."""
        h = dense(self.hidden_dim, ("embed", "mlp"), "fc1")(x)
        h = gelu(h)
        return dense(x.shape[-1], ("mlp", "embed"), "fc2", std=self.fc2_std)(h)


class Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""
    num_heads: int
    mlp_dim: int
    rope: bool = False
    rope_pairing: posemb.RopePairing = "repeat"
    residual_std: float = 0.02  # std of attn.proj and mlp.fc2 (V-JEPA 2 divides by sqrt(2 * layer))
    attention: attention_lib.Implementation = "auto"

    @nn.compact
    def __call__(self, x, coords=None, mask=None, cache=None):
        """[B, N, D] -> [B, N, D]; with a (keys, values) cache (Attention) -> ([B, N, D], updated cache)."""
        x = nn.with_logical_constraint(x, ("act_batch", "act_tokens", "act_embed"))
        attn = Attention(self.num_heads, self.rope, self.rope_pairing, self.residual_std, self.attention, name="attn")
        attended = attn(layer_norm("norm1", x.dtype)(x), coords, mask, cache)
        if cache is not None:
            attended, cache = attended
        x = x + attended
        x = x + Mlp(self.mlp_dim, self.residual_std, name="mlp")(layer_norm("norm2", x.dtype)(x))
        return x if cache is None else (x, cache)


# Rematerialisation policies by name (config.model.remat): what each block keeps for the backward pass.
REMAT_POLICIES = {
    "none": None,  # everything (no rematerialisation)
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,  # only the block's input; recompute the rest
    "dots_saveable": jax.checkpoint_policies.dots_saveable,  # every matmul output, attention scores included
    # the linear layers' outputs (qkv, proj, fc1, fc2), not the attention scores or elementwise results
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def transformer_blocks(module: nn.Module, x, coords=None, mask=None, *, prefix: str, depth: int, num_heads: int,
                       mlp_dim: int, rope: bool = False, rope_pairing: posemb.RopePairing = "repeat",
                       remat: str = "none", attention: attention_lib.Implementation = "auto", scan: bool = False,
                       caches=None, out_layers: tuple[int, ...] = ()):
    """Run `depth` blocks named {prefix}_0.. inside `module`'s compact call: [B, N, D] -> [B, N, D].

    Block l (0-based) initialises attn.proj and mlp.fc2 with std 0.02 / sqrt(2 (l + 1)) (V-JEPA 2's depth rescale).
    attention: the attention kernel (models/attention.py; the same numbers from every kernel).
    remat: a name in REMAT_POLICIES.
    scan: apply the blocks as one jax.lax.scan over their weights stacked on a leading [L] axis, so the step
      compiles one block instead of `depth`. The weights may come stacked (`{prefix}`, models/stacking.py: a
      scanned run's train state) or unrolled ({prefix}_l, as checkpoints and exports hold them; stacked here).
      Initialisation always runs unrolled.
    caches: None, or one (keys, values) per block (Attention's cache); then returns (x, the updated caches).
    out_layers: blocks (0-based) whose outputs to return instead, as a list of [B, N, D] in the order given (the
      blocks after the last of them still run).
    """
    def block_args(layer: int) -> tuple:
        return num_heads, mlp_dim, rope, rope_pairing, 0.02 / (2.0 * (layer + 1)) ** 0.5, attention

    if scan and not module.is_initializing():
        params = nn.meta.unbox(module.variables["params"])
        stacked = params[prefix] if prefix in params else stacking.stack_trees(
            [params[f"{prefix}_{layer}"] for layer in range(depth)])
        return scan_blocks(Block(*block_args(0), parent=None), stacked, x, coords, mask, remat, caches, out_layers)
    block_cls = Block if remat == "none" else nn.remat(Block, policy=REMAT_POLICIES[remat])
    updated, states = [], []
    for layer in range(depth):
        x = block_cls(*block_args(layer), name=f"{prefix}_{layer}")(x, coords, mask,
                                                                   None if caches is None else caches[layer])
        if caches is not None:
            x, cache = x
            updated.append(cache)
        states.append(x)
    if out_layers:
        return [states[layer] for layer in out_layers]
    return x if caches is None else (x, tuple(updated))


def scan_blocks(block: Block, stacked, x, coords=None, mask=None, remat: str = "none", caches=None,
                out_layers: tuple[int, ...] = ()):
    """`block` (unbound) applied with each layer of the stacked weights (leaves [L, ...]) in turn, as one
    jax.lax.scan: [B, N, D] -> [B, N, D] (or (x, updated caches) with one (keys, values) cache per layer, or the
    outputs of the blocks `out_layers` as transformer_blocks)."""
    def body(x, layer):
        weights, cache = layer
        out = block.apply({"params": weights}, x, coords, mask, cache)
        if out_layers:
            return out, out
        return (out, None) if cache is None else out

    if remat != "none":
        body = jax.checkpoint(body, policy=REMAT_POLICIES[remat], prevent_cse=False)
    stacked_caches = None if caches is None else stacking.stack_trees(caches)
    x, updated = jax.lax.scan(body, x, (stacked, stacked_caches))
    if out_layers:
        return [updated[layer] for layer in out_layers]
    if caches is None:
        return x
    keys, values = updated
    return x, tuple((keys[layer], values[layer]) for layer in range(len(caches)))


def token_grid(video_shape, patch_size: int, tubelet_size: int) -> tuple[int, int, int]:
    """(T', H', W') of a [B, T, H, W, C] input; one-line errors for sizes that do not divide."""
    _, frames, height, width, _ = video_shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"model.patch_size={patch_size} must divide the frame size {height}x{width}: "
                         f"choose a divisor or resize the input")
    if frames % tubelet_size:
        raise ValueError(f"model.tubelet_size={tubelet_size} must divide the number of frames {frames}: "
                         f"change data.num_frames or model.tubelet_size")
    return frames // tubelet_size, height // patch_size, width // patch_size


def pool_quadrants(tokens, grid: tuple[int, int, int]):
    """tokens [B, N, D] in time-major order -> [B, T' 4 D]: each time slice's tokens averaged over its 2 x 2
    spatial quadrants (numpy or jax arrays)."""
    b, _, d = tokens.shape
    t, h, w = grid
    quads = tokens.reshape(b, t, 2, h // 2, 2, w // 2, d).mean(axis=(3, 5))
    return quads.reshape(b, -1)


def patchify(video, patch_size: int, tubelet_size: int):
    """video [B, T, H, W, C] -> tubelets [B, N, t * p * p * C], time-major token order (PatchEmbed's), each tubelet
    flattened in (t, p, p, C) order."""
    b, _, _, _, channels = video.shape
    t, p = tubelet_size, patch_size
    grid = token_grid(video.shape, p, t)
    x = video.reshape(b, grid[0], t, grid[1], p, grid[2], p, channels).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(b, grid[0] * grid[1] * grid[2], t * p * p * channels)


class PatchEmbed(nn.Module):
    """Non-overlapping (tubelet x patch x patch) embedding, i.e. a stride = kernel Conv3d (Conv2d if tubelet 1)."""
    width: int
    patch_size: int
    tubelet_size: int

    @nn.compact
    def __call__(self, video):
        """video [B, T, H, W, C] -> tokens [B, N, D] in time-major order."""
        t, p = self.tubelet_size, self.patch_size
        kernel = self.param("kernel", _param_init(trunc_normal(), (None, None, None, None, "embed")),
                            (t, p, p, video.shape[-1], self.width))
        bias = self.param("bias", _param_init(nn.initializers.zeros, ("embed",)), (self.width,))
        x = patchify(video, p, t) @ kernel.reshape(-1, self.width).astype(video.dtype)
        return x + bias.astype(x.dtype)


def gather_tokens(x, indices):
    """x [B, N, ...] gathered at indices [B, K] -> [B, K, ...]."""
    idx = indices.reshape(indices.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)


class VisionTransformer(nn.Module):
    """The JEPA encoder: video [B, T, H, W, C] (or image [B, H, W, C]) -> tokens [B, N or K, D]."""
    size: str | ViTSize = "micro"  # a name in SIZES, or explicit dimensions (e.g. an imported checkpoint's)
    patch_size: int = 16
    tubelet_size: int = 2
    pos_embedding: PosEmbedding = "rope"
    rope_pairing: posemb.RopePairing = "repeat"
    uniform_power: bool = True
    remat: str = "none"  # a name in REMAT_POLICIES
    attention: attention_lib.Implementation = "auto"
    dtype: str = "float32"  # compute dtype (bfloat16: mixed precision; parameters stay float32)
    scan: bool = False  # blocks as one lax.scan (transformer_blocks); the weights' layout is the same

    @nn.compact
    def __call__(self, video, keep=None, out_layers: tuple[int, ...] = ()):
        """Encode a clip; `keep` [B, K] (token indices) makes this the context encoder. Output in `dtype`.

        Tokens are gathered after the patch embedding (and the additive sin-cos positions) and before the first
        block, so keeping indices equals encoding only those tokens. out_layers: the outputs of these blocks
        (0-based), each through the final norm, concatenated along the token axis, [B, L N, D] (V-JEPA 2's
        multi-level evaluation features, vision_transformer.py `out_layers`).
        """
        dims = get_size(self.size)
        video = video.astype(self.dtype)
        if video.ndim == 4:  # an image is a one-frame clip
            video = video[:, None]
        grid = token_grid(video.shape, self.patch_size, self.tubelet_size)
        x = PatchEmbed(dims.width, self.patch_size, self.tubelet_size, name="patch_embed")(video)
        if self.pos_embedding == "sincos":
            x = x + jnp.asarray(posemb.sincos_3d(dims.width, grid, self.uniform_power), x.dtype)
        coords = jnp.asarray(posemb.grid_coordinates(grid))[None]
        if keep is not None:
            x = gather_tokens(x, keep)
            coords = posemb.token_coordinates(keep, grid)
        x = transformer_blocks(self, x, coords, prefix="blocks", depth=dims.depth, num_heads=dims.num_heads,
                               mlp_dim=dims.mlp_dim, rope=self.pos_embedding == "rope",
                               rope_pairing=self.rope_pairing, remat=self.remat, attention=self.attention,
                               scan=self.scan, out_layers=tuple(out_layers))
        norm = layer_norm("norm", video.dtype)
        return jnp.concatenate([norm(h) for h in x], axis=1) if out_layers else norm(x)


def normalize_video(video):
    """uint8 [..., C] -> float32, scaled to [0, 1] and standardised with the ImageNet mean/std (official)."""
    mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(IMAGENET_STD, jnp.float32)
    return (video.astype(jnp.float32) / 255.0 - mean) / std


def encode_frames(encoder: VisionTransformer, params, frames):
    """Per-frame features as V-JEPA 2-AC computes them: every frame of [B, T, H, W, C] (normalised) is encoded on
    its own as a clip of `tubelet_size` copies (one token slice) -> [B, T, P, D], batched over B * T."""
    batch, num_frames = frames.shape[:2]
    clips = jnp.repeat(frames.reshape((batch * num_frames, 1) + frames.shape[2:]), encoder.tubelet_size, axis=1)
    features = encoder.apply({"params": params}, clips)
    return features.reshape(batch, num_frames, -1, features.shape[-1])


@functools.partial(jax.jit, static_argnums=0)
def encode(encoder: VisionTransformer, params, video, keep=None):
    """Frozen features of uint8 clips [B, T, H, W, C] -> [B, N or K, D], normalised as in training; jitted once
    per encoder and input shape (the module is a static, hashable argument)."""
    return encoder.apply({"params": params}, normalize_video(video), keep)

