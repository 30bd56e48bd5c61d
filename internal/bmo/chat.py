"""The one internal, provider-neutral chat model (layer 0, stdlib only).

Every wire format (OpenAI Chat, Responses, Anthropic Messages) is parsed into these types at the
edge and rendered back from them; providers and the agent loop only ever see these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Content is a plain string, or a list of normalised parts:
#   {"type": "text", "text": str} | {"type": "image_url", "image_url": {"url": str, ...}}
Content = str | list[dict[str, Any]] | None


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, exactly as the model produced it


@dataclass(slots=True)
class Message:
    role: str  # system | developer | user | assistant | tool
    content: Content = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text parts joined; images and other parts are left out."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")


@dataclass(slots=True)
class ToolSpec:
    """A function the model may call. `schema` is the JSON-schema of its arguments."""

    name: str
    description: str = ""
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


@dataclass(slots=True)
class ChatRequest:
    """What a client asked for, independent of the wire it came on."""

    model: str
    messages: list[Message]
    params: dict[str, Any] = field(default_factory=dict)  # sampling fields, forwarded upstream
    tools: list[ToolSpec] = field(default_factory=list)  # client-declared tools
    tool_choice: Any = None
    stream: bool = False
    include_usage: bool = False
    user: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


# ---- stream events: what providers yield and what the agent loop yields -------------------


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    text: str


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a tool call. The first fragment of a call carries id and name."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class Finish:
    reason: str  # stop | length | tool_calls | content_filter


@dataclass(slots=True)
class UpstreamCall:
    """The loop is about to call the upstream model (step counts from 1)."""

    step: int
    route: str


@dataclass(slots=True)
class ServerToolCall:
    call: ToolCall


@dataclass(slots=True)
class ServerToolResult:
    call_id: str
    name: str
    output: str
    is_error: bool = False


Event = TextDelta | ReasoningDelta | ToolCallDelta | Usage | Finish | UpstreamCall | ServerToolCall | ServerToolResult


@dataclass(slots=True)
class Completion:
    """A whole (non-streamed) answer from one upstream call."""

    content: str | None
    tool_calls: list[ToolCall]
    finish_reason: str
    usage: Usage
    reasoning: str | None = None

    def events(self) -> list[Event]:
        """The same answer as the stream of events a streaming call would have yielded."""
        out: list[Event] = []
        if self.reasoning:
            out.append(ReasoningDelta(self.reasoning))
        if self.content:
            out.append(TextDelta(self.content))
        for i, tc in enumerate(self.tool_calls):
            out.append(ToolCallDelta(index=i, id=tc.id, name=tc.name, arguments=tc.arguments))
        out.append(Finish(self.finish_reason))
        out.append(self.usage)
        return out


def message_to_json(m: Message) -> dict[str, Any]:
    """A message as plain data (what session transcripts store)."""
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.name is not None:
        d["name"] = m.name
    if m.tool_calls:
        d["tool_calls"] = [{"id": t.id, "name": t.name, "arguments": t.arguments} for t in m.tool_calls]
    if m.tool_call_id is not None:
        d["tool_call_id"] = m.tool_call_id
    return d


def message_from_json(d: dict[str, Any]) -> Message:
    calls = d.get("tool_calls")
    return Message(
        role=d["role"],
        content=d.get("content"),
        name=d.get("name"),
        tool_calls=[ToolCall(t["id"], t["name"], t["arguments"]) for t in calls] if calls else None,
        tool_call_id=d.get("tool_call_id"),
    )


def same_turn(a: Message, b: Message) -> bool:
    """Whether two messages are the same turn of a conversation, as a client resends it.

    Clients resend history with small differences: `content` null, "" or absent beside tool
    calls; a string or one text part; tool-call arguments re-serialised. Those are the same turn.
    """
    if a.role != b.role or a.tool_call_id != b.tool_call_id:
        return False
    if isinstance(a.content, list) or isinstance(b.content, list):
        if _images(a) != _images(b):
            return False
    if a.text() != b.text():
        return False
    ta, tb = a.tool_calls or [], b.tool_calls or []
    return len(ta) == len(tb) and all(x.id == y.id and x.name == y.name for x, y in zip(ta, tb, strict=True))


def _images(m: Message) -> list[Any]:
    if not isinstance(m.content, list):
        return []
    return [p.get("image_url") for p in m.content if p.get("type") != "text"]
