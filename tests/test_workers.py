"""`bmo serve --workers N` (SPEC §11) as a real process: N workers on one port under a supervisor.

What holds for the server as a whole, whichever worker a connection reaches: one session runs one
request at a time (no turn lost or interleaved), posture and /metrics add up to the ledger, a key
revoked on the command line is refused by every worker within 2 s; and the supervisor's part:
serve.json and `bmo status` name the workers, a worker killed under load is replaced (its slot's
counters continue; no answered request is missing from the ledger beyond the flush window), and
SIGTERM drains them all (exit 0, no worker left).

Every request opens a new connection, so the kernel's SO_REUSEPORT spreading picks a worker for
each. Loopback only; each test is bounded (OVERALL_S) and stops what it started. Times are
printed (`pytest -s`), never asserted, but for the contract's own "within 2 s" of a revoke.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from bmo.cli.remote import pid_alive
from fakes import FakeUpstream, LoopThread
from running import write_home
from served import Served, run_bmo

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL") or os.name != "posix", reason="Linux workers")

OVERALL_S = 60.0
SLOW = {"slow": "id: slow\nmodel: up/slow-model\n"}
SECRET = re.compile(r"sk-bmo-[A-Za-z0-9_-]{43}")


class ReUpstream(FakeUpstream):
    """Answers every chat request "re: <its last user message>" after `delay`, and records it."""

    delay = 0.02

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        import asyncio

        body = await request.json()
        self.requests.append(body)
        last = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        await asyncio.sleep(OVERALL_S if last == "hang" else self.delay)
        return web.json_response(
            {
                "id": "chatcmpl-up",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": f"re: {last}"},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            }
        )  # fmt: skip


@pytest.fixture
def re_upstream(servers: LoopThread) -> Iterator[ReUpstream]:
    up = ReUpstream()
    servers.run(up.start())
    yield up
    servers.run(up.stop())


def _home(tmp_path: Path, up: FakeUpstream, auth: str = "none") -> Path:
    config = (
        f"auth: {{mode: {auth}}}\nserver: {{access_log: false, shutdown_grace_s: 2}}\n"
        f'providers:\n  up: {{kind: openai, base_url: "{up.url}", timeout_s: 20}}\n'
    )
    return write_home(tmp_path / "home", config, SLOW)


def _serve_json(home: Path) -> dict[str, Any]:
    return json.loads((home / "serve.json").read_text())


def _ask(url: str, content: str, *, session: str | None = None, key: str | None = None) -> httpx.Response:
    """One request on a new connection (so the kernel picks a worker for it)."""
    headers = {"X-BMO-Session": session} if session else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(
        url + "/chat/completions",
        json={"model": "slow", "messages": [{"role": "user", "content": content}]},
        headers=headers,
        timeout=OVERALL_S,
    )


def _ledger(home: Path) -> dict[str, tuple[int, str]]:
    db = sqlite3.connect(home / "bmo.db")
    try:
        rows = db.execute("SELECT request_id, status, outcome FROM runs").fetchall()
    finally:
        db.close()
    return {r[0]: (r[1], r[2]) for r in rows}


def _requests_total(url: str, key: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    text = httpx.get(url.removesuffix("/v1") + "/metrics", headers=headers, timeout=10).text
    return sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("bmo_requests_total{"))


def _stop(s: Served, pids: list[int]) -> None:
    """SIGTERM: the supervisor exits 0 and no worker is left."""
    err = s.stop()
    assert s.proc.returncode == 0, err
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if pid_alive(p)], err


def test_two_workers_share_the_port_and_add_up(re_upstream: ReUpstream, tmp_path: Path) -> None:
    home = _home(tmp_path, re_upstream)
    s = Served(home, "--workers", "2")
    try:
        assert "2 workers" in s.banner
        info = _serve_json(home)
        assert info["pid"] == s.proc.pid  # the supervisor: what `bmo stop` signals
        pids = [w["pid"] for w in info["workers"]]
        assert [w["slot"] for w in info["workers"]] == [0, 1] and len(set(pids)) == 2
        assert all(pid_alive(p) for p in pids)
        st = json.loads(run_bmo(home, "status", "--json").stdout)
        assert st["up"] and [(w["slot"], w["pid"], w["alive"]) for w in st["workers"]] == [
            (0, pids[0], True),
            (1, pids[1], True),
        ]
        assert "worker 1" in run_bmo(home, "status").stdout
        answers = [_ask(s.url, f"q{i}") for i in range(40)]
        assert [a.status_code for a in answers] == [200] * 40
        # Both workers answered: each process's request ids share a prefix of their own.
        prefixes = {a.headers["x-request-id"][:16] for a in answers}
        assert len(prefixes) == 2, prefixes
        time.sleep(1.5)  # every worker has published its counters since
        posture = httpx.get(s.url.removesuffix("/v1") + "/v1/openai-compat/posture", timeout=10).json()
        ledger = _ledger(home)
        assert posture["window"]["runs"] == len(ledger) == 40
        assert [w["slot"] for w in posture["workers"]] == [0, 1]
        assert all(w["state"] == "up" and w["restarts"] == 0 for w in posture["workers"])
        assert posture["in_flight"] == 0
        for _ in range(4):  # whichever worker answers the scrape, the same sum
            assert _requests_total(s.url) == 40
    finally:
        _stop(s, pids)
    assert not (home / "serve.json").exists()


def test_one_session_hammered_through_four_workers_never_loses_or_interleaves_a_turn(
    re_upstream: ReUpstream, tmp_path: Path
) -> None:
    home = _home(tmp_path, re_upstream)
    s = Served(home, "--workers", "4")
    pids = [w["pid"] for w in _serve_json(home)["workers"]]
    n, threads = 24, 8
    answers: dict[str, httpx.Response] = {}
    try:

        def client(t: int) -> None:
            for i in range(t, n, threads):
                answers[f"m{i}"] = _ask(s.url, f"m{i}", session="shared")

        ts = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(threads)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join(OVERALL_S)
        print(
            f"\n[workers] {n} requests on one session from {threads} connections at once: {time.monotonic() - t0:.2f}s"
        )
        assert sorted(answers) == sorted(f"m{i}" for i in range(n))
        for content, r in answers.items():
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == f"re: {content}"
        assert len({r.headers["x-request-id"][:16] for r in answers.values()}) > 1  # several workers took part
        stopped = run_bmo(home, "stop")  # signals the supervisor (serve.json's pid), which drains them all
        assert stopped.returncode == 0 and "stopped bmo" in stopped.stdout, stopped.stderr
    finally:
        _stop(s, pids)
    db = sqlite3.connect(home / "bmo.db")
    try:
        rows = db.execute(
            "SELECT m.message FROM session_messages m JOIN sessions s ON s.id = m.session_id "
            "WHERE s.name = 'shared' ORDER BY m.seq"
        ).fetchall()
    finally:
        db.close()
    transcript = [(json.loads(r[0])["role"], json.loads(r[0])["content"]) for r in rows]
    # Every turn is there once, each answer right after its question.
    assert len(transcript) == 2 * n
    for i in range(0, 2 * n, 2):
        (role_q, q), (role_a, a) = transcript[i], transcript[i + 1]
        assert (role_q, role_a) == ("user", "assistant") and a == f"re: {q}"
    assert sorted(q for role, q in transcript if role == "user") == sorted(f"m{i}" for i in range(n))
    # Each run saw the whole conversation before it, and none ran beside another: the upstream got
    # 1, 3, 5 … messages, each a prefix of the transcript.
    seen = sorted(
        (
            [(m["role"], m["content"]) for m in body["messages"] if m["role"] != "system"]
            for body in re_upstream.requests
        ),
        key=len,
    )
    assert [len(m) for m in seen] == list(range(1, 2 * n, 2))
    for m in seen:
        assert m == transcript[: len(m)]


def test_a_worker_killed_under_load_is_replaced_and_loses_nothing_answered(
    re_upstream: ReUpstream, tmp_path: Path
) -> None:
    re_upstream.delay = 0.005
    home = _home(tmp_path, re_upstream)
    s = Served(home, "--workers", "2")
    first = _serve_json(home)["workers"]
    pids = [w["pid"] for w in first]
    stop = threading.Event()
    answered: list[tuple[str, float]] = []  # (request id, when its answer was read)
    failed: list[str] = []
    totals: list[int] = []

    def load() -> None:
        while not stop.is_set():
            try:
                r = _ask(s.url, "load")
            except httpx.HTTPError as e:  # the killed worker's connections
                failed.append(repr(e))
                continue
            if r.status_code == 200:
                answered.append((r.headers["x-request-id"], time.time()))
            else:
                failed.append(f"{r.status_code} {r.text[:100]}")

    def scrape() -> None:
        while not stop.is_set():
            try:
                totals.append(_requests_total(s.url))
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    workers = [threading.Thread(target=load, daemon=True) for _ in range(6)] + [
        threading.Thread(target=scrape, daemon=True)
    ]
    try:
        for t in workers:
            t.start()
        time.sleep(2.0)
        killed_at = time.time()
        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + OVERALL_S
        while time.monotonic() < deadline:
            now = _serve_json(home)["workers"]
            if now[0]["pid"] != pids[0] and pid_alive(now[0]["pid"]):
                break
            time.sleep(0.05)
        back_at = time.time()
        replaced = _serve_json(home)["workers"]
        assert replaced[0]["pid"] != pids[0] and replaced[0]["restarts"] == 1 and replaced[1]["pid"] == pids[1]
        time.sleep(2.0)
        stop.set()
        for t in workers:
            t.join(OVERALL_S)
        print(
            f"\n[workers] worker 0 killed under load: back in {back_at - killed_at:.2f}s; "
            f"{len(answered)} answered, {len(failed)} failed (the killed worker's connections)"
        )
        assert totals and all(b >= a for a, b in zip(totals, totals[1:], strict=False)), totals  # never back
        after = [rid for rid, at in answered if at > back_at + 0.5]
        assert len({rid[:16] for rid in after}) == 2  # the new worker serves, beside the old one
        time.sleep(1.2)
        posture = httpx.get(s.url.removesuffix("/v1") + "/v1/openai-compat/posture", timeout=10).json()
        assert [w["restarts"] for w in posture["workers"]] == [1, 0]
        assert _requests_total(s.url) >= max(totals)
        pids.append(replaced[0]["pid"])
    finally:
        stop.set()
        _stop(s, pids)
    ledger = _ledger(home)
    missing = [(rid, at) for rid, at in answered if rid not in ledger]
    # What the killed worker answered within its last flush window (50 ms) may be gone; nothing else.
    assert all(killed_at - 0.5 <= at <= killed_at + 0.5 for _, at in missing), (missing, killed_at)
    print(f"[workers] answered but not in the ledger: {len(missing)} (all within the kill's flush window)")


def test_a_session_whose_worker_died_mid_run_is_free_once_its_lease_expires(
    re_upstream: ReUpstream, tmp_path: Path
) -> None:
    home = _home(tmp_path, re_upstream)
    s = Served(home, "--workers", "2")
    pids = [w["pid"] for w in _serve_json(home)["workers"]]
    try:
        hung = threading.Thread(target=lambda: _ask_quietly(s.url, "hang", "mine"), daemon=True)
        hung.start()
        deadline = time.monotonic() + OVERALL_S
        while not re_upstream.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        db = sqlite3.connect(home / "bmo.db")
        try:
            (owner,) = db.execute("SELECT owner FROM leases WHERE name LIKE 'session:%'").fetchone()
        finally:
            db.close()
        holder = int(owner.split(":")[1])  # host:pid:tail
        assert holder in pids
        os.kill(holder, signal.SIGKILL)  # mid-run: the lease is neither released nor renewed again
        killed_at = time.monotonic()
        r = _ask(s.url, "after", session="mine")
        print(f"\n[workers] the session was free {time.monotonic() - killed_at:.2f}s after its worker was killed")
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "re: after"
        hung.join(OVERALL_S)
        pids += [w["pid"] for w in _serve_json(home)["workers"]]
    finally:
        _stop(s, pids)


def _from_both_workers(url: str, key: str) -> list[httpx.Response]:
    """At least 20 requests, each on a new connection, and more until both workers have answered
    one (at most 200): which worker the kernel picks is a hash of the connection, so a fixed
    count can, rarely, reach one worker only."""
    answers: list[httpx.Response] = []
    while len(answers) < 200 and (len(answers) < 20 or len({r.headers["x-request-id"][:16] for r in answers}) < 2):
        answers.append(_ask(url, "hi", key=key))
    return answers


def _ask_quietly(url: str, content: str, session: str) -> None:
    try:
        _ask(url, content, session=session)
    except httpx.HTTPError:
        pass  # its worker was killed


def test_a_revoked_key_is_refused_by_every_worker_within_two_seconds(re_upstream: ReUpstream, tmp_path: Path) -> None:
    home = _home(tmp_path, re_upstream, auth="keys")
    s = Served(home, "--workers", "2")
    pids = [w["pid"] for w in _serve_json(home)["workers"]]
    try:
        assert len(SECRET.findall(s.banner)) == 1  # the supervisor minted the first key, once
        keys = json.loads(run_bmo(home, "api-key", "list", "--json").stdout)["data"]
        assert [k["name"] for k in keys] == ["first"]  # not one per worker
        made = run_bmo(home, "api-key", "create", "--name", "doomed")
        secret = SECRET.findall(made.stdout)[0]
        ok = _from_both_workers(s.url, secret)
        assert [r.status_code for r in ok] == [200] * len(ok)
        assert len({r.headers["x-request-id"][:16] for r in ok}) == 2
        assert run_bmo(home, "api-key", "revoke", "doomed").returncode == 0
        revoked_at = time.monotonic()
        last_ok = revoked_at
        while time.monotonic() - revoked_at < 2.0:
            if _ask(s.url, "hi", key=secret).status_code == 200:
                last_ok = time.monotonic()
            time.sleep(0.05)
        print(f"\n[workers] a revoke took effect on both workers within {last_ok - revoked_at:.2f}s")
        after = _from_both_workers(s.url, secret)  # 2 s on: refused, whichever worker
        assert len(after) >= 20 and [r.status_code for r in after] == [401] * len(after)
        assert len({r.headers["x-request-id"][:16] for r in after}) == 2
    finally:
        _stop(s, pids)


def _supervise(tmp_path: Path, script: str, count: int = 2) -> tuple[int | None, str | None, list[Any]]:
    """The supervisor alone, its workers a Python script of the test's (PROGRAM SLOT)."""
    import asyncio
    import sys

    import bmo.cli.supervisor as sup

    prog = tmp_path / "worker.py"
    prog.write_text(script)
    changes: list[Any] = []

    async def go() -> tuple[int | None, str | None]:
        s = sup.Supervisor(count, [str(prog)], grace_s=1, on_ready=lambda w: None, on_change=changes.append)
        try:
            return await asyncio.wait_for(s.run(), OVERALL_S), None
        except sup.StartFailed as e:
            return None, str(e)

    mp = pytest.MonkeyPatch()
    mp.setattr(sup, "worker_command", lambda args: [sys.executable, *[a for a in args if a != "--worker-slot"]])
    mp.setattr(sup, "BACKOFF_S", (0.01, 0.05))
    try:
        code, failed = asyncio.run(go())
    finally:
        mp.undo()
    return code, failed, changes


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    code, failed, _ = _supervise(tmp_path, "import sys\nsys.exit(3)\n")
    assert code is None and failed is not None and "exited with code 3 before it was ready" in failed


def test_workers_that_keep_dying_after_a_restart_stop_the_server(tmp_path: Path) -> None:
    """Each slot starts once (ready, then dies); every later start dies before it is ready."""
    script = (
        "import os, sys, time\n"
        "mark = os.path.join(os.path.dirname(__file__), 'started-' + sys.argv[1])\n"
        "if os.path.exists(mark):\n    sys.exit(4)\n"
        "open(mark, 'w').close()\nprint('ready', flush=True)\ntime.sleep(0.3)\nsys.exit(1)\n"
    )
    code, failed, _ = _supervise(tmp_path, script)
    assert code is None and failed is not None and "times in a row before it was ready" in failed


def test_workers_are_refused_where_so_reuseport_does_not_spread_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bmo.cli.supervisor as sup
    from bmo.cli.serve_cmd import serve_alone

    monkeypatch.setattr(sup, "reuse_port_supported", lambda: False)  # as on macOS or Windows
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit) as done:
        serve_alone(["--home", str(tmp_path / "home"), "--port", "0", "--workers", "2"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "SO_REUSEPORT on Linux only" in err and "server.workers: 1" in err
    assert not (tmp_path / "home" / "bmo.db").exists()  # refused before anything was touched
