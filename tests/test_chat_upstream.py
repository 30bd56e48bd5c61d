"""The agent loop end to end: real bmo in front of a scripted fake OpenAI upstream."""

from __future__ import annotations

import socket
import time
import urllib.parse
from typing import Any

import httpx
import openai
import orjson
import pytest

from fakes import BmoServer, FakeUpstream, LoopThread, Step


def post(s: BmoServer, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(s.base_url + "/chat/completions", json=body, headers=headers or {}, timeout=20)


def sse_events(raw: bytes) -> list[Any]:
    """Parse raw SSE strictly: every block is `data: <json>` or `data: [DONE]` or a comment."""
    out: list[Any] = []
    assert raw.endswith(b"\n\n")
    for block in raw.split(b"\n\n")[:-1]:
        if block.startswith(b":"):
            out.append("comment")
            continue
        assert block.startswith(b"data: ") and b"\n" not in block, block
        data = block[6:]
        out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return out


USER = [{"role": "user", "content": "hi"}]


def http_chunks(url: str, body: dict[str, Any]) -> list[bytes]:
    """POST over a plain socket and return the response body's HTTP/1.1 chunks: one per write
    bmo made, so a test can see what went out together."""
    u = urllib.parse.urlsplit(url)
    data = orjson.dumps(body)
    head = f"POST {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    with socket.create_connection((u.hostname, u.port), timeout=10) as s, s.makefile("rb") as f:
        s.sendall(head.encode() + data)
        assert f.readline().startswith(b"HTTP/1.1 200")
        headers = []
        while (line := f.readline()) not in (b"\r\n", b""):
            headers.append(line.lower())
        assert b"transfer-encoding: chunked\r\n" in headers
        chunks = []
        while size := int(f.readline().strip(), 16):
            chunks.append(f.read(size))
            assert f.read(2) == b"\r\n"
    return chunks


def test_system_prompt_first_and_client_system_appended(bmo: BmoServer, upstream: FakeUpstream) -> None:
    r = post(bmo, {"model": "helper", "messages": [{"role": "developer", "content": "Be terse."}, *USER]})
    assert r.status_code == 200
    sent = upstream.requests[0]
    assert sent["model"] == "gpt-test"
    assert [m["role"] for m in sent["messages"]] == ["system", "system", "user"]
    assert sent["messages"][0]["content"] == "You are helpful."
    assert sent["messages"][1]["content"] == "Be terse."
    # the agent's server tools are offered to the model
    assert sorted(t["function"]["name"] for t in sent["tools"]) == ["calculator", "clock"]


def test_params_forwarded_locked_dropped_with_warning(bmo: BmoServer, upstream: FakeUpstream) -> None:
    r = post(bmo, {"model": "helper", "messages": USER, "temperature": 0.9, "seed": 4, "top_p": 0.5, "n": 2})
    assert r.status_code == 200
    sent = upstream.requests[0]
    assert sent["temperature"] == 0.9  # client overrides the agent default (0.3)
    assert sent["top_p"] == 0.5
    assert "seed" not in sent and "n" not in sent
    assert r.headers["X-BMO-Warning"] == "locked:seed, unsupported:n"
    post(bmo, {"model": "helper", "messages": USER})
    assert upstream.requests[1]["temperature"] == 0.3  # the agent's default applies


def test_model_resolution(bmo: BmoServer, upstream: FakeUpstream) -> None:
    for model, expect in [("helper", "gpt-test"), ("agent:plain", "gpt-plain"), ("bmo:helper", "gpt-test")]:
        r = post(bmo, {"model": model, "messages": USER})
        assert r.status_code == 200, r.text
        assert r.json()["model"] == model  # the model as requested
        assert upstream.requests[-1]["model"] == expect
    r = post(bmo, {"model": "helper", "messages": USER}, {"X-BMO-Agent": "plain"})
    assert upstream.requests[-1]["model"] == "gpt-plain" and r.headers["X-BMO-Agent"] == "plain"
    r = post(bmo, {"messages": [{"role": "user", "content": "no model"}]})
    assert r.json()["choices"][0]["message"]["content"] == "no model"  # default agent: echo
    r = post(bmo, {"model": "up/gpt-raw", "messages": USER})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_provider_routes_when_exposed(make_bmo: Any, upstream: FakeUpstream) -> None:
    from conftest import upstream_config

    s = make_bmo(config=upstream_config(upstream, "openai_compat: {expose_routes: true}\n"))
    r = post(s, {"model": "up/gpt-raw", "messages": USER})
    assert r.status_code == 200 and upstream.requests[-1]["model"] == "gpt-raw"
    assert "system" not in [m["role"] for m in upstream.requests[-1]["messages"]]
    assert "local/echo" in [m["id"] for m in httpx.get(s.base_url + "/models").json()["data"]]


@pytest.mark.parametrize("stream", [False, True])
def test_server_tools_run_inside_bmo(bmo: BmoServer, upstream: FakeUpstream, stream: bool) -> None:
    upstream.enqueue(
        Step(tool_calls=[{"id": "c1", "name": "calculator", "arguments": '{"expression": "6*7"}'}], usage=(10, 3)),
        Step(text="It is 42.", usage=(20, 4)),
    )
    r = post(bmo, {"model": "helper", "messages": USER, "stream": stream, "stream_options": {"include_usage": True}})
    assert r.status_code == 200
    second = upstream.requests[1]["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "calculator"
    assert second[-1] == {"role": "tool", "content": "42", "tool_call_id": "c1"}
    if stream:
        evs = sse_events(r.content)
        assert all("tool_calls" not in e["choices"][0]["delta"] for e in evs[:-2] if isinstance(e, dict))
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in evs if isinstance(e, dict) and e["choices"])
        assert text == "It is 42."
        usage = evs[-2]["usage"]
    else:
        body = r.json()
        assert body["choices"][0]["message"] == {"role": "assistant", "content": "It is 42.", "refusal": None}
        assert body["choices"][0]["finish_reason"] == "stop"
        usage = body["usage"]
    assert usage == {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37}  # summed over both calls


def test_client_tool_round_trip_with_sdk(bmo: BmoServer, upstream: FakeUpstream) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    upstream.enqueue(
        Step(tool_calls=[{"id": "w1", "name": "get_weather", "arguments": '{"city": "Oslo"}'}]),
        Step(text="Sunny in Oslo."),
    )
    c = openai.OpenAI(base_url=bmo.base_url, api_key="x", max_retries=0)
    msgs: list[Any] = [{"role": "user", "content": "weather?"}]
    r = c.chat.completions.create(model="helper", messages=msgs, tools=tools)  # type: ignore[arg-type]
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert (call.id, call.function.name, call.function.arguments) == ("w1", "get_weather", '{"city": "Oslo"}')
    msgs += [choice.message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": "w1", "content": "sunny"}]
    r2 = c.chat.completions.create(model="helper", messages=msgs, tools=tools)  # type: ignore[arg-type]
    assert r2.choices[0].message.content == "Sunny in Oslo."
    assert upstream.requests[1]["messages"][-1] == {"role": "tool", "content": "sunny", "tool_call_id": "w1"}


def test_client_tool_calls_streamed_with_indexes(bmo: BmoServer, upstream: FakeUpstream) -> None:
    tools = [{"type": "function", "function": {"name": n}} for n in ("a", "b")]
    upstream.enqueue(
        Step(
            tool_calls=[
                {"id": "t1", "name": "a", "arguments": '{"x": 1}'},
                {"id": "t2", "name": "b", "arguments": "{}"},
            ],
            omit_index=True,  # a sloppy upstream: bmo must still send an index on every fragment
        )
    )
    c = openai.OpenAI(base_url=bmo.base_url, api_key="x", max_retries=0)
    with c.chat.completions.stream(model="helper", messages=USER, tools=tools) as s:  # type: ignore[arg-type]
        final = s.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(t.id, t.function.name, t.function.arguments) for t in calls] == [
        ("t1", "a", '{"x": 1}'),
        ("t2", "b", "{}"),
    ]
    assert final.choices[0].finish_reason == "tool_calls"


def test_raw_sse_bytes(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="alpha beta gamma", reasoning="mull"))
    with httpx.stream(
        "POST", bmo.base_url + "/chat/completions", json={"model": "helper", "messages": USER, "stream": True}
    ) as r:
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["cache-control"] == "no-cache"
        assert r.headers["x-accel-buffering"] == "no"
        assert r.headers["x-request-id"].startswith("req_")
        raw = r.read()
    evs = sse_events(raw)
    assert evs[-1] == "[DONE]" and raw.endswith(b"data: [DONE]\n\n")
    chunks = [e for e in evs if isinstance(e, dict)]
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "helper" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:])
    finishes = [c["choices"][0]["finish_reason"] for c in chunks]
    assert finishes[:-1] == [None] * (len(chunks) - 1) and finishes[-1] == "stop"
    assert all("usage" not in c for c in chunks)  # include_usage was not asked
    assert chunks[1]["choices"][0]["delta"] == {"reasoning_content": "mull"}


