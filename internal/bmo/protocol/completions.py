"""OpenAI legacy completions, client side (layer 1, pure, no I/O): editor autocomplete (SPEC §4c).

A request is a raw text completion: `prompt` and `suffix` go to the agent's upstream
`/completions` exactly as sent (no chat template: FIM markers must reach the model as they are),
with the sampling settings the agent does not lock; no agent loop, no system prompt, no tools, no
session. The answer goes back as `text_completion` objects, streamed chunk by chunk as the
upstream sends them (`TextStream`), with bmo's own id and the model as the client named it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bmo.chat import END, STOP_SEQUENCE, ChatRequest, Completion, Event, Finish, TextDelta, Usage
from bmo.errors import BmoError, InvalidRequest
from bmo.protocol.dialect import Reply
from bmo.protocol.sse import DONE, KEEPALIVE, frame

# the fields a /completions server takes, validated like chat's, forwarded unless locked
_NUMBERS = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
FINISH = {END: "stop", STOP_SEQUENCE: "stop"}


def _bad(message: str, param: str | None, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, code=code, param=param)


def parse_completions_request(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> ChatRequest:
    """Validate a completions body; raises InvalidRequest naming the bad `param`."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]  # Continue and others send a list of one
    if prompt is None:
        raise _bad("`prompt` is required.", "prompt", "missing_prompt")
    if not isinstance(prompt, str):
        raise _bad("`prompt` must be a string (or a list of one string); token arrays are not supported.", "prompt")
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise _bad("`suffix` must be a string.", "suffix")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("`model` must be a string.", "model")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("`stream` must be a boolean.", "stream")
    for name in ("n", "best_of"):
        v = body.get(name)
        if v is not None and v != 1:
            raise _bad(f"`{name}` must be 1: bmo returns one completion per request.", name)
    if body.get("echo"):
        raise _bad("`echo` is not supported.", "echo")
    params: dict[str, Any] = {}
    for name, (lo, hi) in _NUMBERS.items():
        v = body.get(name)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise _bad(f"`{name}` must be a number between {lo:g} and {hi:g}.", name)
            params[name] = v
    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise _bad("`max_tokens` must be a positive integer.", "max_tokens")
        params["max_tokens"] = max_tokens
    stop = body.get("stop")
    if stop is not None:
        if not (isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))):
            raise _bad("`stop` must be a string or an array of strings.", "stop")
        params["stop"] = stop  # any number of them: Continue sends more than four
    for name in ("seed", "logit_bias"):
        if body.get(name) is not None:
            params[name] = body[name]
    opts = body.get("stream_options")
    return ChatRequest(
        model=model or "default",
        messages=[],
        params=params,
        stream=bool(stream),
        include_usage=isinstance(opts, dict) and opts.get("include_usage") is True,
        prompt=prompt,
        suffix=suffix,
    )


def _usage(u: Usage) -> dict[str, int]:
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


def to_text_completion(answer: Completion, reply: Reply) -> dict[str, Any]:
    reason = answer.finish_reason
    return {
        "id": reply.id,
        "object": "text_completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [
            {"text": answer.content or "", "index": 0, "logprobs": None, "finish_reason": FINISH.get(reason, reason)}
        ],
        "usage": _usage(answer.usage),
    }


class TextStream:
    """One completions stream as `data:` frames: a chunk per upstream text delta, a last chunk
    with the finish reason, the usage chunk (only with `stream_options.include_usage`) and
    `[DONE]`. The headers wait for the first chunk (not `eager`): an early failure keeps its
    real HTTP status."""

    __slots__ = ("_head", "_tail", "_usage_head", "include_usage", "_usage")

    eager = False
    @staticmethod
    def keepalive() -> bytes:
        return KEEPALIVE

    final: dict[str, Any] | None = None  # nothing of a completion is stored

    def __init__(self, reply: Reply) -> None:
        head = orjson.dumps(
            {"id": reply.id, "object": "text_completion", "created": reply.created, "model": reply.model}
        )
        self._usage_head = head[:-1]
        self._head = b"data: " + head[:-1] + b',"choices":[{"text":'
        self._tail = b',"index":0,"logprobs":null,"finish_reason":null}]}\n\n'
        self.include_usage = reply.include_usage
        self._usage: Usage | None = None

    def start(self) -> bytes:
        return b""

    def events(self, batch: list[Event]) -> bytes:
        out: list[bytes] = []
        for ev in batch:
            kind = type(ev)
            if kind is TextDelta:
                out.append(self._head + orjson.dumps(ev.text) + self._tail)  # type: ignore[union-attr]
            elif kind is Finish:
                reason = FINISH.get(ev.reason, ev.reason)  # type: ignore[union-attr]
                out.append(
                    self._head
                    + b'""'
                    + b',"index":0,"logprobs":null,"finish_reason":'
                    + orjson.dumps(reason)
                    + b"}]}\n\n"
                )
            elif kind is Usage:
                self._usage = ev  # type: ignore[assignment]
        return b"".join(out)

    def end(self) -> bytes:
        if self.include_usage and self._usage is not None:
            return frame(self._usage_head + b',"choices":[],"usage":' + orjson.dumps(_usage(self._usage)) + b"}") + DONE
        return DONE

    @staticmethod
    def error(err: BmoError) -> bytes:
        return frame(orjson.dumps(err.body())) + DONE


class CompletionsDialect:
    """Legacy completions as a dialect of the shared relay (protocol/dialect.py)."""

    name = "completions"
    id_prefix = "cmpl-"
    request_id_header: str | None = None
    eager_start = False
    parse = staticmethod(parse_completions_request)
    render_whole = staticmethod(to_text_completion)

    @staticmethod
    def stream(reply: Reply) -> TextStream:
        return TextStream(reply)

    @staticmethod
    def render_error(err: BmoError) -> bytes:
        return orjson.dumps(err.body())


COMPLETIONS = CompletionsDialect()
