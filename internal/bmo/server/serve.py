"""Running the server: bind, serve until SIGTERM/SIGINT, drain in-flight requests, exit.

Connections (SPEC §11). bmo accepts them itself (`Gate`, the listening socket's protocol
factory, in place of aiohttp's TCPSite), so that:
- at most `server.max_connections` are open at once, lowered to fit the open-file limit with
  room left for the store, the upstream connections and the listener. Past it, a new connection
  takes the place of the oldest one still waiting for a request (a slow client, or an idle
  kept-alive one); when every one is busy it gets a 503 and is closed at once. So a flood of
  slow connections never makes `/health` unreachable, and bmo never runs out of descriptors
  (which stalls asyncio's accept loop for everyone);
- a connection must send complete headers within `server.header_timeout_s` of opening, or of
  its previous answer (aiohttp's keep-alive timer, which closes a connection still waiting for
  a request, with that timeout); a body must keep arriving (server/http.py `read_body`);
- a request aiohttp's HTTP parser rejects gets a JSON 400 `bad_request` and one log line that
  names neither a header nor a byte of what was sent (`Connection.handle_error`), never a
  traceback or an echo.

The drain (`drain`, SPEC §11): on SIGTERM bmo stops accepting; a new request on an open
connection gets 503 `shutting_down` with `Connection: close` (server/app.py); runs in flight
may finish within `server.shutdown_grace_s`; the rest are cut (their task cancelled: an
in-band `shutting_down` error after the first byte, server/relay.py, else a 503); then the
connections close and the app's cleanup flushes the ledger. All within the grace plus a second;
a second signal cuts at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from bmo.errors import BmoError, InternalError, InvalidRequest, Unavailable
from bmo.redact import RedactingFilter
from bmo.server.context import RUNTIME, ServerState

log = logging.getLogger("bmo.server")

BACKLOG = 1024
# Descriptors kept free beside the client connections: stdio, the event loop, the listener, the
# store (database, WAL, shared memory), DNS, MCP servers' pipes, connections being closed... and
# one upstream connection per run slot (openai_compat.concurrency) on top.
FD_RESERVE = 64
CUT_S = 0.5  # how long cut requests get to write their last frame
CLOSE_S = 0.25  # then aiohttp's own shutdown of each connection, per step
NOTE_EVERY_S = 10.0  # refused/evicted connections are logged at most this often


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_grace_s: float,
    on_ready: Callable[[str, int], None] | None = None,
    stop: asyncio.Event | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve until `stop` is set or a signal arrives, then drain. `on_ready(host, port)` gets
    the bound port. `reuse_port`: one of `bmo serve --workers N`, sharing the port with the
    others (SO_REUSEPORT: the kernel spreads new connections evenly over them)."""
    state = app[RUNTIME]
    cfg = state.runtime.cfg
    runner = web.AppRunner(
        app,
        handler_cancellation=True,  # a client that disconnects cancels its run at once (SPEC §4)
        access_log=None,
        shutdown_timeout=CLOSE_S,  # the drain has waited already; this only closes what is left
        keepalive_timeout=cfg.server.header_timeout_s,
        lingering_time=cfg.server.header_timeout_s,
    )
    await runner.setup()
    stop = stop or asyncio.Event()
    hurry = asyncio.Event()  # a second signal: cut now
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        (hurry if stop.is_set() else stop).set()

    signals = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal)
            signals.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests), or Windows
            pass
    redacting = RedactingFilter(state.redact)
    handlers = list(logging.getLogger().handlers)
    for h in handlers:  # every log line, bmo's and aiohttp's, passes the redactor (SPEC §5)
        h.addFilter(redacting)
    listener: asyncio.AbstractServer | None = None
    try:
        server = runner.server
        assert server is not None
        limit = fitted_limit(cfg.server.max_connections, cfg.openai_compat.concurrency)
        if state.runtime.fleet is not None:
            state.runtime.fleet.in_flight = lambda: state.in_flight  # what this worker publishes
        listener = await loop.create_server(
            Gate(server, limit), host, port, backlog=BACKLOG, reuse_address=True, reuse_port=reuse_port or None
        )
        bound = port
        if listener.sockets:
            bound = listener.sockets[0].getsockname()[1]
        if on_ready is not None:
            on_ready(host, bound)
        await stop.wait()
        listener.close()  # stop accepting
        await drain(state, shutdown_grace_s, hurry)
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()
        for h in handlers:
            h.removeFilter(redacting)
        for sig in signals:
            loop.remove_signal_handler(sig)


