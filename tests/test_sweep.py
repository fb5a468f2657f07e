"""Sweeps: expansion, one-line errors, local runs with skipping, results tables and plot, launch commands."""

import csv
import os
import subprocess
import sys

import pytest

from jepa_jax import sweep
from tests.conftest import REPO, TINY_WORLD

SMOKE = f"{TINY_WORLD}:smoke"


def write_sweep(tmp_path, body: str) -> str:
    path = tmp_path / "my_sweep.py"
    path.write_text(f"def get_sweep():\n    return {body}\n")
    return str(path)


def test_report_metrics_take_the_last_checkpoints_ridge_and_the_trained_encoders_attentive_scores():
    ridge = [{"name": "raw pixels", "step": None, "velocity/time": 0.1},
             {"name": "trained, step 5", "step": 5, "velocity/time": 0.2},
             {"name": "trained, step 9", "step": 9, "velocity/time": 0.3}]
    attentive = [{"name": "trained", "velocity": {"score": 0.7, "ridge_quad": 0.4}},
                 {"name": "random init", "velocity": {"score": 0.6, "ridge_quad": 0.2}}]
    assert sweep.report_metrics(ridge) == {"velocity/time": 0.3}  # a report.json written before attentive probes
    assert sweep.report_metrics({"ridge": ridge, "attentive": attentive}) == {"velocity/time": 0.3,
                                                                              "attentive/velocity": 0.7}


def test_grid_expands_to_the_product_with_stable_names(tmp_path):
    path = write_sweep(tmp_path, f"dict(config={SMOKE!r}, fixed={{'train.steps': 2}}, "
                                 "grid={'ema.start': (0.9, 0.99), 'optim.lr': (1e-4, 1e-3, 1e-2)})")
    runs = sweep.expand(sweep.load_sweep(path), path)
    assert len(runs) == 6
    assert runs[0]["name"] == "ema.start=0.9,optim.lr=0.0001"
    assert runs[-1]["overrides"] == {"train.steps": 2, "ema.start": 0.99, "optim.lr": 1e-2}


@pytest.mark.parametrize("body,message", [
    (f"dict(config={SMOKE!r}, grid={{'ema.strat': (0.9,)}})", r"config.ema.strat does not exist: valid keys "
                                                               r"under config.ema are \['end', 'start'\]"),
    (f"dict(config={SMOKE!r}, grid={{'ema.start': ()}})", r"the sweep expands to zero runs"),
    (f"dict(config={SMOKE!r}, runs=[])", r"the sweep expands to zero runs"),
    (f"dict(config={SMOKE!r})", r"exactly one of 'grid' and 'runs'"),
])
def test_bad_sweeps_fail_with_one_line_before_running(tmp_path, body, message):
    path = write_sweep(tmp_path, body)
    with pytest.raises(ValueError, match=message):
        sweep.run_sweep(path, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


@pytest.mark.slow
def test_sweep_runs_locally_skips_finished_runs_and_writes_results(tmp_path, capsys):
    path = write_sweep(tmp_path, f"dict(config={SMOKE!r}, fixed={{'train.steps': 2, 'probe.report': False, "
                                 "'probe.at_fractions': (1.0,)}, runs=[{'optim.lr': 1e-4}, {'optim.lr': 1e-3}], "
                                 "report=('loss', 'target_spread'))")
    out = tmp_path / "out"
    rows = sweep.run_sweep(path, str(out))
    assert [r["optim.lr"] for r in rows] == [1e-4, 1e-3]
    assert all(r["loss"] > 0 and r["target_spread"] > 0 for r in rows)
    with open(out / "results.csv", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [float(r["loss"]) for r in table] == [r["loss"] for r in rows]
    assert "| optim.lr | loss | target_spread |" in (out / "results.md").read_text()
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    again = sweep.run_sweep(path, str(out))  # everything finished: nothing re-trains, same table
    assert again == rows
    assert capsys.readouterr().out.count("finished, skipped") == 2


@pytest.mark.slow
def test_print_commands_gives_one_train_command_per_run(tmp_path):
    path = write_sweep(tmp_path, f"dict(config={SMOKE!r}, grid={{'optim.lr': (1e-4, 1e-3)}})")
    result = subprocess.run([sys.executable, "-m", "jepa_jax.cli", "sweep", path, "--workdir", str(tmp_path / "o"),
                             "--print_commands"], cwd=REPO, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("jepa-jax train --config ") for line in lines)
    assert "--config.optim.lr=0.001 --workdir" in lines[1]


def test_shipped_sweeps_expand():
    for name, count in (("ema_lr.py", 6), ("masks_depth.py", 6)):
        path = os.path.join(REPO, "experiments", "sweeps", name)
        assert len(sweep.expand(sweep.load_sweep(path), path)) == count
