#!/usr/bin/env bash
# slurm-local.sh -- start, stop or inspect a single-node SLURM cluster on this machine.
#
# Single responsibility: give the dcbulk tests (dask-jobqueue's SLURMCluster) a real,
# loopback-only SLURM controller + compute node, without systemd and without cgroups.
#
# Usage: bash scripts/slurm-local.sh start|stop|status
#
#   start   install Debian's slurm-wlm and munge if missing, create the munge key if absent,
#           write /etc/slurm/slurm.conf (the location the client tools read by default, so
#           sbatch/squeue/scancel called from Python need no SLURM_CONF), start munged (as the
#           munge user), slurmctld and slurmd, and wait until the node is idle.
#           On a running cluster it only reports that the cluster is up.
#   stop    scancel leftover jobs, then stop slurmd, slurmctld and munged by their PID files
#           and wait for them to exit.  Succeeds when nothing runs.
#   status  print each daemon's state plus sinfo/squeue; exit 0 when up, 3 when down.
#
# Environment (all optional):
#   DCBULK_SLURM_DIR       run directory for PID files, logs and state [/run/dcbulk-slurm]
#   DCBULK_SLURM_TIMEOUT   seconds to wait for the node to become idle [60]
#   DCBULK_SLURM_MEM_PCT   RealMemory as a percentage of MemTotal [80]
#
# Every address is on loopback: SlurmctldHost and NodeAddr are 127.0.0.1 and munged's origin
# is 127.0.0.1.  If the short hostname is not in /etc/hosts, it is added there as 127.0.0.1
# so that no name lookup ever leaves the machine.
set -Eeuo pipefail

readonly RUN_DIR="${DCBULK_SLURM_DIR:-/run/dcbulk-slurm}"
readonly START_TIMEOUT="${DCBULK_SLURM_TIMEOUT:-60}"
readonly MEM_PCT="${DCBULK_SLURM_MEM_PCT:-80}"
readonly CONF_FILE=/etc/slurm/slurm.conf
readonly CONF_MARKER="# Written by dcbulk scripts/slurm-local.sh -- regenerated on every start."
readonly MUNGE_KEY=/etc/munge/munge.key
readonly MUNGE_SOCKET=/run/munge/munge.socket.2
readonly MUNGE_DIR="$RUN_DIR/munge"
readonly MUNGED_PID="$MUNGE_DIR/munged.pid"
readonly MUNGED_LOG="$MUNGE_DIR/munged.log"
readonly CTLD_PID="$RUN_DIR/slurmctld.pid"
readonly CTLD_LOG="$RUN_DIR/slurmctld.log"
readonly SLURMD_PID="$RUN_DIR/slurmd.pid"
readonly SLURMD_LOG="$RUN_DIR/slurmd.log"
readonly PARTITION=debug
NODE="$(hostname -s)"
readonly NODE
# The client tools must read the same file the daemons read, whatever the caller exported.
export SLURM_CONF="$CONF_FILE"

# Logs whose tail is printed when something fails; each phase sets the relevant ones.
RELEVANT_LOGS=()
# Set while 'start' runs: a failed start stops the daemons again so a retry begins clean.
STARTING=0

log() { printf 'slurm-local: %s\n' "$*"; }

show_logs() {
    local f
    for f in "${RELEVANT_LOGS[@]+"${RELEVANT_LOGS[@]}"}"; do
        if [[ -s "$f" ]]; then
            printf -- '----- last 25 lines of %s -----\n' "$f" >&2
            tail -n 25 "$f" >&2 || true
        else
            printf -- '----- %s is missing or empty -----\n' "$f" >&2
        fi
    done
}

# abort_start: after a failed start, stop our daemons (logs stay in the run directory).
abort_start() {
    [[ $STARTING -eq 1 ]] || return 0
    STARTING=0
    printf 'slurm-local: stopping the daemons after the failed start (logs kept in %s)\n' \
        "$RUN_DIR" >&2
    RELEVANT_LOGS=()
    (cmd_stop >&2) || true
}

die() {
    printf 'slurm-local: ERROR: %s\n' "$*" >&2
    show_logs
    abort_start
    exit 1
}

on_err() {
    local rc=$? line=$1
    trap - ERR
    printf 'slurm-local: ERROR: command failed (exit %s) at line %s: %s\n' \
        "$rc" "$line" "$BASH_COMMAND" >&2
    show_logs
    abort_start
    exit "$rc"
}
trap 'on_err $LINENO' ERR

