"""The `jepa-jax` command: each verb is a thin wrapper over a library function users can call too.

  train          jepa_jax.train.loop.train(config, workdir), then jepa_jax.probing.run_report(...);
                 --rerun DIR takes the config from a run's config.json, --dry_run runs loop.dry_run(config)
  report         jepa_jax.probing.run_report(...) on an existing run
  sweep          jepa_jax.sweep.run_sweep(...)
  data inspect   jepa_jax.data.inspect.inspect_manifest(...)
  data pack      jepa_jax.data.packed.pack_manifest(...)
  data collect   jepa_jax.data.trajectories.collect(...)
  data demo      jepa_jax.data.demo.write_motion_videos(...)
  export         jepa_jax.export.export(...)
  import         jepa_jax.export.import_weights(...)
  extract        jepa_jax.pretrained.extract(...)
  plan           jepa_jax.evals.plan.evaluate(jepa_jax.evals.plan.load_world_model(...), ...)
  eval probe     jepa_jax.probing.evaluate_probe(model, data, workdir, val=...)
  eval physics   jepa_jax.evals.physics_report.evaluate(model, out, pairs=..., baseline=...)
  ablate jepa-vs-pixels  jepa_jax.ablate.jepa_vs_pixels(config, workdir, ...)
  bench          jepa_jax.benchmarks.bench.run(config, what, ...)

The VERBS table below drives both help (`jepa-jax --help`, `jepa-jax VERB --help`: a verb's flags, defaults and
an example) and dispatch, which rejects another verb's flags in one line. Flags are absl flags; `--config` and
`--config.FIELD=VALUE` are ml_collections config flags. Help imports no JAX.
"""

