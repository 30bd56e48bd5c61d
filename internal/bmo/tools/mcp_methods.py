"""What bmo says to an MCP server over a live session: the legacy handshake and the tool list
(layer 2; used by bmo.tools.mcp). No state of its own: the caller keeps what comes back.

- `initialize` asks for PROTOCOL_VERSION and accepts any answer in SUPPORTED_VERSIONS (the
  revisions whose tools surface bmo speaks); anything else is refused, as the spec says a client
  must. bmo declares no capabilities, so the server should ask nothing of it (whatever it asks
  anyway is answered -32601 by the session). The caller then sends `notifications/initialized`,
  once the transport carries the negotiated version (HTTP sends it as a header from then on).
- `list_tools` follows `nextCursor` through every page, bounded by MAX_PAGES.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import bmo
from bmo.tools.jsonrpc import RpcSession
from bmo.tools.mcp_map import clean_schema, describe

log = logging.getLogger("bmo.mcp")

PROTOCOL_VERSION = "2025-06-18"  # what we ask for
SUPPORTED_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")  # what we accept back
MAX_PAGES = 100  # tools/list pages: a server that keeps handing out cursors must not hold start-up forever


class McpProtocolError(Exception):
    """The server speaks MCP in a way bmo cannot use (an unsupported version, a malformed answer)."""


@dataclass(frozen=True, slots=True)
class Hello:
    """What the initialize answer told us."""

    protocol_version: str
    server_name: str | None
    server_version: str | None


@dataclass(frozen=True, slots=True)
class McpToolInfo:
    """One tool as the server listed it; `schema` already cleaned for function calling."""

    name: str
    description: str
    schema: dict[str, Any]


async def initialize(session: RpcSession) -> Hello:
    """The `initialize` request and the version check (not the `initialized` notification)."""
    params = {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},  # no roots, sampling, elicitation
        "clientInfo": {"name": "bmo", "version": bmo.__version__},
    }
    result = await session.request("initialize", params)
    if not isinstance(result, dict):
        raise McpProtocolError("the server answered initialize without a result object")
    version = result.get("protocolVersion")
    if not isinstance(version, str) or version not in SUPPORTED_VERSIONS:
        raise McpProtocolError(
            f"the server speaks MCP protocol version {version!r}; bmo supports {', '.join(SUPPORTED_VERSIONS)}"
        )
    info: dict[str, Any] = result["serverInfo"] if isinstance(result.get("serverInfo"), dict) else {}
    name, ver = info.get("name"), info.get("version")
    return Hello(version, str(name) if name is not None else None, str(ver) if ver is not None else None)


async def list_tools(session: RpcSession) -> list[McpToolInfo]:
    """Every tool of every page, in the server's order; a name listed twice counts once."""
    tools: dict[str, McpToolInfo] = {}
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        result = await session.request("tools/list", {"cursor": cursor} if cursor else {})
        if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
            raise McpProtocolError("the server answered tools/list without a `tools` list")
        for t in result["tools"]:
            if isinstance(t, dict) and isinstance(t.get("name"), str) and t["name"] and t["name"] not in tools:
                tools[t["name"]] = McpToolInfo(t["name"], describe(t), clean_schema(t.get("inputSchema")))
        nxt = result.get("nextCursor")
        if not isinstance(nxt, str) or not nxt:
            return list(tools.values())
        if nxt in seen:
            log.warning("mcp %s: tools/list repeated cursor %r; using the tools listed so far", session.name, nxt)
            return list(tools.values())
        seen.add(nxt)
        cursor = nxt
    log.warning("mcp %s: tools/list has more than %d pages; using the first %d", session.name, MAX_PAGES, MAX_PAGES)
    return list(tools.values())
