"""OpenAI Chat Completions, client side (layer 1, pure, no I/O).

`parse_chat_request` turns a client's JSON body into the internal `ChatRequest`; `to_completion`
and `ChunkStream` render the internal answer back in the exact wire shape (SPEC §4, CLIENTS.md);
`OPENAI` is all of it as the dialect the shared relay serves (protocol/dialect.py).
Unknown request fields are accepted and ignored, never a 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bmo.chat import (
    END,
    STOP_SEQUENCE,
    ChatRequest,
    Completion,
    Event,
    Finish,
    Message,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    Usage,
)
from bmo.errors import BmoError, InvalidRequest
from bmo.protocol.dialect import Reply, parse_json_body
from bmo.protocol.sse import DONE, KEEPALIVE, frame

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

# Fields forwarded to the upstream unless the agent locks them (SPEC §4).
SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "logprobs",
    "top_logprobs",
    "n",
    "parallel_tool_calls",
    "logit_bias",
    "reasoning_effort",
)

_NUMBER_FIELDS = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
_POSITIVE_INT_FIELDS = ("max_tokens", "max_completion_tokens", "n")


__all__ = ["OPENAI", "ChunkStream", "parse_chat_request", "parse_json_body", "to_completion"]


def _bad(message: str, param: str | None, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, code=code, param=param)


def _parse_parts(parts: list[Any], param: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j, part in enumerate(parts):
        p = f"{param}[{j}]"
        if isinstance(part, str):
            out.append({"type": "text", "text": part})
            continue
        if not isinstance(part, dict):
            raise _bad("Each content part must be an object.", p)
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad("A text part needs a string `text`.", f"{p}.text")
            out.append({"type": "text", "text": text})
        elif kind in ("image_url", "input_image"):
            img = part.get("image_url")
            if isinstance(img, str):
                img = {"url": img}
            if not isinstance(img, dict) or not isinstance(img.get("url"), str):
                raise _bad("An image_url part needs `image_url` as a URL string or {url}.", f"{p}.image_url")
            out.append({"type": "image_url", "image_url": img})
        elif isinstance(kind, str):
            out.append(dict(part))  # audio, file, refusal...: kept for upstreams that know them
        else:
            raise _bad("Each content part needs a string `type`.", f"{p}.type")
    return out


def _parse_tool_calls(raw: Any, param: str) -> list[ToolCall]:
    if not isinstance(raw, list):
        raise _bad("`tool_calls` must be an array.", param)
    calls: list[ToolCall] = []
    for j, tc in enumerate(raw):
        p = f"{param}[{j}]"
        if not isinstance(tc, dict):
            raise _bad("Each tool call must be an object.", p)
        fn = tc.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad("A tool call needs `function.name`.", f"{p}.function")
        args = fn.get("arguments", "")
        if not isinstance(args, str):
            args = orjson.dumps(args).decode()
        cid = tc.get("id")
        calls.append(ToolCall(id=str(cid) if cid else f"call_{j}", name=fn["name"], arguments=args or ""))
    return calls


def _parse_message(raw: Any, i: int) -> Message:
    param = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise _bad("Each message must be an object with a `role`.", param)
    role = raw.get("role")
    if role not in ROLES:
        raise _bad(
            f"Invalid role {role!r}; expected one of system, developer, user, assistant, tool.",
            f"{param}.role",
        )
    content = raw.get("content")
    if isinstance(content, list):
        content = _parse_parts(content, f"{param}.content")
    elif content is not None and not isinstance(content, str):
        raise _bad("`content` must be a string, an array of content parts, or null.", f"{param}.content")
    msg = Message(role=role, content=content)
    name = raw.get("name")
    if isinstance(name, str):
        msg.name = name
    if role == "assistant":
        if raw.get("tool_calls") is not None:
            msg.tool_calls = _parse_tool_calls(raw["tool_calls"], f"{param}.tool_calls") or None
        elif isinstance(raw.get("function_call"), dict):  # legacy functions API
            msg.tool_calls = _parse_tool_calls(
                [{"id": "call_0", "function": raw["function_call"]}], f"{param}.function_call"
            )
    elif role == "function":  # legacy: a function result, answered as a tool message
        msg.role = "tool"
        msg.tool_call_id = name or "call_0"
    elif role == "tool":
        tcid = raw.get("tool_call_id")
        if not isinstance(tcid, str) or not tcid:
            raise _bad("A tool message needs `tool_call_id`.", f"{param}.tool_call_id")
        msg.tool_call_id = tcid
    if content is None and role in ("user", "system", "developer"):
        raise _bad(f"A {role} message needs `content`.", f"{param}.content")
    return msg


def _parse_tools(raw: Any) -> list[ToolSpec]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _bad("`tools` must be an array.", "tools")
    out: list[ToolSpec] = []
    for j, t in enumerate(raw):
        p = f"tools[{j}]"
        if not isinstance(t, dict):
            raise _bad("Each tool must be an object.", p)
        if t.get("type", "function") != "function":
            continue  # built-in OpenAI tool types (web_search...) have no meaning here
        fn = t.get("function", t)
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _bad("A function tool needs `function.name`.", f"{p}.function.name")
        schema = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(schema, dict):
            raise _bad("`parameters` must be a JSON schema object.", f"{p}.function.parameters")
        desc = fn.get("description")
        out.append(
            ToolSpec(
                name=fn["name"],
                description=desc if isinstance(desc, str) else "",
                schema=schema,
                strict=fn.get("strict") if isinstance(fn.get("strict"), bool) else None,
            )
        )
    return out


def _check_param(name: str, value: Any) -> None:
    if name in _NUMBER_FIELDS:
        lo, hi = _NUMBER_FIELDS[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise _bad(f"`{name}` must be a number between {lo:g} and {hi:g}.", name)
    elif name in _POSITIVE_INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _bad(f"`{name}` must be a positive integer.", name)
    elif name == "stop":
        ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value))
        if not ok:
            raise _bad("`stop` must be a string or an array of strings.", name)


def parse_tool_choice(raw: Any, parallel: Any = None) -> ToolChoice | None:
    """`"auto"|"none"|"required"` or `{"type":"function","function":{"name"}}`; anything else is
    a 400 naming `tool_choice`."""
    par = parallel if isinstance(parallel, bool) else None
    if raw is None:
        return None if par is None else ToolChoice("auto", parallel=par)
    if raw in ("auto", "none", "required"):
        return ToolChoice(raw, parallel=par)
    if isinstance(raw, dict):
        fn = raw.get("function")
        name = fn.get("name") if isinstance(fn, dict) else raw.get("name")
        if isinstance(name, str) and name:
            return ToolChoice("tool", name, parallel=par)
    raise _bad("`tool_choice` must be auto, none, required, or {type: function, function: {name}}.", "tool_choice")


def parse_chat_request(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> ChatRequest:
    """Validate a Chat Completions body; raises InvalidRequest naming the bad `param`."""
    if "messages" not in body or body["messages"] is None:
        raise _bad("`messages` is required.", "messages", "missing_messages")
    raw_msgs = body["messages"]
    if not isinstance(raw_msgs, list):
        raise _bad("`messages` must be an array of messages.", "messages")
    if not raw_msgs:
        raise _bad("`messages` must contain at least one message.", "messages", "missing_messages")
    messages = [_parse_message(m, i) for i, m in enumerate(raw_msgs)]

    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("`model` must be a string.", "model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("`stream` must be a boolean.", "stream")
    opts = body.get("stream_options")
    include_usage = False
    if isinstance(opts, dict):
        include_usage = opts.get("include_usage") is True

    params: dict[str, Any] = {}
    for f in SAMPLING_FIELDS:
        v = body.get(f)
        if v is not None:
            _check_param(f, v)
            params[f] = v

    tools = _parse_tools(body.get("tools"))
    tool_choice = body.get("tool_choice")
    if not tools and body.get("functions") is not None:  # legacy functions API
        tools = _parse_tools([{"type": "function", "function": f} for f in body["functions"] or []])
        fc = body.get("function_call")
        if isinstance(fc, dict) and "name" in fc:
            tool_choice = {"type": "function", "function": {"name": fc["name"]}}
        elif isinstance(fc, str):
            tool_choice = fc
    user = body.get("user")
    metadata = body.get("metadata")
    choice = parse_tool_choice(tool_choice, params.get("parallel_tool_calls"))
    return ChatRequest(
        model=model or "default",
        messages=messages,
        params=params,
        tools=tools,
        tool_choice=choice,
        stream=bool(stream),
        include_usage=include_usage,
        user=user if isinstance(user, str) else None,
        metadata=metadata if isinstance(metadata, dict) else None,
    )


# ---- rendering ------------------------------------------------------------------------------


def usage_obj(u: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def tool_call_obj(tc: ToolCall) -> dict[str, Any]:
    return {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments}}


# the neutral stop reasons, as Chat Completions says them (CLIENTS #8: never anything else)
FINISH = {END: "stop", STOP_SEQUENCE: "stop"}


def to_completion(answer: Completion, reply: Reply) -> dict[str, Any]:
    """A non-streamed `chat.completion`. With tool calls only, content is null (never missing)."""
    content, tool_calls = answer.content, answer.tool_calls
    message: dict[str, Any] = {"role": "assistant", "content": content if content or not tool_calls else None}
    if message["content"] is None and not tool_calls:
        message["content"] = ""
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning
    if tool_calls:
        message["tool_calls"] = [tool_call_obj(tc) for tc in tool_calls]
    message["refusal"] = None
    reason = answer.finish_reason
    return {
        "id": reply.id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": FINISH.get(reason, reason)}],
        "usage": usage_obj(answer.usage),
        "system_fingerprint": None,
    }


def to_model(model_id: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "bmo"}


def to_model_list(ids: list[str], created: int) -> dict[str, Any]:
    return {"object": "list", "data": [to_model(i, created) for i in ids]}


class ChunkStream:
    """Renders one Chat Completions stream as SSE frames (bytes): the dialect's StreamRenderer.

    The constant head of every chunk (id, object, created, model) is encoded once; each delta
    costs one small orjson dump. The role chunk goes out with the first batch (`eager` is off:
    the relay holds the headers until then, so a failure before any output still gets a real
    HTTP status); the usage chunk (only when include_usage was asked) and `[DONE]` with `end()`.
    """

    __slots__ = ("_head", "_tail", "_usage_tail", "include_usage", "_text_head", "_text_tail", "_usage")

    eager = False
    @staticmethod
    def keepalive() -> bytes:
        return KEEPALIVE  # a comment line: every SSE parser skips it

    final: dict[str, Any] | None = None  # nothing of a chat completion is stored

    def __init__(self, rid: str, created: int, model: str, include_usage: bool) -> None:
        head = orjson.dumps({"id": rid, "object": "chat.completion.chunk", "created": created, "model": model})
        self._head = head[:-1] + b',"choices":[{"index":0,"delta":'
        self.include_usage = include_usage
        self._tail = b',"logprobs":null,"finish_reason":null}]' + (b',"usage":null}' if include_usage else b"}")
        self._usage_tail = head[:-1]
        self._text_head = b"data: " + self._head + b'{"content":'  # a token is one dump, two joins
        self._text_tail = b"}" + self._tail + b"\n\n"
        self._usage: Usage | None = None

    def _delta(self, delta: bytes) -> bytes:
        return b"data: " + self._head + delta + self._tail + b"\n\n"

    def start(self) -> bytes:
        return self._delta(b'{"role":"assistant","content":""}')

    def events(self, batch: list[Event]) -> bytes:
        frames: list[bytes] = []
        for ev in batch:
            kind = type(ev)
            if kind is TextDelta:
                frames.append(self._text_head + orjson.dumps(ev.text) + self._text_tail)  # type: ignore[union-attr]
            elif kind is ToolCallDelta:
                frames.append(self.tool_call(ev))  # type: ignore[arg-type]
            elif kind is ReasoningDelta:
                frames.append(self.reasoning(ev.text))  # type: ignore[union-attr]
            elif kind is Finish:
                frames.append(self.finish(ev.reason))  # type: ignore[union-attr]
            elif kind is Usage:
                self._usage = ev  # type: ignore[assignment]
            # thinking signatures have no Chat Completions form: the text went out as reasoning
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def text(self, text: str) -> bytes:
        return self._text_head + orjson.dumps(text) + self._text_tail

    def reasoning(self, text: str) -> bytes:
        return self._delta(b'{"reasoning_content":' + orjson.dumps(text) + b"}")

    def tool_call(self, d: ToolCallDelta) -> bytes:
        """A tool-call fragment; the first of each call carries id, type and name (CLIENTS #10)."""
        call: dict[str, Any] = {"index": d.index}
        if d.id is not None:
            call["id"] = d.id
            call["type"] = "function"
            call["function"] = {"name": d.name or "", "arguments": d.arguments}
        else:
            call["function"] = {"arguments": d.arguments}
        return self._delta(b'{"tool_calls":[' + orjson.dumps(call) + b"]}")

    def finish(self, reason: str) -> bytes:
        tail = b',"logprobs":null,"finish_reason":' + orjson.dumps(FINISH.get(reason, reason)) + b"}]"
        tail += b',"usage":null}' if self.include_usage else b"}"
        return b"data: " + self._head + b"{}" + tail + b"\n\n"

    def usage(self, u: Usage) -> bytes:
        if not self.include_usage:
            return b""
        return frame(self._usage_tail + b',"choices":[],"usage":' + orjson.dumps(usage_obj(u)) + b"}")

    def end(self) -> bytes:
        """The usage chunk (when asked for) and `[DONE]`, in one write."""
        if self._usage is not None and self.include_usage:
            return self.usage(self._usage) + DONE
        return DONE

    @staticmethod
    def error(err: BmoError) -> bytes:
        return frame(orjson.dumps(err.body())) + DONE

    @staticmethod
    def done() -> bytes:
        return DONE


class OpenAIDialect:
    """Chat Completions as a dialect of the shared relay (protocol/dialect.py)."""

    name = "openai"
    id_prefix = "chatcmpl-"
    request_id_header: str | None = None
    eager_start = False

    parse = staticmethod(parse_chat_request)  # the function itself: no frame around it

    render_whole = staticmethod(to_completion)

    @staticmethod
    def stream(reply: Reply) -> ChunkStream:
        return ChunkStream(reply.id, reply.created, reply.model, reply.include_usage)

    @staticmethod
    def render_error(err: BmoError) -> bytes:
        return orjson.dumps(err.body())


OPENAI = OpenAIDialect()
