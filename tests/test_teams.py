"""Teams (SPEC §10): `team:NAME` falls over to the next agent when an upstream fails before the
client has a byte, or rotates; every dialect; the ledger shows each attempt."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from bmo.agents import AgentRegistry, load_agents
from bmo.config import load_config
from bmo.errors import ConfigError
from fakes import BmoServer, FakeUpstream, LoopThread, Step

USER = [{"role": "user", "content": "hi"}]
AGENTS = {
    "first": "id: first\nmodel: one/gpt-one\n",
    "second": "id: second\nmodel: two/gpt-two\n",
}


@pytest.fixture
def second_upstream(servers: LoopThread) -> Iterator[FakeUpstream]:
    up = FakeUpstream()
    servers.run(up.start())
    yield up
    servers.run(up.stop())


def team_bmo(make: Callable[..., BmoServer], one: FakeUpstream, two: FakeUpstream, strategy: str) -> BmoServer:
    config = (
        "auth: {mode: none}\n"
        "providers:\n"
        f'  one: {{kind: openai, base_url: "{one.url}", timeout_s: 5}}\n'
        f'  two: {{kind: openai, base_url: "{two.url}", timeout_s: 5}}\n'
        f"teams:\n  duo: {{agents: [first, second], strategy: {strategy}}}\n"
        'model_aliases: {"claude-*": "team:duo"}\n'
    )
    return make(config=config, agents=AGENTS)


def events_of(s: BmoServer, rid: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{s.url}/v1/openai-compat/runs/{rid}/events", timeout=5)
    assert r.status_code == 200
    return list(r.json()["data"])


def run_of(s: BmoServer, rid: str) -> dict[str, Any]:
    r = httpx.get(f"{s.url}/v1/openai-compat/runs/{rid}", timeout=5)
    assert r.status_code == 200
    return dict(r.json())


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_moves_to_the_next_agent_when_the_first_upstream_fails(
    make_bmo: Callable[..., BmoServer], upstream: FakeUpstream, second_upstream: FakeUpstream, stream: bool
) -> None:
    s = team_bmo(make_bmo, upstream, second_upstream, "fallback")
    upstream.enqueue(Step(status=503, error="overloaded"))
    second_upstream.enqueue(Step(text="From the second."))
    c = openai.OpenAI(base_url=s.base_url, api_key="none", max_retries=0)
    if stream:
        raw = c.chat.completions.with_raw_response.create(model="team:duo", messages=USER, stream=True)  # type: ignore[arg-type]
        text = "".join(ch.choices[0].delta.content or "" for ch in raw.parse() if ch.choices)
        rid = raw.headers["x-request-id"]
    else:
        whole = c.chat.completions.with_raw_response.create(model="team:duo", messages=USER)  # type: ignore[arg-type]
        text = whole.parse().choices[0].message.content or ""
        rid = whole.headers["x-request-id"]
    assert text == "From the second."  # one clean answer: the failed attempt is invisible
    assert len(upstream.requests) == 1 and len(second_upstream.requests) == 1
    assert second_upstream.requests[0]["model"] == "gpt-two"
    row = run_of(s, rid)
    assert (row["status"], row["outcome"], row["agent"], row["upstream_route"]) == (200, "ok", "second", "two/gpt-two")
    evs = events_of(s, rid)
    resolved = [e["detail"] for e in evs if e["name"] == "resolved"]
    assert [(d["agent"], d["team"]) for d in resolved] == [("first", "team:duo"), ("second", "team:duo")]
    failed = [e["detail"] for e in evs if e["name"] == "upstream_error"]
    assert len(failed) == 1 and failed[0]["agent"] == "first" and "503" in failed[0]["message"]
    assert [e["detail"]["route"] for e in evs if e["name"] == "upstream_request"] == ["one/gpt-one", "two/gpt-two"]


def test_fallback_on_the_anthropic_dialect_through_an_alias(
    make_bmo: Callable[..., BmoServer], upstream: FakeUpstream, second_upstream: FakeUpstream
) -> None:
    s = team_bmo(make_bmo, upstream, second_upstream, "fallback")
    upstream.enqueue(Step(status=429, error="slow down"))
    second_upstream.enqueue(Step(text="Claude-shaped answer."))
    c = anthropic.Anthropic(base_url=s.url, api_key="none", max_retries=0)
    with c.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=USER) as st:  # type: ignore[arg-type]
        text = "".join(st.text_stream)
    assert text == "Claude-shaped answer."


def test_every_agent_failing_is_the_last_failure(
    make_bmo: Callable[..., BmoServer], upstream: FakeUpstream, second_upstream: FakeUpstream
) -> None:
    s = team_bmo(make_bmo, upstream, second_upstream, "fallback")
    upstream.enqueue(Step(status=503, error="one is down"))
    second_upstream.enqueue(Step(status=500, error="two is down"))
    r = httpx.post(s.base_url + "/chat/completions", json={"model": "team:duo", "messages": USER}, timeout=10)
    assert r.status_code == 502 and "two is down" in r.json()["error"]["message"]
    row = run_of(s, r.headers["x-request-id"])
    assert row["agent"] == "second" and row["outcome"] == "upstream_error"


def test_a_client_error_upstream_does_not_fall_over(
    make_bmo: Callable[..., BmoServer], upstream: FakeUpstream, second_upstream: FakeUpstream
) -> None:
    s = team_bmo(make_bmo, upstream, second_upstream, "fallback")
    upstream.enqueue(Step(status=400, error="bad request: your tools are malformed"))
    r = httpx.post(s.base_url + "/chat/completions", json={"model": "team:duo", "messages": USER}, timeout=10)
    assert r.status_code == 502 and "malformed" in r.json()["error"]["message"]
    assert second_upstream.requests == []  # another upstream would refuse the same request


def test_a_failure_after_the_first_byte_is_not_retried(
    make_bmo: Callable[..., BmoServer], upstream: FakeUpstream, second_upstream: FakeUpstream
) -> None:
    s = team_bmo(make_bmo, upstream, second_upstream, "fallback")
    upstream.enqueue(Step(text="partial answer that breaks", drop_after=2))
    body = {"model": "team:duo", "messages": USER, "stream": True}
    r = httpx.post(s.base_url + "/chat/completions", json=body, timeout=10)
    assert r.status_code == 200 and b'"error"' in r.content  # in-band, as for any agent
    assert second_upstream.requests == []


def test_round_robin_rotates(
    make_bmo: Callable[..., BmoServer], upstream: FakeUpstream, second_upstream: FakeUpstream
) -> None:
    s = team_bmo(make_bmo, upstream, second_upstream, "round_robin")
    upstream.enqueue(Step(text="one"), Step(text="one"))
    second_upstream.enqueue(Step(text="two"), Step(text="two"))
    c = openai.OpenAI(base_url=s.base_url, api_key="none", max_retries=0)
    answers = [c.chat.completions.create(model="team:duo", messages=USER).choices[0].message.content for _ in range(4)]  # type: ignore[arg-type]
    assert answers == ["one", "two", "one", "two"]


def test_teams_are_models_and_sessions_stay_on_their_team(
    make_bmo: Callable[..., BmoServer], upstream: FakeUpstream, second_upstream: FakeUpstream
) -> None:
    s = team_bmo(make_bmo, upstream, second_upstream, "round_robin")
    ids = [m["id"] for m in httpx.get(s.base_url + "/models", timeout=5).json()["data"]]
    assert "team:duo" in ids
    assert httpx.get(s.base_url + "/models/team:duo", timeout=5).json()["id"] == "team:duo"
    upstream.enqueue(Step(text="turn one"))
    second_upstream.enqueue(Step(text="turn two"))
    h = {"X-BMO-Session": "chat-1"}
    r1 = httpx.post(s.base_url + "/chat/completions", json={"model": "team:duo", "messages": USER}, headers=h)
    assert r1.json()["choices"][0]["message"]["content"] == "turn one"
    more = [*USER, {"role": "assistant", "content": "turn one"}, {"role": "user", "content": "and?"}]
    r2 = httpx.post(s.base_url + "/chat/completions", json={"model": "team:duo", "messages": more}, headers=h)
    assert r2.json()["choices"][0]["message"]["content"] == "turn two"  # the other agent, the same session
    assert [m["content"] for m in second_upstream.requests[0]["messages"]] == ["hi", "turn one", "and?"]
    r3 = httpx.post(s.base_url + "/chat/completions", json={"model": "second", "messages": USER}, headers=h)
    assert r3.status_code == 400 and r3.json()["error"]["code"] == "session_agent_mismatch"
    assert "team:duo" in r3.json()["error"]["message"]


def test_a_team_of_unknown_agents_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("teams:\n  duo: {agents: [default, nobody]}\n")
    cfg = load_config(tmp_path, env={})
    with pytest.raises(ConfigError) as e:
        AgentRegistry(cfg, load_agents(cfg))
    assert "nobody" in str(e.value) and "teams.duo.agents" in str(e.value)
    (tmp_path / "config.yaml").write_text("teams:\n  duo: {agents: [default], strategy: random}\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path, env={})
    assert "fallback, round_robin" in str(e.value)


def test_agents_list_shows_the_teams(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bmo.cli import app

    (tmp_path / "config.yaml").write_text("teams:\n  duo: {agents: [default], strategy: round_robin}\n")
    out = CliRunner().invoke(app, ["agents", "list", "--home", str(tmp_path), "--json"])
    assert out.exit_code == 0, out.output
    assert orjson.loads(out.stdout)["teams"] == [{"id": "team:duo", "agents": ["default"], "strategy": "round_robin"}]
    out = CliRunner().invoke(app, ["agents", "list", "--home", str(tmp_path)], env={"COLUMNS": "80"})
    assert "team:duo" in out.output and "round_robin" in out.output
