#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine (as root, without systemd).
#
#   tests/slurm/setup.sh [STATE_DIR]      # default: $ICL_SLURM_STATE or /tmp/icl-probe-slurm
#   tests/slurm/teardown.sh [STATE_DIR]
#
# Installs munge, slurmctld, slurmd and slurm-client from the distribution's
# packages when they are missing (Debian/Ubuntu: apt-get), writes
# /etc/slurm/slurm.conf from tests/slurm/slurm.conf.in (one node: this host,
# all its CPUs, its memory as slurmd measures it, partition `debug`), starts
# munged, slurmctld and slurmd in the background and waits until the node is
# idle, then checks that `srun` and `sbatch` run a job. State, logs and the
# scheduler's job-completion record (jobcomp.txt) live in STATE_DIR.
#
# Exit status 0 when the cluster runs jobs; otherwise non-zero with the
# daemons' logs on stderr. Refuses to overwrite an /etc/slurm/slurm.conf that
# it did not write.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${1:-${ICL_SLURM_STATE:-/tmp/icl-probe-slurm}}"
CONF=/etc/slurm/slurm.conf
MARKER="written by icl-probe tests/slurm/setup.sh"
WAIT_S="${ICL_SLURM_WAIT_S:-90}"

log() { echo "[slurm-setup] $*" >&2; }

dump_logs() {
    for f in /var/log/munge/munged.log "$STATE"/slurmctld.log "$STATE"/slurmd.log "$STATE"/*.out; do
        [ -f "$f" ] || continue
        echo "===== $f (last 60 lines)" >&2
        tail -n 60 "$f" >&2
    done
    echo "===== sinfo -N -l" >&2
    sinfo -N -l >&2 2>&1 || true
    echo "===== scontrol show node" >&2
    scontrol show node >&2 2>&1 || true
}

fail() { log "FAILED: $*"; dump_logs; exit 1; }

if [ "$(id -u)" != 0 ]; then
    log "must run as root (installs packages, starts munged/slurmctld/slurmd)"; exit 2
fi

# --- packages -------------------------------------------------------------
need=()
for pair in munged:munge slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || { log "missing ${need[*]} and no apt-get"; exit 3; }
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$STATE"/slurmctld "$STATE"/slurmd
chmod 755 "$STATE"

# --- munge ----------------------------------------------------------------
mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge 2>/dev/null || true
chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged already running; using it"
else
    rm -f /run/munge/munged.pid
    # munged refuses to run as root; run it as the munge user.
    if command -v runuser >/dev/null; then
        runuser -u munge -- /usr/sbin/munged \
            || fail "munged did not start"
    else
        su -s /bin/sh munge -c /usr/sbin/munged \
            || fail "munged did not start"
    fi
    echo started > "$STATE/munged.started"
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n | unmunge >/dev/null || fail "munge credential round trip"
fi

# --- slurm.conf -----------------------------------------------------------
HOST="$(hostname -s)"
CPUS="$(nproc)"
# What slurmd itself measures (RealMemory in MiB); the configured value must
# not exceed it or the node is drained with "Low RealMemory".
MEM="$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)"
[ -n "$MEM" ] || MEM="$(free -m | awk '/^Mem:/ {print $2}')"
MEM=$(( MEM * 95 / 100 ))
if [ -f "$CONF" ] && ! grep -q "$MARKER" "$CONF"; then
    log "$CONF exists and was not written by this script; not touching it"; exit 4
fi
mkdir -p "$(dirname "$CONF")"
sed -e "s|@MARKER@|$MARKER|" -e "s|@STATE@|$STATE|g" -e "s|@HOST@|$HOST|g" \
    -e "s|@CPUS@|$CPUS|g" -e "s|@MEM@|$MEM|g" "$HERE/slurm.conf.in" > "$CONF"
log "wrote $CONF (node $HOST, CPUs=$CPUS, RealMemory=${MEM}M, state in $STATE)"

# --- daemons --------------------------------------------------------------
if [ -f "$STATE/slurmctld.pid" ] && kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null; then
    log "slurmctld already running (pid $(cat "$STATE/slurmctld.pid")); reconfiguring"
    scontrol reconfigure || true
else
    # -c: start with a clean job state (no jobs left from an earlier run)
    slurmctld -c || fail "slurmctld did not start"
fi
if [ -f "$STATE/slurmd.pid" ] && kill -0 "$(cat "$STATE/slurmd.pid")" 2>/dev/null; then
    log "slurmd already running (pid $(cat "$STATE/slurmd.pid"))"
else
    slurmd || fail "slurmd did not start"
fi

log "waiting up to ${WAIT_S}s for node $HOST to be idle"
state=""
for i in $(seq "$WAIT_S"); do
    state="$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n1 || true)"
    case "$state" in
        idle|mixed|allocated) break ;;
        down*|drain*|drained*)
            # e.g. "Node unexpectedly rebooted" or a stale state: resume it
            scontrol update nodename="$HOST" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
done
case "$state" in
    idle|mixed|allocated) log "node $HOST is $state after ${i}s" ;;
    *) fail "node $HOST is '${state:-unknown}' after ${WAIT_S}s" ;;
esac

# --- smoke test: srun and sbatch --------------------------------------------
out="$(timeout 60 srun -N1 -n1 -t 1 hostname 2>&1)" || fail "srun hostname: $out"
log "srun hostname -> $out"
jid="$(sbatch --parsable -J icl-probe-smoke -t 1 -o "$STATE/smoke-%j.out" --wrap 'echo smoke ok on $(hostname)')" \
    || fail "sbatch --wrap"
for _ in $(seq 60); do
    st="$(squeue -h -j "$jid" --states=all -o %T 2>/dev/null || true)"
    [ "$st" = COMPLETED ] && break
    case "$st" in FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL) fail "sbatch job $jid: $st";; esac
    sleep 1
done
[ "$st" = COMPLETED ] || fail "sbatch job $jid not completed after 60s (state '$st')"
grep -q "smoke ok" "$STATE/smoke-$jid.out" || fail "sbatch job $jid wrote no output"
log "sbatch job $jid: $(cat "$STATE/smoke-$jid.out")"
log "cluster ready; job records in $STATE/jobcomp.txt"
