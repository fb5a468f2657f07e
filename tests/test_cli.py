"""The `jepa-jax` command: help of every verb (in process), the smoke run's artefacts and one-line errors."""

import json
import os
import shlex
import subprocess
import sys

from absl import flags
import pytest

from jepa_jax import cli
from tests.conftest import REPO, TINY_WORLD, run_cli

# Written out, not read from cli.VERBS: a verb whose help loses a flag fails the help tests.
VERB_FLAGS = {
    "train": "--config --workdir --rerun --dry_run --topology --multihost --coordinator_address --num_processes --process_id",
    "report": "--config --workdir --multihost --coordinator_address --num_processes --process_id",
    "sweep": "--workdir --print_commands",
    "data inspect": "--out --frames --fps --frame_step --crop",
    "data pack": "--out --frames --fps --frame_step --short_side --shards --clips_per_video",
    "data collect": "--env --episodes --out --steps_per_episode --seed --image_size --policy_mix --workers",
    "data demo": "--out --seed",
    "export": "--run --step --out --format --groups --encoder",
    "import": "--from --src --out --arch --num_heads --predictor_heads",
    "extract": "--model --data --out --pool --batch_size --step --encoder",
    "plan": "--model --env --episodes --seed --out --step --data --planner --replans --execute --distance "
            "--proprio_weight --baselines --oracle_episodes",
    "eval probe": "--model --data --val --probe_from --workdir --config --multihost --coordinator_address --num_processes "
                  "--process_id",
    "eval physics": "--model --out --pairs --baseline --num_pairs --step --seed --context --reduce --batch_size "
                    "--random_inits",
    "ablate jepa-vs-pixels": "--config --workdir --tasks --probe_steps --multihost --coordinator_address "
                             "--num_processes --process_id",
    "bench": "--config --what --compare --repeats --data --model --out",
}


def cli_help(capsys, *args) -> str:
    """What `jepa-jax ARGS...` prints, run in this process."""
    cli.main(["jepa-jax", *args])
    return capsys.readouterr().out


def flag_entries(verb_help: str) -> dict[str, str]:
    """{"--name": "help (default: ...)"} of the flags section of a verb's help, in order."""
    entries = {}
    for line in verb_help.split("\nflags:\n")[1].split("\n\n")[0].splitlines():
        if line.startswith("  --"):
            name, entry = line.split(maxsplit=1)
            entries[name] = entry
        else:
            entries[name] += " " + line.strip()
    return entries


def listed_verbs(overview: str) -> list[str]:
    return [line[2:].split("  ")[0] for line in overview.split("\nverbs:\n")[1].split("\n\n")[0].splitlines()]


def test_every_flag_belongs_to_a_verb():
    assert [verb.name for verb in cli.VERBS] == list(VERB_FLAGS)
    defined = {f"--{v.name}" for v in vars(cli).values() if isinstance(v, flags.FlagHolder)}
    assert defined == set(" ".join(VERB_FLAGS.values()).split())


@pytest.mark.parametrize("verb", cli.VERBS, ids=lambda verb: verb.name)
def test_verb_help_has_its_summary_flags_with_defaults_and_an_example(capsys, verb):
    text = cli_help(capsys, *verb.name.split(), "--help")
    assert text.splitlines()[0] == verb.summary
    entries = flag_entries(text)
    assert list(entries) == VERB_FLAGS[verb.name].split()
    for name, entry in entries.items():
        flag = flags.FLAGS[name[2:]]
        assert entry.startswith(verb.notes.get(flag.name, flag.help)), name
        if flag.default is not None:
            default = ",".join(flag.default) if isinstance(flag.default, list) else str(flag.default).lower()
            assert entry.endswith(f"(default: {default})"), name
    assert f"\nExample:\n  {verb.example}\n" in text and verb.example.startswith(f"jepa-jax {verb.name} ")


def test_help_of_train_export_and_data_pack(capsys):
    train = flag_entries(cli_help(capsys, "train", "--help"))
    assert {"--config", "--workdir", "--dry_run", "--rerun", "--multihost"} <= set(train)
    assert "--config.FIELD=VALUE" in train["--config"] and train["--workdir"].endswith("(required)")
    assert train["--dry_run"].endswith("(default: false)")
    assert flag_entries(cli_help(capsys, "export", "-h"))["--format"].endswith("(default: native)")
    assert cli_help(capsys, "help", "export") == cli_help(capsys, "export", "--help")
    pack = cli_help(capsys, "data", "pack", "--help")
    assert "usage: jepa-jax data pack MANIFEST --out DIR [flags]" in pack
    assert flag_entries(pack)["--frames"] == "Frames per clip. (default: 16)"


