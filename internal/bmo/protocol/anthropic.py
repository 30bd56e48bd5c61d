"""Anthropic Messages, client side (layer 1, pure, no I/O).

`parse_messages_request` turns a `/v1/messages` body into the internal `ChatRequest`;
`to_message` and `MessageStream` render a run's answer in Anthropic's exact wire shape, and
`render_error` puts any `BmoError` in Anthropic's error envelope (shared/PROTOCOLS.md §0 and §A,
SPEC §4a). `ANTHROPIC` is the dialect object the shared relay drives (protocol/dialect.py).

Leniency is the contract, because Claude Code and the SDKs send more than any gateway knows:
unknown top-level fields, unknown content-block types and server tools are accepted and never a
400 (what is dropped is named in `ChatRequest.warnings`, which become `X-BMO-Warning`). Only a
body that cannot mean anything (a block that is not an object, a text block without text, a
known field of the wrong type) is an `InvalidRequest` naming the `param`.

Imports chat, errors, protocol.sse and protocol.dialect only: never another dialect's module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bmo.chat import (
    END,
    FILTERED,
    LENGTH,
    STOP_SEQUENCE,
    TOOL_CALLS,
    ChatRequest,
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
from bmo.errors import BmoError, InvalidRequest
from bmo.protocol.dialect import Reply, ToolCallBuffer
from bmo.protocol.sse import named_frame

# Claude Code's first system block carries a per-request hash that would defeat every prefix
# cache upstream (PROTOCOLS A.2, A.9 #15): it is dropped.
BILLING_HEADER = "x-anthropic-billing-header"

# The keep-alive Anthropic itself sends; its SDK skips it, Claude Code's watchdog counts it as
# bytes (PROTOCOLS §0.3, A.4 #7). Never an SSE `id:` line.
PING = b'event: ping\ndata: {"type":"ping"}\n\n'

STOP_REASONS = {
    END: "end_turn",
    LENGTH: "max_tokens",
    TOOL_CALLS: "tool_use",
    STOP_SEQUENCE: "stop_sequence",
    FILTERED: "refusal",
}
_TOOL_CHOICE_MODES = {"auto": "auto", "any": "required", "none": "none", "tool": "tool"}

# HTTP status -> Anthropic `error.type` (PROTOCOLS A.5). The SDK picks its exception class by
# status; Claude Code reads the type and message.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _bad(message: str, param: str | None, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, code=code, param=param)


def _warn(warnings: list[str], what: str) -> None:
    if what not in warnings:
        warnings.append(what)


# ---- parsing --------------------------------------------------------------------------------


def _block_type(block: Any, param: str) -> str:
    if not isinstance(block, dict):
        raise _bad("Each content block must be an object.", param)
    kind = block.get("type")
    if not isinstance(kind, str):
        raise _bad("Each content block needs a string `type`.", f"{param}.type")
    return kind


def _str(block: dict[str, Any], key: str, param: str, *, empty_ok: bool = False) -> str:
    """`block[key]`, which must be a string (a non-empty one unless `empty_ok`), else a 400."""
    v = block.get(key)
    if not isinstance(v, str) or not (v or empty_ok):
        raise _bad(f"A {block.get('type')} block needs a string `{key}`.", f"{param}.{key}")
    return v


def _texts(content: Any) -> str | None:
    """The text of a string or of the text blocks in a list (None: there is none)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        parts = [t for t in texts if isinstance(t, str)]
        return "\n".join(parts) if parts else None
    return None


