"""`jepa-jax eval probe`: train attentive probes on a frozen model through the engine, then score them.

    result = probing.evaluate_probe("runs/tiny_world", "builtin:velocity", "runs/probe_velocity")
    result = probing.evaluate_probe("runs/my_model", "train.csv", "runs/probe_mine", val="val.csv")

An official probe (a released V-JEPA / V-JEPA 2 AttentiveClassifier checkpoint) is scored without training:

    result = probing.score_official_probe("imported/vitl", "ssv2-vitl-16x2x3.pt", "ssv2_val.csv", "runs/ssv2")

A probe run is an ordinary training run (objective "probe": loop, Orbax checkpoints with exact resume, metrics), so
an interrupted evaluation resumes where it stopped when run again with the same workdir. Scoring is
evals.probe.probe_run_scores.
"""

import json
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jepa_jax import config as config_lib, export, layouts, native, pretrained, recipes, storage
from jepa_jax.data import sources
from jepa_jax.evals import probe as probe_eval, report
from jepa_jax.train import loop

BUILTIN_PREFIX = "builtin:"


def probe_config(model: str, data: str, val: str = "", base: ml_collections.ConfigDict | None = None):
    """The probe run's config for the frozen encoder of `model` (a run directory, optionally :STEP, or an
    export/import folder).

    Starts from `base`, default the schema's probe protocol (recipes.base_config: attentive, probe, train, optim)
    with the model's data settings and seed (a pretraining run's own probe fields are not a probe protocol), and
    takes the model's architecture; `data` is "builtin:TASK" (a task of the built-in world, pipeline.PROBE_TASKS) or
    a labelled training manifest ('PATH LABEL' lines), scored on the manifest `val`; attentive.num_classes left at
    0 becomes one more than the largest training label.
    """
    trained = config_lib.load_run(loop.parse_init_from(model, "--model")[0])
    if base is None:
        base = recipes.base_config()
        base.data, base.seed = trained.data, trained.seed
    config = config_lib.from_dict(base.to_dict())
    config.model = trained.model
    config.objective = "probe"
    config.attentive.encoder_from = model
    if data.startswith(BUILTIN_PREFIX):
        config.data.source, config.attentive.task = "balls", data[len(BUILTIN_PREFIX):]
    else:
        if not val:
            raise ValueError(f"--data {data} is a labelled manifest: give the held-out one with --val")
        config.data.source, config.data.video.manifests, config.attentive.task = "video", (data,), "labels"
        config.attentive.val_manifest = val
        if not config.attentive.num_classes:
            config.attentive.num_classes = 1 + max(e.label for e in sources.read_manifest(data))
    config_lib.validate(config)
    return config


def builtin_protocol(config, steps: int) -> ml_collections.ConfigDict:
    """config's attentive-probe protocol (config.attentive, probe, optim, data) for `steps` steps on the built-in
    world: the base of builtin_probe_config."""
    base = config_lib.copy_config(config)
    base.train.steps = steps
    base.data.source = "balls"
    base.probe.at_fractions = (1.0,)
    return base


def builtin_probe_config(base, task: str, model: str = "", features: str = "encoder"):
    """The probe run's config for the built-in `task` with base's protocol (builtin_protocol): on the frozen encoder
    of `model` (probe_config), or with model "" on base.model at random init (features "encoder") or on the raw
    pixels of each tubelet (features "pixels")."""
    if model:
        return probe_config(model, BUILTIN_PREFIX + task, base=base)
    config = config_lib.copy_config(base)
    config.objective, config.attentive.task = "probe", task
    config.attentive.update(encoder_from="", features=features)
    config_lib.validate(config)
    return config


# (row name, probes the run's own final encoder, tokens read): the rows of the report's attentive table.
REPORT_ENCODERS = (("trained", True, "encoder"), ("random init", False, "encoder"), ("raw pixels", False, "pixels"))


def attentive_rows(config, workdir: str) -> list[dict]:
    """Attentive probes on task "motion" (config.attentive's protocol, config.probe.attentive_steps steps) of the
    final encoder of the run `config` in `workdir`, the same encoder at random init and raw pixels, each trained in
    {workdir}/probes/NAME: one row {"name", TASK: {"score", "lr", "weight_decay", "ridge_quad"}} per encoder."""
    base = builtin_protocol(config, config.probe.attentive_steps)
    rows = []
    for name, own, features in REPORT_ENCODERS:
        probe = builtin_probe_config(base, "motion", workdir if own else "", features)
        scores = probe_run(probe, storage.join(workdir, "probes", name.replace(" ", "_")))
        rows.append({"name": name, **scores["tasks"]})
    return rows


