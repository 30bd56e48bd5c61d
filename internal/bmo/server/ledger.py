"""The ledger routes (SPEC §3, §6): posture, runs, one run, its events; and /metrics.

Reads go through the runtime (the server never queries the store itself: tests/test_layers.py),
which first waits for the ledger writer to flush, so the run behind an `X-Request-Id` a client
just got is always found (the writer is at most ~50 ms behind).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bmo.errors import InvalidRequest, NotFound
from bmo.posture import INFERENCE_ROUTES, build_posture
from bmo.server.context import RUNTIME, STATE
from bmo.server.http import json_response

MAX_LIMIT = 500


def _int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise InvalidRequest(f"`{name}` must be a whole number.", param=name) from None
    if not lo <= v <= hi:
        raise InvalidRequest(f"`{name}` must be between {lo} and {hi}.", param=name)
    return v


async def posture(request: web.Request) -> web.StreamResponse:
    st = request.app[RUNTIME]
    rt = st.runtime
    return json_response(
        build_posture(
            cfg=rt.cfg,
            enabled_routes=INFERENCE_ROUTES,
            window=rt.recorder.window,
            persistence=rt.persistence,
            in_flight=st.in_flight - 1,  # not counting this request
            source="server",
            started_at=rt.started_at,
            store_problem=rt.store_health(),  # what /health answers 503 on
        )
    )


async def runs(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].runtime
    limit = _int(request, "limit", 50, 1, MAX_LIMIT) or 50
    status = _int(request, "status", None, 100, 599)
    q = request.query
    records, cursor = await rt.list_runs(
        limit=limit,
        cursor=q.get("cursor") or None,
        route=q.get("route") or None,
        status=status,
        agent=q.get("agent") or None,
        outcome=q.get("outcome") or None,
    )
    return json_response(
        {"object": "list", "data": [r.to_json() for r in records], "next_cursor": cursor, "has_more": bool(cursor)}
    )


async def run(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME].runtime
    tail = request[STATE].tail
    rid, _, rest = tail.partition("/")
    if rest not in ("", "events"):
        raise NotFound(f"Unknown request URL: {request.method} {request.path}.", code="not_found")
    record = await rt.get_run(rid)
    if record is None:
        raise NotFound(
            f"No run with request id {rid!r} (it may be older than the retention).",
            code="run_not_found",
            param="request_id",
        )
    if rest == "events":
        body: dict[str, Any] = {
            "object": "list",
            "request_id": record.request_id,
            "data": [e.to_json() for e in record.events],
        }
        return json_response(body)
    out = record.to_json()
    if record.content is not None:
        out["content"] = record.content
    return json_response(out)


async def metrics(request: web.Request) -> web.StreamResponse:
    st = request.app[RUNTIME]
    rt = st.runtime
    text = rt.recorder.metrics.render(in_flight=st.in_flight - 1, persistence=rt.persistence)
    return web.Response(
        text=text, content_type="text/plain", charset="utf-8", headers={"X-Content-Type-Options": "nosniff"}
    )
