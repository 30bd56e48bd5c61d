"""The one internal, provider-neutral chat model (layer 0, stdlib only).

Every wire format (OpenAI Chat, Responses, Anthropic Messages) is parsed into these types at the
edge and rendered back from them; providers and the agent loop only ever see these.

The neutral vocabulary:
- content: a string, or a list of parts `{"type": "text", "text"}` | `{"type": "image_url",
  "image_url": {"url"}}` (a `data:` URI for inline images); other part types are kept as the
  client sent them, for an upstream of the same family;
- sampling settings (`ChatRequest.params`): the names of `SAMPLING`, whatever the client's wire
  called them (Anthropic `stop_sequences` is `stop`, `disable_parallel_tool_use` is
  `parallel_tool_calls: false`); each upstream renders the ones it knows and drops the rest;
- `ToolChoice`, the stop reasons `STOP_REASONS`, `Usage` with cache tokens;
- `Thinking`: a reasoning block with its provider's opaque signature, replayed byte for byte
  to an upstream that can check it and never invented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Content is a plain string, or a list of normalised parts:
#   {"type": "text", "text": str} | {"type": "image_url", "image_url": {"url": str, ...}}
Content = str | list[dict[str, Any]] | None

# Sampling settings: name -> what it means. The first group every dialect can express; the
# second is one family's own, passed through to an upstream of that family (and dropped, with
# a warning, where the agent locks it).
SAMPLING = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",  # OpenAI's newer name for max_tokens: kept, since o-series need it
    "stop",  # list[str] | str
    "seed",
    "parallel_tool_calls",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "logprobs",
    "top_logprobs",
    "n",
    "logit_bias",
    "reasoning_effort",
    "thinking",  # Anthropic's {type: enabled|adaptive|disabled, budget_tokens}
)

# Why a model stopped, in no wire's words: each dialect maps these to its own.
END = "end"  # the model finished its turn
LENGTH = "length"  # max_tokens (or the agent's max_steps) cut it short
TOOL_CALLS = "tool_calls"  # it called client tools and waits for their results
STOP_SEQUENCE = "stop_sequence"  # a stop sequence matched (Finish.stop_sequence names it)
FILTERED = "content_filter"  # refused or filtered
STOP_REASONS = (END, LENGTH, TOOL_CALLS, STOP_SEQUENCE, FILTERED)


@dataclass(slots=True, frozen=True)
class ToolChoice:
    """auto | none | required (some tool) | tool (the one named)."""

    mode: str
    name: str | None = None
    parallel: bool | None = None  # None: as the upstream defaults


@dataclass(slots=True)
class Thinking:
    """A reasoning block as the provider issued it. `signature` (or, for a redacted block,
    `redacted`) is that provider's opaque proof: replayed unchanged, only to an upstream that
    checks it; an empty signature is never sent on."""

    text: str = ""
    signature: str = ""
    redacted: str | None = None


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
    thinking: list[Thinking] | None = None  # an assistant turn's reasoning blocks, in order
    is_error: bool = False  # a tool result that reports a failure

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
    params: dict[str, Any] = field(default_factory=dict)  # sampling settings (SAMPLING names)
    tools: list[ToolSpec] = field(default_factory=list)  # client-declared tools
    tool_choice: ToolChoice | None = None
    stream: bool = False
    include_usage: bool = False
    user: str | None = None
    metadata: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)  # what the parser dropped (X-BMO-Warning)
    beta: str | None = None  # Anthropic `anthropic-beta`, forwarded to an anthropic upstream
    continues: str | None = None  # the id of a stored answer this request continues (its history first)
    preamble: int = 0  # leading messages that are this request's own instructions, not conversation
    store: bool = False  # keep this answer, retrievable by its id and continuable
    wire: Any = None  # what the dialect's parser kept for its own rendering; opaque to the rest
    # A raw text completion (editor autocomplete): no agent loop, no system prompt, no tools, no
    # session; `prompt` (and `suffix`) go to the upstream's /completions exactly as sent.
    prompt: str | None = None
    suffix: str | None = None


@dataclass(slots=True)
class Usage:
    """`prompt_tokens` counts every input token, cached ones included (`cache_read_tokens` were
    read from the upstream's prompt cache, `cache_write_tokens` written to it)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens


# ---- stream events: what providers yield and what the agent loop yields -------------------


@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    text: str


@dataclass(slots=True)
class ThinkingSignature:
    """Ends the current reasoning block with the provider's signature."""

    signature: str


@dataclass(slots=True)
class RedactedThinking:
    """A whole redacted reasoning block (opaque data, no text)."""

    data: str


@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a tool call. The first fragment of a call carries id and name."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class Finish:
    reason: str  # one of STOP_REASONS
    stop_sequence: str | None = None


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
    server: str | None = None  # the MCP server that ran it; None for a built-in
    duration_ms: float = 0.0
    images: list[tuple[str, str]] | None = None  # (mime type, base64 data): image parts for the model

    def content(self) -> Content:
        """The tool message's content: the text, with the images as `image_url` parts after it."""
        if not self.images:
            return self.output
        parts: list[dict[str, Any]] = [{"type": "text", "text": self.output}]
        for mime, data in self.images:
            parts.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}})
        return parts