import json
import os
import sys
import textwrap
from typing import Callable, NamedTuple, NoReturn

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "ml-collections config file (path[:arg]); set any field "
                                          "with --config.FIELD=VALUE, e.g. --config.train.steps=100.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                                "Run directory (a path or gs://BUCKET/PATH): config, metrics, checkpoints, report.")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_FRAMES = flags.DEFINE_integer("frames", 16, "Frames per clip.")
_FPS = flags.DEFINE_float("fps", 4.0, "Frame rate to sample clips at (V-JEPA 2); unused with --frame_step.")
_FRAME_STEP = flags.DEFINE_integer("frame_step", 0, "Source frames between sampled frames instead of --fps (0: "
                                   "use --fps).")
_CROP = flags.DEFINE_integer("crop", 224, "Crop size of the contact-sheet clips.")
_SHORT_SIDE = flags.DEFINE_integer("short_side", 256, "Resize clips so the short side is this many pixels.")
_SHARDS = flags.DEFINE_integer("shards", 1, "Number of ArrayRecord shards.")
_CLIPS_PER_VIDEO = flags.DEFINE_integer("clips_per_video", 1, "Clips per video (>1: random windows).")
_ENV = flags.DEFINE_string("env", None, "Environment: pusht or reacher (the `sim` extra).")
_WORKERS = flags.DEFINE_integer("workers", 1, "Processes that run episodes (the files do not depend on it).")
_EPISODES = flags.DEFINE_integer("episodes", None, "Number of episodes; a folder that has some already gets the rest.")
_STEPS_PER_EPISODE = flags.DEFINE_integer("steps_per_episode", 100, "Actions per episode (frames: one more).")
_SEED = flags.DEFINE_integer("seed", 0, "Episode i is seeded from (seed, i) only.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 64, "Frames are image_size x image_size pixels.")
_POLICY_MIX = flags.DEFINE_float("policy_mix", 0.5, "Fraction of episodes from the noisy scripted policy (the rest: "
                                 "a random walk).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "Multi-process: host:port of process 0 (default: "
                                   "detected on TPU pods and SLURM, else one process).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process: this process's index.")
_RERUN = flags.DEFINE_string("rerun", None, "Instead of --config: train again from the config.json of run "
                             "directory DIR (same config, seed and mesh give the same metrics); use a new --workdir.")
_PRINT_COMMANDS = flags.DEFINE_bool("print_commands", False, "Print one `jepa-jax train` command per run (for a "
                                    "cluster) instead of running them here.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Only build the sharded state abstractly and lower the step on the "
                             "config's mesh (no allocation); print mesh, parameter counts, bytes per device.")
_TOPOLOGY = flags.DEFINE_string("topology", None, "With --dry_run: size the run for a target topology instead "
                                "(v5p-256, v5e-64, v6e-64, v4-32, gpu:8x8, ...): mesh, state and activation bytes "
                                "per chip, FLOPs, expected step time; one line when it does not fit.")
_RUN = flags.DEFINE_string("run", None, "A run directory, or an export/import folder.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step of a run (default: the newest).")
_FORMAT = flags.DEFINE_string("format", "native", "native (safetensors + config.json + model card), fair "
                              "(official V-JEPA layout) or hf (transformers VJEPA2Model).")
_GROUPS = flags.DEFINE_list("groups", ["encoder", "target_encoder", "predictor"], "Weight groups to write.")
_ENCODER = flags.DEFINE_string("encoder", "auto", "Which encoder: auto (the EMA target encoder when there is "
                               "one), target or online.")
_FROM = flags.DEFINE_string("from", None, "fair (official .pt / .pth.tar / safetensors) or hf (Hugging Face "
                            "folder).")
_SRC = flags.DEFINE_string("src", None, "The checkpoint file or Hugging Face folder.")
_ARCH = flags.DEFINE_string("arch", None, "Architecture of a fair checkpoint when it cannot be detected, e.g. "
                            "vjepa2_vitl16.")
_NUM_HEADS = flags.DEFINE_integer("num_heads", None, "Encoder heads of a fair checkpoint whose width/depth is no "
                                  "named size (instead of --arch); recorded as model.size=custom.")
_PREDICTOR_HEADS = flags.DEFINE_integer("predictor_heads", None, "Predictor heads of a fair checkpoint (default: "
                                        "the official ones: V-JEPA the encoder's, V-JEPA 2 12, V-JEPA 2-AC 16).")
_MODEL = flags.DEFINE_string("model", None, "An export/import folder or a run directory.")
_DATA = flags.DEFINE_string("data", None, "A manifest (CSV, JSONL, folder, glob or imagefolder:ROOT).")
_VAL = flags.DEFINE_string("val", None, "The held-out labelled manifest to score on (with a manifest --data).")
_PROBE_FROM = flags.DEFINE_string("probe_from", None, "Score a released probe (official AttentiveClassifier .pt or "
                                  ".safetensors) on --val instead of training one.")
_TASKS = flags.DEFINE_list("tasks", ["motion"], "Built-in probe tasks: position, velocity, ahead, count, collision, "
                           "or motion (position, velocity and ahead in one probe, scored per task).")
_PROBE_STEPS = flags.DEFINE_integer("probe_steps", None, "Training steps of each attentive probe (default: "
                                    "jepa_jax.ablate.PROBE_STEPS, 300).")
_POOL = flags.DEFINE_string("pool", "mean", "mean ([M, D]) or tokens ([M, N, D]).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Clips per forward pass.")
_PLANNER = flags.DEFINE_string("planner", "cem", "cem (DINO-WM's PushT settings: horizon 5, 300 samples, top 30, "
                               "30 iterations) or mppi (TD-MPC2's).")
_REPLANS = flags.DEFINE_integer("replans", 10, "Replans per episode (MPC steps); each executes --execute planned "
                                "macro-actions.")
_EXECUTE = flags.DEFINE_integer("execute", 1, "Planned macro-actions executed per replan (1..horizon).")
_DISTANCE = flags.DEFINE_string("distance", "l1", "Latent energy: l1 or l2 distance to the goal's representation.")
_PROPRIO_WEIGHT = flags.DEFINE_float("proprio_weight", 10.0, "Weight of the predicted-vs-goal proprio term of the "
                                     "energy (0: pixels only).")
_BASELINES = flags.DEFINE_bool("baselines", True, "Also run random actions and the simulator oracle.")
_ORACLE_EPISODES = flags.DEFINE_integer("oracle_episodes", 20, "Episodes of the simulator oracle (the first ones; "
                                        "it simulates every candidate, so it is the slowest).")
_WHAT = flags.DEFINE_list("what", ["step"], "Measurements: step, compile, attention, data, plan, checkpoint, profile.")
_COMPARE = flags.DEFINE_string("compare", "none", "none, or torch: time the PyTorch reference (transformers' "
                               "VJEPA2Model modules, the `interop` extra) on the same batch and weights.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per measurement, after a compiling/warm-up call.")
_PAIRS = flags.DEFINE_string("pairs", None, "A manifest of video pairs, one 'POSSIBLE_PATH IMPOSSIBLE_PATH CATEGORY' "
                             "line each (default: the built-in world's pairs).")
_BASELINE = flags.DEFINE_string("baseline", None, "Also score this run, e.g. the pixel-reconstruction arm of "
                                "`jepa-jax ablate jepa-vs-pixels` (WORKDIR/pixels).")
_NUM_PAIRS = flags.DEFINE_integer("num_pairs", 64, "Built-in pairs per category.")
_CONTEXT = flags.DEFINE_integer("context", 0, "Frames of context of the headline table (0: half the model's clip).")
_REDUCE = flags.DEFINE_string("reduce", "max", "Per-clip surprise over the windows: max or mean.")
_RANDOM_INITS = flags.DEFINE_integer("random_inits", 1, "Random-init floors, init seeds SEED, SEED+1, ... (one draw "
                                     "is noisy: e.g. 4 to see how far image statistics alone move the scores).")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Multi-process: let jax.distributed find the other hosts "
                               "(TPU VM slices, SLURM); tpu_scripts/launch.sh sets it.")


def _run_config():
    """The config of --rerun DIR or --config, once JAX knows its processes (this one, or every host's)."""
    if flags.FLAGS["config"].present:
        config_path = config_flags.get_config_filename(flags.FLAGS["config"])
        if not os.path.isfile(config_path.split(":")[0]):
            raise FileNotFoundError(f"--config {config_path}: no such file; configs live in experiments/configs/")
    from jepa_jax import config as config_lib, parallel  # pylint: disable=g-import-not-at-top
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _MULTIHOST.value)
    return config_lib.load_run(_RERUN.value) if _RERUN.value else _CONFIG.value


def _print_report(config, workdir) -> None:
    """Probes the run in `workdir` (attentive probes on its final encoder, ridge probes on its checkpoints) and
    prints report.md (process 0, which wrote it)."""
    import jax  # pylint: disable=g-import-not-at-top
    from jepa_jax import probing, storage  # pylint: disable=g-import-not-at-top
    result = probing.run_report(config, workdir)
    if jax.process_index() == 0:
        print(storage.path(result["paths"]["report.md"]).read_text())


def _preflight() -> None:
    """train --dry_run --topology NAME: benchmarks.preflight's table and one JSON line."""
    from jepa_jax import topology  # pylint: disable=g-import-not-at-top
    if not _DRY_RUN.value:
        raise ValueError("--topology sizes a run for another machine: add --dry_run")
    import jax  # pylint: disable=g-import-not-at-top
    target = topology.get(_TOPOLOGY.value)
    # Before JAX starts: the host's CPU runs the pre-flight (no accelerator is probed), with CPU devices standing
    # for the chips where the step cannot be compiled for the real topology.
    jax.config.update("jax_platforms", os.environ.get("JAX_PLATFORMS") or "cpu")
    if not topology.compiles_for_tpu(target) and "xla_force_host_platform_device_count" not in os.environ.get(
            "XLA_FLAGS", ""):
        jax.config.update("jax_num_cpu_devices", target.chips)
    from jepa_jax.benchmarks import preflight  # pylint: disable=g-import-not-at-top
    result = preflight.preflight(_run_config(), target.name)
    print(preflight.table(result))
    print(json.dumps(result))


def _train() -> None:
    from jepa_jax.evals import report  # pylint: disable=g-import-not-at-top
    from jepa_jax.train import loop  # pylint: disable=g-import-not-at-top
    if _TOPOLOGY.value:
        _preflight()
        return
    config, workdir = _run_config(), _WORKDIR.value
    if _DRY_RUN.value:
        print(json.dumps(loop.dry_run(config)))
        return
    summary = loop.train(config, workdir)
    loop.save_summary(summary, workdir)
    print(json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in summary.items()}))
    if config.objective == "probe" and summary["preempted_at"] is None:
        from jepa_jax.evals import probe  # pylint: disable=g-import-not-at-top
        print(json.dumps(_probe_line(probe.probe_run_scores(workdir), workdir)))
        return
    if not report.wanted_after_training(config, summary):
        return  # no probes asked for, not the built-in world, or preempted (`train` again resumes)
    _print_report(config, workdir)