def run_report(config, workdir: str) -> dict:
    """The end-of-run report of the built-in-world run in `workdir` (evals.report.world_report), with the attentive
    probes of attentive_rows unless config.probe.attentive_steps is 0."""
    return report.world_report(config, workdir, attentive_rows(config, workdir) if config.probe.attentive_steps else ())


# Fields that change how a run is carried out, not what it computes: a probe run left with other values resumes.
HOUSEKEEPING = {"train": ("compilation_cache", "log_every", "checkpoint_every", "checkpoint_keep")}


def _settings(config) -> dict:
    """The resolved config as a dict, without the HOUSEKEEPING fields."""
    fields = config_lib.copy_config(config).to_dict()
    for section, names in HOUSEKEEPING.items():
        fields[section] = {k: v for k, v in fields[section].items() if k not in names}
    return fields


def probe_run(config, workdir: str) -> dict:
    """Train the probe run `config` in `workdir` (resuming a run left there), then score it
    (evals.probe.probe_run_scores: probe.json, probe.md); a finished, scored run is read back instead. Returns the
    scores, or {"preempted_at": step} when the run was stopped early (run it again to resume)."""
    stored = storage.path(workdir) / "config.json"
    if stored.is_file() and _settings(config_lib.load_run(workdir)) != _settings(config):
        raise ValueError(f"{workdir} holds a probe run with other settings ({stored}): remove it or give another "
                         f"directory")
    scored = storage.path(workdir) / "probe.json"
    if loop.is_finished(workdir) and scored.is_file():
        return json.loads(scored.read_text())
    summary = loop.train(config, workdir)
    loop.save_summary(summary, workdir)
    if summary["preempted_at"] is not None:
        return {"preempted_at": summary["preempted_at"]}
    return probe_eval.probe_run_scores(workdir)


def evaluate_probe(model: str, data: str, workdir: str, val: str = "",
                   base: ml_collections.ConfigDict | None = None) -> dict:
    """probe_run(probe_config(model, data, val, base), workdir)."""
    return probe_run(probe_config(model, data, val, base), workdir)


def official_probe_settings(tensors: dict) -> dict:
    """config.attentive fields of an official probe's state dict (export.read_fair_probe): its flavour (V-JEPA's
    has an output projection in the cross-attention), depth (self-attention blocks + 1) and classes."""
    blocks = {int(m.group(1)) for k in tensors if (m := re.match(r"pooler\.blocks\.(\d+)\.", k))}
    return {"flavour": "vjepa" if "pooler.cross_attention_block.xattn.proj.weight" in tensors else "vjepa2",
            "depth": len(blocks) + 1, "num_classes": int(tensors["linear.weight"].shape[0])}


def import_probe(tensors: dict, config, source: str) -> dict:
    """An official probe's tensors as the probe parameters of `config` (one member: leaves [1, ...]); strict about
    names and shapes (layouts.from_layout)."""
    probe = config_lib.build_predictor(config)
    shapes = nn.meta.unbox(jax.eval_shape(probe.init, jax.random.key(0), *config_lib.predictor_inputs(config)))["params"]
    expected = {k: v.shape for k, v in native.flatten(shapes, leaf=lambda x: x).items()}
    flat = layouts.from_layout(layouts.FAIR, tensors, expected, source, "attentive probe")
    return jax.tree.map(lambda x: jnp.asarray(x)[None], native.unflatten(flat))


def score_official_probe(model: str, probe_path: str, val: str, workdir: str,
                         base: ml_collections.ConfigDict | None = None) -> dict:
    """Score a released probe on the labelled manifest `val` with the frozen encoder of `model` (an export/import
    folder or a run directory), base's segments x views protocol (probe_config); the probe's flavour, depth and
    classes come from the file, the official probe has no positions (attentive.positions off) and base's
    attentive.num_heads must be the probe's (16 for the released ones). Writes probe.json / probe.md in `workdir`."""
    tensors = export.read_fair_probe(probe_path)
    config = probe_config(model, val, val, base)
    config.attentive.update(official_probe_settings(tensors), positions=False, learning_rates=(0.0,),
                            weight_decays=(0.0,))
    config_lib.validate(config)
    params = {"encoder": pretrained.load(model).params["encoder"],
              "probe": import_probe(tensors, config, probe_path)}
    return probe_eval.write_scores(probe_eval.labelled_scores(config, params), config, workdir, None)

