"""Re-runs and stages: `--rerun` reproduces a run bit for bit; a 16-frame stage continues from an 8-frame run."""

import jax
import ml_collections
import numpy as np
import pytest

from jepa_jax import checkpoint, config as config_lib, metrics as metrics_lib
from jepa_jax.train import loop

TIMING = ("steps_per_s", "step_time_s", "mfu")


def records(workdir):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in metrics_lib.read_jsonl(f"{workdir}/metrics.jsonl")]


@pytest.mark.slow
def test_rerun_from_config_json_reproduces_metrics_bit_for_bit(smoke_config, tmp_path):
    smoke_config.probe.at_fractions = (1.0,)
    smoke_config.masks = ml_collections.ConfigDict(
        dict(long_range=smoke_config.masks.long_range.to_dict(),
             short_range=smoke_config.masks.short_range.to_dict()), sort_keys=False)  # not alphabetical
    loop.train(smoke_config, str(tmp_path / "first"))
    again = config_lib.load_run(str(tmp_path / "first"))
    assert list(again.masks) == ["long_range", "short_range"]
    assert again.to_dict() == smoke_config.to_dict()
    loop.train(again, str(tmp_path / "again"))
    assert records(tmp_path / "again") == records(tmp_path / "first")


def test_rerun_of_a_directory_without_config_fails(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config.json does not exist: --rerun needs a run directory"):
        config_lib.load_run(str(tmp_path))


@pytest.mark.slow
def test_cooldown_stage_at_16_frames_starts_from_the_8_frame_run(smoke_config, tmp_path):
    stage1 = tmp_path / "stage1"
    smoke_config.probe.at_fractions = (1.0,)
    loop.train(smoke_config, str(stage1))
    smoke_config.data.world.num_frames = 16
    smoke_config.train.update(steps=3, init_from=str(stage1))
    smoke_config.optim.update(schedule="linear_decay", lr=2e-4, final_lr=1e-6)
    summary = loop.train(smoke_config, str(tmp_path / "stage2"))
    assert summary["resumed_from"] is None

    run = loop.build_run(smoke_config, devices=jax.devices()[:1])
    abstract = checkpoint.abstract_like(run.state)
    end_of_stage1 = checkpoint.Checkpointer(str(stage1)).restore(4, abstract)
    start_of_stage2 = checkpoint.Checkpointer(str(tmp_path / "stage2")).restore(0, abstract)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(start_of_stage2.params),
                 jax.device_get(end_of_stage1.params))
    assert int(start_of_stage2.step) == 0
    stage2 = metrics_lib.read_jsonl(str(tmp_path / "stage2" / "metrics.jsonl"))
    assert [r["step"] for r in stage2] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in stage2)
    horizon = int(smoke_config.optim.ipe_scale * 3)
    assert stage2[0]["lr"] == pytest.approx(2e-4 + (1e-6 - 2e-4) / horizon, rel=1e-5)  # the schedule restarted


def test_a_stage_pointing_at_a_missing_checkpoint_fails_before_anything_runs(smoke_config, tmp_path):
    smoke_config.train.init_from = str(tmp_path / "nowhere") + ":100"
    with pytest.raises(ValueError, match=r"config.train.init_from='.*nowhere:100': no complete checkpoint 100 in "):
        loop.build_run(smoke_config)
    assert not (tmp_path / "nowhere").exists()
