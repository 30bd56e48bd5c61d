"""Running the server: bind, serve until SIGTERM/SIGINT, drain in-flight requests, exit."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable

from aiohttp import web


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_grace_s: float,
    on_ready: Callable[[str, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set or a signal arrives. `on_ready(host, port)` gets the bound port."""
    runner = web.AppRunner(
        app,
        handler_cancellation=True,  # a client that disconnects cancels its run at once (SPEC §4)
        access_log=None,
        shutdown_timeout=shutdown_grace_s,
    )
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests), or Windows
            pass
    try:
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
        await site.start()
        bound = port
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            bound = sockets[0].getsockname()[1]
        if on_ready is not None:
            on_ready(host, bound)
        await stop.wait()
    finally:
        await runner.cleanup()


def run(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_grace_s: float,
    on_ready: Callable[[str, int], None] | None = None,
    cleanup: Callable[[], Awaitable[None]] | None = None,
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
            await serve(app, host, port, shutdown_grace_s=shutdown_grace_s, on_ready=ready)
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
