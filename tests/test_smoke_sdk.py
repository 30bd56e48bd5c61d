"""The official openai SDK against a real bmo on loopback: the first thing a user does."""

from __future__ import annotations

import openai
import pytest

from fakes import BmoServer, FakeUpstream, Step


def client(s: BmoServer, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.base_url, api_key="anything", max_retries=0, **kw)  # type: ignore[arg-type]


def test_models_list_and_retrieve(bmo: BmoServer) -> None:
    c = client(bmo)
    ids = [m.id for m in c.models.list()]
    assert ids == ["default", "helper", "plain"]
    assert c.models.retrieve("helper").id == "helper"
    with pytest.raises(openai.NotFoundError) as e:
        c.models.retrieve("nope")
    assert e.value.code == "model_not_found"


def test_echo_default_agent_non_stream(bmo: BmoServer) -> None:
    r = client(bmo).chat.completions.create(model="default", messages=[{"role": "user", "content": "hi there"}])
    assert r.object == "chat.completion"
    assert r.model == "default"
    assert r.choices[0].message.content == "hi there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == 2
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stream_through_sdk(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="one two three"))
    stream = client(bmo).chat.completions.create(
        model="helper",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert len({c.id for c in chunks}) == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 7 and chunks[-1].usage.completion_tokens == 5


async def test_async_client(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="async hello"))
    c = openai.AsyncOpenAI(base_url=bmo.base_url, api_key="x", max_retries=0)
    r = await c.chat.completions.create(model="helper", messages=[{"role": "user", "content": "q"}])
    assert r.choices[0].message.content == "async hello"
    stream = await c.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "a b"}], stream=True
    )
    got = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
    assert got == "a b"
    await c.close()
