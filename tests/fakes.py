"""Test harness: real servers on 127.0.0.1, port 0, in a background event-loop thread.

- `LoopThread` runs an asyncio loop in a thread, so sync clients (the openai SDK) and async
  tests can both talk to servers over real sockets.
- `FakeUpstream` is a real aiohttp OpenAI-compatible server that follows a script and records
  what it received (STYLE habit 11: fakes, not mocks).
- `BmoServer` starts a real bmo app (config from a temp BMO_HOME) on a free port.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiohttp import web

from bmo.config import load_config
from bmo.runtime import Runtime
from bmo.server.app import make_app

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._t = threading.Thread(target=self.loop.run_forever, daemon=True, name="test-servers")
        self._t.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._t.join(5)
        self.loop.close()


@dataclass
class Step:
    """One scripted upstream answer. Unset fields mean an ordinary short text answer."""

    text: str = "Hello from upstream."
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # [{"id","name","arguments"}]
    status: int = 200
    error: str | None = None  # with status >= 400: the error message
    delay: float = 0.0  # before the headers
    token_delay: float = 0.0  # between stream chunks
    drop_after: int | None = None  # stream: close the connection after N content chunks
    error_after: int | None = None  # stream: send an error event after N content chunks
    garbage_after: int | None = None  # stream: send an event that is not JSON after N content chunks
    usage: tuple[int, int] = (7, 5)
    omit_index: bool = False  # stream tool-call deltas without `index` (sloppy upstreams)
    finish_reason: str | None = None
    reasoning: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    whole: bool = False  # answer in one JSON body even when asked to stream (some servers do)
    burst: bool = False  # stream: all content chunks in one write (one read for bmo), as under load


class FakeUpstream:
    def __init__(self) -> None:
        self.script: list[Step] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnects = 0  # streams whose client went away before the end
        self.reject_stream_options = False  # act like a strict server that 400s on stream_options
        self.disconnected = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    def enqueue(self, *steps: Step) -> None:
        self.script.extend(steps)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._text)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if self.reject_stream_options and "stream_options" in body:
            return web.json_response(
                {"error": {"message": "Unrecognized request argument supplied: stream_options", "code": None}},
                status=400,
            )
        step = self.script.pop(0) if self.script else Step()
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.status >= 400:
            return web.json_response(
                {"error": {"message": step.error or "boom", "type": "server_error", "code": None}},
                status=step.status,
                headers=step.headers,
            )
        if body.get("stream") and not step.whole:
            return await self._stream(request, body, step)
        msg: dict[str, Any] = {"role": "assistant", "content": step.text if not step.tool_calls else None}
        if step.reasoning:
            msg["reasoning_content"] = step.reasoning
        if step.tool_calls:
            msg["tool_calls"] = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in step.tool_calls
            ]
        finish = step.finish_reason or ("tool_calls" if step.tool_calls else "stop")
        return web.json_response(
            {
                "id": "chatcmpl-up",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                "usage": {"prompt_tokens": step.usage[0], "completion_tokens": step.usage[1], "total_tokens": 0},
            }
        )

    async def _text(self, request: web.Request) -> web.StreamResponse:
        """/v1/completions (raw text completion): the step's text as `text_completion` objects."""
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        step = self.script.pop(0) if self.script else Step()
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.status >= 400:
            return web.json_response(
                {"error": {"message": step.error or "boom", "type": "server_error"}}, status=step.status
            )
        finish = step.finish_reason or "stop"
        usage = {"prompt_tokens": step.usage[0], "completion_tokens": step.usage[1], "total_tokens": sum(step.usage)}
        head = {"id": "cmpl-up", "object": "text_completion", "created": 1, "model": body.get("model")}
        if not body.get("stream"):
            choice = {"text": step.text, "index": 0, "logprobs": None, "finish_reason": finish}
            return web.json_response({**head, "choices": [choice], "usage": usage})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i, w in enumerate(step.text.split(" ")):
                if step.drop_after is not None and i >= step.drop_after:
                    request.transport.close()  # type: ignore[union-attr]
                    return resp
                choice = {"text": w if i == 0 else " " + w, "index": 0, "logprobs": None, "finish_reason": None}
                await resp.write(b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n")
                if step.token_delay:
                    await asyncio.sleep(step.token_delay)
            last = {"text": "", "index": 0, "logprobs": None, "finish_reason": finish}
            await resp.write(b"data: " + orjson.dumps({**head, "choices": [last]}) + b"\n\n")
            if (body.get("stream_options") or {}).get("include_usage"):
                await resp.write(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
        except (asyncio.CancelledError, ConnectionError):
            self.disconnects += 1
            self.disconnected.set()
            raise
        return resp

    async def _stream(self, request: web.Request, body: dict[str, Any], step: Step) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **step.headers})
        await resp.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
            c: dict[str, Any] = {
                "id": "chatcmpl-up",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body.get("model"),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
            }
            if usage is not None:
                c["usage"] = usage
            return b"data: " + orjson.dumps(c) + b"\n\n"

        try:
            await resp.write(chunk({"role": "assistant", "content": ""}))
            if step.reasoning:
                await resp.write(chunk({"reasoning_content": step.reasoning}))
            words = step.text.split(" ") if step.text and not step.tool_calls else []
            if step.burst:
                await resp.write(b"".join(chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)))
                words = []
            for i, w in enumerate(words):
                if step.drop_after is not None and i >= step.drop_after:
                    request.transport.close()  # type: ignore[union-attr]
                    return resp
                if step.error_after is not None and i >= step.error_after:
                    await resp.write(b'data: {"error":{"message":"upstream exploded","type":"server_error"}}\n\n')
                    return resp
                if step.garbage_after is not None and i >= step.garbage_after:
                    await resp.write(b"data: {this is not json\n\n")
                    return resp
                await resp.write(chunk({"content": w if i == 0 else " " + w}))
                if step.token_delay:
                    await asyncio.sleep(step.token_delay)
            for i, c in enumerate(step.tool_calls):
                first: dict[str, Any] = {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": ""},
                }
                if not step.omit_index:
                    first["index"] = i
                await resp.write(chunk({"tool_calls": [first]}))
                args = c["arguments"]
                half = len(args) // 2
                for part in (args[:half], args[half:]):
                    d: dict[str, Any] = {"function": {"arguments": part}}
                    if not step.omit_index:
                        d["index"] = i
                    await resp.write(chunk({"tool_calls": [d]}))
            finish = step.finish_reason or ("tool_calls" if step.tool_calls else "stop")
            await resp.write(chunk({}, finish))
            if (body.get("stream_options") or {}).get("include_usage"):
                u = {"prompt_tokens": step.usage[0], "completion_tokens": step.usage[1]}
                await resp.write(chunk({}, usage=u))
            await resp.write(b"data: [DONE]\n\n")
        except (asyncio.CancelledError, ConnectionError):
            self.disconnects += 1
            self.disconnected.set()
            raise
        return resp


AGENT_UPSTREAM = """\
id: {id}
model: up/{model}
system: {system}
tools: {tools}
"""


class BmoServer:
    """A real bmo app on 127.0.0.1:0 with its own BMO_HOME."""

    def __init__(
        self,
        home: Path,
        *,
        config: str = "",
        agents: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        env_api_key: str | None = None,
    ) -> None:
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.yaml").write_text(config or "auth: {mode: none}\n")
        if agents:
            (home / "agents").mkdir(exist_ok=True)
            for name, text in agents.items():
                (home / "agents" / f"{name}.yaml").write_text(text)
        self.home = home
        self.cfg = load_config(home, env=env or {})
        self.runtime = Runtime(self.cfg)
        self.app = make_app(self.runtime, env_api_key=env_api_key)
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return self.url + "/v1"
