#!/usr/bin/env bash
# Copy this checkout to every host and install it with the TPU extra: TPU_NAME=... TPU_ZONE=... tpu_scripts/setup.sh
source "$(dirname "$0")/common.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)
archive=$(mktemp --suffix=.tar.gz)
git -C "$repo" archive --format=tar.gz -o "$archive" HEAD
gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:jepa_jax.tar.gz" --zone="$TPU_ZONE" $TPU_PROJECT_FLAG --worker=all
rm -f "$archive"
on_all_workers "mkdir -p $REMOTE_DIR && tar -xzf jepa_jax.tar.gz -C $REMOTE_DIR && cd $REMOTE_DIR && \
  python3 -m venv .venv && .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[tpu,video]'"
