"""`jepa-jax bench`: the analytic FLOPs against XLA's, the PyTorch reference step against ours on the same batch
and weights, the step measurement's JSON, and bad input."""

import json

import pytest

from jepa_jax import config as config_lib, recipes
from jepa_jax.benchmarks import bench, flops, profile, step
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


def test_profile_summary_sums_exclusive_op_time_per_kind_layer_and_lane():
    """Two lanes: a loop (0-100 us) with a matmul nested in it (10-40 us), and an MLP op (50-150 us) on the other;
    events without an op (an end marker, a Python frame) are not op time."""
    op = lambda tid, name, ts, dur: {"ph": "X", "pid": 1, "tid": tid, "ts": ts, "dur": dur, "name": name,
                                     "args": {"hlo_op": name}}
    events = [op(7, "while.3", 0.0, 100.0), op(7, "ynn_fusion.12", 10.0, 30.0), op(8, "add_fusion.1", 50.0, 100.0),
              {"ph": "X", "pid": 1, "tid": 7, "ts": 40.0, "dur": 1.0, "name": "end: ynn_fusion.12", "args": {}},
              {"ph": "X", "pid": 1, "tid": 9, "ts": 0.0, "dur": 500.0, "name": "$step.py:54 __call__"}]
    paths = profile.source_paths(  # XLA leaves a loop body's fusions without a source path: the while's applies
        '%body.7 (arg: (s32[], f32[8])) -> (s32[], f32[8]) {\n'
        '  %ynn_fusion.12 = f32[2,8]{1,0} fusion(%a), kind=kCustom, calls=%fused_computation.3\n'
        '}\n'
        'ENTRY %main.9 (p: f32[8]) -> f32[8] {\n'
        '  %while.3 = (s32[], f32[8]) while(%t), condition=%cond.2, body=%body.7, '
        'metadata={op_name="jit(train_step)/predictor_blocks_0/attn/while" stack_frame_id=3}\n'
        '  ROOT add_fusion.1 = f32[8]{0} fusion(%b), '
        'metadata={op_name="jit(train_step)/encoder/blocks_1/mlp/fc1/add"}\n'
        '}\n')
    assert paths["add_fusion.1"] == "jit(train_step)/encoder/blocks_1/mlp/fc1/add"
    summary = profile.summarize(events, paths, step_s=0.5)
    assert summary["lanes"] == 2
    assert summary["busy_s"] == pytest.approx([100e-6, 100e-6])
    assert summary["one_lane_busy_s"] == pytest.approx(100e-6)  # 0-50 us and 100-150 us
    assert summary["by_op_kind_s"] == pytest.approx({"add_fusion": 100e-6, "while": 70e-6, "ynn_fusion": 30e-6})
    assert summary["by_layer_s"] == pytest.approx({"attn_loop": 100e-6, "mlp": 100e-6})
    assert [profile.layer_kind(p) for p in ("a/blocks_0/attn/qkv/dot", "a/blocks_0/norm2/sub", "a/norm/mul",
                                            "a/patch_embed/conv", "a/adamw/mul", "a/predictor_norm/mul")] == [
        "attn", "norm", "norm", "embed", "other", "norm"]


def test_profile_measurement_traces_one_step_per_layer(tmp_path):
    result = run_cli("bench", "--config", "experiments/configs/bench_vjepa2.py:tiny64", "--what", "profile",
                     "--out", str(tmp_path / "trace"), "--config.model.size=nano",
                     "--config.model.predictor.depth=1", "--config.data.batch_size=2",
                     JAX_PLATFORMS="cpu", XLA_FLAGS="")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["measure"] == "profile" and summary["trace"] == str(tmp_path / "trace")
    assert profile.read_trace(summary["trace"])  # the trace is kept for TensorBoard / Perfetto
    layers = summary["by_layer_s"]
    assert {"attn", "mlp", "norm", "embed", "other"} <= set(layers) and min(layers.values()) > 0
    assert sum(layers.values()) == pytest.approx(sum(summary["busy_s"]), rel=1e-6)
    assert 0 < max(summary["busy_s"]) <= summary["step_s"] * 1.05


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
