"""`bmo runs list|show|events|tail` and `bmo posture`: the run ledger and the live posture.

Runs are read from the database directly (WAL makes that safe beside a running server, whose
writer is at most ~50 ms behind), so they work with or without a server and need no key; every
table says where it read from. Posture is the running server's (it alone knows what is in flight
and whether its writes fail), found as `bmo.cli.remote` says: when no server answers, posture
says `down`, shows the database's figures for the last hour, and exits 3 — never a healthy state
read from the database. A server that refuses the key is an error (exit 1), not a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.text import Text

from bmo.cli.common import (
    HomeOption,
    JsonOption,
    KeyOption,
    WideOption,
    config_or_exit,
    console,
    fail,
    print_json,
    with_db,
)
from bmo.cli.remote import Target, UrlOption, error_message, find_server, get
from bmo.cli.tables import (
    Col,
    fit,
    local_time,
    ms,
    one_line,
    outcome_style,
    render,
    render_pairs,
    short_route,
    short_time,
    state_style,
    time_header,
)
from bmo.config import Config, as_dict

app = typer.Typer(help="The run ledger: every request on a compat route.", no_args_is_help=True)
DOWN = 3

LimitOption = typer.Option(20, "--limit", min=1, max=500, help="How many runs, newest first.")
RouteOption = typer.Option(None, "--route", help="Only this route, e.g. /v1/chat/completions.")
StatusOption = typer.Option(None, "--status", help="Only this HTTP status.")
AgentOption = typer.Option(None, "--agent", help="Only this agent.")
OutcomeOption = typer.Option(None, "--outcome", help="Only this outcome: ok, client_error, upstream_error, …")
ClientOption = typer.Option(None, "--client", help="Only this client: claude-code, open-webui, openai-python, …")
UaOption = typer.Option(None, "--ua", help="Only user-agents containing this text (any case).")


def _source_line(out: Console, cfg: Config) -> None:
    out.print(Text(f"source: {_where(cfg)}", style="dim"), soft_wrap=True)


def _where(cfg: Config) -> str:
    """The store, for messages: bmo.db's path, or the PostgreSQL URL without its password."""
    return f"database {cfg.db_path}" if not cfg.store.url else f"database {as_dict(cfg)['store']['url']}"


# ---- the run table, shared by runs list, runs tail and posture's recent runs ----------------


def run_columns(stamps: list[Any]) -> list[Col]:
    return [
        Col(time_header("started", stamps), 1, shorten=short_time),
        Col("request_id", keep=True),
        Col("status", 1, justify="right"),
        Col("outcome", 1, style=outcome_style),
        Col("route", 2, min=8, shorten=short_route),
        Col("error", 2),
        Col("agent", 3),
        Col("client", 3),
        Col("ms", 4, justify="right"),
        Col("ttfb", 5, justify="right"),
        Col("tokens", 5, justify="right"),
        Col("stream", 6),
        Col("user-agent", 7, min=12),
    ]


def run_cells(r: dict[str, Any], stamps: list[Any]) -> list[str]:
    return [
        local_time(r["started_at"], stamps),
        r["request_id"],
        str(r["status"]),
        r["outcome"],
        r["route"],
        r.get("error_code") or "-",
        r.get("agent") or "-",
        r.get("client") or "-",
        ms(r.get("duration_ms")),
        ms(r.get("ttfb_ms")),
        f"{r.get('prompt_tokens', 0)}/{r.get('completion_tokens', 0)}",
        "yes" if r.get("stream") else "no",
        r.get("client_ua") or "-",
    ]


def render_runs(out: Console, runs: list[dict[str, Any]], *, wide: bool, title: str, empty: str) -> None:
    stamps = [r["started_at"] for r in runs]
    render(out, run_columns(stamps), [run_cells(r, stamps) for r in runs], wide=wide, title=title, empty=empty)


