"""The run ledger in the store (SQLite or PostgreSQL): the writer off the request path, retention, and the read queries.

Writes never touch the request path: `LedgerWriter.submit` puts a finished run on a bounded
queue and returns at once; one task drains it, writing batches in one transaction each (flushed
every `FLUSH_S` or `BATCH` rows, whichever comes first). A failed write never fails a request:
the batch is dropped and counted, and `Persistence` turns `degraded` and stays so until a write
succeeds again. A full queue (the disk far slower than the traffic) drops and counts the same way.
`close()` drains everything that was accepted, so SIGTERM loses nothing.

Events are kept as one JSON array per run: one row per run keeps a busy server's write cost to
one INSERT per request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import sqlite3
import time
from typing import Any

import orjson

from bmo.errors import InvalidRequest, Unavailable
from bmo.runs import Persistence, RunEvent, RunRecord
from bmo.store.backend import Db, Row
from bmo.store.dialect import Dialect

log = logging.getLogger("bmo.ledger")

FLUSH_S = 0.05  # a run reaches the disk within 50 ms...
BATCH = 512  # ...or as soon as this many are waiting
QUEUE_MAX = 50_000  # beyond this the disk cannot keep up: drop and count rather than grow memory
PRUNE_EVERY_S = 600
PRUNE_BATCH = 1000  # small deletes: never hold the write lock long

COLUMNS = (
    "request_id", "started_at", "route", "method", "status", "outcome", "error_code", "model_requested",
    "agent", "upstream_route", "stream", "ttfb_ms", "duration_ms", "prompt_tokens", "completion_tokens",
    "tool_calls", "session_id", "api_key_prefix", "client_ua", "client_ip", "events", "content", "client",
)  # fmt: skip


def insert_sql(dialect: Dialect) -> str:
    """The batch insert: a run written again (same request id) replaces the first."""
    sql = f"{dialect.upsert_run} runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    if dialect.name != "sqlite":
        sql += " ON CONFLICT (request_id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
    return sql


def _row(r: RunRecord) -> tuple[Any, ...]:
    return (
        r.request_id, r.started_at, r.route, r.method, r.status, r.outcome, r.error_code, r.model_requested,
        r.agent, r.upstream_route, int(r.stream), r.ttfb_ms, r.duration_ms, r.prompt_tokens,
        r.completion_tokens, r.tool_calls, r.session_id, r.api_key_prefix, r.client_ua, r.client_ip,
        orjson.dumps(r.events).decode(),  # orjson writes the dataclasses as objects directly
        orjson.dumps(r.content).decode() if r.content is not None else None, r.client,
    )  # fmt: skip


def record_from_row(row: Row) -> RunRecord:
    events = [RunEvent(e["name"], e["t_ms"], e.get("detail")) for e in orjson.loads(row["events"])]
    return RunRecord(
        request_id=row["request_id"],
        started_at=row["started_at"],
        route=row["route"],
        method=row["method"],
        status=row["status"],
        outcome=row["outcome"],
        error_code=row["error_code"],
        model_requested=row["model_requested"],
        agent=row["agent"],
        upstream_route=row["upstream_route"],
        stream=bool(row["stream"]),
        ttfb_ms=row["ttfb_ms"],
        duration_ms=row["duration_ms"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        tool_calls=row["tool_calls"],
        session_id=row["session_id"],
        api_key_prefix=row["api_key_prefix"],
        client_ua=row["client_ua"],
        client_ip=row["client_ip"],
        client=row["client"],  # migration 5
        events=events,
        content=orjson.loads(row["content"]) if row["content"] else None,
    )


class LedgerWriter:
    def __init__(self, db: Db, persistence: Persistence | None = None, *, queue_max: int = QUEUE_MAX) -> None:
        self.db = db
        self.persistence = persistence or Persistence()
        self.queue_max = queue_max
        # A plain list, not an asyncio.Queue: a submit is one append, and the writer is woken
        # once per batch (when the list stops being empty), not once per run.
        self._pending: list[RunRecord] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._insert = insert_sql(db.dialect)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="bmo-ledger-writer")

    def submit(self, record: RunRecord) -> None:
        """Never blocks, never raises: the request that made this record is already answered."""
        pending = self._pending
        if len(pending) >= self.queue_max:
            self._drop(1, "the ledger queue is full (the disk is slower than the traffic)")
            return
        pending.append(record)
        self.persistence.queue_depth = len(pending)  # posture and /metrics see the backlog at once
        if len(pending) == 1:
            self._idle.clear()
            self._wake.set()

    def _drop(self, n: int, why: str) -> None:
        p = self.persistence
        if p.state == "ok":
            p.dropped_rows = 0
            log.warning("ledger degraded: %s", why)
        p.state = "degraded"
        p.last_error = why
        p.dropped_rows += n

    def store_down(self, why: str) -> None:
        """The database went away (told by its health check, before any write failed): degraded
        now, and until a write succeeds again, as after a failed write."""
        p = self.persistence
        if p.state == "ok":
            p.dropped_rows = 0
            log.warning("ledger degraded: %s", why)
        p.state = "degraded"
        p.last_error = why

    async def flush(self) -> None:
        """Wait until everything submitted so far has been written (or dropped)."""
        if self._task is None:
            return
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if len(self._pending) < BATCH:
                await asyncio.sleep(FLUSH_S)  # let a batch gather: one transaction per ~50 ms
            while self._pending:
                await self._write(self._take())
            self._idle.set()  # nothing awaited since the loop found the list empty

    def _take(self) -> list[RunRecord]:
        """The next batch off the list (at most BATCH runs, oldest first)."""
        batch = self._pending[:BATCH]
        del self._pending[:BATCH]
        self.persistence.queue_depth = len(self._pending)
        return batch

    async def _write(self, batch: list[RunRecord]) -> None:
        try:
            rows = [_row(r) for r in batch]
            async with self.db.transaction() as tx:
                await tx.executemany(self._insert, rows)
        except (Unavailable, sqlite3.Error, ValueError, TypeError) as e:
            self._drop(len(batch), getattr(e, "message", None) or str(e))
            return
        p = self.persistence
        if p.state != "ok":
            log.warning("ledger recovered after dropping %d rows", p.dropped_rows)
        p.state = "ok"
        p.last_error = None
        p.written_rows += len(batch)

    async def close(self) -> None:
        """Write everything accepted so far, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.flush(), 30)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        while self._pending:  # what the timeout above left behind
            await self._write(self._take())


