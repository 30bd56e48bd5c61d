"""`bmo responses list|show`: the Responses objects bmo keeps for `previous_response_id` and
GET /v1/responses/{id} (read from the database; every API key's)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from bmo.cli.common import HomeOption, JsonOption, config_or_exit, console, fail, print_json, with_db

app = typer.Typer(help="Stored Responses objects (POST /v1/responses with store: true).", no_args_is_help=True)


def _with_store(home: Path | None, fn: Any) -> Any:
    from bmo.store.responses import ResponseStore

    cfg = config_or_exit(home, write_default=False)
    return with_db(cfg, lambda db: fn(None if db is None else ResponseStore(db)))


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(ts))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _summary(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "object": "response",
        "agent": r.agent,
        "owner": r.owner,
        "previous_response_id": r.previous_id,
        "status": r.body.get("status"),
        "created_at": _iso(r.created_at),
        "output_text": r.body.get("output_text") or (r.output.text() if r.output else ""),
    }


@app.command("list")
def list_responses(
    limit: int = typer.Option(50, "--limit", min=1, max=10000, help="How many, newest first."),
    home: Path = HomeOption,
    as_json: bool = JsonOption,
) -> None:
    """Stored responses, newest first."""

    async def q(store: Any) -> list[Any]:
        return [] if store is None else await store.list(limit)

    found = _with_store(home, q)
    if as_json:
        print_json({"object": "list", "data": [_summary(r) for r in found]})
        return
    t = Table(title=f"responses ({len(found)})")
    for c in ("id", "agent", "status", "continues", "created", "answer"):
        t.add_column(
            c, no_wrap=c in ("id", "continues", "created"), overflow="fold", ratio=1 if c == "answer" else None
        )
    for r in found:
        s = _summary(r)
        answer = s["output_text"] if len(s["output_text"]) <= 60 else s["output_text"][:59] + "…"
        t.add_row(r.id, r.agent, str(s["status"]), r.previous_id or "", _when(r.created_at), answer)
    console().print(t)


@app.command("show")
def show(rid: str, home: Path = HomeOption, as_json: bool = JsonOption) -> None:
    """One stored response: the object as the client got it, and the turns it added."""

    async def q(store: Any) -> Any:
        return None if store is None else await store.get(rid, None)

    r = _with_store(home, q)
    if r is None:
        fail(f"no stored response {rid!r} (it may be older than responses.retention_days, or stored with store: false)")
    if as_json:
        print_json(r.body)
        return
    s = _summary(r)
    out = console()
    out.print(
        f"[bold]{r.id}[/] agent {r.agent}, owner {r.owner}, {s['status']}, {_when(r.created_at)}"
        + (f", continues {r.previous_id}" if r.previous_id else ""),
        highlight=False,
    )
    t = Table()
    t.add_column("role")
    t.add_column("content", overflow="fold")
    for m in [*r.input, r.output]:
        text = m.text()
        if m.tool_calls:
            text += " " + ", ".join(f"{c.name}({c.arguments})" for c in m.tool_calls)
        t.add_row(m.role if m.role != "tool" else f"tool {m.tool_call_id}", text)
    out.print(t)