@app.command("list")
def runs_list(
    limit: int = LimitOption,
    route: str = RouteOption,
    status: int = StatusOption,
    agent: str = AgentOption,
    outcome: str = OutcomeOption,
    client: str = ClientOption,
    ua: str = UaOption,
    home: Path = HomeOption,
    as_json: bool = JsonOption,
    wide: bool = WideOption,
) -> None:
    """Recent runs, newest first (from the database)."""
    from bmo.store.ledger import list_runs

    cfg = config_or_exit(home, write_default=False)

    async def q(db: Any) -> list[Any]:
        if db is None:
            return []
        records, _ = await list_runs(
            db, limit=limit, route=route, status=status, agent=agent, outcome=outcome, client=client, ua=ua
        )
        return records

    runs = [r.to_json() for r in with_db(cfg, q)]
    if as_json:
        print_json({"object": "list", "data": runs})
        return
    out = console()
    render_runs(out, runs, wide=wide, title=f"runs, newest first ({len(runs)})", empty="No runs (yet).")
    _source_line(out, cfg)


def _one(cfg: Config, request_id: str) -> Any:
    from bmo.store.ledger import get_run

    async def q(db: Any) -> Any:
        return None if db is None else await get_run(db, request_id)

    record = with_db(cfg, q)
    if record is None:
        fail(f"no run with request id {request_id!r} in {_where(cfg)}")
    return record


@app.command("show")
def runs_show(request_id: str, home: Path = HomeOption, as_json: bool = JsonOption) -> None:
    """One run, every field."""
    cfg = config_or_exit(home, write_default=False)
    record = _one(cfg, request_id)
    data = record.to_json()
    if record.content is not None:
        data["content"] = record.content
    if as_json:
        print_json(data)
        return
    out = console()
    pairs = []
    for k, v in data.items():
        if k == "started_at":
            pairs.append((time_header("started_at", [v]), local_time(v)))
        elif k == "content":
            pairs.append((k, orjson.dumps(v).decode()))
        else:
            pairs.append((k, "-" if v is None else str(v)))
    render_pairs(out, pairs, title=f"run {request_id}")
    _source_line(out, cfg)


@app.command("events")
def runs_events(request_id: str, home: Path = HomeOption, as_json: bool = JsonOption, wide: bool = WideOption) -> None:
    """One run's events, in order."""
    cfg = config_or_exit(home, write_default=False)
    record = _one(cfg, request_id)
    events = [e.to_json() for e in record.events]
    if as_json:
        print_json({"object": "list", "request_id": request_id, "data": events})
        return
    out = console()
    cols = [Col("#", 0, justify="right"), Col("event", 0), Col("t (ms)", 0, justify="right"), Col("detail", 1, min=12)]
    rows = [
        [str(i), e["name"], f"{e['t_ms']:.2f}", "" if e["detail"] is None else orjson.dumps(e["detail"]).decode()]
        for i, e in enumerate(events)
    ]
    render(out, cols, rows, wide=wide, title=f"events of {request_id}")
    _source_line(out, cfg)


@app.command("tail")
def runs_tail(
    limit: int = typer.Option(10, "--limit", min=0, max=500, help="How many recent runs to show first."),
    route: str = RouteOption,
    status: int = StatusOption,
    agent: str = AgentOption,
    outcome: str = OutcomeOption,
    client: str = ClientOption,
    ua: str = UaOption,
    count: int = typer.Option(
        None, "--count", min=1, help="Stop after this many new runs (default: follow until Ctrl-C).",
        show_default=False,
    ),
    interval: float = typer.Option(0.5, "--interval", min=0.05, help="Seconds between looks at the ledger."),
    home: Path = HomeOption,
    as_json: bool = typer.Option(False, "--json", help="One JSON object a line (JSON Lines) instead of a table."),
    wide: bool = WideOption,
) -> None:  # fmt: skip
    """Follow new runs as they are written, like `tail -f` (same filters as `runs list`, plus --ua)."""
    from bmo.store.db import open_database
    from bmo.store.ledger import last_written, list_runs, runs_written_after

    cfg = config_or_exit(home, write_default=False)
    filters: dict[str, Any] = {
        "route": route, "status": status, "agent": agent, "outcome": outcome, "client": client, "ua": ua,
    }  # fmt: skip
    out = console()
    line = _TailLine(out, wide=wide, as_json=as_json)

    async def go() -> None:
        while not cfg.store.url and not cfg.db_path.exists():  # noqa: ASYNC110 - a file, not an event: wait for a server to make it
            await asyncio.sleep(interval)
        async with open_database(cfg.store_target, pool_size=1) as db:
            pos = await last_written(db)
            if limit:
                backlog, _ = await list_runs(db, limit=limit, **filters)
            else:
                backlog = []
            seen = {r.request_id for r in backlog}
            for r in reversed(backlog):
                line.emit(r.to_json())
            if not as_json:
                out.print(Text(f"following {_where(cfg)} (Ctrl-C stops)", style="dim"), soft_wrap=True)
            new = 0
            while count is None or new < count:
                await asyncio.sleep(interval)
                records, pos = await runs_written_after(db, pos, **filters)
                for r in records:
                    if r.request_id in seen:
                        continue
                    line.emit(r.to_json())
                    new += 1
                    if count is not None and new >= count:
                        return
                seen.clear()  # the backlog is behind us after one look

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())