def _probe_line(scores: dict, workdir: str) -> dict:
    """The one JSON line a probe prints: the best member and the references (not every member)."""
    keys = ("task", "metric", "best", "tasks", "ridge_quad", "chance", "num_test", "bad_files")
    return {**{k: scores[k] for k in keys}, "report": os.path.join(workdir, "probe.md")}


def _eval_probe() -> None:
    from jepa_jax import config as config_lib, parallel, probing  # pylint: disable=g-import-not-at-top
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _MULTIHOST.value)
    base = config_lib.from_dict(_CONFIG.value.to_dict()) if _CONFIG.value is not None else None
    if _PROBE_FROM.value:
        if not _VAL.value:
            _error("--probe_from scores a released probe on a labelled manifest: give it with --val")
        scores = probing.score_official_probe(_MODEL.value, _PROBE_FROM.value, _VAL.value, _WORKDIR.value, base)
    else:
        scores = probing.evaluate_probe(_MODEL.value, _DATA.value, _WORKDIR.value, val=_VAL.value or "", base=base)
    print(json.dumps(scores if "preempted_at" in scores else _probe_line(scores, _WORKDIR.value)))


def _eval_physics() -> None:
    from jepa_jax.evals import physics_report  # pylint: disable=g-import-not-at-top
    out = _OUT.value or os.path.join(_MODEL.value, "physics")
    summary = physics_report.evaluate(_MODEL.value, out, pairs=_PAIRS.value or "", step=_STEP.value,
                                      baseline=_BASELINE.value or "", num_pairs=_NUM_PAIRS.value, seed=_SEED.value,
                                      context=_CONTEXT.value, reduce=_REDUCE.value, batch_size=_BATCH_SIZE.value,
                                      random_inits=_RANDOM_INITS.value)
    print(json.dumps(summary))


