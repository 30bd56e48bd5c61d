"""Typed app keys and per-request state for the HTTP edge."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from bmo.ids import Ids
from bmo.protocol.dialect import Dialect
from bmo.redact import Redactor
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
    redact: Redactor  # the configured keys and key shapes: for log lines (server/serve.py)
    service: ChatService | None = None  # once the runtime is open
    ids: Ids = field(default_factory=Ids)
    # Every request being answered, so the drain can wait for them and cut the rest (SPEC §11).
    live: dict[RequestState, web.Request] = field(default_factory=dict)
    draining: bool = False  # SIGTERM came: new requests get 503 shutting_down
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set when draining and `live` empties
    openapi: bytes | None = None  # GET /openapi.json, rendered once

    @property
    def in_flight(self) -> int:
        return len(self.live)


@dataclass(slots=True, eq=False)  # eq=False: hashed by identity, to sit in ServerState.live
class RequestState:
    run: Run  # the run this request is, recorded in the ledger when `recorded`
    server: ServerState  # the app's, here so that the hot path needs no `request.app[...]` lookup
    principal: Principal | None = None
    tail: str = ""
    recorded: bool = True  # unmatched paths are recorded too (SPEC §6: 404s included)
    dialect: Dialect | None = None  # whose envelope an error on this route is rendered in
    cut: bool = False  # cut by the drain (its task cancelled): answer `shutting_down`, not "client left"


# What a client hears from a draining bmo (SPEC §11): a new request, and a run cut at the grace.
NOT_NOW_MESSAGE = "bmo is shutting down and takes no new requests; retry in a moment."
CUT_MESSAGE = "bmo is shutting down: this request was still running when its grace (server.shutdown_grace_s) ran out."

RUNTIME: web.AppKey[ServerState] = web.AppKey("bmo_state", ServerState)
STATE: web.RequestKey[RequestState] = web.RequestKey("bmo_request", RequestState)
