"""CEM and MPPI on analytic energies: minimisers, bounds, batching, determinism, monotone best energy, warm starts
and settings validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jepa_jax import planning

ACTION_DIM = 2
LOW, HIGH = -jnp.ones(ACTION_DIM), jnp.ones(ACTION_DIM)
# Tolerances on |plan - minimiser| per entry. MPPI's std never drops below min_std (0.05), so its samples stay
# about that far from their mean; the mean is itself a candidate and averages out most of that spread, so the best
# candidate lies within min_std of the minimiser (measured: 0.019). CEM has no std floor: its elite std shrinks by
# a roughly constant factor each iteration (measured: 3e-7 after DINO-WM's 30), so 1e-4 leaves a wide margin.
TOLERANCE = {"cem": 1e-4, "mppi": planning.MPPI_TDMPC2.min_std}


def quadratic(problem, actions):
    """sum over (h, a) of weight_ha (actions_nha - target_ha)^2: [N, H, A] -> [N]."""
    return jnp.sum(problem["weight"] * jnp.square(actions - problem["target"]), axis=(1, 2))


def rugged(problem, actions):
    """The quadratic plus ripples, so that a single iteration's best candidate can be worse than an earlier one's."""
    return quadratic(problem, actions) + 0.3 * jnp.sum(jnp.sin(12.0 * actions) ** 2, axis=(1, 2))


def problem(settings, seed=0, target_range=0.6):
    rng = np.random.default_rng(seed)
    shape = (settings.horizon, ACTION_DIM)
    return {"target": jnp.asarray(rng.uniform(-target_range, target_range, shape), jnp.float32),
            "weight": jnp.asarray(rng.uniform(0.5, 2.0, shape), jnp.float32)}


def run(settings, prob, key=0, energy_fn=quadratic, start=None):
    mean, std = start if start is not None else planning.initial_plan(settings, ACTION_DIM)
    return planning.plan(energy_fn, prob, jax.random.key(key), mean, std, settings=settings, low=LOW, high=HIGH)


@pytest.mark.parametrize("kind", planning.KINDS)
def test_reaches_the_minimiser_with_published_defaults(kind):
    settings = planning.planner_settings(kind)
    prob = problem(settings)
    result = run(settings, prob)
    assert result.actions.shape == (settings.horizon, ACTION_DIM)
    np.testing.assert_allclose(result.actions, prob["target"], atol=TOLERANCE[kind])
    np.testing.assert_allclose(result.energy, quadratic(prob, result.actions[None])[0], rtol=1e-6)
    assert settings.min_std <= result.std.min() and result.std.max() <= settings.max_std


@pytest.mark.parametrize("kind", planning.KINDS)
def test_a_target_outside_the_bounds_puts_the_plan_on_the_bound(kind):
    settings = planning.planner_settings(kind)
    prob = problem(settings)
    prob["target"] = prob["target"].at[0, 0].set(3.0).at[1, 1].set(-3.0)
    actions = run(settings, prob).actions
    assert actions.min() >= -1.0 and actions.max() <= 1.0
    assert actions[0, 0] == 1.0 and actions[1, 1] == -1.0  # clipped samples sit exactly on the bound
    inside = np.ones(actions.shape, bool)
    inside[0, 0] = inside[1, 1] = False
    # The two clipped entries leave an energy floor of about 10, below whose float32 resolution (floor x 2^-23)
    # the remaining entries' errors cannot be told apart: sqrt(floor x eps / weight), about 1.5e-3 here.
    floor = float(quadratic(prob, jnp.clip(prob["target"], -1.0, 1.0)[None])[0])
    resolution = np.sqrt(floor * np.finfo(np.float32).eps / float(prob["weight"].min()))
    np.testing.assert_allclose(actions[inside], prob["target"][inside], atol=max(TOLERANCE[kind], 4 * resolution))


@pytest.mark.parametrize("kind", planning.KINDS)
def test_never_worse_than_the_initial_mean(kind):
    settings = planning.planner_settings(kind, num_samples=8, num_elites=4, iterations=3)
    prob = problem(settings)
    start = (prob["target"], jnp.ones_like(prob["target"]))  # the minimiser, sampled around with a wide std
    result = run(settings, prob, start=start)
    assert result.energy == 0.0
    np.testing.assert_array_equal(result.actions, prob["target"])


@pytest.mark.parametrize("kind", planning.KINDS)
def test_batched_plans_match_one_at_a_time(kind):
    """Not bit-identical: under vmap XLA reorders the energy's reductions (float32 ulps, measured <= 2e-7)."""
    settings = planning.planner_settings(kind)
    probs = [problem(settings, seed=b) for b in range(4)]
    keys = jax.random.split(jax.random.key(7), 4)
    mean, std = planning.initial_plan(settings, ACTION_DIM)
    batched = planning.plan_batch(quadratic, jax.tree.map(lambda *x: jnp.stack(x), *probs), keys,
                                  jnp.stack([mean] * 4), jnp.stack([std] * 4), settings=settings, low=LOW, high=HIGH)
    assert batched.actions.shape == (4, settings.horizon, ACTION_DIM)
    assert batched.energies.shape == (4, settings.iterations)
    for b, prob in enumerate(probs):
        single = planning.plan(quadratic, prob, keys[b], mean, std, settings=settings, low=LOW, high=HIGH)
        for name, value in single._asdict().items():
            np.testing.assert_allclose(getattr(batched, name)[b], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_shared_leaves_reach_every_episode_unbatched():
    """plan_batch(shared=...): each episode's energy sees {**shared, **problem}; the same as stacking the shared
    leaf per episode."""
    settings = planning.planner_settings("cem", iterations=5)
    probs = [problem(settings, seed=b) for b in range(3)]
    keys = jax.random.split(jax.random.key(2), 3)
    mean, std = planning.initial_plan(settings, ACTION_DIM)
    mean, std = jnp.stack([mean] * 3), jnp.stack([std] * 3)
    targets = jnp.stack([p["target"] for p in probs])
    weight = probs[0]["weight"]
    shared = planning.plan_batch(quadratic, {"target": targets}, keys, mean, std, settings=settings, low=LOW,
                                 high=HIGH, shared={"weight": weight})
    stacked = planning.plan_batch(quadratic, {"target": targets, "weight": jnp.stack([weight] * 3)}, keys, mean, std,
                                  settings=settings, low=LOW, high=HIGH)
    np.testing.assert_allclose(shared.actions, stacked.actions, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(shared.energy, stacked.energy, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", planning.KINDS)
def test_same_key_same_plan_other_key_other_samples(kind):
    settings = planning.planner_settings(kind)
    prob = problem(settings)
    first = run(settings, prob, key=3)
    again = run(settings, prob, key=3, energy_fn=lambda p, a: quadratic(p, a))  # a fresh compile too
    for name, value in first._asdict().items():
        np.testing.assert_array_equal(getattr(again, name), value, err_msg=name)
    other = run(settings, prob, key=4)
    assert not np.array_equal(other.actions, first.actions)
    np.testing.assert_allclose(other.actions, prob["target"], atol=TOLERANCE[kind])


@pytest.mark.parametrize("kind", planning.KINDS)
def test_best_energy_never_increases_over_iterations(kind):
    settings = planning.planner_settings(kind, num_samples=16, num_elites=4, iterations=20, momentum_mean=0.5)
    prob = problem(settings)
    result = run(settings, prob, energy_fn=rugged)
    energies = np.asarray(result.energies)
    assert energies.shape == (20,)
    assert np.all(np.diff(energies) <= 0.0), energies
    assert energies[-1] == result.energy
    np.testing.assert_allclose(result.energy, rugged(prob, result.actions[None])[0], rtol=1e-6)


@pytest.mark.parametrize("kind", planning.KINDS)
def test_nan_energies_never_become_elites(kind):
    def nan_away_from_the_middle(prob, actions):
        """NaN of both signs (top_k ranks one sign first, the other last) where the first action leaves [-0.8, 0.8]."""
        energies = jnp.where(actions[:, 0, 0] > 0.8, jnp.nan, quadratic(prob, actions))
        return jnp.where(actions[:, 0, 0] < -0.8, -jnp.nan, energies)

    settings = planning.planner_settings(kind)
    prob = problem(settings)
    result = run(settings, prob, energy_fn=nan_away_from_the_middle)
    assert np.isfinite(result.energy) and np.all(np.isfinite(result.mean)) and np.all(np.isfinite(result.std))
    np.testing.assert_allclose(result.actions, prob["target"], atol=TOLERANCE[kind])


@pytest.mark.parametrize("momentum", [0.0, 0.25])
def test_cold_mppi_moves_to_its_best_candidate_with_momentum(momentum):
    """At a temperature far below the elites' energy gaps the weights are one-hot on the best candidate, so one
    update gives mean = (1 - m) * best + m * old mean and std = m * old std."""
    settings = planning.planner_settings("mppi", iterations=1, temperature=1e-7, min_std=0.0,
                                         momentum_mean=momentum, momentum_std=momentum)
    prob = problem(settings)
    mean, std = jnp.full((settings.horizon, ACTION_DIM), 0.1), jnp.full((settings.horizon, ACTION_DIM), 0.5)
    result = run(settings, prob, start=(mean, std))
    np.testing.assert_allclose(result.mean, (1 - momentum) * result.actions + momentum * mean, atol=1e-6)
    np.testing.assert_allclose(result.std, momentum * std, atol=1e-6)


def test_shift_plan_drops_executed_actions_and_pads_with_zeros():
    mean = jnp.arange(10.0).reshape(5, 2)
    shifted, std = planning.shift_plan(mean, 2, init_std=0.5)
    np.testing.assert_array_equal(shifted, [[4, 5], [6, 7], [8, 9], [0, 0], [0, 0]])
    np.testing.assert_array_equal(std, np.full((5, 2), 0.5))
    np.testing.assert_array_equal(planning.shift_plan(mean, 0, 1.0)[0], mean)
    np.testing.assert_array_equal(planning.shift_plan(mean, 5, 1.0)[0], np.zeros((5, 2)))
    batched, batched_std = planning.shift_plan(jnp.stack([mean, -mean]), 2, init_std=0.5)
    np.testing.assert_array_equal(batched[1], -shifted)
    assert batched_std.shape == (2, 5, 2)
    with pytest.raises(ValueError, match="steps must be in"):
        planning.shift_plan(mean, 6, 1.0)


@pytest.mark.parametrize("overrides,field", [
    ({"kind": "grad"}, "kind"),
    ({"horizon": 0}, "horizon"),
    ({"num_samples": 2.5}, "num_samples"),
    ({"iterations": True}, "iterations"),
    ({"num_elites": 301}, "num_elites"),
    ({"num_elites": 1}, "num_elites"),
    ({"momentum_mean": 1.0}, "momentum_mean"),
    ({"momentum_std": -0.1}, "momentum_std"),
    ({"init_std": 0.0}, "init_std"),
    ({"temperature": 0.0}, "temperature"),
    ({"min_std": 3.0, "max_std": 2.0}, "min_std"),
])
def test_invalid_settings_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"^PlannerSettings\.{field} [^\n]*$"):
        planning.PlannerSettings(**overrides)
    with pytest.raises(ValueError, match=rf"^PlannerSettings\.{field} "):
        planning.planner_settings(overrides.pop("kind", "cem"), **overrides)


def test_one_elite_is_valid_for_mppi_and_kinds_are_checked():
    settings = planning.planner_settings("mppi", num_elites=1)
    mean, std = planning.initial_plan(settings, ACTION_DIM)
    with pytest.raises(ValueError, match="cem\\(\\) got PlannerSettings.kind='mppi'"):
        planning.cem(quadratic, problem(settings), jax.random.key(0), mean, std, settings=settings, low=LOW,
                     high=HIGH)


@pytest.mark.parametrize("settings,budget", [
    (planning.CEM_DINO_WM_PUSHT, ("cem", 300, 30, 30, 5, 300 * 30, 300 * 30 * 5)),
    (planning.MPPI_TDMPC2, ("mppi", 512, 64, 6, 3, 512 * 6, 512 * 6 * 3)),
])
def test_describe_states_the_budget(settings, budget):
    summary = planning.describe(settings)
    keys = ("kind", "num_samples", "num_elites", "iterations", "horizon", "energy_calls", "sequence_steps")
    assert tuple(summary[k] for k in keys) == budget
    assert summary["momentum_mean"] == settings.momentum_mean  # every setting, not only the budget
