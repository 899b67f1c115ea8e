#!/usr/bin/env bash
# Single-node Slurm 22.05 (Debian 12 "bookworm") for tests and CI; no systemd needed.
# munge + slurmctld + slurmd on 127.0.0.1, optional fake GPUs, optional slurmdbd.
#
#   sudo tests/slurm/single-node-slurm.sh install  # apt packages (skipped when already installed)
#   sudo tests/slurm/single-node-slurm.sh start    # write configs, start daemons, wait until the node is idle
#   sudo tests/slurm/single-node-slurm.sh status   # daemons alive + node state; exit 1 when not up
#   sudo tests/slurm/single-node-slurm.sh stop     # stop every daemon this script started, by PID file
#
# Knobs (environment variables):
#   SLURM_FAKE_GPUS=N     advertise N fake GPUs (gres gpu, type "fake"; the device files are
#                         symlinks to /dev/null) so that jobs asking for --gpus are accepted
#                         and run with CUDA_VISIBLE_DEVICES set (default 2; 0 = no GPUs)
#   SLURM_WITH_DBD=1      also install/start mariadb + slurmdbd so that `sacct` works
#                         (default 0: no accounting; use `slurm-status-command: squeue`)
#   SLURM_PARTITION=debug name of the single partition
#   SLURM_START_TIMEOUT=60   seconds to wait for each daemon / for the node to become idle
#   SLURM_APT_TIMEOUT=600    seconds allowed for apt-get update + install
#   SLURM_FORCE=1         overwrite an /etc/slurm/slurm.conf this script did not write (start
#                         refuses with exit code 3 otherwise: it is meant for throwaway machines)
#
# Every wait is bounded; on a timeout the script prints the relevant daemon log and exits 1 (the
# daemons that did start stay up for inspection: run `stop` afterwards, as the tests do).
# Measured with snakemake 9.27.1 + snakemake-executor-plugin-slurm 2.8.0: without slurmdbd the
# plugin needs `slurm-status-command: squeue` and MinJobAge >= 3 x
# slurm-init-seconds-before-status-checks, hence MinJobAge=600 below.
set -euo pipefail

WITH_DBD=${SLURM_WITH_DBD:-0}
FAKE_GPUS=${SLURM_FAKE_GPUS:-2}
PARTITION=${SLURM_PARTITION:-debug}
START_TIMEOUT=${SLURM_START_TIMEOUT:-60}
APT_TIMEOUT=${SLURM_APT_TIMEOUT:-600}
ETC=/etc/slurm
LOGDIR=/var/log/slurm
MARIADB_PIDFILE=/run/mysqld/ci-mariadbd.pid
# every task's Slurm job id, step id and CUDA_VISIBLE_DEVICES, one line each (written by a
# TaskProlog); tests read it to see which GPUs Slurm handed to which job
JOB_ENV_LOG=${LOGDIR}/job-env.log
# order matters for stop: compute daemon first, munge last
PIDFILES="/run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid $MARIADB_PIDFILE /run/munge/munged.pid"

log() { echo "[slurm-ci] $*"; }
err() { echo "[slurm-ci] $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

need_root() {
  if [ "$(id -u)" != 0 ]; then err "must run as root"; exit 2; fi
}

show_logs() {  # show_logs <file...>: last lines of daemon logs, to explain a failure
  local f
  for f in "$@"; do
    if [ -s "$f" ]; then
      err "---- last 30 lines of $f ----"
      tail -n 30 "$f" >&2 || true
    else
      err "---- $f: missing or empty ----"
    fi
  done
}

not_foreign() {
  # never touch the configuration or daemons of a real cluster (exit 3: "not on this machine")
  if [ -s "$ETC/slurm.conf" ] && ! grep -q "written by .*single-node-slurm.sh" "$ETC/slurm.conf" \
     && [ "${SLURM_FORCE:-0}" != 1 ]; then
    err "$ETC/slurm.conf was not written by this script: refusing to $1 (SLURM_FORCE=1 overrides)"
    exit 3
  fi
}

pkgs_installed() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || return 1
  done
}

