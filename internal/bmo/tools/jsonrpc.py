"""JSON-RPC 2.0 over any MCP transport (layer 2; imported by bmo.tools.mcp* only).

An `RpcSession` owns what the two transports (stdio, streamable HTTP) share: increasing request
ids, a pending-by-id map of futures, and the handling of everything a server sends us:

- a response completes the pending request with its id; a response to an id nobody waits for
  any more (a request that timed out or was cancelled) is dropped, as llama.cpp does;
- a server->client request is answered at once: `ping` with `{}`, anything else with error
  -32601. bmo declares no client capabilities, and some servers block until they get an answer,
  so leaving one unanswered would hang that server;
- `notifications/tools/list_changed` calls `on_list_changed`; `notifications/message` and
  `notifications/progress` are logged at debug level; other notifications are ignored.

A transport delivers parsed messages with `receive` and reports a dead connection with `lost`;
`lost` fails every in-flight request at once, so a crashed server never leaves a call waiting
for its timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

log = logging.getLogger("bmo.mcp")

METHOD_NOT_FOUND = -32601


class RpcError(Exception):
    """The server answered a request with a JSON-RPC `error` object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        self.code = code
        self.message = message
        self.data = data
        super().__init__(f"{message} (JSON-RPC error {code})")


class TransportError(Exception):
    """The message could not be delivered or answered. `fatal`: the connection is gone (the
    process exited, the connection was refused or dropped) and the server must be started again;
    otherwise only this request failed (an HTTP 5xx, a body that is not JSON-RPC)."""

    def __init__(self, message: str, fatal: bool = True) -> None:
        self.fatal = fatal
        super().__init__(message)


class SessionExpired(TransportError):
    """HTTP 404 on a request that carried `Mcp-Session-Id`: the server forgot the session (it
    restarted); initialize again and retry the request once."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__("the MCP session expired (HTTP 404)", fatal=False)


class Transport(Protocol):
    kind: str  # "stdio" | "http": shown in status

    async def start(self) -> None: ...

    async def send(self, msg: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class RpcSession:
    """One connection's JSON-RPC state. `send` is the transport's; `bind` sets it, since the
    transport is built with this session as its sink."""

    def __init__(self, name: str, on_list_changed: Callable[[], None] | None = None) -> None:
        self.name = name  # the configured server name, for log lines
        self.closed: str | None = None  # why the connection is gone; None while it is usable
        self._send: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self._on_list_changed = on_list_changed
        self._on_lost: list[Callable[[str], None]] = []
        self._next = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # answers to server requests being sent

    def bind(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._send = send

    def on_lost(self, callback: Callable[[str], None]) -> None:
        """`callback(reason)` runs once, when the transport reports the connection gone."""
        self._on_lost.append(callback)

    def next_id(self) -> int:
        self._next += 1
        return self._next

    def waiting(self, rid: Any) -> bool:
        """Whether request `rid` still waits for its answer."""
        fut = self._pending.get(rid) if isinstance(rid, int) else None
        return fut is not None and not fut.done()

    async def request(self, method: str, params: dict[str, Any] | None = None, rid: int | None = None) -> Any:
        """Send a request and wait for its result. Raises RpcError for an error answer and
        TransportError when the connection fails. No deadline here: the caller sets one (and
        sends `notifications/cancelled` when it expires, which needs the id: pass `rid`)."""
        if self.closed is not None:
            raise TransportError(self.closed)
        if self._send is None:
            raise TransportError("not connected")
        rid = self.next_id() if rid is None else rid
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        try:
            await self._send(msg)
            return await fut
        finally:
            self._pending.pop(rid, None)  # a late answer to this id is now stale and dropped
            if fut.done() and not fut.cancelled():
                fut.exception()  # failed while the send itself failed: that error is the one raised

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        if self.closed is not None:
            raise TransportError(self.closed)
        if self._send is None:
            raise TransportError("not connected")
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        await self._send(msg)

    async def receive(self, msg: Any) -> None:
        """One message from the server (a batch is a list of them). Never raises: a message we
        cannot use is logged and dropped."""
        if isinstance(msg, list):
            for m in msg:
                await self.receive(m)
            return
        if not isinstance(msg, dict):
            log.warning("mcp %s: dropped a message that is not a JSON object", self.name)
            return
        method = msg.get("method")
        if isinstance(method, str):
            if "id" in msg:
                # answered from a task: the reader must never wait on a write (both pipes full
                # would deadlock us and the server)
                task = asyncio.get_running_loop().create_task(self._answer_request(msg["id"], method))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._notification(method, msg.get("params"))
            return
        if "result" in msg or "error" in msg:
            self._response(msg)
            return
        log.warning("mcp %s: dropped a message that is neither a request, a response nor a notification", self.name)

    def lost(self, reason: str) -> None:
        """The connection is gone: fail every in-flight request now, and tell whoever listens."""
        if self.closed is not None:
            return
        self.closed = reason
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(TransportError(reason))
        self._pending.clear()
        for task in self._tasks:
            task.cancel()
        for cb in self._on_lost:
            cb(reason)

    def fail(self, rid: int, exc: BaseException) -> None:
        """Fail one pending request (the HTTP transport: its stream ended without an answer)."""
        fut = self._pending.get(rid)
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def _response(self, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        fut = self._pending.get(rid) if isinstance(rid, int) else None
        if fut is None or fut.done():
            log.debug("mcp %s: dropped a stale answer to request %r", self.name, rid)
            return
        err = msg.get("error")
        if err is not None:
            if not isinstance(err, dict):
                err = {"code": 0, "message": str(err)}
            code = err.get("code")
            fut.set_exception(
                RpcError(code if isinstance(code, int) else 0, str(err.get("message") or "error"), err.get("data"))
            )
        else:
            fut.set_result(msg.get("result"))

    async def _answer_request(self, rid: Any, method: str) -> None:
        if method == "ping":
            answer: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "result": {}}
        else:
            log.debug("mcp %s: answered the server's %s request with -32601", self.name, method)
            error = {"code": METHOD_NOT_FOUND, "message": f"method not supported by this client: {method}"}
            answer = {"jsonrpc": "2.0", "id": rid, "error": error}
        if self._send is None or self.closed is not None:
            return
        try:
            await self._send(answer)
        except TransportError as e:
            log.debug("mcp %s: could not answer the server's %s request: %s", self.name, method, e)

    def _notification(self, method: str, params: Any) -> None:
        if method == "notifications/tools/list_changed":
            log.info("mcp %s: the server's tool list changed", self.name)
            if self._on_list_changed is not None:
                self._on_list_changed()
        elif method == "notifications/message" and isinstance(params, dict):
            log.debug("mcp %s: [%s] %.500s", self.name, params.get("level"), params.get("data"))
        else:
            log.debug("mcp %s: ignored notification %s", self.name, method)
