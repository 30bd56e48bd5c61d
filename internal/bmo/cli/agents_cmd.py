"""`bmo agents list`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from bmo.cli.common import HomeOption, JsonOption, config_or_exit, console, fail, print_json
from bmo.errors import ConfigError

app = typer.Typer(help="The agents bmo serves as models.", no_args_is_help=True)


@app.command("list")
def list_agents(home: Path = HomeOption, as_json: bool = JsonOption) -> None:
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
    if as_json:
        # `model_aliases` keeps the file's order: the first glob that matches wins
        print_json({"object": "list", "data": rows, "model_aliases": dict(cfg.model_aliases)})
        return
    t = Table(title="agents")
    for c in ("id", "model", "tools", "aliases", "description", "source"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(
            r["id"] + (" (default)" if r["default"] else ""),
            r["model"],
            ", ".join(r["tools"]),
            escape(", ".join(r["aliases"])),  # a glob may hold [...], which is not markup
            r["description"],
            r["source"],
        )
    out = console()
    out.print(t)
    if len(cfg.model_aliases) > 1:
        order = ", ".join(f"{g} -> {a}" for g, a in cfg.model_aliases.items())
        out.print(f"model_aliases, tried in this order: {order}", highlight=False, markup=False, soft_wrap=True)
