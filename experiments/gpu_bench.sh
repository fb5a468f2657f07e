#!/usr/bin/env bash
# The GPU measurement of issue H in one go: ViT-L/16 at 16 x 256^2, bf16, with the largest batch that fits.
#
#   bash experiments/gpu_bench.sh [CONFIG] [BATCHES...]    # default: bench_vjepa2.py:large256, 64 48 32 24 16 8
#
# 1. Tries the per-device batches from the largest down and keeps the first whose step runs (JSON: step time,
#    MFU against the device's dense bf16 peak, peak device memory, analytic vs XLA FLOPs).
# 2. At that batch: the same step beside the PyTorch reference (--compare torch: ratio, both peaks).
# 3. The attention kernels at the encoder's shape (cuDNN, XLA, torch SDPA).
# 4. A profile of one step at that batch: time per op kind and layer kind, the trace in ${OUT:-.}/profile.
# Every JSON line goes to stdout and to ${OUT:-.}/gpu_bench.jsonl.
set -uo pipefail
config="${1:-experiments/configs/bench_vjepa2.py:large256}"
shift || true
if (( $# )); then batches=("$@"); else batches=(64 48 32 24 16 8); fi
out="${OUT:-.}/gpu_bench.jsonl"
bench() { jepa-jax bench --config "${config}" "$@" | tee -a "${out}"; }
fits=""
for batch in "${batches[@]}"; do
  if bench --config.data.batch_size="${batch}" --what step --repeats 5; then fits="${batch}"; break; fi
  echo "batch ${batch} does not fit" >&2
done
[[ -n "${fits}" ]] || { echo "no batch in ${batches[*]} fits" >&2; exit 1; }
bench --config.data.batch_size="${fits}" --what step --compare torch --repeats 5 \
  || echo "the PyTorch reference failed at batch ${fits} (out of memory?)" >&2
bench --config.data.batch_size="${fits}" --what attention --compare torch --repeats 10
bench --config.data.batch_size="${fits}" --what profile --out "${OUT:-.}/profile"
