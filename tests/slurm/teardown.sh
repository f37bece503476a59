#!/usr/bin/env bash
# Stop the one-node cluster started by tests/slurm/setup.sh (same STATE_DIR):
# slurmd, slurmctld, and munged if setup.sh started it. Leaves STATE_DIR
# (logs, jobcomp.txt) and /etc/slurm/slurm.conf in place.
set -uo pipefail
STATE="${1:-${ICL_SLURM_STATE:-/tmp/icl-probe-slurm}}"

log() { echo "[slurm-teardown] $*" >&2; }

stop_pidfile() {  # name pidfile
    local name="$1" pidfile="$2" pid
    [ -f "$pidfile" ] || { log "$name: no pid file"; return 0; }
    pid="$(cat "$pidfile")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) still running; SIGKILL"; kill -KILL "$pid" 2>/dev/null
        fi
        log "$name (pid $pid) stopped"
    fi
    rm -f "$pidfile"
}

# cancel what is left, so no job step outlives the daemons
if command -v scancel >/dev/null && [ -f "$STATE/slurmctld.pid" ]; then
    timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
fi
stop_pidfile slurmd "$STATE/slurmd.pid"
stop_pidfile slurmctld "$STATE/slurmctld.pid"
if [ -f "$STATE/munged.started" ]; then
    stop_pidfile munged /run/munge/munged.pid
    rm -f "$STATE/munged.started"
fi
exit 0
