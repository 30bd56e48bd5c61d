"""Same-core A/B: is change B cheaper than A? (run it as `scripts/bench.sh --ab A B`)

The full benchmark measures each gateway alone, one after the other, so drift on a shared
machine (other tenants, the sibling hyperthread) moves its ratios by 10 % or more between runs:
too coarse to tell whether one change saved 3 %. Here both gateways run on the same core *at
the same time*, each under its own identical load, so whatever slows the core slows both alike;
each round gives the ratio of B's CPU per unit to A's, and the median of the rounds is reported.
Same-run, same-core ratios of two identical trees come out at 1.00 ± 0.03.

A and B are each `proxy` (the raw aiohttp proxy), `floor` (bmo's own work by hand, floor.py),
`worktree` (this checkout, uncommitted changes included), a git revision (exported with
`git archive`), or a directory holding `internal/bmo` (a copy with an experiment in it). Units
are requests, or streamed tokens with `--stream` (200 tokens at 5 ms each, like the full
benchmark's stream scenario). Figures are for comparing A with B only; the full benchmark is the record.

`--b-messages` loads B through `POST /v1/messages` (the Anthropic dialect, same body, same fake
OpenAI upstream) and A through chat completions as always: `--ab worktree worktree --b-messages`
is what the Anthropic dialect costs against chat, per request or per token, on one core.
`--b-api API` does the same for any route the driver knows: `responses` (`store` false),
`responses_store` (`store` left out: true), `completions` (from the fake upstream's own
`/v1/completions`) or `messages` (= `--b-messages`).

    scripts/bench.sh --ab HEAD~1 worktree
    scripts/bench.sh --ab proxy worktree --stream --rounds 5
    scripts/bench.sh --ab worktree worktree --b-messages --stream
    scripts/bench.sh --ab worktree worktree --b-api completions --stream
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import driver
import orjson
import procstat
import targets
from run import export_rev
from targets import HERE, PY, Proc, Procs, pin_prefix

KEY = "sk-bmo-bench-ab-0123456789abcdef"
STREAM_TOKENS, STREAM_DELAY_MS = 200, 5.0
PLAIN_TOKENS = 32


def start(procs: Procs, spec: str, name: str, upstream: Proc, core: int | None, profile: Path | None = None) -> Proc:
    """`profile`: the gateway runs under calls.py's profiler, which writes there."""
    if spec == "proxy":
        return targets.start_proxy(procs, upstream, core, name=name, profile=profile)
    if spec == "floor":
        return targets.start_floor(procs, upstream, KEY, core, name=name, profile=profile)
    src = None
    if (Path(spec) / "internal" / "bmo").is_dir():
        src = Path(spec)  # a tree of its own (a copy with an experiment in it)
    elif spec != "worktree":
        src, _ = export_rev(spec, procs.workdir / f"{name}-src")
    return targets.start_bmo(procs, upstream, KEY, core, src, name=name, profile=profile)


