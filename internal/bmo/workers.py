"""One worker of `bmo serve --workers N` (layer 4; SPEC §11): its slot, its share of the
server's limits, and its part in the one view of the server that posture and /metrics give.

Each worker publishes its cumulative counters (bmo.metrics) and its live figures (requests in
flight, the ledger's persistence) to its slot's row of the `workers` table about once a second,
in its own task, off the request path. Whichever worker answers posture or /metrics publishes its
own row first and then sums every row: the sum only ever grows, whichever worker is asked, since
each row does. A worker restarted on a slot starts from the slot's row, so a kill does not
send a counter back (what the dead one answered after its last publish is missing from the
counters, never from the ledger beyond its flush window).

The posture window (counts and percentiles per route and outcome, top clients, recent runs)
comes from the ledger, which every worker writes: percentiles cannot be summed from per-worker
summaries, and publishing each worker's whole window (up to 20,000 rows) every second would cost
far more than reading the ledger when posture is asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bmo.metrics import Metrics
from bmo.runs import Persistence, iso_utc
from bmo.store.backend import Db
from bmo.store.workers import WorkerRow, WorkerStore

PUBLISH_S = 1.0
LIVE_S = 5.0  # a row not published for this long is a worker that is gone (its gauges no longer count)
log = logging.getLogger("bmo.workers")


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    slot: int  # 0 … count-1
    count: int

    def share(self, total: int) -> int:
        """This worker's part of a server-wide limit (`openai_compat.concurrency`): the total split
        evenly, the remainder to the first slots, at least 1 each. A share, not a counter in the
        store: SO_REUSEPORT spreads connections evenly over the workers, so even shares add up to
        the total, and a shared counter would cost a store round trip on every request."""
        base, extra = divmod(total, self.count)
        return max(1, base + (1 if self.slot < extra else 0))


class Fleet:
    """This worker's row in the `workers` table, and the sums over all of them."""

    def __init__(self, slot: WorkerSlot, db: Db, metrics: Metrics, persistence: Persistence, server: str = "") -> None:
        self.slot = slot
        self.store = WorkerStore(db, server)  # `server`: this bmo's rows on a shared store
        self.metrics = metrics
        self.persistence = persistence
        self.pid = os.getpid()
        self.started = time.time()
        self.restarts = 0
        self.in_flight: Callable[[], int] = lambda: 0  # the server sets it (server/serve.py)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Continue the slot's counters (a restarted worker), publish, and keep publishing."""
        prev = await self.store.get(self.slot.slot)
        if prev is not None:
            self.metrics.add(prev.counters)
            self.persistence.written_rows += int(prev.counters.get("written_rows", 0))
            self.restarts = prev.restarts + 1
            log.warning(
                "worker %d (pid %d) took over from pid %d; its counters continue (restarts: %d)",
                self.slot.slot, self.pid, prev.pid, self.restarts,
            )  # fmt: skip
        await self.publish()
        self._task = asyncio.create_task(self._run(), name="bmo-worker-publish")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_S)
            try:
                await self.publish()
            except Exception as e:  # the store is down: posture says so through persistence
                log.warning("worker %d could not publish its counters: %s", self.slot.slot, e)

    async def publish(self, asking: int = 0) -> None:
        """`asking`: requests in flight here not to count (a posture or /metrics request)."""
        counters = self.metrics.to_json()
        counters["written_rows"] = self.persistence.written_rows
        live = {"in_flight": max(0, self.in_flight() - asking), "persistence": self.persistence.to_json()}
        await self.store.publish(self.slot.slot, self.pid, self.started, self.restarts, counters, live)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.publish()  # the last counters, for the slot's next worker

    async def rows(self, asking: int = 1) -> list[WorkerRow]:
        """Every slot's row, this worker's freshly published (without the `asking` request)."""
        await self.publish(asking)
        return await self.store.all()


def summed(rows: list[WorkerRow], *, now: float | None = None) -> tuple[Metrics, Persistence, int]:
    """The server's counters (every row: a dead worker's last counts still count), its ledger's
    persistence and its requests in flight (rows published lately: live workers only)."""
    now = time.time() if now is None else now
    m = Metrics()
    p = Persistence()
    in_flight = 0
    for r in rows:
        m.add(r.counters)
        p.written_rows += int(r.counters.get("written_rows", 0))
        if now - r.updated_at > LIVE_S:
            continue
        in_flight += int(r.live.get("in_flight", 0))
        per = r.live.get("persistence") or {}
        p.queue_depth += int(per.get("queue_depth", 0))
        p.dropped_rows += int(per.get("dropped_rows", 0))
        if per.get("state", "ok") != "ok":
            p.state = "degraded"
            p.last_error = per.get("last_error") or p.last_error
    return m, p, in_flight


def workers_view(rows: list[WorkerRow], *, now: float | None = None) -> list[dict[str, Any]]:
    """Each worker as posture lists it."""
    now = time.time() if now is None else now
    return [
        {
            "slot": r.slot,
            "pid": r.pid,
            "state": "up" if now - r.updated_at <= LIVE_S else "gone",
            "started_at": iso_utc(r.started),
            "restarts": r.restarts,
            "in_flight": int(r.live.get("in_flight", 0)),
        }
        for r in rows
    ]
