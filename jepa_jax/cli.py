"""The `jepa-jax` command. Each verb is a thin wrapper over a library function users can call too.

  jepa-jax train  --config experiments/configs/tiny_world.py [--config.x=y ...] --workdir DIR
                  [--multihost | --coordinator_address HOST:PORT --num_processes N --process_id I]
      -> jepa_jax.train.loop.train(config, workdir), then jepa_jax.evals.report.world_report(...)
  jepa-jax train  --rerun RUN_DIR --workdir DIR
      -> train(jepa_jax.config.load_run(RUN_DIR), DIR): the same run again from its config.json
  jepa-jax train  --config FILE --workdir DIR --dry_run
      -> jepa_jax.train.loop.dry_run(config): abstract init + lowering on the config's mesh, nothing allocated
  jepa-jax report --config experiments/configs/tiny_world.py --workdir DIR
      -> re-probe the checkpoints of an existing run
  jepa-jax sweep experiments/sweeps/NAME.py --workdir DIR [--print_commands]
      -> jepa_jax.sweep.run_sweep(...): runs (or prints) every unfinished run, writes results.csv/.md/.png
  jepa-jax data inspect MANIFEST --out DIR [--frames 16 --fps 4 --crop 224]
      -> jepa_jax.data.inspect.inspect_manifest(...): summary + contact_sheet.png
  jepa-jax data pack MANIFEST --out DIR [--frames 16 --fps 4 --short_side 256 --shards 8]
      -> jepa_jax.data.packed.pack_manifest(...): ArrayRecord shards of decoded clips
  jepa-jax export --run DIR [--step N] --out OUT --format {native,fair,hf} [--groups ...] [--encoder auto]
      -> jepa_jax.export.export(...): safetensors + config.json + model card, official layout, or Hugging Face
  jepa-jax import --from {fair,hf} --src PATH --out DIR [--arch vjepa2_vitl16]
      -> jepa_jax.export.import_weights(...): official or Hugging Face weights as a native folder
  jepa-jax extract --model DIR --data MANIFEST --out FILE.npy|.safetensors [--pool mean|tokens]
      -> jepa_jax.pretrained.extract(...): features of every clip, with a progress bar
"""

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

VERBS = ("train", "report", "data", "sweep")
EXCHANGE_VERBS = ("export", "import", "extract")
DATA_VERBS = ("inspect", "pack")