# --------------------------------------------------------------------------- processes

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ -n "$stat" && "${stat:0:1}" != Z ]]
}

# pid_of PIDFILE COMM -> prints the PID if the file names a live process called COMM.
pid_of() {
    local file=$1 comm=$2 pid
    [[ -r "$file" ]] || return 1
    pid="$(tr -dc '0-9' <"$file")"
    [[ -n "$pid" ]] || return 1
    alive "$pid" || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm"* ]] || return 1
    printf '%s\n' "$pid"
}

is_running() { pid_of "$1" "$2" >/dev/null; }

# stop_daemon NAME PIDFILE COMM: SIGTERM, wait up to 20 s, then SIGKILL.
stop_daemon() {
    local name=$1 file=$2 comm=$3 pid i
    if ! pid="$(pid_of "$file" "$comm")"; then
        rm -f "$file"
        log "$name is not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || break
        sleep 0.2
    done
    if alive "$pid"; then
        log "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 25; i++)); do
            alive "$pid" || break
            sleep 0.2
        done
    fi
    ! alive "$pid" || die "$name (pid $pid) did not exit"
    rm -f "$file"
    log "stopped $name (pid $pid)"
}

munge_works() {
    command -v munge >/dev/null && command -v unmunge >/dev/null || return 1
    munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1
}

ctld_responds() {
    command -v scontrol >/dev/null || return 1
    [[ -r "$CONF_FILE" ]] || return 1
    timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'
}

node_reason() {
    timeout 10 sinfo --noheader --nodes="$NODE" --format='%E' 2>/dev/null | head -n 1 || true
}

node_state() {
    timeout 10 sinfo --noheader --nodes="$NODE" --format='%t' 2>/dev/null | head -n 1 | tr -d ' *'
}

# --------------------------------------------------------------------------- start steps

require_root() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"
}

install_packages() {
    local missing=() cmd added_policy=0
    for cmd in slurmctld slurmd sbatch squeue sinfo scancel scontrol munged munge unmunge mungekey; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "installing slurm-wlm and munge (missing: ${missing[*]})"
    RELEVANT_LOGS=("$RUN_DIR/apt.log")
    # Keep the packages' maintainer scripts from starting daemons: this script starts them.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    local rc=0
    {
        apt-get update &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                slurm-wlm munge
    } >"$RUN_DIR/apt.log" 2>&1 || rc=$?
    [[ $added_policy -eq 0 ]] || rm -f /usr/sbin/policy-rc.d
    [[ $rc -eq 0 ]] || die "apt-get failed (exit $rc)"
    for cmd in "${missing[@]}"; do
        command -v "$cmd" >/dev/null || die "$cmd still missing after installing slurm-wlm munge"
    done
}

ensure_hosts_entry() {
    if ! grep -Eq "^[[:space:]]*[0-9a-fA-F.:]+([[:space:]]+[^#[:space:]]+)*[[:space:]]+${NODE}([[:space:]]|\$)" /etc/hosts; then
        log "adding '127.0.0.1 $NODE' to /etc/hosts so the hostname resolves locally"
        printf '127.0.0.1 %s  # added by dcbulk scripts/slurm-local.sh\n' "$NODE" >>/etc/hosts
    fi
}

ensure_munge_key() {
    if [[ ! -s "$MUNGE_KEY" ]]; then
        log "creating munge key $MUNGE_KEY"
        install -d -o munge -g munge -m 0700 "$(dirname "$MUNGE_KEY")"
        mungekey --create --keyfile="$MUNGE_KEY"
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0600 "$MUNGE_KEY"
}

start_munged() {
    RELEVANT_LOGS=("$MUNGED_LOG")
    if munge_works; then
        if is_running "$MUNGED_PID" munged; then
            log "munged already running (pid $(pid_of "$MUNGED_PID" munged))"
        else
            log "munged already running (not started by this script; it will be left alone)"
        fi
        return 0
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 "$MUNGE_DIR" /var/lib/munge
    rm -f "$MUNGED_PID"
    runuser -u munge -- /usr/sbin/munged --socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" \
        --pid-file="$MUNGED_PID" --log-file="$MUNGED_LOG" --origin=127.0.0.1 --num-threads=2 ||
        die "munged failed to start"
    local i
    for ((i = 0; i < 50; i++)); do
        munge_works && break
        sleep 0.2
    done
    munge_works || die "munged does not answer on $MUNGE_SOCKET"
    log "started munged (pid $(pid_of "$MUNGED_PID" munged || echo '?'))"
}

