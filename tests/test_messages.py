"""`/v1/messages` end to end: the official anthropic SDK against a real bmo on loopback, on the
echo agent and on an OpenAI-compatible upstream (the fake one). The Anthropic upstream kind has
its own file (test_messages_anthropic_upstream.py); the raw stream bytes are pinned here too."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from fakes import BmoServer, FakeUpstream, Step

USER = [{"role": "user", "content": "hello there"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def client(s: BmoServer, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=s.url, api_key="anything", max_retries=0, **kw)


def raw_stream(s: BmoServer, body: dict[str, Any], **headers: str) -> tuple[httpx.Response, list[tuple[str, dict]]]:
    """POST a streamed /v1/messages and split the answer into (event line, data) pairs, checking
    the framing on the way: every event has an `event:` line equal to its data's `type`."""
    r = httpx.post(s.url + "/v1/messages?beta=true", json={"stream": True, **body}, headers=headers, timeout=30)
    frames = []
    for block in r.content.decode().split("\n\n"):
        if not block:
            continue
        lines = block.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        data = json.loads(lines[1][6:])
        assert lines[0][7:] == data["type"], block
        frames.append((lines[0][7:], data))
    return r, frames


def check_order(frames: list[tuple[str, dict]]) -> None:
    """message_start first, blocks 0, 1, … each start → deltas → stop without interleaving,
    exactly one message_delta, then message_stop last (PROTOCOLS §A.4)."""
    names = [n for n, _ in frames if n != "ping"]
    assert names[0] == "message_start" and names[-1] == "message_stop" and names[-2] == "message_delta"
    assert names.count("message_delta") == 1
    open_index, next_index = None, 0
    for name, data in frames:
        if name == "content_block_start":
            assert open_index is None and data["index"] == next_index
            open_index, next_index = data["index"], next_index + 1
        elif name == "content_block_delta":
            assert data["index"] == open_index
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert open_index is None


def test_echo_agent_sync_and_headers(make_bmo: Any) -> None:
    s = make_bmo()
    c = client(s)
    m = c.messages.create(model="default", max_tokens=100, messages=USER)
    assert m.type == "message" and m.role == "assistant" and m.model == "default"
    assert m.id.startswith("msg_")
    assert [b.type for b in m.content] == ["text"] and m.content[0].text == "hello there"  # type: ignore[union-attr]
    assert m.stop_reason == "end_turn"
    assert m.usage.output_tokens == 2 and m.usage.input_tokens > 0
    raw = c.messages.with_raw_response.create(model="default", max_tokens=10, messages=USER)
    assert raw.headers["request-id"] == raw.headers["x-request-id"]
    assert raw.headers["x-bmo-agent"] == "default"


async def test_async_client_and_stream_helper(make_bmo: Any) -> None:
    s = make_bmo()
    c = anthropic.AsyncAnthropic(base_url=s.url, api_key="x", max_retries=0)
    m = await c.messages.create(model="default", max_tokens=50, messages=[{"role": "user", "content": "a b c"}])
    assert m.content[0].text == "a b c"  # type: ignore[union-attr]
    async with c.messages.stream(model="default", max_tokens=50, messages=USER) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "hello there" and final.stop_reason == "end_turn"
    await c.close()


def test_stream_raw_bytes_are_in_order(make_bmo: Any) -> None:
    s = make_bmo()
    r, frames = raw_stream(s, {"model": "default", "max_tokens": 50, "messages": USER})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    check_order(frames)
    start = frames[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] > 0
    deltas = [d["delta"]["text"] for n, d in frames if n == "content_block_delta"]
    assert "".join(deltas) == "hello there"
    final = [d for n, d in frames if n == "message_delta"][0]
    assert final["delta"]["stop_reason"] == "end_turn" and final["usage"]["output_tokens"] == 2


def test_server_side_tool_runs_inside_and_is_never_shown(make_bmo: Any) -> None:
    s = make_bmo()
    m = client(s).messages.create(
        model="default", max_tokens=100, messages=[{"role": "user", "content": '/tool calculator {"expression":"6*7"}'}]
    )
    assert [b.type for b in m.content] == ["text"] and m.content[0].text == "42"  # type: ignore[union-attr]
    assert m.stop_reason == "end_turn"


