"""The ledger routes (SPEC §3, §6): posture, runs, one run, its events, stats; and /metrics.

Reads go through the runtime (the server never queries the store itself: tests/test_layers.py),
which first waits for the ledger writer to flush, so the run behind an `X-Request-Id` a client
just got is always found (the writer is at most ~50 ms behind).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bmo.errors import InvalidRequest, NotFound
from bmo.posture import INFERENCE_ROUTES, build_posture
from bmo.runs import OUTCOMES, iso_utc
from bmo.server.context import RUNTIME, STATE
from bmo.server.http import json_response

MAX_LIMIT = 500
MAX_MINUTES = 1440  # stats over a day at most: 1440 buckets is already more than a chart can show


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
    if rt.fleet is not None:  # several workers: the whole server's, whichever worker is asked
        window, persistence, in_flight, workers, started = await rt.fleet_posture()
        return json_response(
            build_posture(
                cfg=rt.cfg,
                enabled_routes=INFERENCE_ROUTES,
                window=window,
                persistence=persistence,
                in_flight=in_flight,  # not counting this request (`asking`)
                source="server",
                started_at=started,
                store_problem=rt.store_health(),
                mcp_servers=rt.tool_status(),
                workers=workers,
            )
        )
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
            mcp_servers=rt.tool_status(),
        )
    )


async def tools(request: web.Request) -> web.StreamResponse:
    """Every tool, who may use it, and each MCP server's state (`bmo tools list`)."""
    rt = request.app[RUNTIME].runtime
    agent = request.query.get("agent") or None
    try:
        return json_response(rt.tool_catalog(agent))
    except KeyError:
        raise NotFound(f"No agent {agent!r}.", code="not_found", param="agent") from None


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
        client=q.get("client") or None,
        ua=q.get("ua") or None,
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


async def stats(request: web.Request) -> web.StreamResponse:
    """Per-minute buckets of the last `minutes` (default 60): counts per outcome, p50/p95 ms.
    What the web console's charts draw; the buckets end now (a sliding window)."""
    rt = request.app[RUNTIME].runtime
    minutes = _int(request, "minutes", 60, 1, MAX_MINUTES) or 60
    since, buckets = await rt.run_stats(minutes)
    total: dict[str, int] = {}
    for b in buckets:
        b["start"] = iso_utc(b["start"])
        for outcome, n in b["by_outcome"].items():
            total[outcome] = total.get(outcome, 0) + n
    return json_response(
        {
            "object": "openai_compat.stats",
            "minutes": minutes,
            "bucket_s": 60,
            "since": iso_utc(since),
            "until": iso_utc(since + minutes * 60),
            "outcomes": list(OUTCOMES),
            "total": {"count": sum(total.values()), "by_outcome": dict(sorted(total.items()))},
            "buckets": buckets,
        }
    )


async def metrics(request: web.Request) -> web.StreamResponse:
    st = request.app[RUNTIME]
    rt = st.runtime
    if rt.fleet is not None:  # several workers: summed over all of them (bmo.workers)
        text = await rt.fleet_metrics(asking=1)
    else:
        text = rt.recorder.metrics.render(in_flight=st.in_flight - 1, persistence=rt.persistence)
    return web.Response(
        text=text, content_type="text/plain", charset="utf-8", headers={"X-Content-Type-Options": "nosniff"}
    )
