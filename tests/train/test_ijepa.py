"""I-JEPA end to end: a tiny run of the ijepa recipe on a generated image folder learns (loss decreases)."""

import numpy as np
from PIL import Image
import pytest

from jepa_jax import metrics as metrics_lib, recipes
from jepa_jax.train import loop


def write_image_folder(root, per_class: int = 16):
    """Two classes of 40x40 images: a bright square at a random place on a dark noisy background."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
            top, left = rng.integers(0, 28, 2)
            image[top:top + 12, left:left + 12] = (220, 40, 40) if label == "a" else (40, 220, 40)
            Image.fromarray(image).save(root / label / f"{i}.png")


@pytest.mark.slow
def test_tiny_ijepa_run_on_an_image_folder_decreases_the_loss(tmp_path):
    write_image_folder(tmp_path / "images")
    config = recipes.ijepa("nano", patch_size=4, crop=32)
    config.data.video.manifests = (f"imagefolder:{tmp_path / 'images'}",)
    config.data.update(batch_size=8, num_threads=1)
    config.model.predictor.update(width=32, depth=2, num_heads=2)
    config.optim.update(warmup_steps=5, lr=1e-3, start_lr=1e-4)
    config.train.update(steps=40, log_every=1, checkpoint_every=0)
    config.mesh.update(data=-1, fsdp=1)
    summary = loop.train(config, str(tmp_path / "run"))
    losses = [r["loss"] for r in metrics_lib.read_jsonl(str(tmp_path / "run" / "metrics.jsonl"))]
    assert len(losses) == 40 and summary["bad_files_total/missing"] == 0
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
