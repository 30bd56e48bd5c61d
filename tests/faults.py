"""A fault-injecting upstream: an OpenAI-compatible server on 127.0.0.1:0 that fails on purpose.

Not an aiohttp app (tests/fakes.py has those): the faults below live under HTTP, so this is a
raw asyncio server that reads one request at a time and answers according to the request's
`model`, which names the fault (an agent on `faulty/<fault>`, or the route itself):

| model | what the upstream does |
|---|---|
| `ok` | a short, proper answer (whole or streamed) |
| `reset-headers` | reads the request, then resets the connection before any byte |
| `reset-stream` | sends the headers and part of the answer, then resets |
| `garbage` | answers bytes that are not HTTP |
| `garbage-body` | a proper 200 whose body (or one stream event) is not JSON |
| `stall-headers` | reads the request and never answers |
| `stall-stream` | sends the headers and part of the answer, then nothing |
| `huge` | an answer of `HUGE_BYTES` (whole, with or without Content-Length; or a stream of it) |
| `rate-limited` | 429 with `retry-after: 7` |
| `leaky-401` | 401 quoting the upstream's own key (`leaked`) in every form an upstream might |
| `leaky-event` | a stream whose error event quotes the key |

Every connection it accepted and whether it is still open is kept in `conns`, so a test can
check bmo closed its upstream side.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

import orjson

FOREIGN_KEY = "sk-proj-SomeoneElsesKey0123456789"  # key-shaped: quoted by the leaky faults too
HUGE_BYTES = 3 * 1024 * 1024  # against a `max_response_mb: 1` provider
STALL_S = 30.0  # a stall outlasts any test (bmo's timeout ends it first)


class FaultUpstream:
    def __init__(self, leaked: str = "") -> None:
        self.leaked = leaked  # the key a leaky fault quotes
        self.url = ""
        self.requests: list[dict[str, Any]] = []
        self.open_conns = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._chunked_huge = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.open_conns += 1
        try:
            while True:
                req = await _read_request(reader)
                if req is None:
                    return
                self.requests.append(req)
                keep = await self._answer(req, reader, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # (cancelled: the fake is stopping)
        finally:
            self.open_conns -= 1
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _answer(self, req: dict[str, Any], r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is done with."""
        model = str(req.get("model", "ok"))
        stream = bool(req.get("stream"))
        if model == "reset-headers":
            _reset(w)
            return False
        if model == "garbage":
            w.write(b"\x00\x13garbage, not HTTP at all\r\n\r\n\xff\xfe")
            await w.drain()
            return False
        if model == "stall-headers":
            await _stall(r)
            return False
        if model == "rate-limited":
            _json(
                w,
                429,
                {"error": {"message": "Rate limit reached for requests", "type": "requests"}},
                {"retry-after": "7"},
            )
            return True
        if model == "leaky-401":
            k = self.leaked
            msg = f"Incorrect API key provided: {k}. Sent: Authorization: Bearer {k}; x-api-key={k}; or {FOREIGN_KEY}"
            _json(w, 401, {"error": {"message": msg, "type": "invalid_request_error", "code": "invalid_api_key"}})
            return True
        if model == "huge":
            return await self._huge(w, stream)
        if not stream:
            if model == "garbage-body":
                _raw(w, 200, b"{this is not json", {"content-type": "application/json"})
                return True
            body = orjson.dumps(_completion("Hello from a faulty upstream."))
            if model in ("reset-stream", "stall-stream"):  # the headers and half the body
                w.write(_head(200, {"content-type": "application/json", "content-length": str(len(body))}))
                w.write(body[: len(body) // 2])
                await w.drain()
                if model == "reset-stream":
                    _reset(w)
                else:
                    await _stall(r)
                return False
            _raw(w, 200, body, {"content-type": "application/json"})
            return True
        # streams
        w.write(_head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}))
        for word in ("Hello", " from", " a", " faulty"):
            _chunk(w, _sse(_delta(word)))
        await w.drain()
        if model == "reset-stream":
            await asyncio.sleep(0.05)
            _reset(w)
            return False
        if model == "stall-stream":
            await _stall(r)
            return False
        if model == "garbage-body":
            _chunk(w, b"data: {this is not json\n\n")
        elif model == "leaky-event":
            k = self.leaked
            err = {"error": {"message": f"key {k} revoked (Bearer {k}, {FOREIGN_KEY})", "type": "server_error"}}
            _chunk(w, b"data: " + orjson.dumps(err) + b"\n\n")
        else:
            _chunk(
                w,
                _sse(
                    {
                        "id": "c",
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                    }
                ),
            )
            _chunk(w, b"data: [DONE]\n\n")
        w.write(b"0\r\n\r\n")
        await w.drain()
        return True

    async def _huge(self, w: asyncio.StreamWriter, stream: bool) -> bool:
        if stream:
            w.write(_head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}))
            frame = _sse(_delta("x" * 4000))
            for _ in range(HUGE_BYTES // len(frame) + 2):
                _chunk(w, frame)
                await w.drain()  # bmo stops reading (and closes) at its limit: this then fails
            w.write(b"0\r\n\r\n")
            await w.drain()
            return True
        text = "x" * HUGE_BYTES
        body = orjson.dumps(_completion(text))
        self._chunked_huge = not self._chunked_huge  # alternately with and without Content-Length
        if self._chunked_huge:
            w.write(_head(200, {"content-type": "application/json", "transfer-encoding": "chunked"}))
            for i in range(0, len(body), 65536):
                _chunk(w, body[i : i + 65536])
                await w.drain()
            w.write(b"0\r\n\r\n")
        else:
            _raw(w, 200, body, {"content-type": "application/json"})
        await w.drain()
        return True


async def _read_request(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b"{}"
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = {}
    return obj if isinstance(obj, dict) else {}


async def _stall(r: asyncio.StreamReader) -> None:
    """Say nothing until the client goes away (or STALL_S)."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(STALL_S):
            await r.read()


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _raw(w: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str]) -> None:
    w.write(_head(status, {**headers, "content-length": str(len(body))}) + body)


def _json(w: asyncio.StreamWriter, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
    _raw(w, status, orjson.dumps(obj), {"content-type": "application/json", **(headers or {})})


def _chunk(w: asyncio.StreamWriter, data: bytes) -> None:
    w.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def _sse(obj: Any) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _delta(text: str) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }


def _reset(w: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), not a clean FIN."""
    sock = w.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    w.transport.abort()
