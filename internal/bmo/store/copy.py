"""Copying one store into another (`bmo store migrate --to postgresql://…`): keys, sessions with
their transcripts, stored responses, and runs with their events.

Idempotent: every row goes in with ON CONFLICT DO NOTHING, so a second run (or one interrupted
and run again) copies only what is missing and never doubles a row. API keys are matched by their
hash, not their id (the target numbers its own, and may have minted a key already); a key whose
name a live key of the target already has is skipped, and said so. Rows are read in pages by key
(keyset paging), a page per transaction, so a big ledger never sits in memory and the source
(possibly a running server's bmo.db) is never locked for long. The key epoch of the target is
bumped at the end, so running replicas re-read their keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bmo.store.backend import Db

PAGE = 500


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    order: tuple[str, ...]  # the keyset the pages follow (unique together)
    skip: tuple[str, ...] = ()  # columns the target fills itself


# In dependency order: a session before its messages.
TABLES = (
    Table("api_keys", ("id",), skip=("id",)),
    Table("sessions", ("id",)),
    Table("session_messages", ("session_id", "seq")),
    Table("responses", ("id",)),
    Table("runs", ("started_at", "request_id"), skip=("seq",)),
)


@dataclass(slots=True)
class Copied:
    table: str
    source: int  # rows in the source
    copied: int  # rows the target did not have
    skipped: int  # rows already there (or, for keys, a live key of that name)


Progress = Callable[[str, int, int], None]  # (table, rows done, rows in all)


async def count(db: Db, table: str) -> int:
    row = await db.fetchone(f"SELECT count(*) FROM {table}")
    return int(row[0]) if row is not None else 0


async def copy_store(src: Db, dst: Db, progress: Progress | None = None) -> list[Copied]:
    out: list[Copied] = []
    for t in TABLES:
        total = await count(src, t.name)
        before = await count(dst, t.name)
        done = 0
        after: tuple[Any, ...] | None = None
        if progress is not None:
            progress(t.name, 0, total)
        while True:
            keys = ", ".join(t.order)
            if after is None:
                rows = await src.fetchall(f"SELECT * FROM {t.name} ORDER BY {keys} LIMIT ?", (PAGE,))
            else:
                marks = ", ".join("?" * len(t.order))
                rows = await src.fetchall(
                    f"SELECT * FROM {t.name} WHERE ({keys}) > ({marks}) ORDER BY {keys} LIMIT ?", (*after, PAGE)
                )
            if not rows:
                break
            cols = [c for c in rows[0].keys() if c not in t.skip]
            sql = (
                f"INSERT INTO {t.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
                "ON CONFLICT DO NOTHING"
            )
            async with dst.transaction() as tx:
                await tx.executemany(sql, [tuple(r[c] for c in cols) for r in rows])
            after = tuple(rows[-1][c] for c in t.order)
            done += len(rows)
            if progress is not None:
                progress(t.name, done, total)
        copied = await count(dst, t.name) - before
        out.append(Copied(t.name, total, copied, total - copied))
    async with dst.transaction() as tx:
        await tx.execute("UPDATE counters SET value = value + 1 WHERE name = 'key_epoch'")
    return out
