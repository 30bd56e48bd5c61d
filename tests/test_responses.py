"""`/v1/responses` end to end: the official openai SDK against a real bmo on loopback (echo and
a scripted OpenAI-compatible upstream): create, stream with `get_final_response()`, tools and the
round trip Codex makes (full history, `store: false`), stored responses (retrieve, delete,
input_items, `previous_response_id` chains straight after a stream), and the raw stream bytes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from bmo.cli import app
from fakes import BmoServer, FakeUpstream, Step

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": False,
}


def client(s: BmoServer, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.base_url, api_key="anything", max_retries=0, **kw)


def raw_stream(s: BmoServer, body: dict[str, Any]) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """POST a streamed /v1/responses and check its framing: every event an `event:` line equal
    to its data's `type`, JSON data, `sequence_number` 0, 1, 2, …; keepalive comments skipped."""
    r = httpx.post(s.base_url + "/responses", json={"stream": True, **body}, timeout=30)
    events = []
    for block in r.text.split("\n\n"):
        if not block or block.startswith(":"):
            continue
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), block
        obj = json.loads(data[6:])
        assert name[7:] == obj["type"], block
        events.append(obj)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return r, events


def test_create_on_echo_string_and_items(make_bmo: Any) -> None:
    s = make_bmo()
    c = client(s)
    r = c.responses.create(model="default", input="hello there")
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert r.output_text == "hello there" and r.model == "default"
    assert r.usage is not None and r.usage.output_tokens == 2 and r.usage.total_tokens > 2
    r2 = c.responses.create(
        model="default",
        instructions="Be brief.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "a b c"}]}],
    )
    assert r2.output_text == "a b c"


def test_stream_helper_and_raw_bytes(make_bmo: Any) -> None:
    s = make_bmo()
    with client(s).responses.stream(model="default", input="one two three") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "one two three" and final.output_text == "one two three"
    r, events = raw_stream(s, {"model": "default", "input": "x y"})
    assert r.headers["content-type"].startswith("text/event-stream")
    types = [e["type"] for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert events[0]["response"]["output"] == [] and events[0]["response"]["status"] == "in_progress"
    assert types[-1] == "response.completed" and types.count("response.completed") == 1
    done_items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert events[-1]["response"]["output"] == done_items
    assert all(e["response"]["id"] == events[0]["response"]["id"] for e in events if "response" in e)


def test_one_terminal_event_for_a_whole_agent_run(make_bmo: Any) -> None:
    """A server-side tool makes two upstream calls; the client sees one response.completed."""
    s = make_bmo()
    _, events = raw_stream(s, {"model": "default", "input": '/tool calculator {"expression":"6*7"}'})
    types = [e["type"] for e in events]
    assert types.count("response.created") == 1 and types.count("response.completed") == 1
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "42"


def test_function_tool_round_trip_as_codex_sends_it(bmo: BmoServer, upstream: FakeUpstream) -> None:
    """Codex sends the whole history every turn with store: false."""
    upstream.enqueue(
        Step(tool_calls=[{"id": "call_w", "name": "get_weather", "arguments": '{"city": "Paris"}'}]),
        Step(text="Sunny in Paris."),
    )
    c = client(bmo)
    first = c.responses.create(model="helper", input="weather?", tools=[WEATHER], store=False)  # type: ignore[list-item]
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].call_id == "call_w"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    second = c.responses.create(
        model="helper",
        store=False,
        tools=[WEATHER],  # type: ignore[list-item]
        input=[
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "call_w", "name": "get_weather", "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "call_w", "output": "24C, sunny"},
        ],
    )
    assert second.output_text == "Sunny in Paris."
    sent = upstream.requests[1]
    assert sent["messages"][-1] == {"role": "tool", "content": "24C, sunny", "tool_call_id": "call_w"}
    assert sent["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][-1]["function"]["name"] == "get_weather"
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(first.id)  # store: false is never retrievable


def test_stored_responses_retrieve_delete_and_input_items(make_bmo: Any) -> None:
    s = make_bmo()
    c = client(s)
    r = c.responses.create(model="default", input="keep me")
    got = c.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == "keep me"
    items = c.responses.input_items.list(r.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "keep me"  # type: ignore[union-attr]
    c.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError) as e:
        c.responses.retrieve(r.id)
    assert e.value.code == "response_not_found"


def test_previous_response_id_chains_straight_after_a_stream(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="Hi Ann."), Step(text="You are Ann."), Step(text="Hello Bob."))
    c = client(bmo)
    with c.responses.stream(model="plain", input="I am Ann.") as stream:
        first = stream.get_final_response()
    second = c.responses.create(model="plain", input="Who am I?", previous_response_id=first.id)  # no sleep
    assert second.output_text == "You are Ann."
    sent = [(m["role"], m["content"]) for m in upstream.requests[1]["messages"]]
    assert sent == [("user", "I am Ann."), ("assistant", "Hi Ann."), ("user", "Who am I?")]
    # a tree: another continuation of the first response is just as valid
    c.responses.create(model="plain", input="I am Bob now.", previous_response_id=first.id)
    sent = [(m["role"], m["content"]) for m in upstream.requests[2]["messages"]]
    assert sent == [("user", "I am Ann."), ("assistant", "Hi Ann."), ("user", "I am Bob now.")]


