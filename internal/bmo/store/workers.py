"""The `workers` table (SPEC §11): one row per worker slot of `bmo serve --workers N`.

Each worker publishes its cumulative counters and live figures (in flight, persistence) about
once a second (bmo.workers); whichever worker answers posture or /metrics sums the rows. The
supervisor empties the table before it starts the workers, so a row always belongs to this
server; a worker restarted on a slot reads the slot's row back and continues from it.

On a shared PostgreSQL store every replica has slots 0…N-1: there each row also names its
`server` (host and home, `server_id`), and every statement keeps to this server's rows. A
SQLite file belongs to one home, so its table has no such column.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bmo.store.backend import Db


@dataclass(slots=True)
class WorkerRow:
    slot: int
    pid: int
    started: float
    updated_at: float
    restarts: int
    counters: dict[str, Any]
    live: dict[str, Any]


def _row(r: Any) -> WorkerRow:
    return WorkerRow(
        slot=int(r["slot"]),
        pid=int(r["pid"]),
        started=float(r["started"]),
        updated_at=float(r["updated_at"]),
        restarts=int(r["restarts"]),
        counters=orjson.loads(r["counters"]),
        live=orjson.loads(r["live"]),
    )


def _json(d: dict[str, Any]) -> str:
    return orjson.dumps(d).decode()


def server_id(home: Path) -> str:
    """Which bmo a worker row belongs to on a shared store: this host and this home."""
    return f"{socket.gethostname()}:{home}"


class WorkerStore:
    def __init__(self, db: Db, server: str = "") -> None:
        self.db = db
        self.shared = db.remote  # PostgreSQL: rows carry `server`
        self.server = server

    def _mine(self, where: str = "") -> tuple[str, tuple[Any, ...]]:
        """A WHERE clause (`where` and, on a shared store, this server's rows) and its parameters."""
        terms = [where] if where else []
        if self.shared:
            terms.append("server = ?")
        return (" WHERE " + " AND ".join(terms) if terms else ""), ((self.server,) if self.shared else ())

    async def clear(self) -> None:
        sql, params = self._mine()
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM workers" + sql, params)

    async def get(self, slot: int) -> WorkerRow | None:
        sql, params = self._mine("slot = ?")
        row = await self.db.fetchone("SELECT * FROM workers" + sql, (slot, *params))
        return None if row is None else _row(row)

    async def all(self) -> list[WorkerRow]:
        sql, params = self._mine()
        return [_row(r) for r in await self.db.fetchall("SELECT * FROM workers" + sql + " ORDER BY slot", params)]

    async def publish(
        self, slot: int, pid: int, started: float, restarts: int, counters: dict[str, Any], live: dict[str, Any]
    ) -> None:
        row = (slot, pid, started, time.time(), restarts, _json(counters), _json(live))
        update = (
            "DO UPDATE SET pid = excluded.pid, started = excluded.started, updated_at = excluded.updated_at, "
            "restarts = excluded.restarts, counters = excluded.counters, live = excluded.live"
        )
        async with self.db.transaction() as tx:
            if self.shared:
                await tx.execute(
                    "INSERT INTO workers (server, slot, pid, started, updated_at, restarts, counters, live) "
                    f"VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (server, slot) {update}",
                    (self.server, *row),
                )
            else:
                await tx.execute(
                    "INSERT INTO workers (slot, pid, started, updated_at, restarts, counters, live) "
                    f"VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (slot) {update}",
                    row,
                )