install_pkgs() {
  need_root
  local t0 pkgs="munge slurmctld slurmd slurm-client"
  t0=$(now)
  [ "$WITH_DBD" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
  # shellcheck disable=SC2086
  if pkgs_installed $pkgs; then
    log "packages already installed: $pkgs"
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  # bounded: network stalls and dpkg locks must not hang a test run
  timeout -k 10 "$APT_TIMEOUT" apt-get -o DPkg::Lock::Timeout=60 -o Acquire::http::Timeout=30 update -q \
    || { err "apt-get update failed or timed out (${APT_TIMEOUT}s)"; exit 1; }
  # shellcheck disable=SC2086
  timeout -k 10 "$APT_TIMEOUT" apt-get -o DPkg::Lock::Timeout=60 -o Acquire::http::Timeout=30 \
    install -y -q --no-install-recommends $pkgs \
    || { err "apt-get install $pkgs failed or timed out (${APT_TIMEOUT}s)"; exit 1; }
  log "apt install took $(since "$t0") s"
}

write_configs() {
  local host mem nodeline gres=""
  host=$(hostname -s)
  # leave 1 GiB headroom for the daemons and the snakemake main process
  mem=$(( $(free -m | awk '/^Mem:/{print $2}') - 1024 ))
  # slurmd -C prints the real topology: "NodeName=x CPUs=.. Boards=.. ... RealMemory=.."
  nodeline=$(timeout 30 slurmd -C | head -n1 | sed "s/RealMemory=[0-9]*/RealMemory=${mem}/")
  case "$nodeline" in NodeName=*) ;; *) err "slurmd -C gave no node line: '$nodeline'"; exit 1 ;; esac
  mkdir -p "$ETC" /var/spool/slurmctld /var/spool/slurmd "$LOGDIR"
  chown slurm:slurm /var/spool/slurmctld "$LOGDIR"
  if [ "$FAKE_GPUS" -gt 0 ]; then
    gres=" Gres=gpu:fake:${FAKE_GPUS}"
    # File= is required for gres/gpu (Count= alone registers 0 GPUs -> node INVAL),
    # and every GPU needs its own file name (a repeated /dev/null is fatal for slurmd).
    # The file must be a character device (plain files are rejected: "not a valid
    # character or block device" -> no CUDA_VISIBLE_DEVICES), so use symlinks to /dev/null.
    mkdir -p /run/slurm-fakegpu
    for i in $(seq 0 $((FAKE_GPUS - 1))); do ln -sfn /dev/null "/run/slurm-fakegpu/gpu$i"; done
    echo "NodeName=${host} Name=gpu Type=fake File=/run/slurm-fakegpu/gpu[0-$((FAKE_GPUS - 1))]" > "$ETC/gres.conf"
  else
    rm -f "$ETC/gres.conf"
  fi

  # TaskProlog: runs as the job's user, in the task's environment, just before each task
  cat > "$ETC/ci-task-prolog.sh" <<PROLOG
#!/bin/sh
echo "job=\${SLURM_JOB_ID:-} step=\${SLURM_STEP_ID:-batch} name=\${SLURM_JOB_NAME:-} CUDA_VISIBLE_DEVICES=\${CUDA_VISIBLE_DEVICES-unset}" >> ${JOB_ENV_LOG} 2>/dev/null
exit 0
PROLOG
  chmod 755 "$ETC/ci-task-prolog.sh"
  touch "$JOB_ENV_LOG" && chmod 666 "$JOB_ENV_LOG"

  if [ "$WITH_DBD" = 1 ]; then
    ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
  else
    ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
  fi

  cat > "$ETC/slurm.conf" <<EOF
# single-node test cluster, written by tests/slurm/single-node-slurm.sh
ClusterName=ci
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=${LOGDIR}/slurmctld.log
SlurmdLogFile=${LOGDIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=${ETC}/ci-task-prolog.sh
${ACCT}
# jobcomp/filetxt: a flat log of finished jobs (JobId, Name, JobState, ...) that
# works without slurmdbd; tests read it as evidence that jobs ran through Slurm
JobCompType=jobcomp/filetxt
JobCompLoc=${LOGDIR}/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
GresTypes=gpu
# finished jobs stay visible to 'squeue --states=all' for MinJobAge seconds;
# the snakemake slurm plugin only uses squeue if MinJobAge >= 3 x init-seconds-before-status-checks
MinJobAge=600
InactiveLimit=0
KillWait=5
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=30
${nodeline} NodeAddr=127.0.0.1${gres} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF

  if [ "$WITH_DBD" = 1 ]; then
    cat > "$ETC/slurmdbd.conf" <<'EOF'
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
EOF
    chown slurm:slurm "$ETC/slurmdbd.conf"
    chmod 600 "$ETC/slurmdbd.conf"
  fi
}

wait_for() {  # wait_for <seconds> <description> <command...>; each probe must be bounded itself
  local limit=$1 what=$2; shift 2
  local t0 end
  t0=$(now)
  end=$(( $(date +%s) + limit ))
  while [ "$(date +%s)" -lt "$end" ]; do
    if "$@" >/dev/null 2>&1; then log "$what after $(since "$t0") s"; return 0; fi
    sleep 0.2
  done
  err "TIMEOUT after ${limit}s waiting for: $what"
  return 1
}

node_idle() {
  local st
  st=$(timeout 10 sinfo -h -N -o '%T' | sort -u)
  # a DRAIN reason saved by an earlier run (e.g. a gres mismatch) survives restarts
  # in StateSaveLocation; ReturnToService=2 does not clear DRAIN, so resume it
  case "$st" in drain*) timeout 10 scontrol update nodename="$(hostname -s)" state=resume ;; esac
  [ "$st" = idle ]
}