def _ablate() -> None:
    from jepa_jax import ablate, config as config_lib, parallel  # pylint: disable=g-import-not-at-top
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _MULTIHOST.value)
    ablate.jepa_vs_pixels(config_lib.from_dict(_CONFIG.value.to_dict()), _WORKDIR.value, tasks=tuple(_TASKS.value),
                          probe_steps=_PROBE_STEPS.value)
    with open(os.path.join(_WORKDIR.value, "results.md"), encoding="utf-8") as f:
        print(f.read())


def _report() -> None:
    config = _run_config()
    if config.data.source != "balls":
        raise ValueError(f"jepa-jax report probes built-in-world runs; config.data.source="
                         f"{config.data.source!r} has no ground-truth states to probe")
    _print_report(config, _WORKDIR.value)


def _sweep(sweep_file: str) -> None:
    from jepa_jax import sweep  # pylint: disable=g-import-not-at-top
    rows = sweep.run_sweep(sweep_file, _WORKDIR.value, print_commands=_PRINT_COMMANDS.value)
    if rows:
        with open(f"{_WORKDIR.value}/results.md", encoding="utf-8") as f:
            print(f.read())


def _sampling() -> dict:
    """Clip sampling of the data verbs: every --frame_step-th frame, else --fps."""
    return dict(frame_step=_FRAME_STEP.value or None, target_fps=None if _FRAME_STEP.value else _FPS.value)


def _inspect(manifest: str) -> None:
    from jepa_jax.data import inspect  # pylint: disable=g-import-not-at-top
    print(json.dumps(inspect.inspect_manifest(manifest, _OUT.value, frames_per_clip=_FRAMES.value,
                                              crop_size=_CROP.value, **_sampling()), indent=2))


def _pack(manifest: str) -> None:
    from jepa_jax.data import packed  # pylint: disable=g-import-not-at-top
    summary = packed.pack_manifest(manifest, _OUT.value, frames_per_clip=_FRAMES.value, short_side=_SHORT_SIDE.value,
                                   num_shards=_SHARDS.value, clips_per_video=_CLIPS_PER_VIDEO.value, **_sampling())
    summary["skipped"] = summary["skipped"][:10]
    print(json.dumps(summary, indent=2))


def _demo() -> None:
    from jepa_jax.data import demo  # pylint: disable=g-import-not-at-top
    print(json.dumps(demo.write_motion_videos(_OUT.value, seed=_SEED.value)))


def _collect() -> None:
    from jepa_jax.data import trajectories  # pylint: disable=g-import-not-at-top
    print(json.dumps(trajectories.collect(_ENV.value, _EPISODES.value, _OUT.value,
                                          steps_per_episode=_STEPS_PER_EPISODE.value, seed=_SEED.value,
                                          image_size=_IMAGE_SIZE.value, policy_mix=_POLICY_MIX.value,
                                          workers=_WORKERS.value)))


