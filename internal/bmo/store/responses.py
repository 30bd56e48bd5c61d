"""Stored Responses objects in the store (SPEC §4b, `responses:`).

A stored response is its new input turns, its answer (one assistant message) and the Response
object as the client got it, under the id every event of its stream carried. `chain` walks
`previous_id` back to the root, so a request that continues a response gets the whole
conversation; responses belong to the API key that made them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from bmo.chat import Message, message_from_json, message_to_json
from bmo.store.backend import Db

PRUNE_BATCH = 500
MAX_CHAIN = 1000  # a chain longer than this is cut at its oldest end (a bound on one read)


@dataclass(slots=True)
class StoredResponse:
    id: str
    owner: str
    previous_id: str | None
    agent: str
    created_at: float
    input: list[Message]
    output: Message
    body: dict[str, Any]


def _row(row: Any) -> StoredResponse:
    return StoredResponse(
        id=row["id"],
        owner=row["owner"],
        previous_id=row["previous_id"],
        agent=row["agent"],
        created_at=row["created_at"],
        input=[message_from_json(m) for m in orjson.loads(row["input"])],
        output=message_from_json(orjson.loads(row["output"])),
        body=orjson.loads(row["body"]),
    )


class ResponseStore:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def save(self, r: StoredResponse) -> None:
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO responses (id, owner, previous_id, agent, created_at, input, output, body) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, "
                "previous_id = excluded.previous_id, agent = excluded.agent, created_at = excluded.created_at, "
                "input = excluded.input, output = excluded.output, body = excluded.body",
                (
                    r.id,
                    r.owner,
                    r.previous_id,
                    r.agent,
                    r.created_at,
                    orjson.dumps([message_to_json(m) for m in r.input]).decode(),
                    orjson.dumps(message_to_json(r.output)).decode(),
                    orjson.dumps(r.body).decode(),
                ),
            )

    async def get(self, rid: str, owner: str | None) -> StoredResponse | None:
        """One response; `owner` None (the CLI) sees every owner's."""
        if owner is None:
            row = await self.db.fetchone("SELECT * FROM responses WHERE id = ?", (rid,))
        else:
            row = await self.db.fetchone("SELECT * FROM responses WHERE id = ? AND owner = ?", (rid, owner))
        return None if row is None else _row(row)

    async def chain(self, rid: str, owner: str) -> list[StoredResponse] | None:
        """The response and every one it continues, oldest first; None when `rid` is unknown
        (or another key's). A link missing further back (pruned, deleted) ends the chain there."""
        rows = await self.db.fetchall(
            """
            WITH RECURSIVE chain(id, previous_id, depth) AS (
                SELECT id, previous_id, 0 FROM responses WHERE id = ? AND owner = ?
                UNION ALL
                SELECT r.id, r.previous_id, c.depth + 1
                FROM responses r JOIN chain c ON r.id = c.previous_id
                WHERE r.owner = ? AND c.depth < ?
            )
            SELECT responses.* FROM chain JOIN responses USING (id) ORDER BY chain.depth DESC
            """,
            (rid, owner, owner, MAX_CHAIN),
        )
        return [_row(r) for r in rows] if rows else None

    async def delete(self, rid: str, owner: str | None) -> bool:
        async with self.db.transaction() as tx:
            if owner is None:
                n = await tx.execute("DELETE FROM responses WHERE id = ?", (rid,))
            else:
                n = await tx.execute("DELETE FROM responses WHERE id = ? AND owner = ?", (rid, owner))
            return n > 0

    async def list(self, limit: int = 50) -> list[StoredResponse]:
        rows = await self.db.fetchall("SELECT * FROM responses ORDER BY created_at DESC LIMIT ?", (limit,))
        return [_row(r) for r in rows]

    async def prune(self, retention_days: float, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - retention_days * 86400
        return await self.db.delete_in_batches(
            "DELETE FROM responses WHERE id IN (SELECT id FROM responses WHERE created_at < ? LIMIT ?)",
            (cutoff,),
            PRUNE_BATCH,
        )
