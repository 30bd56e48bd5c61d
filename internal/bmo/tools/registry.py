"""Every server-side tool bmo can run: the built-ins and the tools of the configured MCP servers
(layer 2; owned by the runtime, read by the service and the tool catalog). SPEC §9.

- `open()` starts the MCP servers concurrently; one that fails is `down` (with its error in
  `status()`) and is retried in the background with back-off, so its tools appear later. A
  server that dies is restarted the same way.
- The model sees an MCP tool as `server__tool`, cut to `^[A-Za-z0-9_-]{1,64}$` (bmo.tools.mcp_map).
  Names are unique: when two tools would get the same name, both get the hashed form, so the
  outcome does not depend on which server came up first. Each name maps back to the exact
  (server, tool) pair for `tools/call`.
- `generation` grows whenever the tools on offer change (a server came up or went down, or
  re-listed its tools), so callers can cache `resolve()` per generation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from bmo.config import McpServerConfig
from bmo.errors import ConfigError
from bmo.tools import BUILTINS
from bmo.tools.base import Tool
from bmo.tools.mcp import McpServer, McpTool
from bmo.tools.mcp_map import exposed_name
from bmo.tools.mcp_methods import McpToolInfo

log = logging.getLogger("bmo.mcp")


class ToolRegistry:
    def __init__(self, servers: Mapping[str, McpServerConfig]) -> None:
        self.generation = 0
        self._builtins: dict[str, Tool] = {name: cls() for name, cls in BUILTINS.items()}
        self._servers: dict[str, McpServer] = {
            name: McpServer(name, cfg, on_change=self._rebuild) for name, cfg in servers.items()
        }
        self._tools: dict[tuple[str, str], McpTool] = {}  # (server, tool) -> its tool object
        self._collisions: set[str] = set()  # plain names already reported as colliding
        self._opened = False
        self._closed = False

    @property
    def servers(self) -> Mapping[str, McpServer]:
        return self._servers

    async def open(self) -> None:
        """Start every MCP server concurrently and keep them up. Never raises for a server that
        fails: it is `down`, warned about, and retried in the background."""
        if self._opened or self._closed:
            return
        self._opened = True
        await asyncio.gather(*(s.start() for s in self._servers.values()))
        for s in self._servers.values():
            s.supervise()

    async def close(self) -> None:
        """Stop every server (with its process group) and every background task. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(s.close() for s in self._servers.values()), return_exceptions=True)

    def resolve(self, names: Sequence[str]) -> dict[str, Tool]:
        """An agent's `tools:` as {exposed name: Tool}, in order: a built-in (`calculator`), all
        the tools a server offers now (`fs/*`), or one (`fs/read_file`). Tools of a server that is
        not up, and names that match nothing, are left out. Never raises."""
        out: dict[str, Tool] = {}
        for name in names:
            if name in self._builtins:
                out.setdefault(name, self._builtins[name])
                continue
            srv, _, tool = name.partition("/")
            server = self._servers.get(srv)
            if server is None or server.state != "up":
                continue
            for info in server.tools:
                if tool == "*" or info.name == tool:
                    t = self._tools.get((srv, info.name))
                    if t is not None:
                        out.setdefault(t.spec.name, t)
        return out

    def check(self, agent_id: str, names: Sequence[str]) -> list[str]:
        """After `open()`: raise ConfigError for a name that can never work (an unknown built-in
        or server, or `SERVER/TOOL` where SERVER is up and does not list TOOL); return a warning
        for each name whose server is down (its tools appear when it comes up)."""
        where = f"agent {agent_id}"
        warnings: list[str] = []
        for name in names:
            if name in self._builtins:
                continue
            srv, slash, tool = name.partition("/")
            server = self._servers.get(srv)
            if not slash:
                raise ConfigError(where, "tools", f"unknown tool {name!r} (built-ins: {', '.join(self._builtins)})")
            if not tool:
                raise ConfigError(where, "tools", f"{name!r} names no tool: use {srv}/* or {srv}/TOOL")
            if server is None:
                configured = ", ".join(self._servers) or "none"
                raise ConfigError(where, "tools", f"unknown MCP server {srv!r} in {name!r} (configured: {configured})")
            if server.state != "up":
                warnings.append(
                    f"agent {agent_id}: MCP server {srv} is {server.state} ({server.last_error or 'not started'}); "
                    f"{name} is unavailable until it comes up"
                )
            elif tool != "*" and all(t.name != tool for t in server.tools):
                listed = ", ".join(t.name for t in server.tools[:20]) or "none"
                more = "…" if len(server.tools) > 20 else ""
                raise ConfigError(where, "tools", f"MCP server {srv!r} has no tool {tool!r} (it lists: {listed}{more})")
        return warnings

    def status(self) -> list[dict[str, Any]]:
        """One JSON-safe dict per MCP server, in config order (no headers, env or arguments)."""
        return [s.status() for s in self._servers.values()]

    def describe(self) -> list[dict[str, Any]]:
        """Every tool on offer now: the built-ins, then each up server's tools."""
        out: list[dict[str, Any]] = [
            {"name": name, "server": None, "tool": name, "description": t.spec.description}
            for name, t in self._builtins.items()
        ]
        for srv, server in self._servers.items():
            if server.state != "up":
                continue
            for info in server.tools:
                t = self._tools.get((srv, info.name))
                if t is not None:
                    out.append({"name": t.spec.name, "server": srv, "tool": info.name, "description": info.description})
        return out

    def _rebuild(self) -> None:
        """Name every known tool again (a server's list changed) and bump the generation. Tools
        of a server that is down keep their names, so they come back under the same ones."""
        owners: dict[str, list[tuple[str, str]]] = {}
        infos: dict[tuple[str, str], McpToolInfo] = {}
        for srv, server in self._servers.items():
            for info in server.tools:
                infos[(srv, info.name)] = info
                owners.setdefault(exposed_name(srv, info.name), []).append((srv, info.name))
        names: dict[tuple[str, str], str] = {}
        for plain, pairs in owners.items():
            if len(pairs) == 1:
                names[pairs[0]] = plain
                continue
            if plain not in self._collisions:
                self._collisions.add(plain)
                who = ", ".join(f"{s}/{t}" for s, t in pairs)
                log.warning("mcp: tools %s would all be named %s; each gets a hashed name instead", who, plain)
            for pair in pairs:
                names[pair] = exposed_name(*pair, hashed=True)
        taken: dict[str, tuple[str, str]] = {}
        tools: dict[tuple[str, str], McpTool] = {}
        for pair, name in sorted(names.items()):
            if name in taken:  # a hashed name equal to another tool's: never seen, but never two tools one name
                log.error("mcp: %s/%s and %s/%s share the name %s; the first is left out", *pair, *taken[name], name)
                continue
            taken[name] = pair
            tools[pair] = McpTool(self._servers[pair[0]], infos[pair], name)
        self._tools = tools
        self.generation += 1