# write_conf: single node, single partition, loopback only, no accounting, no cgroups.
write_conf() {
    local layout cpus boards sockets cores threads mem_kb real_mem select_params tok
    layout="$(slurmd -C | head -n 1)" || die "slurmd -C failed"
    for tok in $layout; do
        case "$tok" in
            CPUs=*) cpus=${tok#*=} ;;
            Boards=*) boards=${tok#*=} ;;
            SocketsPerBoard=*) sockets=${tok#*=} ;;
            CoresPerSocket=*) cores=${tok#*=} ;;
            ThreadsPerCore=*) threads=${tok#*=} ;;
        esac
    done
    [[ -n "${cpus:-}" && -n "${sockets:-}" && -n "${cores:-}" && -n "${threads:-}" ]] ||
        die "cannot parse 'slurmd -C' output: $layout"
    mem_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
    # Below the machine's memory: a RealMemory above what slurmd measures makes the node INVAL.
    real_mem=$((mem_kb * MEM_PCT / 100 / 1024))
    # Share cores between small jobs; with hyper-threads, allocate per logical CPU instead.
    if [[ "$threads" -eq 1 ]]; then select_params=CR_Core_Memory; else select_params=CR_CPU_Memory; fi
    if [[ -e "$CONF_FILE" ]] && ! grep -qxF "$CONF_MARKER" "$CONF_FILE"; then
        log "backing up foreign $CONF_FILE to $CONF_FILE.dcbulk-backup"
        cp -p "$CONF_FILE" "$CONF_FILE.dcbulk-backup"
    fi
    install -d -m 0755 "$(dirname "$CONF_FILE")"
    cat >"$CONF_FILE.tmp" <<EOF
$CONF_MARKER
# Single-node, loopback-only cluster for dcbulk tests.  Run directory: $RUN_DIR
ClusterName=dcbulk
SlurmctldHost=${NODE}(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# No systemd and no cgroups on this machine.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=$select_params
DefMemPerCPU=1024
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=60
Waittime=0
SlurmctldTimeout=120
SlurmdTimeout=300
StateSaveLocation=$RUN_DIR/state/slurmctld
SlurmdSpoolDir=$RUN_DIR/state/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$CTLD_LOG
SlurmdLogFile=$SLURMD_LOG
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeHostname=$NODE NodeAddr=127.0.0.1 CPUs=$cpus Boards=${boards:-1} SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$real_mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    mv -f "$CONF_FILE.tmp" "$CONF_FILE"
    chmod 0644 "$CONF_FILE"
    CONF_SUMMARY="$cpus CPUs, RealMemory=${real_mem} MB, $select_params"
}

start_slurmctld() {
    RELEVANT_LOGS=("$CTLD_LOG")
    if is_running "$CTLD_PID" slurmctld; then
        log "slurmctld already running (pid $(pid_of "$CTLD_PID" slurmctld))"
        return 0
    fi
    install -d -m 0755 "$RUN_DIR/state/slurmctld"
    # -c: a throwaway test cluster starts without jobs or node states from a previous run.
    slurmctld -c || die "slurmctld failed to start"
    local i
    for ((i = 0; i < 100; i++)); do
        is_running "$CTLD_PID" slurmctld && ctld_responds && break
        sleep 0.2
    done
    is_running "$CTLD_PID" slurmctld || die "slurmctld exited right after starting"
    ctld_responds || die "slurmctld does not answer 'scontrol ping'"
    log "started slurmctld (pid $(pid_of "$CTLD_PID" slurmctld))"
}

start_slurmd() {
    RELEVANT_LOGS=("$SLURMD_LOG")
    if is_running "$SLURMD_PID" slurmd; then
        log "slurmd already running (pid $(pid_of "$SLURMD_PID" slurmd))"
        return 0
    fi
    install -d -m 0755 "$RUN_DIR/state/slurmd"
    slurmd -N "$NODE" || die "slurmd failed to start"
    local i
    for ((i = 0; i < 50; i++)); do
        is_running "$SLURMD_PID" slurmd && break
        sleep 0.2
    done
    is_running "$SLURMD_PID" slurmd || die "slurmd exited right after starting"
    log "started slurmd (pid $(pid_of "$SLURMD_PID" slurmd))"
}

wait_node_idle() {
    RELEVANT_LOGS=("$SLURMD_LOG" "$CTLD_LOG")
    local deadline=$((SECONDS + START_TIMEOUT)) state="" resumed=0
    while ((SECONDS < deadline)); do
        is_running "$SLURMD_PID" slurmd || die "slurmd died while registering"
        is_running "$CTLD_PID" slurmctld || die "slurmctld died while node $NODE registered"
        state="$(node_state || true)"
        case "$state" in
            idle | mix | alloc) return 0 ;;
            inval*) die "node $NODE is INVAL: $(node_reason)" ;;
            down* | drain* | drng*)
                if [[ $resumed -eq 0 ]]; then
                    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
                    resumed=1
                fi
                ;;
        esac
        sleep 0.5
    done
    die "node $NODE not idle after ${START_TIMEOUT}s (last state: '${state:-none}'; $(node_reason))"
}

