"""API keys in the store and the server's in-memory verifier, with no HTTP in between.

The store tests run against both backends (conftest's `store_target`: SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bmo.errors import AuthenticationError, InvalidRequest, NotFound
from bmo.store.backend import Db as Database
from bmo.store.backend import Target, make_store
from bmo.store.keys import (
    KeyRecord,
    KeyStore,
    display_prefix,
    hash_secret,
    is_well_formed,
    new_secret,
    parse_expires,
    parse_name,
    parse_scopes,
)
from bmo.store.verifier import EXPIRED, MALFORMED, REVOKED, UNKNOWN, CachedKeyVerifier

NOW = 1_800_000_000.0


@pytest.fixture
async def db(store_target: Target) -> AsyncIterator[Database]:
    d = make_store(store_target)
    await d.open()
    yield d
    await d.close()


@pytest.fixture
async def other(store_target: Target, db: Database) -> AsyncIterator[KeyStore]:
    """A second connection to the same store: what `bmo api-key …` (or another replica) does while a server runs."""
    d = make_store(store_target)
    await d.open()
    yield KeyStore(d)
    await d.close()


# --- what users type ------------------------------------------------------------------------


def test_secret_shape_hash_and_prefix() -> None:
    s = new_secret()
    assert s.startswith("sk-bmo-") and len(s) == 50 and is_well_formed(s)
    assert new_secret() != s
    assert hash_secret(s) == hashlib.sha256(s.encode()).hexdigest()
    assert display_prefix(s) == s[:12]
    for bad in ("", "sk-bmo-", "sk-bmo-short", s + "x", s[:-1] + "!", "Bearer " + s, "sk-xyz-" + s[7:]):
        assert not is_well_formed(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", NOW + 30 * 86400),
        ("12h", NOW + 12 * 3600),
        ("90m", NOW + 90 * 60),
        ("2w", NOW + 14 * 86400),
        ("2027-06-01", datetime(2027, 6, 1, tzinfo=UTC).timestamp()),
        ("2027-06-01T12:30", datetime(2027, 6, 1, 12, 30, tzinfo=UTC).timestamp()),
        ("2027-06-01T12:30:00Z", datetime(2027, 6, 1, 12, 30, tzinfo=UTC).timestamp()),
        ("2027-06-01T12:30:00+02:00", datetime(2027, 6, 1, 10, 30, tzinfo=UTC).timestamp()),
        ("never", None),
        (None, None),
    ],
)
def test_parse_expires(text: str | None, expected: float | None) -> None:
    assert parse_expires(text, now=NOW) == expected


@pytest.mark.parametrize(("text", "why"), [("0d", "positive"), ("2020-01-01", "past"), ("soon", "duration"),
                                           ("30x", "duration"), ("-5d", "duration")])  # fmt: skip
def test_parse_expires_refuses(text: str, why: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_expires(text, now=NOW)
    assert why in e.value.message


def test_parse_scopes_and_names() -> None:
    assert parse_scopes("chat,ledger") == ("chat", "ledger")
    assert parse_scopes(" Ledger , CHAT ") == ("chat", "ledger")
    assert parse_scopes("admin") == ("admin",)
    for bad in ("", "chat,root", "write"):
        with pytest.raises(InvalidRequest):
            parse_scopes(bad)
    assert parse_name(" ci-bot.2 ") == "ci-bot.2"
    for bad in ("", "has space", "-dash", "x" * 65, "sk-bmo-abcde", "naïve"):
        with pytest.raises(InvalidRequest):
            parse_name(bad)


# --- the table ------------------------------------------------------------------------------


async def test_create_list_revoke(db: Database) -> None:
    ks = KeyStore(db)
    assert await ks.epoch() == 0
    a = await ks.create("alpha", ["chat"])
    b = await ks.create("beta", ["ledger", "chat"], expires_at=time.time() + 3600)
    assert await ks.epoch() == 2
    assert a.secret not in repr(a) and a.secret[12:] not in repr(a)  # a repr or a log line never shows it
    assert b.record.scope_list() == ["chat", "ledger"]
    listed = await ks.list()
    assert [(r.name, r.prefix, r.state()) for r in listed] == [
        ("alpha", a.secret[:12], "active"),
        ("beta", b.secret[:12], "active"),
    ]
    revoked = await ks.revoke("alpha")
    assert revoked.name == "alpha" and revoked.state() == "revoked"
    revoked = await ks.revoke(b.record.prefix)
    assert revoked.name == "beta"
    assert await ks.epoch() == 4
    assert [r.state() for r in await ks.list()] == ["revoked", "revoked"]
    with pytest.raises(NotFound, match="already revoked"):
        await ks.revoke("alpha")
    with pytest.raises(NotFound, match="No live key"):
        await ks.revoke("gamma")


async def test_revoke_by_whole_secret_never_echoes_it(db: Database) -> None:
    ks = KeyStore(db)
    k = await ks.create("leaked", ["chat"])
    assert (await ks.revoke(k.secret)).name == "leaked"
    with pytest.raises(NotFound) as e:
        await ks.revoke(k.secret)
    assert k.secret not in e.value.message and "already revoked" in e.value.message


async def test_names_unique_among_live_keys(db: Database) -> None:
    ks = KeyStore(db)
    await ks.create("ci", ["chat"])
    with pytest.raises(InvalidRequest, match="already exists"):
        await ks.create("ci", ["chat"])
    await ks.revoke("ci")
    await ks.create("ci", ["admin"])  # a revoked key's name is free again
    soon = await ks.create("soon", ["chat"], expires_at=time.time() + 0.05)
    await asyncio.sleep(0.1)
    assert soon.record.state() == "expired"
    with pytest.raises(InvalidRequest, match="expired"):
        await ks.create("soon", ["chat"])
    with pytest.raises(InvalidRequest, match="future"):
        await ks.create("past", ["chat"], expires_at=time.time() - 1)


async def test_ambiguous_prefix_asks_for_the_name(db: Database) -> None:
    ks = KeyStore(db)
    async with db.transaction() as conn:
        for name in ("one", "two"):
            await conn.execute(
                "INSERT INTO api_keys (name, prefix, hash, scopes, created_at) "
                "VALUES (?, 'sk-bmo-same0', ?, 'chat', 1)",
                (name, name * 32),
            )
    with pytest.raises(InvalidRequest, match="revoke by name"):
        await ks.revoke("sk-bmo-same0")
    assert (await ks.revoke("two")).name == "two"
    assert (await ks.revoke("sk-bmo-same0")).name == "one"


async def test_ensure_first(db: Database) -> None:
    ks = KeyStore(db)
    first = await ks.ensure_first()
    assert first is not None and first.record.name == "first" and first.record.scope_list() == ["chat", "ledger"]
    assert await ks.ensure_first() is None  # a usable key exists: nothing minted
    await ks.revoke("first")
    again = await ks.ensure_first()  # no usable key left: the operator gets a fresh one
    assert again is not None and again.record.name == "first" and again.secret != first.secret
    # a live but expired `first` keeps its name; the new one takes the next
    async with db.transaction() as conn:
        await conn.execute("UPDATE api_keys SET expires_at = 1 WHERE name = 'first' AND revoked_at IS NULL")
    third = await ks.ensure_first()
    assert third is not None and third.record.name == "first-2"


async def test_touch_writes_last_used_in_one_batch(db: Database) -> None:
    ks = KeyStore(db)
    a = await ks.create("a", ["chat"])
    b = await ks.create("b", ["chat"])
    await ks.touch({a.record.id: 100.0, b.record.id: 200.0})
    await ks.touch({a.record.id: 50.0})  # an older time never moves it back
    got = {r.name: r.last_used_at for r in await ks.list()}
    assert got == {"a": 100.0, "b": 200.0}


async def test_the_secret_is_not_in_the_file(db: Database, tmp_path: Path) -> None:
    if db.dialect.name != "sqlite":
        pytest.skip("a file's bytes: SQLite only")
    k = await KeyStore(db).create("hidden", ["chat"])
    blob = db_bytes(tmp_path)
    assert hash_secret(k.secret).encode() in blob  # we are looking at the right bytes
    assert k.secret.encode() not in blob and k.secret[12:].encode() not in blob


def db_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("bmo.db"))


# --- the verifier ---------------------------------------------------------------------------


class CountingStore(KeyStore):
    """The real store, counting reads and able to hold one back (to test races)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.finds = 0
        self.gate: asyncio.Event | None = None

    async def find(self, key_hash: str) -> KeyRecord | None:
        self.finds += 1
        rec = await super().find(key_hash)
        if self.gate is not None:
            await self.gate.wait()
        return rec


