#!/usr/bin/env bash
# Keep a run going on spot capacity without a person watching: every WATCH_INTERVAL_S seconds (default 60) look
# at the slice and the run, and act. A preempted, stopped or missing slice is recreated (create.sh), set up
# (setup.sh) and the run relaunched (launch.sh, same arguments), resuming from the newest complete checkpoint in
# WORKDIR; a READY slice with no training running is relaunched. Stops when the run has finished (exit 0), or
# with an error when training failed (see logs.sh). WATCH_MAX_ROUNDS bounds the loop (default: none).
#   tpu_scripts/watch.sh --config experiments/configs/vjepa2_vitl16.py --config.mesh.fsdp=-1
source "$(dirname "$0")/common.sh"
help_if_asked "$@"
load_env
require_shared_workdir
status_command="cd $REMOTE_DIR 2> /dev/null && if $TRAINING_RUNS; then echo running; \
elif [ -f train.rc ]; then echo \"done \$(cat train.rc)\"; else echo idle; fi || echo idle"
for (( round = 1; ${WATCH_MAX_ROUNDS:-0} == 0 || round <= ${WATCH_MAX_ROUNDS:-0}; round++ )); do
  state=$(tpu_state)
  case "$state" in
    READY)
      run=$(on_workers 0 "$status_command" | tail -n 1)
      case "$run" in
        running) ;;
        "done 0") echo "$(date -u +%FT%TZ) the run in $WORKDIR has finished"; exit 0 ;;
        done*) die "training exited with status ${run#done }: tpu_scripts/logs.sh shows why" ;;
        *) echo "$(date -u +%FT%TZ) $TPU_NAME is READY, no training: launching"; "$SCRIPTS/launch.sh" "$@" ;;
      esac ;;
    CREATING|STARTING|RESTARTING|REPAIRING) ;;
    *)
      echo "$(date -u +%FT%TZ) $TPU_NAME is $state: recreating it and resuming the run"
      "$SCRIPTS/create.sh" && "$SCRIPTS/setup.sh" && "$SCRIPTS/launch.sh" "$@" ;;
  esac
  sleep "${WATCH_INTERVAL_S:-60}"
done
