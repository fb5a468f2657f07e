"""Released attentive probes: the official AttentiveClassifier (vendored V-JEPA 2 code) saved as a V-JEPA 2 probe
checkpoint imports into our probe, which then computes the same logits; a released probe scores a labelled manifest
through `eval probe --probe_from` without training. Needs the `interop` extra (CI installs it)."""

import copy
import json

import jax
import numpy as np
import pytest

from tests.conftest import require

torch = require("torch")

from jepa_jax import config as config_lib, export, layouts, native, probing  # pylint: disable=wrong-import-position
from jepa_jax.data import demo  # pylint: disable=wrong-import-position
from tests.official.vjepa2 import attentive_pooler as official  # pylint: disable=wrong-import-position
from tests.train.test_probe_objective import saved_jepa_run  # pylint: disable=wrong-import-position


def official_classifier(depth: int, classes: int, width: int = 32, heads: int = 4):
    torch.manual_seed(0)
    classifier = official.AttentiveClassifier(embed_dim=width, num_heads=heads, depth=depth, num_classes=classes)
    with torch.no_grad():  # move the zero-initialised biases and LayerNorms off their defaults
        for tensor in classifier.parameters():
            tensor.add_(0.05 * torch.randn_like(tensor))
    return classifier.eval()


def save_v2_checkpoint(classifier, path) -> str:
    state = {f"module.{k}": v for k, v in classifier.state_dict().items()}
    torch.save({"classifiers": [state], "opt": [], "epoch": 20, "batch_size": 4, "world_size": 8}, path)
    return str(path)


def probe_config(smoke_config, tensors: dict):
    config = copy.deepcopy(smoke_config)
    config.objective = "probe"
    config.attentive.update(probing.official_probe_settings(tensors), num_heads=4, positions=False,
                            learning_rates=(0.0,), weight_decays=(0.0,), task="count")
    config.data.world.num_balls = 1  # unused: num_classes comes from the task for built-in tasks
    config.attentive.task = "labels"
    return config


@pytest.mark.parametrize("depth", [1, 3])
def test_an_official_v2_probe_imports_and_gives_the_same_logits(smoke_config, tmp_path, depth):
    classifier = official_classifier(depth, classes=5)
    tensors = export.read_fair_probe(save_v2_checkpoint(classifier, tmp_path / "probe.pt"))
    assert probing.official_probe_settings(tensors) == {"flavour": "vjepa2", "depth": depth, "num_classes": 5}
    config = probe_config(smoke_config, tensors)
    config.attentive.num_classes = 5
    params = jax.tree.map(lambda x: x[0], probing.import_probe(tensors, config, "probe.pt"))
    tokens = np.random.default_rng(0).normal(size=(3, 20, 32)).astype(np.float32)
    ours = np.asarray(config_lib.build_predictor(config).apply({"params": params}, tokens))
    with torch.no_grad():
        theirs = classifier(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
    # and back: our probe in the official layout is the official state dict, bit for bit
    back = layouts.to_layout(layouts.FAIR, native.flatten(params))
    assert sorted(back) == sorted(tensors)
    for name, value in back.items():
        np.testing.assert_array_equal(value, tensors[name])


def test_a_file_without_a_probe_is_a_one_line_error(tmp_path):
    torch.save({"encoder": {"blocks.0.norm1.weight": torch.ones(4)}}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"model.pt is not an attentive probe: no pooler.query_tokens"):
        export.read_fair_probe(str(tmp_path / "model.pt"))


@pytest.mark.slow
def test_a_released_probe_scores_a_labelled_manifest_without_training(smoke_config, tmp_path):
    saved_jepa_run(smoke_config, str(tmp_path / "model"))
    config_lib.write_json(smoke_config, str(tmp_path / "model" / "config.json"))
    videos = demo.write_motion_videos(str(tmp_path / "videos"), num_train=4, num_val=8)
    probe = save_v2_checkpoint(official_classifier(depth=1, classes=4), tmp_path / "probe.pt")
    base = copy.deepcopy(smoke_config)
    base.attentive.update(num_heads=4, segments=2, views=2)
    base.data.video.frame_step = 2
    result = probing.score_official_probe(str(tmp_path / "model"), probe, videos["val"], str(tmp_path / "out"), base)
    assert result["step"] is None and result["num_test"] == 8 and len(result["members"]) == 1
    assert json.loads((tmp_path / "out" / "probe.json").read_text())["best"] == result["best"]
    assert "(imported, encoder" in (tmp_path / "out" / "probe.md").read_text()