async def prune(db: Db, retention_days: float, *, now: float | None = None) -> int:
    """Delete runs older than the retention, a small batch per transaction. Returns rows deleted."""
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    pos = db.dialect.pos
    return await db.delete_in_batches(
        f"DELETE FROM runs WHERE {pos} IN (SELECT {pos} FROM runs WHERE started_at < ? LIMIT ?)", (cutoff,), PRUNE_BATCH
    )


async def prune_forever(
    db: Db,
    retention_days: float,
    sessions: Any = None,
    ttl_days: float = 30,
    responses: Any = None,
    responses_days: float = 30,
    lease: Any = None,
) -> None:
    """Retention in the background: old runs, and (given their stores) expired sessions and
    stored responses. With a `lease` (store.leases.LeaseStore), only the process that holds the
    `prune` lease prunes: one pruner among several workers sharing the store."""
    while True:
        try:
            if lease is not None and not await lease.acquire("prune", PRUNE_EVERY_S * 2):
                await asyncio.sleep(PRUNE_EVERY_S)
                continue
            n = await prune(db, retention_days)
            if n:
                log.info("ledger retention: pruned %d runs older than %g days", n, retention_days)
            if sessions is not None:
                n = await sessions.prune(ttl_days)
                if n:
                    log.info("sessions: pruned %d idle for more than %g days", n, ttl_days)
            if responses is not None:
                n = await responses.prune(responses_days)
                if n:
                    log.info("responses: pruned %d older than %g days", n, responses_days)
        except Unavailable as e:
            log.warning("retention failed: %s", e.message)
        await asyncio.sleep(PRUNE_EVERY_S)


# ---- reads ------------------------------------------------------------------------------------


