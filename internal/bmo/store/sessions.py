"""Session transcripts in the store (SPEC §1, `sessions:`).

A session is (owner, name) → an agent and an ordered transcript. Writes replace the transcript
from a given turn on (`save`), which covers both appending new turns and forking when a client
edited its history, in one transaction.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from bmo.chat import Message, message_from_json, message_to_json
from bmo.store.backend import Db

PRUNE_BATCH = 500


@dataclass(slots=True)
class Session:
    id: str
    owner: str
    name: str
    source: str
    agent: str
    created_at: float
    updated_at: float
    turns: int
    messages: list[Message] = field(default_factory=list)

    def to_json(self, *, with_messages: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "owner": self.owner,
            "name": self.name,
            "source": self.source,
            "agent": self.agent,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "turns": self.turns,
        }
        if with_messages:
            d["messages"] = [message_to_json(m) for m in self.messages]
        return d


def _session(row: Any) -> Session:
    return Session(
        id=row["id"],
        owner=row["owner"],
        name=row["name"],
        source=row["source"],
        agent=row["agent"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        turns=row["turns"],
    )


class SessionStore:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def find(self, owner: str, name: str) -> Session | None:
        row = await self.db.fetchone("SELECT * FROM sessions WHERE owner = ? AND name = ?", (owner, name))
        if row is None:
            return None
        s = _session(row)
        s.messages = await self._messages(s.id)
        return s

    async def get(self, ref: str) -> Session | None:
        """By id, or by name when exactly one owner has that name (for the CLI)."""
        row = await self.db.fetchone("SELECT * FROM sessions WHERE id = ?", (ref,))
        if row is None:
            rows = await self.db.fetchall("SELECT * FROM sessions WHERE name = ?", (ref,))
            row = rows[0] if len(rows) == 1 else None
        if row is None:
            return None
        s = _session(row)
        s.messages = await self._messages(s.id)
        return s

    async def _messages(self, session_id: str) -> list[Message]:
        rows = await self.db.fetchall(
            "SELECT message FROM session_messages WHERE session_id = ? ORDER BY seq", (session_id,)
        )
        return [message_from_json(orjson.loads(r[0])) for r in rows]

    async def create(self, owner: str, name: str, source: str, agent: str) -> Session:
        now = time.time()
        s = Session("ses_" + secrets.token_hex(12), owner, name, source, agent, now, now, 0)
        async with self.db.transaction() as tx:
            # a concurrent creator (another process) may have won: keep theirs
            await tx.execute(
                "INSERT INTO sessions (id, owner, name, source, agent, created_at, updated_at, turns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT DO NOTHING",
                (s.id, owner, name, source, agent, now, now),
            )
        found = await self.find(owner, name)
        assert found is not None
        return found

    async def save(self, session_id: str, keep: int, new: list[Message]) -> int:
        """Keep the first `keep` turns, then append `new`. Returns the transcript's length."""
        now = time.time()
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM session_messages WHERE session_id = ? AND seq >= ?", (session_id, keep))
            await tx.executemany(
                "INSERT INTO session_messages (session_id, seq, message) VALUES (?, ?, ?)",
                [(session_id, keep + i, orjson.dumps(message_to_json(m)).decode()) for i, m in enumerate(new)],
            )
            total = keep + len(new)
            await tx.execute("UPDATE sessions SET updated_at = ?, turns = ? WHERE id = ?", (now, total, session_id))
        return total

    async def list(self, limit: int = 100) -> list[Session]:
        rows = await self.db.fetchall("SELECT * FROM sessions ORDER BY updated_at DESC LIMIT ?", (limit,))
        return [_session(r) for r in rows]

    async def delete(self, session_id: str) -> bool:
        async with self.db.transaction() as tx:
            return await tx.execute("DELETE FROM sessions WHERE id = ?", (session_id,)) > 0

    async def prune(self, ttl_days: float, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - ttl_days * 86400
        return await self.db.delete_in_batches(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE updated_at < ? LIMIT ?)",
            (cutoff,),
            PRUNE_BATCH,
        )