async def verifier(db: Database, **kw: object) -> tuple[CachedKeyVerifier, CountingStore]:
    store = CountingStore(db)
    v = CachedKeyVerifier(store, **kw)  # type: ignore[arg-type]
    await v.start()
    return v, store


async def refused(v: CachedKeyVerifier, secret: str) -> str:
    with pytest.raises(AuthenticationError) as e:
        await v.verify(secret)
    assert e.value.code == "invalid_api_key" and e.value.status == 401
    assert secret not in e.value.message and secret[:12] not in e.value.message  # says the class, nothing more
    return e.value.message


async def test_verify_classes(db: Database) -> None:
    v, store = await verifier(db)
    k = await store.create("k", ["chat"])
    ident = await v.verify(k.secret)
    assert (ident.name, ident.prefix, ident.scopes) == ("k", k.secret[:12], frozenset({"chat"}))
    assert await refused(v, "not-a-key") == MALFORMED
    assert await refused(v, "sk-bmo-" + "A" * 43) == UNKNOWN
    await store.revoke("k")
    await v.poll()
    assert await refused(v, k.secret) == REVOKED


async def test_hot_path_does_not_touch_the_disk(db: Database) -> None:
    v, store = await verifier(db)
    k = await store.create("k", ["chat"])
    unknown = "sk-bmo-" + "B" * 43
    await v.verify(k.secret)
    await refused(v, unknown)
    assert store.finds == 2
    await db.close()  # from here on any read would fail with store_unavailable
    for _ in range(100):
        await v.verify(k.secret)
        assert await refused(v, unknown) == UNKNOWN  # a bad key is not a database read either
    assert await refused(v, "garbage") == MALFORMED
    assert store.finds == 2