def _export() -> None:
    from jepa_jax import export  # pylint: disable=g-import-not-at-top
    print(json.dumps(export.export(_RUN.value, _OUT.value, _FORMAT.value, step=_STEP.value, groups=_GROUPS.value,
                                   encoder=_ENCODER.value)))


def _import() -> None:
    from jepa_jax import export  # pylint: disable=g-import-not-at-top
    print(json.dumps(export.import_weights(_FROM.value, _SRC.value, _OUT.value, arch=_ARCH.value,
                                           num_heads=_NUM_HEADS.value, predictor_heads=_PREDICTOR_HEADS.value)))


def _extract() -> None:
    from jepa_jax import pretrained  # pylint: disable=g-import-not-at-top
    print(json.dumps(pretrained.extract(_MODEL.value, _DATA.value, _OUT.value, pool=_POOL.value,
                                        batch_size=_BATCH_SIZE.value, step=_STEP.value, encoder=_ENCODER.value)))


def _plan() -> None:
    from jepa_jax import envs, planning  # pylint: disable=g-import-not-at-top
    from jepa_jax.evals import plan  # pylint: disable=g-import-not-at-top
    envs.check_name(_ENV.value)  # before the model loads
    settings = planning.planner_settings(_PLANNER.value)
    model = plan.load_world_model(_MODEL.value, step=_STEP.value, data=_DATA.value)
    out = _OUT.value or os.path.join(_MODEL.value, f"plan_{_ENV.value}_seed{_SEED.value}")
    results = plan.evaluate(model, _ENV.value, episodes=_EPISODES.value or 50, seed=_SEED.value, out_dir=out,
                            settings=settings, replans=_REPLANS.value,
                            execute=_EXECUTE.value, distance=_DISTANCE.value, proprio_weight=_PROPRIO_WEIGHT.value,
                            baselines=_BASELINES.value, oracle_episodes=_ORACLE_EPISODES.value)
    print(json.dumps({**results["model"], **{k: results[k] for k in ("random", "oracle") if k in results},
                      "report": os.path.join(out, "plan_report.md")}))


def _bench() -> None:
    from jepa_jax.benchmarks import bench  # pylint: disable=g-import-not-at-top
    bench.check(_WHAT.value, _COMPARE.value, _OUT.value)  # before the config is built
    for result in bench.run(_CONFIG.value, _WHAT.value, compare=_COMPARE.value, repeats=_REPEATS.value,
                            manifest=_DATA.value, model=_MODEL.value, out=_OUT.value):
        print(json.dumps(result), flush=True)


class Verb(NamedTuple):
    """A `jepa-jax` verb: what `--help` prints for it, and `run(*args)` with its positional arguments."""
    name: str
    summary: str
    args: tuple[str, ...]  # positional arguments
    required: tuple[str, ...]  # required flags as usage shows them; "--a X|--b Y": one of them
    flags: tuple[str, ...]  # every flag it reads
    example: str
    run: Callable[..., None]
    notes: dict[str, str] = {}  # flag help for this verb, where it differs from the flag's own


