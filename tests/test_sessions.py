"""Server-side sessions through the real openai SDK (`extra_headers`)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from bmo.chat import Message
from bmo.cli import app
from bmo.sessions import merge
from conftest import AGENTS, upstream_config
from fakes import BmoServer, FakeUpstream, Step


def sdk(s: BmoServer, key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=s.base_url, api_key=key, max_retries=0)


def ask(c: openai.OpenAI, messages: list[Any], session: str | None = "s1", model: str = "plain", **kw: Any) -> str:
    headers = {"X-BMO-Session": session} if session else {}
    r = c.chat.completions.create(model=model, messages=messages, extra_headers=headers, **kw)
    return r.choices[0].message.content or ""


def sent(up: FakeUpstream, i: int) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in up.requests[i]["messages"]]


def test_short_form_client_gets_the_history(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="Hi Ann."), Step(text="Your name is Ann."))
    c = sdk(bmo)
    assert ask(c, [{"role": "user", "content": "I am Ann."}]) == "Hi Ann."
    assert ask(c, [{"role": "user", "content": "What is my name?"}]) == "Your name is Ann."
    assert sent(upstream, 1) == [
        ("user", "I am Ann."),
        ("assistant", "Hi Ann."),
        ("user", "What is my name?"),
    ]


def test_full_history_resend_duplicates_nothing(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="A1"), Step(text="A2"), Step(text="A3"))
    c = sdk(bmo)
    history: list[Any] = [{"role": "system", "content": "client system"}, {"role": "user", "content": "Q1"}]
    history.append({"role": "assistant", "content": ask(c, history, model="helper")})
    history.append({"role": "user", "content": "Q2"})
    history.append({"role": "assistant", "content": ask(c, history, model="helper")})
    history.append({"role": "user", "content": "Q3"})
    ask(c, history, model="helper")
    assert sent(upstream, 2) == [
        ("system", "You are helpful."),
        ("system", "client system"),
        ("user", "Q1"),
        ("assistant", "A1"),
        ("user", "Q2"),
        ("assistant", "A2"),
        ("user", "Q3"),
    ]
    # and a short-form follow-up on the same session continues the same transcript
    upstream.enqueue(Step(text="A4"))
    ask(c, [{"role": "user", "content": "Q4"}], model="helper")
    assert [m for m in sent(upstream, 3) if m[0] != "system"][-3:] == [("user", "Q3"), ("assistant", "A3"),
                                                                      ("user", "Q4")]  # fmt: skip
    assert len([m for m in sent(upstream, 3) if m == ("user", "Q1")]) == 1


def test_regenerate_and_edit_fork_cleanly(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="A1"), Step(text="A2"), Step(text="A2-again"), Step(text="A2-edited"))
    c = sdk(bmo)
    h: list[Any] = [{"role": "user", "content": "Q1"}]
    h.append({"role": "assistant", "content": ask(c, h)})
    h.append({"role": "user", "content": "Q2"})
    ask(c, h)  # stored: Q1 A1 Q2 A2
    ask(c, h)  # regenerate: the same history again → Q1 A1 Q2 A2-again
    assert sent(upstream, 2) == [("user", "Q1"), ("assistant", "A1"), ("user", "Q2")]
    edited = [*h[:2], {"role": "user", "content": "Q2 edited"}]
    ask(c, edited)
    assert sent(upstream, 3) == [("user", "Q1"), ("assistant", "A1"), ("user", "Q2 edited")]
    upstream.enqueue(Step(text="A3"))
    ask(c, [{"role": "user", "content": "Q3"}])
    assert sent(upstream, 4) == [("user", "Q1"), ("assistant", "A1"), ("user", "Q2 edited"),
                                 ("assistant", "A2-edited"), ("user", "Q3")]  # fmt: skip


def test_sessions_are_scoped_to_the_api_key(make_bmo: Any, upstream: FakeUpstream, tmp_path: Path) -> None:
    home = tmp_path / "scoped"
    runner = CliRunner()
    keys = []
    for name in ("alice", "bob"):
        r = runner.invoke(app, ["api-key", "create", "--name", name, "--home", str(home), "--json"])
        assert r.exit_code == 0, r.output
        keys.append(json.loads(r.output)["secret"])
    s = make_bmo(home=home, config=upstream_config(upstream).replace("mode: none", "mode: keys"), agents=AGENTS)
    upstream.enqueue(Step(text="alice's answer"), Step(text="bob's answer"))
    ask(sdk(s, keys[0]), [{"role": "user", "content": "alice speaking"}], session="shared")
    ask(sdk(s, keys[1]), [{"role": "user", "content": "bob speaking"}], session="shared")
    assert sent(upstream, 1) == [("user", "bob speaking")]  # bob does not see alice's turns


def test_session_is_bound_to_its_agent(bmo: BmoServer, upstream: FakeUpstream) -> None:
    c = sdk(bmo)
    ask(c, [{"role": "user", "content": "hi"}], model="plain")
    with pytest.raises(openai.BadRequestError) as e:
        ask(c, [{"role": "user", "content": "hi"}], model="helper")
    assert e.value.code == "session_agent_mismatch"


def test_openwebui_chat_id_and_background_tasks(bmo: BmoServer, upstream: FakeUpstream) -> None:
    c = sdk(bmo)
    owui = {"X-OpenWebUI-Chat-Id": "chat-123"}
    upstream.enqueue(Step(text="A1"), Step(text='{"title": "Greeting"}'), Step(text="A2"))
    h: list[Any] = [{"role": "user", "content": "hello"}]
    r = c.chat.completions.create(model="plain", messages=h, extra_headers=owui)
    h.append({"role": "assistant", "content": r.choices[0].message.content})
    task = "### Task:\nGenerate a concise, 3-5 word title summarizing the chat history.\n<chat_history>…</chat_history>"
    c.chat.completions.create(model="plain", messages=[{"role": "user", "content": task}], extra_headers=owui)
    assert sent(upstream, 1) == [("user", task)]  # stateless: no history added
    h.append({"role": "user", "content": "again"})
    c.chat.completions.create(model="plain", messages=h, extra_headers=owui)
    assert sent(upstream, 2) == [("user", "hello"), ("assistant", "A1"), ("user", "again")]  # task kept out


def test_user_field_only_when_enabled(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(config=upstream_config(upstream, "sessions: {from_user: true}\n"), agents=AGENTS)
    upstream.enqueue(Step(text="one"), Step(text="two"))
    c = sdk(s)
    ask(c, [{"role": "user", "content": "first"}], session=None, user="u-42")
    ask(c, [{"role": "user", "content": "second"}], session=None, user="u-42")
    assert sent(upstream, 1) == [("user", "first"), ("assistant", "one"), ("user", "second")]


def test_stateless_by_default(bmo: BmoServer, upstream: FakeUpstream) -> None:
    c = sdk(bmo)
    ask(c, [{"role": "user", "content": "first"}], session=None, user="u-1")
    ask(c, [{"role": "user", "content": "second"}], session=None, user="u-1")
    assert sent(upstream, 1) == [("user", "second")]


def test_concurrent_requests_on_one_session_are_serialised(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="slow answer", delay=0.5), Step(text="second answer"))
    c = sdk(bmo)
    out: dict[str, str] = {}
    t = threading.Thread(target=lambda: out.setdefault("a", ask(c, [{"role": "user", "content": "first"}])))
    t.start()
    while not upstream.requests:
        t.join(0.01)
    out["b"] = ask(c, [{"role": "user", "content": "second"}])
    t.join(10)
    assert out == {"a": "slow answer", "b": "second answer"}
    assert sent(upstream, 1) == [("user", "first"), ("assistant", "slow answer"), ("user", "second")]


def test_streamed_answers_and_client_tool_calls_join_the_transcript(bmo: BmoServer, upstream: FakeUpstream) -> None:
    tools = [{"type": "function", "function": {"name": "lookup"}}]
    upstream.enqueue(Step(text="streamed one"), Step(tool_calls=[{"id": "t1", "name": "lookup", "arguments": "{}"}]),
                     Step(text="done"))  # fmt: skip
    c = sdk(bmo)
    list(c.chat.completions.create(model="plain", messages=[{"role": "user", "content": "q1"}], stream=True,
                                   extra_headers={"X-BMO-Session": "st"}))  # fmt: skip
    r = c.chat.completions.create(model="plain", messages=[{"role": "user", "content": "q2"}], tools=tools,
                                  extra_headers={"X-BMO-Session": "st"})  # type: ignore[arg-type]  # fmt: skip
    assert r.choices[0].finish_reason == "tool_calls"
    ask(c, [{"role": "tool", "tool_call_id": "t1", "content": "found"}], session="st", tools=tools)
    msgs = upstream.requests[2]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "tool"]
    assert msgs[1]["content"] == "streamed one"
    assert msgs[3]["tool_calls"][0]["id"] == "t1" and msgs[3]["content"] is None


def test_ledger_records_the_session(bmo: BmoServer, upstream: FakeUpstream) -> None:
    r = httpx.post(bmo.base_url + "/chat/completions", json={"model": "plain", "messages": [{"role": "user",
                   "content": "x"}]}, headers={"X-BMO-Session": "led"})  # fmt: skip
    run = httpx.get(bmo.url + f"/v1/openai-compat/runs/{r.headers['x-request-id']}").json()
    assert run["session_id"].startswith("ses_")


def test_sessions_cli(bmo: BmoServer, upstream: FakeUpstream) -> None:
    ask(sdk(bmo), [{"role": "user", "content": "remember me"}], session="cli-s")
    runner = CliRunner()
    env = {"COLUMNS": "160"}
    r = runner.invoke(app, ["sessions", "list", "--home", str(bmo.home)], env=env)
    assert r.exit_code == 0 and "cli-s" in r.output and "plain" in r.output
    data = json.loads(runner.invoke(app, ["sessions", "list", "--home", str(bmo.home), "--json"]).output)
    assert data["object"] == "list" and data["data"][0]["updated_at"].endswith("Z")
    sid = data["data"][0]["id"]
    r = runner.invoke(app, ["sessions", "show", sid, "--home", str(bmo.home), "--json"])
    assert [m["content"] for m in json.loads(r.output)["messages"]] == ["remember me", "Hello from upstream."]
    r = runner.invoke(app, ["sessions", "delete", "cli-s", "--home", str(bmo.home)], env=env)
    assert r.exit_code == 0
    assert json.loads(runner.invoke(app, ["sessions", "list", "--home", str(bmo.home), "--json"]).output)["data"] == []
    r = runner.invoke(app, ["sessions", "show", "nope", "--home", str(bmo.home)], env=env)
    assert r.exit_code == 1 and "no session" in r.output


def _m(role: str, text: str) -> Message:
    return Message(role=role, content=text)


def test_merge_rules() -> None:
    t = [_m("user", "a"), _m("assistant", "b"), _m("user", "c"), _m("assistant", "d")]
    full = merge(t, [*t, _m("user", "e")])
    assert (full.keep, [m.text() for m in full.new]) == (4, ["e"])
    short = merge(t, [_m("user", "e")])
    assert (short.keep, [m.text() for m in short.new]) == (4, ["e"])
    fork = merge(t, [_m("user", "a"), _m("assistant", "b"), _m("user", "c2")])
    assert (fork.keep, [m.text() for m in fork.new]) == (2, ["c2"])
    window = merge(t, [_m("assistant", "d"), _m("user", "e")])  # a client that trims old turns
    assert (window.keep, [m.text() for m in window.new]) == (4, ["e"])
    parts = merge(t[:1], [Message(role="user", content=[{"type": "text", "text": "a"}]), _m("user", "x")])
    assert (parts.keep, [m.text() for m in parts.new]) == (1, ["x"])  # string and parts are the same turn
