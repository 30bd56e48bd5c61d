#!/usr/bin/env bash
# The benchmark of issue 7: bmo against direct-to-upstream, a raw aiohttp proxy and the floor
# (scripts/bench/floor.py: bmo's own work on the path, by hand), same run; and bmo's
# /v1/messages (the Anthropic dialect), /v1/responses (store false; and, streams only, store
# true) and legacy /v1/completions beside its chat completions in the c=64 and 64-stream
# scenarios (bmo only: nothing else has those routes), plus the first byte of a completions
# stream, one at a time, against the fake upstream's own /v1/completions.
#
#   scripts/bench.sh                 full run (under 10 minutes on 2 cores); table to stdout and
#                                    scripts/bench/last-run.md (git-ignored)
#   scripts/bench.sh --quick         smoke run, about a minute
#   scripts/bench.sh --out FILE      write the table to FILE instead
#   scripts/bench.sh --profile DIR   py-spy profiles of the gateways under the c=64 loads
#   scripts/bench.sh --no-pin | --python-driver
#   BENCH_LITELLM=1 scripts/bench.sh adds a LiteLLM column (own venv under $TMPDIR, made once)
#   scripts/bench.sh --setup         the only step that installs anything: wrk (apt-get) and
#                                    py-spy (into .venv); without wrk the Python driver is used
#   scripts/bench.sh --ab A B [--stream] [--rounds N] [--b-messages | --b-api API]
#                                    same-core A/B of two trees (proxy | floor | worktree | rev):
#                                    both gateways loaded at once on one core, median CPU ratio
#                                    B/A; tells a 3 % change from noise (scripts/bench/ab.py);
#                                    --b-messages loads B through /v1/messages (A: chat);
#                                    --b-api responses|responses_store|completions likewise
#   scripts/bench.sh --calls [SPEC ...]
#                                    function calls per request and per token of each gateway
#                                    (default: proxy floor worktree), under cProfile: the same
#                                    on every run, noisy machine or not (scripts/bench/calls.py);
#                                    bmo's /v1/messages, /v1/responses and /v1/completions
#                                    too, in rows of their own
#   scripts/bench.sh --workers [N] [--seconds S] [--rounds R]
#                                    `bmo serve --workers N` (default 2) against 1 worker, same
#                                    run: req/s and CPU per request at c=64, and where the
#                                    driver ran (scripts/bench/workers.py)
#   scripts/bench.sh --store [--seconds S] [--rounds R] [--concurrency C]
#                                    bmo on its PostgreSQL store against its SQLite store,
#                                    same run: req/s, CPU per request (bmo's and the
#                                    database's), ledger rows lost (scripts/bench/store.py;
#                                    PostgreSQL from /usr/lib/postgresql/*/bin, started here)
#
# Everything binds 127.0.0.1. Every process started is stopped on exit, failure, Ctrl-C or TERM.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || { echo "bench: $PY not found; create .venv first (see README.md)" >&2; exit 2; }

if [ "${1:-}" = "--setup" ]; then
  if ! command -v wrk >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      apt-get update -qq && apt-get install -y -qq wrk
    else
      echo "bench: install wrk with your package manager (optional: the Python driver is the fallback)" >&2
    fi
  fi
  "$PY" -m pip install -q py-spy
  exit 0
fi

# 1,000 streams through a gateway hold ~2,000 sockets in it
[ "$(ulimit -n)" -ge 8192 ] 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bmo-bench.XXXXXX")
PIDFILE="$WORK/pids"
ORCH=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$ORCH" ] && kill -0 "$ORCH" 2>/dev/null; then
    kill -TERM "$ORCH" 2>/dev/null || true  # it stops its own processes in order
    for _ in $(seq 1 100); do kill -0 "$ORCH" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$ORCH" 2>/dev/null || true
  fi
  if [ -f "$PIDFILE" ]; then  # anything it could not stop: each session it started, by id
    while read -r pid; do kill -KILL -- "-$pid" 2>/dev/null || true; done <"$PIDFILE"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "${1:-}" = "--ab" ]; then
  shift
  "$PY" scripts/bench/ab.py --workdir "$WORK" --pidfile "$PIDFILE" "$@" &
elif [ "${1:-}" = "--calls" ]; then
  shift
  "$PY" scripts/bench/calls.py --workdir "$WORK" --pidfile "$PIDFILE" "$@" &
elif [ "${1:-}" = "--workers" ]; then
  shift
  "$PY" scripts/bench/workers.py --workdir "$WORK" --pidfile "$PIDFILE" "$@" &
elif [ "${1:-}" = "--store" ]; then
  shift
  "$PY" scripts/bench/store.py --workdir "$WORK" --pidfile "$PIDFILE" "$@" &
else
  BENCH_CMD="scripts/bench.sh${*:+ $*}" BENCH_WORKDIR="$WORK" BENCH_PIDFILE="$PIDFILE" \
    "$PY" scripts/bench/run.py "$@" &
fi
ORCH=$!
wait "$ORCH"
