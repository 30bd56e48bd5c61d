"""What a server-side tool is (layer 2). Tools run inside bmo; the client never sees their calls."""

from __future__ import annotations

from typing import Any, Protocol

from bmo.chat import ToolSpec


class ToolFailed(Exception):
    """A tool could not do what was asked; the message goes back to the model, not the client."""


class Tool(Protocol):
    spec: ToolSpec

    async def run(self, args: dict[str, Any]) -> str: ...
