"""OpenAI Chat Completions, upstream side (layer 1, pure, no I/O).

`to_upstream_body` renders the internal request for any Chat Completions server (OpenAI, vLLM,
llama.cpp, Ollama...); `from_completion_body` and `ChunkParser` read its answers back into the
internal model. Upstreams are forgiving and sloppy in different ways; this module absorbs that
(missing tool-call indexes, `finish_reason: ""`, usage in odd places) so nothing above it has to.
"""

from __future__ import annotations

from typing import Any

from bmo.chat import (
    END,
    FILTERED,
    LENGTH,
    TOOL_CALLS,
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
from bmo.protocol.openai import SAMPLING_FIELDS, tool_call_obj

# what upstreams say (the four of the spec, and what sloppy servers send) -> the neutral reason
FINISH_REASONS = {
    "stop": END,
    "length": LENGTH,
    "tool_calls": TOOL_CALLS,
    "function_call": TOOL_CALLS,
    "content_filter": FILTERED,
    "max_tokens": LENGTH,
    "model_length": LENGTH,
}
# sampling settings a Chat Completions server takes (the rest are another family's: dropped)
UPSTREAM_PARAMS = frozenset(SAMPLING_FIELDS)


def normalise_finish(reason: Any, has_tool_calls: bool = False) -> str:
    """Map whatever an upstream says to a neutral stop reason (chat.STOP_REASONS)."""
    found = FINISH_REASONS.get(reason) if isinstance(reason, str) else None
    if found is not None:
        return found
    return TOOL_CALLS if has_tool_calls else END


def tool_choice_obj(choice: ToolChoice) -> Any:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def message_obj(m: Message) -> dict[str, Any]:
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.name is not None and m.role in ("user", "system", "developer", "assistant"):
        d["name"] = m.name
    if m.tool_calls:
        d["tool_calls"] = [tool_call_obj(tc) for tc in m.tool_calls]
    if m.tool_call_id is not None:
        d["tool_call_id"] = m.tool_call_id
    if m.role == "tool":
        if m.content is None:
            d["content"] = ""
        elif m.is_error and isinstance(m.content, str) and not m.content[:5].lower().startswith("error"):
            d["content"] = "Error: " + m.content  # Chat Completions has no is_error: the text says it
    return d


def messages_obj(messages: list[Message]) -> list[dict[str, Any]]:
    """The upstream's `messages`. A tool result with images (an MCP tool's) cannot carry them
    in Chat Completions (tool messages take text only): they follow the run of tool messages
    in one user message, as vLLM does, so every tool call is still answered right after it."""
    out: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    for m in messages:
        if images and m.role != "tool":
            out.append({"role": "user", "content": images})
            images = []
        d = message_obj(m)
        if m.role == "tool" and isinstance(m.content, list):
            pics = [p for p in m.content if p.get("type") == "image_url"]
            if pics:
                d["content"] = m.text() or "(see the images below)"
                images += [{"type": "text", "text": f"Images from tool call {m.tool_call_id}:"}, *pics]
        out.append(d)
    if images:
        out.append({"role": "user", "content": images})
    return out


def tool_obj(t: ToolSpec) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name, "description": t.description, "parameters": t.schema}
    if t.strict is not None:
        fn["strict"] = t.strict
    return {"type": "function", "function": fn}