def test_unknown_previous_response_and_other_keys_responses(make_bmo: Any) -> None:
    s = make_bmo(config="auth: {mode: keys}\n", env_api_key="sk-bmo-responses-owner-0123456789")
    c = openai.OpenAI(base_url=s.base_url, api_key="sk-bmo-responses-owner-0123456789", max_retries=0)
    with pytest.raises(openai.NotFoundError) as e:
        c.responses.create(model="default", input="x", previous_response_id="resp_nope")
    assert e.value.code == "previous_response_not_found" and e.value.param == "previous_response_id"


def test_responses_are_owned_by_their_key(make_bmo: Any, tmp_path: Path) -> None:
    home = tmp_path / "owned"
    keys = []
    for name in ("alice", "bob"):
        out = CliRunner().invoke(app, ["api-key", "create", "--name", name, "--home", str(home), "--json"])
        assert out.exit_code == 0, out.output
        keys.append(json.loads(out.output)["secret"])
    s = make_bmo(home=home, config="auth: {mode: keys}\n")
    alice = openai.OpenAI(base_url=s.base_url, api_key=keys[0], max_retries=0)
    bob = openai.OpenAI(base_url=s.base_url, api_key=keys[1], max_retries=0)
    r = alice.responses.create(model="default", input="mine")
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="default", input="x", previous_response_id=r.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(r.id)
    assert alice.responses.retrieve(r.id).id == r.id


def test_max_output_tokens_is_incomplete(make_bmo: Any) -> None:
    s = make_bmo()
    r = client(s).responses.create(model="default", input="one two three four five", max_output_tokens=2)
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"
    _, events = raw_stream(s, {"model": "default", "input": "one two three four", "max_output_tokens": 2})
    assert events[-1]["type"] == "response.incomplete"


def test_failure_after_the_first_byte_is_response_failed(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="one two three", error_after=1))
    _, events = raw_stream(bmo, {"model": "helper", "input": "go"})
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed" and events[-1]["response"]["error"]["message"]
    assert [e["type"] for e in events].count("response.completed") == 0
    upstream.enqueue(Step(status=500, error="kaboom"))
    _, events = raw_stream(bmo, {"model": "helper", "input": "go"})  # fails before any output
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]


def test_hosted_tools_are_skipped_and_named(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="ok"))
    r = httpx.post(
        bmo.base_url + "/responses",
        json={
            "model": "helper",
            "input": "x",
            "tools": [{"type": "web_search"}, WEATHER],
            "include": ["reasoning.encrypted_content"],
            "client_metadata": {"a": "b"},
            "prompt_cache_key": "k",
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert "dropped_tool:web_search" in r.headers["x-bmo-warning"]
    assert [t["function"]["name"] for t in upstream.requests[0]["tools"]][-1] == "get_weather"


def test_ledger_route_is_responses(make_bmo: Any) -> None:
    s = make_bmo()
    r = httpx.post(s.base_url + "/responses", json={"model": "default", "input": "hi"}, timeout=10)
    rid = r.headers["x-request-id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        got = httpx.get(f"{s.base_url}/openai-compat/runs/{rid}", timeout=10)
        if got.status_code == 200:
            assert got.json()["route"] == "/v1/responses" and got.json()["agent"] == "default"
            return
        time.sleep(0.05)
    raise AssertionError("no ledger row")


def test_codex_shaped_requests_are_accepted(make_bmo: Any) -> None:
    """What Codex CLI 0.171.0 really sent (tests/clients/codex_requests.json), replayed: a namespace
    tool, web_search, include, client_metadata, developer input, reasoning items — no 400."""
    s = make_bmo()
    recorded = json.loads(Path("tests/clients/codex_requests.json").read_text())
    for req in recorded:
        body = {**req["body"], "model": "default"}
        headers = {k: v for k, v in req["headers"].items() if k.lower() in ("originator", "session-id", "user-agent")}
        r = httpx.post(s.base_url + "/responses", json=body, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        types = [b.split("\n")[0][7:] for b in r.text.split("\n\n") if b and not b.startswith(":")]
        assert types[0] == "response.created" and types[-1] == "response.completed"
        assert "dropped_tool:web_search" in r.headers["x-bmo-warning"]
