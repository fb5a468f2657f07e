"""Goal reaching with an action-conditioned world model: MPC in embedding space, DINO-WM's evaluation protocol.

    model = plan.load_world_model("runs/pusht_ac")
    summary = plan.evaluate(model, "pusht", episodes=50, seed=0, out_dir="runs/pusht_ac/plan")

Episode e of seed S: the environment resets with a seed drawn from (S, e) and runs a held-out exploration policy
(exploration.episode_policy, seeded apart from the training data's); the start is its state after up to
`GOAL_WARMUP` steps, the goal its observation `GOAL_STEPS` steps later, and every method replays the same start.
Each replan encodes the current frame, plans `horizon` macro-actions (frameskip env actions each, in the training
data's normalised units) with CEM or MPPI on the latent energy (`LatentEnergy`) and executes the first `execute`
of them; an episode that meets the goal (env.success, which the planner never sees) stops there, as DINO-WM's MPC
does. Episodes are planned together (planning.plan_batch). Baselines: uniformly random actions, and an oracle
that plans with the simulator itself as its model (energy = env.state_distance of the simulated end state), which
bounds what the planner can reach.
"""

import dataclasses
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from jepa_jax import envs as envs_lib, export, native, planning, storage
from jepa_jax import config as config_lib
from jepa_jax.data import exploration, trajectories
from jepa_jax.models import ac_predictor, vit

GOAL_STEPS = 25  # env steps from the start state to the goal (DINO-WM: goal_H 5 x frameskip 5)
# Starts lie up to GOAL_WARMUP env steps inside a held-out trajectory, as DINO-WM samples them inside its held-out
# expert trajectories (PushT: mid-push, the agent near the block; from a reset it is far from it).
GOAL_WARMUP = 50
DISTANCES = ("l1", "l2")
GOAL_SEED_KEY = 7  # spawn key that keeps evaluation episodes apart from `data collect`'s (seed, index) episodes
# Weight of the proprio term of the energy. PushT (2000-step pusht_ac.py model on version-1 exploration data, 20
# episodes of seed 100): 1 -> 0 % success (the agent stops about 58 short of block-still goals), 10 -> 30 %,
# 30 -> 30 %. With mid-trajectory starts and faster pushes than the shipped pusher's (offsets 20 / 10; an H200
# sweep, 50 episodes of seed 0): 3 -> 22 %, 10 -> 54 %, 30 -> 70 %. The shipped slow pushes were run at 10 only.
DEFAULT_PROPRIO_WEIGHT = 10.0


@dataclasses.dataclass(frozen=True)
class LatentEnergy:
    """energy(problem, actions [N, H, kA]) -> [N]: distance of the imagined final frame to the goal frame
    (mean |.| or mean square over its [P, D] features) + proprio_weight x mean |final proprio - goal proprio|.

    problem: {"params": predictor weights, "state": [P, D], "proprio": [S], "goal": [P, D], "goal_proprio": [S]}
    (normalised features, WorldModel.encode; normalised proprio). Frozen and hashable: a static argument of the
    planners' jit.
    """
    predictor: ac_predictor.ACPredictor
    grid_hw: tuple[int, int]
    distance: str = "l1"
    proprio_weight: float = DEFAULT_PROPRIO_WEIGHT
    state_norm: str = "layer"

    def __call__(self, problem, actions):
        n = actions.shape[0]
        tile = lambda x: jnp.broadcast_to(x, (n,) + x.shape)
        states, proprio = ac_predictor.rollout(self.predictor, problem["params"], tile(problem["state"]),
                                               tile(problem["proprio"]), actions, self.grid_hw, self.state_norm)
        error = states[:, -1] - problem["goal"]
        energy = (jnp.abs(error) if self.distance == "l1" else jnp.square(error)).mean(axis=(1, 2))
        if self.proprio_weight:
            energy = energy + self.proprio_weight * jnp.abs(proprio[:, -1] - problem["goal_proprio"]).mean(-1)
        return energy