async def drain(state: ServerState, grace_s: float, hurry: asyncio.Event | None = None) -> None:
    """SPEC §11: nothing new starts; what is in flight may finish within `grace_s`; the rest is
    cut and given a moment to say so."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    state.draining = True
    live = state.live
    if live:
        log.info("shutting down: %d request(s) in flight, waiting up to %gs", len(live), grace_s)
    await _settle(state, grace_s, hurry)
    if live:
        log.warning(
            "shutting down: cutting %d request(s) still running after %.1fs (server.shutdown_grace_s)",
            len(live),
            loop.time() - t0,
        )
        for st, request in list(live.items()):
            # As when its client goes away (handler_cancellation): the connection's task is
            # cancelled, and with it the request's; `cut` tells bmo's handlers which it was.
            st.cut = True
            request.task.cancel()
        await _settle(state, CUT_S)


async def _settle(state: ServerState, wait_s: float, hurry: asyncio.Event | None = None) -> None:
    """Wait up to `wait_s` until nothing is in flight (server/app.py sets `idle`), or `hurry`."""
    if not state.live:
        return
    waits = [asyncio.ensure_future(state.idle.wait())]
    if hurry is not None:
        waits.append(asyncio.ensure_future(hurry.wait()))
    try:
        await asyncio.wait(waits, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def fitted_limit(max_connections: int, concurrency: int) -> int:
    """`max_connections`, lowered to what the open-file limit leaves room for. The soft limit is
    raised first, as far as the hard limit allows, to fit the configured number."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to fit
        return max_connections
    reserve = FD_RESERVE + concurrency
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + reserve
    if soft != resource.RLIM_INFINITY and soft < want:
        raised = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if raised > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
                soft = raised
            except (ValueError, OSError):
                pass
    if soft == resource.RLIM_INFINITY or soft >= want:
        return max_connections
    fitted = max(8, soft - reserve)
    log.warning(
        "server.max_connections %d does not fit the open-file limit %d (ulimit -n): "
        "at most %d client connections will be open at once",
        max_connections,
        soft,
        fitted,
    )
    return fitted


