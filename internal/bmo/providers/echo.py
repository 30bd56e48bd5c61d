"""The built-in `echo` provider: offline, deterministic, free (layer 2).

It answers with the text of the last user message, streamed word by word, and counts tokens as
words and punctuation marks, so usage is real and repeatable. Two conventions make the agent loop
demonstrable with no upstream at all:
  - a user message `/tool NAME {json}` makes it call tool NAME with those arguments;
  - after a tool result it answers with that result's text.
It honours `max_tokens`/`max_completion_tokens` (finish_reason `length`). A raw text completion
(`/v1/completions`) is answered with the prompt's last line.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from bmo.chat import (
    END,
    LENGTH,
    TOOL_CALLS,
    Completion,
    Event,
    Finish,
    Message,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from bmo.providers.base import ModelCall, one_read

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\s*\S+\s*")
_TOOL = re.compile(r"^/tool\s+(\S+)\s*(.*)$", re.S)


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def _prompt_tokens(messages: list[Message]) -> int:
    n = 0
    for m in messages:
        n += count_tokens(m.text()) + 1  # +1 for the role marker
        for tc in m.tool_calls or ():
            n += count_tokens(tc.name) + count_tokens(tc.arguments)
    return n


def _limited(text: str, call: ModelCall) -> tuple[str, list[ToolCall], str]:
    """`text`, cut to `max_tokens` words (finish `length`)."""
    limit = call.params.get("max_completion_tokens") or call.params.get("max_tokens")
    words = _WORD.findall(text)
    if isinstance(limit, int) and len(words) > limit:
        return "".join(words[:limit]), [], LENGTH
    return text, [], END


class EchoProvider:
    def __init__(self, name: str) -> None:
        self.name = name

    def _answer(self, call: ModelCall) -> tuple[str, list[ToolCall], str]:
        if call.prompt is not None:  # a raw text completion: the prompt's last line, once more
            return _limited(call.prompt.rsplit("\n", 1)[-1], call)
        last = call.messages[-1] if call.messages else Message(role="user", content="")
        if last.role == "tool":
            return last.text(), [], END
        text = last.text() if last.role == "user" else ""
        m = _TOOL.match(text.strip())
        if m:
            args = m.group(2).strip() or "{}"
            return "", [ToolCall(id=f"call_echo_{len(call.messages)}", name=m.group(1), arguments=args)], TOOL_CALLS
        return _limited(text, call)

    async def complete(self, call: ModelCall) -> Completion:
        text, calls, reason = self._answer(call)
        completion_tokens = count_tokens(text) + sum(count_tokens(c.arguments) for c in calls)
        return Completion(
            content=text if not calls else None,
            tool_calls=calls,
            finish_reason=reason,
            usage=Usage(
                _prompt_tokens(call.messages) if call.prompt is None else count_tokens(call.prompt), completion_tokens
            ),
        )

    async def open_stream(self, call: ModelCall) -> _EchoStream:
        return _EchoStream(await self.complete(call))

    async def count_tokens(self, call: ModelCall) -> int | None:
        return _prompt_tokens(call.messages)

    async def close(self) -> None:
        return None


class _EchoStream:
    """The whole answer in one "read": tool calls, the words one event each, finish, usage."""

    def __init__(self, answer: Completion) -> None:
        self._answer = answer
        self.done = False

    def reads(self) -> AsyncIterator[bytes]:
        return one_read()

    def decode(self, chunk: bytes) -> list[Event]:
        d = self._answer
        out: list[Event] = []
        for i, tc in enumerate(d.tool_calls):
            out.append(ToolCallDelta(index=i, id=tc.id, name=tc.name, arguments=""))
            out.append(ToolCallDelta(index=i, arguments=tc.arguments))
        out += [TextDelta(word) for word in _WORD.findall(d.content or "")]
        out += [Finish(d.finish_reason), d.usage]
        self.done = True
        return out

    def end(self) -> list[Event]:
        return []

    def failed(self, e: Exception) -> Exception:
        return e

    async def close(self) -> None:
        return None