@dataclasses.dataclass
class WorldModel:
    """A trained action-conditioned model: its encoder, predictor, weights and the data's normalisation."""
    config: object
    encoder: vit.VisionTransformer
    predictor: ac_predictor.ACPredictor
    params: dict  # {"encoder", "predictor"}
    stats: trajectories.TrajectoryStats
    step: int | None = None
    source: str = ""
    state_moments: tuple | None = None  # state_norm "batch": the training data's (mean, std) [P, D]

    @property
    def frameskip(self) -> int:
        return self.config.ac.frameskip

    @property
    def image_size(self) -> int:
        return self.config.ac.image_size

    def check_env(self, env: envs_lib.Env) -> None:
        """One-line errors for an environment whose actions or proprio do not fit the model."""
        ac = self.config.ac
        if env.action_dim * ac.frameskip != ac.action_dim:
            raise ValueError(f"config.ac.action_dim={ac.action_dim} of the model does not match environment "
                             f"{env.name!r}: {env.action_dim}-d actions x frameskip {ac.frameskip} = "
                             f"{env.action_dim * ac.frameskip}; plan with the environment the model was trained on")
        if env.proprio_dim != ac.proprio_dim:
            raise ValueError(f"config.ac.proprio_dim={ac.proprio_dim} of the model does not match environment "
                             f"{env.name!r}'s {env.proprio_dim}-d proprio")

    def encode(self, pixels) -> jax.Array:
        """uint8 [B, H, W, 3] frames -> [B, P, D] state tokens normalised as in training (config.ac.state_norm)."""
        pixels = np.asarray(pixels)
        want = (self.image_size, self.image_size, 3)
        if pixels.dtype != np.uint8 or pixels.shape[1:] != want:
            raise ValueError(f"frames must be uint8 [B, {want[0]}, {want[1]}, 3] (config.ac.image_size), got "
                             f"{pixels.dtype} {list(pixels.shape)}")
        features = _encode_states(self.encoder, self.params["encoder"], pixels,
                                  config_lib.token_grid(self.config)[1:], self.config.ac.pool_grid)
        return ac_predictor.normalize_states(features, self.config.ac.state_norm, self.state_moments)

    def energy(self, distance: str = "l1", proprio_weight: float = DEFAULT_PROPRIO_WEIGHT) -> LatentEnergy:
        if distance not in DISTANCES:
            raise ValueError(f"distance={distance!r}: choose one of {list(DISTANCES)}")
        return LatentEnergy(self.predictor, config_lib.ac_state_grid(self.config), distance, proprio_weight,
                            self.config.ac.state_norm)

    def action_bounds(self, env: envs_lib.Env) -> tuple[np.ndarray, np.ndarray]:
        """The environment's action bounds in normalised macro-action units: (low, high) [frameskip * A]."""
        tiled = lambda bound: np.tile(bound, self.frameskip)[None]
        low, high = (self.stats.normalize_actions(tiled(b))[0] for b in (env.action_low, env.action_high))
        return low.astype(np.float32), high.astype(np.float32)


def _encode_states_impl(encoder, params, pixels, grid_hw, pool_grid):
    """uint8 [B, H, W, 3] -> pooled, unnormalised state tokens [B, P, D]."""
    features = vit.encode_frames(encoder, params, vit.normalize_video(pixels[:, None]))
    return ac_predictor.pool_states(features, grid_hw, pool_grid)[:, 0]


_encode_states = jax.jit(_encode_states_impl, static_argnums=(0, 3, 4))


def data_state_moments(model: WorldModel, directory: str, episodes: int = 64, chunk: int = 512) -> tuple:
    """The training data's state moments for state_norm "batch" (what the batch moments of training estimate):
    mean and std [P, D] of the pooled features of every frameskip-th frame of the first `episodes` episodes."""
    meta = trajectories.read_meta(directory)
    fields, count = trajectories.expected_fields(meta), min(episodes, meta["episodes"])
    frames = np.concatenate([trajectories.read_episode(trajectories.episode_path(directory, i), fields)["frames"]
                             [::model.frameskip] for i in range(count)])
    grid = config_lib.token_grid(model.config)[1:]
    features = np.concatenate([np.asarray(_encode_states(model.encoder, model.params["encoder"], frames[i:i + chunk],
                                                         grid, model.config.ac.pool_grid))
                               for i in range(0, len(frames), chunk)])
    return ac_predictor.batch_moments(jnp.asarray(features)[:, None])


