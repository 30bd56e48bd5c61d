"""The store's reads and rows that the other store tests do not reach, against both backends
(conftest's `store_target`: SQLite and PostgreSQL): the ledger's queries (filters, paging, write
order, per-minute stats), sessions and stored responses. Then PostgreSQL alone: a database that
goes away fails closed and comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bmo.chat import Message
from bmo.errors import AuthenticationError, Unavailable
from bmo.runs import RunEvent, RunRecord
from bmo.store import ledger
from bmo.store.backend import Db, Target, make_store
from bmo.store.keys import KeyStore
from bmo.store.responses import ResponseStore, StoredResponse
from bmo.store.sessions import SessionStore
from bmo.store.verifier import CachedKeyVerifier
from bmo.store.workers import WorkerStore

CHAT = "/v1/chat/completions"


@pytest.fixture
async def db(store_target: Target) -> AsyncIterator[Db]:
    d = make_store(store_target)
    await d.open()
    yield d
    await d.close()


def _run(i: int, **kw: Any) -> RunRecord:
    base: dict[str, Any] = {"request_id": f"req_{i:06d}", "started_at": 1000.0 + i, "route": CHAT, "method": "POST",
                            "status": 200, "duration_ms": float(i)}  # fmt: skip
    return RunRecord(**{**base, **kw})


async def _write(db: Db, runs: list[RunRecord]) -> None:
    w = ledger.LedgerWriter(db)
    w.start()
    for r in runs:
        w.submit(r)
    await w.close()
    assert w.persistence.state == "ok" and w.persistence.written_rows == len(runs)


async def test_runs_round_trip_filters_and_pages(db: Db) -> None:
    ev = [RunEvent("request", 0.0, None), RunEvent("first_byte", 1.5, {"n": 1})]
    await _write(db, [
        _run(1, client_ua="OpenAI/Python 1.2", client="openai-python", events=ev, stream=True, content={"a": 1}),
        _run(2, status=502, outcome="upstream_error", agent="coder", client_ua="curl/8"),
        _run(3, route="/v1/messages", client_ua="50%_off"),
    ])  # fmt: skip
    got = await ledger.get_run(db, "req_000001")
    assert got is not None and got.events == ev and got.stream is True and got.content == {"a": 1}
    assert got.client == "openai-python" and got.started_at == 1001.0
    ids = lambda rs: [r.request_id for r in rs[0]]  # noqa: E731
    assert ids(await ledger.list_runs(db)) == ["req_000003", "req_000002", "req_000001"]
    assert ids(await ledger.list_runs(db, ua="python")) == ["req_000001"]  # any case
    assert ids(await ledger.list_runs(db, ua="%")) == ["req_000003"]  # LIKE's wildcards are text
    assert ids(await ledger.list_runs(db, status=502, agent="coder", outcome="upstream_error")) == ["req_000002"]
    assert ids(await ledger.list_runs(db, route="/v1/messages")) == ["req_000003"]
    page, cursor = await ledger.list_runs(db, limit=2)
    assert cursor is not None and ids(await ledger.list_runs(db, limit=2, cursor=cursor)) == ["req_000001"]
    assert ids(await ledger.list_runs(db, since=1002.0)) == ["req_000003", "req_000002"]
    await _write(db, [_run(1, status=201)])  # written again: replaced, not doubled
    assert await ledger.count_runs(db) == 3 and (await ledger.get_run(db, "req_000001")).status == 201  # type: ignore[union-attr]


async def test_runs_written_after_follows_write_order(db: Db) -> None:
    assert await ledger.last_written(db) == 0
    await _write(db, [_run(5), _run(1)])  # a long run written before one that started later
    first, pos = await ledger.runs_written_after(db, 0)
    assert [r.request_id for r in first] == ["req_000005", "req_000001"]
    assert await ledger.runs_written_after(db, pos) == ([], pos)
    await _write(db, [_run(2), _run(3, status=500)])
    later, pos2 = await ledger.runs_written_after(db, pos, status=500)
    assert [r.request_id for r in later] == ["req_000003"] and pos2 > pos


async def test_run_stats_buckets_and_nearest_rank_percentiles(db: Db) -> None:
    since = 60_000.0
    order = (7, 3, 20, 1, 12, 5, 18, 2, 9, 14, 4, 16, 6, 11, 19, 8, 13, 10, 17, 15)
    runs = [_run(i, started_at=since + 5 + i / 100, duration_ms=float(i)) for i in order]
    runs.append(_run(99, started_at=since + 65, outcome="client_error", duration_ms=3.0))
    await _write(db, runs)
    b0, b1, b2 = await ledger.run_stats(db, since=since, minutes=3)
    assert (b0["count"], b0["p50_ms"], b0["p95_ms"], b0["by_outcome"]) == (20, 10.0, 19.0, {"ok": 20})
    assert (b1["count"], b1["p50_ms"], b1["by_outcome"]) == (1, 3.0, {"client_error": 1})
    assert b2["count"] == 0 and b2["p50_ms"] is None and b1["start"] == since + 60


async def test_replicas_starting_together_mint_one_first_key(store_target: Target) -> None:
    dbs = [make_store(store_target, pool_size=1) for _ in range(6)]
    await asyncio.gather(*(d.open() for d in dbs))
    try:
        minted = await asyncio.gather(*(KeyStore(d).ensure_first() for d in dbs))
        assert len([m for m in minted if m is not None]) == 1
    finally:
        for d in dbs:
            await d.close()


async def test_worker_rows_of_replicas_sharing_a_store_stay_apart(db: Db) -> None:
    """Every replica's `bmo serve --workers N` has slots 0…N-1: on PostgreSQL each sees and clears
    its own rows; a SQLite file has one server."""
    a, b = WorkerStore(db, "host-a:/srv/bmo"), WorkerStore(db, "host-b:/srv/bmo")
    await a.publish(0, 11, 1.0, 0, {"n": 1}, {})
    await b.publish(0, 22, 2.0, 0, {"n": 2}, {})
    await b.publish(0, 23, 2.0, 1, {"n": 3}, {})  # the same slot again: replaced
    got = await a.get(0)
    if db.remote:
        assert got is not None and got.pid == 11 and [r.pid for r in await b.all()] == [23]
        await b.clear()
        assert [r.pid for r in await a.all()] == [11] and await b.get(0) is None
    else:
        assert got is not None and got.pid == 23 and [r.pid for r in await a.all()] == [23]


async def test_sessions_save_fork_list_prune(db: Db) -> None:
    ss = SessionStore(db)
    s = await ss.create("sk-bmo-aaaaa", "chat-1", "header", "helper")
    assert (await ss.create("sk-bmo-aaaaa", "chat-1", "header", "helper")).id == s.id  # the first creator wins
    assert await ss.save(s.id, 0, [Message(role="user", content="hi"), Message(role="assistant", content="yo")]) == 2
    assert await ss.save(s.id, 1, [Message(role="assistant", content="hello")]) == 2  # a regenerate forks
    found = await ss.find("sk-bmo-aaaaa", "chat-1")
    assert found is not None and [m.content for m in found.messages] == ["hi", "hello"] and found.turns == 2
    assert (await ss.get("chat-1")) is not None and (await ss.get(s.id)) is not None
    assert [x.id for x in await ss.list()] == [s.id]
    assert await ss.prune(30, now=time.time() + 31 * 86400) == 1
    assert await ss.find("sk-bmo-aaaaa", "chat-1") is None and not await ss.delete(s.id)


async def test_responses_chain_owner_and_prune(db: Db) -> None:
    rs = ResponseStore(db)

    def resp(rid: str, prev: str | None, owner: str = "k1", at: float | None = None) -> StoredResponse:
        return StoredResponse(rid, owner, prev, "helper", at or time.time(), [Message(role="user", content=rid)],
                              Message(role="assistant", content="a-" + rid), {"id": rid})  # fmt: skip

    await rs.save(resp("resp_1", None, at=1.0))
    await rs.save(resp("resp_2", "resp_1"))
    await rs.save(resp("resp_3", "resp_2"))
    await rs.save(resp("resp_3", "resp_2"))  # saved again: replaced
    chain = await rs.chain("resp_3", "k1")
    assert chain is not None and [r.id for r in chain] == ["resp_1", "resp_2", "resp_3"]
    assert await rs.chain("resp_3", "k2") is None and await rs.get("resp_3", "k2") is None
    got = await rs.get("resp_2", None)
    assert got is not None and got.body == {"id": "resp_2"} and got.output.content == "a-resp_2"
    assert await rs.prune(30) == 1  # resp_1, from 1970
    chain = await rs.chain("resp_3", "k1")
    assert chain is not None and [r.id for r in chain] == ["resp_2", "resp_3"]  # a missing link ends it
    assert await rs.delete("resp_3", "k2") is False and await rs.delete("resp_3", "k1") is True
    assert [r.id for r in await rs.list()] == ["resp_2"]


# ---- PostgreSQL alone: the database goes away and comes back ---------------------------------


@pytest.fixture
def own_pg(pg: Any) -> Any:
    """A PostgreSQL server of this test's own, since the test stops it."""
    from pg import PgServer

    server = PgServer(pg.bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def test_a_database_that_goes_away_fails_closed_then_reconnects(own_pg: Any) -> None:
    db = make_store(own_pg.database(), pool_size=2)
    await db.open()
    downs: list[str] = []
    db.on_down = downs.append
    try:
        keys = KeyStore(db)
        k = await keys.create("a", ["chat"])
        v = CachedKeyVerifier(keys)
        await v.start()
        assert (await v.verify(k.secret)).name == "a"
        w = ledger.LedgerWriter(db)
        w.start()
        await asyncio.to_thread(own_pg.kill)
        # the next statement fails at once with 503 store_unavailable, never a hang or a 500
        with pytest.raises(Unavailable) as e:
            await asyncio.wait_for(keys.epoch(), 10)
        assert e.value.status == 503 and e.value.code == "store_unavailable" and "***" not in e.value.message
        task = asyncio.create_task(v.run(poll_s=0.05))
        await asyncio.sleep(0.3)
        with pytest.raises(Unavailable):  # a known key too: another replica may have revoked it
            await asyncio.wait_for(v.verify(k.secret), 10)
        w.submit(_run(1))
        await asyncio.wait_for(w.flush(), 20)
        assert w.persistence.state == "degraded" and w.persistence.dropped_rows == 1
        await asyncio.wait_for(db.ping(), 10)  # type: ignore[attr-defined]
        assert db.health() is not None and downs
        await asyncio.to_thread(own_pg.restart)
        for _ in range(100):  # the pool dials again by itself
            await asyncio.sleep(0.1)
            try:
                await v.verify(k.secret)
                break
            except Unavailable:
                continue
        assert (await v.verify(k.secret)).name == "a"
        await db.ping()  # type: ignore[attr-defined]
        w.submit(_run(2))
        await w.flush()
        assert w.persistence.state == "ok" and db.health() is None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await w.close()
        with pytest.raises(AuthenticationError):
            await v.verify("sk-bmo-" + "x" * 43)
    finally:
        await db.close()


def test_the_sqlite_path_never_imports_asyncpg(tmp_path: Any) -> None:
    """`pip install bmo` without the extra must work: asyncpg is imported only for a store.url."""
    import subprocess
    import sys

    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from bmo.config import load_config\n"
        "from bmo.runtime import Runtime\n"
        "import bmo.cli.commands\n"
        f"rt = Runtime(load_config(Path({str(tmp_path)!r}), env={{}}))\n"
        "async def go():\n"
        "    await rt.open()\n"
        "    await rt.close()\n"
        "asyncio.run(go())\n"
        "print('asyncpg' in sys.modules)\n"
    )
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1] / "internal"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


async def test_a_database_that_is_not_there_is_a_clear_503_at_open() -> None:
    pytest.importorskip("asyncpg")
    from pg import free_port

    db = make_store(f"postgresql://bmo:s3cret@127.0.0.1:{free_port()}/bmo")
    t0 = time.monotonic()
    with pytest.raises(Unavailable) as e:
        await db.open()
    assert time.monotonic() - t0 < 10 and e.value.code == "store_unavailable"
    assert "cannot be opened" in e.value.message and "s3cret" not in e.value.message and "***" in e.value.message
    assert db.health() == "the database is not open"
