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

A bmo that serves `POST /v1/messages` (the Anthropic dialect) is then counted again through it,
the same way (warm-up, the same requests, then the same streams, from the same fake OpenAI
upstream), after its chat figures, which do not change for it: those are the "(messages)" rows
and the "messages / chat" ones, and the functions that make the difference are listed. The raw
proxy, the floor and a bmo revision from before the route show "n/a" there. Then the same again
through `POST /v1/responses` (`store` false: the "(responses)" rows) and the legacy
`POST /v1/completions` (the "(completions)" rows, from the fake upstream's own `/v1/completions`),
each with bmo's own functions that make the most calls per streamed token through it and the
functions, Python and C, that make its difference from chat.

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
ROWS = (
    ("py_req", "Python calls per request"),
    ("c_req", "C calls per request"),
    ("py_tok", "Python calls per streamed token"),
    ("c_tok", "C calls per streamed token"),
)
# the same counts through /v1/messages (None: the gateway has no such route)
MESSAGES_KEYS = ("py_req_m", "c_req_m", "py_tok_m", "c_tok_m", "all_req_m", "all_tok_m")
# (driver API, key suffix, name) of every route counted after chat, in turn; the keys of each
# are MESSAGES_KEYS with its suffix, and but for messages own_req and own_tok (bmo's own functions)
ROUTES = (("messages", "_m", "messages"), ("responses", "_r", "responses"), ("completions", "_c", "completions"))


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


def by_function(path: Path) -> dict[str, int]:
    """Calls by every function in one profile (Python and C), under a short readable name."""
    stats: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    out: dict[str, int] = {}
    for (file, line, fn), (_cc, nc, _tt, _ct, _callers) in stats.items():
        if file == "~":
            name = fn  # a C function: "<method 'get' of 'dict' objects>", "<built-in method …>"
        else:
            short = file
            for cut in ("/site-packages/", "/bmo/", "/lib/python3"):
                if cut in file:
                    short = ("bmo/" if cut == "/bmo/" else "") + file.split(cut, 1)[1]
                    break
            name = f"{short}:{line}({fn})"
        out[name] = out.get(name, 0) + nc
    return out


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


def load_cmd(url: str, core: int | None, n: int, stream: bool, api: str = "chat") -> list[str]:
    """The driver sending exactly `n` requests, `CONCURRENCY` at a time."""
    import ab
    from targets import HERE, PY, pin_prefix

    cmd = [*pin_prefix(core), PY, str(HERE / "driver.py"), "--url", url, "--key", ab.KEY]
    cmd += ["--concurrency", str(CONCURRENCY), "--requests", str(n), "--duration", "600"]
    if stream:
        cmd += ["--stream", "--expect-tokens", str(STREAM_TOKENS)]
    if api != "chat":
        cmd += ["--api", api]
    return cmd


def route_counts(
    gw: Proc, spec: str, up: Proc, prof: Path, procs: Procs, core: int | None, api: str, sfx: str
) -> dict[str, Any]:
    """The same counts through gw's route for `api` (keys with the suffix `sfx`), or all None
    when it has no such route."""
    import ab
    import driver

    keys = [k.removesuffix("_m") + sfx for k in MESSAGES_KEYS]
    if sfx != "_m":
        keys += ["own_req" + sfx, "own_tok" + sfx]
    out: dict[str, Any] = dict.fromkeys(keys)
    url = gw.url + driver.PATHS[api]
    if spec in ("proxy", "floor") or not driver.serves(url, ab.KEY, api):
        return out
    load = functools.partial(load_cmd, url, core, api=api)
    ab.configure(up, PLAIN_TOKENS, 0.0)
    procs.start(f"{gw.name}-{api}-warm", load(WARM, False)).popen.wait(300)
    res, path = window(gw, prof, load(REQUESTS, False), procs, f"{gw.name}-{api}-plain")
    n_req = res["ok"]
    py, c, own_req = counts(path)
    every_req = by_function(path)
    ab.configure(up, STREAM_TOKENS, STREAM_DELAY_MS)
    res, path = window(gw, prof, load(STREAMS, True), procs, f"{gw.name}-{api}-stream")
    n_tok = res["tokens"]
    py_t, c_t, own_tok = counts(path)
    every_tok = by_function(path)
    out.update(
        {
            "py_req" + sfx: py / n_req,
            "c_req" + sfx: c / n_req,
            "py_tok" + sfx: py_t / n_tok,
            "c_tok" + sfx: c_t / n_tok,
            "all_req" + sfx: {k: v / n_req for k, v in every_req.items()},
            "all_tok" + sfx: {k: v / n_tok for k, v in every_tok.items()},
        }
    )
    if sfx != "_m":
        out["own_req" + sfx] = {k: v / n_req for k, v in own_req.items()}
        out["own_tok" + sfx] = {k: v / n_tok for k, v in own_tok.items()}
    print(f"[calls] {spec} {driver.PATHS[api]}: {n_req} requests, {n_tok} tokens", file=sys.stderr, flush=True)
    return out


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
            every_req = by_function(path)  # for the messages / chat differences
            n_req = res["ok"]
            ab.configure(up, STREAM_TOKENS, STREAM_DELAY_MS)
            res, path = window(gw, prof, load(STREAMS, True), procs, f"{name}-stream")
            stream = counts(path)
            n_tok = res["tokens"]
            every_tok = by_function(path)
            print(f"[calls] {spec}: {n_req} requests, {n_tok} tokens", file=sys.stderr, flush=True)
            # after the chat windows, which are counted exactly as before; each route in turn
            others: dict[str, Any] = {}
            for api, sfx, _ in ROUTES:
                others |= route_counts(gw, spec, up, prof, procs, load_core, api, sfx)
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
                    "all_req": {k: v / n_req for k, v in every_req.items()},
                    "all_tok": {k: v / n_tok for k, v in every_tok.items()},
                    **others,
                }
            )
    finally:
        procs.stop_all()
    return results