def load_world_model(path: str, *, step: int | None = None, data: str | None = None) -> WorldModel:
    """The world model of a `jepa-jax train` run directory (objective "ac") or its native export; `data` is the
    trajectory folder whose meta.json normalised the training data (default: config.data.trajectories)."""
    weights = export.load_weights(path, step)
    config = weights.config
    if config.objective != "ac":
        raise ValueError(f"{path} is a {config.objective!r} model; planning needs an action-conditioned one "
                         f"(config.objective='ac', e.g. experiments/configs/pusht_ac.py)")
    data = data or config.data.trajectories
    try:
        stats = trajectories.TrajectoryStats.from_meta(trajectories.read_meta(data))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{data}: the training trajectories' meta.json (action/proprio normalisation) is "
                                f"not there; pass the collected folder with --data") from err
    as_tree = lambda flat: jax.tree.map(jnp.asarray, native.unflatten(flat))
    model = WorldModel(config, config_lib.build_encoder(config), config_lib.build_predictor(config),
                       {"encoder": as_tree(weights.groups["encoder"]),
                        "predictor": as_tree(weights.groups["predictor"])}, stats, weights.step, path)
    if config.ac.state_norm == "batch":
        model.state_moments = data_state_moments(model, data)
    return model


def random_world_model(config) -> WorldModel:
    """The architecture of an `ac` config with random weights and unit normalisation (timing only)."""
    encoder, predictor = config_lib.build_encoder(config), config_lib.build_predictor(config)
    size = config.ac.image_size
    clips = jnp.zeros((1, config.model.tubelet_size, size, size, 3))
    params = {"encoder": encoder.init(jax.random.key(0), clips)["params"],
              "predictor": predictor.init(jax.random.key(1), *config_lib.predictor_inputs(config))["params"]}
    ones = lambda n: np.ones(n, np.float32)
    zeros = lambda n: np.zeros(n, np.float32)
    action_dim = config.ac.action_dim // config.ac.frameskip
    stats = trajectories.TrajectoryStats(zeros(action_dim), ones(action_dim), zeros(config.ac.proprio_dim),
                                         ones(config.ac.proprio_dim))
    moments = None
    if config.ac.state_norm == "batch":  # unit moments [P, D], as the actions and proprio get
        shape = (int(np.prod(config_lib.ac_state_grid(config))), config_lib.encoder_size(config).width)
        moments = (jnp.zeros(shape), jnp.ones(shape))
    return WorldModel(config, encoder, predictor, params, stats, None, "random weights", moments)


# --------------------------------------------------------------------------------------------- episodes and goals

def _replay(env: envs_lib.Env, env_seed: int, actions: np.ndarray) -> envs_lib.Observation:
    """env.reset(env_seed), then env actions [W, A]; the last observation (velocities included, which
    env.set_state would zero)."""
    obs = env.reset(env_seed)
    for action in actions:
        obs = env.step(action)
    return obs


@dataclasses.dataclass
class Episode:
    """One goal-reaching problem and what happened in it (numpy, host side)."""
    env_seed: int
    warmup_actions: np.ndarray  # env actions [W, A] from the reset to the start
    goal: envs_lib.Observation
    start: envs_lib.Observation
    frames: list  # uint8 [H, W, 3] after each replan (the start first)
    reached_at: int | None = None  # env steps taken when success was first seen
    final_distance: float = math.nan
    goal_policy: str = ""  # the exploration policy that made the goal: "scripted" or "random_walk"

    def restart(self, env: envs_lib.Env) -> envs_lib.Observation:
        """Put env at the episode's start and observe it."""
        return _replay(env, self.env_seed, self.warmup_actions)


def goal_episode(env: envs_lib.Env, seed: int, index: int, warmup: int = GOAL_WARMUP) -> Episode:
    """Episode `index` of evaluation seed `seed`: one held-out exploration trajectory from a reset; the start is
    its state after W ~ U{0..warmup} steps, the goal GOAL_STEPS steps later. The environment is left at the start.
    """
    env_sequence, policy_sequence = np.random.SeedSequence([seed, index, GOAL_SEED_KEY]).spawn(2)
    env_seed, rng = int(env_sequence.generate_state(1)[0]), np.random.default_rng(policy_sequence)
    obs = env.reset(env_seed)
    kind, policy = exploration.episode_policy(env, rng, policy_mix=0.5)
    steps = int(rng.integers(0, warmup, endpoint=True))
    actions = np.zeros((steps + GOAL_STEPS, env.action_dim))
    for t in range(len(actions)):
        actions[t] = policy(obs)
        obs = env.step(actions[t])
    start = _replay(env, env_seed, actions[:steps])
    return Episode(env_seed, actions[:steps], obs, start, [start.pixels], goal_policy=kind)