class _TailLine:
    """Rows of the run table, one at a time: columns chosen once for the console's width (with
    room for every outcome and a long route), so that every line lines up with the header."""

    def __init__(self, out: Console, *, wide: bool, as_json: bool) -> None:
        self.out = out
        self.as_json = as_json
        now = time.time()
        self.cols = run_columns([now])
        sample = ["2000-01-01 00:00:00", "req_" + "0" * 24, "200", "upstream_error", "/v1/chat/completions",
                  "model_not_found", "researcher", "openai-python", "12345.6", "1234.5", "12345/12345", "yes",
                  "OpenAI/Python 1.99.1"]  # fmt: skip
        self.widths = fit(self.cols, [sample], out.width, wide=wide)
        # a column narrower than the sample's cell shows every cell in its short form, like `render`
        self.short = [w is not None and w < len(x) for w, x in zip(self.widths, sample, strict=True)]
        self.header = False

    def emit(self, run: dict[str, Any]) -> None:
        if self.as_json:
            sys.stdout.write(orjson.dumps(run).decode() + "\n")
            sys.stdout.flush()
            return
        if not self.header:
            self.header = True
            self._print([c.header for c in self.cols], bold=True)
        self._print([one_line(c) for c in run_cells(run, [])])

    def _print(self, cells: list[str], bold: bool = False) -> None:
        parts = Text(style="bold" if bold else "")
        first = True
        for c, w, short, cell in zip(self.cols, self.widths, self.short, cells, strict=True):
            if w is None:
                continue
            if short and not bold and c.shorten is not None:
                cell = c.shorten(cell)
            if len(cell) > w and not c.keep:
                cell = cell[: max(0, w - 1)] + "…"
            if not first:
                parts.append("  ")
            first = False
            style = None if bold or c.style is None else c.style(cell)
            parts.append(cell.rjust(w) if c.justify == "right" else cell.ljust(w), style=style or "")
        parts.rstrip()
        self.out.print(parts, soft_wrap=True)
        self.out.file.flush()


# ---- posture ----------------------------------------------------------------------------------


class PostureRefused(Exception):
    """A server answers but will not give its posture (the key, or not a bmo): an error, never a
    reason to fall back to the database."""


def posture_data(cfg: Config, url: str | None, key: str | None) -> tuple[dict[str, Any], Target]:
    """The running server's posture, or (no server answers) the database's window with state
    `down`. Raises PostureRefused when a server answers but refuses."""
    target = find_server(cfg, url)
    a = get(target.url, "/v1/openai-compat/posture", key or None)
    if a.status == 200 and isinstance(a.body, dict):
        return a.body, target
    if a.status in (401, 403):
        what = "refused the key" if key else "needs an API key"
        raise PostureRefused(
            f"the server at {target.url} {what} ({a.status}: {error_message(a)}); posture needs a key with "
            "the ledger scope: --key sk-bmo-… or BMO_API_KEY"
        )
    if a.status != 0:
        raise PostureRefused(f"the server at {target.url} answered HTTP {a.status}: {error_message(a)}")
    return _database_posture(cfg, target, a.error), target


def _database_posture(cfg: Config, target: Target, why: str | None) -> dict[str, Any]:
    from bmo.posture import INFERENCE_ROUTES, WINDOW_MAX, WINDOW_S, Persistence, PostureWindow, build_posture
    from bmo.store.ledger import list_runs

    async def q(db: Any) -> list[Any]:
        if db is None:
            return []
        records, _ = await list_runs(db, limit=WINDOW_MAX, since=time.time() - WINDOW_S)
        return records

    window = PostureWindow()
    window.extend(with_db(cfg, q))
    data = build_posture(
        cfg=cfg, enabled_routes=INFERENCE_ROUTES, window=window, persistence=Persistence(), in_flight=0,
        source="database",
    )  # fmt: skip
    # What only a running server knows is unknown, not "fine": no state but down, no persistence.
    data.update(state="down", persistence=None, in_flight=None, uptime_s=None, started_at=None, mcp_servers=None)
    data["down"] = {"url": target.url, "found_by": target.source, "reason": why}
    return data


