"""Stored API keys (SPEC §7): minting, parsing what users type, and the `api_keys` rows.

A key is `sk-bmo-` + `secrets.token_urlsafe(32)` (32 random bytes). bmo keeps only its SHA-256
(hex) and a 12-character display prefix; the secret exists in the caller's hands and nowhere
else. A plain hash is enough here: the secret has 256 bits of entropy, so there is nothing to
brute-force, and the check must stay cheap. Hashes are compared with `hmac.compare_digest`.

Every create and revoke bumps the `key_epoch` counter in the same transaction, which is how a
running server learns, within a poll, that another process changed the keys.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from bmo.errors import InvalidRequest, NotFound
from bmo.store.backend import Db, Row, Tx

KEY_PREFIX = "sk-bmo-"
DISPLAY_LEN = 12  # "sk-bmo-" + 5 characters: enough to tell keys apart in a list, useless to guess
SCOPES = ("chat", "ledger", "admin")  # admin allows everything
FIRST_KEY_NAME = "first"
FIRST_KEY_SCOPES = ("chat", "ledger")

_SECRET_RE = re.compile(r"sk-bmo-[A-Za-z0-9_-]{43}")  # token_urlsafe(32) is 43 characters
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DURATION_RE = re.compile(r"(\d+)\s*([mhdw])")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_LEN]


def is_well_formed(secret: str) -> bool:
    """True for something bmo could have minted; anything else is `malformed` without a lookup."""
    return _SECRET_RE.fullmatch(secret) is not None


def parse_name(name: str) -> str:
    name = name.strip()
    if not _NAME_RE.fullmatch(name):
        raise InvalidRequest(
            f"A key name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit; got {name!r}.",
            param="name",
        )
    if name.lower().startswith("sk-"):
        raise InvalidRequest("A key name must not start with 'sk-' (that is how prefixes look).", param="name")
    return name


def parse_scopes(text: str) -> tuple[str, ...]:
    """'chat,ledger' -> ('chat', 'ledger'): known scopes only, in canonical order."""
    given = {s.strip().lower() for s in re.split(r"[,\s]+", text) if s.strip()}
    unknown = sorted(given - set(SCOPES))
    if unknown:
        raise InvalidRequest(
            f"Unknown scope {', '.join(repr(u) for u in unknown)}; the scopes are {', '.join(SCOPES)}.",
            param="scopes",
        )
    if not given:
        raise InvalidRequest(f"Give at least one scope ({', '.join(SCOPES)}).", param="scopes")
    return tuple(s for s in SCOPES if s in given)


def parse_expires(text: str | None, now: float | None = None) -> float | None:
    """'30d', '12h', '90m', '2w', an ISO date ('2026-01-31', midnight UTC) or date-time (UTC
    unless it has an offset), or 'never'. Returns unix seconds; must lie in the future."""
    if text is None or text.strip().lower() in ("", "never", "none"):
        return None
    now = time.time() if now is None else now
    raw = text.strip()
    m = _DURATION_RE.fullmatch(raw.lower())
    if m:
        amount = int(m.group(1))
        if amount <= 0:
            raise InvalidRequest(f"--expires must be a positive duration, got {raw!r}.", param="expires")
        return now + amount * _UNITS[m.group(2)]
    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            at = datetime(d.year, d.month, d.day, tzinfo=UTC)
        else:
            at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
    except ValueError:
        raise InvalidRequest(
            f"--expires takes a duration such as 30d, 12h, 90m or 2w, or an ISO date such as 2026-01-31; got {raw!r}.",
            param="expires",
        ) from None
    ts = at.timestamp()
    if ts <= now:
        raise InvalidRequest(f"--expires {raw} is in the past.", param="expires")
    return ts


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None

    def state(self, now: float | None = None) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (time.time() if now is None else now):
            return "expired"
        return "active"

    def scope_list(self) -> list[str]:
        return [s for s in SCOPES if s in self.scopes]


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just minted. The secret is here once and never in a repr or a log line."""

    record: KeyRecord
    secret: str = field(repr=False)


_COLUMNS = "id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at"


