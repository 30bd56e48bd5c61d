"""`bmo tools list`: every server-side tool, who may use it, and each MCP server's state.

From the running server (GET /v1/openai-compat/tools: what its MCP servers listed, their live
state); when no server answers, the command starts the configured MCP servers itself, lists
them and stops them again, and says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from bmo.cli.common import (
    HomeOption,
    JsonOption,
    KeyOption,
    WideOption,
    config_or_exit,
    console,
    err_console,
    fail,
    print_json,
)
from bmo.cli.remote import UrlOption, error_message, find_server, get
from bmo.cli.tables import Col, render, state_style
from bmo.config import Config
from bmo.errors import ConfigError

app = typer.Typer(help="Server-side tools: the built-ins and the MCP servers' tools.", no_args_is_help=True)

AgentOption = typer.Option(None, "--agent", help="Only the tools this agent may use.", show_default=False)


@app.command("list")
def list_tools(
    agent: str = AgentOption,
    home: Path = HomeOption,
    url: str = UrlOption,
    key: str = KeyOption,
    as_json: bool = JsonOption,
    wide: bool = WideOption,
) -> None:
    """Every tool (its exposed name, server, the agents that may use it) and each MCP server's
    state, version, tool count and last error."""
    cfg = config_or_exit(home, write_default=False)
    target = find_server(cfg, url)
    path = "/v1/openai-compat/tools" + (f"?agent={agent}" if agent else "")
    a = get(target.url, path, key or None, timeout=5.0)
    source = f"the running server at {target.url}"
    if a.status == 200 and isinstance(a.body, dict):
        data = a.body
    elif a.status == 404 and agent:
        fail(f"no agent {agent!r}: {error_message(a)}", 1)
    elif a.status != 0:
        fail(f"the server at {target.url} answered HTTP {a.status}: {error_message(a)}", 1)
    else:
        data = _started_here(cfg, agent)
        source = "MCP servers started by this command (no bmo server answers at " + target.url + ")"
    if as_json:
        print_json(data)
        return
    out = console()
    servers: list[dict[str, Any]] = data.get("servers") or []
    if servers:
        cols = [Col("server", keep=True), Col("state", 0, style=state_style), Col("transport", 3),
                Col("version", 2, min=8), Col("tools", 0, justify="right"), Col("restarts", 4, justify="right"),
                Col("last error", 1, min=16)]  # fmt: skip
        rows = [
            [s["name"], s["state"], s.get("transport") or "-", _version(s), str(s.get("tools", 0)),
             str(s.get("restarts", 0)), s.get("last_error") or "-"]
            for s in servers
        ]  # fmt: skip
        render(out, cols, rows, wide=wide, title=f"MCP servers ({len(servers)})")
        out.print()
    cols = [Col("tool", keep=True), Col("server", 0), Col("agents", 1, min=10), Col("description", 2, min=16)]
    rows = [
        [
            t["name"],
            t.get("server") or "(built-in)",
            ", ".join(t.get("agents") or []) or "-",
            t.get("description") or "-",
        ]
        for t in data.get("data") or []
    ]
    title = f"tools ({len(rows)})" + (f" of agent {agent}" if agent else "")
    render(out, cols, rows, wide=wide, title=title, empty="(none)")
    out.print(Text(f"from {source}", style="dim"), soft_wrap=True)


def _version(s: dict[str, Any]) -> str:
    name, version = s.get("server_name"), s.get("version")
    return " ".join(str(x) for x in (name, version) if x) or "-"


def _started_here(cfg: Config, agent: str | None) -> dict[str, Any]:
    import asyncio

    from bmo.agents import load_agents
    from bmo.tools.catalog import catalog
    from bmo.tools.registry import ToolRegistry

    try:
        agents = load_agents(cfg)
    except ConfigError as e:
        fail(f"bad configuration: {e}", 2)
    if agent is not None and agent not in agents:
        fail(f"no agent {agent!r} (known: {', '.join(sorted(agents))})", 1)
    if cfg.mcp_servers:
        err_console().print(f"no bmo server answers: starting {len(cfg.mcp_servers)} MCP server(s) to list them…")

    async def go() -> dict[str, Any]:
        registry = ToolRegistry(cfg.mcp_servers)
        try:
            await registry.open()
            return catalog(registry, {a.id: a.tools for a in agents.values()}, agent)
        finally:
            await registry.close()

    return asyncio.run(go())