def table(results: list[dict[str, Any]]) -> str:
    from driver import PATHS

    last = results[-1]
    others = results[:-1]
    cols = [r["spec"] for r in results] + [f"{last['spec']} / {r['spec']}" for r in others]
    lines = [
        f"Calls made by each gateway ({REQUESTS} requests of {PLAIN_TOKENS} tokens, then {STREAMS} streams of "
        f"{STREAM_TOKENS} tokens at {STREAM_DELAY_MS:g} ms; {CONCURRENCY} in flight; main thread, under cProfile)",
        "",
        "(messages): the same again through POST /v1/messages, after the chat counts; n/a where the gateway has "
        "no such route",
        "",
        "(responses), (completions): likewise through POST /v1/responses (store false) and POST /v1/completions "
        "(the fake upstream's own /v1/completions), in turn after the messages counts",
        "",
        "| per unit | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for key, label in ROWS:
        cells = [f"{r[key]:.1f}" for r in results] + [f"{last[key] / r[key]:.2f}×" for r in others]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for _api, sfx, name in ROUTES:
        for key, label in ROWS:
            m = key + sfx
            cells = [_num(r.get(m)) for r in results] + [_ratio(last.get(m), r.get(m)) for r in others]
            lines.append(f"| {label} ({name}) | " + " | ".join(cells) + " |")
        for key, label in ROWS:
            cells = [_ratio(r.get(key + sfx), r[key]) for r in results] + [""] * len(others)
            lines.append(f"| {label}, {name} / chat | " + " | ".join(cells) + " |")
    for key, unit in (("own_req", "request"), ("own_tok", "streamed token")):
        own = sorted(last[key].items(), key=lambda kv: -kv[1])[:TOP]
        if own:
            lines += ["", f"bmo's own functions with the most calls per {unit} ({last['spec']}):", ""]
            lines += [f"- {n:.2f} `{name}`" for name, n in own]
    for api, sfx, name in ROUTES:
        path = PATHS[api]
        for key, unit in (("own_req", "request"), ("own_tok", "streamed token")):
            own = sorted((last.get(key + sfx) or {}).items(), key=lambda kv: -kv[1])[:TOP]
            if own:
                lines += [
                    "",
                    f"bmo's own functions with the most calls per {unit} through {path} ({last['spec']}):",
                    "",
                ]
                lines += [f"- {n:.2f} `{fn}`" for fn, n in own]
        for key, unit in (("all_req", "request"), ("all_tok", "streamed token")):
            chat, other = last.get(key), last.get(key + sfx)
            if not chat or not other:
                continue
            lines += _differences(chat, other, path, name, unit, last["spec"])
    return "\n".join(lines)


def _differences(
    chat: dict[str, float], other: dict[str, float], path: str, name: str, unit: str, spec: str
) -> list[str]:
    """The functions (Python and C) whose calls per `unit` through `path` differ from chat's."""
    diff = {k: other.get(k, 0.0) - chat.get(k, 0.0) for k in chat.keys() | other.keys()}
    more = [kv for kv in sorted(diff.items(), key=lambda kv: -kv[1]) if kv[1] >= 0.005][:TOP]
    fewer = [kv for kv in sorted(diff.items(), key=lambda kv: kv[1]) if kv[1] <= -0.005][: TOP // 2]
    lines = ["", f"Where {path} makes more calls than chat, per {unit} ({spec}; Python and C):", ""]
    lines += [f"- {d:+.2f} `{k}` (chat {chat.get(k, 0.0):.2f}, {name} {other.get(k, 0.0):.2f})" for k, d in more]
    if fewer:
        lines += ["", f"and fewer, per {unit}:", ""]
        lines += [f"- {d:+.2f} `{k}` (chat {chat.get(k, 0.0):.2f}, {name} {other.get(k, 0.0):.2f})" for k, d in fewer]
    return lines


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}×"


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
