"""MCP servers that misbehave: slow tools, crashes, stderr floods, servers that never answer,
processes that outlive their parent, callers that go away. Each test asserts what a user would
notice: a readable error in bounded time, the next call working, no process left behind."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bmo.config import McpServerConfig
from mcp_servers.harness import Tracker, alive, eventually, received
from mcp_servers.http_server import FakeMcpHttp


@pytest.fixture
async def track(tmp_path: Path) -> AsyncIterator[Tracker]:
    t = Tracker(tmp_path)
    yield t
    await t.close()


def _cancels(log: Path) -> list[dict[str, object]]:
    return [m["params"] for m in received(log) if m.get("method") == "notifications/cancelled"]


def _call_ids(log: Path, tool: str) -> list[int]:
    return [m["id"] for m in received(log) if m.get("method") == "tools/call" and m["params"]["name"] == tool]


async def test_a_slow_tool_times_out_and_the_server_is_told(track: Tracker) -> None:
    log = track.log()
    server = track.server("fx", track.stdio(log=log, timeout_s=1))
    assert await server.start()
    t0 = time.monotonic()
    out = await server.call("sleep", {"seconds": 30})
    elapsed = time.monotonic() - t0
    assert elapsed < 1 + 0.5  # the bound: within timeout + 0.5 s
    assert out.is_error and "took longer than 1s" in out.text
    cancels = await eventually(lambda: _cancels(log), within=3)
    assert cancels and cancels[0]["requestId"] == _call_ids(log, "sleep")[0]
    assert "timed out" in str(cancels[0]["reason"])
    # the server is still up and answers the next call
    assert server.state == "up"
    assert (await server.call("echo", {"text": "next"})).text == "next"


async def test_a_late_answer_to_a_timed_out_call_is_dropped(track: Tracker) -> None:
    server = track.server("fx", track.stdio(timeout_s=1))
    assert await server.start()
    out = await server.call("sleep", {"seconds": 1.3})  # answers 0.3 s after we gave up
    assert out.is_error
    await asyncio.sleep(0.5)
    assert (await server.call("echo", {"text": "mine"})).text == "mine"  # not the stale "slept"


async def test_a_crash_mid_call_fails_fast_and_the_next_call_restarts_it(track: Tracker) -> None:
    server = track.server("fx", track.stdio(timeout_s=60))
    assert await server.start()
    first_pid = server.pid
    t0 = time.monotonic()
    out = await server.call("crash", {})
    assert time.monotonic() - t0 < 1  # the bound: not the 60 s timeout
    assert out.is_error and "exited with code 3" in out.text
    again = await server.call("echo", {"text": "restarted"})
    assert (again.text, again.is_error) == ("restarted", False)
    assert server.pid != first_pid and server.restarts == 1
    assert server.status()["calls"] == 2 and server.status()["errors"] == 1


async def test_a_crash_fails_every_call_in_flight(track: Tracker) -> None:
    server = track.server("fx", track.stdio(timeout_s=60))
    assert await server.start()
    sleeper = asyncio.create_task(server.call("sleep", {"seconds": 30}))
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    crash = await server.call("crash", {})
    slept = await asyncio.wait_for(sleeper, 2)
    assert time.monotonic() - t0 < 1
    assert crash.is_error and slept.is_error and "exited" in slept.text


async def test_a_server_flooding_stderr_still_answers(track: Tracker) -> None:
    """4 MB of stderr before the first answer and more all along: a client that did not drain
    stderr would block the server on a full pipe and never see `initialize` answered."""
    server = track.server("fx", track.stdio("--mode", "flood-stderr", startup_timeout_s=20, timeout_s=10))
    assert await server.start(), server.last_error
    for i in range(5):
        assert (await server.call("echo", {"text": f"still here {i}"})).text == f"still here {i}"


async def test_a_server_that_never_initializes_is_down_and_the_others_work(track: Tracker) -> None:
    mute = track.stdio("--mode", "no-init", startup_timeout_s=1)
    registry = track.registry({"mute": mute, "fx": track.stdio()})
    t0 = time.monotonic()
    await registry.open()
    assert time.monotonic() - t0 < 1 + 2  # bounded by its startup_timeout_s, not hung
    status = {s["name"]: s for s in registry.status()}
    assert status["mute"]["state"] == "down"
    assert "did not start within 1s" in status["mute"]["last_error"]
    assert status["fx"]["state"] == "up"
    tools = registry.resolve(["mute/*", "fx/echo", "calculator"])
    assert list(tools) == ["fx__echo", "calculator"]
    assert (await tools["fx__echo"].run({"text": "fine"})).text == "fine"  # type: ignore[union-attr]
    warnings = registry.check("helper", ["mute/*", "fx/echo"])
    assert len(warnings) == 1 and "mute" in warnings[0] and "did not start" in warnings[0]


async def test_close_leaves_no_child_or_grandchild(track: Tracker) -> None:
    server = track.server("fx", track.stdio("--mode", "grandchild"))
    assert await server.start()
    pids = json.loads((await server.call("pids", {})).text)
    assert alive(pids["pid"]) and alive(pids["grandchild"])
    await server.close()
    # the grandchild ignores SIGTERM: only the group's SIGKILL ends it
    assert await eventually(lambda: not alive(pids["pid"]) and not alive(pids["grandchild"]), within=2)


async def test_close_kills_a_server_that_ignores_stdin_and_sigterm(track: Tracker) -> None:
    server = track.server("fx", track.stdio("--mode", "stubborn"))
    assert await server.start()
    pids = json.loads((await server.call("pids", {})).text)
    await server.close()  # stdin closed (ignored), 2 s, SIGTERM (ignored), 2 s, SIGKILL
    assert await eventually(lambda: not alive(pids["pid"]) and not alive(pids["grandchild"]), within=2)


async def test_a_registry_close_stops_every_process_it_started(track: Tracker) -> None:
    registry = track.registry({"a": track.stdio("--mode", "grandchild"), "b": track.stdio("--mode", "grandchild")})
    await registry.open()
    pids = track.pids()
    assert len(pids) == 4 and all(alive(p) for p in pids)
    await registry.close()
    await registry.close()  # idempotent
    assert await eventually(lambda: not any(alive(p) for p in pids), within=2)
    assert all(s["state"] == "down" for s in registry.status())


async def test_close_during_a_background_restart_stops_that_process_too(track: Tracker) -> None:
    registry = track.registry({"mute": track.stdio("--mode", "no-init", startup_timeout_s=1)})
    await registry.open()  # down after 1 s; the supervisor tries again 1 s later
    assert await eventually(lambda: len(track.pids()) == 2, within=5)  # the second start is under way
    assert registry.status()[0]["state"] == "starting"
    await registry.close()
    assert not any(alive(p) for p in track.pids())  # close() returned: it waited for them


async def test_close_during_open_stops_the_server_being_started(track: Tracker) -> None:
    """bmo shut down while a server was still starting (an npx cold start): close() must not
    return before that process is gone, though the start belongs to open()'s task."""
    registry = track.registry({"slow": track.stdio("--mode", "no-init,stubborn", startup_timeout_s=30)})
    opening = asyncio.create_task(registry.open())
    assert await eventually(lambda: len(track.pids()) == 2, within=5)  # the server and its grandchild
    await registry.close()
    assert not any(alive(p) for p in track.pids())
    await asyncio.wait_for(opening, 1)  # open() ends too, with the server down
    assert registry.status()[0]["state"] == "down"


