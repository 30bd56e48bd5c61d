"""Leases in the store (SPEC §11): a name held by one process until it expires.

What `bmo serve --workers N` uses so that N processes sharing one database never do one thing
twice at once: a session runs one request at a time (`session:ses_…`, bmo.sessions), and one
process prunes (`prune`, store.ledger.prune_forever). A holder renews its lease while it works;
one that dies (SIGKILL, a crash) holds it no longer than its time to live.

Each call is one short write transaction: taking a lease is an upsert that only wins over an
expired holder, or over the same owner (a renewal).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable

from bmo.store.backend import Db


def new_owner() -> str:
    """An owner id unique to this process (and this start of it): host, pid, a random tail."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class LeaseStore:
    def __init__(self, db: Db, owner: str | None = None) -> None:
        self.db = db
        self.owner = owner or new_owner()

    async def acquire(self, name: str, ttl_s: float, *, now: float | None = None) -> bool:
        """Take `name` for `ttl_s` seconds (or renew it, when this owner holds it already).
        False: another owner holds it and its lease has not expired."""
        now = time.time() if now is None else now
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at "
                "WHERE leases.owner = excluded.owner OR leases.expires_at < ?",
                (name, self.owner, now + ttl_s, now),
            )
            return n > 0

    async def renew(self, name: str, ttl_s: float) -> bool:
        """Push the expiry of a lease this owner holds; False if it holds it no longer."""
        async with self.db.transaction() as tx:
            n = await tx.execute(
                "UPDATE leases SET expires_at = ? WHERE name = ? AND owner = ?",
                (time.time() + ttl_s, name, self.owner),
            )
            return n > 0

    async def renew_all(self, ttl_s: float) -> int:
        """Push the expiry of every lease this owner holds (one write); how many it holds."""
        async with self.db.transaction() as tx:
            return await tx.execute(
                "UPDATE leases SET expires_at = ? WHERE owner = ?", (time.time() + ttl_s, self.owner)
            )

    async def release(self, name: str, *, unless: Callable[[], bool] | None = None) -> None:
        """Give `name` back. `unless` is asked once this connection's write lock is held (so no
        acquire of this owner's can come between): True keeps the lease."""
        async with self.db.transaction() as tx:
            if unless is not None and unless():
                return
            await tx.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, self.owner))

    async def holder(self, name: str) -> tuple[str, float] | None:
        """(owner, expires_at) of a lease, expired or not; None when nobody has it."""
        row = await self.db.fetchone("SELECT owner, expires_at FROM leases WHERE name = ?", (name,))
        return None if row is None else (str(row[0]), float(row[1]))
