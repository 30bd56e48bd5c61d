"""Checking API keys on the hot path without touching the disk (SPEC §7).

`CachedKeyVerifier.verify(secret)` answers from memory for every key it has seen: SHA-256 the
secret, one dict lookup, compare the cached expiry with the clock, note the use. Only a key it
has never seen costs one database read; concurrent requests with the same new key share that
read, and the answer (good, unknown, revoked) is cached too, so a client hammering with a bad
key does not hammer the database.

Keeping the cache true: every create and revoke, from this process or another (the CLI), bumps
the `key_epoch` counter. `run()` (started by the runtime) polls it every `POLL_S` and drops both
caches when it moves, so a revoke or a new key takes effect within about a second without a
restart. A lookup that was already in flight when the caches were dropped does not write its
(possibly stale) answer back.

`last_used_at` is kept in memory and written in one transaction every `FLUSH_S` and at close:
real clients send many requests a second, and a write per request would serialise them on
SQLite's write lock.

Dict lookups compare SHA-256 digests, not secrets, so their timing says nothing about any secret;
the one place a stored hash is compared with a presented one (`KeyStore.find`) uses
`hmac.compare_digest`.

A shared store (PostgreSQL, `db.remote`) fails closed: when a poll cannot reach it, the caches
are dropped, so every key check asks the database and gets 503 `store_unavailable` until it is
back; another replica may have revoked a key meanwhile, and this one could not know.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from bmo.errors import KEY_UNKNOWN, AuthenticationError, BmoError
from bmo.store.keys import KeyRecord, KeyStore, hash_secret, is_well_formed

log = logging.getLogger("bmo.store")

T = TypeVar("T")

POLL_S = 1.0  # how soon a revoke made by another process takes effect
FLUSH_S = 5.0  # how stale `last used` in `bmo api-key list` may be while the server runs
MAX_CACHED = 10_000  # per cache; a full cache forgets its oldest entry (bounds memory under a key flood)

MALFORMED = "The API key is malformed: bmo keys look like `sk-bmo-` followed by 43 characters."
UNKNOWN = KEY_UNKNOWN
REVOKED = "The API key has been revoked."
EXPIRED = "The API key has expired."


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """Who a valid key belongs to: what the server turns into its Principal."""

    name: str
    prefix: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Known:
    key_id: int
    identity: KeyIdentity
    expires_at: float | None


_Answer = _Known | str  # a known key, or the message for a key that must be refused


class CachedKeyVerifier:
    def __init__(self, store: KeyStore, *, clock: Callable[[], float] = time.time, max_cached: int = MAX_CACHED):
        self.store = store
        self._clock = clock
        self._max = max_cached
        self._known: dict[str, _Known] = {}  # sha256 -> a key that exists and is not revoked
        self._refused: dict[str, str] = {}  # sha256 -> UNKNOWN or REVOKED
        self._inflight: dict[str, asyncio.Future[_Answer]] = {}
        self._generation = 0  # bumped by invalidate(); an older lookup must not fill the cache
        self._epoch: int | None = None
        self._last_used: dict[int, float] = {}
        self.lookups = 0  # database reads made so far (a statistic; tests read it)
        self._failing: str | None = None

    async def start(self) -> None:
        self._epoch = await self.store.epoch()

    async def verify(self, secret: str) -> KeyIdentity:
        """The identity behind `secret`; AuthenticationError (malformed, unknown, revoked, expired) otherwise."""
        if not is_well_formed(secret):
            raise AuthenticationError(MALFORMED)
        key_hash = hash_secret(secret)
        known = self._known.get(key_hash)
        if known is None:
            refused = self._refused.get(key_hash)
            if refused is None:
                answer = await self._lookup(key_hash)
                if isinstance(answer, str):
                    refused = answer
                else:
                    known = answer
            if refused is not None:
                raise AuthenticationError(refused)
        assert known is not None
        now = self._clock()
        if known.expires_at is not None and known.expires_at <= now:
            raise AuthenticationError(EXPIRED)
        self._last_used[known.key_id] = now
        return known.identity

    def invalidate(self) -> None:
        self._generation += 1
        self._known.clear()
        self._refused.clear()
        self._inflight.clear()

    async def poll(self) -> bool:
        """Drop the caches if the keys changed since the last poll. True when they did."""
        epoch = await self.store.epoch()
        if epoch == self._epoch:
            return False
        self._epoch = epoch
        self.invalidate()
        return True

    async def flush(self) -> int:
        """Write the pending last-used times in one transaction; how many keys it updated."""
        batch, self._last_used = self._last_used, {}
        if not batch:
            return 0
        try:
            await self.store.touch(batch)
        except BaseException:
            for key_id, ts in batch.items():  # keep them for the next try
                self._last_used[key_id] = max(ts, self._last_used.get(key_id, ts))
            raise
        return len(batch)

    async def run(self, poll_s: float = POLL_S, flush_s: float = FLUSH_S) -> None:
        """The background task: poll the epoch, flush last-used times. Runs until cancelled."""
        loop = asyncio.get_running_loop()
        next_flush = loop.time() + flush_s
        while True:
            await asyncio.sleep(poll_s)
            try:
                await self.poll()
                if loop.time() >= next_flush:
                    next_flush = loop.time() + flush_s
                    await self.flush()
            except BmoError as e:
                if e.message != self._failing:  # once per new failure, not once a second
                    log.warning("API key store: %s", e.message)
                self._failing = e.message
                if getattr(getattr(self.store, "db", None), "remote", False):
                    self.invalidate()
            else:
                if self._failing is not None:
                    log.info("API key store: working again")
                self._failing = None

    async def close(self) -> None:
        try:
            await self.flush()
        except BmoError as e:
            log.warning("API key store: last-used times not saved: %s", e.message)

    async def _lookup(self, key_hash: str) -> _Answer:
        fut = self._inflight.get(key_hash)
        if fut is None:
            fut = asyncio.ensure_future(self._load(key_hash, self._generation))
            self._inflight[key_hash] = fut
            fut.add_done_callback(functools.partial(self._landed, key_hash))
        # shield: one cancelled request (client gone) must not cancel the read others wait on
        return await asyncio.shield(fut)

    def _landed(self, key_hash: str, fut: asyncio.Future[_Answer]) -> None:
        if self._inflight.get(key_hash) is fut:
            del self._inflight[key_hash]
        if not fut.cancelled():
            fut.exception()  # retrieved, even if every waiter went away

    async def _load(self, key_hash: str, generation: int) -> _Answer:
        self.lookups += 1
        rec = await self.store.find(key_hash)
        answer = _answer(rec)
        if generation == self._generation:
            if isinstance(answer, str):
                _put(self._refused, key_hash, answer, self._max)
            else:
                _put(self._known, key_hash, answer, self._max)
        return answer


def _put(cache: dict[str, T], key: str, value: T, limit: int) -> None:
    if len(cache) >= limit:
        cache.pop(next(iter(cache)))  # the oldest entry
    cache[key] = value


def _answer(rec: KeyRecord | None) -> _Answer:
    if rec is None:
        return UNKNOWN
    if rec.revoked_at is not None:
        return REVOKED
    return _Known(rec.id, KeyIdentity(rec.name, rec.prefix, rec.scopes), rec.expires_at)
