"""`bmo sessions list|show|delete`: the conversations bmo keeps for clients."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from bmo.cli.common import HomeOption, JsonOption, config_or_exit, console, fail, print_json, with_db

app = typer.Typer(help="Server-side sessions (X-BMO-Session, Open WebUI chat ids).", no_args_is_help=True)


def _with_store(home: Path | None, fn: Any) -> Any:
    from bmo.store.sessions import SessionStore

    cfg = config_or_exit(home, write_default=False)
    return with_db(cfg, lambda db: fn(None if db is None else SessionStore(db)))


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@app.command("list")
def list_sessions(
    limit: int = typer.Option(100, "--limit", min=1, max=10000, help="How many, most recently used first."),
    home: Path = HomeOption,
    as_json: bool = JsonOption,
) -> None:
    """Sessions, most recently used first."""

    async def q(store: Any) -> list[Any]:
        return [] if store is None else await store.list(limit)

    sessions = _with_store(home, q)
    if as_json:
        print_json([s.to_json() for s in sessions])
        return
    t = Table(title=f"sessions ({len(sessions)})")
    for c in ("id", "name", "agent", "owner", "turns", "created", "last used"):
        t.add_column(c, no_wrap=c in ("id", "created", "last used"), overflow="fold")
    for s in sessions:
        t.add_row(s.id, s.name, s.agent, s.owner, str(s.turns), _when(s.created_at), _when(s.updated_at))
    console().print(t)


def _get(home: Path | None, ref: str) -> Any:
    async def q(store: Any) -> Any:
        return None if store is None else await store.get(ref)

    s = _with_store(home, q)
    if s is None:
        fail(f"no session {ref!r} (give its id, or a name only one API key uses)")
    return s


@app.command("show")
def show(ref: str, home: Path = HomeOption, as_json: bool = JsonOption) -> None:
    """One session and its transcript (REF: the id, or the name)."""
    s = _get(home, ref)
    data = s.to_json(with_messages=True)
    if as_json:
        print_json(data)
        return
    out = console()
    out.print(f"[bold]{s.id}[/] {s.name!r} agent {s.agent}, owner {s.owner}, {s.turns} turns", highlight=False)
    t = Table()
    t.add_column("#", justify="right")
    t.add_column("role")
    t.add_column("content", overflow="fold")
    for i, m in enumerate(data["messages"]):
        content = m["content"] if isinstance(m["content"], str) else ("" if m["content"] is None else "[parts]")
        if m.get("tool_calls"):
            content += " " + ", ".join(f"{c['name']}({c['arguments']})" for c in m["tool_calls"])
        t.add_row(str(i), m["role"], content)
    out.print(t)


@app.command("delete")
def delete(ref: str, home: Path = HomeOption) -> None:
    """Forget a session and its transcript (REF: the id, or the name)."""
    s = _get(home, ref)

    async def q(store: Any) -> bool:
        return bool(await store.delete(s.id))

    _with_store(home, q)
    console().print(f"deleted session {s.id} ({s.name!r}, {s.turns} turns)", highlight=False)
