"""Sampling planners over action sequences: CEM and MPPI, jitted and batched over episodes.

The planner knows neither environments nor models. It minimises an energy
``energy_fn(problem, actions [N, H, A]) -> [N]`` over N candidate sequences of horizon H and action size A, where
``problem`` is any pytree describing one planning problem (e.g. the current frame embedding, proprio and the goal
embedding). ``plan_batch`` vmaps one jitted plan over a leading episode axis of ``problem``, keys, means and stds.

Both planners run the same loop (``settings.iterations`` times, under ``lax.scan``):
  1. sample ``num_samples`` sequences ~ N(mean, std), the first replaced by the mean itself, all clipped to
     [low, high] per action dimension;
  2. keep the ``num_elites`` lowest energies (NaN energies count as +inf);
  3. CEM: mean and unbiased std of the elites; MPPI: their softmax(-(E - E_min) / temperature)-weighted mean and std;
  4. new = (1 - momentum) * elite statistic + momentum * old, separately for mean and std; std clipped to
     [min_std, max_std].
The result's ``actions`` is the lowest-energy candidate scored over all iterations, so it is never worse than any
mean it sampled around (the initial mean included); DINO-WM and V-JEPA 2-AC return their final mean instead, and
TD-MPC2 an elite drawn by its weight. The mean after the last update is not scored; it comes back as ``mean`` for a
warm start (``shift_plan``). Same key, same inputs: bit-identical plans (vjepa2 #32).
"""

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

EnergyFn = Callable[[Any, jax.Array], jax.Array]
KINDS = ("cem", "mppi")


@dataclasses.dataclass(frozen=True)
class PlannerSettings:
    """One planner's settings; frozen and hashable, so it is a static argument of the jitted planners.

    Attributes:
        kind: "cem" or "mppi".
        horizon: H, actions per planned sequence.
        num_samples: N, candidate sequences scored per iteration (the current mean is one of them).
        num_elites: K, lowest-energy candidates the update uses (CEM's top-k); CEM needs K >= 2 (unbiased std).
        iterations: Sample-score-update rounds per plan.
        init_std: Sampling std of a fresh plan (``initial_plan``) and of ``shift_plan``'s warm start.
        momentum_mean: m in new mean = (1 - m) * elite mean + m * old mean (V-JEPA 2-AC), in [0, 1).
        momentum_std: The same for the std.
        temperature: MPPI's softmax temperature over elite energies (unused by CEM).
        min_std: Lower clip of the std after each update.
        max_std: Upper clip of the std after each update.
    """

    kind: str = "cem"
    horizon: int = 5
    num_samples: int = 300
    num_elites: int = 30
    iterations: int = 30
    init_std: float = 1.0
    momentum_mean: float = 0.0
    momentum_std: float = 0.0
    temperature: float = 1.0
    min_std: float = 0.0
    max_std: float = math.inf

    def __post_init__(self) -> None:
        _validate(self)


def _validate(s: PlannerSettings) -> None:
    """Raises ValueError naming the first invalid field of ``s``."""
    if s.kind not in KINDS:
        raise ValueError(f"PlannerSettings.kind must be one of {KINDS}, got {s.kind!r}")
    for field in ("horizon", "num_samples", "num_elites", "iterations"):
        value = getattr(s, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"PlannerSettings.{field} must be an int >= 1, got {value!r}")
    if s.num_elites > s.num_samples:
        raise ValueError(f"PlannerSettings.num_elites ({s.num_elites}) must be <= num_samples ({s.num_samples})")
    if s.kind == "cem" and s.num_elites < 2:
        raise ValueError(f"PlannerSettings.num_elites must be >= 2 for cem (unbiased elite std), got {s.num_elites}")
    for field in ("momentum_mean", "momentum_std"):
        if not 0.0 <= getattr(s, field) < 1.0:
            raise ValueError(f"PlannerSettings.{field} must be in [0, 1), got {getattr(s, field)!r}")
    for field in ("init_std", "temperature"):
        if not getattr(s, field) > 0.0:
            raise ValueError(f"PlannerSettings.{field} must be > 0, got {getattr(s, field)!r}")
    if not 0.0 <= s.min_std <= s.max_std:
        raise ValueError(f"PlannerSettings.min_std ({s.min_std}) must be in [0, max_std ({s.max_std})]")


# DINO-WM PushT (gaoyuezhou/dino_wm conf/plan_pusht.yaml, planning/cem.py): horizon 5, 300 samples, top 30,
# 30 optimisation steps, var_scale 1; no momentum and no std clip.
CEM_DINO_WM_PUSHT = PlannerSettings()
# V-JEPA 2-AC (vjepa2 notebooks/utils/world_model_wrapper.py default mpc_args): rollout 2, 400 samples, top 10,
# 10 CEM steps, momenta 0.15; init std = maxnorm 0.05 (their gripper std of 1.0 is per dimension: pass an [H, A]
# std to the planner for that).
CEM_VJEPA2_AC = PlannerSettings(horizon=2, num_samples=400, num_elites=10, iterations=10, init_std=0.05,
                                momentum_mean=0.15, momentum_std=0.15)