def render_posture(out: Console, p: dict[str, Any], *, wide: bool = False) -> None:
    pers = p.get("persistence")
    pairs = [("state", p["state"])]
    if p["state"] == "down":
        d = p.get("down") or {}
        pairs.append(("server", f"none answers at {d.get('url')} ({d.get('reason') or 'no answer'})"))
        pairs.append(("source", "database (the figures below; what only a server knows is unknown)"))
    else:
        pairs.append(("source", "the running server"))
        pairs.append(("version", str(p.get("version"))))
        if p.get("uptime_s") is not None:
            pairs.append(("uptime", f"{p['uptime_s']:g} s"))
    pairs.append(("in flight", "-" if p.get("in_flight") is None else str(p["in_flight"])))
    if pers is None:
        pairs.append(("persistence", "unknown (no server)"))
    else:
        persistence = pers["state"]
        if pers["state"] != "ok":
            persistence += f" ({pers['dropped_rows']} rows dropped; last error: {pers['last_error']})"
        pairs.append(("persistence", persistence))
    pairs.append(("window", f"last {p['window']['seconds']} s, {p['window']['runs']} runs"))
    for w in p.get("workers") or []:  # `bmo serve --workers N`: the figures above are their sum
        restarts = f", restarted {w['restarts']}x" if w["restarts"] else ""
        pairs.append((f"worker {w['slot']}", f"pid {w['pid']}, {w['state']}, {w['in_flight']} in flight{restarts}"))
    title = Text("posture: ", style="bold")
    title.append(p["state"], style=state_style(p["state"]) or "")
    out.print(title)
    render_pairs(out, pairs)
    for key, name in (("by_route", "route"), ("by_outcome", "outcome")):
        cols = [Col(name, 0), Col("count", 0, justify="right"), Col("p50 ms", 0, justify="right"),
                Col("p95 ms", 0, justify="right")]  # fmt: skip
        rows = [[g[name], str(g["count"]), ms(g["p50_ms"]), ms(g["p95_ms"])] for g in p[key]]
        out.print()
        render(out, cols, rows, wide=wide, title=f"by {name}", empty="(no runs in the window)")
    servers = p.get("mcp_servers") or []
    if servers:
        out.print()
        rows = [[m["name"], m["state"], str(m.get("tools", 0)), m.get("last_error") or "-"] for m in servers]
        render(out, [Col("MCP server", keep=True), Col("state", 0, style=state_style),
                     Col("tools", 0, justify="right"), Col("last error", 1, min=16)], rows, wide=wide,
               title="MCP servers")  # fmt: skip
    out.print()
    rows = [[c["client"], str(c["count"])] for c in p.get("top_clients", [])]
    render(out, [Col("client", 0), Col("count", 0, justify="right")], rows, wide=wide, title="top clients",
           empty="(none)")  # fmt: skip
    out.print()
    rows = [[u["client_ua"], str(u["count"])] for u in p["top_user_agents"]]
    render(out, [Col("user-agent", 1, min=20), Col("count", 0, justify="right")], rows, wide=wide,
           title="top user-agents", empty="(none)")  # fmt: skip
    out.print()
    render_runs(out, p["recent_runs"], wide=wide, title="recent runs", empty="(none)")


def posture(
    home: Path = HomeOption,
    url: str = UrlOption,
    key: str = KeyOption,
    as_json: bool = JsonOption,
    wide: bool = WideOption,
) -> None:
    """The live posture: state, persistence, in flight, timings per route and outcome, top clients.
    Exit 0 from a running server, 3 when none answers (state `down`)."""
    cfg = config_or_exit(home, write_default=False)
    try:
        data, _ = posture_data(cfg, url, key)
    except PostureRefused as e:
        fail(str(e), 1)
    if as_json:
        print_json(data)
    else:
        render_posture(console(), data, wide=wide)
    if data["state"] == "down":
        raise typer.Exit(DOWN)
