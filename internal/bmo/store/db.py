"""Opening `bmo.db`: WAL, a busy timeout, foreign keys, the schema migrated on open.

`Database` wraps one aiosqlite connection (one worker thread). The server keeps one open for its
whole life; each CLI command opens its own, does its work and closes it; WAL lets both run at
once. Writes go through `transaction()`, which serialises this connection's writers (one
connection cannot hold two transactions) and takes SQLite's write lock up front (`BEGIN
IMMEDIATE`) so that a busy database waits `busy_timeout` instead of failing half-way.

Every failure to open or use the file becomes `Unavailable` (503 `store_unavailable`) with a
message that says which file and what went wrong.

The store modules speak to a database through the small surface both backends share (see
`store.backend`): `fetchall`, `fetchone`, `transaction()` yielding a `Tx`, `delete_in_batches`,
`health`, `dialect`. `bmo.store.pg.PgDatabase` is the other implementation of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from bmo.errors import Unavailable
from bmo.store.backend import Db, open_store
from bmo.store.dialect import SQLITE
from bmo.store.migrations import migrate

# How long a writer waits for another process's write lock before giving up. Writes are short
# (one key, one batch of last-used times), so 5 s is only reached when something is wrong.
BUSY_TIMEOUT_S = 5.0


def store_error(path: Path, doing: str, e: BaseException) -> Unavailable:
    return Unavailable(f"The database {path} {doing}: {e}", detail=repr(e))


async def _switch_to_wal(conn: aiosqlite.Connection) -> None:
    """`PRAGMA journal_mode = WAL`, retried: switching a new file's journal needs an exclusive
    lock, and SQLite answers "database is locked" at once (no busy handler) when another opener
    holds the file, as several workers or CLI commands starting together do."""
    deadline = asyncio.get_running_loop().time() + BUSY_TIMEOUT_S
    delay = 0.01
    while True:
        try:
            mode = await (await conn.execute("PRAGMA journal_mode = WAL")).fetchone()
            break
        except sqlite3.OperationalError as e:
            text = str(e).lower()
            if ("locked" not in text and "busy" not in text) or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)
    if mode is None or str(mode[0]).lower() != "wal":
        raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {mode[0] if mode else None!r})")


class SqliteTx:
    """One write transaction's statements (what `Database.transaction()` yields)."""

    __slots__ = ("conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        cur = await self.conn.execute(sql, tuple(params))
        return cur.rowcount or 0

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        await self.conn.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return list(await self.conn.execute_fetchall(sql, tuple(params)))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        cur = await self.conn.execute(sql, tuple(params))
        return await cur.fetchone()

    async def insert_id(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run an INSERT into a table with an `id` key; the new row's id."""
        cur = await self.conn.execute(sql, tuple(params))
        return int(cur.lastrowid or 0)


class Database:
    """The SQLite backend (`store.url` empty): BMO_HOME/bmo.db."""

    dialect = SQLITE
    remote = False  # one file on this machine: no other host changes keys behind this process's back

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        # The last failure of each kind, cleared by the next success of that kind (for /health).
        self.last_write_error: str | None = None
        self.last_read_error: str | None = None
        self.on_down: Callable[[str], None] | None = None  # never called: a file's failures show on use

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise Unavailable(f"The database {self.path} is not open.")
        return self._conn

    async def open(self) -> None:
        """Open (creating the file and its folder if needed) and bring the schema up to date."""
        if self._conn is not None:
            return
        created = not self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise store_error(self.path, "cannot be created", e) from e
        try:
            # isolation_level=None: no implicit transactions; `transaction()` says BEGIN itself.
            conn = await aiosqlite.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (sqlite3.Error, OSError) as e:
            raise store_error(self.path, "cannot be opened", e) from e
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            await _switch_to_wal(conn)
            await conn.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, and far fewer fsyncs
            await conn.execute("PRAGMA foreign_keys = ON")
            await migrate(conn)
        except Unavailable:
            await conn.close()
            raise
        except (sqlite3.Error, OSError) as e:
            await conn.close()
            raise store_error(self.path, "cannot be used", e) from e
        if created:
            with contextlib.suppress(OSError):
                os.chmod(self.path, 0o600)  # key hashes and run history: the owner's business only
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        try:
            rows = list(await self.conn.execute_fetchall(sql, tuple(params)))
        except sqlite3.Error as e:
            self.last_read_error = str(e)
            raise store_error(self.path, "could not be read", e) from e
        self.last_read_error = None
        return rows

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        """One write transaction; commits on success, rolls back on any exception."""
        async with self._write_lock:
            conn = self.conn
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                self.last_write_error = str(e)
                raise store_error(self.path, "could not be written", e) from e
            try:
                yield SqliteTx(conn)
                await conn.execute("COMMIT")
            except BaseException as e:
                with contextlib.suppress(sqlite3.Error):
                    await conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    self.last_write_error = str(e)
                    raise store_error(self.path, "could not be written", e) from e
                raise
            self.last_write_error = None

    async def delete_in_batches(self, sql: str, params: tuple[Any, ...], batch: int) -> int:
        """Run a `DELETE … LIMIT ?` (the last parameter is the batch size) until it deletes fewer
        than `batch` rows: small transactions never hold the write lock long. Returns the total."""
        total = 0
        while True:
            async with self.transaction() as tx:
                n = await tx.execute(sql, (*params, batch))
            total += n
            if n < batch:
                return total
            await asyncio.sleep(0.05)  # let request-path writers in between batches

    def describe(self) -> str:
        """Where the store is, for messages (`bmo runs show`, `bmo store migrate`)."""
        return f"database {self.path}"

    def health(self) -> str | None:
        """None when the store looks writable, else the reason. Cheap: no SQL, no disk write.
        The reason goes to unauthenticated callers of /health, so it never names the path."""
        if self._conn is None:
            return "the database is not open"
        if not self.path.exists():
            return "the database file has gone away"
        if not os.access(self.path, os.W_OK) or not os.access(self.path.parent, os.W_OK):
            return "the database file or its folder is not writable"
        if self.last_write_error is not None:
            return f"the last write failed ({self.last_write_error})"
        if self.last_read_error is not None:
            return f"the last read failed ({self.last_read_error})"
        return None


def open_database(target: Path | str, *, pool_size: int = 10) -> contextlib.AbstractAsyncContextManager[Db]:
    """For the CLI: open, use, close; a SQLite file or a PostgreSQL URL (store.backend.open_store)."""
    return open_store(target, pool_size=pool_size)
