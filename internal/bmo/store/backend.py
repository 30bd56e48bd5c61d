"""What a store module may ask of its database, whichever backend it is (layer 2).

Two implementations: `store.db.Database` (SQLite, BMO_HOME/bmo.db) and `store.pg.PgDatabase`
(PostgreSQL over asyncpg, `store.url`). `open_store` picks one from a target: a Path is a SQLite
file, a `postgresql://` (or `postgres://`) URL a PostgreSQL database. asyncpg is imported only
when a URL is given, so a SQLite-only install never needs it.

Statements are written once with `?` placeholders; rows answer both `row["column"]` and `row[0]`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from bmo.errors import Unavailable
from bmo.store.dialect import Dialect

Target = Path | str  # a SQLite file, or a PostgreSQL URL


class Row(Protocol):
    def __getitem__(self, key: Any, /) -> Any: ...


class Tx(Protocol):
    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int: ...
    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None: ...
    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> Sequence[Any]: ...
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any: ...
    async def insert_id(self, sql: str, params: Iterable[Any] = ()) -> int: ...


class Db(Protocol):
    dialect: Dialect
    remote: bool  # shared with other hosts: a failed check must not be answered from memory
    on_down: Callable[[str], None] | None  # told when a health check finds the database gone

    @property
    def is_open(self) -> bool: ...
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> Sequence[Any]: ...
    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> Any: ...
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Tx]: ...
    async def delete_in_batches(self, sql: str, params: tuple[Any, ...], batch: int) -> int: ...
    def describe(self) -> str: ...
    def health(self) -> str | None: ...


def redacted(url: str) -> str:
    """A URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def is_url(target: Target) -> bool:
    return isinstance(target, str) and target.split("://", 1)[0] in ("postgresql", "postgres")


def make_store(target: Target, *, pool_size: int = 10) -> Db:
    """An unopened database for `target` (see the module docstring)."""
    if is_url(target):
        try:
            from bmo.store.pg import PgDatabase  # asyncpg only when asked for
        except ImportError as e:
            raise Unavailable(
                "A PostgreSQL store (store.url) needs asyncpg, which is not installed: "
                "pip install 'bmo[postgres]' (the standalone binary has it).",
                detail=repr(e),
            ) from None
        return PgDatabase(str(target), pool_size=pool_size)
    from bmo.store.db import Database

    return Database(Path(target))


@contextlib.asynccontextmanager
async def open_store(target: Target, *, pool_size: int = 10) -> AsyncIterator[Db]:
    """For the CLI: open, use, close."""
    db = make_store(target, pool_size=pool_size)
    await db.open()
    try:
        yield db
    finally:
        await db.close()