_MULTI_PROCESS = ("multihost", "coordinator_address", "num_processes", "process_id")
_SAMPLING = ("frames", "fps", "frame_step")
VERBS = (
    Verb("train", "Train a model on a config and probe it (report.md); --rerun repeats a run, --dry_run sizes it.",
         (), ("--config FILE|--rerun DIR", "--workdir DIR"), ("config", "workdir", "rerun", "dry_run", "topology",
                                                             *_MULTI_PROCESS),
         "jepa-jax train --config experiments/configs/tiny_world.py --workdir runs/tiny_world", _train),
    Verb("report", "Probe a built-in-world run again (attentive + ridge probes): report.md and PNG plots.", (),
         ("--config FILE", "--workdir DIR"), ("config", "workdir", *_MULTI_PROCESS),
         "jepa-jax report --config experiments/configs/tiny_world.py --workdir runs/tiny_world", _report),
    Verb("sweep", "Train every unfinished run of a sweep (or print their commands); results.csv/.md/.png.",
         ("SWEEP_FILE",), ("--workdir DIR",), ("workdir", "print_commands"),
         "jepa-jax sweep experiments/sweeps/ema_lr.py --workdir runs/sweeps/ema_lr --print_commands", _sweep,
         {"workdir": "Folder of the sweep: one run directory per run, results.csv/.md/.png."}),
    Verb("data inspect", "Summarise the videos of a manifest (CSV, JSONL, folder or glob); contact_sheet.png.",
         ("MANIFEST",), ("--out DIR",), ("out", *_SAMPLING, "crop"),
         "jepa-jax data inspect train.csv --out runs/inspect_train", _inspect),
    Verb("data pack", "Decode the clips of a manifest once into ArrayRecord shards (config.data.source=packed).",
         ("MANIFEST",), ("--out DIR",), ("out", *_SAMPLING, "short_side", "shards", "clips_per_video"),
         "jepa-jax data pack train.csv --out packed/train --shards 8", _pack),
    Verb("data collect", "Collect environment trajectories (frames, actions, proprio, states) for planning models.",
         (), ("--env NAME", "--episodes N", "--out DIR"),
         ("env", "episodes", "out", "steps_per_episode", "seed", "image_size", "policy_mix", "workers"),
         "jepa-jax data collect --env pusht --episodes 1000 --out trajectories/pusht --workers 2", _collect,
         {"out": "Output folder: episode_NNNNNN.npz files and meta.json; rerun the same command to resume."}),
    Verb("data demo", "Write a labelled demo video set: 4 motion classes of one ball (mp4), train.csv and val.csv.",
         (), ("--out DIR",), ("out", "seed"),
         "jepa-jax data demo --out data/motions", _demo,
         {"seed": "Videos are drawn from this seed only.",
          "out": "Output folder: 64 train and 32 val mp4 videos (48 frames, 80x64, 8 fps), train.csv, val.csv."}),
    Verb("export", "Write a run's weights: native safetensors, the official V-JEPA layout or Hugging Face.", (),
         ("--run DIR", "--out DIR"), ("run", "step", "out", "format", "groups", "encoder"),
         "jepa-jax export --run runs/tiny_world --out exports/tiny_world_fair --format fair", _export,
         {"encoder": "--format hf: which encoder to write: auto (the EMA target encoder when there is one), target or "
                    "online."}),
    Verb("import", "Official (fair) or Hugging Face (hf) V-JEPA weights as a native folder.", (),
         ("--from {fair,hf}", "--src PATH", "--out DIR"),
         ("from", "src", "out", "arch", "num_heads", "predictor_heads"),
         "jepa-jax import --from fair --src exports/tiny_world_fair/checkpoint.safetensors --out imported/tiny_world",
         _import),
    Verb("extract", "Features of every clip of a manifest from a model: .npy or .safetensors.", (),
         ("--model DIR", "--data MANIFEST", "--out FILE"),
         ("model", "data", "out", "pool", "batch_size", "step", "encoder"),
         "jepa-jax extract --model runs/tiny_world --data train.csv --out features.npy", _extract,
         {"out": "Output file: .npy or .safetensors."}),
    Verb("plan", "Goal reaching with an action-conditioned model (MPC, DINO-WM protocol) vs random and oracle.",
         (), ("--model RUN", "--env NAME"),
         ("model", "env", "episodes", "seed", "out", "step", "data", "planner", "replans", "execute", "distance",
          "proprio_weight", "baselines", "oracle_episodes"),
         "jepa-jax plan --model runs/pusht_ac --env pusht --episodes 50 --seed 0", _plan,
         {"episodes": "Evaluation episodes (default 50); episode i's start and goal come from (seed, i).",
          "seed": "Evaluation seed: starts, goals and planner keys (held out from `data collect` seeds).",
          "out": "Folder for plan_report.md, plan.json, plan_strip.png (default: RUN/plan_ENV_seedS).",
          "data": "The trajectory folder the model trained on (its meta.json normalises actions and proprio; "
                  "default: the run's config.data.trajectories).",
          "model": "A `jepa-jax train` run directory of an action-conditioned model (objective ac)."}),
    Verb("eval probe", "Attentive probes on a frozen model (the V-JEPA protocol, a grid of heads): best top-1/5 or R^2.",
         (), ("--model DIR", "--data MANIFEST|--probe_from FILE", "--workdir DIR"),
         ("model", "data", "val", "probe_from", "workdir", "config", *_MULTI_PROCESS),
         "jepa-jax eval probe --model runs/tiny_world --data builtin:velocity --workdir runs/probe_velocity",
         _eval_probe,
         {"model": "The frozen encoder: a `jepa-jax train` run directory (optionally :STEP; its EMA target encoder "
                   "when it has one) or an export/import folder.",
          "data": "builtin:TASK (position, velocity, ahead, motion, count, collision: the built-in world) or a "
                  "labelled training manifest ('PATH LABEL' lines, CSV/JSONL).",
          "workdir": "The probe run's directory: checkpoints (rerun to resume), probe.json, probe.md, training.png.",
          "config": "Probe settings to start from (default: the schema's probe protocol with the model's data "
                    "settings), e.g. experiments/configs/tiny_world.py; then --config.attentive.X=..., "
                    "--config.train.steps=..."}),
    Verb("eval physics", "Intuitive physics: surprise at impossible events (possible vs impossible twin clips), "
         "per category, vs random init and the features without the predictor.", (), ("--model RUN",),
         ("model", "out", "pairs", "baseline", "num_pairs", "step", "seed", "context", "reduce", "batch_size",
          "random_inits"),
         "jepa-jax eval physics --model runs/tiny_world", _eval_physics,
         {"model": "A `jepa-jax train` run directory (ema, sigreg or pixels) or an export folder with a predictor.",
          "out": "Folder for physics.json, physics_report.md, physics_surprise.png (default: MODEL/physics).",
          "seed": "Seed of the built-in pairs, the bootstrap and the random-init weights.",
          "batch_size": "Windows per forward pass."}),
    Verb("ablate jepa-vs-pixels", "JEPA (ema, sigreg) vs pixel reconstruction vs random init under one budget: "
         "probe scores, FLOPs, wall time.", (), ("--config FILE", "--workdir DIR"),
         ("config", "workdir", "tasks", "probe_steps", *_MULTI_PROCESS),
         "jepa-jax ablate jepa-vs-pixels --config experiments/configs/tiny_world.py --workdir runs/ablate", _ablate,
         {"config": "The pretraining config every arm shares (only config.objective differs); its attentive "
                    "section is the probe protocol.",
          "workdir": "One run directory per arm (ema, sigreg, pixels), probes/, results.csv/.md/.png; rerun to "
                     "resume."}),
    Verb("bench", "Speed of a config: train step (vs PyTorch), compile time (scanned vs unrolled), attention, "
         "data, planning, checkpoint stall, a profile of one step; JSON.",
         (), ("--config FILE",), ("config", "what", "compare", "repeats", "data", "model", "out"),
         "jepa-jax bench --config experiments/configs/bench_vjepa2.py:tiny224 --what step --compare torch", _bench,
         {"data": "--what data: a video manifest to decode (default: generated test videos).",
          "model": "--what plan: an `ac` run directory (default: the config's architecture, random weights).",
          "out": "--what profile: the folder for the trace (TensorBoard, ui.perfetto.dev; default: a new temporary "
                 "folder)."}),
)
GROUPS = {"": "JEPA world models in JAX: train, probe and share them.",
          "eval": "Evaluate a frozen model: attentive probes, intuitive physics.",
          "ablate": "Ablations that train and compare several models.",
          "data": "Look at the videos of a manifest, decode them once for training, or collect environment "
                  "trajectories."}


