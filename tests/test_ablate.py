"""`ablate jepa-vs-pixels`: every arm trains under the same budget (only the objective differs), every encoder and
the random-init floor are probed on each task, results.csv/.md/.png hold one row per encoder, reruns resume."""

import csv
import json
import os

import pytest

from jepa_jax import ablate


@pytest.mark.slow
def test_ablation_trains_probes_and_tabulates_every_arm(smoke_config, tmp_path, monkeypatch):
    smoke_config.attentive.update(learning_rates=(1e-3,), weight_decays=(0.01,))
    monkeypatch.setattr(ablate, "PROBE_STEPS", 2)  # the probes' default length
    rows = ablate.jepa_vs_pixels(smoke_config, str(tmp_path), tasks=("motion", "count"))
    assert [r["run"] for r in rows] == ["ema", "sigreg", "pixels", "random_init"]
    for name in ablate.PRETRAINED:
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["objective"] == name and config["train"]["steps"] == smoke_config.train.steps
        assert config["data"] == json.loads((tmp_path / "ema" / "config.json").read_text())["data"]  # one budget
        probe = json.loads((tmp_path / "probes" / f"{name}_count" / "config.json").read_text())
        assert probe["attentive"]["encoder_from"] == str(tmp_path / name) and probe["train"]["steps"] == 2
    assert json.loads((tmp_path / "probes" / "random_init_motion" / "config.json").read_text())[
        "attentive"]["encoder_from"] == ""
    with open(tmp_path / "results.csv", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["run"] for r in table] == ["ema", "sigreg", "pixels", "random_init"]
    for row, result in zip(table, rows):
        scores = json.loads((tmp_path / "probes" / f"{row['run']}_count" / "probe.json").read_text())
        assert float(row["count"]) == pytest.approx(scores["best"]["top1"]) == pytest.approx(result["count"])
        motion = json.loads((tmp_path / "probes" / f"{row['run']}_motion" / "probe.json").read_text())
        for task in ("position", "velocity", "ahead"):  # one motion probe, a column per task it scores
            assert float(row[task]) == pytest.approx(motion["tasks"][task]["score"])
        assert (float(row["pretrain_flops"]) > 0) == (row["run"] != "random_init")
    assert "| random init |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    before = os.path.getmtime(tmp_path / "ema" / "summary.json")
    assert ablate.jepa_vs_pixels(smoke_config, str(tmp_path), tasks=("motion", "count"), probe_steps=2) == rows
    assert os.path.getmtime(tmp_path / "ema" / "summary.json") == before  # finished runs are not trained again
    with pytest.raises(ValueError, match=r"probes/ema_motion holds a probe run with other settings"):
        ablate.jepa_vs_pixels(smoke_config, str(tmp_path), tasks=("motion",), probe_steps=3)
