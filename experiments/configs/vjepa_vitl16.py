r"""V-JEPA ViT-L/16, 224 px, 16 frames: mirrors jepa:configs/pretrain/vitl16.yaml.

    jepa-jax train --config experiments/configs/vjepa_vitl16.py --workdir runs/vjepa_vitl16 \
        --config.data.video.manifests="('k710.csv', 'ssv2.csv', 'howto100m.csv')"

Global batch 3072 (16 nodes x 8 GPUs x 24), 90K iterations (300 epochs x 300), seed 234.

Where this knowingly differs from the official run: see `jepa_jax.recipes.vjepa1`.
"""

import ml_collections

from jepa_jax import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    del arg
    return recipes.vjepa1("large", crop=224)
