"""The `workers` table (SPEC §11): one row per worker slot of `bmo serve --workers N`.

Each worker publishes its cumulative counters and live figures (in flight, persistence) about
once a second (bmo.workers); whichever worker answers posture or /metrics sums the rows. The
supervisor empties the table before it starts the workers, so a row always belongs to this
server; a worker restarted on a slot reads the slot's row back and continues from it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
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


class WorkerStore:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def clear(self) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM workers")

    async def get(self, slot: int) -> WorkerRow | None:
        row = await self.db.fetchone("SELECT * FROM workers WHERE slot = ?", (slot,))
        return None if row is None else _row(row)

    async def all(self) -> list[WorkerRow]:
        return [_row(r) for r in await self.db.fetchall("SELECT * FROM workers ORDER BY slot")]

    async def publish(
        self, slot: int, pid: int, started: float, restarts: int, counters: dict[str, Any], live: dict[str, Any]
    ) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO workers (slot, pid, started, updated_at, restarts, counters, live) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (slot) DO UPDATE SET pid = excluded.pid, "
                "started = excluded.started, updated_at = excluded.updated_at, restarts = excluded.restarts, "
                "counters = excluded.counters, live = excluded.live",
                (slot, pid, started, time.time(), restarts, _json(counters), _json(live)),
            )
