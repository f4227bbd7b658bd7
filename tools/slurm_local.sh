#!/usr/bin/env bash
# A real single-node Slurm on this machine, for `make test-cluster`. Localhost only.
#
#   tools/slurm_local.sh start   install Debian's slurm-wlm and munge if missing, then start munged,
#                                slurmctld and slurmd with their own configuration, sockets, state,
#                                pid and log files under $ALLLIB_SLURM_DIR (default /tmp/alllib-slurm)
#   tools/slurm_local.sh stop    stop the daemons this script started (the pids in its pid files),
#                                and only those, then remove $ALLLIB_SLURM_DIR
#   tools/slurm_local.sh env     print `export SLURM_CONF=...` for a shell that submits jobs
#
# The daemons bind to 127.0.0.1 (CommunicationParameters=NoCtldInAddrAny,NoInAddrAny; 127.0.0.1 addresses) on ports
# 16817/16818, and munged listens on a socket inside $ALLLIB_SLURM_DIR, so a system munge or Slurm
# is neither used nor disturbed. No accounting storage: jobs' states come from squeue (alllib.study.cluster).
set -euo pipefail
D=${ALLLIB_SLURM_DIR:-/tmp/alllib-slurm}
CONF=$D/slurm.conf
DAEMONS=(slurmd slurmctld munged)  # stopped in this order

install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  if [ "$(id -u)" != 0 ]; then
    echo "slurm_local: slurmctld or munged is missing; install them as root: apt-get install -y slurm-wlm munge" >&2
    exit 2
  fi
  echo "slurm_local: installing slurm-wlm and munge (Debian packages)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >"$D/apt.log" 2>&1 || {
    apt-get update -q >>"$D/apt.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >>"$D/apt.log" 2>&1
  } || { echo "slurm_local: apt-get failed, see $D/apt.log" >&2; exit 2; }
}

alive() { [ -s "$D/$1.pid" ] && kill -0 "$(cat "$D/$1.pid")" 2>/dev/null; }

start() {
  for d in "${DAEMONS[@]}"; do
    if alive "$d"; then echo "slurm_local: $d already runs from $D (pid $(cat "$D/$d.pid")); stop it first" >&2; exit 2; fi
  done
  mkdir -p "$D/state" "$D/spool"
  install
  local key=/etc/munge/munge.key
  [ -r "$key" ] || key=$D/munge.key
  if [ ! -r "$key" ]; then dd if=/dev/urandom of="$key" bs=1024 count=1 status=none; chmod 400 "$key"; fi
  munged --force --socket="$D/munge.socket" --key-file="$key" --pid-file="$D/munged.pid" \
    --log-file="$D/munged.log" --seed-file="$D/munged.seed" 2>>"$D/munged.log"
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))  # MB, 80 % of the machine
  cat >"$CONF" <<EOF
ClusterName=alllib-local
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=$(id -un)
SlurmctldPort=16817
SlurmdPort=16818
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MaxArraySize=10000
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  slurmctld -f "$CONF"
  slurmd -f "$CONF" -N localhost
  export SLURM_CONF=$CONF
  for _ in $(seq 60); do
    if sinfo -h -o "%t" 2>/dev/null | grep -qx idle; then
      echo "slurm_local: up (node localhost idle, $cpus CPUs, ${mem} MB); pids:" \
        "munged $(cat "$D/munged.pid") slurmctld $(cat "$D/slurmctld.pid") slurmd $(cat "$D/slurmd.pid")"
      echo "export SLURM_CONF=$CONF"
      return
    fi
    sleep 1
  done
  echo "slurm_local: the node did not become idle in 60 s; logs in $D" >&2
  stop
  exit 1
}

stop() {
  for d in "${DAEMONS[@]}"; do
    [ -s "$D/$d.pid" ] || continue
    local pid
    pid=$(cat "$D/$d.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
      echo "slurm_local: stopped $d (pid $pid)"
    fi
  done
  rm -rf "$D"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: tools/slurm_local.sh start|stop|env" >&2; exit 2 ;;
esac
