"""The action-conditioned objective ("ac"): loss terms against a prefix-by-prefix reference, frozen vs joint encoder
through the engine's build path, config errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax import objectives, parallel, recipes
from jepa_jax.models import vit
from jepa_jax.train import loop, step as step_lib


def ac_config(**ac):
    config = recipes.base_config()
    config.objective, config.data.source, config.data.trajectories = "ac", "trajectories", "unused"
    config.model.size = "nano"
    config.ac.update(image_size=32, num_frames=4, action_dim=3, proprio_dim=2, **ac)
    config.ac.predictor.update(width=32, depth=2, num_heads=2)
    config.data.batch_size, config.train.steps = 8, 3
    return config


def random_batch(config, seed=0):
    rng = np.random.default_rng(seed)
    spec = loop.batch_spec(config, [], config.data.batch_size)
    return {k: rng.integers(0, 256, v.shape).astype(v.dtype) if v.dtype == np.uint8 else
            rng.normal(size=v.shape).astype(v.dtype) for k, v in spec.items()}


def one_step(config):
    run = loop.build_run(config)
    with jax.set_mesh(run.mesh), nn.logical_axis_rules(parallel.RULES):
        before = jax.tree.map(np.asarray, run.state.params)
        state, metrics = run.train_step(run.state, parallel.host_to_global(random_batch(config), run.mesh))
    return run, before, jax.device_get(state), metrics


def batch_standardised(features):
    """numpy reference of state_norm "batch": each (token slot, feature) standardised over batch and frames."""
    features = np.asarray(features, np.float64)
    return jnp.asarray((features - features.mean((0, 1))) / np.sqrt(features.var((0, 1)) + 1e-12), jnp.float32)


@pytest.mark.parametrize("rollout_steps,state_norm,rollout_proprio",
                         [(1, "layer", "recorded"), (3, "layer", "recorded"), (3, "batch", "recorded"),
                          (3, "batch", "predicted")])
def test_loss_matches_prefix_by_prefix_reference(rollout_steps, state_norm, rollout_proprio):
    """Teacher forcing and rollout, recomputed by calling the predictor on growing prefixes: frame t + 1 is predicted
    from (true frames 0..t) resp. (h_0, then the model's own predictions, seeded with predicted frame 1). States
    are LN-ed features and LN-ed predictions ("layer") or batch-standardised features and raw predictions
    ("batch"); the rollout's proprio is the recorded one, or proprio_0 then the predicted ones."""
    config = ac_config(rollout_steps=rollout_steps, rollout_proprio=rollout_proprio)
    run = loop.build_run(config)
    params = jax.device_get(nn.meta.unbox(run.state.params))
    batch = random_batch(config)
    loss, metrics = step_lib.ac_loss(params, batch, jax.random.key(0), encoder=run.encoder, predictor=run.predictor,
                                     grid_hw=run.grid[1:], train_encoder=False, rollout_steps=rollout_steps,
                                     state_norm=state_norm, rollout_proprio=rollout_proprio, sigreg=config.sigreg)

    features = vit.encode_frames(run.encoder, params["encoder"], vit.normalize_video(batch["frames"]))
    layer = state_norm == "layer"
    h = objectives.normalize_targets(features) if layer else batch_standardised(features)
    actions, proprio = batch["actions"], batch["proprio"]

    def next_frame(frames, frame_proprio):  # prediction of frame len(frames) from a prefix
        n = frames.shape[1]
        out, next_proprio = run.predictor.apply({"params": params["predictor"]}, frames, actions[:, :n],
                                                frame_proprio, run.grid[1:])
        return objectives.normalize_targets(out[:, -1:]) if layer else out[:, -1:], next_proprio[:, -1:]

    teacher = [next_frame(h[:, :t + 1], proprio[:, :t + 1]) for t in range(config.ac.num_frames - 1)]
    rolled, rolled_proprio = [h[:, :1]], [proprio[:, :1]]
    for t in range(rollout_steps):
        inputs = jnp.concatenate(rolled_proprio, axis=1) if rollout_proprio == "predicted" else proprio[:, :t + 1]
        frame, frame_proprio = next_frame(jnp.concatenate(rolled, axis=1), inputs)
        rolled.append(frame)
        rolled_proprio.append(frame_proprio)
    l1 = lambda a, b: float(jnp.abs(a - b).mean())
    teacher_frames = jnp.concatenate([f for f, _ in teacher], axis=1)
    np.testing.assert_allclose(metrics["teacher_forcing_loss"], l1(teacher_frames, h[:, 1:]), rtol=1e-4)
    # rtol 2e-6: at init the proprio inputs move the rollout loss by about 2e-5 of itself.
    np.testing.assert_allclose(metrics["rollout_loss"], l1(jnp.concatenate(rolled[1:], axis=1),
                                                           h[:, 1:rollout_steps + 1]), rtol=2e-6)
    np.testing.assert_allclose(metrics["proprio_loss"], l1(jnp.concatenate([p for _, p in teacher], axis=1),
                                                           proprio[:, 1:]), rtol=1e-5)
    regularised = features if layer else h  # SIGReg sees the standardised states, as LeWorldModel's BN-ed ones
    sig = config.sigreg
    np.testing.assert_allclose(metrics["sigreg"], objectives.sigreg(regularised.reshape(-1, regularised.shape[-1]),
                                                                    jax.random.key(0), sig.num_slices, sig.t_max,
                                                                    sig.num_points), rtol=1e-4)
    np.testing.assert_allclose(loss, metrics["teacher_forcing_loss"] + metrics["rollout_loss"]
                               + config.ac.proprio_weight * metrics["proprio_loss"]
                               + sig.weight * metrics["sigreg"], rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["frozen", "joint"])
def test_frozen_encoder_never_changes_and_holds_no_optimizer_state(encoder):
    run, before, state, metrics = one_step(ac_config(encoder=encoder))
    changed = lambda group: max(float(np.abs(np.asarray(a) - b).max()) for a, b in
                                zip(jax.tree.leaves(state.params[group]), jax.tree.leaves(before[group])))
    assert changed("predictor") > 0
    assert (changed("encoder") == 0) == (encoder == "frozen")
    assert ("sigreg" in metrics) == (encoder == "joint")
    moments = sum(x.size for x in jax.tree.leaves(state.opt_state))
    predictor_size = sum(x.size for x in jax.tree.leaves(state.params["predictor"]))
    encoder_size = sum(x.size for x in jax.tree.leaves(state.params["encoder"]))
    # Adam's two moments (plus scalars) for the trained groups only.
    trained = predictor_size + (encoder_size if encoder == "joint" else 0)
    assert 2 * trained <= moments < 2 * trained + 100


def test_predicted_rollout_proprio_needs_the_proprio_head():
    config = ac_config(rollout_proprio="predicted", predict_proprio=False)
    with pytest.raises(ValueError, match="rollout_proprio='predicted' feeds back predicted proprio: set "
                                         "--config.ac.predict_proprio=True"):
        loop.build_run(config)


@pytest.mark.parametrize("field, value, message", [
    ("ac.rollout_steps", 4, "rollout_steps=4 needs config.ac.num_frames >= rollout_steps"),
    ("ac.encoder", "ema", "config.ac.encoder='ema' is not valid"),
    ("data.source", "balls", "set --config.data.source=trajectories"),
    ("data.trajectories", "", "config.data.trajectories is empty"),
    ("ac.predictor.num_heads", 5, "config.ac.predictor: width=32 must be divisible by num_heads=5"),
    ("ac.rollout_proprio", "true", "config.ac.rollout_proprio='true' is not valid"),
])
def test_config_errors_name_the_field(field, value, message):
    config = ac_config()
    node = config
    *parents, leaf = field.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    with pytest.raises(ValueError, match=message):
        loop.build_run(config)


@pytest.mark.slow
def test_encoder_from_a_pretraining_run_takes_its_ema_target_encoder(tmp_path, smoke_config):
    """config.ac.encoder_from=RUN:STEP fills the AC run's encoder with that checkpoint's EMA target encoder."""
    from jepa_jax import checkpoint  # pylint: disable=g-import-not-at-top
    smoke_config.objective = "ema"
    smoke_config.data.batch_size = 8
    pretrain = loop.build_run(smoke_config)
    target = jax.tree.map(lambda x: x + 1.0, pretrain.state.ema_params)  # differs from the online encoder
    checkpointer = checkpoint.Checkpointer(str(tmp_path))
    checkpointer.save(0, pretrain.state.replace(ema_params=target))
    checkpointer.wait()
    checkpointer.close()
    config = ac_config(encoder_from=f"{tmp_path}:0")
    run = loop.build_run(config)
    state = loop.with_pretrained_encoder(run.state, config.ac.encoder_from)
    for got, want in zip(jax.tree.leaves(state.params["encoder"]), jax.tree.leaves(target)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    for got, want in zip(jax.tree.leaves(state.params["predictor"]), jax.tree.leaves(run.state.params["predictor"])):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
