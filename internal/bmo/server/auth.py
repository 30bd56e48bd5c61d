"""Who is calling, and may they (SPEC §7).

Keys arrive as `Authorization: Bearer …` or `X-Api-Key: …`. `BMO_API_KEY` is one admin key with
no database row; stored keys are checked by a `KeyVerifier` that the runtime builds (the server
knows only this protocol, never the store). With `auth.mode: keys` a key is always required;
with `auth.mode: none` (loopback only, enforced at config load) every caller is the anonymous
admin.

A 401 says which class of failure it is (missing, malformed, unknown, revoked, expired) and
nothing else: never the key, its name or its prefix.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from bmo.errors import KEY_MISSING, KEY_UNKNOWN, AuthenticationError, PermissionDenied

MALFORMED_HEADER = "The Authorization header is malformed: it must be `Bearer <key>`."


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    prefix: str | None
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope == "none" or "admin" in self.scopes or scope in self.scopes


ANONYMOUS = Principal(name="anonymous", prefix=None, scopes=frozenset({"admin"}))


class VerifiedKey(Protocol):
    """What a verifier knows about a valid key."""

    @property
    def name(self) -> str: ...
    @property
    def prefix(self) -> str: ...
    @property
    def scopes(self) -> frozenset[str]: ...


class KeyVerifier(Protocol):
    async def verify(self, secret: str) -> VerifiedKey:
        """The identity of a valid key. Raises AuthenticationError whose message names the class
        (malformed, unknown, revoked, expired), or a 503 BmoError when it cannot tell."""
        ...


def presented_key(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise AuthenticationError(MALFORMED_HEADER)
    key = request.headers.get("X-Api-Key")
    return key.strip() if key and key.strip() else None


def key_prefix(secret: str) -> str:
    return secret[:12]


class Authenticator:
    def __init__(self, mode: str, env_key: str | None = None, verifier: KeyVerifier | None = None) -> None:
        self.mode = mode
        self._env_key = env_key.encode() if env_key else None
        self._verifier = verifier
        self.env_principal = Principal("BMO_API_KEY", key_prefix(env_key), frozenset({"admin"})) if env_key else None

    async def authenticate(self, request: web.Request, scope: str) -> Principal:
        if scope == "none" or self.mode == "none":
            return ANONYMOUS
        secret = presented_key(request)
        if secret is None:
            raise AuthenticationError(KEY_MISSING)
        principal: Principal | None = None
        if self._env_key is not None and hmac.compare_digest(secret.encode(), self._env_key):
            principal = self.env_principal
        elif self._verifier is not None:
            ident = await self._verifier.verify(secret)
            principal = Principal(ident.name, ident.prefix, ident.scopes)
        if principal is None:
            raise AuthenticationError(KEY_UNKNOWN)
        if not principal.allows(scope):
            raise PermissionDenied(
                f"This API key (scopes: {', '.join(sorted(principal.scopes))}) may not use this route; "
                f"it needs the `{scope}` scope.",
                code="insufficient_scope",
            )
        return principal
