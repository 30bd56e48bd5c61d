"""The tool registry: built-ins plus every MCP server's tools, named for the model, resolved per
agent, checked at start-up, kept current as servers come, go and change their lists."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bmo.errors import ConfigError
from bmo.tools import ToolOutput
from bmo.tools.mcp_map import exposed_name
from bmo.tools.registry import ToolRegistry
from mcp_servers.harness import Tracker, eventually

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@pytest.fixture
async def track(tmp_path: Path) -> AsyncIterator[Tracker]:
    t = Tracker(tmp_path)
    yield t
    await t.close()


async def _text(registry: ToolRegistry, names: list[str], exposed: str, args: dict[str, object]) -> str:
    out = await registry.resolve(names)[exposed].run(dict(args))
    return out.text if isinstance(out, ToolOutput) else out


async def test_resolve_in_order_with_builtins_wildcards_and_single_tools(track: Tracker) -> None:
    registry = track.registry({"fx": track.stdio()})
    await registry.open()
    tools = registry.resolve(["calculator", "fx/echo", "clock"])
    assert list(tools) == ["calculator", "fx__echo", "clock"]
    assert tools["fx__echo"].server == "fx" and tools["calculator"].server is None
    assert tools["fx__echo"].timeout_s == 120 + 1  # the server's timeout_s, plus the loop's margin
    everything = registry.resolve(["fx/*"])
    assert len(everything) == 13 and list(everything)[:3] == ["fx__echo", "fx__add", "fx__structured"]
    assert all(t.spec.schema["type"] == "object" and "$schema" not in t.spec.schema for t in everything.values())
    assert registry.resolve(["fx/no_such", "nothing/*", "not_a_tool"]) == {}  # never raises
    assert await _text(registry, ["fx/add"], "fx__add", {"a": 1, "b": 2}) == "3"


async def test_builtins_are_there_without_servers() -> None:
    registry = ToolRegistry({})
    await registry.open()
    assert list(registry.resolve(["clock", "calculator"])) == ["clock", "calculator"]
    assert registry.status() == []
    assert [d["name"] for d in registry.describe()] == ["clock", "calculator"]
    await registry.close()


async def test_check_raises_for_what_cannot_work_and_warns_for_what_is_down(track: Tracker) -> None:
    registry = track.registry({"fx": track.stdio(), "off": track.stdio("--mode", "bad-version")})
    await registry.open()
    assert registry.check("helper", ["calculator", "fx/*", "fx/echo"]) == []
    with pytest.raises(ConfigError, match="has no tool 'nope'.*echo"):
        registry.check("helper", ["fx/nope"])
    with pytest.raises(ConfigError, match="unknown MCP server 'ghost'"):
        registry.check("helper", ["ghost/*"])
    with pytest.raises(ConfigError, match="unknown tool 'abacus'"):
        registry.check("helper", ["abacus"])
    with pytest.raises(ConfigError, match="names no tool"):
        registry.check("helper", ["fx/"])
    warnings = registry.check("helper", ["off/anything", "off/*"])
    assert len(warnings) == 2 and all("off is down" in w and "1999-01-01" in w for w in warnings)


async def test_names_are_sanitised_bounded_and_unique(track: Tracker) -> None:
    long_tool = "very.long.tool-name " * 6  # 120 characters with dots and spaces
    env = {"MCP_FIXTURE_LABEL": ""}
    # "a" with tool "b__c" and "a__b" with tool "c" would both be "a__b__c"
    registry = track.registry(
        {
            "a": track.stdio("--tools", f"b__c,{long_tool}", env={**env, "MCP_FIXTURE_LABEL": "server-a"}),
            "a__b": track.stdio("--tools", "c", env={**env, "MCP_FIXTURE_LABEL": "server-a__b"}),
        }
    )
    await registry.open()
    names = list(registry.resolve(["a/*", "a__b/*"]))
    assert all(NAME.match(n) for n in names) and len(names) == len(set(names)) == 13 + 2 + 13 + 1
    assert "a__b__c" not in names  # the collision: both got the hashed form
    first, second = exposed_name("a", "b__c", hashed=True), exposed_name("a__b", "c", hashed=True)
    assert first != second and {first, second} <= set(names)
    # each name maps back to its own server and the tool's exact name
    assert await _text(registry, ["a/b__c"], first, {}) == "server-a:b__c"
    assert await _text(registry, ["a__b/c"], second, {}) == "server-a__b:c"
    long_name = exposed_name("a", long_tool)
    assert len(long_name) == 64 and long_name in names
    assert await _text(registry, [f"a/{long_tool}"], long_name, {}) == f"server-a:{long_tool}"
    described = {d["name"]: d for d in registry.describe()}
    assert described[long_name]["tool"] == long_tool and described[long_name]["server"] == "a"


async def test_list_changed_bumps_the_generation_and_shows_the_new_tool(track: Tracker) -> None:
    registry = track.registry({"fx": track.stdio()})
    await registry.open()
    gen = registry.generation
    assert "fx__late" not in registry.resolve(["fx/*"])
    assert await _text(registry, ["fx/notify_change"], "fx__notify_change", {}) == "changed"
    assert await eventually(lambda: registry.generation > gen)
    assert "fx__late" in registry.resolve(["fx/*"])
    assert await _text(registry, ["fx/late"], "fx__late", {}) == "fixture:late"


async def test_a_dead_server_drops_out_and_comes_back_by_itself(track: Tracker) -> None:
    registry = track.registry({"fx": track.stdio()})
    await registry.open()
    gen = registry.generation
    crashed = await registry.resolve(["fx/crash"])["fx__crash"].run({})
    assert isinstance(crashed, ToolOutput) and crashed.is_error
    assert registry.generation > gen  # it went down: its tools are no longer offered
    # nobody calls it (its tools are hidden), yet it is restarted in the background
    assert await eventually(lambda: registry.status()[0]["state"] == "up", within=5)
    assert "fx__echo" in registry.resolve(["fx/*"])
    assert registry.status()[0]["restarts"] == 1


async def test_status_and_describe_are_json_safe_and_hold_no_secrets(
    track: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BMO_TEST_MCP_TOKEN", "tok-very-secret")
    from bmo.config import McpServerConfig

    registry = track.registry(
        {
            "fx": track.stdio(env={"API_KEY": "${BMO_TEST_MCP_TOKEN}", "PLAIN": "plain-secret"}),
            "web": McpServerConfig(url="http://127.0.0.1:9/mcp", headers={"Authorization": "Bearer hdr-secret"}),
        }
    )
    await registry.open()
    status = registry.status()
    text = json.dumps(status) + json.dumps(registry.describe())
    for secret in ("tok-very-secret", "plain-secret", "hdr-secret", "BMO_TEST_MCP_TOKEN"):
        assert secret not in text
    assert [s["name"] for s in status] == ["fx", "web"]
    assert set(status[0]) == {
        "name", "transport", "state", "server_name", "version", "protocol_version",
        "tools", "last_error", "restarts", "calls", "errors",
    }  # fmt: skip
    assert status[1]["state"] == "down" and status[1]["transport"] == "http"
    described = registry.describe()
    assert described[0] == {
        "name": "clock",
        "server": None,
        "tool": "clock",
        "description": described[0]["description"],
    }
    echo = next(d for d in described if d["name"] == "fx__echo")
    assert echo == {"name": "fx__echo", "server": "fx", "tool": "echo", "description": "Echoes text"}
    assert not any(d["server"] == "web" for d in described)
