"""Typed app keys and per-request state for the HTTP edge."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from bmo.errors import BmoError
from bmo.ids import Ids
from bmo.runtime import Runtime
from bmo.server.auth import Authenticator, Principal
from bmo.server.routes import Router
from bmo.service import RunInfo


@dataclass(slots=True)
class ServerState:
    runtime: Runtime
    router: Router
    auth: Authenticator
    max_body: int
    keepalive_s: float
    cors_origins: frozenset[str]
    compat_enabled: bool
    ids: Ids = field(default_factory=Ids)
    in_flight: int = 0


@dataclass(slots=True)
class RequestState:
    info: RunInfo
    server: ServerState  # the app's, here so that the hot path needs no `request.app[...]` lookup
    route: str = "unmatched"
    principal: Principal | None = None
    tail: str = ""
    model_requested: str | None = None
    stream: bool = False
    first_byte_sent: bool = False
    client_gone: bool = False
    recorded: bool = True  # unmatched paths are recorded too (SPEC §6: 404s included)
    fired: bool = False
    error: BmoError | None = None  # what the client was told, before or inside the stream


RUNTIME: web.AppKey[ServerState] = web.AppKey("bmo_state", ServerState)
STATE: web.RequestKey[RequestState] = web.RequestKey("bmo_request", RequestState)
