"""GET /health, /v1/models and /v1/models/{id}."""

from __future__ import annotations

import time
from urllib.parse import unquote

from aiohttp import web

from bmo.errors import Unavailable
from bmo.protocol import anthropic, openai
from bmo.server.context import RUNTIME, STATE, RequestState
from bmo.server.http import json_response


async def health(request: web.Request) -> web.StreamResponse:
    """200 when the store is writable, else 503 `store_unavailable` with the reason (SPEC §3)."""
    reason = request.app[RUNTIME].runtime.store_health()
    if reason is not None:
        raise Unavailable(f"bmo is up but its store is not usable: {reason}.", code="store_unavailable")
    return json_response({"status": "ok"})


def _anthropic(request: web.Request) -> bool:
    """Anthropic's SDKs (and Claude Code) send one of these; OpenAI's never do (SPEC §3)."""
    h = request.headers
    return "anthropic-version" in h or "x-api-key" in h


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


async def list_models(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].runtime
    if _anthropic(request):
        return json_response(anthropic.to_model_list(rt.agents.model_ids(), _iso(rt.started_at)))
    return json_response(openai.to_model_list(rt.agents.model_ids(), rt.started_at))


async def get_model(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].runtime
    state: RequestState = request[STATE]
    model_id = rt.agents.get_model(unquote(state.tail))
    if _anthropic(request):
        return json_response(anthropic.to_model(model_id, _iso(rt.started_at)))
    return json_response(openai.to_model(model_id, rt.started_at))
