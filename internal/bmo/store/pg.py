"""The PostgreSQL backend (`store.url: postgresql://…`): the only module that imports asyncpg.

Several bmo replicas share one database. A pool of `store.pool_size` connections serves each
process; statements are the SQLite ones with `?` numbered into `$1…` (cached per statement), and
the few SQL differences live in `store.dialect`. The schema has its own numbered migrations,
applied on open under an advisory lock (store.pg_migrations).

Failure, never a hang: connecting, waiting for a pooled connection and every statement have
time limits; any asyncpg or socket error becomes `Unavailable` (503 `store_unavailable`). A ping
every `PING_S` keeps `health()` true while nothing else runs, and tells `on_down` (the runtime
marks the ledger degraded) when the database goes away. The pool reconnects by itself: a broken
connection is dropped when it is released, and the next acquire dials again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import asyncpg

from bmo.errors import Unavailable
from bmo.store.backend import redacted
from bmo.store.dialect import POSTGRESQL
from bmo.store.pg_migrations import migrate

log = logging.getLogger("bmo.store")

CONNECT_TIMEOUT_S = 3.0  # a database that does not answer a connect in 3 s is down, for this request
ACQUIRE_TIMEOUT_S = 5.0  # every pooled connection busy this long: the pool is too small, say so
COMMAND_TIMEOUT_S = 10.0  # a statement (a ledger batch of 512 rows included) never takes this long
PING_S = 1.0
ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, …` (bmo's statements hold no `?` in literals)."""
    n = 0

    def nxt(_: re.Match[str]) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    return re.sub(r"\?", nxt, sql)


def _count(status: str) -> int:
    """Rows changed, from a command tag such as `UPDATE 3` or `INSERT 0 1`."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _reason(e: BaseException) -> str:
    if isinstance(e, asyncpg.PostgresError):
        return str(e)
    if isinstance(e, asyncio.TimeoutError):
        return "timed out"
    return f"cannot reach the database ({type(e).__name__})"


class PgTx:
    """One transaction's statements (what `PgDatabase.transaction()` yields)."""

    __slots__ = ("conn",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        return _count(await self.conn.execute(numbered(sql), *params))

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        await self.conn.executemany(numbered(sql), [tuple(r) for r in rows])

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[asyncpg.Record]:
        return list(await self.conn.fetch(numbered(sql), *params))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> asyncpg.Record | None:
        return await self.conn.fetchrow(numbered(sql), *params)

    async def insert_id(self, sql: str, params: Iterable[Any] = ()) -> int:
        return int(await self.conn.fetchval(numbered(sql) + " RETURNING id", *params))


class PgDatabase:
    dialect = POSTGRESQL
    remote = True  # other replicas change keys: a key check the database cannot answer fails closed

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = max(1, pool_size)
        self._pool: asyncpg.Pool | None = None
        self._ping: asyncio.Task[None] | None = None
        self.last_write_error: str | None = None
        self.last_read_error: str | None = None
        self.last_ping_error: str | None = None
        self.on_down: Callable[[str], None] | None = None  # told once each time the database goes away

    def describe(self) -> str:
        return f"PostgreSQL database {redacted(self.url)}"

    def _error(self, doing: str, e: BaseException) -> Unavailable:
        return Unavailable(f"The {self.describe()} {doing}: {_reason(e)}", detail=repr(e))

    @property
    def is_open(self) -> bool:
        return self._pool is not None

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
                max_inactive_connection_lifetime=60,
            )
        except (*ERRORS, ValueError) as e:  # ValueError: a URL asyncpg cannot parse
            raise self._error("cannot be opened", e) from e
        try:
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                await migrate(conn)
        except Unavailable:
            await pool.close()
            raise
        except ERRORS as e:
            await pool.close()
            raise self._error("cannot be migrated", e) from e
        self._pool = pool
        self._ping = asyncio.get_running_loop().create_task(self._pinger(), name="bmo-store-ping")

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if self._ping is not None:
            self._ping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ping
            self._ping = None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT_S)
            except (*ERRORS, asyncio.CancelledError):
                pool.terminate()  # a database gone away: do not wait for goodbyes it cannot answer

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise Unavailable(f"The {self.describe()} is not open.")
        return self._pool

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[asyncpg.Record]:
        try:
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                rows = list(await conn.fetch(numbered(sql), *params))
        except ERRORS as e:
            self.last_read_error = _reason(e)
            raise self._error("could not be read", e) from e
        self.last_read_error = None
        return rows

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> asyncpg.Record | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTx]:
        """One transaction on one pooled connection; commits on success, rolls back on any error."""
        try:
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn, conn.transaction():
                yield PgTx(conn)
        except ERRORS as e:
            self.last_write_error = _reason(e)
            raise self._error("could not be written", e) from e
        self.last_write_error = None

    async def delete_in_batches(self, sql: str, params: tuple[Any, ...], batch: int) -> int:
        total = 0
        while True:
            async with self.transaction() as tx:
                n = await tx.execute(sql, (*params, batch))
            total += n
            if n < batch:
                return total
            await asyncio.sleep(0.05)

    async def ping(self) -> None:
        """One round trip; health() says whether the last one worked."""
        try:
            async with self.pool.acquire(timeout=CONNECT_TIMEOUT_S) as conn:
                await conn.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT_S)
        except ERRORS as e:
            if self.last_ping_error is None:
                log.warning("%s: %s", self.describe(), _reason(e))
                if self.on_down is not None:
                    self.on_down(f"the database went away ({_reason(e)})")
            self.last_ping_error = _reason(e)
            return
        if self.last_ping_error is not None:
            log.info("%s: reachable again", self.describe())
            self.last_read_error = self.last_write_error = None  # the failures were the outage's
        self.last_ping_error = None

    async def _pinger(self) -> None:
        while True:
            await asyncio.sleep(PING_S)
            with contextlib.suppress(Unavailable):
                await self.ping()

    def health(self) -> str | None:
        """None when the database answered the last ping and statement; else why not (never the URL)."""
        if self._pool is None:
            return "the database is not open"
        if self.last_ping_error is not None:
            return f"the database cannot be reached ({self.last_ping_error})"
        if self.last_write_error is not None:
            return f"the last write failed ({self.last_write_error})"
        if self.last_read_error is not None:
            return f"the last read failed ({self.last_read_error})"
        return None