all_up() {
    munge_works && is_running "$CTLD_PID" slurmctld && is_running "$SLURMD_PID" slurmd &&
        [[ "$(node_state || true)" =~ ^(idle|mix|alloc)$ ]]
}

summary() {
    log "up: node $NODE (127.0.0.1, ${CONF_SUMMARY:-see $CONF_FILE}), partition $PARTITION, conf $CONF_FILE, run dir $RUN_DIR"
}

cmd_start() {
    require_root
    [[ "$START_TIMEOUT" =~ ^[0-9]+$ ]] || die "DCBULK_SLURM_TIMEOUT must be whole seconds, got '$START_TIMEOUT'"
    [[ "$MEM_PCT" =~ ^[0-9]+$ && "$MEM_PCT" -ge 1 ]] ||
        die "DCBULK_SLURM_MEM_PCT must be a positive integer, got '$MEM_PCT'"
    install -d -m 0755 "$RUN_DIR"
    if all_up; then
        CONF_SUMMARY="already running"
        summary
        return 0
    fi
    STARTING=1
    install_packages
    ensure_hosts_entry
    ensure_munge_key
    start_munged
    # Rewrite the configuration only when no slurm daemon is using it.
    if ! is_running "$CTLD_PID" slurmctld && ! is_running "$SLURMD_PID" slurmd; then
        write_conf
    fi
    start_slurmctld
    start_slurmd
    wait_node_idle
    STARTING=0
    summary
}

# --------------------------------------------------------------------------- stop/status

cancel_jobs() {
    is_running "$CTLD_PID" slurmctld && ctld_responds || return 0
    local jobs i
    jobs="$(squeue --noheader --format='%i' 2>/dev/null || true)"
    [[ -n "$jobs" ]] || return 0
    log "cancelling leftover jobs: ${jobs//$'\n'/ }"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        [[ -z "$(squeue --noheader --format='%i' 2>/dev/null || true)" ]] && return 0
        sleep 0.5
    done
    log "warning: jobs still listed after 30 s: $(squeue --noheader 2>/dev/null | tr '\n' ';')"
}

cmd_stop() {
    require_root
    RELEVANT_LOGS=("$SLURMD_LOG" "$CTLD_LOG" "$MUNGED_LOG")
    cancel_jobs
    stop_daemon slurmd "$SLURMD_PID" slurmd
    stop_daemon slurmctld "$CTLD_PID" slurmctld
    stop_daemon munged "$MUNGED_PID" munged
    log "stopped"
}

cmd_status() {
    local up=1 name file comm pid
    for name in munged slurmctld slurmd; do
        case $name in
            munged) file=$MUNGED_PID comm=munged ;;
            slurmctld) file=$CTLD_PID comm=slurmctld ;;
            slurmd) file=$SLURMD_PID comm=slurmd ;;
        esac
        if pid="$(pid_of "$file" "$comm")"; then
            printf '%-10s running (pid %s)\n' "$name:" "$pid"
        elif [[ $name == munged ]] && munge_works; then
            printf '%-10s running (not started by this script)\n' "$name:"
        else
            printf '%-10s not running\n' "$name:"
            up=0
        fi
    done
    if is_running "$CTLD_PID" slurmctld && ctld_responds; then
        timeout 10 sinfo || up=0
        timeout 10 squeue || up=0
        [[ "$(node_state || true)" =~ ^(idle|mix|alloc)$ ]] || up=0
    else
        up=0
    fi
    if [[ $up -eq 1 ]]; then
        log "up"
        return 0
    fi
    log "down"
    return 3
}

main() {
    case "${1:-}" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status || exit $? ;;
        *)
            printf 'usage: %s start|stop|status\n' "$0" >&2
            exit 2
            ;;
    esac
}

main "$@"
