"""`bmo serve --workers N` against one worker, same run (run it as `scripts/bench.sh --workers [N]`).

Plain chat completions at c=64 (the full benchmark's main scenario: the fake upstream answers at
once, so bmo's own CPU is the limit), through bmo with 1 worker and with N, each measured
`--rounds` times in alternation; req/s and the gateway's CPU per request (utime+stime of the
supervisor and its workers, from /proc).

Where the driver's CPU goes matters as much as bmo's. On a machine with more than N cores the
gateway is pinned to cores 1…N and the driver and the fake upstream to core 0 (taskset), so
neither takes a worker's core. On a 2-core machine that is impossible for N = 2, and the run says
so: it measures, besides the clean 1-worker figure (bmo on core 1, driver and upstream on core
0), both 1 and N workers unpinned, sharing both cores with the driver and the upstream (the
honest throughput comparison there), and N workers pinned together on core 1 (clean CPU per
request: what the workers' machinery costs, not what they gain).

    scripts/bench.sh --workers          # N = 2
    scripts/bench.sh --workers 4 --seconds 20 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import procstat
import targets
from targets import HERE, PY, Procs, pin_prefix

KEY = "sk-bmo-bench-workers-0123456789abcdef"


def measure(procs: Procs, up: targets.Proc, workers: int, core: Any, drv_core: Any,
            a: argparse.Namespace, name: str) -> dict[str, Any]:  # fmt: skip
    args = ("--workers", str(workers)) if workers > 1 else ()
    gw = targets.start_bmo(procs, up, KEY, core, name=name, args=args)
    try:
        time.sleep(1.0)  # every worker listening, start-up over
        warm = [*pin_prefix(drv_core), PY, str(HERE / "driver.py"), "--url", gw.url + "/v1/chat/completions"]
        warm += ["--key", KEY, "--concurrency", "8", "--requests", "400", "--duration", "3"]
        subprocess.run(warm, capture_output=True, timeout=60, check=True)
        cmd = [*pin_prefix(drv_core), PY, str(HERE / "driver.py"), "--url", gw.url + "/v1/chat/completions"]
        cmd += ["--key", KEY, "--concurrency", str(a.concurrency), "--requests", "10000000"]
        cmd += ["--duration", str(a.seconds), "--timeout", "30"]
        g0, u0, d0 = procstat.cpu_seconds(gw.pid), procstat.cpu_seconds(up.pid), procstat.self_and_children_seconds()
        j0 = procstat.core_jiffies()
        out = subprocess.run(cmd, capture_output=True, timeout=a.seconds + 120, check=True).stdout
        g1, u1, d1 = procstat.cpu_seconds(gw.pid), procstat.cpu_seconds(up.pid), procstat.self_and_children_seconds()
        j1 = procstat.core_jiffies()
    finally:
        procs.stop(gw)
        procs.started.remove(gw)
    r = orjson.loads(out.splitlines()[-1])
    ok = max(1, int(r["ok"]))
    return {
        "rps": r["rps"],
        "ok": r["ok"],
        "errors": sum(r["errors"].values()),
        "gw_ms_per_req": (g1 - g0) * 1000 / ok,
        "drv_ms_per_req": (d1 - d0) * 1000 / ok,
        "up_ms_per_req": (u1 - u0) * 1000 / ok,
        "busy": [procstat.busy_pct(j0, j1, c) for c in sorted(j0)],
        "p50_ms": r["lat_p50_ms"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--pidfile")
    ap.add_argument("workers", nargs="?", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    n = a.workers
    cores = os.cpu_count() or 1
    procs = Procs(Path(a.workdir), Path(a.pidfile) if a.pidfile else None)
    # (label, workers, gateway core, driver+upstream core); None: not pinned
    if cores > n:
        plan: list[tuple[str, int, Any, Any]] = [
            ("1 worker, core 1; driver+upstream core 0", 1, 1, 0),
            (f"{n} workers, cores 1-{n}; driver+upstream core 0", n, f"1-{n}", 0),
        ]
        print(f"[workers] {cores} cores: the gateway's workers and the driver never share a core", file=sys.stderr)
    else:
        plan = [
            ("1 worker, core 1; driver+upstream core 0", 1, 1, 0),
            ("1 worker, unpinned; driver+upstream unpinned", 1, None, None),
            (f"{n} workers, unpinned; driver+upstream unpinned", n, None, None),
            (f"{n} workers, all on core 1; driver+upstream core 0", n, 1, 0),
        ]
        print(
            f"[workers] {cores} cores for {n} workers: the driver and the upstream cannot have a core of their "
            "own beside them; the unpinned rows share every core (not a clean figure), the pinned rows are clean",
            file=sys.stderr,
        )
    results: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in plan}
    try:
        up = targets.start_upstream(procs, plan[0][3])
        for rnd in range(a.rounds):
            for label, w, core, drv in plan if rnd % 2 == 0 else list(reversed(plan)):
                # the upstream (every thread of it) goes where the driver runs
                where = str(drv) if drv is not None else f"0-{cores - 1}"
                subprocess.run(["taskset", "-a", "-p", "-c", where, str(up.pid)], capture_output=True, check=False)
                r = measure(procs, up, w, core, drv, a, f"bmo-{w}w-{rnd}")
                results[label].append(r)
                print(f"[workers] round {rnd + 1} {label}: {r['rps']:.0f} req/s, {r['gw_ms_per_req']:.3f} ms CPU/req",
                      file=sys.stderr)  # fmt: skip
    finally:
        procs.stop_all()
    out = [
        f"c={a.concurrency} plain chat completions, {a.seconds:g} s x {a.rounds} rounds each (medians), "
        f"{cores} cores, python driver",
        "",
        "| bmo | req/s | gateway CPU ms/req | driver CPU ms/req | upstream CPU ms/req | p50 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, rs in results.items():

        def med(k: str, rs: list[dict[str, Any]] = rs) -> float:
            return statistics.median(r[k] for r in rs)

        out.append(
            f"| {label} | {med('rps'):.0f} | {med('gw_ms_per_req'):.3f} | {med('drv_ms_per_req'):.3f} | "
            f"{med('up_ms_per_req'):.3f} | {med('p50_ms'):.1f} | {sum(r['errors'] for r in rs)} |"
        )
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
