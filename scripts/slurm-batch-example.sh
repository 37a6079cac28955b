#!/usr/bin/env bash
# slurm-batch-example.sh -- convert an archive with dcbulk inside ONE SLURM allocation.
#
# Single responsibility: an example sbatch script (copy it and edit the #SBATCH lines and the
# paths).  Inside the allocation it starts a dask scheduler on the batch host, one dask worker
# per task with srun, and runs `dcbulk convert --scheduler-file` against them.  Use it where
# jobs cannot be submitted from a login node for hours, or where one allocation is preferred.
#
#   sbatch scripts/slurm-batch-example.sh /data/archive /data/archive-zstd
#
# The other way needs no batch script: on a login node, run
#   dcbulk convert /data/archive -o /data/archive-zstd --cluster slurm   # site jobqueue.yaml
# (or --cluster-config cluster_configs/slurm.yaml)
# and dcbulk submits the worker jobs itself (dask-jobqueue) and cancels them at the end.
#
# Re-submitting the same script resumes: files finished by an earlier (e.g. timed-out) run are
# skipped.  The archive and the output must be on a file system all nodes see.
#
#SBATCH --job-name=dcbulk
#SBATCH --partition=normal          # EDIT: partition/queue
##SBATCH --account=my-project       # EDIT: uncomment to charge an account
#SBATCH --nodes=2                   # EDIT: nodes
#SBATCH --ntasks-per-node=8         # one single-threaded dask worker per task
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=3G            # 2-4 GB per worker is plenty
#SBATCH --time=02:00:00             # EDIT: walltime
#SBATCH --output=dcbulk-%j.out      # scheduler, workers and dcbulk log here
set -euo pipefail

SRC=${1:?usage: sbatch slurm-batch-example.sh SRC DST}
DST=${2:?usage: sbatch slurm-batch-example.sh SRC DST}

# EDIT: make a Python with dcbulk installed available on every node, e.g.
#   module load python/3.11
#   source "$HOME/venvs/dcbulk/bin/activate"
# A module that sets HDF5_PLUGIN_PATH stops hdf5plugin from providing zstd:
unset HDF5_PLUGIN_PATH || true
PYTHON=${PYTHON:-python3}

# Network interface the nodes reach each other on (e.g. ib0); the default route if empty.
IFACE=${DCBULK_INTERFACE:-}
iface_args=()
[[ -n "$IFACE" ]] && iface_args=(--interface "$IFACE")

# The scheduler file must be on the shared file system (the workers read it).
SCHED_FILE="${SLURM_SUBMIT_DIR:-$PWD}/dcbulk-scheduler-${SLURM_JOB_ID:-$$}.json"
rm -f "$SCHED_FILE"

# 1) the scheduler, in the background on the batch host (it takes no task slot of its own;
#    it is light: dcbulk's tasks are few and large)
"$PYTHON" -m distributed.cli.dask_scheduler --scheduler-file "$SCHED_FILE" --port 0 \
    "${iface_args[@]}" &
SCHED_PID=$!

# 2) one worker per task on all nodes of the allocation; --lifetime ends them cleanly
#    before the walltime kills them (unfinished files are redone by the next submission)
srun --kill-on-bad-exit=0 "$PYTHON" -m distributed.cli.dask_worker \
    --scheduler-file "$SCHED_FILE" --nworkers 1 --nthreads 1 \
    --memory-limit "$((${SLURM_MEM_PER_CPU:-3072} * 1024 * 1024))" \
    --local-directory "${TMPDIR:-/tmp}" --lifetime 115m "${iface_args[@]}" &
WORKERS_PID=$!

# at the end the workers are killed: "srun: error: ... Killed" in the log is expected
cleanup() {
    kill "$WORKERS_PID" "$SCHED_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -f "$SCHED_FILE"
}
trap cleanup EXIT

# wait for the scheduler file before connecting
for _ in $(seq 120); do [[ -s "$SCHED_FILE" ]] && break; sleep 1; done

# 3) the conversion: dcbulk prints "dashboard: <link>" to stderr at start (reach it with an
#    ssh tunnel to the batch host) and writes a JSON summary per file; exit 1 = some files
#    failed (they are listed), the others are converted
"$PYTHON" -m dcbulk.cli convert "$SRC" -o "$DST" --scheduler-file "$SCHED_FILE" \
    --report "$DST/dcbulk-report-${SLURM_JOB_ID:-local}.json" --quiet
