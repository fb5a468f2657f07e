"""Planning latency of one replan (`jepa-jax bench --what plan`): CEM at DINO-WM's PushT budget (300 samples x
30 iterations x horizon 5) on the world model of a run, for one episode (what a robot waits for) and for a batch of
episodes.

Each variant is compiled once, then timed over --repeats replans on fresh keys (median and min seconds). The
energy is the one `jepa-jax plan` uses (evals.plan.LatentEnergy: attention-cached rollout of the AC predictor).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jepa_jax import config as config_lib, planning
from jepa_jax.benchmarks import timing
from jepa_jax.evals import plan

def time_replans(model: plan.WorldModel, settings: planning.PlannerSettings, batch: int, repeats: int) -> dict:
    """Seconds per batched replan of `batch` episodes (one compile, then `repeats` timed calls)."""
    energy_fn = model.energy()
    size = model.image_size
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2 * batch, size, size, 3), dtype=np.uint8)
    states = model.encode(frames)
    proprio = jnp.zeros((batch, model.config.ac.proprio_dim))
    problems = {"state": states[:batch], "proprio": proprio, "goal": states[batch:], "goal_proprio": proprio}
    mean, std = (jnp.broadcast_to(x, (batch,) + x.shape) for x in
                 planning.initial_plan(settings, model.config.ac.action_dim))
    low, high = np.full(mean.shape[-1], -3.0, np.float32), np.full(mean.shape[-1], 3.0, np.float32)

    def replan(seed):
        keys = jax.random.split(jax.random.key(seed), batch)
        return jax.block_until_ready(planning.plan_batch(
            energy_fn, problems, keys, mean, std, settings=settings, low=low, high=high,
            shared={"params": model.params["predictor"]}))

    compile_s, seconds = timing.time_calls(replan, repeats)  # seed 0 compiles
    return {"episodes": batch, "compile_s": round(compile_s, 2), "replan_s_median": round(float(np.median(seconds)), 4),
            "replan_s_min": round(min(seconds), 4),
            "sequences_per_s": round(batch * settings.num_samples * settings.iterations / float(np.median(seconds)))}


def replan_latency(model_dir: str | None, config, repeats: int = 5, batch: int = 10) -> dict:
    """Replan latency of the `ac` run in `model_dir`, or of `config`'s architecture with random weights, for one
    episode and for `batch` episodes."""
    model = plan.load_world_model(model_dir) if model_dir else plan.random_world_model(config)
    settings = planning.CEM_DINO_WM_PUSHT
    predictor = model.config.ac.predictor
    return {"measure": "plan", "model": model.source, "backend": jax.default_backend(),
            "planner": planning.describe(settings),
            "predictor": {"width": predictor.width, "depth": predictor.depth,
                          "state_tokens": int(np.prod(config_lib.ac_state_grid(model.config)))},
            "one_episode": time_replans(model, settings, 1, repeats),
            "batched": time_replans(model, settings, batch, repeats)}
