r"""The V-JEPA 2 train steps `jepa-jax bench` measures (issue H's sizes): EMA objective, 3D RoPE, V-JEPA 2's two
mask configs, random clips (the bench makes its own batch, so no data is read).

    jepa-jax bench --config experiments/configs/bench_vjepa2.py:tiny224 --what step --compare torch

- tiny64:   ViT-tiny/16, 16 x 64^2 clips (128 tokens), batch 8, predictor 4 blocks x 96 (4 heads);
- tiny224:  ViT-tiny/16, 16 x 224^2 clips (1,568 tokens), batch 2, V-JEPA 2's predictor (12 blocks x 384, 12 heads);
- large256: ViT-L/16, 16 x 256^2 clips (2,048 tokens), bf16, V-JEPA 2's predictor, activation checkpointing,
  batch 16 per device (the GPU measurement; raise --config.data.batch_size to the largest that fits).
"""

import ml_collections

from jepa_jax import recipes

FP32 = dict(remat="none", dtype="float32")
SIZES = {
    "tiny64": dict(size="tiny", crop=64, batch=8, predictor=dict(width=96, depth=4, num_heads=4), **FP32),
    "tiny224": dict(size="tiny", crop=224, batch=2, predictor=dict(width=384, depth=12, num_heads=12), **FP32),
    "large256": dict(size="large", crop=256, batch=16, predictor=dict(width=384, depth=12, num_heads=12),
                     remat="nothing_saveable", dtype="bfloat16"),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    name = arg or "tiny224"
    if name not in SIZES:
        raise ValueError(f"bench_vjepa2.py:{name}: choose one of {sorted(SIZES)}")
    size = SIZES[name]
    config = recipes.base_config()
    config.objective = "ema"
    config.model.update(size=size["size"], patch_size=16, tubelet_size=2, pos_embedding="rope", remat=size["remat"],
                        dtype=size["dtype"])
    config.model.predictor.update(**size["predictor"])
    config.data.world.update(num_frames=16, size=size["crop"])
    config.data.batch_size = size["batch"]
    config.ema.update(start=0.99925, end=0.99925)
    config.probe.report = False
    return config
