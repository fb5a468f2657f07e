r"""Tiny V-JEPA-style run on the built-in bouncing-balls world: the project's main job (2-core CPU, ~10 minutes).

    jepa-jax train --config experiments/configs/tiny_world.py --workdir runs/tiny_world

Override any field on the command line, e.g. `--config.objective=ema --config.train.steps=100`.
The run writes `config.json`, `metrics.jsonl`, TensorBoard scalars, checkpoints at the probe steps and, at the
end, `report.md` + `report.png`: frozen-feature probes (ball position and velocity on held-out clips) for the
trained encoder at several checkpoints, the same encoder at random init, and raw pixels.

Grid choice: 64 x 64 frames with 8 x 8 patches (an 8 x 8 token grid, so a 4-6 px ball sits in one or two
patches) and 8 frames with tubelet 2 (4 time slices to read motion from): 256 tokens per clip.
Default objective is the EMA-free `sigreg` (see ../shared reference: a naive EMA run collapses at this scale).
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The tiny-world config.

    arg: "smoke" shrinks it to a seconds-long run for tests; "video" trains the same model on video files instead:
    `--config experiments/configs/tiny_world.py:video --config.data.video.manifests="('train.csv',)"`
    (manifests: official `PATH LABEL` CSV, JSONL, a directory or a glob; weights mix several).
    """
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.objective = "sigreg"  # "sigreg" (EMA-free) or "ema" (V-JEPA)

    config.model = dict(
        size="micro", patch_size=8, tubelet_size=2, pos_embedding="rope", rope_pairing="repeat", remat=False,
        predictor=dict(width=64, depth=2, num_heads=4, mlp_ratio=4.0),
    )
    config.data = dict(
        source="balls",
        world=dict(num_frames=8, size=64, num_balls=3, occluder=False),
        # Used when source="video" (`:video` below): official V-JEPA decoding, sampling and augmentation.
        video=dict(manifests=(), weights=(), frames_per_clip=8, frame_step=4, fps=0.0, crop_size=64,
                   scale=(0.3, 1.0), aspect_ratio=(0.75, 1.35), flip=0.5, max_bad_fraction=0.2, max_retries=20),
        packed_dir="",  # source="packed": a folder written by `jepa-jax data pack` (augmented like video)
        batch_size=32,  # global batch, split over processes and devices
        num_threads=2,
        prefetch=4,
    )
    # Order matters: mask config i uses the predictor's mask token i (V-JEPA: 0 = short-range, 1 = long-range).
    config.masks = ml_collections.ConfigDict(dict(
        short_range=dict(num_blocks=8, spatial_scale=(0.15, 0.15), temporal_scale=(1.0, 1.0),
                         aspect_ratio=(0.75, 1.5)),
        long_range=dict(num_blocks=2, spatial_scale=(0.7, 0.7), temporal_scale=(1.0, 1.0),
                        aspect_ratio=(0.75, 1.5)),
    ), sort_keys=False)
    config.loss = dict(kind="l1")
    config.ema = dict(start=0.996, end=1.0)
    config.sigreg = dict(weight=1.0, num_slices=128, t_max=5.0, num_points=17)
    config.optim = dict(lr=3e-4, start_lr=1e-4, final_lr=1e-6, warmup_steps=20, weight_decay=0.04,
                        final_weight_decay=0.4, ipe_scale=1.25, b1=0.9, b2=0.999, eps=1e-8, grad_clip=0.0)
    # resume=True continues from the newest complete checkpoint in --workdir (train state + data stream).
    # Checkpoints: every checkpoint_every steps, the probe steps and the last; keep the newest checkpoint_keep
    # (0: all) plus every checkpoint_keep_every-th and the probe steps. grad_accum=k averages k micro-batches per
    # update (same result as the whole batch at once, for few devices). on_nonfinite: "stop" or "skip" the update.
    config.train = dict(steps=300, log_every=10, checkpoint_every=100, checkpoint_keep=3, checkpoint_keep_every=0,
                        resume=True, grad_accum=1, on_nonfinite="stop")
    config.monitor = dict(peak_flops=0.0)  # peak FLOP/s per device for MFU; 0: look up the device kind
    config.mesh = dict(data=-1, fsdp=1, tensor=1)
    config.probe = dict(report=True, num_train=1500, num_test=500, seed=1_000_003, batch_size=100,
                        at_fractions=(0.1, 0.25, 0.5, 1.0))

    args = set((arg or "").split(","))
    if "video" in args:
        config.data.source = "video"
    if "smoke" in args:
        config.data.batch_size = 8
        config.model.size = "nano"
        config.train.steps = 4
        config.train.log_every = 1
        config.probe.num_train = 48
        config.probe.num_test = 24
        config.probe.batch_size = 24
        config.probe.at_fractions = (0.5, 1.0)
    return config
