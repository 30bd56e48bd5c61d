"""One configured MCP server as bmo uses it: connection, tool list, calls, health (layer 2; used
by bmo.tools.registry). PROTOCOLS.md §D; bmo speaks the legacy (initialize) handshake.

Contracts:
- `start()` never raises (only CancelledError passes): it spawns or connects, initializes,
  lists every page of tools, all within `startup_timeout_s`; on failure the server is `down`
  with `last_error`, and a warning is logged.
- `call()` never raises either: a timeout, a JSON-RPC error, a dead server all become a
  ToolOutput with `is_error`, which the model reads. On timeout, and when the calling task is
  cancelled (the client went away), the server gets `notifications/cancelled`.
- A server that dies fails its in-flight calls at once and is started again: lazily by the next
  call, or by whoever calls `start()` (the registry's supervisor). Never twice within
  RESTART_MIN, and with a growing back-off while it keeps failing.
- `on_change` is called whenever the set of tools the server offers changes: it came up, went
  down, or re-listed its tools after `notifications/tools/list_changed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bmo.chat import ToolSpec
from bmo.config import McpServerConfig
from bmo.redact import Redactor
from bmo.tools.base import ToolOutput
from bmo.tools.envvars import expand_all
from bmo.tools.jsonrpc import RpcError, RpcSession, SessionExpired, Transport, TransportError
from bmo.tools.mcp_http import HttpTransport
from bmo.tools.mcp_map import to_output
from bmo.tools.mcp_methods import McpProtocolError, McpToolInfo, initialize, list_tools
from bmo.tools.mcp_stdio import StdioTransport

log = logging.getLogger("bmo.mcp")

RESTART_MIN = 1.0  # never respawn a server more often than this
RESTART_MAX = 60.0  # the back-off of a server that keeps failing grows up to this
STABLE_UPTIME = 30.0  # a server that ran this long before dying starts over with the short back-off
# Sending notifications/cancelled is best effort: the error result is due within timeout + 0.5 s,
# and a server too stuck to take a notification in that time is not listening anyway.
CANCEL_WAIT = 0.5


class McpServer:
    def __init__(self, name: str, config: McpServerConfig, on_change: Callable[[], None] | None = None) -> None:
        self.name = name
        self.config = config
        self.transport_kind = "stdio" if config.command else "http"
        self.state = "down"  # starting | up | down
        self.last_error: str | None = None
        self.server_name: str | None = None  # from serverInfo
        self.server_version: str | None = None
        self.protocol_version: str | None = None  # negotiated
        self.tools: list[McpToolInfo] = []  # the last list; offered only while `up`
        self.restarts = 0  # starts after the first one
        self.calls = 0
        self.errors = 0  # calls whose result is an error (timeouts, server errors, isError results)
        self._on_change = on_change
        self._session: RpcSession | None = None
        self._transport: Transport | None = None
        self._start_lock = asyncio.Lock()
        self._reinit_lock = asyncio.Lock()
        self._down = asyncio.Event()  # set while not up: the registry's supervisor waits on it
        self._down.set()
        self._attempts = 0
        self._streak = 0  # failures (failed starts, early deaths) in a row
        self._last_spawn = float("-inf")
        self._up_since = 0.0
        self._next_start = 0.0
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()  # re-lists, cancel notices: cancelled on close
        self._closers: set[asyncio.Task[Any]] = set()  # transports being stopped: awaited on close
        self._relisting: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._starting: Transport | None = None  # the transport of a start under way
        self._relist_again = False
        self._redact: Callable[[str], str] = Redactor()

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> bool:
        """Bring the server up (if it is not). True when it is up. Never raises."""
        async with self._start_lock:
            if self.state == "up":
                return True
            return await self._start()

    def retry_in(self) -> float:
        """Seconds until the back-off allows the next start (0: now)."""
        return max(0.0, self._next_start - time.monotonic())

    def supervise(self) -> None:
        """Keep the server up from now on: whenever it is down, start it again once its back-off
        allows. Without this a dead server's tools would stay hidden (they are offered only while
        it is up), so no call would ever come to restart it lazily."""
        if self._supervisor is None and not self._closed:
            self._supervisor = self._spawn(self._keep_up())

    async def _keep_up(self) -> None:
        while not self._closed:
            await self._down.wait()
            await asyncio.sleep(self.retry_in())
            await self.start()

    async def close(self) -> None:
        """Stop the server (its whole process group) and everything running for it. Idempotent."""
        self._closed = True
        # the supervisor, re-lists and cancel notices end first: a start the supervisor had under
        # way hands its transport to _closers as it is cancelled
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        session, transport = self._session, self._transport
        self._session = self._transport = None
        was_up = self.state == "up"
        self.state = "down"
        if session is not None:
            session.lost("bmo is shutting down")
        if self._starting is not None:  # a start someone else is awaiting (open(), a call): it fails now
            await self._starting.close()
        if transport is not None:
            await transport.close()
        while self._closers:
            await asyncio.gather(*list(self._closers), return_exceptions=True)
        if was_up:
            self._changed()

    async def _start(self) -> bool:
        if self._closed:
            return False
        self._attempts += 1
        if self._attempts > 1:
            self.restarts += 1
        self.state = "starting"
        self._last_spawn = time.monotonic()
        # `${VAR}` expanded now, not at config load: the secrets live only in the environment,
        # the child and the requests; every message we show is cleaned of them
        environ = dict(os.environ)
        env = expand_all(self.config.env, environ, self.name)
        headers = expand_all(self.config.headers, environ, self.name)
        self._redact = Redactor([*env.values(), *headers.values()])
        session = RpcSession(self.name, on_list_changed=self._list_changed)
        transport: Transport
        if self.config.command:
            transport = StdioTransport(self.name, self.config, session, env, self._redact)
        else:
            transport = HttpTransport(self.name, self.config, session, headers)
        session.bind(transport.send)
        limit = self.config.startup_timeout_s
        self._starting = transport
        try:
            async with asyncio.timeout(limit):
                await transport.start()
                await self._handshake(session, transport)
                tools = await list_tools(session)
        except asyncio.CancelledError:
            self._starting = None
            self._background_close(transport)
            self._failed("start-up was cancelled")
            raise
        except TimeoutError:
            error = f"did not start within {limit:g}s (start, initialize and tools/list; see startup_timeout_s)"
            if isinstance(transport, StdioTransport) and transport.last_stderr():
                error += f"; last stderr: {transport.last_stderr()}"
        except (TransportError, RpcError, McpProtocolError) as e:
            error = session.closed or str(e)
        else:
            self._starting = None
            if self._closed:
                await transport.close()
                return False
            if session.closed is None:
                self._session, self._transport = session, transport
                session.on_lost(lambda reason: self._lost(session, reason))
                self.tools = tools
                self.state, self.last_error = "up", None
                self._up_since = time.monotonic()
                self._down.clear()
                log.info(
                    "mcp %s: up (%s, %s %s, MCP %s, %d tools)",
                    self.name,
                    self.transport_kind,
                    self.server_name,
                    self.server_version,
                    self.protocol_version,
                    len(tools),
                )
                self._changed()
                return True
            error = session.closed
        self._starting = None
        if self._closed:
            await transport.close()
        else:
            self._background_close(transport)
        self._failed(error)
        return False

    async def _handshake(self, session: RpcSession, transport: Transport) -> None:
        hello = await initialize(session)
        self.server_name, self.server_version = hello.server_name, hello.server_version
        self.protocol_version = hello.protocol_version
        if isinstance(transport, HttpTransport):
            transport.protocol_version = hello.protocol_version  # sent on every later request
        await session.notify("notifications/initialized")

    # ---- calls -----------------------------------------------------------------------------

    async def call(self, tool: str, args: dict[str, Any]) -> ToolOutput:
        """`tools/call` within `timeout_s` (counting a restart, if the server must be started
        first). Never raises but CancelledError."""
        self.calls += 1
        out = await self._call(tool, args)
        if out.is_error:
            self.errors += 1
        return out

    async def _call(self, tool: str, args: dict[str, Any]) -> ToolOutput:
        limit = self.config.timeout_s
        deadline = asyncio.get_running_loop().time() + limit
        try:
            async with asyncio.timeout_at(deadline):
                ready = await self._ready()
        except TimeoutError:
            return ToolOutput(f"error: MCP server {self.name} could not be started within {limit:g}s", True)
        if isinstance(ready, str):
            return ToolOutput(ready, True)
        session = ready
        for attempt in (1, 2):
            rid = session.next_id()
            try:
                async with asyncio.timeout_at(deadline):
                    result = await session.request("tools/call", {"name": tool, "arguments": args}, rid=rid)
            except TimeoutError:
                await self._cancel(session, rid, f"timed out after {limit:g}s")
                return ToolOutput(
                    f"error: the tool {tool} of MCP server {self.name} took longer than {limit:g}s and was cancelled",
                    True,
                )
            except asyncio.CancelledError:
                self._spawn(self._cancel(session, rid, "the caller went away"))
                raise
            except RpcError as e:
                return ToolOutput(f"error: {self._redact(e.message)}", True)
            except SessionExpired as e:
                if attempt == 2:
                    return ToolOutput(f"error: MCP server {self.name}: {e}", True)
                again = await self._reinitialize(session, e.session_id)
                if isinstance(again, str):
                    return ToolOutput(again, True)
                continue
            except TransportError as e:
                if e.fatal:
                    self._lost(session, str(e))
                return ToolOutput(f"error: MCP server {self.name} failed: {self._redact(str(e))}", True)
            return to_output(result)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _ready(self) -> RpcSession | str:
        """The live session, starting the server first if it is down and its back-off allows
        (waiting at most RESTART_MIN for it); else the error text for the model."""
        session = self._session
        if self.state == "up" and session is not None and session.closed is None:
            return session
        if self._closed:
            return f"error: MCP server {self.name} is stopped"
        async with self._start_lock:
            if self.state != "up":
                wait = self.retry_in()
                if wait > RESTART_MIN:
                    return f"error: MCP server {self.name} is unavailable ({self.last_error}); retrying in {wait:.0f}s"
                await asyncio.sleep(wait)
                await self._start()
            session = self._session
            if self.state == "up" and session is not None:
                return session
            return f"error: MCP server {self.name} is unavailable: {self.last_error}"

    async def _cancel(self, session: RpcSession, rid: int, reason: str) -> None:
        with contextlib.suppress(TransportError, TimeoutError):
            async with asyncio.timeout(CANCEL_WAIT):
                await session.notify("notifications/cancelled", {"requestId": rid, "reason": reason})

    async def _reinitialize(self, session: RpcSession, stale: str) -> RpcSession | str:
        """HTTP: the server forgot our session (it restarted). Initialize a new one, once for
        all the calls that noticed, and list the tools again (they may have changed)."""
        async with self._reinit_lock:
            transport = self._transport
            if session is not self._session or not isinstance(transport, HttpTransport):
                return await self._ready()
            if transport.session_id != stale:
                return session  # another call already did it
            transport.reset_session()
            try:
                async with asyncio.timeout(self.config.startup_timeout_s):
                    await self._handshake(session, transport)
            except (TransportError, RpcError, McpProtocolError, TimeoutError) as e:
                error = f"the session expired and initializing a new one failed: {e or type(e).__name__}"
                self._lost(session, error)
                return f"error: MCP server {self.name}: {error}"
            log.info("mcp %s: the session expired; initialized a new one", self.name)
            self._list_changed()
            return session

    # ---- health ----------------------------------------------------------------------------

    def _lost(self, session: RpcSession, reason: str) -> None:
        """The connection of `session` is gone: in-flight calls fail, the server is down."""
        if session is not self._session:
            return
        transport = self._transport
        self._session = self._transport = None
        session.lost(reason)  # fails what is in flight (a no-op when the transport said it)
        if transport is not None:
            self._background_close(transport)  # the process group too: no orphans
        self._failed(reason, died=True)

    def _failed(self, error: str, died: bool = False) -> None:
        was_up = self.state == "up"
        now = time.monotonic()
        if died and now - self._up_since >= STABLE_UPTIME:
            self._streak = 0
        self._streak += 1
        backoff = 0.0 if self._streak == 1 else min(RESTART_MAX, 2.0 ** (self._streak - 1))
        self._next_start = max(self._last_spawn + RESTART_MIN, now + backoff)
        self.state, self.last_error = "down", self._redact(error)
        self._down.set()
        if not self._closed:
            log.warning("mcp %s: down: %s", self.name, self.last_error)
        if was_up:
            self._changed()

    def _list_changed(self) -> None:
        if self._relisting is not None and not self._relisting.done():
            self._relist_again = True
            return
        self._relisting = self._spawn(self._relist())

    async def _relist(self) -> None:
        while True:
            self._relist_again = False
            session = self._session
            if session is None:
                return
            try:
                async with asyncio.timeout(self.config.startup_timeout_s):
                    tools = await list_tools(session)
            except (TransportError, RpcError, McpProtocolError, TimeoutError) as e:
                log.warning("mcp %s: listing the tools again failed: %s", self.name, e or type(e).__name__)
                return
            if session is self._session:
                self.tools = tools
                log.info("mcp %s: %d tools", self.name, len(tools))
                self._changed()
            if not self._relist_again:
                return

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _background_close(self, transport: Transport) -> None:
        task = asyncio.get_running_loop().create_task(transport.close())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    # ---- reporting -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The stdio server's process id while it is connected (None over HTTP or when down)."""
        t = self._transport
        return t.pid if isinstance(t, StdioTransport) else None

    def status(self) -> dict[str, Any]:
        """JSON-safe, no secrets: never the headers, the env values or the command's arguments."""
        return {
            "name": self.name,
            "transport": self.transport_kind,
            "state": self.state,
            "server_name": self.server_name,
            "version": self.server_version,
            "protocol_version": self.protocol_version,
            "tools": len(self.tools) if self.state == "up" else 0,
            "last_error": self.last_error,
            "restarts": self.restarts,
            "calls": self.calls,
            "errors": self.errors,
        }


class McpTool:
    """One tool of an MCP server, as the agent loop runs it (the `Tool` protocol)."""

    def __init__(self, server: McpServer, info: McpToolInfo, exposed: str) -> None:
        self.spec = ToolSpec(name=exposed, description=info.description, schema=info.schema)
        self.server: str | None = server.name
        self.tool = info.name  # the name the server knows it by
        # the loop's outer bound: the call enforces the server's timeout_s first, so it can
        # send notifications/cancelled and answer with a readable error
        self.timeout_s = server.config.timeout_s + 1
        self._mcp = server

    async def run(self, args: dict[str, Any]) -> ToolOutput:
        return await self._mcp.call(self.tool, args)