def test_stream_first_token_goes_out_with_the_role_chunk(bmo: BmoServer, upstream: FakeUpstream) -> None:
    """What a client waits on before its first token is one write (headers, role chunk, token),
    not two; and the usage chunk goes out with [DONE]."""
    upstream.enqueue(Step(text="one two three", token_delay=0.05, usage=(7, 5)))
    body = {"model": "helper", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    chunks = http_chunks(bmo.base_url + "/chat/completions", body)
    first = sse_events(chunks[0])
    assert [e["choices"][0]["delta"] for e in first] == [{"role": "assistant", "content": ""}, {"content": "one"}]
    last = sse_events(chunks[-1])
    assert len(last) == 2 and last[0]["usage"]["total_tokens"] == 12 and last[1] == "[DONE]"
    middle = [sse_events(c) for c in chunks[1:-1]]
    assert [len(m) for m in middle] == [1] * len(middle)  # each later token goes out as it comes
    text = "".join(e["choices"][0]["delta"].get("content") or "" for m in [first, *middle] for e in m)
    assert text == "one two three"


def test_stream_tokens_read_together_go_out_together(bmo: BmoServer, upstream: FakeUpstream) -> None:
    """Under load one upstream read often carries several tokens: the client gets them in one
    write (one syscall, one segment), not one write each."""
    upstream.enqueue(Step(text="one two three four", burst=True))
    body = {"model": "helper", "messages": USER, "stream": True}
    chunks = http_chunks(bmo.base_url + "/chat/completions", body)
    first = sse_events(chunks[0])
    assert [e["choices"][0]["delta"] for e in first] == [
        {"role": "assistant", "content": ""},
        {"content": "one"},
        {"content": " two"},
        {"content": " three"},
        {"content": " four"},
    ]
    assert [e["choices"][0]["finish_reason"] for e in sse_events(chunks[1])] == ["stop"]
    assert sse_events(chunks[-1]) == ["[DONE]"]


@pytest.mark.parametrize(
    ("step", "status", "code", "retry"),
    [
        (Step(status=500, error="kaput"), 502, "upstream_error", "true"),
        (Step(status=401, error="Incorrect API key provided"), 502, "upstream_error", "false"),
        (Step(status=429, error="slow down", headers={"retry-after": "7"}), 429, "rate_limited", None),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_before_first_byte(
    bmo: BmoServer, upstream: FakeUpstream, step: Step, status: int, code: str, retry: str | None, stream: bool
) -> None:
    upstream.enqueue(step)
    r = post(bmo, {"model": "helper", "messages": USER, "stream": stream})
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == code and step.error in err["message"]
    assert set(err) == {"message", "type", "param", "code"}
    if retry is not None:
        assert r.headers["x-should-retry"] == retry
    else:
        assert r.headers["retry-after"] == "7"


def test_upstream_unreachable_and_timeout(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(
        config='auth: {mode: none}\nproviders:\n  up: {kind: openai, base_url: "http://127.0.0.1:9/v1"}\n'
        f'  slow: {{kind: openai, base_url: "{upstream.url}", timeout_s: 0.3}}\n',
        agents={"helper": "id: helper\nmodel: up/x\n", "slow": "id: slow\nmodel: slow/x\n"},
    )
    r = post(s, {"model": "helper", "messages": USER})
    assert r.status_code == 502 and "could not reach upstream up" in r.json()["error"]["message"]
    upstream.enqueue(Step(delay=2))
    r = post(s, {"model": "slow", "messages": USER})
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"


@pytest.mark.parametrize(
    "step",
    [
        Step(text="a b c d e f", drop_after=2),
        Step(text="a b c d e f", error_after=2),
        Step(text="a b c d e f", garbage_after=2),
        Step(text="a b c d e f", garbage_after=2, token_delay=0.05),  # the bad event in a read of its own
    ],
)
def test_mid_stream_failure_sends_error_frame_then_done(bmo: BmoServer, upstream: FakeUpstream, step: Step) -> None:
    upstream.enqueue(step)
    r = post(bmo, {"model": "helper", "messages": USER, "stream": True})
    assert r.status_code == 200
    evs = sse_events(r.content)
    assert evs[-1] == "[DONE]"
    assert evs[-2]["error"]["type"] == "upstream_error"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in evs[:-2]) == "a b"
    c = openai.OpenAI(base_url=bmo.base_url, api_key="x", max_retries=0)
    upstream.enqueue(Step(text="a b c d", error_after=1))
    with pytest.raises(openai.APIError):  # the SDK surfaces it instead of reporting empty success
        list(c.chat.completions.create(model="helper", messages=USER, stream=True))  # type: ignore[arg-type]


def test_client_disconnect_cancels_upstream(bmo: BmoServer, upstream: FakeUpstream, servers: LoopThread) -> None:
    upstream.enqueue(Step(text=" ".join(["tok"] * 400), token_delay=0.02))
    with httpx.stream(
        "POST",
        bmo.base_url + "/chat/completions",
        json={"model": "helper", "messages": USER, "stream": True},
        timeout=10,
    ) as r:
        it = r.iter_bytes()
        got = b""
        while got.count(b"tok") < 3:
            got += next(it)
    # the client is gone: the upstream must see its connection close long before 400 tokens (8 s)
    deadline = time.monotonic() + 5
    while upstream.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.disconnects == 1


def test_keepalive_comments_while_upstream_is_quiet(make_bmo: Any, upstream: FakeUpstream) -> None:
    from conftest import AGENTS, upstream_config

    s = make_bmo(config=upstream_config(upstream, "openai_compat: {keepalive_s: 0.1}\n"), agents=AGENTS)
    upstream.enqueue(Step(text="late answer", delay=0.5))
    r = post(s, {"model": "helper", "messages": USER, "stream": True})
    evs = sse_events(r.content)
    assert evs[0] == "comment"  # headers went out with a keep-alive before the first token
    assert evs[-1] == "[DONE]"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in evs if isinstance(e, dict)) == "late answer"


def test_max_steps_bounds_the_tool_loop(make_bmo: Any, upstream: FakeUpstream) -> None:
    from conftest import AGENTS, upstream_config

    s = make_bmo(config=upstream_config(upstream, "openai_compat: {max_steps: 3}\n"), agents=AGENTS)
    call = Step(tool_calls=[{"id": "c", "name": "clock", "arguments": "{}"}])
    upstream.enqueue(call, call, call, call, call)
    r = post(s, {"model": "helper", "messages": USER})
    assert len(upstream.requests) == 3
    assert r.json()["choices"][0]["finish_reason"] == "length"


def test_echo_tool_convention_runs_calculator_offline(bmo: BmoServer) -> None:
    r = post(
        bmo, {"model": "default", "messages": [{"role": "user", "content": '/tool calculator {"expression":"6*7"}'}]}
    )
    assert r.json()["choices"][0]["message"]["content"] == "42"


def test_strict_upstream_without_stream_options(bmo: BmoServer, upstream: FakeUpstream) -> None:
    """Older vLLM / llama.cpp answer 400 to stream_options: bmo asks again without it, remembers,
    and estimates usage itself since the upstream reports none."""
    upstream.reject_stream_options = True
    upstream.enqueue(Step(text="one two three four"), Step(text="again"))
    body = {"model": "helper", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    evs = sse_events(post(bmo, body).content)
    assert "".join(
        e["choices"][0]["delta"].get("content", "") for e in evs if isinstance(e, dict) and e["choices"]
    ) == ("one two three four")
    usage = evs[-2]["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] == 5  # 18 characters, about 4 a token
    assert ["stream_options" in r for r in upstream.requests] == [True, False]
    post(bmo, body)
    assert "stream_options" not in upstream.requests[-1]  # remembered: no second 400
    assert len(upstream.requests) == 3


def test_stream_timeouts_before_headers_and_on_silence(make_bmo: Any, upstream: FakeUpstream) -> None:
    """`timeout_s` bounds the wait for a streaming answer's headers (a real 504) and any silence
    in the middle of the stream (an error frame, since the 200 is already out)."""
    s = make_bmo(
        config="auth: {mode: none}\nproviders:\n"
        f'  slow: {{kind: openai, base_url: "{upstream.url}", timeout_s: 0.4}}\n',
        agents={"slow": "id: slow\nmodel: slow/x\n"},
    )
    upstream.enqueue(Step(delay=2))
    r = post(s, {"model": "slow", "messages": USER, "stream": True})
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"

    upstream.enqueue(Step(text="a b c", token_delay=0.1))  # steady tokens, never 0.4 s apart: fine
    r = post(s, {"model": "slow", "messages": USER, "stream": True})
    evs = sse_events(r.content)
    assert evs[-1] == "[DONE]" and "".join(e["choices"][0]["delta"].get("content", "") for e in evs[1:-1]) == "a b c"

    upstream.enqueue(Step(text="a b c d", token_delay=1.5))
    r = post(s, {"model": "slow", "messages": USER, "stream": True})
    assert r.status_code == 200
    evs = sse_events(r.content)
    assert evs[-1] == "[DONE]"
    assert evs[-2]["error"]["code"] == "upstream_timeout", evs[-2]
    assert "sent nothing for 0.4s" in evs[-2]["error"]["message"]


def test_an_upstream_that_answers_whole_to_a_stream_request(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="all at once", whole=True, usage=(4, 3)))
    r = post(bmo, {"model": "helper", "messages": USER, "stream": True, "stream_options": {"include_usage": True}})
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    evs = sse_events(r.content)
    assert evs[-1] == "[DONE]"
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in evs[:-1] if e["choices"]) == "all at once"
    assert [e["choices"][0]["finish_reason"] for e in evs[:-1] if e["choices"]][-1] == "stop"
    assert evs[-2]["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
