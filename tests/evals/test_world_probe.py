"""The world probe's frozen encoder: compiled once for every checkpoint it probes, normalised as in training."""

import jax
import numpy as np

from jepa_jax import config as config_lib
from jepa_jax.evals import world_probe
from jepa_jax.models import vit


def test_probing_several_checkpoints_compiles_the_encoder_once(smoke_config):
    encoder = config_lib.build_encoder(smoke_config)
    frames, size = config_lib.clip_shape(smoke_config)
    video = np.random.default_rng(0).integers(0, 256, (6, frames, size, size, 3), dtype=np.uint8)
    checkpoints = [encoder.init(jax.random.key(seed), vit.normalize_video(video[:1]))["params"] for seed in (1, 2, 3)]
    compiles = []

    def count_compiles(event, _duration, **_):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(count_compiles)
    try:
        tokens = [world_probe.encoder_tokens(encoder, params, video, batch_size=3) for params in checkpoints]
    finally:
        jax.monitoring.unregister_event_duration_listener(count_compiles)
    assert len(compiles) == 1
    expected = encoder.apply({"params": checkpoints[2]}, vit.normalize_video(video))
    np.testing.assert_allclose(tokens[2], expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(tokens[0], tokens[1])