def configure(upstream: Proc, tokens: int, delay_ms: float) -> None:
    body = orjson.dumps({"tokens": tokens, "delay_ms": delay_ms, "latency_ms": 0})
    req = urllib.request.Request(upstream.url + "/_bench/config", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def load_cmd(procs: Procs, a: argparse.Namespace, gw: Proc, name: str, api: str = "chat") -> list[str]:
    url = gw.url + driver.PATHS[api]
    if not a.stream and driver.wrk_available():
        return driver.wrk_command(url, KEY, "bench", a.concurrency, a.seconds, procs.workdir / f"{name}.lua", api)
    cmd = [PY, str(HERE / "driver.py"), "--url", url, "--key", KEY, "--concurrency", str(a.concurrency)]
    cmd += ["--requests", "10000000", "--duration", str(a.seconds), "--timeout", "30", "--api", api]
    if a.stream:
        cmd += ["--stream", "--expect-tokens", str(STREAM_TOKENS)]
    return cmd


def units(out: str, a: argparse.Namespace, wrk: bool) -> tuple[float, dict[str, Any]]:
    res = driver.parse_wrk(out, a.concurrency) if wrk else orjson.loads(out.strip().splitlines()[-1])
    n = res["tokens"] if a.stream else res["ok"]
    return float(n), res["errors"]


def one_round(procs: Procs, a: argparse.Namespace, gws: list[Proc], load_core: int | None, r: int) -> list[float]:
    """Load both gateways at once; returns each one's CPU microseconds per unit."""
    before = [procstat.cpu_seconds(g.pid) for g in gws]
    apis = ["chat", a.b_api]
    loads = [
        procs.start(f"load-{r}-{g.name}", [*pin_prefix(load_core), *load_cmd(procs, a, g, g.name, api)])
        for g, api in zip(gws, apis, strict=True)
    ]
    deadline = time.monotonic() + a.seconds + 60
    for p in loads:
        p.popen.wait(max(1.0, deadline - time.monotonic()))
    time.sleep(0.3)  # the ledger writes right after the last response count
    after = [procstat.cpu_seconds(g.pid) for g in gws]
    wrk = not a.stream and driver.wrk_available()
    out = []
    for g, p, c0, c1 in zip(gws, loads, before, after, strict=True):
        n, errors = units(p.log.read_text(errors="replace"), a, wrk)
        if errors or n <= 0:
            raise RuntimeError(f"{g.name}: the load saw errors {errors} ({n:g} units):\n{p.tail()}")
        out.append((c1 - c0) * 1e6 / n)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="proxy | floor | worktree | a git revision | a directory holding internal/bmo")
    ap.add_argument("b", help="proxy | floor | worktree | a git revision | a directory holding internal/bmo")
    ap.add_argument("--stream", action="store_true", help="streams of 200 tokens at 5 ms; units are tokens")
    ap.add_argument("--b-messages", action="store_true", help="load B through /v1/messages (A: chat completions)")
    ap.add_argument(
        "--b-api",
        choices=driver.APIS,
        default="chat",
        help="load B through this route (A: chat completions): messages, responses (store false), "
        "responses_store (store true), completions",
    )
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=0.0, help="per round (default 4, or 8 with --stream)")
    ap.add_argument("--concurrency", type=int, default=0, help="per gateway (default 8, or 32 with --stream)")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--pidfile", default=None)
    a = ap.parse_args()
    if a.b_messages:
        if a.b_api not in ("chat", "messages"):
            ap.error("--b-messages is --b-api messages: give one of them")
        a.b_api = "messages"
    a.seconds = a.seconds or (8.0 if a.stream else 4.0)
    a.concurrency = a.concurrency or (32 if a.stream else 8)
    procs = Procs(Path(a.workdir), Path(a.pidfile) if a.pidfile else None)
    pinned = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    gw_core, load_core = (0, 1) if pinned else (None, None)
    try:
        up = targets.start_upstream(procs, load_core)
        configure(up, *((STREAM_TOKENS, STREAM_DELAY_MS) if a.stream else (PLAIN_TOKENS, 0.0)))
        gws = [start(procs, a.a, "A", up, gw_core), start(procs, a.b, "B", up, gw_core)]
        if a.b_api != "chat" and not driver.serves(gws[1].url + driver.PATHS[a.b_api], KEY, a.b_api):
            raise SystemExit(f"--b-api {a.b_api}: {a.b} has no {driver.PATHS[a.b_api]} route")
        warm = argparse.Namespace(**{**vars(a), "seconds": 2.0})
        one_round(procs, warm, gws, load_core, 0)
        unit = "µs/token" if a.stream else "µs/request"
        ratios = []
        for r in range(1, a.rounds + 1):
            ca, cb = one_round(procs, a, gws, load_core, r)
            ratios.append(cb / ca)
            print(f"round {r}: A {ca:8.1f} {unit}   B {cb:8.1f} {unit}   B/A {cb / ca:.3f}", flush=True)
    finally:
        procs.stop_all()
    where = "both on core 0, loads and upstream on core 1" if pinned else "not pinned"
    b = a.b
    if a.b_api != "chat":
        store = {"responses": " (store false)", "responses_store": " (store true)"}.get(a.b_api, "")
        b = f"{a.b} through {driver.PATHS[a.b_api]}{store}, A through chat completions"
    print(f"B/A median {statistics.median(ratios):.3f} over {a.rounds} rounds ({where}): A = {a.a}, B = {b}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
