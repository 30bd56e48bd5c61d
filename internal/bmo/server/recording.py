"""Turning a finished HTTP request into its ledger run (SPEC §6) and its two log lines."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from bmo.runs import RunRecord, outcome_for
from bmo.server.context import RequestState

log = logging.getLogger("bmo.server")


def fire(request: web.Request, st: RequestState) -> None:
    """The `openai_compat.fired` line: once per request, when it is accepted."""
    if not st.fired:
        st.fired = True
        st.server.runtime.recorder.fired(st.info.request_id, st.route, st.info.agent, request.headers.get("User-Agent"))


def record(request: web.Request, st: RequestState, status: int, wall: float) -> None:
    """One ledger row per request on a compat route (SPEC §6); never raises."""
    try:
        fire(request, st)
        info = st.info
        err = st.error
        if st.client_gone:
            info.event("client_disconnected")
        outcome = outcome_for(status, err.outcome if err else None, st.client_gone)
        info.event("finished", {"status": status, "outcome": outcome})
        record = RunRecord(
            request_id=info.request_id,
            started_at=wall,
            route=st.route,
            method=request.method,
            status=status,
            outcome=outcome,
            error_code=err.code if err else None,
            model_requested=st.model_requested,
            agent=info.agent,
            upstream_route=info.upstream_route,
            stream=st.stream,
            ttfb_ms=info.ttfb_ms,
            duration_ms=(time.monotonic() - info.started) * 1000,
            prompt_tokens=info.usage.prompt_tokens,
            completion_tokens=info.usage.completion_tokens,
            tool_calls=info.tool_calls,
            session_id=info.session_id,
            api_key_prefix=st.principal.prefix if st.principal else None,
            client_ua=request.headers.get("User-Agent"),
            client_ip=request.remote,
            events=info.events,
            content=info.content,
        )
        st.server.runtime.recorder.finish(record)
    except Exception:  # a ledger failure never fails a request
        log.exception("could not record run %s", st.info.request_id)
