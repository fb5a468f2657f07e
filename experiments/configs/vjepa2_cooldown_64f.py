r"""V-JEPA 2 phase 2 (cooldown), 64 frames at 4 fps: mirrors vj2:configs/train/vit{l,h,g}16/cooldown-*-64f.yaml.

    jepa-jax train --config experiments/configs/vjepa2_cooldown_64f.py:vitg384 --workdir runs/vitg384_cooldown

arg (the official file it mirrors):
  vitl    vitl16/cooldown-256px-64f.yaml: 3072 (32 x 8 x 12), 40 epochs x 300 = 12K iterations
  vith    vith16/cooldown-256px-64f.yaml: same schedule
  vitg    vitg16/cooldown-256px-64f.yaml: 3072 (64 x 8 x 6), epochs 4 x ipe 30 = 120 iterations, as written
          there (it looks like a placeholder; the 384 px file runs 12K)
  vitg384 vitg16/cooldown-384px-64f.yaml: 3072, crop 384, 40 x 300 = 12K iterations
LR falls linearly from 5.25e-4 towards 1e-6 over int(1.25 x iterations) (so ~1.06e-4 at the last step), no
warmup; WD 0.04 and EMA 0.99925 constant. The official run starts from a phase-1 checkpoint (encoder, predictor,
target encoder and optimizer state).

Where this knowingly differs from the official run: see `jepa_jax.recipes.vjepa2`.
"""

import ml_collections

from jepa_jax import recipes

STAGES = {
    "vitl": dict(size="large", crop=256, epochs=40, ipe=300),
    "vith": dict(size="huge", crop=256, epochs=40, ipe=300),
    "vitg": dict(size="giant", crop=256, epochs=4, ipe=30),
    "vitg384": dict(size="giant", crop=384, epochs=40, ipe=300),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    if (arg or "vitl") not in STAGES:
        raise ValueError(f"vjepa2_cooldown_64f.py:{arg} is unknown: choose one of {sorted(STAGES)}")
    return recipes.vjepa2_cooldown(**STAGES[arg or "vitl"])
