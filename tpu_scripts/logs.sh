#!/usr/bin/env bash
# Follow the training log of one host (default worker 0, which writes the metrics): Ctrl-C stops following.
#   tpu_scripts/logs.sh [WORKER]
source "$(dirname "$0")/common.sh"
help_if_asked "$@"
load_env
on_workers "${1:-0}" "tail -n 50 -F $REMOTE_DIR/train.log"
