#!/usr/bin/env bash
# Create a TPU VM pod slice: TPU_NAME=... TPU_ZONE=... tpu_scripts/create.sh v5p-32 [--spot]
# The runtime version must match the accelerator (v5p: v2-alpha-tpuv5, v5e: v2-alpha-tpuv5-lite,
# v6e: v2-alpha-tpuv6e, v4: tpu-ubuntu2204-base); set TPU_RUNTIME to override.
source "$(dirname "$0")/common.sh"
accelerator=${1:?usage: create.sh ACCELERATOR_TYPE [--spot]}
shift
case "$accelerator" in
  v5p-*) default_runtime=v2-alpha-tpuv5 ;;
  v5litepod-*) default_runtime=v2-alpha-tpuv5-lite ;;
  v6e-*) default_runtime=v2-alpha-tpuv6e ;;
  *) default_runtime=tpu-ubuntu2204-base ;;
esac
gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$TPU_ZONE" $TPU_PROJECT_FLAG \
  --accelerator-type="$accelerator" --version="${TPU_RUNTIME:-$default_runtime}" "$@"
