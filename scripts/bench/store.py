"""bmo with its PostgreSQL store against its SQLite store, same run (`scripts/bench.sh --store`).

Plain chat completions at c=64 (the full benchmark's main scenario: the fake upstream answers at
once, so bmo's own CPU is the limit), through bmo on SQLite (BMO_HOME/bmo.db) and on PostgreSQL
(`BMO_STORE_URL`, a throwaway server started here from /usr/lib/postgresql/*/bin, as the tests
do: tests/pg.py), each measured `--rounds` times in alternation, a fresh home (and database)
each time. Reported: req/s, bmo's CPU per request (utime+stime, from /proc), the database
server's CPU per request (PostgreSQL only: SQLite's work is inside bmo's), and ledger rows lost:
every answer the driver got against the rows in the ledger after bmo stopped (SIGTERM drains the
writer), which must be 0.

bmo is pinned to core 1, the driver, the fake upstream and PostgreSQL to core 0 (taskset), so
the gateway's figure is its own. This checkout's bmo is run (PYTHONPATH=internal).

    scripts/bench.sh --store                      # 12 s x 2 rounds each
    scripts/bench.sh --store --seconds 20 --rounds 3 --concurrency 256
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import procstat
import targets
from targets import HERE, PY, REPO, Procs, pin_prefix

sys.path.insert(0, str(REPO / "tests"))
from pg import PgServer, pg_bin  # noqa: E402  (the tests' throwaway PostgreSQL: one way to start it)

KEY = "sk-bmo-bench-store-0123456789abcdef00"


def _postmaster(server: PgServer) -> int:
    return int((server.data / "postmaster.pid").read_text().split()[0])


def _rows(home: Path, url: str | None) -> int:
    if url is None:
        db = sqlite3.connect(home / "bmo.db")
        try:
            return int(db.execute("SELECT count(*) FROM runs").fetchone()[0])
        finally:
            db.close()
    import asyncpg

    async def go() -> int:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM runs"))
        finally:
            await conn.close()

    return asyncio.run(go())


def _drive(url: str, conc: int, requests: int, seconds: float) -> dict[str, Any]:
    cmd = [*pin_prefix(0), PY, str(HERE / "driver.py"), "--url", url + "/v1/chat/completions", "--key", KEY]
    cmd += ["--concurrency", str(conc), "--requests", str(requests), "--duration", str(seconds), "--timeout", "30"]
    out = subprocess.run(cmd, capture_output=True, timeout=seconds + 120, check=True).stdout
    return dict(orjson.loads(out.splitlines()[-1]))


def measure(procs: Procs, up: targets.Proc, pg: PgServer | None, a: argparse.Namespace, name: str) -> dict[str, Any]:
    url = pg.database() if pg is not None else None
    env = {"BMO_STORE_URL": url} if url else {}
    gw = targets.start_bmo(procs, up, KEY, 1, src=REPO, name=name, extra_env=env)
    home = procs.workdir / f"{name}-home"
    db_pid = _postmaster(pg) if pg is not None else None
    try:
        time.sleep(1.0)
        warm = _drive(gw.url, 8, 400, 3)
        g0, u0 = procstat.cpu_seconds(gw.pid), procstat.cpu_seconds(up.pid)
        d0 = procstat.cpu_seconds(db_pid) if db_pid else 0.0
        r = _drive(gw.url, a.concurrency, 10_000_000, a.seconds)
        g1, u1 = procstat.cpu_seconds(gw.pid), procstat.cpu_seconds(up.pid)
        d1 = procstat.cpu_seconds(db_pid) if db_pid else 0.0
    finally:
        procs.stop(gw, grace=30)  # SIGTERM: the ledger writer drains before bmo exits
        procs.started.remove(gw)
    answered = int(warm["completed"]) + int(r["completed"])
    rows = _rows(home, url)
    ok = max(1, int(r["ok"]))
    return {
        "rps": r["rps"],
        "errors": sum(r["errors"].values()),
        "gw_ms_per_req": (g1 - g0) * 1000 / ok,
        "db_ms_per_req": (d1 - d0) * 1000 / ok,
        "up_ms_per_req": (u1 - u0) * 1000 / ok,
        "p50_ms": r["lat_p50_ms"],
        "answered": answered,
        "lost": max(0, answered - rows),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--pidfile")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    bindir = pg_bin()
    if bindir is None:
        print("bench: PostgreSQL binaries are absent (apt-get install postgresql)", file=sys.stderr)
        return 2
    procs = Procs(Path(a.workdir), Path(a.pidfile) if a.pidfile else None)
    pg = PgServer(bindir)
    plan = ["sqlite", "postgresql"]
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in plan}
    try:
        pg.start()
        subprocess.run(["taskset", "-a", "-p", "-c", "0", str(_postmaster(pg))], capture_output=True, check=False)
        up = targets.start_upstream(procs, 0)
        for rnd in range(a.rounds):
            for kind in plan if rnd % 2 == 0 else list(reversed(plan)):
                r = measure(procs, up, pg if kind == "postgresql" else None, a, f"bmo-{kind}-{rnd}")
                results[kind].append(r)
                print(f"[store] round {rnd + 1} {kind}: {r['rps']:.0f} req/s, {r['gw_ms_per_req']:.3f} ms CPU/req, "
                      f"{r['lost']} of {r['answered']} rows lost", file=sys.stderr)  # fmt: skip
    finally:
        procs.stop_all()
        pg.stop()

    def med(kind: str, k: str) -> float:
        return statistics.median(r[k] for r in results[kind])

    ratio = med("postgresql", "gw_ms_per_req") / med("sqlite", "gw_ms_per_req")
    out = [
        f"c={a.concurrency} plain chat completions, {a.seconds:g} s x {a.rounds} rounds each (medians); bmo on "
        "core 1, driver + upstream + PostgreSQL on core 0",
        "",
        "| store | req/s | bmo CPU ms/req | database CPU ms/req | upstream CPU ms/req | p50 ms | errors | "
        "ledger rows lost |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in plan:
        out.append(
            f"| {kind} | {med(kind, 'rps'):.0f} | {med(kind, 'gw_ms_per_req'):.3f} | "
            f"{med(kind, 'db_ms_per_req'):.3f} | {med(kind, 'up_ms_per_req'):.3f} | {med(kind, 'p50_ms'):.1f} | "
            f"{sum(r['errors'] for r in results[kind])} | "
            f"{sum(r['lost'] for r in results[kind])} of {sum(r['answered'] for r in results[kind])} |"
        )
    out += ["", f"bmo CPU per request, PostgreSQL / SQLite: {ratio:.3f}x (the bar: 1.15x)"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