def test_overview_lists_every_verb(capsys):
    overview = cli_help(capsys, "--help")
    assert listed_verbs(overview) == ["train", "report", "sweep", "data inspect", "data pack", "data collect",
                                      "data demo", "export", "import", "extract", "plan", "eval probe",
                                      "eval physics", "ablate jepa-vs-pixels", "bench"]
    for verb in cli.VERBS:
        assert verb.summary in overview
    assert "`jepa-jax VERB --help` shows" in overview
    assert cli_help(capsys) == cli_help(capsys, "help") == overview
    data = cli_help(capsys, "data", "--help")
    assert listed_verbs(data) == ["inspect", "pack", "collect", "demo"] and "`jepa-jax data VERB --help` shows" in data


def test_help_command_is_fast_and_imports_no_jax(capsys):
    result = run_cli("--help", PYTHONPROFILEIMPORTTIME="1")  # stderr: one line per imported module
    assert result.returncode == 0 and result.stdout == cli_help(capsys, "--help")
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "absl.app" in imported and not [m for m in imported if m.split(".")[0] == "jax"]


@pytest.fixture
def parse_flags(monkeypatch):
    """absl's FLAGS (examples name paths from the repo root); unparsed again afterwards."""
    monkeypatch.chdir(REPO)
    yield flags.FLAGS
    flags.FLAGS.unparse_flags()


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections loading a config file
@pytest.mark.parametrize("verb", cli.VERBS, ids=lambda verb: verb.name)
def test_examples_are_complete_command_lines(parse_flags, verb):
    argv = shlex.split(verb.example)
    found, args = cli._find_verb(parse_flags(argv)[1:])  # pylint: disable=protected-access
    assert found is verb
    cli._check(verb, args)  # pylint: disable=protected-access  # exits on a wrong or missing flag or argument
    assert all(os.path.isfile(arg.partition(":")[0]) for arg in argv if arg.startswith("experiments/"))  # path[:arg]


def test_wrong_or_missing_flag_is_a_one_line_error():
    result = run_cli("export", "--frames", "3", "--run", "r", "--out", "o")
    assert result.returncode != 0 and result.stderr.strip() == (
        "jepa-jax: error: --frames: not a flag of `jepa-jax export`, whose flags are --run --step --out --format "
        "--groups --encoder")
    result = run_cli("data", "pack", "--out", "o")
    assert result.returncode != 0 and result.stderr.strip() == (
        "jepa-jax: error: usage: jepa-jax data pack MANIFEST --out DIR [flags] (missing MANIFEST); "
        "see jepa-jax data pack --help")


