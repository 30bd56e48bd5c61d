"""What the workers of `bmo serve --workers N` share through the store, in one process: leases
(store.leases), a session's lease between two processes' session managers (bmo.sessions), a
worker's share of the server's concurrency and its published counters (bmo.workers).
The store-level tests run against SQLite and PostgreSQL (conftest's `store_target`): replicas on
one PostgreSQL share leases exactly as workers on one bmo.db do."""

from __future__ import annotations

import asyncio

import pytest

import bmo.sessions
from bmo.chat import ChatRequest, Message
from bmo.errors import RateLimited
from bmo.metrics import Metrics
from bmo.runs import Persistence, RunRecord
from bmo.sessions import SessionManager
from bmo.store.backend import Target, make_store
from bmo.store.leases import LeaseStore
from bmo.store.sessions import SessionStore
from bmo.store.workers import WorkerStore
from bmo.workers import Fleet, WorkerSlot, summed


def _req(text: str) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message(role="user", content=text)])


def test_a_lease_has_one_holder_until_it_is_released_or_expires(store_target: Target) -> None:
    async def go() -> None:
        db = make_store(store_target)
        await db.open()
        try:
            a, b = LeaseStore(db, "a"), LeaseStore(db, "b")
            assert await a.acquire("prune", 10)
            assert not await b.acquire("prune", 10)
            assert await a.acquire("prune", 10)  # the holder renews by taking it again
            assert await a.renew("prune", 10) and not await b.renew("prune", 10)
            assert await b.acquire("prune", 10, now=(await a.holder("prune") or ("", 0.0))[1] + 1)  # expired
            assert (await a.holder("prune") or ("",))[0] == "b"
            await a.release("prune")  # not a's any more: nothing happens
            assert not await a.acquire("prune", 10)
            await b.release("prune", unless=lambda: True)  # kept
            assert not await a.acquire("prune", 10)
            await b.release("prune")
            assert await a.acquire("prune", 10)
            assert await a.renew_all(10) == 1
        finally:
            await db.close()

    asyncio.run(go())


