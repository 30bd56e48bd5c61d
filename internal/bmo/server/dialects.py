"""The dialects' handlers: parse the body in the client's wire format, hand it to the relay.

Each is a few lines; the relay (server/relay.py) and the service do the rest. A new dialect is a
protocol module, a handler here, and a line in app.py's routes table.
"""

from __future__ import annotations

from aiohttp import web

from bmo.errors import NotFound
from bmo.protocol.anthropic import ANTHROPIC, parse_count_tokens_request, to_token_count
from bmo.protocol.completions import COMPLETIONS
from bmo.protocol.dialect import parse_json_body
from bmo.protocol.openai import OPENAI
from bmo.protocol.responses import RESPONSES, input_items_page, to_input_items
from bmo.server.context import STATE, RequestState
from bmo.server.http import json_response, read_body
from bmo.server.relay import respond


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions (SPEC §4)."""
    state: RequestState = request[STATE]
    body = parse_json_body(await read_body(request, state.server.max_body))
    return await respond(request, state, OPENAI, OPENAI.parse(body, request.headers))


async def completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/completions (SPEC §4c): a raw text completion for editor autocomplete."""
    state: RequestState = request[STATE]
    body = parse_json_body(await read_body(request, state.server.max_body))
    return await respond(request, state, COMPLETIONS, COMPLETIONS.parse(body, request.headers))


async def messages(request: web.Request) -> web.StreamResponse:
    """POST /v1/messages (SPEC §4a), any query string (Claude Code sends `?beta=true`)."""
    state: RequestState = request[STATE]
    body = parse_json_body(await read_body(request, state.server.max_body))
    return await respond(request, state, ANTHROPIC, ANTHROPIC.parse(body, request.headers))


async def count_tokens(request: web.Request) -> web.StreamResponse:
    """POST /v1/messages/count_tokens: the agent's upstream count where it has one, else bmo's
    estimate (chat.estimate_tokens), over what the agent would send: its prompt, the request's
    messages and every tool it would offer."""
    state: RequestState = request[STATE]
    body = parse_json_body(await read_body(request, state.server.max_body))
    req = parse_count_tokens_request(body, request.headers)
    assert state.server.service is not None
    n = await state.server.service.count_tokens(state.run, req, request.headers)
    return json_response(to_token_count(n))


async def responses(request: web.Request) -> web.StreamResponse:
    """POST /v1/responses (SPEC §4b)."""
    state: RequestState = request[STATE]
    body = parse_json_body(await read_body(request, state.server.max_body))
    return await respond(request, state, RESPONSES, RESPONSES.parse(body, request.headers))


async def stored_response(request: web.Request) -> web.StreamResponse:
    """GET and DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items: the caller's own."""
    state: RequestState = request[STATE]
    service = state.server.service
    assert service is not None
    rid, _, rest = state.tail.partition("/")
    if rest not in ("", "input_items") or (rest and request.method != "GET"):
        raise NotFound(f"Unknown request URL: {request.method} {request.path}.", code="not_found")
    if request.method == "DELETE":
        await service.delete_response(rid, state.principal)
        return json_response({"id": rid, "object": "response.deleted", "deleted": True})
    found = await service.stored_response(rid, state.principal)
    if rest == "":
        return json_response(found.body)
    q = request.query
    items = to_input_items(found.input, rid)
    page = input_items_page(
        items, after=q.get("after"), before=q.get("before"), limit=q.get("limit"), order=q.get("order")
    )
    return json_response(page)