@pytest.mark.parametrize("verb", ["eval physics --model m", "export --run r", "data demo"])
def test_a_bucket_out_is_a_one_line_error_before_anything_is_written(tmp_path, verb):
    result = subprocess.run([sys.executable, "-m", "jepa_jax.cli", *verb.split(), "--out", "gs://b/out"],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode != 0 and result.stderr.strip() == (
        "jepa-jax: error: --out gs://b/out: this command writes local folders only; write to a local (or mounted) "
        "path, then copy the folder to the bucket (gcloud storage cp -r)")
    assert not os.listdir(tmp_path)


def jepa_jax(*args, workdir, **env):
    return run_cli(*args, "--workdir", str(workdir), XLA_FLAGS="--xla_force_host_platform_device_count=2", **env)


@pytest.mark.slow
def test_train_smoke_writes_config_metrics_tensorboard_checkpoints_and_report(tmp_path):
    cache = tmp_path / "xla_cache"
    result = jepa_jax("train", "--config", f"{TINY_WORLD}:smoke", f"--config.train.compilation_cache={cache}",
                      workdir=tmp_path, JAX_COMPILATION_CACHE_DIR="")  # the environment's cache would win
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["size"] == "nano" and config["objective"] == "sigreg"
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all({"loss", "target_spread", "sigreg", "lr"} <= set(r) for r in records)
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tensorboard"))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["0", "2", "4"]
    report = (tmp_path / "report.md").read_text()
    assert "| random init |" in report and "| trained, step 4 |" in report and "| raw pixels |" in report
    attentive = json.loads((tmp_path / "report.json").read_text())["attentive"]
    assert [row["name"] for row in attentive] == ["trained", "random init", "raw pixels"]
    for row, name in zip(attentive, ("trained", "random_init", "raw_pixels")):  # probe runs of the final encoder
        probe = json.loads((tmp_path / "probes" / name / "probe.json").read_text())
        assert probe["task"] == "motion" and probe["step"] == 2 and row["velocity"] == probe["tasks"]["velocity"]
        assert f"| {row['name']} | {row['position']['score']:.3f} | {row['position']['ridge_quad']:.3f} |" in report
    assert json.loads((tmp_path / "probes" / "trained" / "config.json").read_text())["attentive"][
        "encoder_from"] == str(tmp_path)
    for png in ("report.png", "report_attentive.png", "training.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["steps_per_s"] > 0 and summary["compile_s"] > 0
    assert summary["compilation_cache"] == str(cache) and os.listdir(cache)  # the compiled step was cached
    assert "Probe report" in result.stdout
    # `report` re-probes the saved checkpoints of the run without training.
    (tmp_path / "report.md").unlink()
    result = jepa_jax("report", "--config", f"{TINY_WORLD}:smoke", workdir=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| trained, step 4 |" in (tmp_path / "report.md").read_text()
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4  # nothing was trained again


@pytest.mark.parametrize("override,message", [
    ("--config.model.sise=1", "config.model.sise does not exist: valid keys under config.model are"),
    ("--config.model.size=colossal", "config.model.size='colossal' is not valid: choose one of"),
    ("--config.model.patch_size=7", "model.patch_size=7 must divide the frame size 64x64"),
    ("--config.data.world.num_frames=7", "model.tubelet_size=2 must divide the number of frames 7"),
    ("--config.objective=byol", "config.objective='byol' is not valid"),
    ("--config.train.steps=0", "config.train.steps=0 must be a positive integer"),
])
@pytest.mark.slow
def test_bad_config_is_a_one_line_error_before_compiling(tmp_path, override, message):
    result = jepa_jax("train", "--config", f"{TINY_WORLD}:smoke", override, workdir=tmp_path)
    assert result.returncode != 0
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("jepa-jax: error:") and message in last, result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_missing_config_file_and_verb(tmp_path):
    result = jepa_jax("train", "--config", "nope.py", workdir=tmp_path)
    assert result.returncode != 0 and "nope.py: no such file" in result.stderr
    result = jepa_jax("fly", "--config", f"{TINY_WORLD}:smoke", workdir=tmp_path)
    assert result.returncode != 0 and "usage: jepa-jax" in result.stderr


@pytest.mark.slow
def test_train_on_a_video_manifest_counts_bad_files(tmp_path):
    from tests.data.conftest import write_video  # pylint: disable=g-import-not-at-top
    paths = [write_video(tmp_path / f"clip{i}.mp4", 40, 30, 80, 64) for i in range(3)]
    manifest = tmp_path / "train.csv"
    manifest.write_text("\n".join(f"{p} 0" for p in paths + [str(tmp_path / "missing.mp4")]) + "\n")
    result = jepa_jax("train", "--config", f"{TINY_WORLD}:smoke,video",
                      f"--config.data.video.manifests=('{manifest}',)", "--config.data.video.max_bad_fraction=0.5",
                      workdir=tmp_path / "run")
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["bad_files_total/missing"] >= 1
    assert "Probe report" not in result.stdout  # no ground truth to probe for videos


@pytest.mark.slow
def test_eval_probe_on_a_labelled_manifest_and_a_builtin_task(tmp_path):
    model = tmp_path / "model"
    assert jepa_jax("train", "--config", f"{TINY_WORLD}:smoke", "--config.probe.report=False",
                    workdir=model).returncode == 0
    result = run_cli("data", "demo", "--out", str(tmp_path / "videos"))
    assert result.returncode == 0, result.stderr[-2000:]
    videos = json.loads(result.stdout)
    assert videos["videos"] == 96 and len((tmp_path / "videos" / "val.csv").read_text().splitlines()) == 32
    result = jepa_jax("eval", "probe", "--model", str(model), "--data", videos["train"], "--val", videos["val"],
                      "--config", f"{TINY_WORLD}:smoke,video", "--config.train.steps=3",
                      "--config.attentive.num_heads=4", "--config.attentive.segments=2", "--config.attentive.views=3",
                      "--config.data.video.frame_step=2", workdir=tmp_path / "labels")
    assert result.returncode == 0, result.stderr[-2000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert (line["task"], line["metric"], line["num_test"], line["chance"], line["bad_files"]) == (
        "labels", "top1", 32, 0.25, 0)
    assert {"top1", "top5", "lr", "weight_decay"} <= set(line["best"]) and line["ridge_quad"] is None
    assert "2 segments x 3 views" in (tmp_path / "labels" / "probe.md").read_text()
    result = jepa_jax("eval", "probe", "--model", str(model), "--data", "builtin:collision", "--config",
                      f"{TINY_WORLD}:smoke", "--config.train.steps=2", workdir=tmp_path / "collision")
    assert result.returncode == 0, result.stderr[-2000:]
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["task"] == "collision" and 0 <= line["best"]["top1"] <= 1 and 0 <= line["ridge_quad"] <= 1
    assert line["tasks"] == {"collision": {"score": line["best"]["top1"], "lr": line["best"]["lr"],
                                           "weight_decay": line["best"]["weight_decay"],
                                           "ridge_quad": line["ridge_quad"]}}
    assert json.loads((tmp_path / "collision" / "config.json").read_text())["attentive"]["encoder_from"] == str(model)
    result = jepa_jax("eval", "probe", "--model", str(model), "--data", videos["train"], workdir=tmp_path / "x")
    assert result.returncode != 0 and "give the held-out one with --val" in result.stderr.splitlines()[-1]


@pytest.mark.slow
def test_data_inspect_and_pack(tmp_path):
    from tests.data.conftest import write_video  # pylint: disable=g-import-not-at-top
    paths = [write_video(tmp_path / f"clip{i}.mp4", 30, 24, 64, 48 + 16 * i) for i in range(3)]
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join([f"{p} {i}" for i, p in enumerate(paths)] + [f"{tmp_path / 'gone.mp4'} 0"]))
    result = run_cli("data", "inspect", str(manifest), "--out", str(tmp_path / "inspect"), "--frames", "8",
                     "--crop", "128")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["videos"] == 4 and summary["decodable_fraction"] == 0.75
    assert summary["bad_files"] == {"missing": 1} and summary["fps"]["median"] == 24.0
    assert summary["portrait"] == 1 and summary["resolutions"] == {"64x48": 1, "64x64": 1, "64x80": 1}
    assert (tmp_path / "inspect" / "contact_sheet.png").read_bytes()[:4] == b"\x89PNG"
    result = run_cli("data", "pack", str(manifest), "--out", str(tmp_path / "packed"), "--frames", "4",
                     "--short_side", "32", "--shards", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["clips"] == 3 and summary["bad_files"]["missing"] == 1
    assert len(list((tmp_path / "packed").glob("clips-*-of-00002.array_record"))) == 2


@pytest.mark.slow
def test_dry_run_prints_mesh_parameter_counts_and_bytes_without_training(tmp_path):
    result = run_cli("train", "--config", os.path.join(REPO, "experiments", "configs", "vjepa_vitl16.py"), "--dry_run",
                     "--workdir", str(tmp_path), XLA_FLAGS="--xla_force_host_platform_device_count=8")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["mesh"] == {"data": 1, "fsdp": 8, "tensor": 1}
    assert summary["encoder_params"] == 303_885_312 and summary["predictor_params"] == 22_082_944
    state_floats = 4 * summary["encoder_params"] + 3 * summary["predictor_params"]  # + EMA copy and Adam moments
    assert 4 * state_floats / 8 <= summary["state_bytes_per_device"] <= 1.15 * 4 * state_floats / 8
    assert not os.listdir(tmp_path)  # nothing written


@pytest.mark.slow
def test_rerun_needs_no_config_file_and_refuses_a_folder_without_one(tmp_path):
    result = jepa_jax("train", "--rerun", str(tmp_path), workdir=tmp_path / "again")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"jepa-jax: error: {tmp_path}/config.json does not exist: --rerun needs a run directory written by "
        f"`jepa-jax train`")
