"""The agent loop, both modes, from one table of cases (no HTTP, no store).

`ScriptedProvider` answers each upstream call with the next scripted `Completion` (as one whole
answer, or as a stream of its events in small reads) and records every call it got. Each case
runs once streamed and once whole, and both must tell the client the same thing and send the
upstream the same conversation.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bmo.agents import AgentSpec
from bmo.chat import (
    END,
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
from bmo.loop import plan_run, run_agent, run_agent_whole
from bmo.providers.base import ModelCall
from bmo.tools.builtin import Calculator


class _Stream:
    def __init__(self, events: list[Event]) -> None:
        self._events = events
        self.done = False
        self.closed = False

    async def _reads(self) -> AsyncIterator[bytes]:
        for _ in range(len(self._events)):
            yield b"x"

    def reads(self) -> AsyncIterator[bytes]:
        return self._reads()

    def decode(self, chunk: bytes) -> list[Event]:
        ev = self._events.pop(0)
        if not self._events:
            self.done = True
        return [ev]

    def end(self) -> list[Event]:
        return []

    def failed(self, e: Exception) -> Exception:
        return e

    async def close(self) -> None:
        self.closed = True


class ScriptedProvider:
    """What the model says, call by call (`enqueue`), and what it was asked (`calls`)."""

    name = "scripted"

    def __init__(self) -> None:
        self.script: list[Completion] = []
        self.calls: list[ModelCall] = []

    def enqueue(self, *answers: Completion) -> None:
        self.script.extend(answers)

    def _next(self, call: ModelCall) -> Completion:
        # a snapshot: the loop appends to its own list as the run goes on
        self.calls.append(ModelCall(call.model, list(call.messages), call.params, call.tools, call.tool_choice))
        return self.script.pop(0)

    async def complete(self, call: ModelCall) -> Completion:
        return self._next(call)

    async def open_stream(self, call: ModelCall) -> _Stream:
        answer = self._next(call)
        events: list[Event] = []
        for ev in answer.events():  # text word by word: several reads, as a real stream
            if isinstance(ev, TextDelta):
                events += [TextDelta(w) for w in re.findall(r"\s*\S+\s*", ev.text)]
            else:
                events.append(ev)
        return _Stream(events)

    async def count_tokens(self, call: ModelCall) -> int | None:
        return None

    async def close(self) -> None:
        return None


def said(text: str = "", calls: list[ToolCall] | None = None, reason: str = END, **kw: Any) -> Completion:
    return Completion(content=text, tool_calls=calls or [], finish_reason=reason, usage=Usage(10, 3), **kw)


CALC = ToolCall("c1", "calculator", '{"expression": "6*7"}')
CLIENT = ToolCall("k1", "lookup", '{"q": "x"}')
SIGNED = [Thinking("let me think", "sig-abc"), Thinking(redacted="opaque")]


@dataclass
class Case:
    name: str
    script: list[Completion]
    text: str
    finish: str
    client_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments)
    upstream_calls: int = 1
    max_steps: int = 8
    tool_choice: ToolChoice | None = None
    check: Any = None  # extra assertions on the provider's recorded calls


def _second_call_has_tool_result(p: ScriptedProvider) -> None:
    msgs = p.calls[1].messages
    assert msgs[-2].role == "assistant" and msgs[-2].tool_calls and msgs[-2].tool_calls[0].name == "calculator"
    assert msgs[-1].role == "tool" and msgs[-1].tool_call_id == "c1" and msgs[-1].content == "42"


def _forced_choice_released(p: ScriptedProvider) -> None:
    assert p.calls[0].tool_choice == ToolChoice("tool", "calculator")
    assert p.calls[1].tool_choice == ToolChoice("auto")


def _thinking_replayed(p: ScriptedProvider) -> None:
    assistant = p.calls[1].messages[-2]
    assert assistant.thinking == SIGNED  # signature and redacted data byte for byte


def _bad_args_are_an_error_result(p: ScriptedProvider) -> None:
    tool = p.calls[1].messages[-1]
    assert tool.is_error and "not valid JSON" in str(tool.content)


CASES = [
    Case("text", [said("hello there")], "hello there", END),
    Case("client tool", [said("", [CLIENT], TOOL_CALLS)], "", TOOL_CALLS, [("lookup", '{"q": "x"}')]),
    Case(
        "server tool then text",
        [said("", [CALC], TOOL_CALLS), said("it is 42")],
        "it is 42",
        END,
        upstream_calls=2,
        check=_second_call_has_tool_result,
    ),
    Case(
        "max_steps cuts a loop short",
        [said("", [CALC], TOOL_CALLS), said("", [CALC], TOOL_CALLS)],
        "",
        LENGTH,
        upstream_calls=2,
        max_steps=2,
    ),
    Case(
        "client call wins over a server call in the same turn",
        [said("", [CALC, CLIENT], TOOL_CALLS)],
        "",
        TOOL_CALLS,
        [("lookup", '{"q": "x"}')],
    ),
    Case(
        "a forced tool choice applies to the first call only",
        [said("", [CALC], TOOL_CALLS), said("done")],
        "done",
        END,
        upstream_calls=2,
        tool_choice=ToolChoice("tool", "calculator"),
        check=_forced_choice_released,
    ),
    Case("stop sequence", [said("halt", stop_sequence="STOP", reason=STOP_SEQUENCE)], "halt", STOP_SEQUENCE),
    Case(
        "signed thinking goes back with the tool turn",
        [said("", [CALC], TOOL_CALLS, thinking=SIGNED), said("ok")],
        "ok",
        END,
        upstream_calls=2,
        check=_thinking_replayed,
    ),
    Case(
        "bad tool arguments are a result the model reads",
        [said("", [ToolCall("c1", "calculator", "{nope")], TOOL_CALLS), said("sorry")],
        "sorry",
        END,
        upstream_calls=2,
        check=_bad_args_are_an_error_result,
    ),
]


@dataclass
class Outcome:
    text: str
    finish: str
    stop_sequence: str | None
    client_calls: list[tuple[str, str]]
    usage: tuple[int, int]


async def _streamed(plan: Any, p: ScriptedProvider) -> Outcome:
    text, calls, finish, seq, usage = [], {}, None, None, None
    finishes = 0
    async for batch in run_agent(plan, p):
        assert batch, "a batch is never empty"
        for ev in batch:
            if isinstance(ev, TextDelta):
                text.append(ev.text)
            elif isinstance(ev, ToolCallDelta):
                c = calls.setdefault(ev.index, ["", ""])
                c[0] = c[0] or (ev.name or "")
                c[1] += ev.arguments
            elif isinstance(ev, Finish):
                finish, seq = ev.reason, ev.stop_sequence
                finishes += 1
            elif isinstance(ev, Usage):
                usage = ev
            else:
                assert isinstance(ev, (ReasoningDelta, ThinkingSignature, RedactedThinking))
    assert finishes == 1 and usage is not None and finish is not None
    return Outcome(
        "".join(text),
        finish,
        seq,
        [(c[0], c[1]) for _, c in sorted(calls.items())],
        (usage.prompt_tokens, usage.completion_tokens),
    )


async def _whole(plan: Any, p: ScriptedProvider) -> Outcome:
    done = await run_agent_whole(plan, p)
    return Outcome(
        done.content or "",
        done.finish_reason,
        done.stop_sequence,
        [(c.name, c.arguments) for c in done.tool_calls],
        (done.usage.prompt_tokens, done.usage.completion_tokens),
    )


@pytest.mark.parametrize("mode", ["stream", "whole"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_loop_case(case: Case, mode: str) -> None:
    p = ScriptedProvider()
    p.enqueue(*case.script)
    agent = AgentSpec(id="a", model="scripted/m", tools=["calculator"], max_steps=case.max_steps)
    req = ChatRequest(
        model="a",
        messages=[Message(role="user", content="hi")],
        tools=[ToolSpec("lookup")],
        tool_choice=case.tool_choice,
    )
    plan = plan_run(agent, req, {"calculator": Calculator()}, system_policy="append", max_steps=8)
    out = await (_streamed(plan, p) if mode == "stream" else _whole(plan, p))
    assert out.text == case.text
    assert out.finish == case.finish
    assert out.stop_sequence == ("STOP" if case.finish == STOP_SEQUENCE else None)
    assert out.client_calls == case.client_calls
    assert len(p.calls) == case.upstream_calls
    assert out.usage == (10 * case.upstream_calls, 3 * case.upstream_calls)  # summed over every call
    if case.check is not None:
        case.check(p)
