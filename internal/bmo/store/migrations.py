"""The schema of bmo.db: append-only, numbered migrations (STYLE habit 14).

Rules, so that every bmo.db ever written can be brought up to date:
- Never edit or reorder a migration that has shipped; add the next number at the end of
  `MIGRATIONS` (a later issue adds the run ledger and sessions this way).
- Each entry is (version, name, sql); `sql` may hold several statements. All pending migrations
  run in one `BEGIN IMMEDIATE` transaction, and the applied versions are re-read after the lock
  is taken, so a server and a CLI opening the same new file at once do not both migrate it.
- Versions are applied in order, each one that is not recorded yet, so a gap closed later (a
  version merged after a higher one) is applied then; a migration must therefore not depend on
  one with a higher number.
- `schema_migrations` records what ran. A file from a newer bmo (a version this one does not
  know) is refused rather than guessed at.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass

import aiosqlite

from bmo.errors import Unavailable


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "api_keys",
        """
        -- Stored API keys (SPEC §7). Only the SHA-256 of a secret and its display prefix are kept.
        CREATE TABLE api_keys (
            id           INTEGER PRIMARY KEY,
            name         TEXT    NOT NULL,
            prefix       TEXT    NOT NULL,          -- the first 12 characters, e.g. sk-bmo-AbC12
            hash         TEXT    NOT NULL UNIQUE,   -- sha256 hex of the whole secret
            scopes       TEXT    NOT NULL,          -- comma-separated: chat, ledger, admin
            created_at   REAL    NOT NULL,          -- unix seconds
            expires_at   REAL,
            revoked_at   REAL,
            last_used_at REAL                       -- written in batches, never per request
        );
        -- A name picks one key: unique among keys not revoked.
        CREATE UNIQUE INDEX api_keys_name_live ON api_keys (name) WHERE revoked_at IS NULL;
        CREATE INDEX api_keys_prefix ON api_keys (prefix);

        -- Small named counters. `key_epoch` goes up on every key create or revoke; a running
        -- server polls it to learn that another process (the CLI) changed the keys.
        CREATE TABLE counters (
            name  TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        );
        INSERT INTO counters (name, value) VALUES ('key_epoch', 0);
        """,
    ),
    Migration(
        2,
        "runs",
        """
        -- The run ledger (SPEC §6): one row per request on a compat route, its events as a JSON array.
        CREATE TABLE runs (
            request_id        TEXT PRIMARY KEY,
            started_at        REAL    NOT NULL,
            route             TEXT    NOT NULL,
            method            TEXT    NOT NULL,
            status            INTEGER NOT NULL,
            outcome           TEXT    NOT NULL,
            error_code        TEXT,
            model_requested   TEXT,
            agent             TEXT,
            upstream_route    TEXT,
            stream            INTEGER NOT NULL,
            ttfb_ms           REAL,
            duration_ms       REAL    NOT NULL,
            prompt_tokens     INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            tool_calls        INTEGER NOT NULL,
            session_id        TEXT,
            api_key_prefix    TEXT,
            client_ua         TEXT,
            client_ip         TEXT,
            events            TEXT    NOT NULL,
            content           TEXT
        );
        -- newest first, overall and by each filter the API and CLI offer
        CREATE INDEX runs_started ON runs (started_at DESC, request_id DESC);
        CREATE INDEX runs_route ON runs (route, started_at DESC);
        CREATE INDEX runs_status ON runs (status, started_at DESC);
        CREATE INDEX runs_agent ON runs (agent, started_at DESC);
        """,
    ),
    Migration(
        3,
        "sessions",
        """
        -- Server-side sessions (SPEC §1): a conversation kept by bmo, named by the client and
        -- scoped to the API key that made it.
        CREATE TABLE sessions (
            id         TEXT    PRIMARY KEY,      -- ses_… ; what the ledger's runs.session_id holds
            owner      TEXT    NOT NULL,         -- the API key's prefix, or "anonymous"
            name       TEXT    NOT NULL,         -- X-BMO-Session / X-OpenWebUI-Chat-Id / user
            source     TEXT    NOT NULL,         -- which of those named it
            agent      TEXT    NOT NULL,         -- a session is bound to one agent
            created_at REAL    NOT NULL,
            updated_at REAL    NOT NULL,
            turns      INTEGER NOT NULL DEFAULT 0
        );
        CREATE UNIQUE INDEX sessions_owner_name ON sessions (owner, name);
        CREATE INDEX sessions_updated ON sessions (updated_at);
        -- The transcript: user, assistant and tool turns in order (never the agent's system prompt).
        CREATE TABLE session_messages (
            session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            seq        INTEGER NOT NULL,
            message    TEXT    NOT NULL,         -- JSON
            PRIMARY KEY (session_id, seq)
        ) WITHOUT ROWID;
        """,
    ),
    Migration(
        4,
        "responses",
        """
        -- Stored OpenAI Responses objects (SPEC §4b): what `previous_response_id` continues and
        -- GET /v1/responses/{id} returns. A tree: many responses may continue one.
        CREATE TABLE responses (
            id          TEXT    PRIMARY KEY,     -- resp_… ; the id every event of its stream carried
            owner       TEXT    NOT NULL,        -- the API key's prefix, or "anonymous"
            previous_id TEXT,                    -- the response this one continues
            agent       TEXT    NOT NULL,
            created_at  REAL    NOT NULL,
            input       TEXT    NOT NULL,        -- JSON: this request's new turns (bmo's messages)
            output      TEXT    NOT NULL,        -- JSON: the answer as one assistant message
            body        TEXT    NOT NULL         -- JSON: the Response object as the client got it
        );
        CREATE INDEX responses_created ON responses (created_at);
        CREATE INDEX responses_owner ON responses (owner, created_at DESC);
        """,
    ),
    Migration(
        5,
        "runs_client",
        """
        -- The client's short name beside the raw user-agent (bmo.clients: "claude-code",
        -- "open-webui", "openai-python", …), so that posture's top clients and `bmo runs list
        -- --client` mean something. NULL for the runs recorded before.
        ALTER TABLE runs ADD COLUMN client TEXT;
        """,
    ),
    Migration(
        6,
        "workers",
        """
        -- `bmo serve --workers N` (SPEC §11): what the N processes on one port share.
        -- Leases: a name (`session:ses_…`, `prune`) held by one owner (a process) until
        -- `expires_at`, renewed while the holder lives; a holder that dies frees it on expiry.
        CREATE TABLE leases (
            name       TEXT PRIMARY KEY,
            owner      TEXT NOT NULL,
            expires_at REAL NOT NULL             -- unix seconds
        ) WITHOUT ROWID;
        -- One row per worker slot of the running server, published by its worker about once a
        -- second: what posture and /metrics sum. A worker restarted on a slot continues its
        -- counters, so they stay monotonic. The supervisor empties the table when it starts.
        CREATE TABLE workers (
            slot       INTEGER PRIMARY KEY,
            pid        INTEGER NOT NULL,
            started    REAL    NOT NULL,
            updated_at REAL    NOT NULL,
            restarts   INTEGER NOT NULL DEFAULT 0,  -- worker processes that took this slot over
            counters   TEXT    NOT NULL,            -- JSON: bmo.metrics.Metrics.to_json()
            live       TEXT    NOT NULL             -- JSON: in_flight, persistence
        );
        """,
    ),
)

BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
)
"""


def latest_version() -> int:
    return max((m.version for m in MIGRATIONS), default=0)


def split_statements(sql: str) -> list[str]:
    """Split a script into single statements (sqlite3's `execute` takes one at a time, and
    `executescript` would commit the surrounding transaction)."""
    out: list[str] = []
    buf = ""
    for part in sql.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            stmt = buf.strip()
            if _has_code(stmt):
                out.append(stmt)
            buf = ""
    if _has_code(buf.rstrip(";")):
        out.append(buf.rstrip(";").strip())
    return out


def _has_code(stmt: str) -> bool:
    lines = [ln.split("--", 1)[0].strip() for ln in stmt.splitlines()]
    return any(ln and ln != ";" for ln in lines)


async def applied_versions(conn: aiosqlite.Connection) -> set[int]:
    cur = await conn.execute("SELECT version FROM schema_migrations")
    return {int(r[0]) for r in await cur.fetchall()}


async def migrate(conn: aiosqlite.Connection, *, target: int | None = None) -> list[int]:
    """Apply pending migrations up to `target` (default: all) on an aiosqlite connection opened
    with isolation_level=None. Returns the versions applied now."""
    target = latest_version() if target is None else target
    await conn.execute(BOOTSTRAP)
    await conn.execute("BEGIN IMMEDIATE")
    try:
        done = await applied_versions(conn)
        unknown = sorted(done - {m.version for m in MIGRATIONS})  # a gap this build lacks counts too
        if unknown:
            raise Unavailable(
                f"bmo.db has schema version {unknown[-1]}, which this bmo does not know (it knows up to "
                f"{latest_version()}); it was written by a newer bmo. Upgrade bmo, or point BMO_HOME elsewhere."
            )
        applied: list[int] = []
        # In version order, and any version not yet applied, wherever it sits: a file that got 5
        # from a build that lacked 4 (two issues landing apart) still gets 4 when it appears.
        for m in sorted(MIGRATIONS, key=lambda m: m.version):
            if m.version in done or m.version > target:
                continue
            for stmt in split_statements(m.sql):
                await conn.execute(stmt)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (m.version, m.name, time.time()),
            )
            applied.append(m.version)
        await conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            await conn.execute("ROLLBACK")
        raise
    return applied
