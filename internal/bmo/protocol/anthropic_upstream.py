"""Anthropic Messages, upstream side (layer 1, pure, no I/O).

`to_upstream_body` renders the internal request for Anthropic's `POST /v1/messages`;
`from_message_body` and `EventParser` read its answers back into the internal model. What
Anthropic insists on and this module owns (shared/PROTOCOLS.md §A.8): `max_tokens` always set,
system prompts at the top level, strict user/assistant alternation with every `tool_result`
first in the user turn after its `tool_use`, and thinking blocks replayed byte for byte with
the signature Anthropic issued (bmo never invents one, so unsigned reasoning is not sent).

Imports only the neutral model, the error tree and SSE framing: never another dialect's module.
"""

from __future__ import annotations

from typing import Any

import orjson

from bmo.chat import (
    END,
    FILTERED,
    LENGTH,
    STOP_SEQUENCE,
    TOOL_CALLS,
    Completion,
    Event,
    Finish,
    Message,
    ReasoningDelta,
    RedactedThinking,
    TextDelta,
    Thinking,
    ThinkingSignature,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)
from bmo.errors import UpstreamError

# Anthropic requires `max_tokens` on every call; this is sent when neither the agent nor the
# client set `max_tokens`/`max_completion_tokens`. 8192 is within every current Claude model's
# output limit and long enough that an ordinary agent turn is not cut short.
DEFAULT_MAX_TOKENS = 8192

STOP_REASONS = {
    "end_turn": END,
    "max_tokens": LENGTH,
    "tool_use": TOOL_CALLS,
    "stop_sequence": STOP_SEQUENCE,
    "refusal": FILTERED,
    "pause_turn": END,  # only server tools pause; bmo has none upstream, so it is an end
    "model_context_window_exceeded": LENGTH,
}

# User content blocks of Anthropic's own that an Anthropic client may have sent (kept by the
# inbound parser as the client sent them): passed on to the same family.
_NATIVE_BLOCKS = frozenset({"document", "search_result"})
_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


# ---- request -------------------------------------------------------------------------------


