# shellcheck shell=bash
# Shared by the TPU VM scripts; sourced, not run. Settings come from one env file (TPU_ENV, default
# tpu_scripts/tpu.env; copy tpu.env.example); one exported in the environment wins over the file's:
#   TPU_NAME, TPU_ZONE, TPU_ACCELERATOR (e.g. v5p-32) are required; TPU_PROJECT (default: gcloud's),
#   TPU_SPOT=true (spot capacity), TPU_QUEUED=true (a queued resource), TPU_RUNTIME (the VM image),
#   WORKDIR (the run directory: gs://BUCKET/PATH, or a path with WORKDIR_SHARED=true when every host sees it, as a
#   gcsfuse or NFS mount; a slice of several hosts needs one of the two), REMOTE_DIR (default jepa_jax).
set -euo pipefail
SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

help_if_asked() {  # print the calling script's header comment for -h / --help
  case "${1:-}" in
    -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
  esac
}

SETTINGS=(TPU_NAME TPU_ZONE TPU_ACCELERATOR TPU_PROJECT TPU_SPOT TPU_QUEUED TPU_RUNTIME WORKDIR WORKDIR_SHARED
  REMOTE_DIR)

load_env() {  # the env file's settings; a setting exported in the environment wins over the file's
  local env_file=${TPU_ENV:-$SCRIPTS/tpu.env} name
  local -A exported=()
  for name in "${SETTINGS[@]}"; do
    if [[ -n "${!name+set}" ]]; then exported[$name]=${!name}; fi
  done
  if [[ -f "$env_file" ]]; then
    # shellcheck source=/dev/null
    source "$env_file"
    for name in "${!exported[@]}"; do printf -v "$name" '%s' "${exported[$name]}"; done
  elif [[ -n "${TPU_ENV:-}" ]]; then
    die "TPU_ENV=$TPU_ENV does not exist: copy tpu_scripts/tpu.env.example there and fill it in"
  fi
  for name in TPU_NAME TPU_ZONE TPU_ACCELERATOR; do
    [[ -n "${!name:-}" ]] || die "$name is not set: put it in ${env_file} (see tpu_scripts/tpu.env.example)"
  done
  command -v gcloud > /dev/null || die "gcloud not found on PATH: install the Google Cloud CLI (cloud.google.com/sdk)"
  REMOTE_DIR=${REMOTE_DIR:-jepa_jax}
  LOCATION=(--zone="$TPU_ZONE")
  if [[ -n "${TPU_PROJECT:-}" ]]; then LOCATION+=(--project="$TPU_PROJECT"); fi
  HOSTS=$(hosts_of "$TPU_ACCELERATOR")
}

hosts_of() {  # hosts of a slice: 4 chips per host (v4 and v5p count 2 TensorCores per chip); v5e/v6e <= 8 chips: 1
  local generation=${1%-*} count=${1##*-}
  [[ "$count" =~ ^[0-9]+$ ]] || die "TPU_ACCELERATOR=$1: expected v4-N, v5p-N, v5litepod-N or v6e-N"
  case "$generation" in
    v4|v5p) echo $(( count <= 8 ? 1 : count / 8 )) ;;
    v5litepod|v5e|v6e) echo $(( count <= 8 ? 1 : count / 4 )) ;;
    *) die "TPU_ACCELERATOR=$1: expected v4-N, v5p-N, v5litepod-N or v6e-N" ;;
  esac
}

require_shared_workdir() {  # several hosts write one run directory: every one of them must see it
  [[ -n "${WORKDIR:-}" ]] || die "WORKDIR is not set: the run directory, e.g. WORKDIR=gs://BUCKET/runs/NAME"
  if [[ "$WORKDIR" == gs://* ]]; then
    return 0  # a bucket: every host reads and writes it
  fi
  if [[ "$WORKDIR" == *://* ]]; then
    die "WORKDIR=$WORKDIR: only gs:// buckets are supported as URLs; give gs://BUCKET/PATH or a shared mount's path"
  fi
  if (( HOSTS > 1 )) && [[ "${WORKDIR_SHARED:-false}" != true ]]; then
    die "WORKDIR=$WORKDIR must be shared by the $HOSTS hosts of $TPU_ACCELERATOR: give gs://BUCKET/PATH, or a" \
      "gcsfuse or NFS mount on every host with WORKDIR_SHARED=true"
  fi
}

# A remote shell test: is `jepa-jax train` running on this host? (used by launch.sh and watch.sh)
# shellcheck disable=SC2034
TRAINING_RUNS="pgrep -f 'jepa-jax train' > /dev/null"

tpu_state() {  # READY, CREATING, PREEMPTED, ... or NOT_FOUND
  gcloud compute tpus tpu-vm describe "$TPU_NAME" "${LOCATION[@]}" --format='value(state)' 2> /dev/null \
    || echo NOT_FOUND
}

on_workers() {  # on_workers WORKERS COMMAND: run a shell command on "all" hosts (in parallel) or one
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${LOCATION[@]}" --worker="$1" --command="$2"
}