_CONFIG = config_flags.DEFINE_config_file("config", None, "ml-collections config file (path[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: config, metrics, checkpoints, report.")
_OUT = flags.DEFINE_string("out", None, "data inspect/pack, export, import: output folder; extract: output file.")
_FRAMES = flags.DEFINE_integer("frames", 16, "data inspect/pack: frames per clip.")
_FPS = flags.DEFINE_float("fps", 4.0, "data inspect/pack: target frame rate (V-JEPA 2); 0 to use --frame_step.")
_FRAME_STEP = flags.DEFINE_integer("frame_step", 0, "data inspect/pack: source frames between sampled frames.")
_CROP = flags.DEFINE_integer("crop", 224, "data inspect: crop size of the contact-sheet clips.")
_SHORT_SIDE = flags.DEFINE_integer("short_side", 256, "data pack: resize clips so the short side is this.")
_SHARDS = flags.DEFINE_integer("shards", 1, "data pack: number of ArrayRecord shards.")
_CLIPS_PER_VIDEO = flags.DEFINE_integer("clips_per_video", 1, "data pack: clips per video (>1: random windows).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "Multi-process: host:port of process 0 (default: "
                                   "detected on TPU pods and SLURM, else one process).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-process: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-process: this process's index.")
_RERUN = flags.DEFINE_string("rerun", None, "train: re-run the run directory DIR with its own config.json "
                              "(same config, seed and mesh give the same metrics); use a new --workdir.")
_PRINT_COMMANDS = flags.DEFINE_bool("print_commands", False, "sweep: print one `jepa-jax train` command per run "
                                    "(for a cluster) instead of running them here.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "train: only build the sharded state abstractly and lower the step "
                             "on the config's mesh (no allocation); print mesh, parameter counts, bytes per device.")
_RUN = flags.DEFINE_string("run", None, "export: a run directory, or an export/import folder.")
_STEP = flags.DEFINE_integer("step", None, "export, extract: checkpoint step of a run (default: the newest).")
_FORMAT = flags.DEFINE_string("format", "native", "export: native (safetensors + config.json + model card), fair "
                              "(official V-JEPA layout) or hf (transformers VJEPA2Model).")
_GROUPS = flags.DEFINE_list("groups", ["encoder", "target_encoder", "predictor"], "export: weight groups to write.")
_ENCODER = flags.DEFINE_string("encoder", "auto", "export hf, extract: which encoder: auto (the EMA target encoder "
                               "when there is one), target or online.")
_FROM = flags.DEFINE_string("from", None, "import: fair (official .pt / .pth.tar / safetensors) or hf (folder).")
_SRC = flags.DEFINE_string("src", None, "import: the checkpoint file or Hugging Face folder.")
_ARCH = flags.DEFINE_string("arch", None, "import fair: architecture when it cannot be detected, e.g. vjepa2_vitl16.")
_MODEL = flags.DEFINE_string("model", None, "extract: an export/import folder or a run directory.")
_DATA = flags.DEFINE_string("data", None, "extract: a manifest (CSV, JSONL, folder, glob or imagefolder:ROOT).")
_POOL = flags.DEFINE_string("pool", "mean", "extract: mean ([M, D]) or tokens ([M, N, D]).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "extract: clips per forward pass.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Multi-process: let jax.distributed find the other hosts "
                               "(TPU VM slices, SLURM); tpu_scripts/launch.sh sets it.")


def _data(argv) -> None:
    """`jepa-jax data {inspect,pack} MANIFEST --out DIR`."""
    if len(argv) != 4 or argv[2] not in DATA_VERBS or not _OUT.value:
        raise app.UsageError(f"usage: jepa-jax data {{{','.join(DATA_VERBS)}}} MANIFEST --out DIR")
    sampling = dict(frame_step=_FRAME_STEP.value or None, target_fps=None if _FRAME_STEP.value else _FPS.value)
    if argv[2] == "inspect":
        from jepa_jax.data import inspect  # pylint: disable=g-import-not-at-top
        summary = inspect.inspect_manifest(argv[3], _OUT.value, frames_per_clip=_FRAMES.value,
                                           crop_size=_CROP.value, **sampling)
    else:
        from jepa_jax.data import packed  # pylint: disable=g-import-not-at-top
        summary = packed.pack_manifest(argv[3], _OUT.value, frames_per_clip=_FRAMES.value,
                                       short_side=_SHORT_SIDE.value, num_shards=_SHARDS.value,
                                       clips_per_video=_CLIPS_PER_VIDEO.value, **sampling)
        summary["skipped"] = summary["skipped"][:10]
    print(json.dumps(summary, indent=2))


def _sweep(argv) -> None:
    """`jepa-jax sweep SWEEP_FILE --workdir DIR [--print_commands]`."""
    if len(argv) != 3 or not _WORKDIR.value:
        raise app.UsageError("usage: jepa-jax sweep experiments/sweeps/NAME.py --workdir DIR [--print_commands]")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    from jepa_jax import sweep  # pylint: disable=g-import-not-at-top
    rows = sweep.run_sweep(argv[2], _WORKDIR.value, print_commands=_PRINT_COMMANDS.value)
    if rows:
        with open(f"{_WORKDIR.value}/results.md", encoding="utf-8") as f:
            print(f.read())


def _exchange(argv) -> None:
    """`jepa-jax export|import|extract ...`: prints a JSON summary."""
    required = {"export": (("run", _RUN), ("out", _OUT)), "import": (("from", _FROM), ("src", _SRC), ("out", _OUT)),
                "extract": (("model", _MODEL), ("data", _DATA), ("out", _OUT))}[argv[1]]
    missing = [f"--{name}" for name, flag in required if not flag.value]
    if len(argv) != 2 or missing:
        raise app.UsageError(f"jepa-jax {argv[1]}: {' '.join(missing) or 'no positional arguments'} "
                             f"{'required' if missing else 'expected'}; see jepa-jax --help")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    from jepa_jax import export, pretrained  # pylint: disable=g-import-not-at-top
    if argv[1] == "export":
        summary = export.export(_RUN.value, _OUT.value, _FORMAT.value, step=_STEP.value, groups=_GROUPS.value,
                                encoder=_ENCODER.value)
    elif argv[1] == "import":
        summary = export.import_weights(_FROM.value, _SRC.value, _OUT.value, arch=_ARCH.value)
    else:
        summary = pretrained.extract(_MODEL.value, _DATA.value, _OUT.value, pool=_POOL.value,
                                     batch_size=_BATCH_SIZE.value, step=_STEP.value, encoder=_ENCODER.value)
    print(json.dumps(summary))


def _main(argv) -> None:
    if len(argv) >= 2 and argv[1] in EXCHANGE_VERBS:
        _exchange(argv)
        return
    if len(argv) >= 2 and argv[1] == "data":
        _data(argv)
        return
    if len(argv) >= 2 and argv[1] == "sweep":
        _sweep(argv)
        return
    if len(argv) != 2 or argv[1] not in VERBS:
        raise app.UsageError(f"usage: jepa-jax {{{','.join(VERBS + EXCHANGE_VERBS)}}} ... "
                             f"(got {' '.join(argv[1:]) or 'no verb'})")
    config_path = config_flags.get_config_filename(flags.FLAGS["config"]) if flags.FLAGS["config"].present else None
    if (config_path is None and not _RERUN.value) or _WORKDIR.value is None:
        raise app.UsageError("--config (or train --rerun DIR) and --workdir are required")
    if config_path is not None and not os.path.isfile(config_path.split(":")[0]):
        raise FileNotFoundError(f"--config {config_path}: no such file; configs live in experiments/configs/")
    if not flags.FLAGS["verbosity"].present:  # Orbax/grain INFO lines would bury the progress bar
        logging.set_verbosity(logging.WARNING)
    # Imported after flag parsing so `--help` and usage errors stay fast.
    from jepa_jax import parallel  # pylint: disable=g-import-not-at-top
    from jepa_jax.evals import report  # pylint: disable=g-import-not-at-top
    from jepa_jax.train import loop  # pylint: disable=g-import-not-at-top
    from jepa_jax import config as config_lib  # pylint: disable=g-import-not-at-top
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _MULTIHOST.value)
    config = config_lib.load_run(_RERUN.value) if _RERUN.value else _CONFIG.value
    workdir = _WORKDIR.value
    if argv[1] == "train" and _DRY_RUN.value:
        print(json.dumps(loop.dry_run(config)))
        return
    if argv[1] == "train":
        summary = loop.train(config, workdir)
        loop.save_summary(summary, workdir)
        print(json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in summary.items()}))
        if not report.wanted_after_training(config, summary):
            return  # no probes asked for, not the built-in world, or preempted (`train` again resumes)
    elif config.data.source != "balls":
        raise ValueError(f"jepa-jax report probes built-in-world runs; config.data.source="
                         f"{config.data.source!r} has no ground-truth states to probe")
    result = report.world_report(config, workdir)
    with open(result["paths"]["report.md"], encoding="utf-8") as f:
        print(f.read())


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
        sys.exit(f"jepa-jax: error: {reason}")


def main() -> None:
    """Console-script entry point."""
    try:
        app.run(_main, flags_parser=_parse_flags)
    except (ValueError, FileNotFoundError, FloatingPointError) as err:  # bad config/input, diverged: one line
        sys.exit(f"jepa-jax: error: {err}")


if __name__ == "__main__":
    main()