def _advance(env, episode: Episode, actions, steps_taken: int, check_every: int) -> envs_lib.Observation:
    """Execute env actions [L, A] unless the episode already reached its goal, checking success every
    `check_every` steps; returns the last observation."""
    obs = None
    for i, action in enumerate(actions):
        obs = env.step(action)
        if (i + 1) % check_every == 0 and episode.reached_at is None and env.success(obs.state,
                                                                                    episode.goal.state):
            episode.reached_at = steps_taken + i + 1
            break
    return obs


def _finish(env, episode: Episode, obs) -> None:
    episode.final_distance = env.state_distance(obs.state, episode.goal.state)


# ------------------------------------------------------------------------------------------------- the planners

def run_model(model: WorldModel, env_name: str, episodes: list, settings: planning.PlannerSettings, *, replans: int,
              execute: int, key, distance: str, proprio_weight: float, progress: bool = True) -> dict:
    """MPC with the world model on `episodes` (fresh environments reset to each start), all planned together.

    Returns {"replan_seconds": [per replan, wall time of one batched plan], "energies": [replans, B]}.
    """
    env_list = [envs_lib.make(env_name, model.image_size) for _ in episodes]
    model.check_env(env_list[0])
    obs = [ep.restart(env) for env, ep in zip(env_list, episodes)]
    energy_fn = model.energy(distance, proprio_weight)
    low, high = model.action_bounds(env_list[0])
    goals = model.encode(np.stack([ep.goal.pixels for ep in episodes]))
    goal_proprio = model.stats.normalize_proprio(np.stack([ep.goal.proprio for ep in episodes]))
    mean, std = planning.initial_plan(settings, low.shape[0])
    mean, std = (jnp.broadcast_to(x, (len(episodes),) + x.shape) for x in (mean, std))
    step_actions, seconds, energies = execute * model.frameskip, [], []
    for r in tqdm.trange(replans, desc="plan (model)", disable=not progress):
        problems = {"state": model.encode(np.stack([o.pixels for o in obs])),
                    "proprio": jnp.asarray(model.stats.normalize_proprio(np.stack([o.proprio for o in obs]))),
                    "goal": goals, "goal_proprio": jnp.asarray(goal_proprio)}
        started = time.perf_counter()
        result = planning.plan_batch(energy_fn, problems, jax.random.split(jax.random.fold_in(key, r), len(obs)),
                                     mean, std, settings=settings, low=low, high=high,
                                     shared={"params": model.params["predictor"]})
        result = jax.block_until_ready(result)
        seconds.append(time.perf_counter() - started)
        energies.append(np.asarray(result.energy))
        actions = model.stats.denormalize_actions(np.asarray(result.actions[:, :execute]).reshape(len(obs), -1))
        for i, (env, ep) in enumerate(zip(env_list, episodes)):
            if ep.reached_at is None:
                obs[i] = _advance(env, ep, actions[i].reshape(step_actions, -1), r * step_actions, step_actions)
                ep.frames.append(obs[i].pixels)
        mean, std = planning.shift_plan(result.mean, execute, settings.init_std)
        if all(ep.reached_at is not None for ep in episodes):
            break
    for env, ep, o in zip(env_list, episodes, obs):
        _finish(env, ep, o)
    return {"replan_seconds": seconds, "energies": np.stack(energies)}


def run_random(env_name: str, episodes: list, *, steps: int, check_every: int, seed: int, image_size: int) -> dict:
    """Uniformly random env actions for `steps` steps per episode (success checked every `check_every`)."""
    env = envs_lib.make(env_name, image_size)
    rng = np.random.default_rng([seed, GOAL_SEED_KEY, 1])
    for ep in episodes:
        ep.restart(env)
        actions = rng.uniform(env.action_low, env.action_high, size=(steps, env.action_dim))
        obs = _advance(env, ep, actions, 0, check_every)
        ep.frames.append(obs.pixels)
        _finish(env, ep, obs)
    return {}


def simulator_energy(env: envs_lib.Env, frameskip: int, centre: np.ndarray, scale: np.ndarray):
    """energy(problem {"state", "goal_state"}, actions [N, H, frameskip * A]) -> [N] of the simulator itself:
    env.state_distance after playing each sequence, in units of (action - centre) / scale, from problem["state"]
    (a host callback; float32)."""
    def host(state, goal_state, actions):
        energies = []
        for sequence in centre + scale * np.asarray(actions, np.float64):
            obs = env.set_state(np.asarray(state, np.float64))
            for action in sequence.reshape(-1, env.action_dim):
                obs = env.step(action)
            energies.append(env.state_distance(obs.state, np.asarray(goal_state, np.float64)))
        return np.asarray(energies, np.float32)

    def energy(problem, actions):
        return jax.pure_callback(host, jax.ShapeDtypeStruct(actions.shape[:1], jnp.float32), problem["state"],
                                 problem["goal_state"], actions)
    return energy


