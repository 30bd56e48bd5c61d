"""Function calls per request and per streamed token: the benchmark's one noise-free figure
(run it as `scripts/bench.sh --calls [SPEC ...]`).

CPU time on a shared 2-core machine moves by 10 % or more between runs; the number of Python
function calls a gateway makes for one request does not. Each gateway runs under cProfile
(switched on only while a fixed number of requests is sent, from a separate process) and the
calls it made are divided by the requests, or by the tokens relayed. A Python-level call (or a
coroutine resumed) is the unit of work in CPython, so the ratio of calls tracks the ratio of
CPU closely; a call into C (a builtin, a method of dict or bytes) is far cheaper and is counted
apart. The main thread only: a SQLite write in a worker thread is not counted.

SPEC is `proxy`, `floor`, `worktree` (this checkout), a git revision or a directory holding
`internal/bmo`, as for `--ab`; the default is `proxy floor worktree`. Loopback only.

    scripts/bench.sh --calls
    scripts/bench.sh --calls HEAD~1 worktree

`--profiled OUT -- PROGRAM ARGS…` is how each gateway is started: it runs PROGRAM (a script,
or `-m module`) with a profiler that SIGUSR1 starts afresh and SIGUSR2 stops and writes to OUT.
"""

from __future__ import annotations

import argparse
import functools
import os
import pstats
import runpy
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from targets import Proc, Procs

# The harness's own modules (targets, ab, driver…) are imported inside the functions that use
# them: with `--profiled` this file runs inside the gateway, which should load nothing of ours.

STREAM_TOKENS, STREAM_DELAY_MS = 200, 5.0
PLAIN_TOKENS = 32
WARM, REQUESTS, STREAMS, CONCURRENCY = 300, 2000, 24, 8
TOP = 12


