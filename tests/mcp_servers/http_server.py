"""A streamable-HTTP MCP server for bmo's MCP client tests: a real aiohttp app on 127.0.0.1,
port 0, run in the test's own event loop. It follows MCP 2025-06-18 closely enough to catch a
client that breaks the rules, and records what it received.

- `initialize` opens a session (`Mcp-Session-Id`); any later request without a known session id
  gets 404 (unknown id) or 400 (none), without `MCP-Protocol-Version` (or a wrong one) 400, and
  without `Accept: application/json, text/event-stream` 406.
- `expire()` forgets every session: the next request gets 404, as after a server restart.
- Tools answer with one JSON body (`echo`, `big`, `fail`; `boom` is an HTTP 500, `garbage` a body that
  is not JSON) or with an event
  stream (`stream_echo` sends a log notification first; `sleep` waits; `notify_change` sends
  tools/list_changed, and the tool `late` appears; `ask_roots` sends a roots/list request and
  answers with whatever bmo answered to it).
- DELETE ends the session (or 405 with `allow_delete = False`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

from aiohttp import web

SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}}
TOOL_NAMES = ["echo", "big", "stream_echo", "fail", "boom", "garbage", "sleep", "notify_change", "ask_roots"]


class FakeMcpHttp:
    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}  # session id -> negotiated version
        self.received: list[tuple[dict[str, str], Any]] = []  # (headers, body) of every POST
        self.deletes: list[str] = []
        self.cancelled: list[Any] = []  # params of notifications/cancelled
        self.initializes = 0
        self.allow_delete = True
        self.late = False
        self.url = ""
        self._waiting: dict[Any, asyncio.Future[Any]] = {}
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/mcp", self._post)
        app.router.add_delete("/mcp", self._delete)
        # handler_cancellation: a handler stops when bmo leaves its stream, as in a real server
        self._runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/mcp"

    async def stop(self) -> None:
        self._stopping.set()  # sleeping tools end now, so stopping never waits for them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def expire(self) -> None:
        self.sessions.clear()

    def tools(self) -> list[dict[str, Any]]:
        names = TOOL_NAMES + (["late"] if self.late else [])
        return [{"name": n, "description": f"the {n} tool", "inputSchema": SCHEMA} for n in names]

    async def _post(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append((dict(request.headers), body))
        accept = request.headers.get("Accept", "")
        if "application/json" not in accept or "text/event-stream" not in accept:
            return web.json_response({"error": "Accept must list application/json and text/event-stream"}, status=406)
        if request.headers.get("Content-Type", "").partition(";")[0] != "application/json":
            return web.json_response({"error": "Content-Type must be application/json"}, status=415)
        method, rid = body.get("method"), body.get("id")
        if method == "initialize":
            self.initializes += 1
            sid = uuid.uuid4().hex
            version = body["params"]["protocolVersion"]
            self.sessions[sid] = version
            result = {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": "http-fixture", "version": "9.9"},
            }
            return web.json_response({"jsonrpc": "2.0", "id": rid, "result": result}, headers={"Mcp-Session-Id": sid})
        sid = request.headers.get("Mcp-Session-Id")
        if not sid:
            return web.json_response({"error": "no session"}, status=400)
        if sid not in self.sessions:
            return web.json_response({"error": "unknown session"}, status=404)
        if request.headers.get("MCP-Protocol-Version") != self.sessions[sid]:
            return web.json_response({"error": "MCP-Protocol-Version missing or wrong"}, status=400)
        if method is None:  # bmo's answer to a request of ours
            fut = self._waiting.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(body)
            return web.Response(status=202)
        if rid is None:  # a notification
            if method == "notifications/cancelled":
                self.cancelled.append(body.get("params"))
            return web.Response(status=202)
        if method == "tools/list":
            return web.json_response({"jsonrpc": "2.0", "id": rid, "result": {"tools": self.tools()}})
        if method == "tools/call":
            return await self._call(request, rid, body["params"])
        return web.json_response({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "no such method"}})

    async def _call(self, request: web.Request, rid: Any, params: dict[str, Any]) -> web.StreamResponse:
        name, args = params["name"], params.get("arguments") or {}

        def result(text: str, is_error: bool = False) -> dict[str, Any]:
            res = {"content": [{"type": "text", "text": text}], "isError": is_error}
            return {"jsonrpc": "2.0", "id": rid, "result": res}

        if name == "echo":
            return web.json_response(result(args.get("text", "")))
        if name == "big":  # one JSON body of many TCP reads
            return web.json_response(result("y" * 600_000))
        if name == "fail":
            return web.json_response(result("it broke", True))
        if name == "boom":
            return web.Response(status=500, text="internal explosion")
        if name == "garbage":
            return web.Response(status=200, text="<html>not json</html>", content_type="application/json")
        if name not in ("stream_echo", "sleep", "notify_change", "ask_roots", "late"):
            err = {"code": -32602, "message": f"Unknown tool: {name}"}
            return web.json_response({"jsonrpc": "2.0", "id": rid, "error": err})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        try:
            await self._stream(resp, rid, name, args, result)
        except ConnectionError:  # bmo left the stream (a timeout, a cancelled call): fine
            pass
        return resp

    async def _stream(self, resp: web.StreamResponse, rid: Any, name: str, args: dict[str, Any], result: Any) -> None:

        async def event(msg: dict[str, Any]) -> None:
            await resp.write(b"event: message\ndata: " + json.dumps(msg).encode() + b"\n\n")

        if name == "stream_echo":
            await event(
                {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "hi"}}
            )
            await event(result(args.get("text", "")))
        elif name == "late":
            await event(result("late tool"))
        elif name == "sleep":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), float(args.get("seconds", 1)))
            await event(result("slept"))
        elif name == "notify_change":
            self.late = True
            await event({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
            await event(result("changed"))
        elif name == "ask_roots":
            sid = f"srv-{uuid.uuid4().hex[:8]}"
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._waiting[sid] = fut
            await event({"jsonrpc": "2.0", "id": sid, "method": "roots/list"})
            answer = await asyncio.wait_for(fut, 10)
            await event(result("roots/list answered: " + json.dumps(answer.get("error") or answer.get("result"))))
        await resp.write_eof()

    async def _delete(self, request: web.Request) -> web.Response:
        sid = request.headers.get("Mcp-Session-Id", "")
        self.deletes.append(sid)
        if not self.allow_delete:
            return web.Response(status=405)
        self.sessions.pop(sid, None)
        return web.Response(status=200)