def to_upstream_body(
    *,
    model: str,
    messages: list[Message],
    params: dict[str, Any],
    tools: list[ToolSpec],
    tool_choice: ToolChoice | None,
    stream: bool,
    stream_usage: bool = True,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": messages_obj(messages)}
    for k, v in params.items():
        if k in UPSTREAM_PARAMS:
            body[k] = v
    if tools:
        body["tools"] = [tool_obj(t) for t in tools]
        if tool_choice is not None:
            body["tool_choice"] = tool_choice_obj(tool_choice)
            if tool_choice.parallel is not None:
                body["parallel_tool_calls"] = tool_choice.parallel
    else:
        body.pop("parallel_tool_calls", None)  # servers reject it without tools
    if stream:
        body["stream"] = True
        if stream_usage:
            body["stream_options"] = {"include_usage": True}  # bmo's usage must be real
    return body


def usage_from(obj: Any) -> Usage | None:
    if not isinstance(obj, dict):
        return None
    p = obj.get("prompt_tokens")
    c = obj.get("completion_tokens")
    if not isinstance(p, int) and not isinstance(c, int):
        return None
    return Usage(prompt_tokens=p if isinstance(p, int) else 0, completion_tokens=c if isinstance(c, int) else 0)


def _reasoning_of(d: dict[str, Any]) -> str | None:
    for key in ("reasoning_content", "reasoning", "thinking"):
        v = d.get(key)
        if isinstance(v, str) and v:
            return v
    return None


def from_completion_body(body: Any) -> Completion:
    """A non-streamed upstream answer. Raises ValueError when it is not one."""
    if not isinstance(body, dict):
        raise ValueError("upstream answer is not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("upstream answer has no choices")
    ch = choices[0]
    msg: dict[str, Any] = ch["message"] if isinstance(ch.get("message"), dict) else {}
    calls: list[ToolCall] = []
    for j, tc in enumerate(msg.get("tool_calls") or []):
        fn = tc.get("function") or {}
        args = fn.get("arguments", "")
        calls.append(
            ToolCall(
                id=str(tc.get("id") or f"call_{j}"),
                name=str(fn.get("name", "")),
                arguments=args if isinstance(args, str) else str(args),
            )
        )
    content = msg.get("content")
    if isinstance(content, list):  # some servers answer with parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return Completion(
        content=content if isinstance(content, str) else None,
        tool_calls=calls,
        finish_reason=normalise_finish(ch.get("finish_reason"), bool(calls)),
        usage=usage_from(body.get("usage")) or Usage(),
        reasoning=_reasoning_of(msg),
    )


class ChunkParser:
    """Turns upstream `chat.completion.chunk` objects into internal events.

    Tool-call fragments are keyed by their `index`; upstreams that omit it (some llama.cpp and
    mistral builds) get one assigned from the call `id`, or the last call seen.
    """

    __slots__ = ("_ids", "_last", "saw_tool_calls", "saw_usage", "chars")

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._last = -1
        self.saw_tool_calls = False
        self.saw_usage = False
        self.chars = 0  # of streamed content and arguments: the usage estimate when none is sent

    def plain_text(self, chunk: dict[str, Any]) -> str | None:
        """The text of the commonest chunk, one content token ({"delta": {"content": "…"},
        "finish_reason": null}, no usage); None for any other chunk, which `feed` then reads."""
        choices = chunk.get("choices")
        if choices and chunk.get("usage") is None:
            ch = choices[0]
            delta = ch.get("delta")
            if type(delta) is dict and len(delta) == 1 and ch.get("finish_reason") is None:
                text = delta.get("content")
                if type(text) is str:
                    self.chars += len(text)
                    return text
        return None

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        text = self.plain_text(chunk)
        if text is not None:
            return [TextDelta(text)] if text else []
        choices = chunk.get("choices")
        out: list[Event] = []
        if isinstance(choices, list) and choices:
            ch = choices[0]
            if isinstance(ch, dict):
                delta = ch.get("delta")
                if isinstance(delta, dict):
                    r = _reasoning_of(delta)
                    if r:
                        out.append(ReasoningDelta(r))
                    text = delta.get("content")
                    if isinstance(text, str) and text:
                        self.chars += len(text)
                        out.append(TextDelta(text))
                    for tc in delta.get("tool_calls") or ():
                        if isinstance(tc, dict):
                            out.append(self._tool(tc))
                fr = ch.get("finish_reason")
                if fr:
                    out.append(Finish(normalise_finish(fr, self.saw_tool_calls)))
        u = usage_from(chunk.get("usage"))
        if u is not None:
            self.saw_usage = True
            out.append(u)
        return out

    def _tool(self, tc: dict[str, Any]) -> ToolCallDelta:
        self.saw_tool_calls = True
        tid = tc.get("id")
        idx = tc.get("index")
        if not isinstance(idx, int):
            if isinstance(tid, str) and tid:
                idx = self._ids.setdefault(tid, len(self._ids))
            else:
                idx = max(self._last, 0)
        self._last = idx
        fn = tc.get("function") or {}
        name = fn.get("name") if isinstance(fn.get("name"), str) else None
        args = fn.get("arguments")
        if isinstance(args, str):
            self.chars += len(args)
        return ToolCallDelta(
            index=idx,
            id=tid if isinstance(tid, str) and tid else None,
            name=name,
            arguments=args if isinstance(args, str) else "",
        )


# ---- raw text completions (/completions): editor autocomplete, no chat template -------------


def to_text_body(
    *, model: str, prompt: str, suffix: str | None, params: dict[str, Any], stream: bool, stream_usage: bool = True
) -> dict[str, Any]:
    """The prompt (and suffix) exactly as the client sent them, the sampling settings a
    /completions server takes."""
    body: dict[str, Any] = {"model": model, "prompt": prompt}
    if suffix is not None:
        body["suffix"] = suffix
    for k, v in params.items():
        if k in TEXT_PARAMS:
            body[k] = v
    if stream:
        body["stream"] = True
        if stream_usage:
            body["stream_options"] = {"include_usage": True}
    return body


TEXT_PARAMS = frozenset(
    {"temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias", "n"}
)


def from_text_body(body: Any) -> Completion:
    """A non-streamed `text_completion`. Raises ValueError when it is not one."""
    if not isinstance(body, dict):
        raise ValueError("upstream answer is not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("upstream answer has no choices")
    text = choices[0].get("text")
    return Completion(
        content=text if isinstance(text, str) else "",
        tool_calls=[],
        finish_reason=normalise_finish(choices[0].get("finish_reason")),
        usage=usage_from(body.get("usage")) or Usage(),
    )


class TextChunkParser(ChunkParser):
    """`text_completion` chunks (`choices[0].text`) into the same events as chat chunks."""

    __slots__ = ()

    def plain_text(self, chunk: dict[str, Any]) -> str | None:
        choices = chunk.get("choices")
        if choices and chunk.get("usage") is None:
            ch = choices[0]
            if ch.get("finish_reason") is None:
                text = ch.get("text")
                if type(text) is str:
                    self.chars += len(text)
                    return text
        return None

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        text = self.plain_text(chunk)
        if text is not None:
            return [TextDelta(text)] if text else []
        out: list[Event] = []
        choices = chunk.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            ch = choices[0]
            last = ch.get("text")
            if isinstance(last, str) and last:
                self.chars += len(last)
                out.append(TextDelta(last))
            if ch.get("finish_reason"):
                out.append(Finish(normalise_finish(ch["finish_reason"])))
        u = usage_from(chunk.get("usage"))
        if u is not None:
            self.saw_usage = True
            out.append(u)
        return out
