"""`/v1/completions` (editor autocomplete) end to end: the official openai SDK against a real bmo,
on echo and on a scripted upstream's /completions; prompt and suffix byte for byte, chunk by
chunk, locks, cancellation, the ledger, and the 400 for an upstream kind with no completions."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from conftest import upstream_config
from fakes import BmoServer, FakeUpstream, Step
from golden import assert_golden

FIM = "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n<|fim_middle|>"


def client(s: BmoServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.base_url, api_key="x", max_retries=0)


def test_echo_answers_deterministically(make_bmo: Any) -> None:
    s = make_bmo()
    r = client(s).completions.create(model="default", prompt="first line\nsecond line", max_tokens=16)
    assert r.object == "text_completion" and r.id.startswith("cmpl-") and r.model == "default"
    assert r.choices[0].text == "second line" and r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == 2
    cut = client(s).completions.create(model="default", prompt="a b c d", max_tokens=2)
    assert cut.choices[0].text == "a b " and cut.choices[0].finish_reason == "length"


def test_prompt_and_suffix_reach_the_upstream_byte_for_byte(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="return a + b"))
    r = client(bmo).completions.create(
        model="helper", prompt=[FIM], suffix="\n# end", max_tokens=30, stop=["\n\n", "def ", "class ", "#", "```"]
    )
    assert r.choices[0].text == "return a + b"
    sent = upstream.requests[0]
    assert sent["prompt"] == FIM and sent["suffix"] == "\n# end"  # no chat template, no system prompt
    assert sent["stop"] == ["\n\n", "def ", "class ", "#", "```"] and sent["max_tokens"] == 30
    assert sent["model"] == "gpt-test" and "messages" not in sent and "tools" not in sent
    assert sent["temperature"] == 0.3  # the agent's default param


def test_streamed_chunk_by_chunk_with_usage(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="one two three"))
    chunks = list(
        client(bmo).completions.create(
            model="helper", prompt="x", stream=True, stream_options={"include_usage": True}, max_tokens=5
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "one two three"
    assert len({c.id for c in chunks}) == 1
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 7
    assert upstream.requests[0]["stream"] is True


def test_stream_raw_bytes(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="a b"))
    r = httpx.post(bmo.base_url + "/completions", json={"model": "helper", "prompt": "p", "stream": True}, timeout=10)
    assert r.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in r.text.split("\n\n") if b]
    assert blocks[-1] == "data: [DONE]" and all(b.startswith("data: ") and "\n" not in b for b in blocks)
    objs = [json.loads(b[6:]) for b in blocks[:-1]]
    assert all(o["object"] == "text_completion" and "usage" not in o for o in objs)  # no usage unless asked
    assert_golden("completions_stream.sse", r.text)


def test_locked_params_are_dropped_and_named(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(
        config=upstream_config(upstream),
        agents={"fim": "id: fim\nmodel: up/coder-fim\nparams: {temperature: 0.1}\nlock: [temperature]\n"},
    )
    upstream.enqueue(Step(text="x"))
    r = httpx.post(s.base_url + "/completions", json={"model": "fim", "prompt": "p", "temperature": 1.5}, timeout=10)
    assert r.status_code == 200 and "locked:temperature" in r.headers["x-bmo-warning"]
    assert upstream.requests[0]["temperature"] == 0.1


def test_bad_requests(make_bmo: Any) -> None:
    s = make_bmo()
    for body, param in (
        ({"model": "default"}, "prompt"),
        ({"model": "default", "prompt": [1, 2, 3]}, "prompt"),
        ({"model": "default", "prompt": "x", "n": 2}, "n"),
        ({"model": "default", "prompt": "x", "suffix": 3}, "suffix"),
    ):
        r = httpx.post(s.base_url + "/completions", json=body, timeout=10)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text


def test_an_anthropic_agent_has_no_text_completions(make_bmo: Any) -> None:
    s = make_bmo(
        config='auth: {mode: none}\nproviders:\n  claude: {kind: anthropic, base_url: "http://127.0.0.1:9"}\n',
        agents={"c": "id: c\nmodel: claude/claude-x\n"},
    )
    r = httpx.post(s.base_url + "/completions", json={"model": "c", "prompt": "x"}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_for_upstream"


def test_a_client_that_goes_away_cancels_the_upstream(bmo: BmoServer, upstream: FakeUpstream) -> None:
    """Editors cancel as the user types: the upstream must see its connection close at once."""
    upstream.enqueue(Step(text=" ".join(["tok"] * 400), token_delay=0.02))
    with httpx.stream(
        "POST", bmo.base_url + "/completions", json={"model": "helper", "prompt": "p", "stream": True}, timeout=10
    ) as r:
        it = r.iter_bytes()
        got = b""
        while got.count(b"tok") < 3:
            got += next(it)
    deadline = time.monotonic() + 5  # 400 tokens would take 8 s
    while upstream.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream.disconnects == 1


def test_ledger_route(make_bmo: Any) -> None:
    s = make_bmo()
    r = httpx.post(s.base_url + "/completions", json={"model": "default", "prompt": "hi"}, timeout=10)
    rid = r.headers["x-request-id"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        got = httpx.get(f"{s.base_url}/openai-compat/runs/{rid}", timeout=10)
        if got.status_code == 200:
            run = got.json()
            assert run["route"] == "/v1/completions" and run["agent"] == "default" and run["completion_tokens"] == 1
            return
        time.sleep(0.05)
    pytest.fail("no ledger row")
