# slow_day COMMAND... — runs COMMAND with half of the machine's CPU time (a CPU cgroup's quota of
# nproc/2 CPUs, spread over every core in 10 ms periods): a CPU-bound run takes as long as on a
# slow day, when `/healthz` costs twice its usual CPU, whatever the day. It does not slow the
# disk (a slow day's fdatasync is also 2–3× longer). Needs root and a cgroup CPU controller (v1
# or v2). Returns COMMAND's status.
slow_day() {
  local name="crest-slow-day-$$" period=10000
  local quota=$((period * $(nproc) / 2)) dir
  if [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
    dir=/sys/fs/cgroup/cpu/$name
    mkdir -p "$dir" && echo "$period" > "$dir/cpu.cfs_period_us" && echo "$quota" > "$dir/cpu.cfs_quota_us" || return 1
  elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    dir=/sys/fs/cgroup/$name
    echo +cpu > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
    mkdir -p "$dir" && echo "$quota $period" > "$dir/cpu.max" || return 1
  else
    echo "slow_day: no cgroup CPU controller here" >&2
    return 1
  fi
  local status=0
  (echo "$BASHPID" > "$dir/cgroup.procs" && exec "$@") || status=$?
  rmdir "$dir" 2>/dev/null || true
  return "$status"
}