def _image_part(block: dict[str, Any], param: str, warnings: list[str]) -> dict[str, Any] | None:
    src = block.get("source")
    if not isinstance(src, dict):
        raise _bad("An image block needs a `source` object.", f"{param}.source")
    kind = src.get("type")
    if kind == "base64":
        media_type, data = src.get("media_type"), src.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str):
            raise _bad("A base64 image source needs string `media_type` and `data`.", f"{param}.source")
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        if not isinstance(src.get("url"), str):
            raise _bad("A url image source needs a string `url`.", f"{param}.source.url")
        url = src["url"]
    else:  # a Files API id and the like: nothing a non-Anthropic upstream can fetch
        _warn(warnings, "dropped_block:image")
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _common_part(kind: str, block: dict[str, Any], param: str, warnings: list[str]) -> dict[str, Any] | None:
    """A block either side may send, as a neutral content part; None when it is dropped. Every
    type not handled by the caller lands here, so an unknown type is a warning, never a 400."""
    if kind == "text":
        return {"type": "text", "text": _str(block, "text", param, empty_ok=True)}
    if kind == "image":
        return _image_part(block, param, warnings)
    if kind in ("document", "search_result"):
        if kind == "search_result":
            text = _texts(block.get("content"))
        else:
            src = block.get("source")
            src = src if isinstance(src, dict) else {}
            text = src.get("data") if src.get("type") == "text" else _texts(src.get("content"))
        if isinstance(text, str):
            return {"type": "text", "text": text}
    _warn(warnings, f"dropped_block:{kind}")  # server_tool_use, web_search_tool_result, a PDF...
    return None


def _tool_result(block: dict[str, Any], param: str, images: list[dict[str, Any]], warnings: list[str]) -> Message:
    """A `tool_result` as a tool message; its images go to `images` (a tool message is text
    only on most upstreams, so they follow in a user message, as vLLM does)."""
    tid = _str(block, "tool_use_id", param)  # not `id` (vllm-project/vllm#34745)
    content = block.get("content")
    if isinstance(content, list):
        texts: list[str] = []
        for k, inner in enumerate(content):
            p = f"{param}.content[{k}]"
            part = _common_part(_block_type(inner, p), inner, p, warnings)
            if part is None:
                continue
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                images.append(part)
        text = "\n".join(texts)
    elif content is None or isinstance(content, str):
        text = content or ""
    else:
        raise _bad("A tool_result's `content` must be a string or an array of blocks.", f"{param}.content")
    return Message(role="tool", content=text, tool_call_id=tid, is_error=bool(block.get("is_error")))


def _parse_user(blocks: list[Any], param: str, warnings: list[str]) -> list[Message]:
    """Tool results first, each its own tool message (what every OpenAI-family upstream needs
    right after the assistant's calls); the rest, if any, as one user message after them."""
    results: list[Message] = []
    images: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        p = f"{param}[{j}]"
        kind = _block_type(block, p)
        if kind == "tool_result":
            results.append(_tool_result(block, p, images, warnings))
        elif (part := _common_part(kind, block, p, warnings)) is not None:
            parts.append(part)
    rest = images + parts
    if rest:
        results.append(Message(role="user", content=rest))
    elif not results:  # nothing usable was sent: keep the turn, empty
        results.append(Message(role="user", content=""))
    return results


def _tool_use(block: dict[str, Any], param: str) -> ToolCall:
    tid, name, args = _str(block, "id", param), _str(block, "name", param), block.get("input")
    args = {} if args is None else args
    if not isinstance(args, dict):
        raise _bad("A tool_use block's `input` must be an object.", f"{param}.input")
    return ToolCall(id=tid, name=name, arguments=orjson.dumps(args).decode())


def _parse_assistant(blocks: list[Any], param: str, warnings: list[str]) -> Message:
    parts: list[dict[str, Any]] = []
    calls: list[ToolCall] = []
    thinking: list[Thinking] = []
    for j, block in enumerate(blocks):
        p = f"{param}[{j}]"
        kind = _block_type(block, p)
        if kind == "tool_use":
            calls.append(_tool_use(block, p))
        elif kind == "thinking":
            sig = block.get("signature")
            text = _str(block, "thinking", p, empty_ok=True)
            thinking.append(Thinking(text=text, signature=sig if isinstance(sig, str) else ""))
        elif kind == "redacted_thinking":
            thinking.append(Thinking(redacted=_str(block, "data", p, empty_ok=True)))
        elif (part := _common_part(kind, block, p, warnings)) is not None:
            parts.append(part)
    return Message(
        role="assistant",
        content=parts or (None if calls else ""),  # null beside tool calls, as the neutral model has it
        tool_calls=calls or None,
        thinking=thinking or None,
    )