def test_claude_code_shaped_request_is_accepted(make_bmo: Any) -> None:
    """What Claude Code 2.1.332 really sent (tests/clients/claude_code_requests.json), with its
    own model id mapped by `model_aliases`: every field accepted, no 400."""
    s = make_bmo(config='auth: {mode: none}\nmodel_aliases: {"claude-*": default}\n')
    recorded = json.loads(open("tests/clients/claude_code_requests.json").read())
    for req in recorded:
        body = req["body"]
        headers = {k: v for k, v in req["headers"].items() if k.lower().startswith(("anthropic-", "x-app"))}
        r = httpx.post(s.url + req["path"], json=body, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        if body.get("stream"):
            frames = [json.loads(b.split("\ndata: ")[1]) for b in r.text.split("\n\n") if b]
            assert frames[-1]["type"] == "message_stop"
        warning = r.headers.get("x-bmo-warning", "")
        assert "locked" not in warning


def test_client_tool_round_trip_through_an_openai_upstream(bmo: BmoServer, upstream: FakeUpstream) -> None:
    """An Anthropic client on an OpenAI-compatible agent: its tool comes back as `tool_use`,
    and its `tool_result` reaches the upstream as a `tool` message on the next turn."""
    upstream.enqueue(
        Step(tool_calls=[{"id": "call_w", "name": "get_weather", "arguments": '{"city": "Paris"}'}]),
        Step(text="It is sunny."),
    )
    c = client(bmo)
    first = c.messages.create(model="helper", max_tokens=200, messages=USER, tools=[WEATHER])  # type: ignore[list-item]
    assert first.stop_reason == "tool_use"
    use = [b for b in first.content if b.type == "tool_use"][0]
    assert use.name == "get_weather" and use.input == {"city": "Paris"} and use.id == "call_w"  # type: ignore[union-attr]
    second = c.messages.create(
        model="helper",
        max_tokens=200,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            *USER,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},  # type: ignore[misc]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 24C"}]},
        ],
    )
    assert second.content[0].text == "It is sunny."  # type: ignore[union-attr]
    sent = upstream.requests[1]["messages"]
    assert sent[0]["role"] == "system" and sent[0]["content"] == "You are helpful."
    assert sent[-2]["tool_calls"][0]["id"] == "call_w"
    assert sent[-1] == {"role": "tool", "content": "sunny, 24C", "tool_call_id": "call_w"}
    assert upstream.requests[0]["max_tokens"] == 200


def test_streamed_tool_use_via_sdk_helper(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(
        Step(
            text="",
            tool_calls=[
                {"id": "call_a", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
                {"id": "call_b", "name": "get_weather", "arguments": '{"city": "Rome"}'},
            ],
        )
    )
    with client(bmo).messages.stream(model="helper", max_tokens=100, messages=USER, tools=[WEATHER]) as stream:  # type: ignore[list-item]
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [u.input for u in uses] == [{"city": "Oslo"}, {"city": "Rome"}]  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"


def test_params_map_and_locks_apply(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="ok"))
    r = client(bmo).messages.with_raw_response.create(
        model="helper",
        max_tokens=64,
        extra_body={"temperature": 0.9, "top_k": 5},  # the newest SDKs no longer list them
        stop_sequences=["END"],
        tool_choice={"type": "any"},
        tools=[WEATHER],  # type: ignore[list-item]
        messages=USER,
        system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": "u-1"},
    )
    assert r.parse().content[0].text == "ok"  # type: ignore[union-attr]
    sent = upstream.requests[0]
    assert sent["max_tokens"] == 64 and sent["temperature"] == 0.9 and sent["stop"] == ["END"]
    assert sent["tool_choice"] == "required"
    assert [m["content"] for m in sent["messages"][:2]] == ["You are helpful.", "Be terse."]
    assert "metadata" not in sent and "user" not in sent and "top_k" not in sent  # OpenAI knows no top_k


def test_dropped_tools_and_blocks_are_named_in_the_warning_header(make_bmo: Any) -> None:
    s = make_bmo()
    r = httpx.post(
        s.url + "/v1/messages",
        json={
            "model": "default",
            "max_tokens": 10,
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi"}, {"type": "container_upload", "file_id": "f"}],
                }
            ],
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    warning = r.headers["x-bmo-warning"]
    assert "dropped_tool:web_search" in warning and "dropped_block:container_upload" in warning


def test_unknown_model_and_bad_body_get_anthropic_errors(make_bmo: Any) -> None:
    s = make_bmo()
    with pytest.raises(anthropic.NotFoundError) as e:
        client(s).messages.create(model="no-such-agent", max_tokens=10, messages=USER)
    assert e.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert e.value.response.headers["request-id"]
    r = httpx.post(s.url + "/v1/messages", content=b"{nope", timeout=10)
    assert r.status_code == 400 and r.json()["type"] == "error"
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(s.url + "/v1/messages", json={"model": "default", "max_tokens": 5}, timeout=10)
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]


def test_keys_by_x_api_key_and_bearer(make_bmo: Any) -> None:
    s = make_bmo(config="auth: {mode: keys}\n", env_api_key="sk-bmo-test-key-1234567890")
    with pytest.raises(anthropic.AuthenticationError) as e:
        client(s).messages.create(model="default", max_tokens=5, messages=USER)
    assert e.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    ok = anthropic.Anthropic(base_url=s.url, api_key="sk-bmo-test-key-1234567890", max_retries=0)
    assert ok.messages.create(model="default", max_tokens=5, messages=USER).content
    bearer = anthropic.Anthropic(base_url=s.url, auth_token="sk-bmo-test-key-1234567890", max_retries=0)
    assert bearer.messages.create(model="default", max_tokens=5, messages=USER).content


