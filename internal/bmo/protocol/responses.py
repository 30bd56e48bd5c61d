"""OpenAI Responses, client side (layer 1, pure, no I/O).

`parse_responses_request` turns a `/v1/responses` body into the internal `ChatRequest`;
`to_response` and `ResponseStream` render a run's answer as the `response` object and its exact
event stream; `to_input_items` and `input_items_page` answer `GET /v1/responses/{id}/input_items`;
`render_error` is the OpenAI error envelope (shared/PROTOCOLS.md §0 and §B, SPEC §4b).
`RESPONSES` is the dialect object the shared relay drives (protocol/dialect.py).

Leniency is the contract, because Codex and the Agents SDK send more than any gateway serves:
unknown fields (`include`, `client_metadata`, `prompt_cache_key`…) are accepted, hosted tools and
unknown item or part types are dropped and named in `ChatRequest.warnings` (X-BMO-Warning),
never a 400 (B.6 #2, #3). Only a body that cannot mean anything, or a known field of the wrong
type, is an `InvalidRequest` naming the `param`.

What rendering needs from the request (the echoed settings, which tools are `custom`, how
namespaced tools were flattened) travels as a `ResponsesWire` in `ChatRequest.wire`, which the
relay hands back as `Reply.wire`.

Imports chat, errors, protocol.sse and protocol.dialect only: never another dialect's module.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from bmo.chat import (
    END,
    FILTERED,
    LENGTH,
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
from bmo.protocol.dialect import Reply, ToolCallBuffer
from bmo.protocol.sse import KEEPALIVE, named_frame

ROLES = frozenset({"user", "assistant", "system", "developer"})

# What most upstreams accept as a function name (OpenAI's own rule): flattened names keep to it.
_NAME_MAX = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


# The request settings every `response` object echoes as the client sent them (B.2), and
# OpenAI's defaults for those it did not send.
ECHO_DEFAULTS: dict[str, Any] = {
    **dict.fromkeys(("instructions", "temperature", "top_p", "max_output_tokens", "previous_response_id", "reasoning")),
    **{"metadata": {}, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "store": True},
    "text": {"format": {"type": "text"}},
}  # read, never mutated: every echo shares these values


@dataclass(slots=True)
class ResponsesWire:
    """What the parser keeps for rendering and storage (`ChatRequest.wire`, `Reply.wire`).

    `instructions`, when set, is `ChatRequest.messages[0]` (a system message) and applies to
    this request alone: it is never stored or replayed with `previous_response_id` (B.4)."""

    instructions: str | None = None
    echo: dict[str, Any] = field(default_factory=lambda: dict(ECHO_DEFAULTS))  # as the client sent them
    custom_tools: frozenset[str] = frozenset()  # a call to one renders as a custom_tool_call item
    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)  # flat name -> (namespace, name)


def _bad(message: str, param: str | None, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, code=code, param=param)


def _warn(warnings: list[str], what: str) -> None:
    if what not in warnings:
        warnings.append(what)


def _name(obj: dict[str, Any], key: str, param: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v:
        raise _bad(f"`{key}` must be a non-empty string.", f"{param}.{key}")
    return v


# ---- parsing: input ---------------------------------------------------------------------------


def _part(p: Any, param: str, warnings: list[str]) -> dict[str, Any] | None:
    """One content part as a neutral part; None when it is dropped (named in warnings)."""
    if not isinstance(p, dict):
        raise _bad("Each content part must be an object.", param)
    kind = p.get("type")
    if not isinstance(kind, str):
        raise _bad("Each content part needs a string `type`.", f"{param}.type")
    if kind in ("input_text", "output_text", "text", "refusal"):
        key = "refusal" if kind == "refusal" else "text"
        text = p.get(key)
        if not isinstance(text, str):
            raise _bad(f"A {kind} part needs a string `{key}`.", f"{param}.{key}")
        return {"type": "text", "text": text}
    if kind == "input_image":
        img = p.get("image_url")
        url = img.get("url") if isinstance(img, dict) else img
        if isinstance(url, str) and url:
            ref: dict[str, Any] = {"url": url}
            if isinstance(p.get("detail"), str) and p["detail"] != "auto":  # auto: the default
                ref["detail"] = p["detail"]
            return {"type": "image_url", "image_url": ref}
        if p.get("file_id") is None:
            raise _bad("An input_image part needs `image_url` (a URL or data URI).", f"{param}.image_url")
    _warn(warnings, f"dropped_part:{kind}")  # input_file, a Files API image: nothing an upstream can fetch
    return None


def _parts(raw: Any, param: str, warnings: list[str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise _bad(f"`{param}` must be a string or an array of content parts.", param)
    return [q for j, p in enumerate(raw) if (q := _part(p, f"{param}[{j}]", warnings)) is not None]


def _output(raw: Any, param: str, warnings: list[str], images: list[dict[str, Any]]) -> str:
    """A tool output as text; its images go to `images` (a tool message is text only on most
    upstreams, so they follow the tool results in a user message, as vLLM does)."""
    if raw is None or isinstance(raw, str):
        return raw or ""
    if isinstance(raw, dict):  # an old Codex shape, {content, success}: kept readable
        return raw["content"] if isinstance(raw.get("content"), str) else orjson.dumps(raw).decode()
    parts = _parts(raw, param, warnings)
    images += [p for p in parts if p["type"] != "text"]
    return "\n".join(p["text"] for p in parts if p["type"] == "text")


def _call(item: dict[str, Any], kind: str, param: str, flat_of: dict[tuple[str, str], str]) -> ToolCall:
    cid, name = _name(item, "call_id", param), _name(item, "name", param)
    if kind == "custom_tool_call":
        text = item.get("input")
        if not isinstance(text, str):
            raise _bad("A custom_tool_call needs a string `input`.", f"{param}.input")
        return ToolCall(cid, name, orjson.dumps({"input": text}).decode())  # as the flattened tool takes it
    ns = item.get("namespace")
    if isinstance(ns, str) and ns:  # the upstream knows the tool by its flattened name only
        name = flat_of.get((ns, name)) or _flat_name(ns, name)
    args = item.get("arguments")
    if args is None:
        args = "{}"
    elif not isinstance(args, str):
        args = orjson.dumps(args).decode()
    return ToolCall(cid, name, args)


def _parse_input(raw: Any, warnings: list[str], flat_of: dict[tuple[str, str], str]) -> list[Message]:
    """Input items as messages (PROTOCOLS B.1). Consecutive calls are one assistant turn, joined
    to the assistant message right before them: the shape every chat upstream expects."""
    if isinstance(raw, str):
        return [Message(role="user", content=raw)] if raw else []
    if not isinstance(raw, list):
        raise _bad("`input` must be a string or an array of input items.", "input")
    out: list[Message] = []
    images: list[dict[str, Any]] = []  # from tool outputs: they follow the run of tool results
    for i, item in enumerate(raw):
        p = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad("Each input item must be an object.", p)
        kind = item.get("type", "message" if "role" in item else None)
        if not isinstance(kind, str):
            raise _bad("Each input item needs a string `type` (or a `role`).", f"{p}.type")
        if images and kind not in ("function_call_output", "custom_tool_call_output"):
            out.append(Message(role="user", content=images))
            images = []
        if kind == "message":
            role = item.get("role")
            if role not in ROLES:
                raise _bad(f"Invalid role {role!r}; expected user, assistant, system or developer.", f"{p}.role")
            content = item.get("content")
            if not isinstance(content, str):
                content = _parts(content, f"{p}.content", warnings) or ""
            out.append(Message(role=role, content=content))
        elif kind in ("function_call", "custom_tool_call"):
            call = _call(item, kind, p, flat_of)
            if out and out[-1].role == "assistant":
                out[-1].tool_calls = [*(out[-1].tool_calls or ()), call]
            else:
                out.append(Message(role="assistant", content=None, tool_calls=[call]))
        elif kind in ("function_call_output", "custom_tool_call_output"):
            text = _output(item.get("output"), f"{p}.output", warnings, images)
            out.append(Message(role="tool", content=text, tool_call_id=_name(item, "call_id", p)))
        elif kind != "reasoning":  # reasoning: Codex sends its own back every turn; no upstream takes it
            _warn(warnings, f"dropped_item:{kind}")  # item_reference, hosted tool calls, unknown types
    if images:
        out.append(Message(role="user", content=images))
    return out


# ---- parsing: tools and settings --------------------------------------------------------------


def _flat_name(namespace: str, name: str) -> str:
    """`<namespace>__<name>`, as one function name an upstream accepts (at most 64 characters of
    `[A-Za-z0-9_-]`). Codex's MCP namespaces already end in `__` (`mcp__server__`), so no
    second separator is added to those. A name that is too long keeps a hash of the whole."""
    whole = namespace + ("" if namespace.endswith("__") else "__") + name
    flat = _UNSAFE.sub("_", whole)
    if len(flat) > _NAME_MAX:
        flat = flat[: _NAME_MAX - 9] + "_" + hashlib.sha1(whole.encode()).hexdigest()[:8]
    return flat


def _unique(name: str, taken: set[str]) -> str:
    n, candidate = 1, name
    while candidate in taken:
        n += 1
        candidate = name[: _NAME_MAX - len(str(n)) - 1] + f"_{n}"
    return candidate


def _function_tool(t: dict[str, Any], param: str) -> ToolSpec:
    name = _name(t, "name", param)
    schema = t.get("parameters")
    if schema is None:
        schema = {"type": "object", "properties": {}}
    elif not isinstance(schema, dict):
        raise _bad("`parameters` must be a JSON schema object.", f"{param}.parameters")
    desc, strict = t.get("description"), t.get("strict")
    return ToolSpec(name, desc if isinstance(desc, str) else "", schema, strict if isinstance(strict, bool) else None)


def _custom_tool(t: dict[str, Any], param: str) -> ToolSpec:
    """A freeform tool (Codex's `apply_patch`) as a function of one string, `input`: the model
    writes the raw text there, and its call goes back as a `custom_tool_call` (B.6 #3)."""
    name = _name(t, "name", param)
    fmt = t.get("format")
    what = "The tool's whole input, as raw text (not JSON)."
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        syntax = fmt.get("syntax") if isinstance(fmt.get("syntax"), str) else "lark"
        what = (
            f"The tool's whole input, as raw text (not JSON) that matches this {syntax} grammar:\n{fmt['definition']}"
        )
    desc = t.get("description")
    schema = {"type": "object", "properties": {"input": {"type": "string", "description": what}}, "required": ["input"]}
    return ToolSpec(name, desc if isinstance(desc, str) else "", schema)


def _parse_tools(raw: Any, warnings: list[str]) -> tuple[list[ToolSpec], frozenset[str], dict[str, tuple[str, str]]]:
    """Function and custom tools as they are; each function of a `namespace` tool (Codex's MCP
    tools) flattened to one name, mapped back when the model calls it; everything else (hosted
    tools: web_search, file_search, local_shell, code_interpreter, image_generation, computer
    use, tool_search…) dropped with a warning, since no chat upstream can run it (B.6 #3, #4)."""
    if raw is None:
        return [], frozenset(), {}
    if not isinstance(raw, list):
        raise _bad("`tools` must be an array.", "tools")
    specs: list[ToolSpec] = []
    custom: set[str] = set()
    nested: list[tuple[int, str]] = []  # (index in specs, namespace) of the tools to rename
    for j, t in enumerate(raw):
        p = f"tools[{j}]"
        if not isinstance(t, dict):
            raise _bad("Each tool must be an object.", p)
        kind = t.get("type")
        if not isinstance(kind, str):
            raise _bad("Each tool needs a string `type`.", f"{p}.type")
        if kind == "function":
            specs.append(_function_tool(t, p))
        elif kind == "custom":
            specs.append(_custom_tool(t, p))
            custom.add(specs[-1].name)
        elif kind == "namespace":
            ns, inner = _name(t, "name", p), t.get("tools")
            if not isinstance(inner, list):
                raise _bad("A namespace tool needs a `tools` array.", f"{p}.tools")
            for k, nt in enumerate(inner):
                q = f"{p}.tools[{k}]"
                if not isinstance(nt, dict):
                    raise _bad("Each tool must be an object.", q)
                if nt.get("type", "function") != "function":
                    _warn(warnings, f"dropped_tool:{nt.get('type')}")
                    continue
                nested.append((len(specs), ns))
                specs.append(_function_tool(nt, q))
        else:
            _warn(warnings, f"dropped_tool:{kind}")
    # The client's own names are kept as they are; a flattened name steps aside for them.
    renamed = {i for i, _ in nested}
    taken = {s.name for i, s in enumerate(specs) if i not in renamed}
    namespaced: dict[str, tuple[str, str]] = {}
    for i, ns in nested:
        inner_name = specs[i].name
        specs[i].name = flat = _unique(_flat_name(ns, inner_name), taken)
        taken.add(flat)
        namespaced[flat] = (ns, inner_name)
    return specs, frozenset(custom), namespaced


def _parse_tool_choice(
    raw: Any, parallel: bool | None, flat_of: dict[tuple[str, str], str], warnings: list[str]
) -> ToolChoice | None:
    if raw is None:
        return None if parallel is None else ToolChoice("auto", parallel=parallel)
    if isinstance(raw, str) and raw in ("auto", "none", "required"):
        return ToolChoice(raw, parallel=parallel)
    if isinstance(raw, dict) and isinstance(raw.get("type"), str):
        kind = raw["type"]
        if kind in ("function", "custom"):
            name = _name(raw, "name", "tool_choice")
            ns = raw.get("namespace")
            if isinstance(ns, str) and ns:
                name = flat_of.get((ns, name)) or _flat_name(ns, name)
            return ToolChoice("tool", name, parallel=parallel)
        if kind == "allowed_tools":  # a subset bmo cannot express: its mode still holds
            return ToolChoice("required" if raw.get("mode") == "required" else "auto", parallel=parallel)
        _warn(warnings, f"dropped_tool_choice:{kind}")  # a hosted tool, dropped with it
        return None if parallel is None else ToolChoice("auto", parallel=parallel)
    raise _bad("`tool_choice` must be auto, none, required, or {type: function, name}.", "tool_choice")


def _typed(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str, param: str = "") -> Any:
    """`obj[name]`: None when absent or null, else of `kind` (a bool is never a number)."""
    v = obj.get(name)
    if v is not None and (not isinstance(v, kind) or (isinstance(v, bool) and kind is not bool)):
        raise _bad(f"`{param or name}` must be {what}.", param or name)
    return v


def _response_format(text: dict[str, Any], warnings: list[str]) -> dict[str, Any] | None:
    """`text.format` as Chat Completions' `response_format`; plain text is the default (None)."""
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
        raise _bad("`text.format` must be an object with a string `type`.", "text.format")
    kind = fmt["type"]
    if kind == "json_schema":
        schema = fmt.get("schema")
        if not isinstance(schema, dict):
            raise _bad("A json_schema format needs a `schema` object.", "text.format.schema")
        spec: dict[str, Any] = {"name": fmt["name"] if isinstance(fmt.get("name"), str) else "response"}
        if isinstance(fmt.get("description"), str):
            spec["description"] = fmt["description"]
        spec["schema"] = schema
        if isinstance(fmt.get("strict"), bool):
            spec["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": spec}
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "text":
        _warn(warnings, f"dropped_format:{kind}")
    return None


def parse_responses_request(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> ChatRequest:
    """Validate a Responses body (PROTOCOLS B.1); raises InvalidRequest naming the bad `param`."""
    prev = _typed(body, "previous_response_id", str, "a response id") or None
    if body.get("input") is None and not prev:
        raise _bad("`input` is required.", "input", "missing_messages")
    instructions = _typed(body, "instructions", str, "a string")
    warnings: list[str] = []
    tools, custom, namespaced = _parse_tools(body.get("tools"), warnings)
    flat_of = {pair: flat for flat, pair in namespaced.items()}
    messages = _parse_input(body.get("input") or [], warnings, flat_of)
    if not messages and not instructions and not prev:
        raise _bad("`input` must contain at least one item.", "input", "missing_messages")
    if instructions:
        messages.insert(0, Message(role="system", content=instructions))

    model, stream = _typed(body, "model", str, "a string"), _typed(body, "stream", bool, "a boolean")
    params: dict[str, Any] = {}
    temperature = params["temperature"] = _typed(body, "temperature", (int, float), "a number from 0 to 2")
    top_p = params["top_p"] = _typed(body, "top_p", (int, float), "a number from 0 to 1")
    for name, v, hi in (("temperature", temperature, 2), ("top_p", top_p, 1)):
        if v is not None and not 0 <= v <= hi:
            raise _bad(f"`{name}` must be a number from 0 to {hi}.", name)
    max_out = params["max_tokens"] = _typed(body, "max_output_tokens", int, "a positive integer")
    if max_out is not None and max_out < 1:
        raise _bad("`max_output_tokens` must be a positive integer.", "max_output_tokens")
    parallel = params["parallel_tool_calls"] = _typed(body, "parallel_tool_calls", bool, "a boolean")
    reasoning = _typed(body, "reasoning", dict, "an object")
    if reasoning is not None:
        params["reasoning_effort"] = _typed(reasoning, "effort", str, "a string", "reasoning.effort")
    text = _typed(body, "text", dict, "an object")
    if text is not None:
        params["response_format"] = _response_format(text, warnings)
    choice = _parse_tool_choice(body.get("tool_choice"), parallel, flat_of, warnings)
    metadata, user = body.get("metadata"), body.get("user")
    store = body.get("store") is not False  # OpenAI's default is true (B.4)
    sent = {k: body.get(k) for k in ECHO_DEFAULTS} | {"previous_response_id": prev, "store": store}
    if not isinstance(metadata, dict):
        sent["metadata"] = None
    echo = {k: ECHO_DEFAULTS[k] if v is None else v for k, v in sent.items()}  # all validated above
    return ChatRequest(
        model=model or "default",
        messages=messages,
        params={k: v for k, v in params.items() if v is not None},
        tools=tools,
        tool_choice=choice,
        stream=bool(stream),
        user=user if isinstance(user, str) else None,
        metadata=metadata if isinstance(metadata, dict) else None,
        warnings=warnings,
        continues=prev,
        preamble=1 if instructions else 0,  # applies to this request alone: never stored or replayed
        store=store,
        wire=ResponsesWire(instructions, echo, custom, namespaced),
    )


# ---- rendering: items and the response object ---------------------------------------------------


def usage_obj(u: Usage) -> dict[str, Any]:
    """Integers always, both details objects always: Codex fails on a malformed usage, the
    Agents SDK on a missing one, and typed clients require `cache_write_tokens` (B.2, B.6 #8)."""
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.total_tokens,
    }


def _status(reason: str) -> tuple[str, dict[str, str] | None]:
    if reason == LENGTH:
        return "incomplete", {"reason": "max_output_tokens"}
    if reason == FILTERED:
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _wire(reply: Reply) -> ResponsesWire:
    return reply.wire if isinstance(reply.wire, ResponsesWire) else ResponsesWire()


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(iid: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {"id": iid, "type": "message", "status": status, "role": "assistant", "content": [_text_part(text)]}


def _reasoning_item(iid: str, text: str) -> dict[str, Any]:
    return {"id": iid, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def custom_input(arguments: str) -> str:
    """A custom tool's raw input from the arguments of its flattened function: `{"input": …}`
    as the schema asks, else what the model wrote (a JSON string, or the text itself)."""
    try:
        value = orjson.loads(arguments) if arguments.strip() else ""
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return value["input"]
    return value if isinstance(value, str) else arguments


def _call_item(wire: ResponsesWire, tail: str, call_id: str, name: str, args: str) -> dict[str, Any]:
    """A client tool call as Codex executes it (B.3): a `custom_tool_call` with the raw input for
    a custom tool; else a `function_call` whose `name`/`namespace` are the client's own (Codex
    rebuilds a namespaced tool's identity from both fields). Its id is `ctc_`/`fc_` + `tail`."""
    if name in wire.custom_tools:
        return {"id": f"ctc_{tail}", "type": "custom_tool_call", "call_id": call_id, "name": name} | {
            "input": custom_input(args)
        }
    item: dict[str, Any] = {"id": f"fc_{tail}", "type": "function_call", "status": "completed", "call_id": call_id}
    ns = wire.namespaced.get(name)
    item |= {"name": ns[1], "namespace": ns[0]} if ns else {"name": name}
    return item | {"arguments": args if args.strip() else "{}"}  # Codex parses them: "" is not JSON


def _response(
    reply: Reply, wire: ResponsesWire, status: str, output: list[Any], usage: Any, **extra: Any
) -> dict[str, Any]:
    """The whole `response` object with every field the SDK's type requires (B.2); `extra` sets
    `error` or `incomplete_details`."""
    text = "".join(
        c["text"] for it in output if it["type"] == "message" for c in it["content"] if c["type"] == "output_text"
    )
    return {
        "id": reply.id,
        "object": "response",
        "created_at": reply.created,
        "status": status,
        "model": reply.model,
        "output": output,
        "output_text": text,  # the SDK's convenience property; harmless on the wire, handy for curl
        "usage": usage,
        "error": None,
        "incomplete_details": None,
        **extra,
        **wire.echo,
    }


def to_response(answer: Completion, reply: Reply) -> dict[str, Any]:
    """A non-streamed answer: reasoning, message, then tool-call items. Item ids are derived
    from the response id and the output index, so the stream of the same answer has the same."""
    wire, hexid = _wire(reply), reply.id.removeprefix("resp_")
    out: list[dict[str, Any]] = []
    if answer.thinking:
        reasoning = "".join(t.text for t in answer.thinking if t.redacted is None)
    else:
        reasoning = answer.reasoning or ""
    if reasoning:
        out.append(_reasoning_item(f"rs_{hexid}_{len(out)}", reasoning))
    if answer.content:
        out.append(_message_item(f"msg_{hexid}_{len(out)}", answer.content))
    for tc in answer.tool_calls:
        n = len(out)
        out.append(_call_item(wire, f"{hexid}_{n}", tc.id or f"call_{hexid}_{n}", tc.name, tc.arguments))
    status, incomplete = _status(answer.finish_reason)
    return _response(reply, wire, status, out, usage_obj(answer.usage), incomplete_details=incomplete)


# ---- rendering: the stream ----------------------------------------------------------------------

_DELTA_HEAD = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":'


class ResponseStream:
    """Renders one Responses stream as SSE bytes (PROTOCOLS B.3), per dialect.StreamRenderer.

    Every frame is `event: <type>` + one-line `data` whose `sequence_number` this object
    allocates, rising from 0. Items get output indices 0, 1, 2… as they are added, and one item
    is open at a time: text and reasoning stream into theirs as they come (each closes the
    other); client tool calls are buffered by index and sent whole at the `Finish`, which stays
    correct when an upstream interleaves parallel calls' fragments. `end()` sends exactly one
    terminal event, whose `output` is the items exactly as their `output_item.done` sent them,
    and keeps that response in `final` for the store (written before the bytes go out, B.4).
    """

    eager = True  # response.created before the agent works: Codex's idle timer starts at once
    final: dict[str, Any] | None = None

    def keepalive(self) -> bytes:
        """A quiet run repeats `response.in_progress` (no output: the SDK's snapshot keeps what it
        has): Codex's idle timer (300 s) is reset by events only, never by a comment line."""
        return KEEPALIVE if self._done else self._lifecycle("response.in_progress")

    def __init__(self, reply: Reply) -> None:
        self._reply = reply
        self._wire = _wire(reply)
        self._hex = reply.id.removeprefix("resp_")
        self._seq = 0
        self._items: list[dict[str, Any]] = []  # closed items; the open one's index is len(_items)
        self._open: str | None = None  # "message" | "reasoning"
        self._open_id = ""
        self._parts: list[str] = []  # the open item's text so far
        self._delta_mid = b""  # the open message's delta frame after the sequence number
        self._tools = ToolCallBuffer()  # client tool calls, sent whole at the Finish
        self._reason = END
        self._usage: Usage | None = None
        self._done = False

    def _frame(self, kind: str, fields: dict[str, Any]) -> bytes:
        obj = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return named_frame(kind, obj)

    def _lifecycle(self, kind: str) -> bytes:
        return self._frame(kind, {"response": _response(self._reply, self._wire, "in_progress", [], None)})

    def start(self) -> bytes:
        """The response as it starts: no output (the SDK appends to it, B.6 #9), no usage."""
        return self._lifecycle("response.created") + self._lifecycle("response.in_progress")

    def _begin(self, kind: str) -> bytes:
        out = self._close()
        n = len(self._items)
        self._open, self._parts = kind, []
        if kind == "message":
            iid = self._open_id = f"msg_{self._hex}_{n}"
            item: dict[str, Any] = {"id": iid, "type": "message", "status": "in_progress", "role": "assistant"}
            out += self._frame("response.output_item.added", {"output_index": n, "item": {**item, "content": []}})
            out += self._frame(
                "response.content_part.added",
                {"item_id": iid, "output_index": n, "content_index": 0, "part": _text_part("")},
            )
            where = orjson.dumps({"item_id": iid, "output_index": n, "content_index": 0, "logprobs": []})
            self._delta_mid = b"," + where[1:-1] + b',"delta":'
        else:
            iid = self._open_id = f"rs_{self._hex}_{n}"
            out += self._frame(
                "response.output_item.added",
                {"output_index": n, "item": {"id": iid, "type": "reasoning", "summary": []}},
            )
            out += self._frame(
                "response.reasoning_summary_part.added",
                {"item_id": iid, "output_index": n, "summary_index": 0, "part": {"type": "summary_text", "text": ""}},
            )
        return out

    def _open_item(self, status: str = "completed") -> dict[str, Any]:
        text = "".join(self._parts)
        if self._open == "message":
            return _message_item(self._open_id, text, status)
        return _reasoning_item(self._open_id, text)

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        n, iid, text = len(self._items), self._open_id, "".join(self._parts)
        where = {"item_id": iid, "output_index": n}
        if self._open == "message":
            out = self._frame("response.output_text.done", {**where, "content_index": 0, "text": text, "logprobs": []})
            out += self._frame("response.content_part.done", {**where, "content_index": 0, "part": _text_part(text)})
        else:
            out = self._frame("response.reasoning_summary_text.done", {**where, "summary_index": 0, "text": text})
            out += self._frame(
                "response.reasoning_summary_part.done",
                {**where, "summary_index": 0, "part": {"type": "summary_text", "text": text}},
            )
        item = self._open_item()
        self._open = None
        self._items.append(item)
        return out + self._frame("response.output_item.done", {"output_index": n, "item": item})

    def _flush_tools(self) -> bytes:
        out = self._close()
        for call in self._tools.take():
            n = len(self._items)
            cid = call.id or f"call_{self._hex}_{n}"
            item = _call_item(self._wire, f"{self._hex}_{n}", cid, call.name, "".join(call.parts))
            where = {"item_id": item["id"], "output_index": n}
            if item["type"] == "function_call":
                added = {**item, "status": "in_progress", "arguments": ""}
                out += self._frame("response.output_item.added", {"output_index": n, "item": added})
                out += self._frame("response.function_call_arguments.delta", {**where, "delta": item["arguments"]})
                done = {**where, "name": item["name"], "arguments": item["arguments"]}  # `name`: B.3
                out += self._frame("response.function_call_arguments.done", done)
            else:
                out += self._frame("response.output_item.added", {"output_index": n, "item": {**item, "input": ""}})
                out += self._frame("response.custom_tool_call_input.delta", {**where, "delta": item["input"]})
                out += self._frame("response.custom_tool_call_input.done", {**where, "input": item["input"]})
            out += self._frame("response.output_item.done", {"output_index": n, "item": item})
            self._items.append(item)
        return out

    def events(self, batch: list[Event]) -> bytes:
        if self._done:
            return b""
        out = b""
        for ev in batch:
            if type(ev) is TextDelta:
                if ev.text:  # an empty delta opens nothing
                    if self._open != "message":
                        out += self._begin("message")
                    self._parts.append(ev.text)
                    # the frame _frame would build, as one dump per token (the head is constant)
                    out += _DELTA_HEAD + b"%d" % self._seq + self._delta_mid + orjson.dumps(ev.text) + b"}\n\n"
                    self._seq += 1
            elif isinstance(ev, ReasoningDelta):
                if ev.text:
                    if self._open != "reasoning":
                        out += self._begin("reasoning")
                    self._parts.append(ev.text)
                    where = {"item_id": self._open_id, "output_index": len(self._items), "summary_index": 0}
                    out += self._frame("response.reasoning_summary_text.delta", {**where, "delta": ev.text})
            elif isinstance(ev, ToolCallDelta):
                self._tools.add(ev)
            elif isinstance(ev, Finish):
                out += self._flush_tools()
                self._reason = ev.reason
            elif isinstance(ev, Usage):
                self._usage = ev  # the run's total so far; the last one wins
            # ThinkingSignature, RedactedThinking: no form on this wire (the text went out as a
            # summary). UpstreamCall, ServerToolCall, ServerToolResult: the agent's own work.
        return out

    def end(self) -> bytes:
        """Closes what is open, then exactly one terminal event, `response.completed` or (for a
        real truncation only, B.3) `response.incomplete`, with integer usage."""
        if self._done:
            return b""
        out = self._flush_tools()
        self._done = True
        status, incomplete = _status(self._reason)
        usage = usage_obj(self._usage or Usage(prompt_tokens=self._reply.prompt_tokens))
        self.final = _response(self._reply, self._wire, status, list(self._items), usage, incomplete_details=incomplete)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._frame(kind, {"response": self.final})

    def error(self, err: BmoError) -> bytes:
        """An in-band failure after the first byte: one `response.failed` (Codex's special
        handling keys on its `error.code`, B.3), nothing after it, and nothing to store. Tool
        calls still buffered are dropped: the client must not run half a turn."""
        if self._done:
            return b""
        self._done = True
        output = list(self._items)
        if self._open is not None:
            output.append(self._open_item("incomplete"))
        code = "rate_limit_exceeded" if err.status == 429 else "server_error"
        usage = usage_obj(self._usage) if self._usage else None
        error = {"code": code, "message": err.message}
        return self._frame(
            "response.failed", {"response": _response(self._reply, self._wire, "failed", output, usage, error=error)}
        )


def render_error(err: BmoError) -> bytes:
    """Before the stream starts, errors use the OpenAI envelope (B.5)."""
    return orjson.dumps(err.body())


# ---- input items (GET /v1/responses/{id}/input_items) -------------------------------------------


def _input_content(m: Message) -> list[dict[str, Any]]:
    kind = "output_text" if m.role == "assistant" else "input_text"

    def text(t: str) -> dict[str, Any]:
        return {"type": kind, "text": t, "annotations": []} if kind == "output_text" else {"type": kind, "text": t}

    if isinstance(m.content, str):
        return [text(m.content)] if m.content or not m.tool_calls else []
    parts: list[dict[str, Any]] = []
    for p in m.content or ():
        if p.get("type") == "text":
            parts.append(text(p.get("text", "")))
        elif p.get("type") == "image_url" and isinstance(p.get("image_url"), dict):
            ref = p["image_url"]
            parts.append({"type": "input_image", "image_url": ref.get("url"), "detail": ref.get("detail") or "auto"})
    return parts


def to_input_items(
    messages: list[Message], response_id: str, *, wire: ResponsesWire | None = None
) -> list[dict[str, Any]]:
    """Stored input messages back as Responses items, the inverse of parsing. Ids are derived
    from the response id and the position (`msg_<hex>_i<k>`…), so a page cursor stays valid.
    With the request's `wire`, calls to custom and namespaced tools take their client shapes."""
    hexid, w = response_id.removeprefix("resp_"), wire or ResponsesWire()
    out: list[dict[str, Any]] = []
    custom: set[str] = set()  # ids of the calls to custom tools: their outputs are custom too
    for m in messages:
        tail = f"{hexid}_i{len(out)}"
        if m.role == "tool":
            kind = "custom_tool_call_output" if m.tool_call_id in custom else "function_call_output"
            prefix = "ctco" if kind == "custom_tool_call_output" else "fco"
            item = {"id": f"{prefix}_{tail}", "type": kind, "call_id": m.tool_call_id or "", "output": m.text()}
            out.append(item | {"status": "completed"})
            continue
        content = _input_content(m)
        if content or not m.tool_calls:
            out.append(
                {"id": f"msg_{tail}", "type": "message", "role": m.role, "status": "completed"} | {"content": content}
            )
        for tc in m.tool_calls or ():
            item = _call_item(w, f"{hexid}_i{len(out)}", tc.id, tc.name, tc.arguments)
            if item["type"] == "custom_tool_call":
                custom.add(tc.id)
            out.append(item | {"status": "completed"})  # a listed item's status is required
    return out


def _limit(raw: Any) -> int:
    if raw is None:
        return 20
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 100:
        raise _bad("`limit` must be an integer from 1 to 100.", "limit")
    return raw


def input_items_page(
    items: list[dict[str, Any]],
    *,
    after: str | None = None,
    before: str | None = None,
    limit: int | str | None = None,
    order: str | None = None,
) -> dict[str, Any]:
    """One cursor page of input items, the usual OpenAI list shape (B.4; UNSURE there):
    `order` desc (the default) is newest first; `after`/`before` are item ids of this list."""
    order = order or "desc"
    if order not in ("asc", "desc"):
        raise _bad("`order` must be asc or desc.", "order")
    n = _limit(limit)
    seq = items if order == "asc" else items[::-1]
    ids = [it["id"] for it in seq]
    start, stop = 0, len(seq)
    for name, cursor in (("after", after), ("before", before)):
        if cursor is not None and cursor not in ids:
            raise _bad(f"`{name}` is not an item of this response.", name)
    if after is not None:
        start = ids.index(after) + 1
    if before is not None:
        stop = ids.index(before)
    window = seq[start:stop]
    # Paging backwards (`before` alone) takes the items nearest the cursor.
    data = window[-n:] if before is not None and after is None else window[:n]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(window) > len(data),
    }


class ResponsesDialect:
    """The Responses dialect, as the shared relay drives it (protocol/dialect.py)."""

    name = "responses"
    id_prefix = "resp_"
    request_id_header: str | None = None
    eager_start = True  # response.created goes out before the agent works

    parse = staticmethod(parse_responses_request)
    render_whole = staticmethod(to_response)

    @staticmethod
    def stream(reply: Reply) -> ResponseStream:
        return ResponseStream(reply)

    @staticmethod
    def render_error(err: BmoError) -> bytes:
        return orjson.dumps(err.body())


RESPONSES = ResponsesDialect()
