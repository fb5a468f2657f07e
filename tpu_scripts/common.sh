# Shared settings for the TPU VM scripts; sourced, not run. Override by exporting before calling a script.
set -euo pipefail
: "${TPU_NAME:?set TPU_NAME, e.g. export TPU_NAME=jepa-v5p-32}"
: "${TPU_ZONE:?set TPU_ZONE, e.g. export TPU_ZONE=us-east5-a}"
TPU_PROJECT_FLAG=${TPU_PROJECT:+--project=$TPU_PROJECT}
REMOTE_DIR=${REMOTE_DIR:-jepa_jax}

on_all_workers() {  # run a shell command on every host of the pod slice, in parallel
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$TPU_ZONE" $TPU_PROJECT_FLAG --worker=all --command="$1"
}
