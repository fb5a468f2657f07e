"""AdamW with V-JEPA's schedules: linear warmup + cosine learning rate (V-JEPA 2: cosine to the same value, i.e.
constant after warmup), V-JEPA 2's linear cooldown, cosine weight-decay ramp.

Official schedulers are stepped before use, so optimizer update `count` (0-based) uses schedule step count + 1.
Their horizon is T_max = int(ipe_scale * total_steps) (ipe_scale 1.25), so a run stops at 80 % of the cosine.
Weight decay skips biases and every 1-D parameter (LayerNorm scales and biases), as `WD_exclude` does.
"""

import jax
import jax.numpy as jnp
import optax

from jepa_jax.models import stacking


def warmup_cosine_lr(start_lr: float, lr: float, final_lr: float, warmup_steps: int, horizon: int):
    """Schedule count -> lr: linear start_lr -> lr over `warmup_steps`, then cosine to final_lr at `horizon`."""
    def schedule(count):
        step = count + 1.0
        warm = start_lr + (step / max(warmup_steps, 1)) * (lr - start_lr)
        progress = (step - warmup_steps) / max(horizon - warmup_steps, 1)
        cosine = final_lr + (lr - final_lr) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(step < warmup_steps, warm, jnp.maximum(final_lr, cosine))
    return schedule


def linear_decay_lr(lr: float, final_lr: float, horizon: int):
    """Schedule count -> lr: linear from lr to final_lr at `horizon` (V-JEPA 2 cooldown, no warmup)."""
    def schedule(count):
        progress = jnp.minimum((count + 1.0) / max(horizon, 1), 1.0)
        return lr + (final_lr - lr) * progress
    return schedule


def learning_rate_schedule(optim, horizon: int):
    """The config.optim.schedule function of the optimizer update count."""
    if optim.schedule == "linear_decay":
        return linear_decay_lr(optim.lr, optim.final_lr, horizon)
    return warmup_cosine_lr(optim.start_lr, optim.lr, optim.final_lr, optim.warmup_steps, horizon)


def cosine_weight_decay(weight_decay: float, final_weight_decay: float, horizon: int):
    """Schedule count -> wd: cosine from weight_decay to final_weight_decay over `horizon` (V-JEPA ramps up)."""
    def schedule(count):
        progress = jnp.minimum((count + 1.0) / max(horizon, 1), 1.0)
        return final_weight_decay + (weight_decay - final_weight_decay) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return schedule


def decay_mask(params):
    """True for parameters that get weight decay: not a bias and more than one dimension (per block, for stacked
    blocks: their [L] axis is not counted)."""
    def keep(path, leaf):
        return jnp.ndim(leaf) - stacking.in_stacked_block(path) > 1 and "bias" not in jax.tree_util.keystr(path)
    return jax.tree_util.tree_map_with_path(keep, params)


ONLINE_PROBE_LR = 1e-3  # Adam's, for the online probe (config.monitor.online_probe)


def make_optimizer(optim, total_steps: int, frozen: tuple[str, ...] = (),
                   online_probe: bool = False) -> optax.GradientTransformation:
    """AdamW from config.optim with its schedules injected as hyper-parameters (readable from the state).

    `frozen` names top-level parameter groups (e.g. "encoder") that never change: their updates are zero and
    they hold no optimizer state. online_probe: params["online_probe"] gets its own Adam (ONLINE_PROBE_LR), so
    neither AdamW's schedules nor its gradient clipping see it.
    """
    adamw = _adamw(optim, total_steps)
    if not frozen and not online_probe:
        return adamw
    return with_frozen_groups(adamw, frozen, own={"online_probe": optax.adam(ONLINE_PROBE_LR)} if online_probe
                              else None)


def with_frozen_groups(trained: optax.GradientTransformation, frozen,
                       own: dict | None = None) -> optax.GradientTransformation:
    """`trained` on every top-level parameter group but those named in `frozen`, whose updates are zero and which
    hold no optimizer state, and those in `own` ({group: its own transformation})."""
    own = own or {}
    label = lambda group: "frozen" if group in frozen else group if group in own else "trained"
    labels = lambda params: {group: jax.tree.map(lambda _: label(group), tree) for group, tree in params.items()}
    return optax.multi_transform({"trained": trained, "frozen": optax.set_to_zero(), **own}, labels)


def _adamw(optim, total_steps: int) -> optax.GradientTransformation:
    horizon = int(optim.ipe_scale * total_steps)
    adamw = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
        learning_rate=learning_rate_schedule(optim, horizon),
        weight_decay=cosine_weight_decay(optim.weight_decay, optim.final_weight_decay, horizon),
        b1=optim.b1, b2=optim.b2, eps=optim.eps, mask=decay_mask)
    if optim.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(optim.grad_clip), adamw)
    return adamw


def current_hyperparams(opt_state) -> dict:
    """{'lr': ..., 'weight_decay': ...} of the injected AdamW in `opt_state` (chained, partitioned or not); {} for
    an optimizer without one (the probe grid, whose members each have their own)."""
    injected = lambda node: hasattr(node, "hyperparams")
    for state in jax.tree.leaves(opt_state, is_leaf=injected):
        if injected(state):
            return {"lr": state.hyperparams["learning_rate"], "weight_decay": state.hyperparams["weight_decay"]}
    return {}


def probe_optimizer(members, total_steps: int) -> optax.GradientTransformation:
    """The probe objective's optimizer: grid_adamw over params["probe"] (one member per (lr, wd) of `members`),
    the frozen encoder untouched (no optimizer state)."""
    grid = grid_adamw([lr for lr, _ in members], [wd for _, wd in members], total_steps)
    return with_frozen_groups(grid, ("encoder",))


def grid_adamw(learning_rates, weight_decays, total_steps: int, b1: float = 0.9, b2: float = 0.999,
               eps: float = 1e-8) -> optax.GradientTransformation:
    """AdamW for G models trained at once (V-JEPA 2's probe grid): every leaf of params carries a leading [G]
    member axis; member g's learning rate is cosine-decayed from learning_rates[g] to 0 over `total_steps` (no
    warmup) and its weight decay is weight_decays[g] on every parameter (one group: biases and norms too). Each
    member's update is exactly what AdamW would do to that member alone."""
    rates = jnp.asarray(learning_rates, jnp.float32)
    decays = jnp.asarray(weight_decays, jnp.float32)
    if rates.shape != decays.shape or rates.ndim != 1:
        raise ValueError(f"probe grid: {rates.shape[0] if rates.ndim else 1} learning rates and "
                         f"{decays.shape[0] if decays.ndim else 1} weight decays: give one pair per member")

    def member(rate, decay) -> optax.GradientTransformation:
        return optax.adamw(optax.cosine_decay_schedule(rate, max(total_steps, 1)), b1=b1, b2=b2, eps=eps,
                           weight_decay=decay)

    def init(params):
        return jax.vmap(member(1.0, 0.0).init)(params)  # Adam's moments and count: the same for every rate

    def update(grads, state, params=None):
        return jax.vmap(lambda g, s, p, rate, decay: member(rate, decay).update(g, s, p))(grads, state, params,
                                                                                          rates, decays)

    return optax.GradientTransformation(init, update)
