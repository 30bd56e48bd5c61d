"""MCP tools in real agent runs (SPEC §9): a real bmo in front of a scripted upstream, with our
stdio fixture server and the published `@modelcontextprotocol/server-filesystem` as the agent's
tool servers. The upstream calls a tool; the result reaches it on the next step; the client sees
only the final answer, on every dialect; the ledger, posture, the tools route and `bmo tools list`
show the servers and the calls."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from typer.testing import CliRunner

from bmo.cli import app
from bmo.config import load_config
from bmo.errors import ConfigError
from bmo.runtime import Runtime
from fakes import BmoServer, FakeUpstream, LoopThread, Step
from mcp_servers.harness import FIXTURE, alive, received

REPO_ROOT = Path(__file__).resolve().parents[1]
FS_ENTRY = REPO_ROOT / ".cache/clients/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
USER = [{"role": "user", "content": "what does the note say?"}]


def config(up: FakeUpstream, tmp: Path, *, fixture_args: str = "", extra: str = "") -> str:
    env = {"MCP_FIXTURE_LOG": str(tmp / "received.jsonl"), "MCP_FIXTURE_PIDS": str(tmp / "pids.txt")}
    return (
        "auth: {mode: none}\n"
        f'providers:\n  up: {{kind: openai, base_url: "{up.url}", timeout_s: 10}}\n'
        "mcp_servers:\n"
        f"  fx: {{command: {json.dumps([sys.executable, str(FIXTURE), *fixture_args.split()])}, "
        f"env: {json.dumps(env)}, timeout_s: 2, startup_timeout_s: 20}}\n"
        f"{extra}"
    )


LIBRARIAN = {"librarian": "id: librarian\nmodel: up/gpt-lib\nsystem: Use your tools.\ntools: [calculator, fx/*]\n"}


def calls(*tool_calls: tuple[str, dict[str, Any]]) -> Step:
    return Step(
        text="",
        tool_calls=[
            {"id": f"c{i}", "name": n, "arguments": orjson.dumps(a).decode()} for i, (n, a) in enumerate(tool_calls)
        ],
    )


def pids_of(tmp: Path) -> list[int]:
    f = tmp / "pids.txt"
    return [int(p) for p in f.read_text().split()] if f.exists() else []


def cancelled_seen(tmp: Path, within: float = 5.0) -> list[dict[str, Any]]:
    """The `notifications/cancelled` the fixture server has logged, waiting up to `within` s for
    one (the server logs what it reads on its own thread)."""
    deadline = time.monotonic() + within
    while True:
        seen = [m for m in received(tmp / "received.jsonl") if m.get("method") == "notifications/cancelled"]
        if seen or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


@pytest.fixture
def librarian(make_bmo: Callable[..., BmoServer], upstream: FakeUpstream, tmp_path: Path) -> BmoServer:
    return make_bmo(config=config(upstream, tmp_path), agents=LIBRARIAN)


@pytest.mark.parametrize("stream", [False, True])
def test_the_tool_result_reaches_the_upstream_and_the_client_sees_only_the_answer(
    librarian: BmoServer, upstream: FakeUpstream, stream: bool
) -> None:
    upstream.enqueue(calls(("fx__echo", {"text": "the note says hello"})), Step(text="It says hello."))
    c = openai.OpenAI(base_url=librarian.base_url, api_key="none", max_retries=0)
    if stream:
        raw = c.chat.completions.with_raw_response.create(model="librarian", messages=USER, stream=True)  # type: ignore[arg-type]
        chunks = list(raw.parse())
        assert all(not (ch.choices and ch.choices[0].delta.tool_calls) for ch in chunks)
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        rid = raw.headers["x-request-id"]
    else:
        whole = c.chat.completions.with_raw_response.create(model="librarian", messages=USER)  # type: ignore[arg-type]
        msg = whole.parse().choices[0]
        assert msg.message.tool_calls is None and msg.finish_reason == "stop"
        text, rid = msg.message.content or "", whole.headers["x-request-id"]
    assert text == "It says hello."
    first, second = upstream.requests
    offered = sorted(t["function"]["name"] for t in first["tools"])
    assert "fx__echo" in offered and "calculator" in offered
    assert second["messages"][-1] == {"role": "tool", "content": "the note says hello", "tool_call_id": "c0"}
    evs = httpx.get(f"{librarian.url}/v1/openai-compat/runs/{rid}/events", timeout=5).json()["data"]
    result = next(e["detail"] for e in evs if e["name"] == "tool_result")
    assert result["name"] == "fx__echo" and result["server"] == "fx" and result["is_error"] is False
    assert result["duration_ms"] >= 0


def test_mcp_tools_on_the_anthropic_and_responses_dialects(librarian: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(calls(("fx__add", {"a": 2, "b": 40})), Step(text="42, says the tool."))
    a = anthropic.Anthropic(base_url=librarian.url, api_key="none", max_retries=0)
    with a.messages.stream(model="librarian", max_tokens=100, messages=USER) as st:  # type: ignore[arg-type]
        assert "".join(st.text_stream) == "42, says the tool."
        assert [b.type for b in st.get_final_message().content] == ["text"]
    assert upstream.requests[1]["messages"][-1]["content"] == "42"
    upstream.enqueue(calls(("fx__add", {"a": 1, "b": 1})), Step(text="Two."))
    o = openai.OpenAI(base_url=librarian.base_url, api_key="none", max_retries=0)
    resp = o.responses.create(model="librarian", input="1+1?")
    assert resp.output_text == "Two." and [i.type for i in resp.output] == ["message"]
    assert upstream.requests[3]["messages"][-1]["content"] == "2"


def test_failures_and_images_are_results_the_model_reads(librarian: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(calls(("fx__fail", {}), ("fx__image", {})), Step(text="Recovered."))
    r = httpx.post(librarian.base_url + "/chat/completions", json={"model": "librarian", "messages": USER}, timeout=20)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Recovered."
    msgs = upstream.requests[1]["messages"]
    failed, image, pictures = msgs[-3], msgs[-2], msgs[-1]
    assert failed["role"] == "tool" and failed["content"].lower().startswith("error")
    assert image["role"] == "tool" and image["tool_call_id"] == "c1"
    # Chat Completions tool messages take text only: the image follows them in a user message
    assert pictures["role"] == "user"
    urls = [p["image_url"]["url"] for p in pictures["content"] if p["type"] == "image_url"]
    assert urls == ["data:image/png;base64,iVBORw0KGgo="]


def test_a_tool_past_its_timeout_is_cancelled_and_the_run_goes_on(
    librarian: BmoServer, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.enqueue(calls(("fx__sleep", {"seconds": 30})), Step(text="It timed out, sorry."))
    t0 = time.monotonic()
    r = httpx.post(librarian.base_url + "/chat/completions", json={"model": "librarian", "messages": USER}, timeout=20)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "It timed out, sorry."
    assert time.monotonic() - t0 < 2 + 3  # timeout_s 2 (plus the upstream round trips), not 30
    tool_msg = upstream.requests[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and "2" in tool_msg["content"] and "error" in tool_msg["content"].lower()
    assert cancelled_seen(tmp_path), "the server was never told the call was cancelled"


def test_a_client_that_goes_away_cancels_the_running_tool_call(
    librarian: BmoServer, upstream: FakeUpstream, tmp_path: Path, servers: LoopThread
) -> None:
    # a longer timeout than the test's patience: only the client leaving can end this call
    upstream.enqueue(calls(("fx__sleep", {"seconds": 1.5})), Step(text="never seen"))
    body = {"model": "librarian", "messages": USER, "stream": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(librarian.base_url + "/chat/completions", json=body, timeout=0.7)
    seen = cancelled_seen(tmp_path)
    assert seen and "reason" in seen[0]["params"]
    time.sleep(1.5)
    assert len(upstream.requests) == 1  # the run stopped: no second upstream call


def test_posture_tools_route_and_cli_show_the_servers(
    librarian: BmoServer, upstream: FakeUpstream, tmp_path: Path
) -> None:
    posture = httpx.get(librarian.url + "/v1/openai-compat/posture", timeout=5).json()
    (fx,) = posture["mcp_servers"]
    assert fx["name"] == "fx" and fx["state"] == "up" and fx["tools"] >= 5 and fx["last_error"] is None
    listed = httpx.get(librarian.url + "/v1/openai-compat/tools?agent=librarian", timeout=5).json()
    names = {t["name"]: t for t in listed["data"]}
    assert names["fx__echo"]["server"] == "fx" and names["fx__echo"]["tool"] == "echo"
    assert names["fx__echo"]["agents"] == ["librarian"] and "clock" not in names
    assert listed["servers"][0]["name"] == "fx"
    missing = httpx.get(librarian.url + "/v1/openai-compat/tools?agent=nobody", timeout=5)
    assert missing.status_code == 404
    # the CLI asks the running server
    out = CliRunner().invoke(
        app, ["tools", "list", "--home", str(librarian.home), "--url", librarian.url, "--agent", "librarian"],
        env={"COLUMNS": "100"},
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "fx__echo" in out.output and "up" in out.output and "the running server" in out.output


def test_tools_list_starts_the_servers_itself_when_no_bmo_runs(upstream: FakeUpstream, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "agents").mkdir(parents=True)
    (home / "config.yaml").write_text(config(upstream, tmp_path))
    (home / "agents" / "librarian.yaml").write_text(LIBRARIAN["librarian"])
    out = CliRunner().invoke(
        app, ["tools", "list", "--home", str(home), "--url", "http://127.0.0.1:9", "--json"], env={"COLUMNS": "100"}
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["object"] == "list" and data["servers"][0]["state"] == "up"
    assert {"fx__echo", "calculator", "clock"} <= {t["name"] for t in data["data"]}
    assert all(not alive(pid) for pid in pids_of(tmp_path))  # it stopped what it started


def test_an_agent_naming_a_tool_its_server_lacks_stops_start_up(upstream: FakeUpstream, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "agents").mkdir(parents=True)
    (home / "config.yaml").write_text(config(upstream, tmp_path))
    (home / "agents" / "a.yaml").write_text("id: a\nmodel: up/m\ntools: [fx/no_such_tool]\n")
    rt = Runtime(load_config(home, env={}))

    async def start() -> None:
        try:
            await rt.open()
        finally:
            await rt.abort()

    with pytest.raises(ConfigError) as e:
        asyncio.run(start())
    assert "no_such_tool" in e.value.problem and e.value.file.endswith("a.yaml") and e.value.key == "tools"
    assert all(not alive(pid) for pid in pids_of(tmp_path))


def test_a_server_that_is_down_is_a_warning_and_a_posture_entry(
    make_bmo: Callable[..., BmoServer], upstream: FakeUpstream, tmp_path: Path
) -> None:
    broken = config(upstream, tmp_path, fixture_args="--mode no-init").replace(
        "startup_timeout_s: 20", "startup_timeout_s: 1"
    )
    s = make_bmo(config=broken, agents={"plain": "id: plain\nmodel: up/m\ntools: [calculator, fx/echo]\n"})
    (fx,) = httpx.get(s.url + "/v1/openai-compat/posture", timeout=5).json()["mcp_servers"]
    assert fx["state"] != "up" and fx["last_error"]
    upstream.enqueue(Step(text="fine without it"))
    r = httpx.post(s.base_url + "/chat/completions", json={"model": "plain", "messages": USER}, timeout=10)
    assert r.status_code == 200
    assert [t["function"]["name"] for t in upstream.requests[0]["tools"]] == ["calculator"]


@pytest.mark.skipif(shutil.which("node") is None or not FS_ENTRY.exists(), reason="run scripts/clients.sh")
def test_the_published_filesystem_server_in_a_real_agent_run(
    make_bmo: Callable[..., BmoServer], upstream: FakeUpstream, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.txt").write_text("The meeting moved to Thursday.\n")
    cfg = (
        "auth: {mode: none}\n"
        f'providers:\n  up: {{kind: openai, base_url: "{upstream.url}", timeout_s: 10}}\n'
        f"mcp_servers:\n  fs: {{command: {json.dumps(['node', str(FS_ENTRY), str(docs)])}, timeout_s: 30}}\n"
    )
    s = make_bmo(config=cfg, agents={"reader": "id: reader\nmodel: up/gpt-r\ntools: [fs/read_text_file]\n"})
    upstream.enqueue(calls(("fs__read_text_file", {"path": str(docs / "note.txt")})), Step(text="Thursday."))
    c = openai.OpenAI(base_url=s.base_url, api_key="none", max_retries=0)
    answer = c.chat.completions.create(model="reader", messages=USER)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Thursday."
    assert [t["function"]["name"] for t in upstream.requests[0]["tools"]] == ["fs__read_text_file"]
    tool_msg = upstream.requests[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and tool_msg["content"].strip() == "The meeting moved to Thursday."
