#!/usr/bin/env bash
# Copy this checkout (its committed HEAD) to every host of the slice and install it with the tpu and video extras
# in REMOTE_DIR/.venv. Safe to rerun: the copy is replaced and pip installs what changed.
#   tpu_scripts/setup.sh
source "$(dirname "$0")/common.sh"
help_if_asked "$@"
load_env
repo=$(cd "$SCRIPTS/.." && pwd)
archive=$(mktemp --suffix=.tar.gz)
trap 'rm -f "$archive"' EXIT
git -C "$repo" archive --format=tar.gz -o "$archive" HEAD
gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:jepa_jax.tar.gz" "${LOCATION[@]}" --worker=all
on_workers all "mkdir -p $REMOTE_DIR && tar -xzf jepa_jax.tar.gz -C $REMOTE_DIR && cd $REMOTE_DIR && \
  { [ -d .venv ] || python3 -m venv .venv; } && .venv/bin/pip install -q --upgrade pip && \
  .venv/bin/pip install -q -e '.[tpu,video,gcs]'"
