#!/usr/bin/env bash
# Start `jepa-jax train` on every host of the slice (one process per host; jax.distributed finds its peers):
#   TPU_NAME=... TPU_ZONE=... tpu_scripts/launch.sh --config experiments/configs/tiny_world.py \
#       --workdir gs://BUCKET/runs/NAME --config.mesh.fsdp=-1 --config.mesh.data=1
# The workdir must be shared by all hosts (a gs:// bucket): every host writes its checkpoint shards and
# data-iterator state there. Logs go to ~/REMOTE_DIR/train.log on each host; process 0 writes metrics.
# Re-running the same command after a preemption resumes from the newest complete checkpoint.
source "$(dirname "$0")/common.sh"
args=$(printf '%q ' "$@")
on_all_workers "cd $REMOTE_DIR && nohup .venv/bin/jepa-jax train --multihost $args > train.log 2>&1 &"