# TD-MPC2 (nicklashansen/tdmpc2 tdmpc2/config.yaml, tdmpc2.py): 512 samples, 64 elites, 6 iterations, horizon 3,
# min_std 0.05, max_std 2, init std = max_std. Their temperature 0.5 multiplies (value - max value), i.e. it is
# an inverse temperature; with energy = -value, temperature 1 / 0.5 = 2 here gives the same weights. Differences:
# the current mean is one of the candidates here, no policy-prior samples (num_pi_trajs), and the plan is the
# best sequence scored rather than an elite drawn by its weight.
MPPI_TDMPC2 = PlannerSettings(kind="mppi", horizon=3, num_samples=512, num_elites=64, iterations=6, init_std=2.0,
                              temperature=2.0, min_std=0.05, max_std=2.0)
DEFAULTS = {"cem": CEM_DINO_WM_PUSHT, "mppi": MPPI_TDMPC2}


def planner_settings(kind: str = "cem", **overrides) -> PlannerSettings:
    """The published defaults of ``kind`` (cem: DINO-WM PushT; mppi: TD-MPC2) with ``overrides``, validated."""
    if kind not in DEFAULTS:
        raise ValueError(f"PlannerSettings.kind must be one of {KINDS}, got {kind!r}")
    return dataclasses.replace(DEFAULTS[kind], **overrides)


def describe(settings: PlannerSettings) -> dict:
    """Every setting plus the budget of one plan: energy calls (N x iterations) and sequence steps (x H)."""
    calls = settings.num_samples * settings.iterations
    return {**dataclasses.asdict(settings), "energy_calls": calls, "sequence_steps": calls * settings.horizon}


class PlanResult(NamedTuple):
    """One plan (``plan_batch`` adds a leading episode axis B to every field).

    Attributes:
        actions: [H, A] lowest-energy sequence scored over all iterations.
        energy: [] its energy.
        mean: [H, A] sampling mean after the last update (not scored; the warm start for ``shift_plan``).
        std: [H, A] sampling std after the last update.
        energies: [iterations] best energy found up to and including each iteration (non-increasing).
    """

    actions: jax.Array
    energy: jax.Array
    mean: jax.Array
    std: jax.Array
    energies: jax.Array


def initial_plan(settings: PlannerSettings, action_dim: int) -> tuple[jax.Array, jax.Array]:
    """A fresh plan's (mean [H, A] of zeros, std [H, A] of init_std), as DINO-WM and TD-MPC2 start."""
    shape = (settings.horizon, action_dim)
    return jnp.zeros(shape, jnp.float32), jnp.full(shape, settings.init_std, jnp.float32)


def shift_plan(mean: jax.Array, steps: int, init_std: float) -> tuple[jax.Array, jax.Array]:
    """Warm start after executing ``steps`` actions: (mean, std), each [..., H, A].

    The mean drops its first ``steps`` actions and is padded at the end with zeros; the std restarts at
    ``init_std`` everywhere, as DINO-WM's MPC and TD-MPC2 do (a std shrunk by the last plan would stop the next
    one exploring).
    """
    horizon = mean.shape[-2]
    if not 0 <= steps <= horizon:
        raise ValueError(f"shift_plan steps must be in [0, {horizon}], got {steps}")
    pad = jnp.zeros_like(mean[..., :steps, :])
    return jnp.concatenate([mean[..., steps:, :], pad], axis=-2), jnp.full_like(mean, init_std)


def _candidates(key, mean, std, num_samples, low, high):
    """[N, H, A] sequences ~ N(mean, std), the first one the mean itself, clipped to [low, high]."""
    noise = jax.random.normal(key, (num_samples, *mean.shape), mean.dtype).at[0].set(0.0)
    return jnp.clip(mean + std * noise, low, high)


def _energies(energy_fn, problem, actions):
    """energy_fn's [N] energies with NaN (of either sign; top_k ranks one first) as +inf: never an elite."""
    energies = energy_fn(problem, actions)
    chex.assert_shape(energies, (actions.shape[0],))
    return jnp.where(jnp.isnan(energies), jnp.inf, energies)


def _cem_stats(elites, energies, settings):
    """Mean and unbiased std (torch's default, as DINO-WM and V-JEPA 2-AC) of the elites [K, H, A]."""
    del energies, settings
    return elites.mean(0), elites.std(0, ddof=1)


def _mppi_stats(elites, energies, settings):
    """softmax(-(E - E_min) / temperature)-weighted mean and (biased) std of the elites [K, H, A] (TD-MPC2)."""
    weights = jax.nn.softmax(-energies / settings.temperature)[:, None, None]  # softmax subtracts E_min itself
    mean = (weights * elites).sum(0)
    return mean, jnp.sqrt((weights * jnp.square(elites - mean)).sum(0))