def _system_texts(raw: Any, param: str, warnings: list[str]) -> list[str]:
    if isinstance(raw, str):
        return [raw] if raw else []
    if not isinstance(raw, list):
        raise _bad("A system prompt must be a string or an array of text blocks.", param)
    out: list[str] = []
    for j, block in enumerate(raw):
        p = f"{param}[{j}]"
        kind = _block_type(block, p)
        if kind != "text":
            _warn(warnings, f"dropped_block:{kind}")
            continue
        text = _str(block, "text", p, empty_ok=True)
        if text and not text.startswith(BILLING_HEADER):
            out.append(text)
    return out


# field -> (what it must be, lowest, highest); Anthropic's temperature stops at 1, OpenAI's at 2
_NUMBERS: dict[str, tuple[str, float, float]] = {
    "temperature": ("a number from 0 to 1", 0, 1),
    "top_p": ("a number from 0 to 1", 0, 1),
    "top_k": ("an integer of at least 0", 0, float("inf")),
    "max_tokens": ("a positive integer", 1, float("inf")),
}


def _parse_params(body: dict[str, Any]) -> dict[str, Any]:
    """Sampling settings under their neutral (chat.SAMPLING) names; null counts as absent."""
    params: dict[str, Any] = {}
    for name, (what, lo, hi) in _NUMBERS.items():
        v = body.get(name)
        if v is None:
            continue
        kinds = int if "integer" in what else (int, float)
        if isinstance(v, bool) or not isinstance(v, kinds) or not lo <= v <= hi:
            raise _bad(f"`{name}` must be {what}.", name)
        params[name] = v
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise _bad("`stop_sequences` must be an array of strings.", "stop_sequences")
        if stop:
            params["stop"] = list(stop)
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict):
            raise _bad("`thinking` must be an object.", "thinking")
        params["thinking"] = thinking  # as sent: only an anthropic upstream reads it
    return params


