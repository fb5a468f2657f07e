"""tpu_scripts/ and experiments/slurm/: shellcheck, --help, and each script's command lines, run against a fake
gcloud that records its arguments and plays a slice (its state in a file: created READY, deleted, or set PREEMPTED
by the test), and a fake srun / scontrol."""

import base64
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = os.path.join(REPO, "tpu_scripts")
SBATCH = os.path.join(REPO, "experiments", "slurm", "train.sbatch")
BASH = shutil.which("bash")
NAMES = ("create.sh", "setup.sh", "launch.sh", "logs.sh", "watch.sh", "delete.sh")

# The fake: every call appends its argv (JSON) to $FAKE_DIR/calls; the slice's state lives in $FAKE_DIR/state
# (no file: NOT_FOUND); a launch marks the run $FAKE_RUN_AFTER_LAUNCH ("done 0": it finishes at once).
FAKE_GCLOUD = r'''#!PYTHON
import json, os, sys
fake = os.environ["FAKE_DIR"]
args = sys.argv[1:]
with open(os.path.join(fake, "calls"), "a") as f:
    f.write(json.dumps(args) + "\n")
state, run = os.path.join(fake, "state"), os.path.join(fake, "run")
words = [a for a in args if not a.startswith("-")]
if "describe" in words:
    if not os.path.exists(state):
        sys.exit(1)
    print(open(state).read().strip())
elif "create" in words:
    open(state, "w").write("READY")
elif "delete" in words:
    if os.path.exists(state):
        os.remove(state)
elif "ssh" in words:
    command = next(a for a in args if a.startswith("--command="))
    if "pgrep" in command and "train.sh" not in command:
        print(open(run).read().strip() if os.path.exists(run) else "idle")
    elif "train.sh" in command:
        open(run, "w").write(os.environ.get("FAKE_RUN_AFTER_LAUNCH", "done 0"))
'''


