"""Typed app keys and per-request state for the HTTP edge."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from bmo.ids import Ids
from bmo.protocol.dialect import Dialect
from bmo.runtime import Runtime
from bmo.server.auth import Authenticator, Principal
from bmo.server.routes import Router
from bmo.service import ChatService, Run


@dataclass(slots=True)
class ServerState:
    runtime: Runtime
    router: Router
    auth: Authenticator
    max_body: int
    keepalive_s: float
    cors_origins: frozenset[str]
    compat_enabled: bool
    service: ChatService | None = None  # once the runtime is open
    ids: Ids = field(default_factory=Ids)
    in_flight: int = 0


@dataclass(slots=True)
class RequestState:
    run: Run  # the run this request is, recorded in the ledger when `recorded`
    server: ServerState  # the app's, here so that the hot path needs no `request.app[...]` lookup
    principal: Principal | None = None
    tail: str = ""
    recorded: bool = True  # unmatched paths are recorded too (SPEC §6: 404s included)
    dialect: Dialect | None = None  # whose envelope an error on this route is rendered in


RUNTIME: web.AppKey[ServerState] = web.AppKey("bmo_state", ServerState)
STATE: web.RequestKey[RequestState] = web.RequestKey("bmo_request", RequestState)
