"""What every upstream provider offers the agent loop (layer 2).

A provider answers one model call, whole (`complete`) or as a stream of internal events
(`stream`). It raises only `UpstreamError` (or its `UpstreamTimeout`), with the upstream's
status and message kept, never a transport exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from bmo.chat import Completion, Event, Message, ToolSpec


@dataclass(slots=True)
class ModelCall:
    """One upstream call: the upstream's own model name and everything it needs."""

    model: str
    messages: list[Message]
    params: dict[str, Any] = field(default_factory=dict)
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: Any = None


class Provider(Protocol):
    name: str

    async def complete(self, call: ModelCall) -> Completion: ...

    def stream(self, call: ModelCall) -> AsyncIterator[Event]: ...

    async def close(self) -> None: ...