pid_alive() {  # pid_alive <pidfile>
  local pid
  [ -s "$1" ] || return 1
  pid=$(cat "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

any_running() {
  local f
  for f in $PIDFILES; do pid_alive "$f" && return 0; done
  return 1
}

start_daemon() {  # start_daemon <name> <pidfile> <logfile> <command...>: daemonizing command, bounded
  local name=$1 pidfile=$2 logfile=$3; shift 3
  if ! timeout 30 "$@"; then
    err "$name failed to start"
    show_logs "$logfile"
    exit 1
  fi
  if ! wait_for 15 "$name pid file" pid_alive "$pidfile"; then
    show_logs "$logfile"
    exit 1
  fi
}

start() {
  need_root
  not_foreign "start a test cluster"
  local t0
  t0=$(now)
  command -v slurmctld >/dev/null || { err "slurm is not installed; run '$0 install' first"; exit 1; }
  if any_running; then
    log "daemons from an earlier start are still running; stopping them first"
    stop
  fi
  write_configs

  # munge: Debian's postinst creates /etc/munge/munge.key; create one if missing
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
  # daemonizes; PID in /run/munge/munged.pid
  start_daemon munged /run/munge/munged.pid /var/log/munge/munged.log runuser -u munge -- /usr/sbin/munged
  wait_for "$START_TIMEOUT" "munge works" timeout 10 bash -c 'munge -n | unmunge' \
    || { show_logs /var/log/munge/munged.log; exit 1; }

  if [ "$WITH_DBD" = 1 ]; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || timeout 120 mariadb-install-db --user=mysql >/dev/null
    nohup /usr/sbin/mariadbd --user=mysql --pid-file="$MARIADB_PIDFILE" \
      --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 \
      >"$LOGDIR/mariadbd.log" 2>&1 &
    wait_for "$START_TIMEOUT" "mariadb answers" timeout 10 mariadb -e 'select 1' \
      || { show_logs "$LOGDIR/mariadbd.log"; exit 1; }
    timeout 30 mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
      CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
      GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
    start_daemon slurmdbd /run/slurmdbd.pid "$LOGDIR/slurmdbd.log" /usr/sbin/slurmdbd
    # sacctmgr only talks to slurmdbd when slurm.conf says accounting_storage/slurmdbd
    wait_for "$START_TIMEOUT" "slurmdbd answers" timeout 10 sacctmgr -n list cluster \
      || { show_logs "$LOGDIR/slurmdbd.log"; exit 1; }
  fi

  # -c and an empty slurmd spool: a throwaway cluster starts without the jobs and node states an earlier
  # run left (a test killed mid-job left a job that kept the node from ever reporting idle)
  rm -rf /var/spool/slurmd/* 2>/dev/null || true
  start_daemon slurmctld /run/slurmctld.pid "$LOGDIR/slurmctld.log" /usr/sbin/slurmctld -c
  wait_for "$START_TIMEOUT" "slurmctld answers" timeout 10 scontrol ping \
    || { show_logs "$LOGDIR/slurmctld.log"; exit 1; }
  start_daemon slurmd /run/slurmd.pid "$LOGDIR/slurmd.log" /usr/sbin/slurmd
  if ! wait_for "$START_TIMEOUT" "node idle" node_idle; then
    timeout 10 scontrol show node >&2 || true
    show_logs "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log"
    exit 1
  fi
  log "start took $(since "$t0") s"
  timeout 10 sinfo -o '%P %a %D %T %c %m %G'
}

stop() {
  local f pid
  not_foreign "stop daemons"
  for f in $PIDFILES; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      # bounded: 10 s for a clean exit, then SIGKILL
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        err "$f ($pid) ignored SIGTERM for 10 s; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
      log "stopped $f ($pid)"
    fi
    # slurmctld leaves its pid file behind; a stale /run/slurmctld.pid makes the
    # slurmctld prerm script (apt-get remove/purge) fail, so remove them all
    rm -f "$f"
  done
  # Park our slurm.conf: with it in place but no slurmctld, every `scontrol` (the Slurm executor
  # plugin runs one at each snakemake start) waits ~9 s for the controller; without it, it fails
  # at once. `start` writes a fresh one.
  [ -s "$ETC/slurm.conf" ] && mv -f "$ETC/slurm.conf" "$ETC/slurm.conf.stopped"
  return 0
}

status() {
  local f rc=0
  for f in /run/munge/munged.pid /run/slurmctld.pid /run/slurmd.pid; do
    if pid_alive "$f"; then log "$f: running ($(cat "$f"))"; else log "$f: not running"; rc=1; fi
  done
  if [ "$WITH_DBD" = 1 ]; then
    for f in "$MARIADB_PIDFILE" /run/slurmdbd.pid; do
      if pid_alive "$f"; then log "$f: running ($(cat "$f"))"; else log "$f: not running"; rc=1; fi
    done
  fi
  if [ "$rc" = 0 ]; then
    timeout 10 sinfo -o '%P %a %D %T %c %m %G' || rc=1
  fi
  return "$rc"
}

case "${1:-}" in
  install) install_pkgs ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