def run_oracle(env_name: str, episodes: list, settings: planning.PlannerSettings, *, replans: int, execute: int,
               frameskip: int, key, image_size: int, progress: bool = True) -> dict:
    """MPC with the simulator as the model (a render-free copy of the environment), one episode at a time. Actions
    are planned in units of (action - centre of the range) / (range / 4), so init_std 1 spans the range."""
    env, model_env = envs_lib.make(env_name, image_size), envs_lib.make(env_name, image_size, render=False)
    low, high = (np.tile(bound.astype(np.float64), frameskip) for bound in (env.action_low, env.action_high))
    centre, scale = (low + high) / 2, (high - low) / 4
    energy_fn = simulator_energy(model_env, frameskip, centre, scale)
    unit_low, unit_high = ((bound - centre) / scale for bound in (low, high))
    step_actions, seconds = execute * frameskip, []
    for e, ep in enumerate(tqdm.tqdm(episodes, desc="plan (oracle)", disable=not progress)):
        obs = ep.restart(env)
        mean, std = planning.initial_plan(settings, low.shape[0])
        for r in range(replans):
            problem = {"state": jnp.asarray(obs.state, jnp.float32),
                       "goal_state": jnp.asarray(ep.goal.state, jnp.float32)}
            started = time.perf_counter()
            result = jax.block_until_ready(planning.plan(energy_fn, problem, jax.random.fold_in(key, e * replans + r),
                                                         mean, std, settings=settings, low=unit_low, high=unit_high))
            seconds.append(time.perf_counter() - started)
            actions = centre + scale * np.asarray(result.actions[:execute], np.float64)
            obs = _advance(env, ep, actions.reshape(step_actions, -1), r * step_actions, step_actions)
            ep.frames.append(obs.pixels)
            if ep.reached_at is not None:
                break
            mean, std = planning.shift_plan(result.mean, execute, settings.init_std)
        _finish(env, ep, obs)
    return {"replan_seconds": seconds}


# ------------------------------------------------------------------------------------------------ summary, report

