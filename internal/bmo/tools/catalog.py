"""What `GET /v1/openai-compat/tools` and `bmo tools list` show (layer 2): every tool the
registry knows, who may use it, and each MCP server's state. One builder for the server and for
the CLI that starts the servers itself when no bmo runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bmo.tools.registry import ToolRegistry


def catalog(
    registry: ToolRegistry, agent_tools: Mapping[str, Sequence[str]], agent: str | None = None
) -> dict[str, Any]:
    """`{"object": "list", "data": [tool…], "servers": [server…]}`. `agent_tools` maps each agent
    id to the names in its `tools:`; with `agent`, only that agent's tools are listed (an agent
    that is not there raises KeyError)."""
    users: dict[str, list[str]] = {}
    for aid in sorted(agent_tools):
        for name in registry.resolve(agent_tools[aid]):
            users.setdefault(name, []).append(aid)
    if agent is not None:
        mine = set(registry.resolve(agent_tools[agent]))
    tools = [
        {**t, "agents": users.get(t["name"], [])}
        for t in registry.describe()
        if agent is None or t["name"] in mine
    ]
    return {"object": "list", "data": tools, "servers": registry.status()}
