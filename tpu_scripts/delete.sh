#!/usr/bin/env bash
# Tear down the slice of tpu.env (and its queued resource with TPU_QUEUED=true). Safe to rerun.
#   tpu_scripts/delete.sh
# The run directory (WORKDIR, a bucket) is kept: checkpoints outlive the slice.
source "$(dirname "$0")/common.sh"
help_if_asked "$@"
load_env
if [[ "${TPU_QUEUED:-false}" == true ]]; then
  gcloud compute tpus queued-resources delete "$TPU_NAME" "${LOCATION[@]}" --force --quiet 2> /dev/null \
    || echo "no queued resource $TPU_NAME"
elif [[ "$(tpu_state)" != NOT_FOUND ]]; then
  gcloud compute tpus tpu-vm delete "$TPU_NAME" "${LOCATION[@]}" --quiet
else
  echo "no slice $TPU_NAME: nothing to delete"
fi
