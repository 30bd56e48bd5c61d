"""bmo's own MCP client against fixture servers of our own (tests/mcp_servers): the handshake,
tool listing, calls and result mapping, over stdio and over streamable HTTP."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import bmo
from bmo.config import McpServerConfig
from bmo.tools import mcp_stdio
from bmo.tools.mcp_map import MAX_TEXT, cap_text, clean_schema, exposed_name, to_output
from mcp_servers.harness import Tracker, eventually, received
from mcp_servers.http_server import FakeMcpHttp


@pytest.fixture
async def track(tmp_path: Path) -> AsyncIterator[Tracker]:
    t = Tracker(tmp_path)
    yield t
    await t.close()


@pytest.fixture
async def web() -> AsyncIterator[FakeMcpHttp]:
    fake = FakeMcpHttp()
    await fake.start()
    yield fake
    await fake.stop()


# ---- stdio ------------------------------------------------------------------------------------


async def test_stdio_handshake_tools_and_calls(track: Tracker) -> None:
    log = track.log()
    server = track.server("fx", track.stdio(log=log))
    assert await server.start() is True
    status = server.status()
    assert status == {
        "name": "fx",
        "transport": "stdio",
        "state": "up",
        "server_name": "bmo-fixture",
        "version": "1.2.3",
        "protocol_version": "2025-06-18",
        "tools": 13,
        "last_error": None,
        "restarts": 0,
        "calls": 0,
        "errors": 0,
    }
    echo = next(t for t in server.tools if t.name == "echo")
    assert echo.description == "Echoes text"
    assert echo.schema == {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    fail = next(t for t in server.tools if t.name == "fail")
    assert fail.schema == {"type": "object", "properties": {}}  # `{}` made a usable object schema

    out = await server.call("echo", {"text": "héllo ☃\nsecond line"})
    assert (out.text, out.is_error) == ("héllo ☃\nsecond line", False)
    assert (await server.call("add", {"a": 2, "b": 40})).text == "42"

    # what the server received: the legacy handshake, in order, as PROTOCOLS.md §D.1 shows it
    msgs = received(log)
    assert [m.get("method") for m in msgs[:4]] == [
        "initialize",
        "notifications/initialized",
        "tools/list",
        "tools/call",
    ]
    assert msgs[0]["params"] == {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "bmo", "version": bmo.__version__},
    }
    assert "id" not in msgs[1]
    ids = [m["id"] for m in msgs if "id" in m]
    assert ids == sorted(set(ids))  # increasing, never reused
    assert server.status()["calls"] == 2


async def test_stdio_result_mapping(track: Tracker) -> None:
    server = track.server("fx", track.stdio())
    assert await server.start()
    image = await server.call("image", {})
    assert image.images == [("image/png", "iVBORw0KGgo=")]
    assert image.text.startswith("a red dot\n[image: image/png")
    failed = await server.call("fail", {})
    assert (failed.text, failed.is_error) == ("it broke", True)
    structured = await server.call("structured", {"a": 1, "b": 2})
    assert json.loads(structured.text) == {"sum": 3}
    unknown = await server.call("no_such_tool", {})
    assert unknown.is_error and unknown.text == "error: Unknown tool: no_such_tool"  # a JSON-RPC error
    assert server.status()["errors"] == 2


async def test_stdio_tools_list_follows_every_page(track: Tracker) -> None:
    log = track.log()
    server = track.server("fx", track.stdio("--pages", "4", log=log))
    assert await server.start()
    assert len(server.tools) == 13
    cursors = [m.get("params", {}).get("cursor") for m in received(log) if m.get("method") == "tools/list"]
    assert cursors == [None, "p1", "p2", "p3"]


async def test_server_requests_are_answered_with_method_not_found(track: Tracker) -> None:
    """The fixture asks bmo for roots/list and blocks until it gets an answer: without the
    -32601 reply the call would hang until its timeout."""
    server = track.server("fx", track.stdio(timeout_s=5))
    assert await server.start()
    out = await server.call("ask_roots", {})
    assert not out.is_error
    assert '"code": -32601' in out.text


async def test_a_line_over_one_mib_arrives_and_is_cut_for_the_model(track: Tracker) -> None:
    server = track.server("fx", track.stdio())
    assert await server.start()
    out = await server.call("huge", {"size": 3_000_000})  # one 3 MB line on the wire
    assert not out.is_error
    assert out.text.startswith("x" * 1000)
    assert "[truncated: the tool returned 3000000 bytes" in out.text
    assert len(out.text.encode()) < MAX_TEXT + 200
    assert (await server.call("echo", {"text": "still fine"})).text == "still fine"


async def test_a_line_over_the_cap_fails_that_call_not_hangs(track: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mcp_stdio, "MAX_LINE", 256 * 1024)
    server = track.server("fx", track.stdio(timeout_s=30))
    assert await server.start()
    out = await server.call("huge", {"size": 1_000_000})
    assert out.is_error and "longer than" in out.text
    assert server.state == "down"
    again = await server.call("echo", {"text": "back"})  # restarted for the next call
    assert again.text == "back" and server.restarts == 1


async def test_stdio_banner_on_stdout_is_skipped(track: Tracker) -> None:
    server = track.server("fx", track.stdio("--banner"))
    assert await server.start()
    assert (await server.call("echo", {"text": "ok"})).text == "ok"


async def test_the_child_sees_only_a_minimal_environment(track: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMO_TEST_SECRET", "s3cret-of-bmo")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    cfg = track.stdio(env={"GIVEN": "token=${BMO_TEST_SECRET}", "UNSET": "${BMO_TEST_NOT_SET_ANYWHERE}"})
    server = track.server("fx", cfg)
    assert await server.start()
    out = await server.call("env", {"names": ["GIVEN", "UNSET", "OPENAI_API_KEY", "BMO_TEST_SECRET", "PATH"]})
    seen = json.loads(out.text)
    assert seen["GIVEN"] == "token=s3cret-of-bmo"  # ${VAR} expanded at start, from bmo's environment
    assert seen["UNSET"] == ""
    assert seen["OPENAI_API_KEY"] is None and seen["BMO_TEST_SECRET"] is None
    assert seen["PATH"]
    assert "s3cret" not in json.dumps(server.status())


async def test_an_unsupported_protocol_version_is_refused(track: Tracker) -> None:
    server = track.server("fx", track.stdio("--mode", "bad-version"))
    assert await server.start() is False
    assert server.state == "down"
    assert "1999-01-01" in (server.last_error or "") and "2025-06-18" in (server.last_error or "")


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26", "2025-11-25"])
async def test_older_and_newer_known_versions_are_accepted(track: Tracker, version: str) -> None:
    server = track.server("fx", track.stdio("--version", version))
    assert await server.start()
    assert server.protocol_version == version


async def test_a_missing_program_is_a_clear_error(track: Tracker) -> None:
    server = track.server("fx", McpServerConfig(command=["/nonexistent/bmo-no-such-server"]))
    assert await server.start() is False
    assert "no such program" in (server.last_error or "")
    out = await server.call("echo", {})
    assert out.is_error and "unavailable" in out.text
    elsewhere = track.server("fx2", track.stdio(cwd="/nonexistent/bmo-no-such-dir"))
    assert await elsewhere.start() is False
    assert "cwd /nonexistent/bmo-no-such-dir is not a directory" in (elsewhere.last_error or "")


# ---- streamable HTTP --------------------------------------------------------------------------


async def test_http_handshake_headers_json_and_sse(
    track: Tracker, web: FakeMcpHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BMO_TEST_HTTP_TOKEN", "tok-123")
    cfg = McpServerConfig(url=web.url, headers={"Authorization": "Bearer ${BMO_TEST_HTTP_TOKEN}"})
    server = track.server("web", cfg)
    assert await server.start()
    assert server.status()["transport"] == "http"
    assert (server.server_name, server.protocol_version) == ("http-fixture", "2025-06-18")
    assert [t.name for t in server.tools][:3] == ["echo", "big", "stream_echo"]
    assert (await server.call("echo", {"text": "json answer"})).text == "json answer"
    assert (await server.call("stream_echo", {"text": "sse answer"})).text == "sse answer"
    big = await server.call("big", {})
    assert not big.is_error and big.text.startswith("y" * 1000) and "[truncated" in big.text
    failed = await server.call("fail", {})
    assert failed.is_error and failed.text == "it broke"

    first, *later = web.received
    assert first[1]["method"] == "initialize" and "Mcp-Session-Id" not in first[0]
    for headers, _ in web.received:
        assert headers["Accept"] == "application/json, text/event-stream"
        assert headers["Content-Type"] == "application/json"
        assert headers["Authorization"] == "Bearer tok-123"
    sid = next(iter(web.sessions))
    assert all(h["Mcp-Session-Id"] == sid and h["MCP-Protocol-Version"] == "2025-06-18" for h, _ in later)
    assert "tok-123" not in json.dumps(server.status())

    await server.close()
    assert web.deletes == [sid]


async def test_http_delete_refused_is_fine(track: Tracker, web: FakeMcpHttp) -> None:
    web.allow_delete = False
    server = track.server("web", McpServerConfig(url=web.url))
    assert await server.start()
    await server.close()
    assert len(web.deletes) == 1 and server.state == "down"


async def test_http_expired_session_initializes_again_and_retries(track: Tracker, web: FakeMcpHttp) -> None:
    server = track.server("web", McpServerConfig(url=web.url))
    assert await server.start()
    web.expire()  # as if the server restarted: our session id now gets 404
    out = await server.call("echo", {"text": "after expiry"})
    assert (out.text, out.is_error) == ("after expiry", False)
    assert web.initializes == 2
    assert server.state == "up"


async def test_http_server_request_in_a_stream_is_answered(track: Tracker, web: FakeMcpHttp) -> None:
    server = track.server("web", McpServerConfig(url=web.url, timeout_s=5))
    assert await server.start()
    out = await server.call("ask_roots", {})
    assert '"code": -32601' in out.text


async def test_http_list_changed_in_a_stream_lists_again(track: Tracker, web: FakeMcpHttp) -> None:
    server = track.server("web", McpServerConfig(url=web.url))
    assert await server.start()
    assert "late" not in [t.name for t in server.tools]
    assert (await server.call("notify_change", {})).text == "changed"
    assert await eventually(lambda: "late" in [t.name for t in server.tools])
    assert (await server.call("late", {})).text == "late tool"


async def test_http_errors_are_clear(track: Tracker, web: FakeMcpHttp) -> None:
    server = track.server("web", McpServerConfig(url=web.url))
    assert await server.start()
    boom = await server.call("boom", {})
    assert boom.is_error and "HTTP 500" in boom.text and "internal explosion" in boom.text
    garbage = await server.call("garbage", {})
    assert garbage.is_error and "not JSON" in garbage.text and "<html>" in garbage.text
    assert server.state == "up"  # failed calls, not a dead server

    url = web.url
    await web.stop()
    refused = track.server("gone", McpServerConfig(url=url, startup_timeout_s=5))
    assert await refused.start() is False
    assert (refused.last_error or "").startswith(f"cannot connect to {url}")


# ---- mapping (pure) ---------------------------------------------------------------------------

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_exposed_names_are_sanitised_and_bounded() -> None:
    assert exposed_name("fs", "read_file") == "fs__read_file"
    assert exposed_name("docs", "search.v2 beta/x") == "docs__search_v2_beta_x"
    long = exposed_name("server", "t" * 120)
    assert NAME.match(long) and len(long) == 64 and long.startswith("server__ttt")
    assert long != exposed_name("server", "t" * 121)  # the hash tells them apart
    assert exposed_name("server", "t" * 120) == long  # deterministic
    hashed = exposed_name("a", "b", hashed=True)
    assert NAME.match(hashed) and hashed.startswith("a__b_") and len(hashed) == len("a__b_") + 8


def test_schema_cleaning() -> None:
    assert clean_schema(None) == {"type": "object", "properties": {}}
    assert clean_schema({"$schema": "x", "properties": {"a": {"type": "string"}}, "required": ["a"]}) == {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
    }


def test_result_mapping_covers_every_content_type() -> None:
    png = base64.b64encode(b"\x89PNG" + b"\0" * 96).decode()
    out = to_output(
        {
            "content": [
                {"type": "text", "text": "one"},
                {"type": "image", "data": png, "mimeType": "image/png"},
                {"type": "audio", "data": "AAAA", "mimeType": "audio/wav"},
                {"type": "resource_link", "uri": "file:///a.txt", "name": "a.txt"},
                {"type": "resource", "resource": {"uri": "file:///b.txt", "text": "embedded text"}},
                {"type": "resource", "resource": {"uri": "file:///c.bin", "blob": "AAAA", "mimeType": "x/bin"}},
            ],
            "structuredContent": {"ignored": "because there is text"},
        }
    )
    assert out.text.split("\n") == [
        "one",
        "[image: image/png, 100 bytes]",
        "[audio: audio/wav, 3 bytes]",
        "file:///a.txt (a.txt)",
        "embedded text",
        "[resource: file:///c.bin, x/bin, 3 bytes]",
    ]
    assert out.images == [("image/png", png)] and not out.is_error
    assert to_output({"content": [], "structuredContent": {"n": 1}, "isError": True}).text == '{"n": 1}'
    assert to_output({"content": [], "isError": True}).is_error
    assert to_output(None).is_error


def test_text_is_capped_with_a_note() -> None:
    assert cap_text("short") == "short"
    big = "é" * MAX_TEXT  # 2 bytes each: cut in the middle of a character must not break it
    capped = cap_text(big)
    assert capped.startswith("é" * 1000) and "[truncated: the tool returned 200000 bytes" in capped
    assert "\ufffd" not in capped


def _only(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: d[k] for k in keys}


async def test_stdio_server_name_is_in_status_not_its_config(track: Tracker) -> None:
    cfg = track.stdio("--pages", "2", env={"SECRET_ENV": "do-not-show"})
    server = track.server("fx", cfg)
    assert await server.start()
    text = json.dumps(server.status())
    assert "do-not-show" not in text and "stdio_server.py" not in text
    assert _only(server.status(), "state", "tools") == {"state": "up", "tools": 13}
