r"""I-JEPA ViT-H/14 on ImageNet-1k, 224 px: mirrors ijepa:configs/in1k_vith14_ep300.yaml.

    jepa-jax train --config experiments/configs/ijepa_vith14.py --workdir runs/ijepa_vith14 \
        --config.data.video.manifests="('imagefolder:/data/imagenet/train',)"

Global batch 2048 (16 GPUs x 128), 300 epochs x 625 = 187,500 iterations, warmup 40 epochs, lr 2e-4 -> 1e-3 ->
1e-6 (cosine, ipe_scale 1.0), WD 0.04 -> 0.4, EMA 0.996 -> 1.0, predictor depth 12 / width 384, masks: one
context block (scale 0.85-1.0) and four target blocks (0.15-0.2, aspect 0.75-1.5), smooth-L1 loss, crop scale
0.3-1.0, no flip.

Where this knowingly differs from the official run: see `jepa_jax.recipes.ijepa`.
"""

import ml_collections

from jepa_jax import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    del arg
    return recipes.ijepa("huge", patch_size=14, crop=224)
