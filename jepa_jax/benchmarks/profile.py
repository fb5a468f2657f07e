"""Where one train step spends its time (`jepa-jax bench --what profile`): a jax.profiler trace of one step after
a warm-up, summed per XLA op and per model layer from the trace's op events.

Each op event (a trace event with an `hlo_op`) runs on a lane: a CPU worker thread, or a GPU/TPU stream. The
summary gives each lane's busy time (nested events counted once, in the innermost), how long exactly one lane was
busy while the others idled (on a multi-core CPU: work that ran on one core), the busiest op kinds (the op name
without its number, e.g. `ynn_fusion` for XLA:CPU's library matmuls, `while` for loops) and the time per layer
kind from each op's source path (`attn`, `mlp`, `norm`, ...; `attn_loop`: ops inside an attention loop, e.g. the
blocked kernel's tiles). The trace folder opens in TensorBoard's profile plugin or ui.perfetto.dev.
"""

import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time

import jax

from jepa_jax import config as config_lib
from jepa_jax.benchmarks import step as step_lib

TOP_KINDS = 12
# Layer kind of an op from its source path (HLO metadata op_name), first match wins.
LAYER_KINDS = (("attn_loop", re.compile(r"/attn/.*while")), ("attn", re.compile(r"/attn/")),
               ("mlp", re.compile(r"/mlp/")), ("norm", re.compile(r"[/_]norm\d?/")),
               ("embed", re.compile(r"patch_embed|predictor_embed|predictor_proj")))


def op_kind(name: str) -> str:
    """An op's kind: its HLO name without the instance number ("ynn_fusion.112" -> "ynn_fusion")."""
    return re.sub(r"\.\d+$", "", name)


def layer_kind(op_name: str) -> str:
    """The layer kind (LAYER_KINDS) of an op's source path, or "other" (losses, optimizer, EMA, copies)."""
    return next((kind for kind, pattern in LAYER_KINDS if pattern.search(op_name)), "other")


_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) \(.*\{$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = ")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_CALLED = re.compile(r"(?:body|condition|calls|to_apply|branch_computations)=(\{[^}]*\}|%?[\w.\-]+)")


def source_paths(hlo_text: str) -> dict[str, str]:
    """{HLO instruction name: its source path (metadata op_name)} from a compiled module's text. An instruction
    without one (XLA leaves loop bodies' fusions bare) takes that of the instruction calling its computation (the
    `while` of a loop body)."""
    own, computation_of, caller = {}, {}, {}
    computation = None
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            computation = header.group(1)
            continue
        instruction = _INSTRUCTION.match(line)
        if not instruction:
            continue
        name = instruction.group(1)
        computation_of[name] = computation
        op_name = _OP_NAME.search(line)
        if op_name:
            own[name] = op_name.group(1)
        for called in _CALLED.findall(line):
            for callee in re.findall(r"[\w.\-]+", called):
                caller.setdefault(callee, name)

    def path(name: str, depth: int = 0) -> str:
        if name in own or depth > 32:
            return own.get(name, "")
        parent = caller.get(computation_of.get(name))
        return path(parent, depth + 1) if parent else ""

    return {name: path(name) for name in computation_of}


def _exclusive(events: list[dict]) -> list[tuple[dict, float]]:
    """(event, exclusive microseconds) of one lane's events: a parent's time less its children's."""
    out, stack = [], []
    for event in sorted(events, key=lambda e: (e["ts"], -e["dur"])):
        while stack and stack[-1][0]["ts"] + stack[-1][0]["dur"] <= event["ts"]:
            out.append(tuple(stack.pop()))
        if stack:
            stack[-1][1] -= event["dur"]
        stack.append([event, event["dur"]])
    return out + [tuple(item) for item in reversed(stack)]


def _union(events: list[dict]) -> list[tuple[float, float]]:
    """Merged busy intervals [(start, end)] of one lane."""
    merged: list[list[float]] = []
    for event in sorted(events, key=lambda e: e["ts"]):
        start, end = event["ts"], event["ts"] + event["dur"]
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def _one_lane_busy(lanes: list[list[tuple[float, float]]]) -> float:
    """Microseconds during which exactly one lane was busy (a sweep over every lane's busy intervals)."""
    edges = sorted([(start, 1) for lane in lanes for start, _ in lane]
                   + [(end, -1) for lane in lanes for _, end in lane])
    alone, busy, last = 0.0, 0, None
    for at, change in edges:
        if busy == 1:
            alone += at - last
        busy, last = busy + change, at
    return alone


def summarize(events: list[dict], paths: dict[str, str], step_s: float) -> dict:
    """The profile summary of a trace's events (Chrome trace format: ph "X" with ts/dur in microseconds and
    args.hlo_op on op events) for one step of `step_s` seconds."""
    ops = [e for e in events if e.get("ph") == "X" and "hlo_op" in e.get("args", {})]
    lanes = collections.defaultdict(list)
    for event in ops:
        lanes[(event["pid"], event["tid"])].append(event)
    kinds, layers = collections.Counter(), collections.Counter()
    for lane in lanes.values():
        for event, micros in _exclusive(lane):
            kinds[op_kind(event["args"]["hlo_op"])] += micros / 1e6
            layers[layer_kind(paths.get(event["args"]["hlo_op"], ""))] += micros / 1e6
    unions = [_union(lane) for lane in lanes.values()]
    busy = [sum(end - start for start, end in union) / 1e6 for union in unions]
    return {"step_s": step_s, "lanes": len(lanes), "busy_s": sorted(busy, reverse=True),
            "one_lane_busy_s": _one_lane_busy(unions) / 1e6 if len(lanes) > 1 else None,
            "by_op_kind_s": dict(kinds.most_common(TOP_KINDS)), "by_layer_s": dict(layers.most_common())}


def read_trace(trace_dir: str) -> list[dict]:
    """The events of the newest perfetto_trace.json.gz under a jax.profiler trace folder."""
    found = sorted(glob.glob(os.path.join(trace_dir, "plugins", "profile", "*", "perfetto_trace.json.gz")))
    if not found:
        raise FileNotFoundError(f"{trace_dir}: no plugins/profile/*/perfetto_trace.json.gz (was the trace written?)")
    with gzip.open(found[-1], "rt", encoding="utf-8") as f:
        return json.load(f)["traceEvents"]


def profile_step(config, out: str | None = None) -> dict:
    """Trace one train step of `config` (after a warm-up step) into `out` (default: a new temporary folder) and
    summarise it (module docstring): one dict."""
    if config.objective == "ac":
        raise ValueError("--what profile traces the JEPA objectives (ema, sigreg) on masked clips, not `ac`")
    out = out or tempfile.mkdtemp(prefix="jepa_jax_profile_")
    ours = step_lib.JaxStep(config, step_lib.sample_batch(config, config_lib.build_maskers(config)))
    ours()
    with jax.profiler.trace(out, create_perfetto_trace=True):
        started = time.perf_counter()
        ours()
        step_s = time.perf_counter() - started
    summary = summarize(read_trace(out), source_paths(ours.step.as_text()), step_s)
    return {"measure": "profile", "backend": jax.default_backend(), "model": config.model.size,
            "attention": config.model.attention, "batch": config.data.batch_size, **summary, "trace": out}
