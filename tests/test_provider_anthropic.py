"""The `anthropic` upstream kind: the pure translation (protocol/anthropic_upstream.py) with no
server, then the provider against a scripted fake Anthropic (tests/fakes_anthropic.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from bmo.chat import (
    END,
    FILTERED,
    LENGTH,
    STOP_SEQUENCE,
    TOOL_CALLS,
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
from bmo.config import ProviderConfig
from bmo.errors import RateLimited, UpstreamError
from bmo.protocol.anthropic_upstream import DEFAULT_MAX_TOKENS, EventParser, from_message_body, to_upstream_body
from bmo.protocol.sse import SSEDecoder
from bmo.providers import KINDS
from bmo.providers.anthropic import AnthropicProvider, api_root
from bmo.providers.base import ModelCall
from fakes_anthropic import AStep, FakeAnthropicUpstream
from golden import assert_golden

SIG = "EqQBCkYIBxgCKkB+sig/with=padding=="  # opaque: must come back exactly as issued


def body(messages: list[Message], params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    return to_upstream_body(
        model="claude-test",
        messages=messages,
        params=params or {},
        tools=kw.get("tools", []),
        tool_choice=kw.get("tool_choice"),
        stream=kw.get("stream", False),
    )


# ---- to_upstream_body ----------------------------------------------------------------------

HISTORY = [
    Message("system", "You are careful."),
    Message("developer", [{"type": "text", "text": "Use metric units."}]),
    Message(
        "user",
        [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        ],
    ),
    Message(
        "assistant",
        "Let me look that up.",
        tool_calls=[ToolCall("toolu_1", "lookup", '{"q": "cat", "n": 2}'), ToolCall("toolu_2", "weather", "")],
        thinking=[Thinking("The user wants facts.", SIG), Thinking("unsigned musing", ""), Thinking(redacted="RED==")],
    ),
    Message("tool", "a cat", tool_call_id="toolu_1"),
    Message("tool", "no weather service", tool_call_id="toolu_2", is_error=True),
    Message("user", "Thanks. And the weather?"),
]
PARAMS = {
    "max_tokens": 300,
    "stop": "\n\nHuman:",
    "temperature": 1.5,
    "top_p": 0.9,
    "top_k": 40,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.1,
    "seed": 3,
    "n": 1,
    "logprobs": True,
    "response_format": {"type": "json_object"},
    "reasoning_effort": "high",
    "thinking": {"type": "enabled", "budget_tokens": 1024},
}
TOOLS = [
    ToolSpec("lookup", "Look something up", {"type": "object", "properties": {"q": {"type": "string"}}}),
    ToolSpec("weather"),
]


def test_request_golden() -> None:
    b = body(HISTORY, PARAMS, tools=TOOLS, tool_choice=ToolChoice("required", parallel=False), stream=True)
    assert_golden("anthropic_upstream_request.json", b)
    assert b["system"] == "You are careful.\n\nUse metric units."
    assert [m["role"] for m in b["messages"]] == ["user", "assistant", "user"]
    assert b["max_tokens"] == 300 and b["stop_sequences"] == ["\n\nHuman:"] and b["temperature"] == 1.0
    for dropped in ("presence_penalty", "frequency_penalty", "seed", "n", "logprobs", "response_format", "stop"):
        assert dropped not in b
    assert b["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert b["stream"] is True
    user, assistant, results = b["messages"]
    assert [p["type"] for p in user["content"]] == ["text", "image", "image"]  # audio dropped
    assert user["content"][1]["source"] == {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    assert user["content"][2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}
    # signed thinking byte for byte, unsigned dropped, redacted kept, then text, then tool_use
    assert assistant["content"][0] == {"type": "thinking", "thinking": "The user wants facts.", "signature": SIG}
    assert assistant["content"][1] == {"type": "redacted_thinking", "data": "RED=="}
    assert [p["type"] for p in assistant["content"]] == [
        "thinking",
        "redacted_thinking",
        "text",
        "tool_use",
        "tool_use",
    ]
    assert assistant["content"][3]["input"] == {"q": "cat", "n": 2}
    assert assistant["content"][4]["input"] == {}
    # both tool results in one user turn, before the text that followed them
    assert [p["type"] for p in results["content"]] == ["tool_result", "tool_result", "text"]
    assert results["content"][1] == {
        "type": "tool_result",
        "tool_use_id": "toolu_2",
        "content": "no weather service",
        "is_error": True,
    }


def test_request_defaults_and_params() -> None:
    b = body([Message("user", "hi")])
    assert b == {"model": "claude-test", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                 "max_tokens": DEFAULT_MAX_TOKENS}  # fmt: skip
    assert body([Message("user", "hi")], {"max_completion_tokens": 77})["max_tokens"] == 77
    assert body([Message("user", "hi")], {"stop": ["a", "b"]})["stop_sequences"] == ["a", "b"]
    assert body([Message("user", "hi")], {"temperature": -1})["temperature"] == 0.0
    # no tools: no tool_choice, whatever was asked
    assert "tool_choice" not in body(
        [Message("user", "hi")], {"parallel_tool_calls": False}, tool_choice=ToolChoice("required")
    )


@pytest.mark.parametrize(
    ("choice", "params", "want"),
    [
        (None, {}, None),
        (None, {"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
        (ToolChoice("auto"), {}, {"type": "auto"}),
        (ToolChoice("required"), {}, {"type": "any"}),
        (ToolChoice("none", parallel=False), {}, {"type": "none"}),
        (ToolChoice("tool", "lookup"), {}, {"type": "tool", "name": "lookup"}),
        (
            ToolChoice("tool", "lookup", parallel=False),
            {},
            {"type": "tool", "name": "lookup", "disable_parallel_tool_use": True},
        ),
    ],
)
def test_tool_choice(choice: ToolChoice | None, params: dict[str, Any], want: dict[str, Any] | None) -> None:
    b = body([Message("user", "hi")], params, tools=TOOLS, tool_choice=choice)
    assert b.get("tool_choice") == want
    assert b["tools"][1] == {"name": "weather", "input_schema": {"type": "object", "properties": {}}}


def test_roles_alternate_and_empty_turns_vanish() -> None:
    b = body(
        [
            Message("user", "one"),
            Message("user", [{"type": "text", "text": "two"}]),
            Message("assistant", ""),  # nothing to send: its neighbours merge
            Message("user", "three"),
            Message("assistant", "ok", tool_calls=[ToolCall("t1", "f", "not json")]),
            Message("tool", [{"type": "text", "text": "res"}], tool_call_id="t1"),
        ]
    )
    assert [m["role"] for m in b["messages"]] == ["user", "assistant", "user"]
    assert [p["text"] for p in b["messages"][0]["content"]] == ["one", "two", "three"]
    assert b["messages"][1]["content"][1]["input"] == {}  # invalid arguments: an empty object
    assert b["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "t1", "content": "res"}]


def test_images_anthropic_cannot_take_are_dropped() -> None:
    parts: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}},
        {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}},
        {"type": "image_url", "image_url": "https://example.com/a.webp"},
    ]
    b = body([Message("user", parts)])
    assert b["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.webp"}}
    ]


# ---- from_message_body ---------------------------------------------------------------------


def test_whole_answer() -> None:
    c = from_message_body(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Hmm.", "signature": SIG},
                {"type": "redacted_thinking", "data": "RED=="},
                {"type": "text", "text": "Checking "},
                {"type": "text", "text": "now."},
                {"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {"q": "é"}},
            ],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 100,
                      "cache_creation_input_tokens": None},
        }
    )  # fmt: skip
    assert c.content == "Checking now."
    assert c.tool_calls == [ToolCall("toolu_9", "lookup", '{"q":"é"}')]
    assert c.finish_reason == TOOL_CALLS  # a tool_use block wins over what stop_reason says
    assert c.thinking == [Thinking("Hmm.", SIG), Thinking(redacted="RED==")]
    assert c.reasoning == "Hmm."
    assert c.usage == Usage(prompt_tokens=110, completion_tokens=4, cache_read_tokens=100, cache_write_tokens=0)


@pytest.mark.parametrize(
    ("reason", "want"),
    [("end_turn", END), ("max_tokens", LENGTH), ("stop_sequence", STOP_SEQUENCE), ("refusal", FILTERED),
     ("pause_turn", END), ("model_context_window_exceeded", LENGTH), ("tool_use", TOOL_CALLS), (None, END)],
)  # fmt: skip
def test_stop_reasons(reason: str | None, want: str) -> None:
    msg: dict[str, Any] = {
        "type": "message",
        "content": [{"type": "text", "text": "x"}],
        "stop_reason": reason,
        "usage": {},
    }
    if reason == "stop_sequence":
        msg["stop_sequence"] = "END"
    c = from_message_body(msg)
    assert c.finish_reason == want
    assert c.stop_sequence == ("END" if reason == "stop_sequence" else None)


@pytest.mark.parametrize("bad", [[], {"type": "error", "error": {"type": "api_error"}}, {"type": "message"}])
def test_not_a_message(bad: Any) -> None:
    with pytest.raises(ValueError):
        from_message_body(bad)


# ---- EventParser ---------------------------------------------------------------------------

# shared/PROTOCOLS.md §A.4, Anthropic's own fixture (text, then a tool call), with a thinking block before
MESSAGE: dict[str, Any] = {
    "id": "msg_019Q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-20250514",
    "content": [],
    "stop_reason": None,
    "stop_sequence": None,
    "usage": {
        "input_tokens": 377,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 20,
        "output_tokens": 1,
        "service_tier": "standard",
    },
}
TOOL_BLOCK = {"type": "tool_use", "id": "toolu_01NRL", "name": "get_weather", "caller": {"type": "direct"}, "input": {}}
STREAM_EVENTS: list[dict[str, Any]] = [
    {"type": "message_start", "message": MESSAGE},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    {"type": "ping"},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Weather: use the tool."},
    },
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": SIG}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "I"}},
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "text_delta", "text": "'ll check the current weather in Paris for you."},
    },
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": TOOL_BLOCK},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"locati'}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": 'on": "Paris"}'}},
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 65},
    },
    {"type": "message_stop"},
]
STREAM = b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in STREAM_EVENTS)


def parse(raw: bytes, parser: EventParser | None = None) -> list[Event]:
    p = parser or EventParser("claude")
    out: list[Event] = []
    for event, data in SSEDecoder().feed(raw):
        out += p.feed(event, orjson.loads(data))
    return out


def test_stream_events() -> None:
    p = EventParser("claude")
    evs = parse(STREAM, p)
    assert evs == [
        ReasoningDelta("Weather: use the tool."),
        ThinkingSignature(SIG),
        TextDelta("I"),
        TextDelta("'ll check the current weather in Paris for you."),
        ToolCallDelta(index=0, id="toolu_01NRL", name="get_weather", arguments=""),  # 0: the first tool, not block 2
        ToolCallDelta(index=0, arguments='{"locati'),
        ToolCallDelta(index=0, arguments='on": "Paris"}'),
        Finish(TOOL_CALLS),
        Usage(prompt_tokens=400, completion_tokens=65, cache_read_tokens=20, cache_write_tokens=3),
    ]
    assert p.done
    assert_golden("anthropic_upstream_events.json", [{"event": type(e).__name__, **_fields(e)} for e in evs])


def _fields(e: Any) -> dict[str, Any]:
    return {k: getattr(e, k) for k in e.__slots__}


def test_stream_stop_sequence_redacted_and_initial_text() -> None:
    p = EventParser("claude")
    feed: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ("content_block_start", {"index": 0, "content_block": {"type": "redacted_thinking", "data": "RED=="}}),
        ("content_block_start", {"index": 1, "content_block": {"type": "text", "text": "Hi"}}),
        ("message_delta", {"delta": {"stop_reason": "stop_sequence", "stop_sequence": "##"},
                           "usage": {"output_tokens": 2, "input_tokens": 6}}),
        ("message_stop", {}),
        ("message_stop", {}),
    ]  # fmt: skip
    evs = [ev for name, obj in feed for ev in p.feed(name, {"type": name, **obj})]
    assert evs == [RedactedThinking("RED=="), TextDelta("Hi"), Finish(STOP_SEQUENCE, "##"), Usage(6, 2)]


def test_stream_error_event() -> None:
    with pytest.raises(UpstreamError) as ei:
        EventParser("claude").feed(
            "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        )
    e = ei.value
    assert e.status == 503 and e.headers == {"retry-after": "1", "x-should-retry": "true"}
    assert "claude" in e.message and "Overloaded" in e.message
    with pytest.raises(UpstreamError) as ei:
        EventParser("claude").feed("error", {"type": "error", "error": {"type": "api_error", "message": "Internal"}})
    assert ei.value.status == 502 and "Internal" in ei.value.message


# ---- the provider against the fake ---------------------------------------------------------

KEY = "sk-ant-test-key"


@pytest.fixture
async def up() -> AsyncIterator[FakeAnthropicUpstream]:
    fake = FakeAnthropicUpstream()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def provider(up: FakeAnthropicUpstream, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[AnthropicProvider]:
    monkeypatch.setenv("BMO_TEST_ANTHROPIC_KEY", KEY)
    cfg = ProviderConfig(kind="anthropic", base_url=up.url, api_key_env="BMO_TEST_ANTHROPIC_KEY", timeout_s=5,
                         headers={"X-Extra": "1"})  # fmt: skip
    async with aiohttp.ClientSession() as session:
        yield AnthropicProvider("claude", cfg, session)


CALL = ModelCall(model="claude-test", messages=[Message("user", "hi there")], tools=TOOLS)


async def drain(p: AnthropicProvider, call: ModelCall = CALL) -> tuple[list[Event], Exception | None]:
    """Read a stream as loop.py does; the events read and the error it ended with, if any."""
    s = await p.open_stream(call)
    evs: list[Event] = []
    try:
        try:
            async for chunk in s.reads():
                evs += s.decode(chunk)
                if s.done:
                    break
            evs += s.end()
        except Exception as e:
            return evs, s.failed(e)
    finally:
        await s.close()
    return evs, None


def text_of(evs: list[Event]) -> str:
    return "".join(e.text for e in evs if isinstance(e, TextDelta))


def test_registered() -> None:
    assert "anthropic" in KINDS
    assert (
        api_root("https://api.anthropic.com/v1/")
        == api_root("https://api.anthropic.com")
        == "https://api.anthropic.com"
    )


async def test_complete(up: FakeAnthropicUpstream, provider: AnthropicProvider) -> None:
    up.enqueue(AStep(text="Hello there.", thinking="Greet back.", signature=SIG, cache_read=30, cache_write=2))
    c = await provider.complete(CALL)
    assert c.content == "Hello there." and c.finish_reason == END
    assert c.thinking == [Thinking("Greet back.", SIG)]
    assert c.usage == Usage(prompt_tokens=39, completion_tokens=5, cache_read_tokens=30, cache_write_tokens=2)
    sent = up.requests[0]
    assert sent["max_tokens"] == DEFAULT_MAX_TOKENS and "stream" not in sent
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}]


async def test_headers(up: FakeAnthropicUpstream, provider: AnthropicProvider) -> None:
    await provider.complete(
        ModelCall(model="claude-test", messages=[Message("user", "hi")], beta="interleaved-thinking-2025-05-14")
    )
    await drain(provider)
    for h in up.headers:
        assert h["x-api-key"] == KEY and h["anthropic-version"] == "2023-06-01"
        assert h["Content-Type"] == "application/json" and h["X-Extra"] == "1"
        assert "Authorization" not in h
    assert up.headers[0]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert "anthropic-beta" not in up.headers[1]


async def test_stream_text(up: FakeAnthropicUpstream, provider: AnthropicProvider) -> None:
    up.enqueue(AStep(text="one two three four", cache_read=10))
    evs, err = await drain(provider)
    assert err is None
    assert text_of(evs) == "one two three four"
    assert up.requests[0]["stream"] is True
    assert [e for e in evs if not isinstance(e, TextDelta)] == [Finish(END), Usage(17, 5, cache_read_tokens=10)]


async def test_stream_thinking_and_tools(up: FakeAnthropicUpstream, provider: AnthropicProvider) -> None:
    args = {"city": "Zürich", "days": [1, 2], "note": 'say "hi"'}
    up.enqueue(
        AStep(text="", thinking="Two tools at once.", signature=SIG, tool_uses=[
            {"id": "toolu_a", "name": "lookup", "input": args}, {"id": "toolu_b", "name": "weather", "input": {}}])
    )  # fmt: skip
    evs, err = await drain(provider)
    assert err is None
    assert "".join(e.text for e in evs if isinstance(e, ReasoningDelta)) == "Two tools at once."
    assert [e.signature for e in evs if isinstance(e, ThinkingSignature)] == [SIG]  # byte for byte
    calls: dict[int, list[ToolCallDelta]] = {}
    for e in evs:
        if isinstance(e, ToolCallDelta):
            calls.setdefault(e.index, []).append(e)
    assert sorted(calls) == [0, 1]
    assert (calls[0][0].id, calls[0][0].name, calls[1][0].id) == ("toolu_a", "lookup", "toolu_b")
    assert orjson.loads("".join(d.arguments for d in calls[0])) == args
    assert orjson.loads("".join(d.arguments for d in calls[1])) == {}
    assert Finish(TOOL_CALLS) in evs


async def test_stream_stop_sequence(up: FakeAnthropicUpstream, provider: AnthropicProvider) -> None:
    up.enqueue(AStep(text="a b", stop_reason="stop_sequence", stop_sequence="END"), AStep(stop_reason="max_tokens"))
    evs, _ = await drain(provider)
    assert Finish(STOP_SEQUENCE, "END") in evs
    evs, _ = await drain(provider)
    assert Finish(LENGTH) in evs


async def test_overloaded_529(up: FakeAnthropicUpstream, provider: AnthropicProvider) -> None:
    up.enqueue(
        AStep(status=529, error_type="overloaded_error", error="Overloaded", headers={"retry-after": "3"}),
        AStep(status=529, error_type="overloaded_error", error="Overloaded"),
    )
    with pytest.raises(UpstreamError) as ei:
        await provider.open_stream(CALL)
    e = ei.value
    assert (e.status, e.code, e.upstream_status) == (503, "upstream_error", 529)
    assert e.headers == {"retry-after": "3", "x-should-retry": "true"}
    assert "claude" in e.message and "Overloaded" in e.message
    with pytest.raises(UpstreamError) as ei:
        await provider.complete(CALL)
    assert ei.value.status == 503 and ei.value.headers["retry-after"] == "1"


async def test_other_http_errors(up: FakeAnthropicUpstream, provider: AnthropicProvider) -> None:
    up.enqueue(
        AStep(status=401, error_type="authentication_error", error="invalid x-api-key"),
        AStep(status=429, error_type="rate_limit_error", error="slow down", headers={"retry-after": "7"}),
        AStep(status=500, error_type="api_error", error="Internal server error"),
    )
    with pytest.raises(UpstreamError) as ei:
        await provider.complete(CALL)
    assert (ei.value.status, ei.value.upstream_status) == (502, 401) and "invalid x-api-key" in ei.value.message
    assert ei.value.headers == {"x-should-retry": "false"}
    with pytest.raises(RateLimited) as rl:
        await provider.open_stream(CALL)
    assert rl.value.headers == {"retry-after": "7"} and "slow down" in rl.value.message
    with pytest.raises(UpstreamError) as ei:
        await provider.open_stream(CALL)
    assert (ei.value.status, ei.value.upstream_status) == (502, 500)


async def test_error_event_mid_stream(up: FakeAnthropicUpstream, provider: AnthropicProvider) -> None:
    up.enqueue(AStep(text="one two three four", error_after=2))
    evs, err = await drain(provider)
    assert text_of(evs) == "one two"  # what came before the error still goes out
    assert isinstance(err, UpstreamError) and err.status == 503 and "Overloaded" in err.message


async def test_dropped_stream(up: FakeAnthropicUpstream, provider: AnthropicProvider) -> None:
    up.enqueue(AStep(text="one two three four", drop_after=2))
    evs, err = await drain(provider)
    assert text_of(evs) == "one two"
    assert isinstance(err, UpstreamError) and err.status == 502 and "claude" in err.message
    assert not any(isinstance(e, Finish) for e in evs)


async def test_stream_without_message_stop(up: FakeAnthropicUpstream, provider: AnthropicProvider) -> None:
    up.enqueue(AStep(text="one two", omit_stop=True))
    evs, err = await drain(provider)
    assert text_of(evs) == "one two"
    assert isinstance(err, UpstreamError) and "claude closed the stream before it finished" in err.message


async def test_unreachable(provider: AnthropicProvider, up: FakeAnthropicUpstream) -> None:
    await up.stop()
    with pytest.raises(UpstreamError, match="could not reach upstream claude"):
        await provider.open_stream(CALL)


async def test_count_tokens(up: FakeAnthropicUpstream, provider: AnthropicProvider) -> None:
    up.count = 1234
    call = ModelCall(
        model="claude-test",
        messages=[Message("system", "Be brief."), Message("user", "hi")],
        params={"temperature": 0.2, "max_tokens": 10},
        tools=TOOLS,
        tool_choice=ToolChoice("auto"),
        beta="token-counting-2024-11-01",
    )
    assert await provider.count_tokens(call) == 1234
    sent = up.count_requests[0]
    assert sorted(sent) == ["messages", "model", "system", "tool_choice", "tools"]
    assert up.headers[0]["anthropic-beta"] == "token-counting-2024-11-01"


async def test_base_url_with_v1(up: FakeAnthropicUpstream) -> None:
    async with aiohttp.ClientSession() as session:
        p = AnthropicProvider("claude", ProviderConfig(kind="anthropic", base_url=up.url + "/v1", timeout_s=5), session)
        c = await p.complete(CALL)
    assert c.content == "Hello from Claude."
    assert "x-api-key" not in up.headers[0]  # no key configured: none sent
