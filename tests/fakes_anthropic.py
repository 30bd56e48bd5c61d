"""A fake Anthropic Messages upstream: a real aiohttp app on 127.0.0.1, port 0, that follows a
script of `AStep`s and records what it received (STYLE habit 11: fakes, not mocks).

Streams follow Anthropic's order (shared/PROTOCOLS.md §A.4): message_start, then per block
content_block_start, deltas, content_block_stop (a `ping` after the first block start), then
message_delta and message_stop. Blocks come thinking, text, tool_use, in that order.

    up = FakeAnthropicUpstream()
    await up.start()              # in the test's own loop
    up.enqueue(AStep(text="Hi there"), AStep(tool_uses=[{"id": "toolu_1", "name": "f", "input": {}}]))
    ... AnthropicProvider with base_url=up.url ...
    await up.stop()
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict


@dataclass
class AStep:
    """One scripted answer. Unset fields mean an ordinary short text answer."""

    text: str = "Hello from Claude."  # "" for no text block (a tool-only answer)
    tool_uses: list[dict[str, Any]] = field(default_factory=list)  # [{"id", "name", "input": {...}}]
    thinking: str | None = None  # a thinking block before the text
    signature: str = "EqQBCkYIBxgCKkBsig+/=="  # the thinking block's signature (opaque, base64-like)
    redacted: str | None = None  # a redacted_thinking block's data
    status: int = 200  # >= 400: an HTTP error before the first byte
    error_type: str = "api_error"  # with status >= 400 (overloaded_error, authentication_error, ...)
    error: str = "boom"  # the error message
    headers: dict[str, str] = field(default_factory=dict)  # e.g. {"retry-after": "7"}
    error_after: int | None = None  # stream: an `event: error` overloaded_error after N text deltas
    drop_after: int | None = None  # stream: close the connection after N text deltas
    omit_stop: bool = False  # stream: end cleanly but without message_stop
    usage: tuple[int, int] = (7, 5)  # input_tokens, output_tokens
    cache_read: int = 0
    cache_write: int = 0
    stop_reason: str | None = None  # default: tool_use with tool_uses, else end_turn
    stop_sequence: str | None = None
    token_delay: float = 0.0


class FakeAnthropicUpstream:
    def __init__(self) -> None:
        self.script: list[AStep] = []
        self.requests: list[dict[str, Any]] = []  # bodies of /v1/messages
        self.headers: list[CIMultiDict[str]] = []  # of every request, both routes (any case)
        self.count_requests: list[dict[str, Any]] = []  # bodies of /v1/messages/count_tokens
        self.count = 42  # what count_tokens answers
        self.url = ""  # http://127.0.0.1:PORT, no /v1 (as ANTHROPIC_BASE_URL)
        self._runner: web.AppRunner | None = None

    def enqueue(self, *steps: AStep) -> None:
        self.script.extend(steps)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _count_tokens(self, request: web.Request) -> web.Response:
        self.count_requests.append(await request.json())
        self.headers.append(CIMultiDict(request.headers))
        return web.json_response({"input_tokens": self.count})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(CIMultiDict(request.headers))
        step = self.script.pop(0) if self.script else AStep()
        if step.status >= 400:
            return web.json_response(
                {"type": "error", "error": {"type": step.error_type, "message": step.error}, "request_id": "req_1"},
                status=step.status,
                headers=step.headers,
            )
        if body.get("stream"):
            return await self._stream(request, body, step)
        content: list[dict[str, Any]] = []
        if step.thinking is not None:
            content.append({"type": "thinking", "thinking": step.thinking, "signature": step.signature})
        if step.redacted is not None:
            content.append({"type": "redacted_thinking", "data": step.redacted})
        if step.text:
            content.append({"type": "text", "text": step.text})
        for t in step.tool_uses:
            content.append({"type": "tool_use", "id": t["id"], "name": t["name"], "input": t["input"]})
        return web.json_response(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": body.get("model"),
                "content": content,
                "stop_reason": _stop(step),
                "stop_sequence": step.stop_sequence,
                "usage": _usage(step),
            },
            headers=step.headers,
        )

    async def _stream(self, request: web.Request, body: dict[str, Any], step: AStep) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **step.headers})
        await resp.prepare(request)

        async def ev(name: str, obj: dict[str, Any]) -> None:
            await resp.write(b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **obj}) + b"\n\n")

        index = 0
        pinged = False

        async def start(block: dict[str, Any]) -> None:
            nonlocal pinged
            await ev("content_block_start", {"index": index, "content_block": block})
            if not pinged:
                await resp.write(b'event: ping\ndata: {"type": "ping"}\n\n')
                pinged = True

        async def delta(d: dict[str, Any]) -> None:
            await ev("content_block_delta", {"index": index, "delta": d})

        u = _usage(step)
        start_usage = {**u, "output_tokens": 1}
        await ev(
            "message_start",
            {
                "message": {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model"),
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                }
            },
        )
        if step.thinking is not None:
            await start({"type": "thinking", "thinking": "", "signature": ""})
            for part in _halves(step.thinking):
                await delta({"type": "thinking_delta", "thinking": part})
            await delta({"type": "signature_delta", "signature": step.signature})
            await ev("content_block_stop", {"index": index})
            index += 1
        if step.redacted is not None:
            await start({"type": "redacted_thinking", "data": step.redacted})
            await ev("content_block_stop", {"index": index})
            index += 1
        if step.text:
            await start({"type": "text", "text": ""})
            for i, w in enumerate(step.text.split(" ")):
                if step.drop_after is not None and i >= step.drop_after:
                    request.transport.close()  # type: ignore[union-attr]
                    return resp
                if step.error_after is not None and i >= step.error_after:
                    err = {"type": "overloaded_error", "message": "Overloaded"}
                    await resp.write(b"event: error\ndata: " + orjson.dumps({"type": "error", "error": err}) + b"\n\n")
                    return resp
                await delta({"type": "text_delta", "text": w if i == 0 else " " + w})
                if step.token_delay:
                    await asyncio.sleep(step.token_delay)
            await ev("content_block_stop", {"index": index})
            index += 1
        for t in step.tool_uses:
            await start({"type": "tool_use", "id": t["id"], "name": t["name"], "input": {}})
            await delta({"type": "input_json_delta", "partial_json": ""})
            for part in _halves(orjson.dumps(t["input"]).decode()):
                await delta({"type": "input_json_delta", "partial_json": part})
            await ev("content_block_stop", {"index": index})
            index += 1
        await ev(
            "message_delta",
            {
                "delta": {"stop_reason": _stop(step), "stop_sequence": step.stop_sequence},
                "usage": {"output_tokens": u["output_tokens"]},
            },
        )
        if not step.omit_stop:
            await ev("message_stop", {})
        return resp


def _stop(step: AStep) -> str:
    return step.stop_reason or ("tool_use" if step.tool_uses else "end_turn")


def _usage(step: AStep) -> dict[str, Any]:
    return {
        "input_tokens": step.usage[0],
        "cache_creation_input_tokens": step.cache_write,
        "cache_read_input_tokens": step.cache_read,
        "output_tokens": step.usage[1],
        "service_tier": "standard",
    }


def _halves(s: str) -> list[str]:
    """A string in two fragments, the way Anthropic splits deltas mid-token."""
    half = len(s) // 2
    return [p for p in (s[:half], s[half:]) if p]