def profiled(out: str, program: list[str]) -> None:
    """Run `program` in this process, profiled between SIGUSR1 and SIGUSR2."""
    import cProfile

    state: dict[str, cProfile.Profile] = {}

    def start(*_: object) -> None:
        state["p"] = cProfile.Profile()
        state["p"].enable()

    def stop(*_: object) -> None:
        p = state.pop("p", None)
        if p is not None:
            p.disable()
            p.dump_stats(out + ".tmp")
            os.replace(out + ".tmp", out)  # whole or absent: the orchestrator polls for it

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    if program[0] == "-m":
        sys.argv = [program[1], *program[2:]]
        runpy.run_module(program[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = program
        runpy.run_path(program[0], run_name="__main__")


def counts(path: Path) -> tuple[int, int, dict[str, int]]:
    """(Python calls, C calls, calls by bmo's own functions) in one profile."""
    stats: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    py = c = 0
    own: dict[str, int] = {}
    for (file, line, fn), (_cc, nc, _tt, _ct, _callers) in stats.items():
        if file == "~":
            c += nc
            continue
        py += nc
        if "/bmo/" in file and "/scripts/" not in file:
            name = f"{file.split('/bmo/', 1)[1]}:{line}({fn})"
            own[name] = own.get(name, 0) + nc
    return py, c, own


def window(gw: Proc, out: Path, load: list[str], procs: Procs, name: str) -> tuple[dict[str, Any], Path]:
    """Profile `gw` while `load` runs to its end; returns the load's result and the profile."""
    import orjson

    out.unlink(missing_ok=True)
    os.kill(gw.pid, signal.SIGUSR1)
    time.sleep(0.2)  # the handler runs between two bytecodes of the gateway's loop
    p = procs.start(name, load)
    p.popen.wait(300)
    time.sleep(0.3)  # the ledger's batch after the last answer
    os.kill(gw.pid, signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while not out.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{gw.name} wrote no profile:\n{gw.tail()}")
        time.sleep(0.1)
    res = orjson.loads(p.log.read_text().strip().splitlines()[-1])
    if res["errors"]:
        raise RuntimeError(f"{gw.name}: the load saw errors {res['errors']}:\n{p.tail()}")
    return res, out


def load_cmd(url: str, core: int | None, n: int, stream: bool) -> list[str]:
    """The driver sending exactly `n` requests, `CONCURRENCY` at a time."""
    import ab
    from targets import HERE, PY, pin_prefix

    cmd = [*pin_prefix(core), PY, str(HERE / "driver.py"), "--url", url, "--key", ab.KEY]
    cmd += ["--concurrency", str(CONCURRENCY), "--requests", str(n), "--duration", "600"]
    if stream:
        cmd += ["--stream", "--expect-tokens", str(STREAM_TOKENS)]
    return cmd


def measure(a: argparse.Namespace) -> list[dict[str, Any]]:
    import ab
    import targets
    from targets import Procs

    procs = Procs(Path(a.workdir), Path(a.pidfile) if a.pidfile else None)
    pinned = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    gw_core, load_core = (0, 1) if pinned else (None, None)
    results = []
    try:
        up = targets.start_upstream(procs, load_core)
        for i, spec in enumerate(a.specs):
            name = f"g{i}"
            prof = Path(a.workdir) / f"{name}.prof"
            gw = ab.start(procs, spec, name, up, gw_core, profile=prof)
            url = gw.url + "/v1/chat/completions"
            load = functools.partial(load_cmd, url, load_core)
            ab.configure(up, PLAIN_TOKENS, 0.0)
            procs.start(f"{name}-warm", load(WARM, False)).popen.wait(300)
            res, path = window(gw, prof, load(REQUESTS, False), procs, f"{name}-plain")
            plain = counts(path)
            n_req = res["ok"]
            ab.configure(up, STREAM_TOKENS, STREAM_DELAY_MS)
            res, path = window(gw, prof, load(STREAMS, True), procs, f"{name}-stream")
            stream = counts(path)
            n_tok = res["tokens"]
            procs.stop(gw)
            results.append(
                {
                    "spec": spec,
                    "py_req": plain[0] / n_req,
                    "c_req": plain[1] / n_req,
                    "py_tok": stream[0] / n_tok,
                    "c_tok": stream[1] / n_tok,
                    "own_req": {k: v / n_req for k, v in plain[2].items()},
                    "own_tok": {k: v / n_tok for k, v in stream[2].items()},
                }
            )
            print(f"[calls] {spec}: {n_req} requests, {n_tok} tokens", file=sys.stderr, flush=True)
    finally:
        procs.stop_all()
    return results


def table(results: list[dict[str, Any]]) -> str:
    last = results[-1]
    others = results[:-1]
    cols = [r["spec"] for r in results] + [f"{last['spec']} / {r['spec']}" for r in others]
    lines = [
        f"Calls made by each gateway ({REQUESTS} requests of {PLAIN_TOKENS} tokens, then {STREAMS} streams of "
        f"{STREAM_TOKENS} tokens at {STREAM_DELAY_MS:g} ms; {CONCURRENCY} in flight; main thread, under cProfile)",
        "",
        "| per unit | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for key, label in (
        ("py_req", "Python calls per request"),
        ("c_req", "C calls per request"),
        ("py_tok", "Python calls per streamed token"),
        ("c_tok", "C calls per streamed token"),
    ):
        cells = [f"{r[key]:.1f}" for r in results] + [f"{last[key] / r[key]:.2f}×" for r in others]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for key, unit in (("own_req", "request"), ("own_tok", "streamed token")):
        own = sorted(last[key].items(), key=lambda kv: -kv[1])[:TOP]
        if own:
            lines += ["", f"bmo's own functions with the most calls per {unit} ({last['spec']}):", ""]
            lines += [f"- {n:.2f} `{name}`" for name, n in own]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--profiled":
        out, sep, *program = sys.argv[2:]
        assert sep == "--" and program, "usage: calls.py --profiled OUT -- PROGRAM ARGS…"
        profiled(out, program)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="*", default=["proxy", "floor", "worktree"])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--pidfile", default=None)
    a = ap.parse_args()
    print(table(measure(a)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
