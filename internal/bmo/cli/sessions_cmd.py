"""`bmo sessions list|show|delete`: the conversations bmo keeps for clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from bmo.cli.common import HomeOption, JsonOption, WideOption, config_or_exit, console, fail, print_json, with_db
from bmo.cli.tables import Col, local_time, render, short_time, time_header
from bmo.runs import iso_utc

app = typer.Typer(help="Server-side sessions (X-BMO-Session, Open WebUI chat ids).", no_args_is_help=True)


def _with_store(home: Path | None, fn: Any) -> Any:
    from bmo.store.sessions import SessionStore

    cfg = config_or_exit(home, write_default=False)
    return with_db(cfg, lambda db: fn(None if db is None else SessionStore(db)))


def _json(s: Any, *, with_messages: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {"object": "session", **s.to_json(with_messages=with_messages)}
    d["created_at"] = iso_utc(s.created_at)
    d["updated_at"] = iso_utc(s.updated_at)
    return d


@app.command("list")
def list_sessions(
    limit: int = typer.Option(100, "--limit", min=1, max=10000, help="How many, most recently used first."),
    home: Path = HomeOption,
    as_json: bool = JsonOption,
    wide: bool = WideOption,
) -> None:
    """Sessions, most recently used first."""

    async def q(store: Any) -> list[Any]:
        return [] if store is None else await store.list(limit)

    sessions = _with_store(home, q)
    if as_json:
        print_json({"object": "list", "data": [_json(s) for s in sessions]})
        return
    stamps = [s.updated_at for s in sessions]
    cols = [
        Col("id", keep=True),
        Col("name", 2, min=12),
        Col("agent", 1),
        Col("owner", 2),
        Col("turns", 2, justify="right"),
        Col(time_header("last used", stamps), 1, shorten=short_time),
        Col("created", 3, shorten=short_time),
    ]
    rows = [
        [s.id, s.name, s.agent, s.owner, str(s.turns), local_time(s.updated_at, stamps), local_time(s.created_at)]
        for s in sessions
    ]
    render(console(), cols, rows, wide=wide, title=f"sessions ({len(sessions)}), most recently used first",
           empty="No sessions yet.")  # fmt: skip


def _get(home: Path | None, ref: str) -> Any:
    async def q(store: Any) -> Any:
        return None if store is None else await store.get(ref)

    s = _with_store(home, q)
    if s is None:
        fail(f"no session {ref!r} (give its id, or a name only one API key uses)")
    return s


@app.command("show")
def show(ref: str, home: Path = HomeOption, as_json: bool = JsonOption, wide: bool = WideOption) -> None:
    """One session and its transcript (REF: the id, or the name)."""
    s = _get(home, ref)
    data = _json(s, with_messages=True)
    if as_json:
        print_json(data)
        return
    out = console()
    head = f"{s.id} {s.name!r} agent {s.agent}, owner {s.owner}, {s.turns} turns"
    out.print(Text(head, style="bold"), soft_wrap=True)
    rows = []
    for i, m in enumerate(data["messages"]):
        content = m["content"] if isinstance(m["content"], str) else ("" if m["content"] is None else "[parts]")
        if m.get("tool_calls"):
            content += " " + ", ".join(f"{c['name']}({c['arguments']})" for c in m["tool_calls"])
        rows.append([str(i), m["role"], " ".join(content.split())])
    render(out, [Col("#", 0, justify="right"), Col("role", 0), Col("content", 1, min=20)], rows, wide=wide)


@app.command("delete")
def delete(ref: str, home: Path = HomeOption) -> None:
    """Forget a session and its transcript (REF: the id, or the name)."""
    s = _get(home, ref)

    async def q(store: Any) -> bool:
        return bool(await store.delete(s.id))

    _with_store(home, q)
    console().print(f"deleted session {s.id} ({s.name!r}, {s.turns} turns)", highlight=False)