def test_two_processes_never_run_one_session_at_once(store_target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two session managers on one store, as two workers have: the second waits for the first's
    release; past the wait it gets 429 session_busy; a holder that died frees it on expiry."""
    monkeypatch.setattr(bmo.sessions, "LEASE_S", 0.4)
    monkeypatch.setattr(bmo.sessions, "RENEW_S", 0.1)

    async def go() -> None:
        db = make_store(store_target)
        await db.open()
        try:
            one = SessionManager(SessionStore(db), LeaseStore(db, "worker-1"))
            two = SessionManager(SessionStore(db), LeaseStore(db, "worker-2"))
            held = await one.bind("anonymous", "s", "header", "default", _req("first"))
            waiting = asyncio.create_task(two.bind("anonymous", "s", "header", "default", _req("second")))
            await asyncio.sleep(0.6)  # longer than a lease: renewed while its run lives
            assert not waiting.done()
            held.answer_text = ["answer one"]
            await held.commit()
            held.release()
            second = await asyncio.wait_for(waiting, 5)
            # it read what the first stored: its request carries the whole conversation
            assert [m.content for m in second.session.messages] == ["first", "answer one"]
            monkeypatch.setattr(bmo.sessions, "LOCK_WAIT_S", 0.3)
            with pytest.raises(RateLimited) as busy:
                await one.bind("anonymous", "s", "header", "default", _req("third"))
            assert busy.value.code == "session_busy"
            # worker 2 dies mid-run: no release, no renewal; its lease expires and worker 1 runs
            assert two._renewer is not None
            two._renewer.cancel()
            monkeypatch.setattr(bmo.sessions, "LOCK_WAIT_S", 5)
            took = await asyncio.wait_for(one.bind("anonymous", "s", "header", "default", _req("third")), 5)
            took.release()
            await one.close()
        finally:
            await db.close()

    asyncio.run(go())


def test_a_worker_share_of_the_concurrency_adds_up_to_the_total() -> None:
    assert [WorkerSlot(k, 2).share(64) for k in range(2)] == [32, 32]
    assert [WorkerSlot(k, 3).share(64) for k in range(3)] == [22, 21, 21]
    assert [WorkerSlot(k, 4).share(2) for k in range(4)] == [1, 1, 1, 1]  # at least one each


def _run(route: str, status: int, ms: float) -> RunRecord:
    return RunRecord("req_x", 0.0, route, "POST", status=status, duration_ms=ms, prompt_tokens=3, completion_tokens=2)


def test_a_restarted_worker_continues_its_slot_counters(store_target: Target) -> None:
    async def go() -> None:
        db = make_store(store_target)
        await db.open()
        try:
            await WorkerStore(db).clear()
            m0, p0 = Metrics(), Persistence()
            w0 = Fleet(WorkerSlot(0, 2), db, m0, p0)
            await w0.start()
            for _ in range(3):
                m0.observe(_run("/v1/chat/completions", 200, 12))
            p0.written_rows = 3
            await w0.publish()  # what its task does every second
            w1 = Fleet(WorkerSlot(1, 2), db, Metrics(), Persistence())
            await w1.start()
            w1.metrics.observe(_run("/v1/messages", 200, 40))
            m, p, _ = summed(await w1.rows())
            assert m.requests[("/v1/chat/completions", 200, "ok")] == 3 and m.requests[("/v1/messages", 200, "ok")] == 1
            assert m.tokens == {"prompt": 12, "completion": 8} and p.written_rows == 3
            await w0.close()  # worker 0 dies; its successor takes the slot over
            again = Fleet(WorkerSlot(0, 2), db, Metrics(), Persistence())
            await again.start()
            assert again.restarts == 1 and again.persistence.written_rows == 3
            again.metrics.observe(_run("/v1/chat/completions", 200, 5))
            await again.publish()
            m, _, _ = summed(await w1.rows())
            assert m.requests[("/v1/chat/completions", 200, "ok")] == 4  # never back to 1
            assert sum(m.hist["/v1/chat/completions"]) == 4
            await again.close()
            await w1.close()
        finally:
            await db.close()

    asyncio.run(go())


def test_one_pruner_among_processes_sharing_the_store(store_target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    import bmo.store.ledger as ledger

    monkeypatch.setattr(ledger, "PRUNE_EVERY_S", 0.05)

    class Counted:
        def __init__(self) -> None:
            self.n = 0

        async def prune(self, days: float) -> int:
            self.n += 1
            return 0

    async def go() -> tuple[int, int]:
        db = make_store(store_target)
        await db.open()
        a, b = Counted(), Counted()
        tasks = [
            asyncio.create_task(ledger.prune_forever(db, 30, a, lease=LeaseStore(db, "worker-a"))),
            asyncio.create_task(ledger.prune_forever(db, 30, b, lease=LeaseStore(db, "worker-b"))),
        ]
        await asyncio.sleep(0.5)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await db.close()
        return a.n, b.n

    a, b = asyncio.run(go())
    assert sorted([a, b])[0] == 0 and max(a, b) >= 3  # one of them prunes, every round


def test_workers_write_access_lines_whole() -> None:
    """N workers share one stderr: each write ends at a line's end and fits a pipe's atomic write."""
    import io

    from bmo.recorder import AccessLog

    writes: list[bytes] = []

    class Out(io.BytesIO):
        def write(self, b: bytes) -> int:  # type: ignore[override]
            writes.append(bytes(b))
            return len(b)

    log = AccessLog("json", out=Out())
    log.max_write = 512

    async def burst() -> None:  # in a loop, lines are written in batches
        for i in range(200):
            log.emit("openai_compat.action", {"request_id": f"req_{i}", "status": 200})
        log.flush()

    asyncio.run(burst())
    assert len(writes) > 1 and all(w.endswith(b"\n") and len(w) <= 512 for w in writes)
    assert b"".join(writes).count(b"\n") == 200