def _error(message) -> NoReturn:
    sys.exit(f"jepa-jax: error: {message}")


def _find_verb(args: list[str]) -> tuple[Verb | None, list[str]]:
    """The verb that `args` starts with (None if none) and the arguments after it."""
    for verb in VERBS:
        words = verb.name.split()
        if args[:len(words)] == words:
            return verb, args[len(words):]
    return None, args


def _usage(verb: Verb) -> str:
    return " ".join(("jepa-jax", verb.name, *verb.args, *verb.required, "[flags]"))


def _flag_names(required: str) -> set[str]:
    """{"config", "rerun"} for "--config FILE|--rerun DIR"."""
    return {alt.split()[0].removeprefix("--") for alt in required.split("|")}


def _check(verb: Verb, args: list[str]) -> None:
    """Exits with a one-line error on another verb's flag, a missing flag or wrong positional arguments. (A bucket
    --out is refused by the function behind each verb, storage.check_local.)"""
    given = {name for v in VERBS for name in v.flags if flags.FLAGS[name].present}
    foreign = sorted(given - set(verb.flags))
    if foreign:
        _error(f"{' '.join(f'--{name}' for name in foreign)}: not a flag of `jepa-jax {verb.name}`, whose flags are "
               f"{' '.join(f'--{name}' for name in verb.flags)}")
    missing = [*verb.args[len(args):], *(r for r in verb.required if not given & _flag_names(r))]
    if missing or len(args) > len(verb.args):
        problem = f"missing {', '.join(missing)}" if missing else f"unexpected {' '.join(args[len(verb.args):])}"
        _error(f"usage: {_usage(verb)} ({problem}); see jepa-jax {verb.name} --help")


