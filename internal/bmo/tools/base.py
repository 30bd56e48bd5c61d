"""What a server-side tool is (layer 2). Tools run inside bmo; the client never sees their calls.

A tool is a built-in (`server` None) or one tool of an MCP server (`server` its configured name).
`run` answers a plain string, or a `ToolOutput` when it has images or reports a failure the
model should read (an MCP result with `isError`). It raises `ToolFailed` for a failure whose
message goes back to the model; nothing a tool does ever becomes a 5xx.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bmo.chat import ToolSpec


class ToolFailed(Exception):
    """A tool could not do what was asked; the message goes back to the model, not the client."""


@dataclass(slots=True)
class ToolOutput:
    text: str
    is_error: bool = False
    images: list[tuple[str, str]] = field(default_factory=list)  # (mime type, base64 data)


class Tool(Protocol):
    spec: ToolSpec  # what the model sees: `spec.name` is the exposed name (`server__tool` for MCP)
    server: str | None  # the MCP server's name; None for a built-in
    timeout_s: float  # the loop's bound on one call (an MCP tool enforces its own first, to cancel it)

    async def run(self, args: dict[str, Any]) -> str | ToolOutput: ...
