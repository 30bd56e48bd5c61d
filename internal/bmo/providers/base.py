"""What every upstream provider offers the agent loop (layer 2).

A provider answers one model call, whole (`complete`) or as a stream of internal events
(`open_stream`, read by the loop as `UpstreamStream` says). It raises only `UpstreamError` (or
its `UpstreamTimeout`), with the upstream's status and message kept, never a transport
exception (a stream's transport exceptions go through its `failed`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from bmo.chat import Completion, Event, Message, ToolChoice, ToolSpec


@dataclass(slots=True)
class ModelCall:
    """One upstream call: the upstream's own model name and everything it needs."""

    model: str
    messages: list[Message]
    params: dict[str, Any] = field(default_factory=dict)  # sampling settings (chat.SAMPLING names)
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    beta: str | None = None  # the client's `anthropic-beta`, for an anthropic upstream
    prompt: str | None = None  # set: a raw text completion (the upstream's /completions), not a chat
    suffix: str | None = None


class UpstreamStream(Protocol):
    """One streaming upstream call, read by the agent loop in its own frame: a generator layer
    per token between the socket and the client costs ~4 % of bmo's CPU per token
    (scripts/bench/RESULTS.md). The loop does

        async for chunk in s.reads():      # the transport's reads, as they arrive
            events = s.decode(chunk)       # bytes -> events; raises UpstreamError
            if s.done: break
        events = s.end()                   # after the last read: what is still owed
        ...and always `await s.close()`

    An exception out of `reads()` is the transport's own; `failed(e)` turns it into the
    UpstreamError to raise (and returns anything else unchanged)."""

    done: bool

    def reads(self) -> AsyncIterator[bytes]: ...

    def decode(self, chunk: bytes) -> list[Event]: ...

    def end(self) -> list[Event]: ...

    def failed(self, e: Exception) -> Exception: ...

    async def close(self) -> None: ...


async def one_read() -> AsyncIterator[bytes]:
    """`reads()` of a stream whose answer is already whole: one empty read, then the end."""
    yield b""


class Provider(Protocol):
    name: str

    async def complete(self, call: ModelCall) -> Completion: ...

    async def open_stream(self, call: ModelCall) -> UpstreamStream:
        """Start a streaming call; raises UpstreamError when it cannot (a real HTTP status
        for the client, since nothing was sent yet)."""
        ...

    async def count_tokens(self, call: ModelCall) -> int | None:
        """The input tokens of `call` by the upstream's own tokenizer; None when it has none
        (bmo then estimates)."""
        ...

    async def close(self) -> None: ...
