"""`jepa-jax bench`: the analytic FLOPs against XLA's, the PyTorch reference step against ours on the same batch
and weights, the step measurement's JSON, and bad input."""

import json

import pytest

from jepa_jax import config as config_lib, recipes
from jepa_jax.benchmarks import bench, flops, step
from tests.conftest import require, run_cli


def bench_config():
    """A nano V-JEPA 2 EMA step: 4 x 32^2 clips (32 tokens), batch 8 (one clip per fake device)."""
    config = recipes.base_config()
    config.objective = "ema"
    config.model.update(size="nano", patch_size=8)
    config.model.predictor.update(width=32, depth=2, num_heads=2)
    config.data.world.update(num_frames=4, size=32, num_balls=1)
    config.data.batch_size = 8
    return config


def test_analytic_flops_agree_with_xla_for_encoder_and_predictor():
    config = bench_config()
    masks = step.sample_batch(config, config_lib.build_maskers(config))["masks"]
    check = flops.forward_flops_check(config, masks)
    for part in ("encoder", "predictor"):  # XLA also counts norms, GELU and softmax: a little above the matmuls
        assert 1.0 <= check[part]["ratio"] < 1.1, (part, check[part])
    total = flops.jepa_step_flops(config, masks)
    assert total == pytest.approx(step.step_flops_xla(config), rel=0.1)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_torch_reference_step_computes_our_loss_on_the_same_batch_and_weights(scan_layers):
    """Also from a scanned run's stacked weights, which the reference receives unrolled."""
    require("torch")
    require("transformers")
    config = bench_config()
    config.model.scan_layers = scan_layers
    host_batch = step.sample_batch(config, config_lib.build_maskers(config))
    ours = step.JaxStep(config, host_batch)
    reference, (video, masks) = step.torch_reference(config, ours.state.params, host_batch)
    torch_loss = reference.loss(video, masks).item()
    assert ours() == pytest.approx(torch_loss, abs=1e-5)
    assert reference.step(video, masks) == pytest.approx(torch_loss, abs=1e-6)  # the step returns its loss


def test_step_measurement_reports_equal_tokens_ratio_flops_and_memory_per_side():
    require("torch")
    require("transformers")
    result = step.measure_step(bench_config(), repeats=1, compare="torch")
    assert result["tokens"]["jepa_jax"] == result["tokens"]["torch"] == {"clip": 32, "context": [8, 4],
                                                                        "predicted": [12, 18]}
    assert result["first_loss"]["jepa_jax"] == pytest.approx(result["first_loss"]["torch"], abs=1e-5)
    assert result["ratio"] == pytest.approx(result["step_s_median"] / result["torch"]["step_s_median"])
    assert result["step_s_min"] <= result["step_s_median"] <= result["step_s_max"]
    assert result["flops_per_step_analytic"] == pytest.approx(result["flops_per_step_xla"], rel=0.1)
    assert result["mfu"] == pytest.approx(result["flops_per_step_analytic"] / result["step_s_median"]
                                          / result["peak_flops"])
    memory = result["peak_memory_bytes"]
    assert memory["jepa_jax"] > 1e8 and memory["torch"] > 1e8 and memory["jepa_jax"] != memory["torch"]
    json.dumps(result)  # printable as is


def test_compile_measurement_times_unrolled_and_scanned_cold():
    config = bench_config()
    result = next(bench.run(config, ("compile",)))
    assert (result["encoder_depth"], result["predictor_depth"]) == (2, 2)
    for side in ("unrolled", "scanned"):
        assert result[side]["total_s"] == pytest.approx(result[side]["lower_s"] + result[side]["compile_s"])
    assert result["ratio"] == pytest.approx(result["unrolled"]["total_s"] / result["scanned"]["total_s"])
    assert not config.model.scan_layers  # the caller's config is left as it was
    json.dumps(result)


def test_torch_reference_refuses_what_vjepa2model_cannot_run():
    config = bench_config()
    config.model.pos_embedding = "sincos"
    config.objective = "sigreg"
    with pytest.raises(ValueError, match=r"--compare torch: .*sin-cos positions.*set --config.objective=ema"):
        step.torch_options(config)


def test_unknown_measure_or_reference_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"--what speed: choose from step,compile,attention,data,plan,checkpoint"):
        bench.check(["step", "speed"], "none")
    world_model = config_lib.load_spec("experiments/configs/pusht_ac.py:smoke")
    world_model.data.trajectories = "unused"
    with pytest.raises(ValueError, match=r"--what step times the JEPA objectives .* use --what plan"):
        next(bench.run(world_model, ["step"]))
    result = run_cli("bench", "--config", "experiments/configs/bench_vjepa2.py:tiny64", "--compare", "jax")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith("--compare jax: choose one of none, torch")


def test_the_torch_memory_process_imports_no_jax():
    """The CPU memory figure of the torch side is a fresh process's peak: JAX in it would inflate torch's figure."""
    import subprocess  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top
    script = "import sys; import jepa_jax.benchmarks.torch_step; print('jax' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
