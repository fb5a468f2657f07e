#!/usr/bin/env bash
# Create the slice of tpu.env (TPU_NAME, TPU_ZONE, TPU_ACCELERATOR; TPU_SPOT, TPU_QUEUED, TPU_RUNTIME) and wait
# until it is READY. Safe to rerun: a READY slice is kept, a preempted or stopped one is deleted and recreated.
#   tpu_scripts/create.sh
# The runtime image follows the accelerator (v5p: v2-alpha-tpuv5, v5e: v2-alpha-tpuv5-lite, v6e:
# v2-alpha-tpuv6e, v4: tpu-ubuntu2204-base); TPU_RUNTIME overrides it. TPU_QUEUED=true asks for a queued
# resource (capacity granted when available), plain creation otherwise.
source "$(dirname "$0")/common.sh"
help_if_asked "$@"
load_env
case "$TPU_ACCELERATOR" in
  v5p-*) runtime=v2-alpha-tpuv5 ;;
  v5litepod-*|v5e-*) runtime=v2-alpha-tpuv5-lite ;;
  v6e-*) runtime=v2-alpha-tpuv6e ;;
  *) runtime=tpu-ubuntu2204-base ;;
esac
runtime=${TPU_RUNTIME:-$runtime}
spot=()
if [[ "${TPU_SPOT:-false}" == true ]]; then spot=(--spot); fi

state=$(tpu_state)
case "$state" in
  READY) echo "$TPU_NAME is READY already"; exit 0 ;;
  NOT_FOUND) ;;
  CREATING|STARTING|RESTARTING|REPAIRING) echo "$TPU_NAME is $state: waiting" ;;
  *) echo "$TPU_NAME is $state: deleting it to create it again"; "$SCRIPTS/delete.sh" ;;
esac
if [[ "$(tpu_state)" == NOT_FOUND ]]; then
  if [[ "${TPU_QUEUED:-false}" == true ]]; then
    gcloud compute tpus queued-resources create "$TPU_NAME" "${LOCATION[@]}" --node-id="$TPU_NAME" \
      --accelerator-type="$TPU_ACCELERATOR" --runtime-version="$runtime" "${spot[@]}"
  else
    gcloud compute tpus tpu-vm create "$TPU_NAME" "${LOCATION[@]}" --accelerator-type="$TPU_ACCELERATOR" \
      --version="$runtime" "${spot[@]}"
  fi
fi
for (( waited = 0; ; waited += ${CREATE_POLL_S:-30} )); do
  state=$(tpu_state)
  [[ "$state" == READY ]] && { echo "$TPU_NAME is READY ($TPU_ACCELERATOR, $HOSTS hosts)"; exit 0; }
  (( waited < ${CREATE_TIMEOUT_S:-7200} )) || die "$TPU_NAME still $state after ${waited}s: see gcloud's console"
  sleep "${CREATE_POLL_S:-30}"
done