async def test_a_crashed_servers_grandchild_is_cleaned_up(track: Tracker) -> None:
    server = track.server("fx", track.stdio("--mode", "grandchild", timeout_s=10))
    assert await server.start()
    pids = json.loads((await server.call("pids", {})).text)
    assert (await server.call("crash", {})).is_error
    assert await eventually(lambda: not alive(pids["grandchild"]), within=5)


async def test_cancelling_the_caller_tells_the_server(track: Tracker) -> None:
    log = track.log()
    server = track.server("fx", track.stdio(log=log, timeout_s=60))
    assert await server.start()
    task = asyncio.create_task(server.call("sleep", {"seconds": 30}))
    assert await eventually(lambda: _call_ids(log, "sleep"), within=3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    cancels = await eventually(lambda: _cancels(log), within=3)
    assert cancels and cancels[0]["requestId"] == _call_ids(log, "sleep")[0]
    assert (await server.call("echo", {"text": "after"})).text == "after"


async def test_http_timeout_and_cancel_tell_the_server(track: Tracker) -> None:
    web = FakeMcpHttp()
    await web.start()
    try:
        server = track.server("web", McpServerConfig(url=web.url, timeout_s=1))
        assert await server.start()
        t0 = time.monotonic()
        out = await server.call("sleep", {"seconds": 30})
        assert time.monotonic() - t0 < 1 + 0.5
        assert out.is_error and "took longer than 1s" in out.text
        assert await eventually(lambda: len(web.cancelled) == 1, within=3)

        task = asyncio.create_task(server.call("sleep", {"seconds": 30}))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await eventually(lambda: len(web.cancelled) == 2, within=3)
        assert web.cancelled[1]["reason"] == "the caller went away"
    finally:
        await web.stop()


async def test_an_http_server_that_goes_away_comes_back(track: Tracker) -> None:
    web = FakeMcpHttp()
    await web.start()
    server = track.server("web", McpServerConfig(url=web.url, timeout_s=5))
    assert await server.start()
    port = int(web.url.rsplit(":", 1)[1].split("/")[0])
    await web.stop()
    out = await server.call("echo", {"text": "anyone?"})
    assert out.is_error and web.url in out.text  # "cannot connect" or "lost the connection", by timing
    assert server.state == "down"
    # the same address serves again (a restarted server): the next call reconnects
    again = FakeMcpHttp()
    await again.start(port)
    try:
        ok = await server.call("echo", {"text": "back"})
        assert (ok.text, ok.is_error) == ("back", False)
        assert server.state == "up" and server.restarts == 1
    finally:
        await again.stop()


async def test_a_secret_the_server_prints_stays_out_of_errors_and_status(
    track: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BMO_TEST_MCP_KEY", "tok-live-0123456789")
    server = track.server("fx", track.stdio(env={"API_KEY": "${BMO_TEST_MCP_KEY}"}, timeout_s=10))
    assert await server.start()
    out = await server.call("leak", {})
    assert out.is_error and "exited with code 4" in out.text
    status = json.dumps(server.status())
    assert "was refused" in status  # the server's last words are there, for the operator…
    assert "tok-live-0123456789" not in status + out.text  # …but not the secret in them
