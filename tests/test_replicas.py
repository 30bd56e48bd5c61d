"""Two bmo replicas on loopback sharing one PostgreSQL store (`store.url`), each with a home of
its own, as two hosts behind a load balancer would be: a key made through one works on the other
within 2 s and so does its revocation; a session's turn on one continues on the other (one of
them runs `--workers 2`);
`previous_response_id` from one resolves on the other; `bmo runs list` shows both's runs; one
replica killed under load loses no answered run beyond its flush window.

Bounded (OVERALL_S) and loopback only; every process is stopped in `finally`, postgres by the
session's `pg` fixture.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes import LoopThread
from running import write_home
from served import Served, run_bmo
from test_workers import SLOW, ReUpstream

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL")

OVERALL_S = 60.0
ENV_KEY = "sk-bmo-replicas-env-admin-key-0123456789"


@pytest.fixture
def re_upstream(servers: LoopThread) -> Any:
    up = ReUpstream()
    servers.run(up.start())
    yield up
    servers.run(up.stop())


def _home(path: Path, up: ReUpstream, url: str) -> Path:
    config = (
        f'auth: {{mode: keys}}\nstore: {{url: "{url}", pool_size: 4}}\n'
        "server: {access_log: false, shutdown_grace_s: 2}\n"
        f'providers:\n  up: {{kind: openai, base_url: "{up.url}", timeout_s: 20}}\n'
    )
    return write_home(path, config, SLOW)


def _key(home: Path, name: str) -> str:
    r = run_bmo(home, "api-key", "create", "--name", name, "--scopes", "chat,ledger", "--json")
    assert r.returncode == 0, r.stderr
    return str(json.loads(r.stdout)["secret"])


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _chat(url: str, key: str, content: str, session: str | None = None) -> httpx.Response:
    headers = _auth(key) | ({"X-BMO-Session": session} if session else {})
    body = {"model": "slow", "messages": [{"role": "user", "content": content}]}
    return httpx.post(url + "/chat/completions", json=body, headers=headers, timeout=OVERALL_S)


def _until(check: Any, timeout: float = 10.0) -> float:
    """Seconds until `check()` holds (polled every 20 ms); fails past `timeout`."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, "never happened"
        time.sleep(0.02)
    return time.monotonic() - t0


def _ledger_ids(url: str) -> set[str]:
    import asyncpg

    async def go() -> set[str]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return {r[0] for r in await conn.fetch("SELECT request_id FROM runs")}
        finally:
            await conn.close()

    return asyncio.run(go())


