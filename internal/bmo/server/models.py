"""GET /health, /v1/models and /v1/models/{id}."""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web

from bmo.errors import ServerError
from bmo.protocol.openai import to_model, to_model_list
from bmo.server.context import RUNTIME, STATE, RequestState
from bmo.server.http import json_response


async def health(request: web.Request) -> web.StreamResponse:
    """200 when the store is writable, else 503 `store_unavailable` with the reason (SPEC §3)."""
    reason = request.app[RUNTIME].runtime.store_health()
    if reason is not None:
        raise ServerError(f"bmo is up but its store is not usable: {reason}.", code="store_unavailable")
    return json_response({"status": "ok"})


async def list_models(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].runtime
    return json_response(to_model_list(rt.agents.model_ids(), rt.started_at))


async def get_model(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].runtime
    state: RequestState = request[STATE]
    model_id = rt.agents.get_model(unquote(state.tail))
    return json_response(to_model(model_id, rt.started_at))
