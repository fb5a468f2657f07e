#!/usr/bin/env bash
# Start `jepa-jax train --multihost --workdir $WORKDIR ARGS...` on every host of the slice (one process per host;
# jax.distributed finds its peers), in the background; logs in REMOTE_DIR/train.log on each host, the exit
# status in REMOTE_DIR/train.rc. Safe to rerun: hosts where training runs already are left alone, and a run
# directory with checkpoints resumes from the newest complete one.
#   tpu_scripts/launch.sh --config experiments/configs/vjepa2_vitl16.py --config.mesh.fsdp=-1
# With several hosts, WORKDIR must be a path every host sees (WORKDIR_SHARED=true): all of them write checkpoints.
source "$(dirname "$0")/common.sh"
help_if_asked "$@"
load_env
require_shared_workdir
# The command travels base64-encoded into REMOTE_DIR/train.sh, so no argument needs quoting twice.
train_args=$(printf '%q ' --multihost --workdir "$WORKDIR" "$@")
script=$(printf '.venv/bin/jepa-jax train %s\necho $? > train.rc\n' "$train_args")
encoded=$(printf '%s' "$script" | base64 -w 0)
on_workers all "cd $REMOTE_DIR && if $TRAINING_RUNS; then echo 'training runs already'; \
  else rm -f train.rc && echo $encoded | base64 -d > train.sh && nohup bash train.sh > train.log 2>&1 & fi"
