"""Golden sharding: every parameter, EMA and optimizer leaf lands where the DP/FSDP/TP rules say, on 8 devices."""

import re

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jepa_jax import parallel
from jepa_jax.train import loop

MESHES = {  # name: (data, fsdp, tensor)
    "dp": (8, 1, 1),
    "fsdp": (1, 8, 1),
    "tp": (4, 1, 2),
    "fsdp_tp": (1, 4, 2),
}

F, T = "fsdp", "tensor"
# Hand-written golden specs by parameter kind (the last two path components), for FSDP-only and TP-only meshes.
# DP expects P() everywhere; FSDP x TP expects both, axis by axis.
GOLDEN = {
    #                       FSDP                         TP
    r"patch_embed\.kernel": (P(None, None, None, None, F), P()),
    r"patch_embed\.bias": (P(F), P()),
    r"norm\d?\.(scale|bias)": (P(F), P()),
    r"predictor_norm\.(scale|bias)": (P(F), P()),
    r"qkv\.kernel": (P(F, None, None, None), P(None, None, T, None)),
    r"qkv\.bias": (P(), P(None, T, None)),
    r"proj\.kernel": (P(None, None, F), P(T, None, None)),
    r"proj\.bias": (P(F), P()),
    r"fc1\.kernel": (P(F, None), P(None, T)),
    r"fc1\.bias": (P(), P(T)),
    r"fc2\.kernel": (P(None, F), P(T, None)),
    r"fc2\.bias": (P(F), P()),
    r"predictor_embed\.kernel": (P(F, None), P(None, T)),
    r"predictor_embed\.bias": (P(), P(T)),
    r"predictor_proj\.kernel": (P(None, F), P(T, None)),
    r"predictor_proj\.bias": (P(F), P()),
    r"predictor\.mask_tokens": (P(None, F), P()),
}


def padded(spec, ndim):
    return tuple(spec) + (None,) * (ndim - len(spec))


def expected_spec(path: str, ndim: int, mesh_name: str):
    """The golden spec of a leaf, or P() for scalars/hyper-parameters/RNG; fails on an unlisted parameter."""
    if ".params." not in f".{path}." and ".mu." not in path and ".nu." not in path and "ema_params" not in path:
        return (None,) * ndim  # step, rng, optimizer counters and hyper-parameters: replicated
    kind = ".".join(path.split(".")[-2:])
    matches = [specs for pattern, specs in GOLDEN.items() if re.fullmatch(pattern, kind)]
    assert len(matches) == 1, f"no golden spec for {path}"
    fsdp_spec, tp_spec = (padded(s, ndim) for s in matches[0])
    if mesh_name == "dp":
        return (None,) * ndim
    if mesh_name == "fsdp":
        return fsdp_spec
    if mesh_name == "tp":
        return tp_spec
    assert all(a is None or b is None for a, b in zip(fsdp_spec, tp_spec))
    return tuple(a or b for a, b in zip(fsdp_spec, tp_spec))


def mesh_config(config, name):
    config.mesh.data, config.mesh.fsdp, config.mesh.tensor = MESHES[name]
    return config


@pytest.mark.parametrize("mesh_name", list(MESHES))
def test_every_state_leaf_has_its_golden_partition_spec(smoke_config, mesh_name):
    smoke_config.objective = "ema"  # the EMA copy must follow the online encoder's shardings
    run = loop.build_run(mesh_config(smoke_config, mesh_name))
    leaves = jax.tree_util.tree_leaves_with_path(run.state)
    assert sum(".mu." in jax.tree_util.keystr(p, simple=True, separator=".") for p, _ in leaves) > 40
    for path, leaf in leaves:
        name = jax.tree_util.keystr(path, simple=True, separator=".")
        assert padded(leaf.sharding.spec, leaf.ndim) == expected_spec(name, leaf.ndim, mesh_name), name
        assert leaf.sharding.mesh.shape == dict(zip(parallel.MESH_AXES, MESHES[mesh_name])), name
    ema = jax.tree.leaves(run.state.ema_params)
    online = jax.tree.leaves(run.state.params["encoder"])
    assert [x.sharding for x in ema] == [x.sharding for x in online]


def state_bytes(abstract_state, per_device: bool) -> int:
    total = 0
    for leaf in jax.tree.leaves(abstract_state):
        shape = leaf.sharding.shard_shape(leaf.shape) if per_device else leaf.shape
        total += int(np.prod(shape)) * leaf.dtype.itemsize
    return total


def test_fsdp_base_model_state_per_device_is_an_eighth(smoke_config):
    """ViT-B encoder + V-JEPA predictor + EMA + AdamW under FSDP=8: per-device bytes <= 1.15 x total / 8,
    from the abstract state and from the compiled init's memory analysis (nothing is allocated)."""
    config = mesh_config(smoke_config, "fsdp")
    config.objective = "ema"
    config.model.size = "base"
    config.model.predictor.update(width=384, depth=12, num_heads=12)
    mesh = parallel.make_mesh(config.mesh)
    init_fn = loop.train_state_init_fn(loop.build_run(config, abstract=True))
    with jax.set_mesh(mesh), nn.logical_axis_rules(parallel.RULES):
        abstract = parallel.abstract_sharded(init_fn, mesh)
        shardings = jax.tree.map(lambda x: x.sharding, abstract)
        compiled = jax.jit(lambda: nn.meta.unbox(init_fn()), out_shardings=shardings).lower().compile()
    total, per_device = state_bytes(abstract, False), state_bytes(abstract, True)
    assert total > 4 * 4 * 86e6  # params + EMA + two Adam moments of an 86M-parameter encoder, fp32
    assert per_device <= 1.15 * total / 8, (per_device, total)
    output_bytes = compiled.memory_analysis().output_size_in_bytes
    assert output_bytes <= 1.15 * total / 8, (output_bytes, total)


@pytest.mark.parametrize("mesh", [(1, 1, 3), (1, 3, 1)])
def test_mesh_that_does_not_divide_the_devices_fails_naming_the_mesh(smoke_config, mesh):
    smoke_config.mesh.data, smoke_config.mesh.fsdp, smoke_config.mesh.tensor = mesh
    with pytest.raises(ValueError, match=r"config.mesh=.*needs 3 devices, 8 are available"):
        loop.build_run(smoke_config)


def test_heads_that_do_not_split_over_tensor_fail_before_compiling(smoke_config):
    smoke_config.mesh.data, smoke_config.mesh.tensor = 2, 4  # nano has 2 heads
    with pytest.raises(ValueError, match=r"params\.encoder\.blocks_0\.attn\.proj\.kernel: dimension 0 \('heads', "
                                         r"size 2\) does not split over mesh axis tensor of size 4"):
        loop.build_run(smoke_config)


def test_batch_that_does_not_split_over_data_x_fsdp_fails(smoke_config):
    smoke_config.data.batch_size = 12
    with pytest.raises(ValueError, match=r"config.data.batch_size=12 must be divisible by the data x fsdp"):
        loop.build_run(smoke_config)
