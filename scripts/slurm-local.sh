#!/usr/bin/env bash
# A single-node Slurm for tests and laptops (Debian bookworm, root, no systemd needed).
#   scripts/slurm-local.sh up      install if needed, configure, start munged + slurmctld + slurmd
#   scripts/slurm-local.sh down    stop the daemons this script started (by PID)
# The daemons run in the foreground of a detached session (-D + setsid) so their own PIDs are known.
# State (PIDs, daemon logs) in $RHEAD_SLURM_STATE (default /tmp/rhead-slurm).
set -euo pipefail
state="${RHEAD_SLURM_STATE:-/tmp/rhead-slurm}"
node="$(hostname -s)"
mkdir -p "$state"

alive() { [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat")" != Z ]; }

up() {
  if [ "$(id -u)" -ne 0 ]; then echo "slurm-local: needs root (it writes /etc/slurm)" >&2; exit 3; fi
  # libpmix2 must be installed before slurmd starts, or srun --mpi=pmix steps fail until a restart.
  local need=()
  for p in slurmctld slurmd slurm-client munge libpmix2; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  if [ "${#need[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" > /dev/null
  fi
  [ -s /etc/munge/munge.key ] || { mungekey --create --force 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  if ! munge -n 2>/dev/null | unmunge > /dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge > /dev/null 2>&1 && break; sleep 0.1; done
  fi

  local cpus mem
  cpus=$(slurmd -C | sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' | head -1)
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
  mem=$((mem - 1024))
  install -d /etc/slurm "$state/ctld" "$state/d" /var/log/slurm
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=rhead-local
SlurmctldHost=${node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=${state}/ctld
SlurmdSpoolDir=${state}/d
SlurmctldPidFile=${state}/slurmctld.pid
SlurmdPidFile=${state}/slurmd.pid
SlurmctldLogFile=${state}/slurmctld.log
SlurmdLogFile=${state}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=pmix
ReturnToService=2
MailProg=/bin/true
DefMemPerCPU=$((mem / cpus))
NodeName=${node} CPUs=${cpus} Boards=1 SocketsPerBoard=1 CoresPerSocket=${cpus} ThreadsPerCore=1 RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  if ! alive "$(cat "$state/slurmctld.mypid" 2>/dev/null)"; then
    setsid /usr/sbin/slurmctld -D -i > "$state/slurmctld.out" 2>&1 < /dev/null &
    echo $! > "$state/slurmctld.mypid"
    for _ in $(seq 100); do
      scontrol ping 2>/dev/null | grep -q UP && break
      alive "$(cat "$state/slurmctld.mypid")" || { echo "slurm-local: slurmctld died:" >&2; tail -3 "$state/slurmctld.out" >&2; exit 4; }
      sleep 0.2
    done
  fi
  if ! alive "$(cat "$state/slurmd.mypid" 2>/dev/null)"; then
    setsid /usr/sbin/slurmd -D > "$state/slurmd.out" 2>&1 < /dev/null &
    echo $! > "$state/slurmd.mypid"
  fi
  for _ in $(seq 150); do
    sinfo -h -o %T 2>/dev/null | grep -qE '^idle' && break
    alive "$(cat "$state/slurmd.mypid")" || { echo "slurm-local: slurmd died:" >&2; tail -3 "$state/slurmd.out" >&2; exit 4; }
    sleep 0.2
  done
  sinfo -h -o %T 2>/dev/null | grep -qE '^idle' || { echo "slurm-local: node never became idle" >&2; exit 4; }
  echo "slurm-local: up on ${node} (${cpus} CPUs)"
}

stop_pid() {
  local pid="${1:-}"
  alive "$pid" || return 0
  kill "$pid" 2> /dev/null || true
  for _ in $(seq 50); do alive "$pid" || return 0; sleep 0.2; done
  kill -9 "$pid" 2> /dev/null || true
}

down() {
  if alive "$(cat "$state/slurmctld.mypid" 2>/dev/null)"; then
    scancel --user=root 2> /dev/null || true
    for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  for d in slurmd slurmctld; do stop_pid "$(cat "$state/$d.mypid" 2>/dev/null)"; done
  echo "slurm-local: down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
