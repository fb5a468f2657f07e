#!/usr/bin/env bash
# Delete the slice: TPU_NAME=... TPU_ZONE=... tpu_scripts/delete.sh
source "$(dirname "$0")/common.sh"
gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$TPU_ZONE" $TPU_PROJECT_FLAG --quiet
