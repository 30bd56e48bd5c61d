"""A Claude-backed agent (provider kind `anthropic`) behind a real bmo, with a scripted fake
Anthropic upstream: the anthropic SDK straight through (thinking signatures byte for byte,
`anthropic-beta` forwarded, count_tokens passed through, overload and mid-stream errors), and
the crossing: the openai SDK on the same Claude agent, with tools and streaming."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from fakes import BmoServer
from fakes_anthropic import AStep, FakeAnthropicUpstream

USER = [{"role": "user", "content": "hello"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
SIG = "EqQBCkYIBxgCKkBsig+/=="


@pytest.fixture
def bmo(make_bmo: Any, claude: FakeAnthropicUpstream, monkeypatch: pytest.MonkeyPatch) -> BmoServer:
    monkeypatch.setenv("BMO_TEST_CLAUDE_KEY", "sk-ant-upstream-secret")
    return make_bmo(
        config=(
            "auth: {mode: none}\n"
            f'providers:\n  claude: {{kind: anthropic, base_url: "{claude.url}", api_key_env: BMO_TEST_CLAUDE_KEY,'
            " timeout_s: 5}\n"
            'model_aliases: {"claude-*": coder}\n'
        ),
        agents={
            "coder": "id: coder\nmodel: claude/claude-sonnet-4-5\nsystem: You write code.\ntools: [calculator]\n",
        },
    )


def ac(s: BmoServer, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=s.url, api_key="x", max_retries=0, **kw)


def oc(s: BmoServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.base_url, api_key="x", max_retries=0)


def test_anthropic_client_straight_through(bmo: BmoServer, claude: FakeAnthropicUpstream) -> None:
    claude.enqueue(AStep(text="Hi there", thinking="let me think", cache_read=3))
    m = ac(bmo).messages.create(
        model="claude-opus-5-5",
        max_tokens=300,
        messages=USER,
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
        extra_body={"thinking": {"type": "enabled", "budget_tokens": 100}},
    )
    assert [b.type for b in m.content] == ["thinking", "text"]
    assert m.content[0].signature == SIG and m.content[0].thinking == "let me think"  # type: ignore[union-attr]
    assert m.usage.cache_read_input_tokens == 3 and m.usage.input_tokens == 7
    sent, headers = claude.requests[0], claude.headers[0]
    assert sent["system"] == "You write code." and sent["max_tokens"] == 300
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 100}
    assert sent["model"] == "claude-sonnet-4-5"
    assert headers["x-api-key"] == "sk-ant-upstream-secret" and headers["anthropic-version"] == "2023-06-01"
    assert "interleaved-thinking-2025-05-14" in headers["anthropic-beta"]


def test_thinking_replayed_byte_for_byte_on_the_next_turn(bmo: BmoServer, claude: FakeAnthropicUpstream) -> None:
    claude.enqueue(
        AStep(
            text="", thinking="plan", tool_uses=[{"id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]
        ),
        AStep(text="Cold."),
    )
    c = ac(bmo)
    with c.messages.stream(model="coder", max_tokens=200, messages=USER, tools=[WEATHER]) as stream:  # type: ignore[list-item]
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert first.content[0].signature == SIG  # type: ignore[union-attr]
    c.messages.create(
        model="coder",
        max_tokens=200,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            *USER,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},  # type: ignore[misc]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "-3C"}]},
        ],
    )
    turn = claude.requests[1]["messages"]
    assert turn[1]["role"] == "assistant"
    assert turn[1]["content"][0] == {"type": "thinking", "thinking": "plan", "signature": SIG}
    assert turn[1]["content"][1]["type"] == "tool_use" and turn[1]["content"][1]["input"] == {"city": "Oslo"}
    assert turn[2]["content"][0]["type"] == "tool_result" and turn[2]["content"][0]["tool_use_id"] == "toolu_1"


def test_server_tool_loop_on_claude(bmo: BmoServer, claude: FakeAnthropicUpstream) -> None:
    claude.enqueue(
        AStep(text="", tool_uses=[{"id": "toolu_c", "name": "calculator", "input": {"expression": "6*7"}}]),
        AStep(text="It is 42."),
    )
    m = ac(bmo).messages.create(model="coder", max_tokens=100, messages=USER)
    assert [b.type for b in m.content] == ["text"] and m.content[0].text == "It is 42."  # type: ignore[union-attr]
    second = claude.requests[1]["messages"]
    assert second[-1]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_c", "content": "42"}
    assert m.usage.input_tokens == 14 and m.usage.output_tokens == 10  # both upstream calls


def test_count_tokens_is_the_upstreams(bmo: BmoServer, claude: FakeAnthropicUpstream) -> None:
    claude.count = 1234
    n = ac(bmo).messages.count_tokens(model="claude-haiku-4-5", messages=USER)
    assert n.input_tokens == 1234
    assert claude.count_requests[0]["system"] == "You write code."


def test_overloaded_before_output(bmo: BmoServer, claude: FakeAnthropicUpstream) -> None:
    claude.enqueue(AStep(status=529, error_type="overloaded_error", error="Overloaded"))
    with pytest.raises(anthropic.APIStatusError) as e:
        ac(bmo).messages.create(model="coder", max_tokens=10, messages=USER)
    assert e.value.status_code == 503 and e.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert e.value.response.headers["retry-after"]
    claude.enqueue(AStep(status=529, error_type="overloaded_error", error="Overloaded"))
    with pytest.raises(openai.InternalServerError) as oe:
        oc(bmo).chat.completions.create(model="coder", messages=USER)  # type: ignore[arg-type]
    assert oe.value.status_code == 503


def test_error_after_first_byte_is_in_band(bmo: BmoServer, claude: FakeAnthropicUpstream) -> None:
    claude.enqueue(AStep(text="one two three four", error_after=2))
    r = httpx.post(
        bmo.url + "/v1/messages", json={"model": "coder", "max_tokens": 10, "messages": USER, "stream": True}
    )
    events = [b.split("\n")[0][7:] for b in r.text.split("\n\n") if b]
    assert events[0] == "message_start" and events[-1] == "error" and "message_stop" not in events


def test_openai_client_on_a_claude_agent_with_tools_and_streaming(
    bmo: BmoServer, claude: FakeAnthropicUpstream
) -> None:
    claude.enqueue(
        AStep(text="Checking.", tool_uses=[{"id": "toolu_w", "name": "get_weather", "input": {"city": "Rome"}}]),
        AStep(text="Warm in Rome."),
    )
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}]
    c = oc(bmo)
    stream = c.chat.completions.create(
        model="coder",
        messages=[{"role": "user", "content": "weather?"}],
        tools=tools,  # type: ignore[arg-type]
        stream=True,
        max_tokens=50,
    )
    chunks = list(stream)
    calls = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or []]
    assert calls[0].id == "toolu_w" and calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    args = "".join(tc.function.arguments or "" for tc in calls)  # type: ignore[union-attr]
    assert args == '{"city":"Rome"}' or args == '{"city": "Rome"}'
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
    r = c.chat.completions.create(
        model="coder",
        tools=tools,  # type: ignore[arg-type]
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {"id": "toolu_w", "type": "function", "function": {"name": "get_weather", "arguments": args}}
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_w", "content": "25C"},
        ],  # type: ignore[list-item]
    )
    assert r.choices[0].message.content == "Warm in Rome."
    sent = claude.requests[1]
    assert sent["system"] == "You write code." and sent["max_tokens"] > 0  # always sent
    assert sent["messages"][1]["content"][-1]["type"] == "tool_use"
    assert sent["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_w", "content": "25C"}


def test_an_anthropic_upstreams_error_type_and_words_pass_through(
    bmo: BmoServer, claude: FakeAnthropicUpstream
) -> None:
    claude.enqueue(AStep(status=400, error_type="invalid_request_error", error="prompt is too long: 300000 tokens"))
    with pytest.raises(anthropic.APIStatusError) as e:
        ac(bmo).messages.create(model="coder", max_tokens=10, messages=USER)
    err = e.value.body["error"]  # type: ignore[index]
    assert err["type"] == "invalid_request_error" and "prompt is too long: 300000 tokens" in err["message"]
