r"""V-JEPA 2 ViT-L/16 phase 1, 256 px, 16 frames at 4 fps, 3D RoPE: mirrors vj2:configs/train/vitl16/pretrain-256px-16f.yaml.

    jepa-jax train --config experiments/configs/vjepa2_vitl16.py --workdir runs/vjepa2_vitl16 \
        --config.data.video.manifests="('k710.csv', 'ssv2.csv', 'howto100m.csv')"

Global batch 3072, 10 epochs x 300 = 3000 iterations as the official file says (how long the released ViT-L
trained is not in the official repository: docs/official_reference.md 5.3): raise --config.train.steps for a
full run.

Where this knowingly differs from the official run: see `jepa_jax.recipes.vjepa2`.
"""

import ml_collections

from jepa_jax import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    del arg
    return recipes.vjepa2("large", epochs=10)