def _parse_tools(raw: Any, warnings: list[str]) -> list[ToolSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _bad("`tools` must be an array.", "tools")
    out: list[ToolSpec] = []
    for j, t in enumerate(raw):
        p = f"tools[{j}]"
        if not isinstance(t, dict):
            raise _bad("Each tool must be an object.", p)
        name = t.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("A tool needs a string `name`.", f"{p}.name")
        schema = t.get("input_schema")
        if schema is None:  # a server tool (web_search_20250305, bash_...): only Anthropic runs those
            _warn(warnings, f"dropped_tool:{name}")
            continue
        if not isinstance(schema, dict):
            raise _bad("A tool's `input_schema` must be a JSON schema object.", f"{p}.input_schema")
        desc, strict = t.get("description"), t.get("strict")
        out.append(
            ToolSpec(
                name=name,
                description=desc if isinstance(desc, str) else "",
                schema=schema,
                strict=strict if isinstance(strict, bool) else None,
            )
        )
    return out


def _parse_tool_choice(raw: Any, params: dict[str, Any]) -> ToolChoice | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _bad("`tool_choice` must be an object.", "tool_choice")
    kind = raw.get("type")
    mode = _TOOL_CHOICE_MODES.get(kind) if isinstance(kind, str) else None
    if mode is None:
        raise _bad("`tool_choice.type` must be one of auto, any, tool, none.", "tool_choice.type")
    name = raw.get("name") if mode == "tool" else None
    if mode == "tool" and (not isinstance(name, str) or not name):
        raise _bad("`tool_choice` of type tool needs a string `name`.", "tool_choice.name")
    parallel = None
    if raw.get("disable_parallel_tool_use") is True:
        parallel = False
        params["parallel_tool_calls"] = False
    return ToolChoice(mode=mode, name=name, parallel=parallel)


def parse_messages_request(body: dict[str, Any], headers: Mapping[str, str]) -> ChatRequest:
    """Validate a Messages body (PROTOCOLS A.2); raises InvalidRequest naming the bad `param`.

    `max_tokens` is optional here (the agent or the upstream supplies one). `metadata` is
    deliberately not read: Claude Code puts a per-user id there, and it must not open sessions.
    """
    raw_msgs = body.get("messages")
    if raw_msgs is None:
        raise _bad("`messages` is required.", "messages", "missing_messages")
    if not isinstance(raw_msgs, list):
        raise _bad("`messages` must be an array of messages.", "messages")
    if not raw_msgs:
        raise _bad("`messages` must contain at least one message.", "messages", "missing_messages")

    warnings: list[str] = []
    system = _system_texts(body["system"], "system", warnings) if body.get("system") is not None else []
    messages: list[Message] = []
    for i, raw in enumerate(raw_msgs):
        p = f"messages[{i}]"
        if not isinstance(raw, dict):
            raise _bad("Each message must be an object with a `role`.", p)
        role = raw.get("role")
        if role not in ("user", "assistant", "system"):
            raise _bad(f"Invalid role {role!r}; expected user or assistant.", f"{p}.role")
        content = raw.get("content")
        if role == "system":  # non-standard, but sent: folded into the one system prompt (vLLM)
            system += _system_texts(content, f"{p}.content", warnings)
        elif isinstance(content, str):
            messages.append(Message(role=role, content=content))
        elif not isinstance(content, list):
            raise _bad("`content` must be a string or an array of content blocks.", f"{p}.content")
        elif role == "user":
            messages += _parse_user(content, f"{p}.content", warnings)
        else:
            messages.append(_parse_assistant(content, f"{p}.content", warnings))
    if system:
        # Blocks are paragraphs of one prompt; the separator only has to be stable for caching.
        messages.insert(0, Message(role="system", content="\n\n".join(system)))

    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("`model` must be a string.", "model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("`stream` must be a boolean.", "stream")
    params = _parse_params(body)
    tools = _parse_tools(body.get("tools"), warnings)
    tool_choice = _parse_tool_choice(body.get("tool_choice"), params)
    return ChatRequest(
        model=model or "default",
        messages=messages,
        params=params,
        tools=tools,
        tool_choice=tool_choice,
        stream=bool(stream),
        warnings=warnings,
        beta=headers.get("anthropic-beta") or None,  # aiohttp's headers are case-insensitive
    )


def parse_count_tokens_request(body: dict[str, Any], headers: Mapping[str, str]) -> ChatRequest:
    """A count_tokens body: the Messages body without `max_tokens` and `stream`, which are
    ignored (not validated) if a client sends them anyway."""
    return parse_messages_request({k: v for k, v in body.items() if k not in ("max_tokens", "stream")}, headers)


# ---- rendering ------------------------------------------------------------------------------


def stop_reason(reason: str, tools_emitted: bool) -> str:
    """Anthropic's stop_reason, never null. Any tool_use block forces `tool_use`: Claude Code
    runs tools only then (PROTOCOLS A.9 #4, anthropics/claude-code#16785)."""
    return "tool_use" if tools_emitted else STOP_REASONS.get(reason, "end_turn")


def usage_obj(u: Usage) -> dict[str, int]:
    """Anthropic counts cached input apart: input_tokens + both cache counts = all input."""
    return {
        "input_tokens": max(0, u.prompt_tokens - u.cache_read_tokens - u.cache_write_tokens),
        "output_tokens": u.completion_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    }


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's arguments as the JSON object Anthropic requires (A.3); {} when they are
    empty or not a JSON object (a string `input` breaks Claude Code, A.9 #5)."""
    try:
        value = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _tool_id(reply: Reply, n: int) -> str:
    """An id for a call the upstream gave none: Claude Code needs one (A.9 #7), unique per
    request since the reply's id is."""
    return f"toolu_{reply.id.removeprefix('msg_')}_{n}"


def to_message(answer: Completion, reply: Reply) -> dict[str, Any]:
    """A non-streamed Messages answer (PROTOCOLS A.3): thinking, text, then tool_use blocks."""
    content: list[dict[str, Any]] = []
    for t in answer.thinking or ():
        if t.redacted is not None:
            content.append({"type": "redacted_thinking", "data": t.redacted})
        else:
            content.append({"type": "thinking", "thinking": t.text, "signature": t.signature})
    if not answer.thinking and answer.reasoning:  # unsigned reasoning: never a minted signature
        content.append({"type": "thinking", "thinking": answer.reasoning, "signature": ""})
    if answer.content:
        content.append({"type": "text", "text": answer.content})
    for n, tc in enumerate(answer.tool_calls):
        content.append(
            {"type": "tool_use", "id": tc.id or _tool_id(reply, n), "name": tc.name, "input": tool_input(tc.arguments)}
        )
    reason = stop_reason(answer.finish_reason, bool(answer.tool_calls))
    return _message(reply, content, reason, answer.stop_sequence, answer.usage)


def _message(reply: Reply, content: list[Any], reason: str | None, seq: str | None, usage: Usage) -> dict[str, Any]:
    return {
        "id": reply.id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": seq if reason == "stop_sequence" else None,
        "usage": usage_obj(usage),
    }


def _frame(obj: dict[str, Any]) -> bytes:
    """Every frame names its event after data.type: the SDK dispatches on `event:` (§0.1)."""
    return named_frame(obj["type"], obj)


class MessageStream:
    """Renders one Messages stream as SSE bytes (PROTOCOLS A.4), per dialect.StreamRenderer.

    Block indices are allocated 0, 1, 2… only when a block starts, and every start has its one
    stop before the next start: blocks never interleave, whatever the upstream did (A.9 #2/#3).
    Text and thinking stream through as they come; client tool calls are buffered by index and
    sent whole when the `Finish` arrives (start with `input: {}`, one `input_json_delta`, stop),
    which stays correct when an upstream interleaves parallel calls' fragments (A.7, A.9 #5).
    """

    eager = True  # message_start before the agent works: Claude Code's watchdog is ~20 s (A.9 #8)
    @staticmethod
    def keepalive() -> bytes:
        return PING  # Claude Code's stall watchdog counts bytes: a ping event

    final: dict[str, Any] | None = None  # nothing of a message is stored

    def __init__(self, reply: Reply) -> None:
        self._reply = reply
        self._next = 0  # the index the next block gets
        self._open: str | None = None  # the open block's type (text | thinking), if one is open
        self._tools = ToolCallBuffer()  # client tool calls, sent whole at the Finish
        self._tools_emitted = 0
        self._reason = END
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None
        self._done = False  # after end() or error(), nothing more is rendered
        self._text_head = b""  # the open text block's delta frame up to the text: a token is one dump

    def start(self) -> bytes:
        """The message as it starts: no content, no stop reason, bmo's estimate of the input."""
        message = _message(self._reply, [], None, None, Usage(prompt_tokens=self._reply.prompt_tokens))
        return _frame({"type": "message_start", "message": message})

    def _begin(self, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._open = block["type"]
        out += _frame({"type": "content_block_start", "index": self._next, "content_block": block})
        if self._open == "text":
            self._text_head = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
                b'"delta":{"type":"text_delta","text":' % self._next
            )
        self._next += 1
        return out

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _frame({"type": "content_block_delta", "index": self._next - 1, "delta": delta})

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _frame({"type": "content_block_stop", "index": self._next - 1})

    def _flush_tools(self) -> bytes:
        out = self._close()
        for call in self._tools.take():
            cid = call.id or _tool_id(self._reply, self._tools_emitted)
            out += self._begin({"type": "tool_use", "id": cid, "name": call.name, "input": {}})
            # The fragments must join into one JSON object or the client cannot parse them
            # (A.9 #6): arguments that are not one are sent as {}, as to_message does.
            args = "".join(call.parts)
            out += self._delta({"type": "input_json_delta", "partial_json": args if tool_input(args) else "{}"})
            out += self._close()
            self._tools_emitted += 1
        return out

    def events(self, batch: list[Event]) -> bytes:
        if self._done:
            return b""
        out = b""
        for ev in batch:
            if type(ev) is TextDelta:
                if ev.text:  # an empty delta opens nothing (A.9 #2: no empty blocks)
                    if self._open != "text":
                        out += self._begin({"type": "text", "text": ""})
                    # the frame _delta would build, without a dict and two calls per token
                    out += self._text_head + orjson.dumps(ev.text) + b"}}\n\n"
            elif isinstance(ev, ReasoningDelta):
                if ev.text:
                    if self._open != "thinking":
                        out += self._begin({"type": "thinking", "thinking": "", "signature": ""})
                    out += self._delta({"type": "thinking_delta", "thinking": ev.text})
            elif isinstance(ev, ThinkingSignature):  # ends the reasoning block it signs
                if self._open != "thinking":
                    out += self._begin({"type": "thinking", "thinking": "", "signature": ""})
                if ev.signature:
                    out += self._delta({"type": "signature_delta", "signature": ev.signature})
                out += self._close()
            elif isinstance(ev, RedactedThinking):
                out += self._begin({"type": "redacted_thinking", "data": ev.data}) + self._close()
            elif isinstance(ev, ToolCallDelta):
                self._tools.add(ev)
            elif isinstance(ev, Finish):
                out += self._flush_tools() + self._close()
                self._reason, self._stop_sequence = ev.reason, ev.stop_sequence
            elif isinstance(ev, Usage):
                self._usage = ev  # the run's total so far; the last one wins
            # UpstreamCall, ServerToolCall, ServerToolResult: the agent's own work, never shown
        return out

    def end(self) -> bytes:
        """Closes what is open, then exactly one message_delta and message_stop (A.4 #5/#6)."""
        if self._done:
            return b""
        out = self._flush_tools() + self._close()
        self._done = True
        reason = stop_reason(self._reason, self._tools_emitted > 0)
        usage = usage_obj(self._usage or Usage(prompt_tokens=self._reply.prompt_tokens))
        seq = self._stop_sequence if reason == "stop_sequence" else None
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": seq},
            "usage": {"output_tokens": usage.pop("output_tokens"), **usage},  # cumulative totals
        }
        return out + _frame(delta) + _frame({"type": "message_stop"})

    def error(self, err: BmoError) -> bytes:
        """An in-band failure after the first byte: one `error` event, and nothing after it
        (the SDK raises on it; a clean message_stop would pass truncation off as success)."""
        if self._done:
            return b""
        self._done = True
        return _frame(_error_obj(err))


def error_type(err: BmoError) -> str:
    """By status; an Anthropic upstream's own error type where it named one (passed through, as
    Claude Code's recovery matches on it)."""
    upstream = getattr(err, "upstream_type", None)
    if upstream:
        return str(upstream)
    return ERROR_TYPES.get(err.status) or ("api_error" if err.status >= 500 else "invalid_request_error")


def _error_obj(err: BmoError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(err), "message": err.message}}


def render_error(err: BmoError) -> bytes:
    """The Anthropic error envelope (A.5); status and headers are the error's own."""
    return orjson.dumps(_error_obj(err))


def to_model(model_id: str, created_at_iso: str) -> dict[str, Any]:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": created_at_iso}


def to_model_list(ids: list[str], created_at_iso: str) -> dict[str, Any]:
    """One page, always `has_more: false`: the SDK otherwise pages on forever (A.6, A.9 #18)."""
    return {
        "data": [to_model(i, created_at_iso) for i in ids],
        "has_more": False,
        "first_id": ids[0] if ids else None,
        "last_id": ids[-1] if ids else None,
    }


def to_token_count(n: int) -> dict[str, int]:
    return {"input_tokens": n}


class AnthropicDialect:
    """The Anthropic Messages dialect, as the shared relay drives it (protocol/dialect.py)."""

    name = "anthropic"
    id_prefix = "msg_"
    request_id_header: str | None = "request-id"  # the SDK reads it into its errors' request_id
    eager_start = True  # message_start goes out before the agent works (Claude Code's stall watchdog)

    parse = staticmethod(parse_messages_request)  # the function itself: no frame around it

    def render_whole(self, answer: Completion, reply: Reply) -> dict[str, Any]:
        return to_message(answer, reply)

    def stream(self, reply: Reply) -> MessageStream:
        return MessageStream(reply)

    def render_error(self, err: BmoError) -> bytes:
        return render_error(err)


ANTHROPIC = AnthropicDialect()