def test_two_replicas_share_keys_sessions_responses_and_the_ledger(
    pg: Any, re_upstream: ReUpstream, tmp_path: Path
) -> None:
    url = pg.database()
    home_a, home_b = _home(tmp_path / "a", re_upstream, url), _home(tmp_path / "b", re_upstream, url)
    key = _key(home_a, "ops")  # before either starts: neither mints a `first` key
    a = Served(home_a, "--workers", "2")  # A's two workers share the store with B too
    b: Served | None = None
    try:
        b = Served(home_b)
        assert "first" not in b.banner and f"store    {url}" in b.banner
        # a key made through A works on B within 2 s; its revocation too
        k = _key(home_a, "moving")
        took = _until(lambda: _chat(b.url, k, "hi").status_code == 200)
        print(f"\n[replicas] a key made through A worked on B after {took:.2f}s")
        assert took < 2.0
        assert run_bmo(home_a, "api-key", "revoke", "moving").returncode == 0
        took = _until(lambda: _chat(b.url, k, "hi").status_code == 401)
        print(f"[replicas] its revocation reached B after {took:.2f}s")
        assert took < 2.0
        # a session's turn on A continues on B
        assert _chat(a.url, key, "first turn", session="s1").status_code == 200
        r = _chat(b.url, key, "second turn", session="s1")
        assert r.status_code == 200, r.text
        sent = [m["content"] for m in re_upstream.requests[-1]["messages"] if m["role"] != "system"]
        assert sent == ["first turn", "re: first turn", "second turn"]
        # previous_response_id from A resolves on B
        first = httpx.post(a.url + "/responses", json={"model": "slow", "input": "remember"}, headers=_auth(key),
                           timeout=OVERALL_S)  # fmt: skip
        assert first.status_code == 200, first.text
        more = {"model": "slow", "input": "and?", "previous_response_id": first.json()["id"]}
        then = httpx.post(b.url + "/responses", json=more, headers=_auth(key), timeout=OVERALL_S)
        assert then.status_code == 200, then.text
        sent = [m["content"] for m in re_upstream.requests[-1]["messages"] if m["role"] != "system"]
        assert sent == ["remember", "re: remember", "and?"]
        # runs from both in one `bmo runs list`
        ids = {_chat(a.url, key, "from a").headers["x-request-id"], _chat(b.url, key, "from b").headers["x-request-id"]}
        time.sleep(0.3)  # both writers' flush window
        listed = run_bmo(home_b, "runs", "list", "--limit", "100", "--json")
        assert listed.returncode == 0, listed.stderr
        assert ids <= {r["request_id"] for r in json.loads(listed.stdout)["data"]}
        # A's posture sums A's workers only (B's rows would be slot 0 too, were it run so)
        posture = httpx.get(a.url.removesuffix("/v1") + "/v1/openai-compat/posture", headers=_auth(key), timeout=10)
        assert posture.status_code == 200 and [w["slot"] for w in posture.json()["workers"]] == [0, 1]
        # B killed under load: no answered run lost beyond its flush window
        re_upstream.delay = 0.005
        stop = threading.Event()
        answered: list[tuple[str, float]] = []

        def load(url: str) -> None:
            while not stop.is_set():
                try:
                    r = _chat(url, key, "load")
                except httpx.HTTPError:
                    continue  # the killed replica's connections
                if r.status_code == 200:
                    answered.append((r.headers["x-request-id"], time.time()))

        threads = [threading.Thread(target=load, args=(u,), daemon=True) for u in (a.url, b.url) * 3]
        for t in threads:
            t.start()
        time.sleep(1.5)
        killed_at = time.time()
        os.kill(b.proc.pid, signal.SIGKILL)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(OVERALL_S)
        time.sleep(0.3)
        ledger = _ledger_ids(url)
        missing = [(rid, at) for rid, at in answered if rid not in ledger]
        print(f"[replicas] B killed under load: {len(answered)} answered, {len(missing)} not in the ledger")
        assert len(answered) > 20
        assert all(killed_at - 0.5 <= at <= killed_at + 0.5 for _, at in missing), (missing, killed_at)
    finally:
        if b is not None:
            b.stop()
        a.stop()


def test_a_database_that_goes_away_is_a_503_never_a_hang_and_bmo_reconnects(
    pg: Any, re_upstream: ReUpstream, tmp_path: Path
) -> None:
    """PostgreSQL stopped under a running replica: key checks fail closed with 503
    store_unavailable (a known key too), /health says so, posture's persistence is degraded; the
    database back, the same key works again without a restart."""
    from pg import PgServer

    own = PgServer(pg.bindir)  # this test stops its server: not the session's
    a: Served | None = None
    try:
        own.start()
        url = own.database()
        home = _home(tmp_path / "a", re_upstream, url)
        key = _key(home, "ops")
        a = Served(home, BMO_API_KEY=ENV_KEY)
        root = a.url.removesuffix("/v1")
        assert _chat(a.url, key, "hi").status_code == 200
        own.kill()
        t0 = time.monotonic()
        time.sleep(1.5)  # the epoch poll fails: the key cache is dropped
        r = _chat(a.url, key, "hi")
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable", r.text
        assert time.monotonic() - t0 < 15  # an answer, not a hang
        health = httpx.get(root + "/health", timeout=10)
        assert health.status_code == 503 and "cannot be reached" in health.text and url not in health.text
        posture = httpx.get(root + "/v1/openai-compat/posture", headers=_auth(key), timeout=10)
        assert posture.status_code == 503  # the key cannot be checked either: closed
        # BMO_API_KEY needs no store: posture, read with it, says the ledger is degraded
        body = httpx.get(root + "/v1/openai-compat/posture", headers=_auth(ENV_KEY), timeout=10).json()
        assert body["persistence"]["state"] == "degraded", body["persistence"]
        own.restart()
        _until(lambda: _chat(a.url, key, "again").status_code == 200, timeout=20)
        _until(lambda: httpx.get(root + "/health", timeout=10).status_code == 200, timeout=10)
        time.sleep(0.3)  # a successful ledger write makes persistence ok again (it is sticky)
        _chat(a.url, key, "once more")
        time.sleep(0.3)
        body = httpx.get(root + "/v1/openai-compat/posture", headers=_auth(key), timeout=10).json()
        assert body["persistence"]["state"] == "ok", body["persistence"]
    finally:
        if a is not None:
            a.stop()
        own.stop()
