"""The few places where SQLite's SQL and PostgreSQL's differ, named once (layer 2).

Every store module writes its SQL once, with `?` placeholders (the PostgreSQL backend numbers
them), and asks its database's `dialect` only for what cannot be spelt the same way in both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str  # "sqlite" or "postgresql"
    pos: str  # the runs column that grows in write order (`bmo runs tail`, batched deletes)
    upsert_run: str  # how a run row replaces one with its request id
    greatest: str  # the two-argument scalar maximum
    ilike: str  # a case-insensitive LIKE (SQLite's LIKE is, for ASCII; PostgreSQL's is not)
    # Said first in a transaction that reads api_keys and then writes on what it read (the
    # `first` key): SQLite's BEGIN IMMEDIATE already excludes other writers; PostgreSQL's READ
    # COMMITTED does not, so two replicas starting together would each mint one.
    lock_keys: str | None

    def bucket(self, column: str, width_s: int) -> str:
        """The whole number of `width_s` periods between `?` and `column` (never negative here)."""
        if self.name == "sqlite":
            return f"CAST(({column} - ?) / {width_s} AS INTEGER)"
        return f"CAST(floor(({column} - ?) / {width_s}) AS BIGINT)"


SQLITE = Dialect(
    name="sqlite", pos="rowid", upsert_run="INSERT OR REPLACE INTO", greatest="max", ilike="LIKE", lock_keys=None
)
# PostgreSQL has no INSERT OR REPLACE: the ledger's insert adds ON CONFLICT (request_id) itself.
POSTGRESQL = Dialect(
    name="postgresql",
    pos="seq",
    upsert_run="INSERT INTO",
    greatest="GREATEST",
    ilike="ILIKE",
    lock_keys="LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE",
)