def encode_cursor(r: RunRecord) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([r.started_at, r.request_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started, rid = orjson.loads(raw)
        return float(started), str(rid)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidRequest("`cursor` is not a cursor this server gave out.", param="cursor") from None


def _filters(
    dialect: Dialect,
    route: str | None, status: int | None, agent: str | None, outcome: str | None, client: str | None, ua: str | None
) -> tuple[list[str], list[Any]]:
    """The WHERE terms of the filters `runs list`, `runs tail` and the runs route share. `ua` is a
    case-insensitive substring of the raw user-agent; the others match exactly."""
    where: list[str] = []
    params: list[Any] = []
    for col, val in (("route", route), ("status", status), ("agent", agent), ("outcome", outcome), ("client", client)):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    if ua:
        where.append(f"client_ua {dialect.ilike} ? ESCAPE '\\'")
        params.append("%" + ua.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    return where, params


async def list_runs(
    db: Db,
    *,
    limit: int = 50,
    cursor: str | None = None,
    route: str | None = None,
    status: int | None = None,
    agent: str | None = None,
    outcome: str | None = None,
    since: float | None = None,
    client: str | None = None,
    ua: str | None = None,
) -> tuple[list[RunRecord], str | None]:
    """Newest first. Returns the page and the cursor of the next page (None at the end)."""
    where, params = _filters(db.dialect, route, status, agent, outcome, client, ua)
    if cursor:
        started, rid = decode_cursor(cursor)
        where.append("(started_at < ? OR (started_at = ? AND request_id < ?))")
        params += [started, started, rid]
    if since is not None:
        where.append("started_at >= ?")
        params.append(since)
    sql = "SELECT * FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_at DESC, request_id DESC LIMIT ?"
    params.append(limit + 1)
    rows = await db.fetchall(sql, params)
    records = [record_from_row(r) for r in rows[:limit]]
    nxt = encode_cursor(records[-1]) if len(rows) > limit and records else None
    return records, nxt


async def last_written(db: Db) -> int:
    """Where `runs_written_after` starts: the position of the run written last (0: none)."""
    row = await db.fetchone(f"SELECT max({db.dialect.pos}) FROM runs")
    return int(row[0]) if row and row[0] is not None else 0


async def runs_written_after(
    db: Db,
    after: int,
    *,
    limit: int = 500,
    route: str | None = None,
    status: int | None = None,
    agent: str | None = None,
    outcome: str | None = None,
    client: str | None = None,
    ua: str | None = None,
) -> tuple[list[RunRecord], int]:
    """The runs written after position `after`, in the order they were written, and the new
    position (`bmo runs tail`). Write order, not `started_at`: a long stream is written when it
    ends, after shorter runs that started later, and a tail by start time would skip it."""
    # Up to the last row written now, so that the position moves past runs the filters skip;
    # a row written meanwhile gets a higher rowid (one writer at a time) and is found next time.
    upto = await last_written(db)
    if upto <= after:
        return [], after
    where, params = _filters(db.dialect, route, status, agent, outcome, client, ua)
    pos = db.dialect.pos
    rows = await db.fetchall(
        f"SELECT {pos} AS pos, * FROM runs WHERE " + " AND ".join([f"{pos} > ? AND {pos} <= ?", *where])
        + f" ORDER BY {pos} LIMIT ?",
        [after, upto, *params, limit],
    )  # fmt: skip
    last = int(rows[-1]["pos"]) if len(rows) == limit else upto
    return [record_from_row(r) for r in rows], last


async def get_run(db: Db, request_id: str) -> RunRecord | None:
    row = await db.fetchone("SELECT * FROM runs WHERE request_id = ?", (request_id,))
    return record_from_row(row) if row is not None else None


async def count_runs(db: Db) -> int:
    row = await db.fetchone("SELECT count(*) FROM runs")
    return int(row[0]) if row else 0


STATS_BUCKET_S = 60  # the stats route speaks per minute


async def run_stats(db: Db, *, since: float, minutes: int) -> list[dict[str, Any]]:
    """The runs started in [since, since + minutes * 60) as per-minute buckets, oldest first, one
    per minute (empty ones too): `start` (unix seconds), `count`, `by_outcome` (only outcomes
    seen), `p50_ms` and `p95_ms` of `duration_ms` (None when empty).

    Everything is counted and ranked in the database (GROUP BY, and a window function for the
    percentiles), so the cost is two index range scans and no run is brought into Python: a busy
    hour is hundreds of thousands of rows. Percentiles are nearest-rank, rank = ceil(q * n / 100),
    in integer arithmetic."""
    until = since + minutes * STATS_BUCKET_S
    bucket = db.dialect.bucket("started_at", STATS_BUCKET_S)
    greatest = db.dialect.greatest
    counts = await db.fetchall(
        f"SELECT {bucket} AS k, outcome, count(*) AS n FROM runs WHERE started_at >= ? AND started_at < ? "
        "GROUP BY k, outcome ORDER BY k, outcome",
        (since, since, until),
    )
    ranked = await db.fetchall(
        f"WITH b AS (SELECT {bucket} AS k, duration_ms AS d FROM runs WHERE started_at >= ? AND started_at < ?), "
        "r AS (SELECT k, d, row_number() OVER (PARTITION BY k ORDER BY d) AS i, "
        "count(*) OVER (PARTITION BY k) AS n FROM b), "
        f"q AS (SELECT k, d, i = {greatest}(1, (50 * n + 99) / 100) AS p50, "
        f"i = {greatest}(1, (95 * n + 99) / 100) AS p95 FROM r) "
        "SELECT k, d, p50, p95 FROM q WHERE p50 OR p95",
        (since, since, until),
    )
    buckets: list[dict[str, Any]] = [
        {"start": since + k * STATS_BUCKET_S, "count": 0, "by_outcome": {}, "p50_ms": None, "p95_ms": None}
        for k in range(minutes)
    ]
    last = minutes - 1  # a run just before `until` may land on `minutes` by float rounding: the last bucket
    for row in counts:
        b = buckets[min(max(int(row["k"]), 0), last)]
        b["count"] += row["n"]
        b["by_outcome"][row["outcome"]] = b["by_outcome"].get(row["outcome"], 0) + row["n"]
    for row in ranked:
        b = buckets[min(max(int(row["k"]), 0), last)]
        d = round(float(row["d"]), 3)
        if row["p50"]:
            b["p50_ms"] = d
        if row["p95"]:
            b["p95_ms"] = d
    return buckets
