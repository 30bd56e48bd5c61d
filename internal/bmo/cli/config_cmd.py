"""`bmo config validate` and `bmo config show-openai-compat`."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from bmo.cli.common import HomeOption, JsonOption, build_runtime, config_or_exit, console, fail, print_json
from bmo.cli.ledger_cmd import KeyOption, posture_data, render_posture
from bmo.config import as_dict
from bmo.errors import ConfigError

app = typer.Typer(help="Check and show the configuration.", no_args_is_help=True)


@app.command("validate")
def validate(home: Path = HomeOption) -> None:
    """Check config.yaml and every agent file without starting the server."""
    cfg = config_or_exit(home, write_default=False)
    try:
        # exactly what `bmo serve` builds before it opens the store: the two never disagree
        runtime = build_runtime(cfg)
    except ConfigError as e:
        fail(f"bad configuration: {e}", 2)
    agents = runtime.agents.agents
    src = cfg.config_file if cfg.config_file and cfg.config_file.exists() else "built-in defaults"
    out = console()
    out.print(f"ok: {src}; {len(agents)} agent(s): {', '.join(sorted(agents))}", highlight=False, markup=False)
    if cfg.model_aliases:
        pairs = ", ".join(f"{g} -> {a}" for g, a in cfg.model_aliases.items())
        out.print(f"model_aliases (first match wins): {pairs}", highlight=False, markup=False)


@app.command("show-openai-compat")
def show_openai_compat(
    home: Path = HomeOption,
    key: str = KeyOption,
    as_json: bool = JsonOption,
) -> None:
    """The merged OpenAI-compatible configuration and the live posture."""
    cfg = config_or_exit(home, write_default=False)
    d = as_dict(cfg)
    view = {
        "bind": f"{cfg.server.host}:{cfg.server.port}",
        "auth_mode": cfg.auth.mode,
        "openai_compat": d["openai_compat"],
        "sessions": d["sessions"],
        "ledger": d["ledger"],
        "default_agent": cfg.default_agent,
        "model_aliases": dict(cfg.model_aliases),
        "providers": {
            n: {"kind": p.kind, "base_url": p.base_url, "api_key_env": p.api_key_env} for n, p in cfg.providers.items()
        },
        "home": str(cfg.home),
        "config_file": d["config_file"],
    }
    posture, note = posture_data(cfg, key or os.environ.get("BMO_API_KEY"))
    if as_json:
        print_json({"config": view, "posture": posture})
        return
    t = Table(title="bmo OpenAI-compatible configuration", show_header=True)
    t.add_column("setting")
    t.add_column("value")
    t.add_row("bind", view["bind"])
    t.add_row("auth mode", cfg.auth.mode)
    for k, v in d["openai_compat"].items():
        t.add_row(f"openai_compat.{k}", str(v))
    for k, v in d["sessions"].items():
        t.add_row(f"sessions.{k}", str(v))
    for k, v in d["ledger"].items():
        t.add_row(f"ledger.{k}", str(v))
    t.add_row("default_agent", cfg.default_agent)
    if not cfg.model_aliases:
        t.add_row("model_aliases", "(none)")
    for glob, target in cfg.model_aliases.items():
        t.add_row(escape(f"model_aliases.{glob}"), escape(target))  # a glob may hold [...]
    for n, p in view["providers"].items():
        t.add_row(f"provider {n}", f"{p['kind']} {p['base_url']}".strip())
    t.add_row("home", view["home"])
    out = console()
    out.print(t)
    render_posture(out, posture)
    where = f"database {cfg.db_path}" if posture["source"] == "database" else "the running server"
    out.print(f"[dim]posture source: {where}[/]", highlight=False)
    if note:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