async def test_a_key_made_or_revoked_elsewhere_is_noticed_on_the_next_poll(db: Database, other: KeyStore) -> None:
    v, store = await verifier(db)
    assert await refused(v, new_secret()) == UNKNOWN
    k = await other.create("late", ["chat"])  # no poll yet: a key never seen is looked up at once
    assert (await v.verify(k.secret)).name == "late"
    await other.revoke("late")
    assert (await v.verify(k.secret)).name == "late"  # cached until the poll...
    assert await v.poll() is True
    assert await refused(v, k.secret) == REVOKED  # ...and refused right after it
    assert await v.poll() is False


async def test_negative_cache_is_dropped_when_keys_change(db: Database, other: KeyStore) -> None:
    v, store = await verifier(db)
    k = await other.create("x", ["chat"])
    await store.revoke("x")
    await v.poll()
    assert await refused(v, k.secret) == REVOKED  # now a cached refusal
    async with other.db.transaction() as conn:  # un-revoke behind its back, then bump the epoch
        await conn.execute("UPDATE api_keys SET revoked_at = NULL")
        await conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'key_epoch'")
    assert await refused(v, k.secret) == REVOKED
    await v.poll()
    assert (await v.verify(k.secret)).name == "x"


async def test_expiry_is_checked_in_memory_on_every_request(db: Database) -> None:
    clock = [time.time()]
    v, store = await verifier(db, clock=lambda: clock[0])
    k = await store.create("short", ["chat"], expires_at=clock[0] + 60)
    await v.verify(k.secret)
    clock[0] += 59
    await v.verify(k.secret)
    clock[0] += 2
    assert await refused(v, k.secret) == EXPIRED
    assert store.finds == 1


async def test_concurrent_first_uses_share_one_read(db: Database) -> None:
    v, store = await verifier(db)
    k = await store.create("busy", ["chat"])
    store.gate = asyncio.Event()
    tasks = [asyncio.ensure_future(v.verify(k.secret)) for _ in range(50)]
    await asyncio.sleep(0.05)
    store.gate.set()
    got = await asyncio.gather(*tasks)
    assert {g.name for g in got} == {"busy"} and store.finds == 1


async def test_a_lookup_in_flight_during_a_change_is_not_cached(db: Database) -> None:
    v, store = await verifier(db)
    k = await store.create("racy", ["chat"])
    store.gate = asyncio.Event()
    pending = asyncio.ensure_future(v.verify(k.secret))
    await asyncio.sleep(0.05)  # the read is done, its answer held back
    await store.revoke("racy")
    assert await v.poll() is True
    store.gate.set()
    assert (await pending).name == "racy"  # it read before the revoke; that answer is not kept
    store.gate = None
    assert await refused(v, k.secret) == REVOKED
    assert store.finds == 2


async def test_last_used_is_batched(db: Database) -> None:
    v, store = await verifier(db)
    a = await store.create("a", ["chat"])
    b = await store.create("b", ["chat"])
    for _ in range(100):
        await v.verify(a.secret)
        await v.verify(b.secret)
    assert [r.last_used_at for r in await store.list()] == [None, None]  # no write per request
    assert await v.flush() == 2  # one transaction for both keys
    assert all(r.last_used_at is not None for r in await store.list())
    assert await v.flush() == 0


async def test_background_task_notices_a_revoke(db: Database, other: KeyStore) -> None:
    v, store = await verifier(db)
    k = await store.create("bg", ["chat"])
    await v.verify(k.secret)
    task = asyncio.ensure_future(v.run(poll_s=0.01, flush_s=0.02))
    try:
        await other.revoke("bg")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                await v.verify(k.secret)
            except AuthenticationError as e:
                assert e.message == REVOKED
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the revoke was not noticed")
        rows = await store.list()
        deadline = time.monotonic() + 10
        while rows[0].last_used_at is None and time.monotonic() < deadline:  # the flush ran, too
            await asyncio.sleep(0.01)
            rows = await store.list()
        assert rows[0].last_used_at is not None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
