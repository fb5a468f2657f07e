r"""Tiny V-JEPA-style run on the built-in bouncing-balls world: the project's main job (2-core CPU, ~20 minutes:
3 training, the rest the probe report).

    jepa-jax train --config experiments/configs/tiny_world.py --workdir runs/tiny_world

Override any field on the command line, e.g. `--config.objective=ema --config.train.steps=100`.
The run writes `config.json`, `metrics.jsonl`, TensorBoard scalars, checkpoints at the probe steps and, at the
end, `report.md` + PNG plots: attentive probes (task "motion": ball positions, velocities and where the balls will
be 4 frames later, on held-out clips) for the final encoder, the same encoder at random init and raw pixels, with
ridge probes beside them; then ridge probes of the encoder at several checkpoints (a learning curve).

Grid choice: 64 x 64 frames with 8 x 8 patches (an 8 x 8 token grid, so a 4-6 px ball sits in one or two
patches) and 8 frames with tubelet 2 (4 time slices to read motion from): 256 tokens per clip.
Default objective is the EMA-free `sigreg` (docs/tiny_world.md: a naive EMA run collapses at this scale).
"""

import ml_collections

from jepa_jax import recipes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The tiny-world config (all fields: jepa_jax.recipes.base_config).

    arg: "smoke" shrinks it to a seconds-long run for tests; "video" trains the same model on video files instead:
    `--config experiments/configs/tiny_world.py:video --config.data.video.manifests="('train.csv',)"`
    (manifests: official `PATH LABEL` CSV, JSONL, a directory or a glob; weights mix several); "physics" trains
    for `jepa-jax eval physics`: only causal masks (the first half of the time slices predicts the rest, as the
    intuitive-physics evaluation asks), a squared-error loss, a predictor of 4 blocks x 128 wide whose heads have
    32 channels (5 RoPE frequencies per axis; the default's 16-channel heads get 2, at 1 and 0.01 rad per token, too
    few to tell the 8 x 8 grid's places apart) and 2,400 steps with the cosine run to its end (48 minutes on 2
    cores).
    """
    config = recipes.base_config()
    args = set((arg or "").split(","))
    if "video" in args:
        config.data.source = "video"
    if "physics" in args:
        config.masks = ml_collections.ConfigDict({"future": {"context_frames_ratio": 0.5}})
        config.loss.kind = "l2"
        config.model.predictor.update(width=128, depth=4, num_heads=4)
        config.optim.ipe_scale = 1.0
        config.train.steps = 2400
    if "smoke" in args:
        config.data.batch_size = 8
        config.model.size = "nano"
        config.train.steps = 4
        config.train.log_every = 1
        config.probe.num_train = 48
        config.probe.num_test = 24
        config.probe.batch_size = 24
        config.probe.at_fractions = (0.5, 1.0)
        config.probe.attentive_steps = 2
    return config