class Gate:
    """The listening socket's protocol factory: one `Connection` per accepted socket, at most
    `limit` open; past it, room is made by closing the oldest connection still waiting for a
    request, or the newcomer is refused with a 503."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self.server = server
        self.limit = limit
        # aiohttp's own arguments for its connections (AppRunner's and the app's handler_args)
        self.kwargs: dict[str, Any] = dict(server._kwargs)
        self.kwargs["loop"] = asyncio.get_running_loop()
        self.open: dict[Connection, None] = {}  # in order of arrival: the oldest first
        self.refused = self.evicted = 0
        self._noted = 0.0

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self.open) >= self.limit and not self._make_room():
            self.refused += 1
            self._note()
            return _Refusal()
        return Connection(self, self.server, **self.kwargs)

    def _make_room(self) -> bool:
        for conn in self.open:
            if conn.waiting():
                conn.force_close()  # leaves `open` when its transport is gone (connection_lost)
                self.evicted += 1
                self._note()
                return True
        return False

    def _note(self) -> None:
        now = time.monotonic()
        if now - self._noted >= NOTE_EVERY_S:
            self._noted = now
            log.warning(
                "server.max_connections (%d) reached: %d waiting connection(s) closed to make room, "
                "%d refused (all busy) so far",
                self.limit,
                self.evicted,
                self.refused,
            )


class Connection(RequestHandler):
    """aiohttp's HTTP/1 connection, counted by its `Gate`, with bmo's answer to a request
    aiohttp's parser rejects."""

    __slots__ = ("_gate",)

    def __init__(self, gate: Gate, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._gate.open[self] = None
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._gate.open.pop(self, None)
        super().connection_lost(exc)

    def waiting(self) -> bool:
        """Open, and waiting for (the rest of) its next request's headers."""
        waiter = self._waiter
        return self.transport is not None and waiter is not None and not waiter.done()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request the parser rejected (or, never expected, a failure outside bmo's handler):
        a JSON error and one log line. aiohttp's own logs the raw request line or header (a key
        with it) in an ERROR traceback and echoes it in a text/plain 400."""
        if request.writer.output_size > 0:  # as aiohttp: a response is under way, nothing to add
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        err: BmoError
        if isinstance(exc, HttpProcessingError):
            what = _REJECTED.get(type(exc).__name__, "malformed request")
            if isinstance(exc, LineTooLong):
                what = "a request line or header longer than bmo accepts"
            log.info("bad request from %s: %s (not valid HTTP; none of it is logged)", request.remote, what)
            err = InvalidRequest(
                f"The request is not valid HTTP ({what}); nothing of it was processed.", code="bad_request"
            )
        else:
            log.error("error outside bmo's handler, answering %s: %s", status, type(exc).__name__, exc_info=exc)
            err = InternalError("bmo hit an internal error; see the server log.")
        resp = web.Response(body=orjson.dumps(err.body()), status=err.status, content_type="application/json")
        resp.force_close()
        return resp


_REJECTED = {
    "BadStatusLine": "malformed request line",
    "BadHttpMethod": "unknown method, or not HTTP at all",
    "InvalidURLError": "malformed URL",
    "InvalidHeader": "malformed header",
    "BadHttpMessage": "malformed header or body",
    "ContentLengthError": "body shorter than its Content-Length",
    "TransferEncodingError": "malformed chunked body",
    "ContentEncodingError": "undecodable body",
}
_REFUSAL_BODY = orjson.dumps(
    Unavailable(
        "bmo has as many connections open as it allows (server.max_connections) and all are busy; retry shortly.",
        code="too_many_connections",
    ).body()
)
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY
)


class _Refusal(asyncio.Protocol):
    """A connection past the limit with none to make room: a 503 and closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = cast(asyncio.Transport, transport)  # (uvloop's transports are not asyncio's classes)
        t.write(REFUSAL)
        t.close()


def run(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_grace_s: float,
    on_ready: Callable[[str, int], None] | None = None,
    cleanup: Callable[[], Awaitable[None]] | None = None,
    reuse_port: bool = False,
) -> None:
    """Blocking entry for `bmo serve`: uvloop when installed, else asyncio. `cleanup` runs last,
    in the same event loop, however serving ended: a start-up that fails part way (the runtime's
    opening inside the app's start-up, or the bind) must close what was opened there, or the
    store's worker thread keeps the process alive."""

    def ready(bound_host: str, bound_port: int) -> None:
        settle_gc()
        if on_ready is not None:
            on_ready(bound_host, bound_port)

    async def main() -> None:
        try:
            await serve(app, host, port, shutdown_grace_s=shutdown_grace_s, on_ready=ready, reuse_port=reuse_port)
        finally:
            if cleanup is not None:
                await cleanup()

    coro = main()
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


# Every request in flight holds a few hundred objects; with CPython's default thresholds (700,
# 10, 10) the collector runs every couple of requests, finds those alive, promotes them, and soon
# walks the older generations too. At 64 requests in flight that was ~10 % of bmo's CPU
# (scripts/bench/RESULTS.md). Request objects die by reference counting, not by the collector.
GC_THRESHOLDS = (50_000, 20, 100)


def settle_gc() -> None:
    """Once the server is up: move everything start-up built (modules, config, the app) out of
    the collector's sight for good, and collect the young generation far less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