Event = (
    TextDelta
    | ReasoningDelta
    | ThinkingSignature
    | RedactedThinking
    | ToolCallDelta
    | Usage
    | Finish
    | UpstreamCall
    | ServerToolCall
    | ServerToolResult
)


@dataclass(slots=True)
class Completion:
    """A whole (non-streamed) answer from one upstream call."""

    content: str | None
    tool_calls: list[ToolCall]
    finish_reason: str  # one of STOP_REASONS
    usage: Usage
    reasoning: str | None = None
    thinking: list[Thinking] | None = None  # the reasoning as signed blocks, when the provider signs
    stop_sequence: str | None = None

    def events(self) -> list[Event]:
        """The same answer as the stream of events a streaming call would have yielded."""
        out: list[Event] = []
        if self.thinking:
            for t in self.thinking:
                if t.redacted is not None:
                    out.append(RedactedThinking(t.redacted))
                    continue
                out.append(ReasoningDelta(t.text))
                if t.signature:
                    out.append(ThinkingSignature(t.signature))
        elif self.reasoning:
            out.append(ReasoningDelta(self.reasoning))
        if self.content:
            out.append(TextDelta(self.content))
        for i, tc in enumerate(self.tool_calls):
            out.append(ToolCallDelta(index=i, id=tc.id, name=tc.name, arguments=tc.arguments))
        out.append(Finish(self.finish_reason, self.stop_sequence))
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
    if m.thinking:
        d["thinking"] = [{"text": t.text, "signature": t.signature, "redacted": t.redacted} for t in m.thinking]
    if m.is_error:
        d["is_error"] = True
    return d


def message_from_json(d: dict[str, Any]) -> Message:
    calls = d.get("tool_calls")
    return Message(
        role=d["role"],
        content=d.get("content"),
        name=d.get("name"),
        tool_calls=[ToolCall(t["id"], t["name"], t["arguments"]) for t in calls] if calls else None,
        tool_call_id=d.get("tool_call_id"),
        thinking=[Thinking(t["text"], t["signature"], t.get("redacted")) for t in d["thinking"]]
        if d.get("thinking")
        else None,
        is_error=bool(d.get("is_error")),
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


def estimate_tokens(messages: list[Message], tools: list[ToolSpec] | None = None) -> int:
    """About four characters a token, plus a few per message: bmo's estimate of an input's size
    where no tokenizer answers (usage from an upstream that reports none, Anthropic
    `count_tokens` on a non-Anthropic agent, `message_start` before the upstream has counted)."""
    chars = 0
    for m in messages:
        chars += len(m.text())
        for t in m.tool_calls or ():
            chars += len(t.arguments) + len(t.name)
    for spec in tools or ():
        chars += len(spec.name) + len(spec.description) + len(str(spec.schema))
    return -(-chars // 4) + 4 * len(messages)
