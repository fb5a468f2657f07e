r"""V-JEPA 2 ViT-g/16 phase 1, 256 px, 16 frames at 4 fps, 3D RoPE: mirrors vj2:configs/train/vitg16/pretrain-256px-16f.yaml.

    jepa-jax train --config experiments/configs/vjepa2_vitg16.py --workdir runs/vjepa2_vitg16 \
        --config.data.video.manifests="('k710.csv', 'ssv2.csv', 'howto100m.csv')"

Global batch 3072, 800 epochs x 300 = 240K iterations, seed 239. The encoder is vit_giant_xformers (22 heads of 64).

Where this knowingly differs from the official run: see `jepa_jax.recipes.vjepa2`.
"""

import ml_collections

from jepa_jax import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    del arg
    return recipes.vjepa2("giant", epochs=800)