def to_upstream_body(
    *,
    model: str,
    messages: list[Message],
    params: dict[str, Any],
    tools: list[ToolSpec],
    tool_choice: ToolChoice | None,
    stream: bool,
) -> dict[str, Any]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role in ("system", "developer"):
            text = m.text()
            if text:
                system.append(text)
        elif m.role == "tool":
            _append(turns, "user", [_tool_result(m)])
        elif m.role == "assistant":
            _append(turns, "assistant", _assistant_blocks(m))
        else:
            _append(turns, "user", _content_blocks(m.content))

    body: dict[str, Any] = {"model": model}
    if system:
        body["system"] = "\n\n".join(system)
    body["messages"] = turns
    body["max_tokens"] = _max_tokens(params)
    stop = params.get("stop")
    if isinstance(stop, str) and stop:
        body["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        body["stop_sequences"] = [s for s in stop if isinstance(s, str) and s]
    t = params.get("temperature")
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        body["temperature"] = min(max(t, 0.0), 1.0)  # OpenAI allows 0..2, Anthropic 0..1
    for key in ("top_p", "top_k"):
        if _number(params.get(key)):
            body[key] = params[key]
    if params.get("thinking") is not None:
        body["thinking"] = params["thinking"]
    if tools:
        body["tools"] = [_tool(t) for t in tools]
        choice = _tool_choice(tool_choice)
        no_parallel = params.get("parallel_tool_calls") is False or (
            tool_choice is not None and tool_choice.parallel is False
        )
        if no_parallel and choice.get("type") != "none":
            choice["disable_parallel_tool_use"] = True
        if tool_choice is not None or no_parallel:
            body["tool_choice"] = choice
    if stream:
        body["stream"] = True
    return body


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Add a turn, merged into the previous one of the same role (Anthropic requires them to
    alternate). Tool results go before anything else in their user turn."""
    if not blocks:
        return  # an empty turn is a 400 upstream; its neighbours merge instead
    if not turns or turns[-1]["role"] != role:
        turns.append({"role": role, "content": blocks})
        return
    content: list[dict[str, Any]] = turns[-1]["content"]
    for b in blocks:
        if b["type"] == "tool_result":
            at = 0
            while at < len(content) and content[at]["type"] == "tool_result":
                at += 1
            content.insert(at, b)
        else:
            content.append(b)


def _tool_result(m: Message) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id or ""}
    if isinstance(m.content, list) and any(p.get("type") == "image_url" for p in m.content):
        block["content"] = _content_blocks(m.content)
    else:
        block["content"] = m.text()
    if m.is_error:
        block["is_error"] = True
    return block


def _assistant_blocks(m: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for t in m.thinking or ():
        if t.redacted is not None:
            blocks.append({"type": "redacted_thinking", "data": t.redacted})
        elif t.signature:  # unsigned reasoning (another provider's, or none): Anthropic rejects it
            blocks.append({"type": "thinking", "thinking": t.text, "signature": t.signature})
    blocks += [b for b in _content_blocks(m.content) if b["type"] == "text"]
    for tc in m.tool_calls or ():
        blocks.append({"type": "tool_use", "id": tc.id, "name": tc.name, "input": _arguments(tc.arguments)})
    return blocks


def _arguments(text: str) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic wants ({} when empty or not an object)."""
    try:
        v = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return {}
    return v if isinstance(v, dict) else {}


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[dict[str, Any]] = []
    for p in content:
        kind = p.get("type")
        if kind == "text":
            if p.get("text"):
                b: dict[str, Any] = {"type": "text", "text": p["text"]}
                if p.get("cache_control"):
                    b["cache_control"] = p["cache_control"]
                out.append(b)
        elif kind == "image_url":
            img = _image(p.get("image_url"))
            if img is not None:
                out.append(img)
        elif kind in _NATIVE_BLOCKS:
            out.append(p)
        # any other part has no Anthropic form: dropped
    return out


def _image(ref: Any) -> dict[str, Any] | None:
    url = ref.get("url") if isinstance(ref, dict) else ref
    if not isinstance(url, str):
        return None
    if url.startswith("data:"):
        head, sep, data = url[5:].partition(",")
        media_type, _, enc = head.partition(";")
        if not sep or enc != "base64" or media_type not in _MEDIA_TYPES:
            return None
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    return None


def _max_tokens(params: dict[str, Any]) -> int:
    for key in ("max_tokens", "max_completion_tokens"):
        v = params.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return DEFAULT_MAX_TOKENS


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _tool(t: ToolSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"name": t.name}
    if t.description:
        d["description"] = t.description
    d["input_schema"] = t.schema
    return d


def _tool_choice(tc: ToolChoice | None) -> dict[str, Any]:
    if tc is None or tc.mode == "auto":
        return {"type": "auto"}
    if tc.mode == "required":
        return {"type": "any"}
    if tc.mode == "none":
        return {"type": "none"}
    if tc.mode == "tool" and tc.name:
        return {"type": "tool", "name": tc.name}
    return {"type": "auto"}


# ---- whole answer --------------------------------------------------------------------------


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def usage_from(u: Any) -> Usage:
    """Anthropic's usage: `input_tokens` excludes the cached tokens, bmo's `prompt_tokens`
    counts them all."""
    if not isinstance(u, dict):
        return Usage()
    read, write = _int(u.get("cache_read_input_tokens")), _int(u.get("cache_creation_input_tokens"))
    return Usage(
        prompt_tokens=_int(u.get("input_tokens")) + read + write,
        completion_tokens=_int(u.get("output_tokens")),
        cache_read_tokens=read,
        cache_write_tokens=write,
    )


def stop_reason(reason: Any, has_tool_calls: bool) -> str:
    if has_tool_calls:
        return TOOL_CALLS
    return STOP_REASONS.get(reason, END) if isinstance(reason, str) else END


def from_message_body(body: Any) -> Completion:
    """A non-streamed answer. Raises ValueError when it is not a message."""
    if not isinstance(body, dict) or body.get("type", "message") != "message":
        raise ValueError("upstream answer is not a message")
    blocks = body.get("content")
    if not isinstance(blocks, list):
        raise ValueError("upstream answer has no content")
    text: list[str] = []
    calls: list[ToolCall] = []
    thinking: list[Thinking] = []
    for b in blocks:
        if not isinstance(b, dict):
            continue
        kind = b.get("type")
        if kind == "text":
            text.append(str(b.get("text", "")))
        elif kind == "tool_use":
            args = b.get("input")
            calls.append(
                ToolCall(
                    id=str(b.get("id") or f"toolu_{len(calls)}"),
                    name=str(b.get("name", "")),
                    arguments=orjson.dumps(args if isinstance(args, dict) else {}).decode(),
                )
            )
        elif kind == "thinking":
            thinking.append(Thinking(str(b.get("thinking", "")), str(b.get("signature") or "")))
        elif kind == "redacted_thinking":
            thinking.append(Thinking(redacted=str(b.get("data", ""))))
    reasoning = "".join(t.text for t in thinking if t.redacted is None)
    seq = body.get("stop_sequence")
    return Completion(
        content="".join(text) if text else None,
        tool_calls=calls,
        finish_reason=stop_reason(body.get("stop_reason"), bool(calls)),
        usage=usage_from(body.get("usage")),
        reasoning=reasoning or None,
        thinking=thinking or None,
        stop_sequence=seq if isinstance(seq, str) else None,
    )


# ---- stream --------------------------------------------------------------------------------


def stream_error(provider: str, obj: Any) -> UpstreamError:
    """An in-stream `error` event. Overloaded is worth a retry: bmo's answer is then a 503 with
    `retry-after`, as if Anthropic had answered 529 before the first byte."""
    err = obj.get("error", obj) if isinstance(obj, dict) else obj
    kind = err.get("type") if isinstance(err, dict) else None
    msg = err.get("message") if isinstance(err, dict) else None
    text = f"upstream {provider} failed mid-stream: {msg if isinstance(msg, str) and msg else kind or err}"
    known = kind if isinstance(kind, str) else None
    if kind == "overloaded_error":
        return UpstreamError(text, upstream_type=known, status=503, should_retry=True, headers={"retry-after": "1"})
    return UpstreamError(text, upstream_type=known)


class EventParser:
    """Turns Anthropic stream events into internal events.

    Tool calls are numbered 0, 1, … in the order their `tool_use` blocks start (Anthropic's block
    index counts text and thinking blocks too). Usage arrives in two halves (input in
    `message_start`, cumulative output in `message_delta`) and goes out once, whole, at
    `message_stop`, which also sets `done`.
    """

    __slots__ = ("provider", "done", "saw_finish", "saw_usage", "_tools", "_whole", "_usage", "_tool_calls")

    def __init__(self, provider: str = "anthropic") -> None:
        self.provider = provider
        self.done = False
        self.saw_finish = False
        self.saw_usage = False
        self._tools: dict[int, int] = {}  # block index -> tool-call index
        self._whole: set[int] = set()  # tool blocks whose input came whole in their start
        self._usage: dict[str, Any] = {}
        self._tool_calls = False

    def feed(self, event: str | None, obj: dict[str, Any]) -> list[Event]:
        kind = event or obj.get("type")
        if kind == "content_block_delta":
            return self._delta(obj)
        if kind == "content_block_start":
            return self._start(obj)
        if kind == "message_start":
            msg = obj.get("message")
            if isinstance(msg, dict) and isinstance(msg.get("usage"), dict):
                self._usage.update(msg["usage"])
            return []
        if kind == "message_delta":
            if isinstance(obj.get("usage"), dict):
                self._usage.update({k: v for k, v in obj["usage"].items() if v is not None})
            delta = obj.get("delta")
            if not isinstance(delta, dict) or delta.get("stop_reason") is None:
                return []
            self.saw_finish = True
            seq = delta.get("stop_sequence")
            reason = stop_reason(delta.get("stop_reason"), self._tool_calls)
            return [Finish(reason, seq if isinstance(seq, str) and reason == STOP_SEQUENCE else None)]
        if kind == "message_stop":
            self.done = True
            return self._final_usage()
        if kind == "error":
            raise stream_error(self.provider, obj)
        return []  # ping, content_block_stop, and events Anthropic may add

    def _start(self, obj: dict[str, Any]) -> list[Event]:
        block = obj.get("content_block")
        if not isinstance(block, dict):
            return []
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return [TextDelta(text)] if isinstance(text, str) and text else []
        if kind == "tool_use":
            self._tool_calls = True
            n = self._tools[_int(obj.get("index"))] = len(self._tools)
            given = block.get("input")
            args = ""
            if isinstance(given, dict) and given:  # input whole in the start (some compatibles)
                self._whole.add(_int(obj.get("index")))
                args = orjson.dumps(given).decode()
            return [
                ToolCallDelta(index=n, id=str(block.get("id") or ""), name=str(block.get("name", "")), arguments=args)
            ]
        if kind == "thinking":
            text = block.get("thinking")
            return [ReasoningDelta(text)] if isinstance(text, str) and text else []
        if kind == "redacted_thinking":
            return [RedactedThinking(str(block.get("data", "")))]
        return []  # server tools and their results: nothing for the loop

    def _delta(self, obj: dict[str, Any]) -> list[Event]:
        d = obj.get("delta")
        if not isinstance(d, dict):
            return []
        kind = d.get("type")
        if kind == "text_delta":
            text = d.get("text")
            return [TextDelta(text)] if isinstance(text, str) and text else []
        if kind == "input_json_delta":
            i = _int(obj.get("index"))
            part = d.get("partial_json")
            n = self._tools.get(i)
            if n is None or i in self._whole or not isinstance(part, str) or not part:
                return []
            return [ToolCallDelta(index=n, arguments=part)]
        if kind == "thinking_delta":
            text = d.get("thinking")
            return [ReasoningDelta(text)] if isinstance(text, str) and text else []
        if kind == "signature_delta":
            sig = d.get("signature")
            return [ThinkingSignature(sig)] if isinstance(sig, str) and sig else []
        return []  # citations_delta and others

    def _final_usage(self) -> list[Event]:
        if self.saw_usage:
            return []
        self.saw_usage = True
        return [usage_from(self._usage)]
