"""The aiohttp application: one catch-all route, bmo's own router, auth, errors, headers.

Every request is a `Run` of the service from its first byte (so a 401 or a 404 is recorded
too), gets a request id (sent back as `X-Request-Id`), is routed by `Router`, is authenticated
for its route's scope, and any `BmoError` is rendered once, here, in the envelope of the route's
dialect. Unexpected exceptions are logged with their traceback and answered as a 500 envelope: a
client never sees a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from bmo.clients import client_name
from bmo.errors import BmoError, InternalError, NotFound, RequestTimeout, ShuttingDown
from bmo.protocol.anthropic import ANTHROPIC
from bmo.protocol.completions import COMPLETIONS
from bmo.protocol.openai import OPENAI
from bmo.protocol.responses import RESPONSES
from bmo.providers.http import configured_secrets
from bmo.redact import Redactor
from bmo.runtime import Runtime
from bmo.server import dialects, ledger, models, openapi, ui
from bmo.server.auth import Authenticator
from bmo.server.context import CUT_MESSAGE, NOT_NOW_MESSAGE, RUNTIME, STATE, RequestState, ServerState
from bmo.server.http import error_response
from bmo.server.routes import Router
from bmo.service import Run

log = logging.getLogger("bmo.server")

COMPAT_ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/responses",
        "/v1/responses/{id}",
        "/v1/messages",
        "/v1/messages/count_tokens",
    }
)
# Not compat requests: health probes, metrics scrapes and ledger reads would drown the ledger.
UNRECORDED = frozenset(
    {
        "/health",
        "/openapi.json",
        "/metrics",
        "/v1/openai-compat/posture",
        "/v1/openai-compat/runs",
        "/v1/openai-compat/runs/{id}",
        "/v1/openai-compat/stats",
        "/ui",
        "/ui/{id}",
    }
)
CORS_ALLOW_HEADERS = (
    "Authorization, Content-Type, X-Api-Key, X-BMO-Agent, X-BMO-Session, X-Stainless-Arch, "
    "X-Stainless-Lang, X-Stainless-OS, X-Stainless-Package-Version, X-Stainless-Retry-Count, "
    "X-Stainless-Runtime, X-Stainless-Runtime-Version, X-Stainless-Timeout, X-Stainless-Helper-Method, "
    "X-Stainless-Async, Anthropic-Version, Anthropic-Beta, Anthropic-Dangerous-Direct-Browser-Access, "
    "OpenAI-Organization, OpenAI-Project"
)
CORS_EXPOSE = "X-Request-Id, Request-Id, Retry-After, X-Should-Retry, X-BMO-Warning, X-BMO-Agent"


def build_router(*, metrics_public: bool = False) -> Router:
    r = Router()
    r.add("GET", "/health", models.health, scope="none")
    r.add("GET", "/v1/models", models.list_models, scope="chat")
    r.add("GET", "/v1/models/{tail}", models.get_model, scope="chat")
    r.add("POST", "/v1/chat/completions", dialects.chat_completions, scope="chat", dialect=OPENAI)
    r.add("POST", "/v1/completions", dialects.completions, scope="chat", dialect=COMPLETIONS)
    r.add("POST", "/v1/messages", dialects.messages, scope="chat", dialect=ANTHROPIC)
    r.add("POST", "/v1/messages/count_tokens", dialects.count_tokens, scope="chat", dialect=ANTHROPIC)
    r.add("POST", "/v1/responses", dialects.responses, scope="chat", dialect=RESPONSES)
    r.add("GET", "/v1/responses/{tail}", dialects.stored_response, scope="chat", dialect=RESPONSES)
    r.add("DELETE", "/v1/responses/{tail}", dialects.stored_response, scope="chat", dialect=RESPONSES)
    r.add("GET", "/v1/openai-compat/posture", ledger.posture, scope="ledger")
    r.add("GET", "/v1/openai-compat/runs", ledger.runs, scope="ledger")
    r.add("GET", "/v1/openai-compat/runs/{tail}", ledger.run, scope="ledger")
    r.add("GET", "/v1/openai-compat/stats", ledger.stats, scope="ledger")
    r.add("GET", "/v1/openai-compat/tools", ledger.tools, scope="ledger")
    r.add("GET", "/metrics", ledger.metrics, scope="none" if metrics_public else "ledger")
    r.add("GET", "/openapi.json", openapi.document, scope="none")
    r.add("GET", "/ui", ui.page, scope="none")
    r.add("GET", "/ui/{tail}", ui.asset, scope="none")
    return r


def make_app(runtime: Runtime, *, env_api_key: str | None = None) -> web.Application:
    cfg = runtime.cfg
    state = ServerState(
        runtime=runtime,
        router=build_router(metrics_public=cfg.server.metrics_public),
        auth=Authenticator(cfg.auth.mode, env_api_key, runtime.keys),
        max_body=int(cfg.server.max_body_mb * 1024 * 1024),
        keepalive_s=cfg.openai_compat.keepalive_s,
        cors_origins=frozenset(cfg.openai_compat.cors_origins),
        compat_enabled=cfg.openai_compat.enabled,
        redact=Redactor([*configured_secrets(cfg), env_api_key]),
    )
    runtime.recorder.redact = state.redact  # the client's User-Agent in the access log and the ledger
    # aiohttp's own limit sits above ours so that bmo, not aiohttp, answers 413 with the envelope
    app = web.Application(client_max_size=state.max_body + 1024 * 1024, handler_args={"max_field_size": 65536})
    app[RUNTIME] = state

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await runtime.open()
        state.service = runtime.chat()
        yield
        await runtime.close()

    app.cleanup_ctx.append(lifetime)
    app.on_response_prepare.append(_on_prepare)
    for path in state.router.exact_paths():  # aiohttp finds these by dict; the catch-all needs a regex
        app.router.add_route("*", path, _dispatch)
    app.router.add_route("*", r"/{path:[\s\S]*}", _dispatch)  # not `.*`: a path may hold a newline (%0A)
    return app


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    st: RequestState | None = request.get(STATE)
    if st is not None:
        response.headers["X-Request-Id"] = st.run.request_id
        if st.dialect is not None and st.dialect.request_id_header:
            response.headers[st.dialect.request_id_header] = st.run.request_id
    origin = request.headers.get("Origin")
    if origin:
        allowed = request.app[RUNTIME].cors_origins
        if "*" in allowed or origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
            response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE
            if "*" not in allowed:
                response.headers["Vary"] = "Origin"


async def _dispatch(request: web.Request) -> web.StreamResponse:
    srv = request.app[RUNTIME]
    service = srv.service
    assert service is not None, "the runtime is not open"
    run = Run(
        service,
        srv.ids.request_id(),
        "unmatched",
        request.method,
        request.headers.get("User-Agent"),
        None,
        time.monotonic(),
        time.time(),
        client_name(request.headers),
    )
    st = RequestState(run=run, server=srv)
    request[STATE] = st
    if request.method == "OPTIONS":
        return _preflight(request)
    live = srv.live
    live[st] = request  # an item store, not a method call; deleted at the end (no cycle holds the request)
    try:
        (handler, scope, route, st.dialect), st.tail = srv.router.resolve(request.method, request.path)
        run.route = route
        st.recorded = route not in UNRECORDED
        if srv.draining:  # SIGTERM came: nothing new starts (SPEC §11); /health says so too
            raise ShuttingDown(NOT_NOW_MESSAGE)
        if route in COMPAT_ROUTES and not srv.compat_enabled:
            raise NotFound(
                "The OpenAI-compatible routes are turned off (openai_compat.enabled).", code="endpoint_disabled"
            )
        st.principal = principal = await srv.auth.authenticate(request, scope)
        run.caller_prefix = principal.prefix
        if st.recorded and route not in COMPAT_ROUTES:
            service.fire(run)  # inference routes fire once the agent is known
        resp = await handler(request)
        run.status = resp.status
        if srv.draining:
            resp.force_close()
        return resp
    except BmoError as e:
        if e.status >= 500 and not isinstance(e, ShuttingDown):
            log.warning("%s %s -> %s %s (%s)", request.method, request.path, e.status, e.code, e.detail or e.message)
        run.error = e
        run.status = e.status
        resp = error_response(e, st.dialect)
        if srv.draining or isinstance(e, RequestTimeout):  # `Connection: close`
            resp.force_close()
        return resp
    except asyncio.CancelledError:
        if not st.cut:
            run.client_gone = True
            raise
        # Cut by the drain before anything was sent: a real status (SPEC §11).
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        run.error = err = ShuttingDown(CUT_MESSAGE)
        run.status = err.status
        resp = error_response(err, st.dialect)
        resp.force_close()
        return resp
    except web.HTTPException:
        raise
    except Exception as e:
        log.exception("unhandled error on %s %s (%s)", request.method, request.path, run.request_id)
        run.error = InternalError(
            f"bmo hit an internal error ({type(e).__name__}); see the server log for request {run.request_id}."
        )
        run.status = 500
        return error_response(run.error, st.dialect)
    finally:
        del live[st]
        if srv.draining and not live:
            srv.idle.set()
        if st.recorded:
            run.client_ip = request.remote
            service.end(run)


def _preflight(request: web.Request) -> web.Response:
    """CORS preflight: 204 without auth (CLIENTS #24); CORS headers only for allowed origins."""
    resp = web.Response(status=204)
    origin = request.headers.get("Origin")
    allowed = request.app[RUNTIME].cors_origins
    if origin and ("*" in allowed or origin in allowed):
        resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        resp.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        resp.headers["Access-Control-Max-Age"] = "600"
    return resp