def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate."""
    if not trials:
        return (math.nan, math.nan)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise(episodes: list, extra: dict) -> dict:
    """success rate, its 95 % interval, mean final state distance, episodes, success per goal policy
    {kind: [successes, episodes]} (PushT: the pusher's goals move the block, random walks' mostly do not)
    [, replan latency]."""
    successes = sum(ep.reached_at is not None for ep in episodes)
    low, high = wilson_interval(successes, len(episodes))
    by_policy = {}
    for ep in episodes:
        counts = by_policy.setdefault(ep.goal_policy, [0, 0])
        counts[0] += ep.reached_at is not None
        counts[1] += 1
    summary = {"success_rate": successes / len(episodes), "success_ci95": [round(low, 4), round(high, 4)],
               "mean_final_distance": float(np.mean([ep.final_distance for ep in episodes])),
               "episodes": len(episodes), "success_by_goal_policy": dict(sorted(by_policy.items()))}
    seconds = extra.get("replan_seconds", [])[1:]  # the first replan compiles
    if seconds:
        summary["replan_seconds_median"] = float(np.median(seconds))
    return summary


def _write_report(rows: dict, info: dict, path: str) -> None:
    lines = [f"# Planning report: {info['env']}, {info['episodes']} episodes, seed {info['seed']}", "",
             f"Model `{info['model']}` (step {info['step']}). Start: up to {info['warmup']} env steps into a held-out "
             f"exploration trajectory; goal: {GOAL_STEPS} steps further along it; success = env.success (the planner "
             f"never sees it), checked after every executed chunk; up to {info['replans']} replans of "
             f"{info['execute']} macro-action(s).", "",
             f"Planner: `{json.dumps(info['planner'])}`; oracle planner: `{json.dumps(info['oracle_planner'])}`.", "",
             "| method | success | 95 % interval | by goal policy | mean final state distance | episodes | "
             "median replan s |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        by_policy = ", ".join(f"{kind} {hit}/{n}" for kind, (hit, n) in r["success_by_goal_policy"].items())
        lines.append(f"| {name} | {r['success_rate']:.3f} | [{r['success_ci95'][0]:.3f}, {r['success_ci95'][1]:.3f}] "
                     f"| {by_policy} | {r['mean_final_distance']:.2f} | {r['episodes']} | "
                     f"{r.get('replan_seconds_median', float('nan')):.3f} |")
    lines += ["", "`plan_strip.png`: per episode, the start, the goal and the frames after each replan (model)."]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def _plot_strip(episodes: list, path: str, shown: int = 4) -> None:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    episodes = episodes[:shown]
    columns = 1 + max(len(ep.frames) for ep in episodes)
    fig, axes = plt.subplots(len(episodes), columns, figsize=(1.4 * columns, 1.5 * len(episodes)), squeeze=False)
    for row, ep in zip(axes, episodes):
        images = [("goal", ep.goal.pixels)] + [("start" if i == 0 else f"replan {i}", f)
                                               for i, f in enumerate(ep.frames)]
        for ax, (title, image) in zip(row, images + [(None, None)] * columns):  # episodes that stop early
            ax.axis("off")
            if image is not None:
                ax.imshow(image)
                ax.set_title(title, fontsize=7)
        row[0].set_title(f"goal ({'reached' if ep.reached_at is not None else 'missed'})", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def evaluate(model: WorldModel, env_name: str, *, episodes: int = 50, seed: int = 0, out_dir: str | None = None,
             settings: planning.PlannerSettings = planning.CEM_DINO_WM_PUSHT, replans: int = 10, execute: int = 1,
             distance: str = "l1", proprio_weight: float = DEFAULT_PROPRIO_WEIGHT, baselines: bool = True,
             oracle_settings: planning.PlannerSettings | None = None, oracle_episodes: int | None = None,
             warmup: int = GOAL_WARMUP, progress: bool = True) -> dict:
    """DINO-WM-protocol goal reaching (module docstring) with the model and, with `baselines`, random actions and
    the simulator oracle (on the first `oracle_episodes`). Writes plan_report.md, plan.json and plan_strip.png to
    out_dir when given. Returns {"model": summary, "random": ..., "oracle": ..., "info": {...}}."""
    if out_dir:
        storage.check_local(out_dir, "--out")
    if not 1 <= execute <= settings.horizon:
        raise ValueError(f"execute={execute} must be in [1, planner horizon {settings.horizon}]")
    probe_env = envs_lib.make(env_name, model.image_size)
    model.check_env(probe_env)
    make_episodes = lambda count: [goal_episode(probe_env, seed, i, warmup) for i in range(count)]
    key = jax.random.key(seed)
    model_episodes = make_episodes(episodes)
    results = {"model": summarise(model_episodes, run_model(
        model, env_name, model_episodes, settings, replans=replans, execute=execute, key=key, distance=distance,
        proprio_weight=proprio_weight, progress=progress))}
    oracle_settings = oracle_settings or planning.planner_settings(
        "cem", horizon=settings.horizon, num_samples=64, num_elites=8, iterations=5)
    if baselines:
        steps = replans * execute * model.frameskip
        random_episodes = make_episodes(episodes)
        results["random"] = summarise(random_episodes, run_random(
            env_name, random_episodes, steps=steps, check_every=execute * model.frameskip, seed=seed,
            image_size=model.image_size))
        oracle_episodes = make_episodes(min(episodes, oracle_episodes or episodes))
        results["oracle"] = summarise(oracle_episodes, run_oracle(
            env_name, oracle_episodes, oracle_settings, replans=replans, execute=execute,
            frameskip=model.frameskip, key=jax.random.fold_in(key, 1), image_size=model.image_size,
            progress=progress))
    info = {"env": env_name, "episodes": episodes, "seed": seed, "model": model.source,
            "step": model.step, "warmup": warmup, "replans": replans, "execute": execute, "distance": distance,
            "proprio_weight": proprio_weight, "planner": planning.describe(settings),
            "oracle_planner": planning.describe(oracle_settings)}
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        _write_report(results, info, os.path.join(out_dir, "plan_report.md"))
        _plot_strip(model_episodes, os.path.join(out_dir, "plan_strip.png"))
        with open(os.path.join(out_dir, "plan.json"), "w") as f:
            json.dump({**results, "info": info}, f, indent=2)
    return {**results, "info": info}
