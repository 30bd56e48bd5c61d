"""`bmo agents list`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from bmo.cli.common import HomeOption, JsonOption, WideOption, config_or_exit, console, fail, print_json
from bmo.cli.tables import Col, render
from bmo.errors import ConfigError

app = typer.Typer(help="The agents bmo serves as models.", no_args_is_help=True)


@app.command("list")
def list_agents(home: Path = HomeOption, as_json: bool = JsonOption, wide: bool = WideOption) -> None:
    """Every agent, with its upstream route, tools and the model aliases that reach it."""
    from bmo.agents import load_agents

    cfg = config_or_exit(home, write_default=False)
    try:
        agents = load_agents(cfg)  # checks model_aliases too: each names a known agent
    except ConfigError as e:
        fail(f"bad configuration: {e}", 2)
    rows: list[dict[str, Any]] = [
        {
            "id": a.id,
            "model": a.model,
            "tools": a.tools,
            "aliases": [g for g, target in cfg.model_aliases.items() if target == a.id],
            "description": a.description,
            "source": a.source,
            "default": a.id == cfg.default_agent,
        }
        for a in sorted(agents.values(), key=lambda a: a.id)
    ]
    teams: list[dict[str, Any]] = [
        {"id": f"team:{n}", "agents": t.agents, "strategy": t.strategy} for n, t in cfg.teams.items()
    ]
    if as_json:
        # `model_aliases` keeps the file's order: the first glob that matches wins
        print_json({"object": "list", "data": rows, "model_aliases": dict(cfg.model_aliases), "teams": teams})
        return
    cols = [Col("id", keep=True), Col("model", 0), Col("aliases", 1, min=10), Col("tools", 2, min=10),
            Col("description", 3, min=12), Col("source", 4, min=10)]  # fmt: skip
    table = [
        [r["id"] + (" (default)" if r["default"] else ""), r["model"], ", ".join(r["aliases"]) or "-",
         ", ".join(r["tools"]) or "-", r["description"] or "-", r["source"]]
        for r in rows
    ]  # fmt: skip
    out = console()
    render(out, cols, table, wide=wide, title=f"agents ({len(rows)}), served as models")
    if teams:
        out.print()
        render(out, [Col("team", keep=True), Col("strategy", 0), Col("agents, in order", 1, min=10)],
               [[t["id"], t["strategy"], ", ".join(t["agents"])] for t in teams], wide=wide,
               title=f"teams ({len(teams)}), served as models")  # fmt: skip
    if len(cfg.model_aliases) > 1:
        order = ", ".join(f"{g} -> {a}" for g, a in cfg.model_aliases.items())
        out.print(Text(f"model_aliases, tried in this order: {order}"), soft_wrap=True)
