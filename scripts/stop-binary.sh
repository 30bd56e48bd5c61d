# shellcheck shell=bash
# Sourced by build.sh, smoke.sh and startup.sh: stop a running binary (and any child) cleanly.
#
# The one-folder build is one process; a one-file build was two (its bootloader forwards SIGTERM
# to the Python child, but SIGKILL cannot be forwarded), so: TERM first, and KILL the children by
# their own pids if stuck.
stop_binary() {
  local pid=$1 kids
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kids=$(pgrep -P "$pid" 2>/dev/null || true)
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then  # stuck: the bootloader waits for its child, so both are
    # shellcheck disable=SC2086  # $kids is a list of pids
    kill -KILL $kids "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
