#!/usr/bin/env bash
# Run one command against a real, private, single-node SLURM on this host.
#
#   tests/slurm/run_local_slurm.sh [--fake-gpu] [--state-dir DIR] [--keep] -- COMMAND [ARGS...]
#
# Installs Debian's slurm-wlm and munge when missing (needs root and apt), writes a
# slurm.conf for this host into a private state dir, starts munged, slurmctld and
# slurmd from there on free ports, resumes the node if it comes up drained, runs
# COMMAND with SLURM_CONF pointing at that cluster, and always stops the daemons it
# started, by PID. A system slurm (/etc/slurm, the default ports) is never touched.
# Exit status: COMMAND's, or 2-4 when the cluster could not be set up.
#
# --keep keeps the state dir (config, daemon logs); the last log lines are printed on failure.
# Environment: GROKPATH_SLURM_STARTUP_S (default 60) bounds the wait for the node.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

fake_gpu=0
state_dir=""
keep=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --fake-gpu) fake_gpu=1; shift ;;
        --state-dir) state_dir="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) echo "run_local_slurm: unknown option '$1' (the command goes after --)" >&2; usage >&2; exit 2 ;;
    esac
done
if [[ $# -eq 0 ]]; then
    echo "run_local_slurm: no command given" >&2; usage >&2; exit 2
fi

say() { echo "[run_local_slurm] $*" >&2; }

# ---------------------------------------------------------------- packages
slurm_installed() { command -v slurmctld && command -v slurmd && command -v munged; } >/dev/null
if ! slurm_installed; then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
        say "slurm-wlm/munge are missing and cannot be installed here (needs root and apt-get)"
        exit 3
    fi
    # One install at a time: two test clusters may start together (pytest-xdist workers).
    exec 9>/tmp/grokpath-slurm-install.lock
    flock 9
    if ! slurm_installed; then
        say "installing slurm-wlm and munge"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends slurm-wlm munge >&2
    fi
    exec 9>&-
fi
if [[ $(id -u) -ne 0 ]]; then
    say "must run as root (SlurmUser=root, munged runs as the user munge)"
    exit 3
fi
id munge >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin munge

# ---------------------------------------------------------------- private state dir
if [[ -z "$state_dir" ]]; then
    state_dir=$(mktemp -d /tmp/grokpath-slurm.XXXXXX)
fi
mkdir -p "$state_dir"
state_dir=$(cd "$state_dir" && pwd)
# munged (user munge) must traverse it; it refuses group/world-writable dirs.
chmod 755 "$state_dir"
mkdir -p "$state_dir"/{ctld,spool,log,run}
mkdir -p "$state_dir/munge"
chown munge:munge "$state_dir/munge"
chmod 755 "$state_dir/munge"  # munged needs o+x on its socket dir

host=$(hostname)
cpus=$(nproc)
total_mb=$(free -m | awk '/^Mem:/ {print $2}')
real_mb=$(( total_mb * 9 / 10 ))
read -r ctld_port slurmd_port < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)

gres_line=""
gres_types=""
if [[ $fake_gpu -eq 1 ]]; then
    gres_types="GresTypes=gpu"
    gres_line="Gres=gpu:1"
    echo "NodeName=$host Name=gpu File=/dev/null" > "$state_dir/gres.conf"
fi

cat > "$state_dir/slurm.conf" <<EOF
# Written by tests/slurm/run_local_slurm.sh: a private single-node test cluster.
ClusterName=grokpath-test
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$state_dir/munge/munge.socket
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=3600
SlurmdTimeout=300
StateSaveLocation=$state_dir/ctld
SlurmdSpoolDir=$state_dir/spool
SlurmctldPidFile=$state_dir/run/slurmctld.pid
SlurmdPidFile=$state_dir/run/slurmd.pid
SlurmctldLogFile=$state_dir/log/slurmctld.log
SlurmdLogFile=$state_dir/log/slurmd.log
$gres_types
NodeName=$host CPUs=$cpus RealMemory=$real_mb $gres_line State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$state_dir/slurm.conf"
# Client wrappers that carry SLURM_CONF: the jobstep plugin strips SLURM_* from the
# environment of the srun it starts inside a job, and /etc/slurm is not ours to write.
mkdir -p "$state_dir/bin"
for tool in sbatch srun squeue scontrol sinfo scancel sacct salloc; do
    real=$(command -v "$tool" || true)
    [[ -n "$real" ]] || continue
    printf '#!/bin/sh\nSLURM_CONF=%q exec %q "$@"\n' "$SLURM_CONF" "$real" > "$state_dir/bin/$tool"
    chmod 755 "$state_dir/bin/$tool"
done
export PATH="$state_dir/bin:$PATH"

# ---------------------------------------------------------------- stop what we start, always
pid_cmd=""
pid_munged=""
pid_ctld=""
pid_slurmd=""
stop_pid() {  # stop_pid NAME PID: TERM, wait up to 10 s, then KILL
    local name=$1 pid=$2
    [[ -n "$pid" ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || { say "stopped $name (pid $pid)"; return 0; }
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    say "killed $name (pid $pid)"
}
read_pid() { [[ -s "$1" ]] && cat "$1" || true; }
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # pid files can appear after our first read; re-read them before stopping.
    [[ -n "$pid_slurmd" ]] || pid_slurmd=$(read_pid "$state_dir/run/slurmd.pid")
    [[ -n "$pid_ctld" ]] || pid_ctld=$(read_pid "$state_dir/run/slurmctld.pid")
    [[ -n "$pid_munged" ]] || pid_munged=$(read_pid "$state_dir/munge/munged.pid")
    stop_pid command "$pid_cmd"
    # Jobs still in this private cluster would outlive slurmd (slurmstepd): cancel them.
    if [[ -n "$pid_ctld" ]] && kill -0 "$pid_ctld" 2>/dev/null; then
        local jobs
        jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
        if [[ -n "$jobs" ]]; then
            say "cancelling jobs left in the test cluster: $(echo $jobs)"
            timeout 10 scancel $jobs 2>/dev/null || true
            for _ in $(seq 20); do
                [[ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ]] && break
                sleep 0.5
            done
        fi
    fi
    stop_pid slurmd "$pid_slurmd"
    stop_pid slurmctld "$pid_ctld"
    stop_pid munged "$pid_munged"
    if [[ $rc -ne 0 ]]; then
        say "exit $rc; last lines of the daemon logs in $state_dir/log:"
        tail -n 15 "$state_dir"/log/*.log >&2 2>/dev/null || true
    fi
    if [[ $keep -eq 0 ]]; then
        rm -rf "$state_dir"
    else
        say "state kept in $state_dir"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- munge
say "state dir $state_dir; host $host, CPUs=$cpus, RealMemory=$real_mb, ports $ctld_port/$slurmd_port"
dd if=/dev/urandom of="$state_dir/munge/munge.key" bs=1024 count=1 status=none
chown munge:munge "$state_dir/munge/munge.key"
chmod 400 "$state_dir/munge/munge.key"
runuser -u munge -- munged \
    --key-file="$state_dir/munge/munge.key" \
    --socket="$state_dir/munge/munge.socket" \
    --pid-file="$state_dir/munge/munged.pid" \
    --log-file="$state_dir/munge/munged.log" \
    --seed-file="$state_dir/munge/munged.seed"
pid_munged=$(read_pid "$state_dir/munge/munged.pid")
munge --socket="$state_dir/munge/munge.socket" -n </dev/null | unmunge --socket="$state_dir/munge/munge.socket" >/dev/null \
    || { say "munge round trip failed"; exit 4; }

# ---------------------------------------------------------------- slurm daemons
slurmctld -f "$SLURM_CONF"
for _ in $(seq 50); do
    pid_ctld=$(read_pid "$state_dir/run/slurmctld.pid")
    [[ -n "$pid_ctld" ]] && break
    sleep 0.2
done
slurmd -f "$SLURM_CONF"
for _ in $(seq 50); do
    pid_slurmd=$(read_pid "$state_dir/run/slurmd.pid")
    [[ -n "$pid_slurmd" ]] && break
    sleep 0.2
done
[[ -n "$pid_ctld" && -n "$pid_slurmd" ]] || { say "slurmctld or slurmd did not start"; exit 4; }

deadline=$(( SECONDS + ${GROKPATH_SLURM_STARTUP_S:-60} ))
node_state=""
while (( SECONDS < deadline )); do
    node_state=$(sinfo -h -n "$host" -o '%T' 2>/dev/null | head -n1 || true)
    case "$node_state" in
        idle|mixed|allocated) break ;;
        drain*|down*|"drained"*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.5
done
if [[ ! "$node_state" =~ ^(idle|mixed|allocated)$ ]]; then
    say "node $host not ready (state '${node_state:-none}')"
    exit 4
fi
say "cluster up: node $host $node_state"

# ---------------------------------------------------------------- the command
# In the background, so that a TERM/INT to this script runs the trap at once.
set +e
"$@" &
pid_cmd=$!
wait "$pid_cmd"
rc=$?
pid_cmd=""
set -e
say "command exited $rc"
exit $rc
