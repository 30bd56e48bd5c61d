#!/usr/bin/env bash
# How fast a built binary starts, as a user meets it: medians of N runs (default 20).
#
#   bash scripts/startup.sh dist/bmo [N]
#
#   version  exec -> `bmo version` exits
#   serve    exec of `bmo serve` on an empty home -> the first 200 from /health (curl polls every
#            few ms; the figure includes one curl, ~5 ms)
#   size     the installed files (the binary's folder) and the release tarball, when there is one
#
# Under `env -i`, an empty BMO_HOME each run, BMO_API_KEY set (so no key is minted). Only bash,
# curl and coreutils; no Python. A benchmark, not a test: it prints figures and never fails on them.
set -euo pipefail
# shellcheck source=scripts/stop-binary.sh
. "$(dirname "$0")/stop-binary.sh"
[ $# -ge 1 ] || { echo "usage: $0 BINARY [N]" >&2; exit 2; }
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
N=${2:-20}
tmp=$(mktemp -d)
pid=
cleanup() { stop_binary "$pid"; rm -rf "$tmp"; }
trap cleanup EXIT
now_us() { echo $(($(date +%s%N) / 1000)); }
median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }
CLEAN_ENV=(env -i PATH=/usr/bin:/bin HOME="$tmp" BMO_HOME="$tmp/home" BMO_API_KEY=sk-bmo-startup-0123456789)

"$BIN" version >/dev/null  # warm the page cache: a cold first start is the disk's figure, not bmo's
for _ in $(seq 1 "$N"); do
  t0=$(now_us); "${CLEAN_ENV[@]}" "$BIN" version >/dev/null; echo $(($(now_us) - t0))
done >"$tmp/version"

i=0
tries=0
while [ "$i" -lt "$N" ]; do
  rm -rf "$tmp/home"
  port=$((20000 + RANDOM % 30000))  # a fixed port, so that curl can poll before the banner is out
  t0=$(now_us)
  # started directly (not through a function, which would be a subshell): $! is bmo's own pid
  "${CLEAN_ENV[@]}" "$BIN" serve --port "$port" >/dev/null 2>"$tmp/err" &
  pid=$!
  up=1
  until curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$port/health"; do
    if ! kill -0 "$pid" 2>/dev/null; then up=; break; fi
    sleep 0.002
  done
  if [ -z "$up" ]; then  # most likely the port was taken: another one
    tries=$((tries + 1))
    [ "$tries" -lt 5 ] || { echo "startup.sh: 'bmo serve' keeps failing: $(cat "$tmp/err")" >&2; exit 1; }
    pid=
    continue
  fi
  echo $(($(now_us) - t0)) >>"$tmp/serve"
  stop_binary "$pid"
  pid=
  i=$((i + 1))
done

real=$(readlink -f "$BIN")
dir=$(dirname "$real")
if [ -d "$dir/_internal" ]; then size=$(du -sb "$dir" | cut -f1); what="folder $dir"; else size=$(stat -c %s "$real"); what="file"; fi
ms() { awk '{printf "%.0f ms", $1 / 1000}'; }
echo "bmo version: median $(median <"$tmp/version" | ms) of $N"
echo "bmo serve -> first /health 200: median $(median <"$tmp/serve" | ms) of $N"
echo "installed size: $((size / 1024 / 1024)) MiB ($what)"
for t in "$(dirname "$BIN")"/bmo-*.tar.gz; do
  [ -f "$t" ] && echo "release tarball: $(($(stat -c %s "$t") / 1024 / 1024)) MiB ($(basename "$t"), $(stat -c %s "$t") bytes)"
done
exit 0
