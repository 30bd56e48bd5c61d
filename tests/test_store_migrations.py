"""bmo.db's schema: from an empty file, and from every earlier version, to the same schema.

Adding migration N+1 needs no change here: the "every earlier version" test runs for each
version below the latest, and `SEEDS` may give a version some rows that must survive the rest
of the migrations.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from bmo.errors import Unavailable
from bmo.store import pg_migrations
from bmo.store.backend import Target, is_url, make_store, open_store
from bmo.store.db import Database
from bmo.store.migrations import MIGRATIONS, latest_version, migrate, split_statements

# version -> rows written right after that version, which must still be there at the latest one
SEEDS: dict[int, tuple[str, str]] = {
    # (insert, query that must then return at least one row)
    1: (
        "INSERT INTO api_keys (name, prefix, hash, scopes, created_at) VALUES ('old', 'sk-bmo-old00', 'ab', 'chat', 1)",
        "SELECT 1 FROM api_keys WHERE name = 'old' AND scopes = 'chat'",
    ),
}


def schema(path: Path) -> list[tuple[str, str, str]]:
    """Every table, index and trigger with its SQL, whitespace-normalised."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
        ).fetchall()
    finally:
        conn.close()
    return [(t, n, " ".join((s or "").split())) for t, n, s in rows]


async def open_db(path: Path) -> Database:
    db = Database(path)
    await db.open()
    return db