def _format(default) -> str:
    return ",".join(default) if isinstance(default, list) else str(default).lower()


def _verb_help(verb: Verb) -> str:
    """A verb's summary, usage, flags (help, default) and example."""
    required = set().union(*(_flag_names(r) for r in verb.required if "|" not in r))
    width = max(len(name) for name in verb.flags) + 6
    lines = [verb.summary, "", f"usage: {_usage(verb)}", "", "flags:"]
    for name in verb.flags:
        flag = flags.FLAGS[name]
        text = verb.notes.get(name, flag.help) + (" (required)" if name in required else "")
        text += "" if flag.default is None else f" (default: {_format(flag.default)})"
        lines.append(textwrap.fill(text, 110, initial_indent=f"  --{name:<{width - 4}}", subsequent_indent=" " * width))
    return "\n".join(lines + ["", "Example:", f"  {verb.example}"])


def _overview(group: str) -> str:
    """The verbs (of `group`, e.g. "data"), one line each."""
    verbs = [(v.name.removeprefix(group).strip(), v) for v in VERBS if not group or v.name.split()[0] == group]
    width = max(len(name) for name, _ in verbs) + 2
    command = f"jepa-jax {group}".strip()
    lines = [GROUPS[group], "", f"usage: {command} VERB [flags]", "", "verbs:"]
    lines += [f"  {name:<{width}}{verb.summary}" for name, verb in verbs]
    return "\n".join(lines + ["", f"`{command} VERB --help` shows a verb's flags, their defaults and an example.",
                               "`jepa-jax --helpfull` lists every flag, absl's too."])


def help_text(args: list[str]) -> str:
    """What `jepa-jax ARGS... --help` prints: a verb's help, a group's verbs (`data`) or all verbs."""
    verb, _ = _find_verb(args)
    return _verb_help(verb) if verb else _overview(args[0] if args and args[0] in GROUPS else "")


def _main(argv: list[str]) -> None:
    verb, args = _find_verb(argv[1:])
    if verb is None:
        _error(f"usage: jepa-jax VERB [flags] (got {' '.join(argv[1:]) or 'no verb'}); verbs: "
               f"{', '.join(v.name for v in VERBS)}; see jepa-jax --help")
    _check(verb, args)
    if not flags.FLAGS["verbosity"].present:  # Orbax/grain INFO lines would bury the progress bar
        logging.set_verbosity(logging.WARNING)
    verb.run(*args)  # imports JAX only now, so that help and usage errors stay fast


def _config_file_arg(argv: list[str]) -> str | None:
    """The value of --config (path[:arg]) in argv, if given."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _unknown_key_message(argv: list[str]) -> str | None:
    """'config.a.b does not exist: valid keys under config.a are [...]' for the first bad --config.* override."""
    from jepa_jax import config as config_lib  # pylint: disable=g-import-not-at-top
    spec = _config_file_arg(argv)
    if spec is None:
        return None
    config = config_lib.load_spec(spec)
    for override in argv[1:]:
        if override.startswith("--config."):
            message = config_lib.missing_key(config, override[len("--config."):].split("=")[0])
            if message:
                return message
    return None


def _parse_flags(argv: list[str]) -> list[str]:
    """Parse flags; a bad flag or config override (e.g. a key that does not exist) is a one-line error."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as err:
        reason = " ".join(str(err).replace("\\n", " ").replace("\\'", "").replace("'", "").split())
        if isinstance(err, (AttributeError, KeyError)):
            reason = _unknown_key_message(argv) or f"unknown config key: {reason}"
        _error(reason)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (argv: sys.argv by default)."""
    argv = sys.argv if argv is None else argv
    args = argv[1:]
    if not args or args[0] == "help" or {"-h", "--help"} & set(args):  # before absl's own --help
        try:
            print(help_text(args[1:] if args[:1] == ["help"] else args))
        except BrokenPipeError:  # `jepa-jax --help | head`: drop the rest quietly (as the Python docs advise)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    try:
        app.run(_main, argv=argv, flags_parser=_parse_flags)
    except (ValueError, FileNotFoundError, FloatingPointError, ImportError) as err:  # bad input, diverged, no extra
        _error(err)


if __name__ == "__main__":
    main()
