"""Config builders for the files under experiments/configs: the full config schema, and the published recipes.

`base_config()` holds every field the engine reads, with the tiny built-in-world values; the recipe functions
change what the official V-JEPA, V-JEPA 2 and I-JEPA configs set (docs/official_reference.md 5). Experiment files
call one of them and say which official config they mirror.
"""

import ml_collections

# Official iterations per epoch; schedules stretch over ipe_scale x the run (docs/official_reference.md 5.1).
OFFICIAL_IPE = 300


def vjepa_masks() -> ml_collections.ConfigDict:
    """V-JEPA's two mask configs (identical in V1 and V2). Order = mask-token index: short-range first."""
    return ml_collections.ConfigDict(dict(
        short_range=dict(num_blocks=8, spatial_scale=(0.15, 0.15), temporal_scale=(1.0, 1.0),
                         aspect_ratio=(0.75, 1.5)),
        long_range=dict(num_blocks=2, spatial_scale=(0.7, 0.7), temporal_scale=(1.0, 1.0),
                        aspect_ratio=(0.75, 1.5)),
    ), sort_keys=False)


def base_config() -> ml_collections.ConfigDict:
    """Every config field, with the tiny built-in-world values (a micro ViT on 8 x 64 x 64 bouncing-balls clips)."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    # "sigreg" (EMA-free), "ema" (V-JEPA) or "pixels" (the pixel-reconstruction baseline: the same encoder, masks and
    # predictor size, predicting each masked tubelet's standardised pixels, VideoMAE-style; models/pixel_decoder.py)
    config.objective = "sigreg"
    config.model = dict(
        size="micro", patch_size=8, tubelet_size=2, pos_embedding="rope", rope_pairing="repeat",
        # Rematerialisation policy of every block (models/vit.py REMAT_POLICIES): none, nothing_saveable,
        # dots_saveable or dots_with_no_batch_dims_saveable.
        remat="none",
        # scan_layers: run the blocks as one lax.scan, so the step compiles one block instead of all of them.
        # Weights are stored per block either way: checkpoints and exports do not depend on it.
        scan_layers=False,
        # The attention kernel (models/attention.py): auto, xla, blocked, cudnn or splash. attention_strict: a
        # kernel that cannot run here (cudnn off a GPU or in float32, splash off a TPU) is an error instead of a
        # fallback with a warning.
        attention="auto", attention_strict=False,
        # Compute dtype: float32, or bfloat16 (mixed precision: bf16 activations and matmuls; parameters, optimizer
        # state, normalisation statistics, softmax and losses stay float32).
        dtype="float32",
        # size="custom": the encoder dimensions below (e.g. an imported checkpoint's); otherwise unused.
        custom=dict(width=0, depth=0, num_heads=0, mlp_dim=0),
        # num_mask_tokens=0: one learned mask token per mask config (V-JEPA); imported V-JEPA 2 weights have 10.
        predictor=dict(width=64, depth=2, num_heads=4, mlp_ratio=4.0, num_mask_tokens=0),
    )
    config.data = dict(
        source="balls",
        world=dict(num_frames=8, size=64, num_balls=3, occluder=False),
        # Used when source="video": official V-JEPA decoding, sampling and augmentation.
        video=dict(manifests=(), weights=(), frames_per_clip=8, frame_step=4, fps=0.0, crop_size=64,
                   scale=(0.3, 1.0), aspect_ratio=(0.75, 1.35), flip=0.5, max_bad_fraction=0.2, max_retries=20),
        packed_dir="",  # source="packed": a folder written by `jepa-jax data pack` (augmented like video)
        trajectories="",  # source="trajectories": a folder written by `jepa-jax data collect` (objective "ac")
        batch_size=32,  # global batch, split over processes and devices
        num_threads=2,
        prefetch=4,
    )
    config.masks = vjepa_masks()
    # objective="ac": an action-conditioned world model (V-JEPA 2-AC's predictor and loss) on trajectory windows of
    # num_frames frames, one every `frameskip` environment steps (actions between them concatenated: action_dim =
    # frameskip x the environment's). encoder="frozen" keeps the encoder fixed at encoder_from (a run directory
    # [:STEP] or an export folder; its EMA target encoder when it has one; empty: the random init);
    # encoder="joint" trains it from pixels with the prediction loss + config.sigreg (LeWorldModel). rollout_steps:
    # frames predicted from the model's own outputs in the rollout loss (V-JEPA 2-AC's auto_steps).
    # predict_proprio adds a next-proprio head (not in the official layout), weighted by proprio_weight;
    # rollout_proprio: the rollout loss's proprio inputs, "recorded" (V-JEPA 2-AC) or "predicted" (the model's own,
    # fed back as the planner's rollout does; needs predict_proprio).
    # pool_grid k > 0 average-pools each frame's H' x W' patch features to k x k state tokens (k = 1: one token per
    # frame, LeWorldModel-like, which keeps planning rollouts cheap); 0 keeps every patch (V-JEPA 2-AC).
    # state_norm: "layer" LayerNorms every state token (V-JEPA 2-AC's targets); "batch" standardises each feature
    # with the batch's moments in training and the training data's when planning (LeWorldModel's BatchNorm
    # projector; with encoder="joint" it keeps SIGReg off its collapsed saddle).
    config.ac = dict(encoder="frozen", encoder_from="", num_frames=4, frameskip=5, image_size=64, action_dim=10,
                     proprio_dim=2, rollout_steps=2, predict_proprio=True, proprio_weight=1.0, pool_grid=0,
                     state_norm="layer", rollout_proprio="recorded",
                     predictor=dict(width=128, depth=4, num_heads=4, mlp_ratio=4.0))
    # objective="probe": attentive probes (models/probe.py) on a frozen encoder, a grid of learning rates x weight
    # decays trained at once (V-JEPA 2's protocol), on a built-in task of config.data.world (data/pipeline.py
    # ProbeTargets: position, velocity, or where the balls are `ahead` frames after the clip). encoder_from: the
    # encoder, "RUN_DIR[:STEP]" (its EMA target if it has one) or an export folder; "" probes the config's encoder
    # at random init (a floor). features="pixels" probes the normalised pixels of each tubelet instead of an
    # encoder's tokens (the raw-pixel baseline). num_heads must divide the token width. positions=True adds the
    # tokens' fixed 3D sin-cos positions before the probe (models/probe.py: a RoPE encoder's tokens and pixels carry
    # no absolute position, which the position tasks need); False is the official probe. These defaults suit the
    # tiny world on a CPU (one cross-attention block, 4 members; weight decay 0.1 scored as 0.01 there); V-JEPA 2's
    # protocol is V2_PROBE (depth 4, 20 members).
    # Classification tasks: count (how many balls, 1..num_balls), collision (do two balls touch within `ahead`
    # frames after the clip) and labels: the classes of labelled manifests (data.source="video",
    # data.video.manifests to train on, val_manifest to score; num_classes; segments clips per video, their tokens
    # concatenated; views spatial crops per clip when scoring, softmax-averaged), V-JEPA's video classification.
    # out_layers: the probe reads the outputs of these encoder blocks (0-based, each through the final norm, their
    # tokens concatenated) instead of the last one's: V-JEPA 2's multi-level features for motion-heavy tasks
    # (configs/eval/vitl/jester.yaml, diving48.yaml: out_layers [17, 19, 21, 23] of 24 blocks).
    config.attentive = dict(task="position", ahead=4, encoder_from="", features="encoder", out_layers=(),
                            positions=True, flavour="vjepa2", depth=1, num_heads=16,
                            learning_rates=(5e-3, 3e-3, 1e-3, 3e-4), weight_decays=(0.01,),
                            num_classes=0, val_manifest="", segments=1, views=1)
    config.loss = dict(kind="l1")
    config.ema = dict(start=0.996, end=1.0)
    config.sigreg = dict(weight=1.0, num_slices=128, t_max=5.0, num_points=17)
    # schedule: "warmup_cosine" (V-JEPA; final_lr = lr gives V-JEPA 2's warmup-then-constant) or "linear_decay"
    # (V-JEPA 2 cooldown: lr -> final_lr linearly over the ipe_scale-stretched run, no warmup).
    config.optim = dict(schedule="warmup_cosine", lr=3e-4, start_lr=1e-4, final_lr=1e-6, warmup_steps=20,
                        weight_decay=0.04, final_weight_decay=0.4, ipe_scale=1.25, b1=0.9, b2=0.999, eps=1e-8,
                        grad_clip=0.0)
    # resume=True continues from the newest complete checkpoint in --workdir (train state + data stream).
    # Checkpoints: every checkpoint_every steps, the probe steps and the last; keep the newest checkpoint_keep
    # (0: all) plus every checkpoint_keep_every-th and the probe steps. grad_accum=k averages k micro-batches per
    # update (same result as the whole batch at once, for few devices). on_nonfinite: "stop" or "skip" the update.
    # init_from="RUN_DIR[:STEP]" starts a new stage (e.g. a cooldown at more frames) from another run's
    # checkpoint (default its newest): parameters, EMA copy and optimizer moments; schedules restart at step 0.
    # compilation_cache: folder of XLA's persistent compilation cache (a rerun or resume skips compiling the
    # step; "" turns it off; a JAX_COMPILATION_CACHE_DIR set in the environment wins).
    config.train = dict(steps=300, log_every=10, checkpoint_every=100, checkpoint_keep=3, checkpoint_keep_every=0,
                        resume=True, grad_accum=1, on_nonfinite="stop", init_from="",
                        compilation_cache="~/.cache/jepa_jax/xla")
    # peak_flops: peak FLOP/s per device for MFU (0: look up the device kind). every: the collapse monitors
    # (effective rank, spread, feature std, prediction cosine) run only every `every` steps (0: the logged steps,
    # train.log_every), plus the first and the last; on other steps they cost nothing. online_probe (objectives
    # ema / sigreg on the built-in world): a linear probe trained beside pretraining on the target features,
    # quadrant-pooled per time slice, to each ball's position and velocity; its R^2 on every fresh batch (before
    # its update) is logged as online_probe_r2, an early warning that pretraining is going wrong. Its gradient
    # never reaches the encoder or the predictor.
    config.monitor = dict(peak_flops=0.0, every=0, online_probe=False)
    config.mesh = dict(data=-1, fsdp=1, tensor=1)
    # The end-of-run report of built-in-world runs (evals/report.py): ridge probes at the checkpoints of
    # at_fractions of the run (num_train / num_test held-out clips of world seed `seed`), and attentive probes
    # (config.attentive's protocol, task "motion", attentive_steps steps each; 0: none) on the final encoder, the
    # same encoder at random init and raw pixels. 900 steps: at 300 the probes were still learning (best member at
    # the top of the lr grid) and ranked the encoders by how fast a probe learns on them rather than what they hold.
    config.probe = dict(report=True, num_train=1500, num_test=500, seed=1_000_003, batch_size=100,
                        at_fractions=(0.1, 0.25, 0.5, 1.0), attentive_steps=900)
    return config


# V-JEPA 2's attentive-probe protocol (facebookresearch/vjepa2 configs/eval/vitl/ssv2.yaml: classifier, and
# optimization.multihead_kwargs): 3 self-attention blocks + 1 cross-attention block, 16 heads, 20 probes trained
# at once over this learning rate x weight decay grid.
V2_PROBE = dict(flavour="vjepa2", depth=4, num_heads=16, positions=False, learning_rates=(5e-3, 3e-3, 1e-3, 3e-4, 1e-4),
                weight_decays=(0.01, 0.1, 0.4, 0.8))


# Default manifests of the official mixtures; point them at your CSVs (`--config.data.video.manifests=...`).
VIDEOMIX2M = ("data/k710_train.csv", "data/ssv2_train.csv", "data/howto100m_train.csv")
VIDEOMIX22M_WEIGHTS = (0.335, 0.100, 0.565)  # V-JEPA 2 sampling weights of the same three datasets


def _published_video_run(config, *, size: str, crop: int, frames: int, batch: int, steps: int, seed: int):
    """Fields shared by every published video recipe: an EMA-target ViT on the video mixture, FSDP over all
    devices, probes off (no ground-truth states in videos)."""
    config.seed = seed
    config.objective = "ema"
    config.model.update(size=size, patch_size=16, tubelet_size=2, dtype="bfloat16")  # official: bf16 autocast
    config.data.source = "video"
    config.data.video.update(manifests=VIDEOMIX2M, frames_per_clip=frames, crop_size=crop)
    config.data.batch_size = batch
    config.data.update(num_threads=8, prefetch=2)
    config.train.update(steps=steps, log_every=10, checkpoint_every=OFFICIAL_IPE, checkpoint_keep=2,
                        checkpoint_keep_every=50 * OFFICIAL_IPE)
    config.mesh.update(data=1, fsdp=-1, tensor=1)
    config.probe.report = False
    return config


def world_model(env_action_dim: int, proprio_dim: int, smoke: bool = False) -> ml_collections.ConfigDict:
    """A CPU-sized action-conditioned world model trained from pixels (LeWorldModel style) on `jepa-jax data
    collect` trajectories of an environment with env_action_dim-d actions and proprio_dim-d proprio.

    Windows of 6 frames, one every 5 environment steps (DINO-WM's frameskip 5: the 5 actions between kept frames
    are one 5 x env_action_dim macro-action); 64 x 64 frames, 16 x 16 patches, one pooled state token per frame.
    The encoder trains jointly with batch-standardised states and SIGReg (weight 10 = LeWorldModel's 0.09 x the
    128 states of a batch, see objectives.sigreg), squared-error teacher-forcing + 5-step rollout loss (the
    planner's horizon, fed its own predicted proprio as the planner's rollout is) and the next-proprio term. 20
    PushT episodes of seed 100 (version-1 exploration data, fast pushes): 0.40 success with predicted rollout
    proprio, 0.30 with the recorded one. On the slow-push data, 50 episodes of seed 0: 0.64 on the CPU.
    smoke=True shrinks it to a seconds-long run for tests.
    """
    config = base_config()
    config.objective = "ac"
    config.data.source = "trajectories"
    config.model.update(size="micro", patch_size=16, tubelet_size=2)
    config.ac.update(encoder="joint", num_frames=6, frameskip=5, image_size=64, proprio_dim=proprio_dim,
                     rollout_steps=5, predict_proprio=True, pool_grid=1, state_norm="batch",
                     rollout_proprio="predicted")
    config.ac.predictor.update(width=64, depth=3, num_heads=4)
    config.loss.kind = "l2"
    config.sigreg.weight = 10.0
    config.data.batch_size = 32
    config.train.update(steps=2000, log_every=20, checkpoint_every=500)
    config.optim.update(lr=5e-4, start_lr=1e-4, final_lr=1e-5, warmup_steps=100)
    config.probe.report = False  # the built-in-world probes do not apply; `jepa-jax plan` evaluates these models
    if smoke:
        config.model.update(size="nano", patch_size=8)
        config.ac.update(image_size=32, num_frames=3, frameskip=2, rollout_steps=2)
        config.ac.predictor.update(width=32, depth=2, num_heads=2)
        config.data.batch_size = 8
        config.train.update(steps=4, log_every=1, checkpoint_every=2)
    config.ac.action_dim = config.ac.frameskip * env_action_dim  # the actions between kept frames, concatenated
    return config


def vjepa1(size: str, crop: int) -> ml_collections.ConfigDict:
    """V-JEPA pretraining (jepa:configs/pretrain/vit{l,h}16*.yaml): sin-cos positions, 16 frames every 4th,
    90K iterations, warmup-cosine LR, increasing WD, EMA 0.998 -> 1.

    Known differences from the official run:
    - grad_clip=10 clips the global norm of encoder + predictor together from step 0 (official: each module
      separately, and only after the 40 warmup epochs);
    - the three manifests are mixed with equal weights (official: uniform over the concatenated CSVs); set
      data.video.weights proportional to the manifest sizes to match.
    """
    config = _published_video_run(base_config(), size=size, crop=crop, frames=16, batch=3072 if crop == 224 else 2400,
                                  steps=300 * OFFICIAL_IPE, seed=234)
    config.model.update(pos_embedding="sincos", remat="none",
                        predictor=dict(width=384, depth=12, num_heads=16, mlp_ratio=4.0, num_mask_tokens=0))
    config.data.video.update(frame_step=4, fps=0.0)
    config.ema.update(start=0.998, end=1.0)
    config.optim.update(schedule="warmup_cosine", lr=6.25e-4, start_lr=2e-4, final_lr=1e-6,
                        warmup_steps=40 * OFFICIAL_IPE, weight_decay=0.04, final_weight_decay=0.4, ipe_scale=1.25,
                        grad_clip=10.0)
    return config


def vjepa2(size: str, epochs: int) -> ml_collections.ConfigDict:
    """V-JEPA 2 phase 1 (vj2:configs/train/vit*16/pretrain-256px-16f.yaml): 3D RoPE, 16 frames at 4 fps, 256 crop,
    warmup then constant LR, constant WD and EMA, weighted three-dataset mixture, activation checkpointing.

    Known differences from the official run (also for the cooldown):
    - the predictor has one mask token per mask config (2); the official code builds 6 (2 masks x 3 clip-length
      groups) and, with every dataset at one clip length, trains token 0 for both masks;
    """
    config = _published_video_run(base_config(), size=size, crop=256, frames=16, batch=3072,
                                  steps=epochs * OFFICIAL_IPE, seed=239)
    config.model.update(pos_embedding="rope", remat="nothing_saveable",
                        predictor=dict(width=384, depth=12, num_heads=12, mlp_ratio=4.0, num_mask_tokens=0))
    config.data.video.update(frame_step=0, fps=4.0, weights=VIDEOMIX22M_WEIGHTS)
    config.ema.update(start=0.99925, end=0.99925)
    config.optim.update(schedule="warmup_cosine", lr=5.25e-4, start_lr=1e-4, final_lr=5.25e-4,
                        warmup_steps=40 * OFFICIAL_IPE, weight_decay=0.04, final_weight_decay=0.04, ipe_scale=1.25,
                        grad_clip=0.0)
    return config


def vjepa2_cooldown(size: str, crop: int, epochs: int, ipe: int, batch: int = 3072) -> ml_collections.ConfigDict:
    """V-JEPA 2 phase 2 (vj2:configs/train/vit*16/cooldown-*-64f.yaml): 64 frames, LR linear 5.25e-4 -> 1e-6 over
    int(1.25 x epochs x ipe) steps with no warmup, started from a phase-1 run: set
    --config.train.init_from=PHASE1_RUN_DIR (the official `anneal_ckpt`)."""
    config = vjepa2(size, epochs=0)
    config.data.video.update(frames_per_clip=64, crop_size=crop)
    config.data.batch_size = batch
    config.train.update(steps=epochs * ipe, checkpoint_every=ipe, checkpoint_keep_every=10 * ipe)
    config.optim.update(schedule="linear_decay", lr=5.25e-4, start_lr=5.25e-4, final_lr=1e-6, warmup_steps=0)
    return config


IMAGENET_TRAIN = "imagefolder:data/imagenet/train"
IMAGENET_IPE = 1_281_167 // 2048  # official iterations per epoch at batch 2048


def ijepa(size: str, patch_size: int, crop: int) -> ml_collections.ConfigDict:
    """I-JEPA (ijepa:configs/in1k_vith14_ep300.yaml): images as one-frame clips, one context block and four target
    blocks predicted separately, smooth-L1 loss, 300 epochs of ImageNet-1k at batch 2048.

    Known differences from the official run: positions are our 3D sin-cos table on a one-frame grid (same
    frequencies per spatial axis, laid out as the V-JEPA table, not the I-JEPA 2D one: only matters when porting
    weights); mask token counts are fixed per batch shape (see masks.ImageMultiBlockMasker) instead of truncated
    to the batch minimum.
    """
    config = base_config()
    config.objective = "ema"
    config.loss.kind = "smooth_l1"
    config.model.update(size=size, patch_size=patch_size, tubelet_size=1, pos_embedding="sincos", remat="none",
                        dtype="bfloat16",
                        predictor=dict(width=384, depth=12, num_heads=16, mlp_ratio=4.0, num_mask_tokens=0))
    config.data.source = "video"  # image files go through the video loader as one-frame clips
    config.data.video.update(manifests=(IMAGENET_TRAIN,), frames_per_clip=1, frame_step=1, fps=0.0, crop_size=crop,
                             scale=(0.3, 1.0), aspect_ratio=(0.75, 4 / 3), flip=0.0)
    config.data.update(batch_size=2048, num_threads=8, prefetch=2)
    config.masks = ml_collections.ConfigDict(dict(
        ijepa=dict(num_targets=4, target_scale=(0.15, 0.2), context_scale=(0.85, 1.0), aspect_ratio=(0.75, 1.5)),
    ), sort_keys=False)
    config.ema.update(start=0.996, end=1.0)
    config.optim.update(schedule="warmup_cosine", lr=1e-3, start_lr=2e-4, final_lr=1e-6, warmup_steps=40 * IMAGENET_IPE,
                        weight_decay=0.04, final_weight_decay=0.4, ipe_scale=1.0, grad_clip=0.0)
    config.train.update(steps=300 * IMAGENET_IPE, checkpoint_every=IMAGENET_IPE, checkpoint_keep=2,
                        checkpoint_keep_every=50 * IMAGENET_IPE)
    config.mesh.update(data=1, fsdp=-1, tensor=1)
    config.probe.report = False
    return config
