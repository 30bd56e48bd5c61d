"""`bmo agents list`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from bmo.cli.common import HomeOption, JsonOption, config_or_exit, console, fail, print_json
from bmo.errors import ConfigError

app = typer.Typer(help="The agents bmo serves as models.", no_args_is_help=True)


@app.command("list")
def list_agents(home: Path = HomeOption, as_json: bool = JsonOption) -> None:
    """Every agent, with its upstream route and tools."""
    from bmo.agents import load_agents

    cfg = config_or_exit(home, write_default=False)
    try:
        agents = load_agents(cfg)
    except ConfigError as e:
        fail(f"bad configuration: {e}", 2)
    rows: list[dict[str, Any]] = [
        {
            "id": a.id,
            "model": a.model,
            "tools": a.tools,
            "description": a.description,
            "source": a.source,
            "default": a.id == cfg.default_agent,
        }
        for a in sorted(agents.values(), key=lambda a: a.id)
    ]
    if as_json:
        print_json(rows)
        return
    t = Table(title="agents")
    for c in ("id", "model", "tools", "description", "source"):
        t.add_column(c)
    for r in rows:
        t.add_row(
            r["id"] + (" (default)" if r["default"] else ""),
            r["model"],
            ", ".join(r["tools"]),
            r["description"],
            r["source"],
        )
    console().print(t)