def test_count_tokens_and_models_list(make_bmo: Any) -> None:
    s = make_bmo(config='auth: {mode: none}\nmodel_aliases: {"claude-*": default}\n')
    c = client(s)
    n = c.messages.count_tokens(model="claude-opus-5-5", messages=USER)
    assert n.input_tokens > 0
    page = c.models.list()
    ids = [m.id for m in page]
    assert ids == ["default"] and page.has_more is False  # the SDK stops: no endless paging
    assert c.models.retrieve("default").id == "default"
    openai_shape = httpx.get(s.url + "/v1/models", timeout=10).json()
    assert openai_shape["object"] == "list"


def test_upstream_failure_before_output_is_an_error_event(bmo: BmoServer, upstream: FakeUpstream) -> None:
    """message_start goes out before the agent works, so even an upstream that fails at once is
    reported in-band (`event: error`), and the SDK raises it."""
    upstream.enqueue(Step(status=500, error="kaboom"))
    r, frames = raw_stream(bmo, {"model": "helper", "max_tokens": 10, "messages": USER})
    assert r.status_code == 200
    assert [n for n, _ in frames] == ["message_start", "error"]
    assert frames[-1][1]["error"]["type"] == "api_error" and "kaboom" in frames[-1][1]["error"]["message"]
    upstream.enqueue(Step(status=500, error="kaboom"))
    with pytest.raises(anthropic.APIStatusError):
        with client(bmo).messages.stream(model="helper", max_tokens=10, messages=USER) as stream:
            stream.get_final_message()


def test_upstream_failure_mid_stream_is_an_error_event(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="one two three four", error_after=2))
    r, frames = raw_stream(bmo, {"model": "helper", "max_tokens": 10, "messages": USER})
    names = [n for n, _ in frames]
    assert names[-1] == "error" and "message_stop" not in names
    assert "".join(d["delta"]["text"] for n, d in frames if n == "content_block_delta") == "one two"


def test_ping_keeps_a_quiet_stream_alive(make_bmo: Any, upstream: FakeUpstream) -> None:
    from conftest import AGENTS, upstream_config

    s = make_bmo(config=upstream_config(upstream, "openai_compat: {keepalive_s: 0.2}\n"), agents=AGENTS)
    upstream.enqueue(Step(text="late", delay=0.7))
    r, frames = raw_stream(s, {"model": "helper", "max_tokens": 10, "messages": USER})
    names = [n for n, _ in frames]
    assert names[0] == "message_start" and names[1] == "ping" and names.count("ping") >= 2
    assert frames[1][1] == {"type": "ping"}
    check_order(frames)


def test_ledger_records_messages_runs(make_bmo: Any) -> None:
    s = make_bmo()
    r = httpx.post(
        s.url + "/v1/messages?beta=true",
        json={"model": "default", "max_tokens": 10, "messages": USER},
        headers={"User-Agent": "claude-cli/2.1.332 (external, cli)", "X-BMO-Session": "cc-1"},
        timeout=10,
    )
    rid = r.headers["request-id"]
    deadline = time.monotonic() + 5
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        got = httpx.get(f"{s.url}/v1/openai-compat/runs/{rid}", timeout=10)
        if got.status_code == 200:
            run = got.json()
            break
        time.sleep(0.05)
    assert run["route"] == "/v1/messages" and run["agent"] == "default" and run["status"] == 200
    assert run["client_ua"].startswith("claude-cli/") and run["session_id"]
    assert run["prompt_tokens"] > 0 and run["completion_tokens"] == 2


def test_sessions_work_on_messages(bmo: BmoServer, upstream: FakeUpstream) -> None:
    """A client that sends only its new turn on a session gets the history sent upstream."""
    upstream.enqueue(Step(text="Hi Ann."), Step(text="Ann."))
    c = client(bmo, default_headers={"X-BMO-Session": "s1"})
    c.messages.create(model="plain", max_tokens=10, messages=[{"role": "user", "content": "I am Ann."}])
    c.messages.create(model="plain", max_tokens=10, messages=[{"role": "user", "content": "Who am I?"}])
    sent = [(m["role"], m["content"]) for m in upstream.requests[1]["messages"]]
    assert sent == [("user", "I am Ann."), ("assistant", "Hi Ann."), ("user", "Who am I?")]


def test_orjson_everywhere_no_raw_newlines(make_bmo: Any) -> None:
    s = make_bmo()
    r, frames = raw_stream(
        s, {"model": "default", "max_tokens": 50, "messages": [{"role": "user", "content": 'a "q"\nb'}]}
    )
    text = "".join(d["delta"]["text"] for n, d in frames if n == "content_block_delta")
    assert text == 'a "q"\nb'
    assert orjson.loads(orjson.dumps(frames))  # every data was JSON