def _record(row: Row) -> KeyRecord:
    return KeyRecord(
        id=int(row["id"]),
        name=row["name"],
        prefix=row["prefix"],
        scopes=frozenset(s for s in str(row["scopes"]).split(",") if s),
        created_at=float(row["created_at"]),
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


class KeyStore:
    """The `api_keys` table. Every method is one short statement or transaction."""

    def __init__(self, db: Db) -> None:
        self.db = db

    async def create(self, name: str, scopes: tuple[str, ...] | list[str], expires_at: float | None = None) -> NewKey:
        name = parse_name(name)
        scopes = parse_scopes(",".join(scopes))
        now = time.time()
        if expires_at is not None and expires_at <= now:
            raise InvalidRequest("The expiry must lie in the future.", param="expires")
        async with self.db.transaction() as tx:
            clash = await tx.fetchone(f"SELECT {_COLUMNS} FROM api_keys WHERE name = ? AND revoked_at IS NULL", (name,))
            if clash is not None:
                state = _record(clash).state(now)
                hint = "revoke it first, or pick another name" if state == "expired" else "pick another name"
                raise InvalidRequest(f"A key named {name!r} already exists ({state}); {hint}.", param="name")
            return await self._insert(tx, name, scopes, expires_at, now)

    async def ensure_first(self) -> NewKey | None:
        """Mint the `first` key when no usable (active) key exists; None when one does. Atomic, so
        two starts at once mint at most one."""
        now = time.time()
        async with self.db.transaction() as tx:
            if self.db.dialect.lock_keys:
                await tx.execute(self.db.dialect.lock_keys)
            row = await tx.fetchone(
                "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
                (now,),
            )
            if row is not None and int(row[0]) > 0:
                return None
            taken = {
                r[0] for r in await tx.fetchall("SELECT name FROM api_keys WHERE revoked_at IS NULL")
            }  # only expired keys remain live here
            name, n = FIRST_KEY_NAME, 1
            while name in taken:
                n += 1
                name = f"{FIRST_KEY_NAME}-{n}"
            return await self._insert(tx, name, FIRST_KEY_SCOPES, None, now)

    async def _insert(self, tx: Tx, name: str, scopes: tuple[str, ...], expires_at: float | None, now: float) -> NewKey:
        secret = new_secret()
        key_id = await tx.insert_id(
            "INSERT INTO api_keys (name, prefix, hash, scopes, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            (name, display_prefix(secret), hash_secret(secret), ",".join(scopes), now, expires_at),
        )
        await _bump_epoch(tx)
        rec = KeyRecord(key_id, name, display_prefix(secret), frozenset(scopes), now, expires_at, None, None)
        return NewKey(rec, secret)

    async def list(self) -> list[KeyRecord]:
        rows = await self.db.fetchall(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")
        return [_record(r) for r in rows]

    async def revoke(self, ref: str) -> KeyRecord:
        """Revoke the live key named `ref`, or whose prefix (or whole secret) is `ref`."""
        ref = ref.strip()
        now = time.time()
        async with self.db.transaction() as tx:
            rows = list(
                await tx.fetchall(f"SELECT {_COLUMNS} FROM api_keys WHERE revoked_at IS NULL AND name = ?", (ref,))
            )
            if not rows and is_well_formed(ref):
                found = await tx.fetchall(
                    f"SELECT {_COLUMNS}, hash FROM api_keys WHERE revoked_at IS NULL AND hash = ?", (hash_secret(ref),)
                )
                rows = [r for r in found if hmac.compare_digest(r["hash"], hash_secret(ref))]
            if not rows:
                rows = list(
                    await tx.fetchall(
                        f"SELECT {_COLUMNS} FROM api_keys WHERE revoked_at IS NULL AND prefix = ?", (ref,)
                    )
                )
            if len(rows) > 1:
                raise InvalidRequest(
                    f"The prefix {ref!r} matches {len(rows)} keys ({', '.join(r['name'] for r in rows)}); "
                    "revoke by name instead.",
                    param="key",
                )
            if not rows:
                gone = await tx.fetchone(
                    "SELECT count(*) FROM api_keys "
                    "WHERE revoked_at IS NOT NULL AND (name = ? OR prefix = ? OR hash = ?)",
                    (ref, ref, hash_secret(ref)),
                )
                shown = display_prefix(ref) + "…" if is_well_formed(ref) else ref  # never echo a whole secret
                if gone is not None and int(gone[0]) > 0:
                    raise NotFound(f"The key {shown!r} is already revoked.", code="key_not_found")
                raise NotFound(f"No live key is named {shown!r} or has that prefix.", code="key_not_found")
            rec = _record(rows[0])
            await tx.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ?", (now, rec.id))
            await _bump_epoch(tx)
        return KeyRecord(
            rec.id, rec.name, rec.prefix, rec.scopes, rec.created_at, rec.expires_at, now, rec.last_used_at
        )

    async def delete(self, key_id: int) -> None:
        """Remove a row outright: only for a key that was never shown to anyone (a first key
        minted by a start that then failed to bind)."""
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM api_keys WHERE id = ?", (key_id,))
            await _bump_epoch(tx)

    async def find(self, key_hash: str) -> KeyRecord | None:
        """The row whose hash is `key_hash` (any state), or None."""
        row = await self.db.fetchone(f"SELECT {_COLUMNS}, hash FROM api_keys WHERE hash = ?", (key_hash,))
        if row is None or not hmac.compare_digest(str(row["hash"]), key_hash):
            return None
        return _record(row)

    async def epoch(self) -> int:
        row = await self.db.fetchone("SELECT value FROM counters WHERE name = 'key_epoch'")
        return int(row[0]) if row is not None else 0

    async def touch(self, last_used: dict[int, float]) -> None:
        """Record last-used times for many keys in one transaction (the verifier's batch)."""
        if not last_used:
            return
        async with self.db.transaction() as tx:
            await tx.executemany(
                "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                [(ts, key_id, ts) for key_id, ts in last_used.items()],
            )


async def _bump_epoch(tx: Tx) -> None:
    await tx.execute("UPDATE counters SET value = value + 1 WHERE name = 'key_epoch'")