async def test_from_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "bmo.db"
    path.touch()  # an empty file is a valid, empty SQLite database
    db = await open_db(path)
    try:
        rows = await db.fetchall("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [(r[0], r[1]) for r in rows] == [(m.version, m.name) for m in MIGRATIONS]
        assert (await db.fetchone("PRAGMA journal_mode"))[0] == "wal"  # type: ignore[index]
        assert (await db.fetchone("PRAGMA foreign_keys"))[0] == 1  # type: ignore[index]
        assert (await db.fetchone("PRAGMA busy_timeout"))[0] >= 1000  # type: ignore[index]
        assert (await db.fetchone("SELECT value FROM counters WHERE name = 'key_epoch'"))[0] == 0  # type: ignore[index]
    finally:
        await db.close()


async def test_from_no_file_and_folder_at_all(tmp_path: Path) -> None:
    path = tmp_path / "new" / "home" / "bmo.db"
    db = await open_db(path)
    await db.close()
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("start", range(latest_version()))
async def test_from_every_earlier_version(tmp_path: Path, start: int) -> None:
    fresh = tmp_path / "fresh.db"
    await (await open_db(fresh)).close()

    old = tmp_path / "old.db"
    conn = await aiosqlite.connect(old, isolation_level=None)
    try:
        for version in range(1, start + 1):
            await migrate(conn, target=version)
            if version in SEEDS:
                await conn.execute(SEEDS[version][0])
        assert await migrate(conn, target=start) == []
    finally:
        await conn.close()

    db = await open_db(old)
    try:
        rows = await db.fetchall("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
        for version, (_, check) in SEEDS.items():
            if version <= start:
                assert await db.fetchall(check), f"rows written at version {version} did not survive"
    finally:
        await db.close()
    assert schema(old) == schema(fresh)


def test_migrations_are_numbered_append_only() -> None:
    versions = [m.version for m in MIGRATIONS]
    assert versions == list(range(1, len(MIGRATIONS) + 1)), "versions must be 1..N, in order, no gaps"
    assert len({m.name for m in MIGRATIONS}) == len(MIGRATIONS)
    for m in MIGRATIONS:
        assert split_statements(m.sql), f"migration {m.version} has no statements"
        for stmt in split_statements(m.sql):
            assert sqlite3.complete_statement(stmt)


async def test_reopening_applies_nothing_and_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "bmo.db"
    db = await open_db(path)
    async with db.transaction() as conn:
        await conn.execute(SEEDS[1][0])
    await db.close()
    db = await open_db(path)
    try:
        assert await migrate(db.conn) == []
        assert await db.fetchall(SEEDS[1][1])
    finally:
        await db.close()


def _versions(target: Target) -> list[int]:
    return [m.version for m in (pg_migrations.MIGRATIONS if is_url(target) else MIGRATIONS)]


async def test_many_openers_at_once_migrate_once(store_target: Target) -> None:
    """Workers, CLI commands or replicas starting together (SQLite's write lock; PostgreSQL's advisory lock)."""
    dbs = [make_store(store_target, pool_size=2) for _ in range(12)]
    await asyncio.gather(*(d.open() for d in dbs))
    try:
        rows = await dbs[0].fetchall("SELECT version FROM schema_migrations")
        assert sorted(r[0] for r in rows) == _versions(store_target)
        await dbs[1].close()
        await dbs[1].open()  # reopening applies nothing
        assert len(await dbs[1].fetchall("SELECT version FROM schema_migrations")) == len(rows)
    finally:
        for d in dbs:
            await d.close()


async def test_a_store_from_a_newer_bmo_is_refused(store_target: Target) -> None:
    async with open_store(store_target) as db:
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO schema_migrations VALUES (?, 'future', 0)", (max(_versions(store_target)) + 1,)
            )
    with pytest.raises(Unavailable) as e:
        async with open_store(store_target):
            pass
    assert "newer" in e.value.message and e.value.code == "store_unavailable"


async def test_a_path_that_cannot_be_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("x")
    with pytest.raises(Unavailable) as e:
        await open_db(tmp_path / "not-a-folder" / "bmo.db")
    assert "not-a-folder" in e.value.message
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(Unavailable) as e:
        await open_db(garbage)
    assert str(garbage) in e.value.message


def test_split_statements() -> None:
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE t (a TEXT DEFAULT ';');
    INSERT INTO t VALUES ('x;y'); INSERT INTO t VALUES ('z');
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN
        UPDATE t SET a = a || ';';
    END;
    -- trailing comment
    """
    stmts = split_statements(sql)
    assert len(stmts) == 4
    assert stmts[1] == "INSERT INTO t VALUES ('x;y');"
    assert stmts[3].startswith("CREATE TRIGGER") and stmts[3].endswith("END;")
    conn = sqlite3.connect(":memory:")
    for s in stmts:
        conn.execute(s)
    conn.execute("INSERT INTO t VALUES ('w')")  # the trigger fires
    assert [r[0] for r in conn.execute("SELECT a FROM t ORDER BY rowid")] == ["x;y;", "z;", "w;"]


async def test_a_version_merged_below_one_already_applied_is_applied_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two issues that each add a migration may land apart: a file migrated by a build that has
    version N+1 but not N still gets N when a build has both (and a build without N+1 refuses the
    file, as from a newer bmo)."""
    import bmo.store.migrations as m

    if latest_version() < 2:
        pytest.skip("needs two migrations")
    gap = latest_version() - 1
    path = tmp_path / "bmo.db"
    monkeypatch.setattr(m, "MIGRATIONS", tuple(x for x in MIGRATIONS if x.version != gap))
    await (await open_db(path)).close()
    conn = sqlite3.connect(path)
    assert gap not in {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    conn.close()
    monkeypatch.setattr(m, "MIGRATIONS", tuple(reversed(MIGRATIONS)))  # any order in the tuple
    db = await open_db(path)
    try:
        rows = await db.fetchall("SELECT version FROM schema_migrations ORDER BY version")
        assert [r[0] for r in rows] == [x.version for x in MIGRATIONS]
    finally:
        await db.close()
    fresh = tmp_path / "fresh.db"
    monkeypatch.setattr(m, "MIGRATIONS", MIGRATIONS)
    await (await open_db(fresh)).close()
    assert schema(path) == schema(fresh)
    monkeypatch.setattr(m, "MIGRATIONS", tuple(x for x in MIGRATIONS if x.version != gap))
    with pytest.raises(Unavailable) as e:
        await open_db(path)
    assert "newer" in e.value.message


async def test_runs_have_a_client_column(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "bmo.db")
    try:
        cols = [r[1] for r in await db.fetchall("PRAGMA table_info(runs)")]
        assert cols[-1] == "client"  # migration 5, added at the end
        assert (await db.fetchone("SELECT name FROM schema_migrations WHERE version = 5"))[0] == "runs_client"  # type: ignore[index]
    finally:
        await db.close()
