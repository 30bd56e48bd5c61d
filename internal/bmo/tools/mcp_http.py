"""The streamable-HTTP transport of an MCP server (layer 2; used by bmo.tools.mcp only).

Every message we send is one POST to the configured URL (MCP 2025-06-18, basic/transports):
`Content-Type: application/json`, `Accept: application/json, text/event-stream`, the configured
headers (`${VAR}` expanded by the owner at each start), `Mcp-Session-Id` once the initialize
answer carried one, and `MCP-Protocol-Version` once the version is negotiated (the owner sets
`protocol_version`). A request's answer is either one JSON body or an event stream whose
`data:` lines are JSON-RPC messages: notifications and server requests in it are handled by the
session, and the stream is left as soon as the response with our id has arrived. Notifications
and responses get 202 and no body.

Errors are `TransportError`s with a message fit for a log line and a tool result (never the
headers: they hold secrets). `fatal` when the server cannot be reached or dropped the
connection (the owner reconnects), not for an HTTP error status or a bad body (only that call
fails). A 404 on a request that carried a session id is `SessionExpired`: the owner initializes
again and retries. We open no GET stream: a tools-only client needs none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from bmo.config import McpServerConfig
from bmo.protocol.sse import SSEDecoder
from bmo.tls import ssl_context
from bmo.tools.jsonrpc import RpcSession, SessionExpired, TransportError

ACCEPT = "application/json, text/event-stream"
# One answer (a JSON body or the event stream up to our response). Tool results reach the model
# cut to 100 KB; this only bounds the memory a runaway server can make us use.
MAX_ANSWER = 16 * 1024 * 1024
# DELETE of the session on close: best effort, it must not hold up bmo's shutdown.
DELETE_WAIT = 2.0
# Connecting is part of start-up, bounded by `startup_timeout_s` too; this caps a single attempt.
CONNECT_TIMEOUT = 30.0


class HttpTransport:
    kind = "http"

    def __init__(self, name: str, cfg: McpServerConfig, sink: RpcSession, headers: Mapping[str, str]) -> None:
        """`headers`: the configured headers, `${VAR}` already expanded."""
        self.name = name
        self.url = cfg.url
        self.cfg = cfg
        self.sink = sink
        self.session_id: str | None = None  # from the initialize answer's Mcp-Session-Id
        self.protocol_version: str | None = None  # set by the owner once initialize has answered
        parts = urlsplit(cfg.url)
        self.where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"  # no credentials, no query
        self._headers = dict(headers)
        self._http: aiohttp.ClientSession | None = None
        self._closed = False

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(CONNECT_TIMEOUT, self.cfg.startup_timeout_s))
        connector = aiohttp.TCPConnector(ssl=ssl_context())
        self._http = aiohttp.ClientSession(timeout=timeout, connector=connector)

    def reset_session(self) -> None:
        """Forget the session (it expired): the next initialize starts a new one."""
        self.session_id = None
        self.protocol_version = None

    async def send(self, msg: dict[str, Any]) -> None:
        if self._http is None or self._closed:
            raise TransportError("not connected")
        headers = {**self._headers, "Content-Type": "application/json", "Accept": ACCEPT}
        sid = self.session_id
        if sid:
            headers["Mcp-Session-Id"] = sid
        if self.protocol_version:
            headers["MCP-Protocol-Version"] = self.protocol_version
        rid = msg.get("id") if "method" in msg else None  # a request of ours: it awaits an answer
        try:
            async with self._http.post(self.url, data=orjson.dumps(msg), headers=headers) as resp:
                if resp.status == 404 and sid and rid is not None:
                    raise SessionExpired(sid)
                if resp.status >= 400:
                    raise TransportError(f"HTTP {resp.status} from {self.where}{await _snippet(resp)}", fatal=False)
                if msg.get("method") == "initialize" and resp.headers.get("Mcp-Session-Id"):
                    self.session_id = resp.headers["Mcp-Session-Id"]
                if rid is None:
                    return  # a notification or an answer: 202, nothing to read
                await self._read_answer(resp, rid)
        except TransportError:
            raise
        except aiohttp.ClientConnectorError as e:
            reason = e.os_error.strerror if e.os_error and e.os_error.strerror else str(e)
            raise TransportError(f"cannot connect to {self.where}: {reason}") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            # a dropped stream, or a pooled connection the server closed (it restarted)
            raise TransportError(f"lost the connection to {self.where} ({type(e).__name__})") from None
        except (aiohttp.ClientError, OSError) as e:
            raise TransportError(f"HTTP request to {self.where} failed: {e or type(e).__name__}") from None
        if rid is not None:  # the body ended without our response
            self.sink.fail(rid, TransportError(f"{self.where} ended its answer without a JSON-RPC response", False))

    async def _read_answer(self, resp: aiohttp.ClientResponse, rid: Any) -> None:
        ctype = resp.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if ctype == "application/json":
            chunks, size = [], 0
            async for chunk in resp.content.iter_any():  # read(n) may stop at any chunk: loop to the end
                size += len(chunk)
                if size > MAX_ANSWER:
                    raise TransportError(f"{self.where} answered with more than {MAX_ANSWER // 2**20} MiB", False)
                chunks.append(chunk)
            body = b"".join(chunks)
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                bad = f"{self.where} answered with a body that is not JSON: {body[:200]!r}"
                raise TransportError(bad, fatal=False) from None
            await self.sink.receive(data)
        elif ctype == "text/event-stream":
            await self._read_events(resp, rid)
        elif resp.status == 202:
            raise TransportError(f"{self.where} accepted a request without answering it (HTTP 202)", fatal=False)
        else:
            raise TransportError(f"{self.where} answered with Content-Type {ctype or 'none'!r}", fatal=False)

    async def _read_events(self, resp: aiohttp.ClientResponse, rid: Any) -> None:
        decoder = SSEDecoder()
        total = 0
        async for chunk in resp.content.iter_any():
            total += len(chunk)
            if total > MAX_ANSWER:
                raise TransportError(f"{self.where} streamed more than {MAX_ANSWER // 2**20} MiB", fatal=False)
            for event, data in decoder.feed(chunk):
                if event not in (None, "message") or not data.strip():
                    continue
                try:
                    msg = orjson.loads(data)
                except orjson.JSONDecodeError:
                    bad = f"{self.where} sent an event that is not JSON: {data[:200]!r}"
                    raise TransportError(bad, fatal=False) from None
                await self.sink.receive(msg)
                if not self.sink.waiting(rid):
                    return  # our answer is in: leave the stream (the spec: the server closes it now)

    async def close(self) -> None:
        """End the session (DELETE, best effort; 405 is fine) and close the HTTP client. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.sink.lost("the connection was closed")
        http, self._http = self._http, None
        if http is None:
            return
        if self.session_id:
            headers = {**self._headers, "Mcp-Session-Id": self.session_id}
            if self.protocol_version:
                headers["MCP-Protocol-Version"] = self.protocol_version
            with contextlib.suppress(Exception):
                async with asyncio.timeout(DELETE_WAIT), http.delete(self.url, headers=headers) as resp:
                    await resp.read()
        await http.close()


async def _snippet(resp: aiohttp.ClientResponse) -> str:
    try:
        body = await resp.content.read(300)
    except (aiohttp.ClientError, OSError):
        return ""
    text = body.decode("utf-8", "replace").strip()
    return f": {text}" if text else ""