def _blend(new, old, momentum):
    """(1 - momentum) * new + momentum * old (V-JEPA 2-AC's CEM momenta)."""
    return (1.0 - momentum) * new + momentum * old


def _optimise(kind, stats_fn, energy_fn, problem, key, mean, std, settings, low, high) -> PlanResult:
    """The loop shared by CEM and MPPI (module docstring); ``stats_fn`` is the elite update of ``kind``."""
    if settings.kind != kind:
        raise ValueError(f"{kind}() got PlannerSettings.kind={settings.kind!r}; plan() dispatches on it")
    chex.assert_shape(mean, (settings.horizon, None))
    chex.assert_equal_shape([mean, std])
    low, high = jnp.asarray(low, mean.dtype), jnp.asarray(high, mean.dtype)
    chex.assert_shape([low, high], (mean.shape[1],))

    def step(carry, step_key):
        mean, std, best_actions, best_energy = carry
        actions = _candidates(step_key, mean, std, settings.num_samples, low, high)
        negated, elite = jax.lax.top_k(-_energies(energy_fn, problem, actions), settings.num_elites)
        elite_mean, elite_std = stats_fn(actions[elite], -negated, settings)
        mean = _blend(elite_mean, mean, settings.momentum_mean)
        std = jnp.clip(_blend(elite_std, std, settings.momentum_std), settings.min_std, settings.max_std)
        better = -negated[0] < best_energy
        best_actions = jnp.where(better, actions[elite[0]], best_actions)
        best_energy = jnp.where(better, -negated[0], best_energy)
        return (mean, std, best_actions, best_energy), best_energy

    start = (mean, std, jnp.clip(mean, low, high), jnp.array(jnp.inf, mean.dtype))
    (mean, std, actions, energy), energies = jax.lax.scan(step, start, jax.random.split(key, settings.iterations))
    return PlanResult(actions, energy, mean, std, energies)


@functools.partial(jax.jit, static_argnames=("energy_fn", "settings"))
def cem(energy_fn: EnergyFn, problem, key: jax.Array, mean: jax.Array, std: jax.Array, *,
        settings: PlannerSettings, low: jax.Array, high: jax.Array) -> PlanResult:
    """CEM from mean/std [H, A], actions clipped to low/high [A]: a PlanResult. energy_fn and settings are static."""
    return _optimise("cem", _cem_stats, energy_fn, problem, key, mean, std, settings, low, high)


@functools.partial(jax.jit, static_argnames=("energy_fn", "settings"))
def mppi(energy_fn: EnergyFn, problem, key: jax.Array, mean: jax.Array, std: jax.Array, *,
         settings: PlannerSettings, low: jax.Array, high: jax.Array) -> PlanResult:
    """MPPI from mean/std [H, A], actions clipped to low/high [A]: a PlanResult. energy_fn and settings are static."""
    return _optimise("mppi", _mppi_stats, energy_fn, problem, key, mean, std, settings, low, high)


_PLANNERS = {"cem": cem, "mppi": mppi}


def plan(energy_fn: EnergyFn, problem, key: jax.Array, mean: jax.Array, std: jax.Array, *,
         settings: PlannerSettings, low: jax.Array, high: jax.Array) -> PlanResult:
    """``cem`` or ``mppi`` as ``settings.kind`` says (same arguments)."""
    return _PLANNERS[settings.kind](energy_fn, problem, key, mean, std, settings=settings, low=low, high=high)


@functools.partial(jax.jit, static_argnames=("energy_fn", "settings"))
def plan_batch(energy_fn: EnergyFn, problems, keys: jax.Array, mean: jax.Array, std: jax.Array, *,
               settings: PlannerSettings, low: jax.Array, high: jax.Array, shared: dict | None = None) -> PlanResult:
    """``plan`` for B episodes under one jit: every leaf of ``problems`` and keys [B], mean/std [B, H, A] carry a
    leading episode axis; low/high [A] are shared. Every PlanResult field gains the leading B. ``shared``: a dict
    of leaves without the episode axis (model weights); each episode's energy then sees the dict
    {**shared, **problem} (``problems`` a dict too).

    Matches planning each episode alone to float32 rounding, not bit for bit: under vmap XLA may order the
    energy's reductions differently. Each call is itself reproducible bit for bit.
    """
    chex.assert_rank(mean, 3)
    chex.assert_equal_shape_prefix([mean, std, keys], 1)

    def one(shared, problem, key, mean, std):
        problem = problem if shared is None else {**shared, **problem}
        return plan(energy_fn, problem, key, mean, std, settings=settings, low=low, high=high)

    return jax.vmap(one, in_axes=(None, 0, 0, 0, 0))(shared, problems, keys, mean, std)