@pytest.fixture
def fake(tmp_path):
    """(run(script, *args, **env) -> CompletedProcess, calls() -> [argv], fake dir) with the fake gcloud on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD.replace("PYTHON", sys.executable))
    gcloud.chmod(0o755)
    env_file = tmp_path / "tpu.env"
    env_file.write_text("TPU_NAME=jepa-test\nTPU_ZONE=us-east5-a\nTPU_ACCELERATOR=v5p-32\nTPU_PROJECT=proj\n"
                        "TPU_SPOT=true\nWORKDIR=gs://bucket/runs/vitl\n")
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_DIR": str(tmp_path), "TPU_ENV": str(env_file),
            "HOME": str(tmp_path), "CREATE_POLL_S": "0", "WATCH_INTERVAL_S": "0"}

    def run(script, *args, **env):
        return subprocess.run([BASH, os.path.join(SCRIPTS, script), *args], env={**base, **env}, cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=False)

    def calls():
        path = tmp_path / "calls"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    return run, calls, tmp_path


def commands(calls, *words):
    """The recorded calls whose positional words include all of `words`."""
    return [c for c in calls if all(w in c for w in words)]


def test_every_script_passes_shellcheck():
    shellcheck = shutil.which("shellcheck") or os.path.join(os.path.dirname(sys.executable), "shellcheck")
    result = subprocess.run([shellcheck, "-x", "-P", "SCRIPTDIR", *[os.path.join(SCRIPTS, n) for n in NAMES],
                             os.path.join(SCRIPTS, "common.sh"), SBATCH], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize("name", NAMES)
def test_help_prints_the_header_with_an_example_and_touches_nothing(fake, name):
    run, calls, _ = fake
    result = run(name, "--help")
    assert result.returncode == 0 and "tpu_scripts/" + name in result.stdout
    assert calls() == []


def test_create_makes_a_spot_slice_once_and_keeps_a_ready_one(fake):
    run, calls, _ = fake
    assert run("create.sh").returncode == 0
    created = commands(calls(), "tpu-vm", "create")
    assert created == [["compute", "tpus", "tpu-vm", "create", "jepa-test", "--zone=us-east5-a", "--project=proj",
                        "--accelerator-type=v5p-32", "--version=v2-alpha-tpuv5", "--spot"]]
    again = run("create.sh")
    assert again.returncode == 0 and "READY already" in again.stdout
    assert len(commands(calls(), "create")) == 1


def test_create_asks_for_a_queued_resource(fake):
    run, calls, _ = fake
    assert run("create.sh", TPU_QUEUED="true", TPU_SPOT="false").returncode == 0
    assert commands(calls(), "queued-resources", "create") == [[
        "compute", "tpus", "queued-resources", "create", "jepa-test", "--zone=us-east5-a", "--project=proj",
        "--node-id=jepa-test", "--accelerator-type=v5p-32", "--runtime-version=v2-alpha-tpuv5"]]


def test_setup_copies_the_checkout_and_installs_on_every_worker(fake):
    run, calls, tmp_path = fake
    (tmp_path / "state").write_text("READY")
    assert run("setup.sh").returncode == 0
    scp, = commands(calls(), "scp")
    assert "jepa-test:jepa_jax.tar.gz" in scp and "--worker=all" in scp
    ssh, = commands(calls(), "ssh")
    assert "--worker=all" in ssh and "pip install -q -e '.[tpu,video,gcs]'" in ssh[-1]


def launched_script(ssh_call) -> str:
    """The train.sh a launch writes on the hosts (decoded from its base64)."""
    encoded = re.search(r"echo (\S+) \| base64 -d > train.sh", ssh_call[-1])[1]
    return base64.b64decode(encoded).decode()


def test_launch_runs_train_multihost_with_the_workdir_and_arguments_on_every_worker(fake):
    run, calls, _ = fake
    result = run("launch.sh", "--config", "experiments/configs/vjepa2_vitl16.py",
                 "--config.data.video.manifests=('k 710.csv',)")
    assert result.returncode == 0, result.stderr
    ssh, = commands(calls(), "ssh")
    assert "--worker=all" in ssh and "pgrep -f 'jepa-jax train'" in ssh[-1]  # a second launch starts nothing
    script = launched_script(ssh)
    words = subprocess.run(["bash", "-c", "printf '%s\\n' " + script.splitlines()[0].split(" ", 2)[2]],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert words == ["--multihost", "--workdir", "gs://bucket/runs/vitl", "--config",
                     "experiments/configs/vjepa2_vitl16.py", "--config.data.video.manifests=('k 710.csv',)"]
    assert script.splitlines()[1] == "echo $? > train.rc"


def test_watch_recreates_a_preempted_slice_and_relaunches_the_same_run(fake):
    run, calls, tmp_path = fake
    (tmp_path / "state").write_text("PREEMPTED")
    result = run("watch.sh", "--config", "experiments/configs/vjepa2_vitl16.py", WATCH_MAX_ROUNDS="3")
    assert result.returncode == 0, result.stderr
    assert "PREEMPTED: recreating" in result.stdout and "has finished" in result.stdout
    verbs = [next(w for w in ("delete", "create", "scp", "ssh") if w in c) for c in calls() if "describe" not in c]
    assert verbs[:5] == ["delete", "create", "scp", "ssh", "ssh"]  # teardown, create, copy, install, launch
    assert verbs[5:] == ["ssh"]  # next round: the run's status, finished
    launch = commands(calls(), "ssh")[1]
    assert "--workdir gs://bucket/runs/vitl --config experiments/configs/vjepa2_vitl16.py" in launched_script(launch)


def test_watch_relaunches_a_ready_slice_without_training_and_stops_on_a_failed_run(fake):
    run, calls, tmp_path = fake
    (tmp_path / "state").write_text("READY")
    result = run("watch.sh", WATCH_MAX_ROUNDS="3", FAKE_RUN_AFTER_LAUNCH="done 1")
    assert result.returncode == 1 and "training exited with status 1" in result.stderr
    assert not commands(calls(), "create") and len([c for c in commands(calls(), "ssh") if "train.sh" in c[-1]]) == 1


def test_delete_tears_down_and_is_safe_to_rerun(fake):
    run, calls, tmp_path = fake
    (tmp_path / "state").write_text("READY")
    assert run("delete.sh").returncode == 0
    assert commands(calls(), "tpu-vm", "delete") == [["compute", "tpus", "tpu-vm", "delete", "jepa-test",
                                                       "--zone=us-east5-a", "--project=proj", "--quiet"]]
    again = run("delete.sh")
    assert again.returncode == 0 and "nothing to delete" in again.stdout
    assert len(commands(calls(), "delete")) == 1


@pytest.mark.parametrize("env,message", [
    ({"WORKDIR": "/home/me/runs/x"}, "WORKDIR=/home/me/runs/x must be shared by the 4 hosts of v5p-32"),
    ({"WORKDIR": "s3://b/r"}, "WORKDIR=s3://b/r: only gs:// buckets are supported as URLs"),
    ({"TPU_ACCELERATOR": "v9-8"}, "TPU_ACCELERATOR=v9-8: expected v4-N, v5p-N"),
    ({"TPU_ENV": "/nonexistent/tpu.env"}, "TPU_ENV=/nonexistent/tpu.env does not exist"),
    ({"PATH": "TOOLS_ONLY"}, "gcloud not found on PATH"),
])
def test_bad_settings_stop_in_one_line_before_any_gcloud_call(fake, tmp_path, env, message):
    run, calls, _ = fake
    if env.get("PATH") == "TOOLS_ONLY":  # the tools the scripts use before gcloud, and no gcloud
        tools = tmp_path / "tools"
        tools.mkdir()
        for tool in ("dirname", "basename"):
            (tools / tool).symlink_to(shutil.which(tool))
        env = {"PATH": str(tools)}
    if "WORKDIR" in env or "TPU_ACCELERATOR" in env:  # the env file's value loses to nothing: write it there
        env_file = tmp_path / "bad.env"
        settings = {"TPU_NAME": "jepa-test", "TPU_ZONE": "z", "TPU_ACCELERATOR": "v5p-32", "WORKDIR": "/gcs/b/r",
                    **env}
        env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        env = {"TPU_ENV": str(env_file)}
    result = run("launch.sh", "--config", "x.py", **env)
    assert result.returncode == 1 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert calls() == []


# srun: record the command, then write the run's summary.json as a finished or a preempted run would.
FAKE_SRUN = r'''#!/usr/bin/env bash
printf '%s\n' "$*" >> "$FAKE_DIR/srun"
printf '{\n  "preempted_at": %s\n}\n' "$FAKE_PREEMPTED_AT" > "$WORKDIR/summary.json"
'''


@pytest.mark.parametrize("preempted_at,requeued", [("null", False), ("1200", True)])
def test_sbatch_template_trains_every_task_multihost_and_requeues_a_preempted_run(tmp_path, preempted_at, requeued):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", FAKE_SRUN), ("scontrol", '#!/usr/bin/env bash\necho "$*" >> "$FAKE_DIR/scontrol"\n')):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    workdir = tmp_path / "run"
    workdir.mkdir()
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_DIR": str(tmp_path), "CONFIG": "experiments/configs/x.py",
           "WORKDIR": str(workdir), "SLURM_JOB_ID": "42", "FAKE_PREEMPTED_AT": preempted_at}
    result = subprocess.run([BASH, SBATCH, "--config.mesh.fsdp=-1"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "srun").read_text().split() == [
        "--kill-on-bad-exit=1", ".venv/bin/jepa-jax", "train", "--multihost", "--config", "experiments/configs/x.py",
        "--workdir", str(workdir), "--config.mesh.fsdp=-1"]
    assert (tmp_path / "scontrol").exists() == requeued
    if requeued:
        assert (tmp_path / "scontrol").read_text().split() == ["requeue", "42"]


def test_sbatch_template_without_config_stops_in_one_line():
    result = subprocess.run([BASH, SBATCH], env={"PATH": "/usr/bin:/bin", "WORKDIR": "/tmp"}, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode != 0 and "set CONFIG" in result.stderr


def doc_commands(path: str, prefix: str) -> list[list[str]]:
    """The command lines of a Markdown file's bash blocks that start with `prefix` (continuations joined,
    comments dropped), split into words as bash would."""
    text = open(path, encoding="utf-8").read()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith(prefix):
                lines.append(subprocess.run([BASH, "-c", f"printf '%s\\n' {line}"], capture_output=True, text=True,
                                            check=True).stdout.splitlines())
    return lines


def test_the_scale_out_guides_tpu_commands_run_as_written_with_the_example_env_file(fake):
    run, calls, _ = fake
    lines = doc_commands(os.path.join(REPO, "docs", "scale_out.md"), "tpu_scripts/")
    assert [line[0] for line in lines] == ["tpu_scripts/create.sh", "tpu_scripts/setup.sh", "tpu_scripts/watch.sh"]
    example = os.path.join(SCRIPTS, "tpu.env.example")
    for line in lines:
        result = run(os.path.basename(line[0]), *line[1:], TPU_ENV=example, WATCH_MAX_ROUNDS="3")
        assert result.returncode == 0, (line, result.stderr)
    assert "has finished" in result.stdout
    launches = [c for c in commands(calls(), "ssh") if "train.sh" in c[-1]]
    assert len(launches) == 1 and "--config experiments/configs/vjepa2_vitl16.py" in launched_script(launches[0])
