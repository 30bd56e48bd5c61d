"""The baseline: a raw aiohttp passthrough proxy, the least any Python gateway can do.

It forwards the request body to the upstream as-is over one shared, pooled `ClientSession`,
and relays the answer's status, content type and bytes: whole for a JSON answer, chunk by chunk
as they arrive for an event stream. No parsing, no auth, no logging. Loopback only.
`/v1/completions` (legacy completions) is passed through the same way, to the upstream's own:
the benchmark's one-stream first-byte scenario for it has the raw proxy as its reference hop.

    python scripts/bench/proxy.py --port 18002 --upstream http://127.0.0.1:18001
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
HEADERS = {"Content-Type": "application/json"}


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    base = upstream.rstrip("/")
    app.router.add_post("/v1/chat/completions", relay(base + "/v1/chat/completions"))
    app.router.add_post("/v1/completions", relay(base + "/v1/completions"))
    app.router.add_get("/health", lambda r: web.json_response({"status": "ok"}))
    return app


async def session_ctx(app: web.Application) -> AsyncIterator[None]:
    # limit=0: no pool cap, so 1,000 open streams are 1,000 upstream connections
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    yield
    await app[SESSION].close()


def relay(url: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler that passes a request to `url` and its answer back."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with request.app[SESSION].post(url, data=body, headers=HEADERS) as up:
            ctype = up.headers.get("Content-Type", "application/json")
            if not ctype.startswith("text/event-stream"):
                return web.Response(body=await up.read(), status=up.status, headers={"Content-Type": ctype})
            resp = web.StreamResponse(status=up.status, headers={"Content-Type": ctype, "Cache-Control": "no-cache"})
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    return chat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="base URL of the upstream, without /v1")
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        make_app(a.upstream),
        host="127.0.0.1",
        port=a.port,
        access_log=None,
        print=None,
        backlog=4096,
        handler_cancellation=True,
    )


if __name__ == "__main__":
    main()
