"""`bmo runs list|show|events` and `bmo posture`: the run ledger and the live posture.

Runs are read from the database directly (WAL makes that safe beside a running server, whose
writer is at most ~50 ms behind). Posture prefers the running server — it alone knows what is in
flight and whether its writes are failing — and falls back to the database; every command says
which source it used.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from bmo.cli.common import HomeOption, JsonOption, config_or_exit, console, fail, print_json, with_db
from bmo.config import Config

app = typer.Typer(help="The run ledger: every request on a compat route.", no_args_is_help=True)
KeyOption = typer.Option(None, "--key", help="A key with the ledger scope, to ask a running server (default: "
                         "$BMO_API_KEY).", show_default=False)  # fmt: skip


def _fmt_time(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _source_line(out: Console, source: str, cfg: Config) -> None:
    where = f"database {cfg.db_path}" if source == "database" else f"server {_server_url(cfg)}"
    out.print(f"[dim]source: {where}[/]", highlight=False)


@app.command("list")
def runs_list(
    limit: int = typer.Option(20, "--limit", min=1, max=500, help="How many runs, newest first."),
    route: str = typer.Option(None, "--route", help="Only this route, e.g. /v1/chat/completions."),
    status: int = typer.Option(None, "--status", help="Only this HTTP status."),
    agent: str = typer.Option(None, "--agent", help="Only this agent."),
    home: Path = HomeOption,
    as_json: bool = JsonOption,
) -> None:
    """Recent runs, newest first."""
    from bmo.store.ledger import list_runs

    cfg = config_or_exit(home, write_default=False)

    async def q(db: Any) -> list[Any]:
        if db is None:
            return []
        records, _ = await list_runs(db, limit=limit, route=route, status=status, agent=agent)
        return records

    records = with_db(cfg, q)
    if as_json:
        print_json({"source": "database", "data": [r.to_json() for r in records]})
        return
    out = console()
    t = Table(title=f"runs (newest first, {len(records)})")
    for c in ("started", "request_id", "route", "status", "outcome", "agent", "stream", "ms", "ttfb", "tokens", "UA"):
        t.add_column(c, overflow="fold", no_wrap=c in ("request_id", "started"))
    for r in records:
        t.add_row(
            _fmt_time(r.started_at), r.request_id, r.route, str(r.status), r.outcome, r.agent or "-",
            "yes" if r.stream else "no", _ms(r.duration_ms), _ms(r.ttfb_ms),
            f"{r.prompt_tokens}/{r.completion_tokens}", r.client_ua or "-",
        )  # fmt: skip
    out.print(t)
    _source_line(out, "database", cfg)


def _one(cfg: Config, request_id: str) -> Any:
    from bmo.store.ledger import get_run

    async def q(db: Any) -> Any:
        return None if db is None else await get_run(db, request_id)

    record = with_db(cfg, q)
    if record is None:
        fail(f"no run with request id {request_id!r} in {cfg.db_path}")
    return record


@app.command("show")
def runs_show(request_id: str, home: Path = HomeOption, as_json: bool = JsonOption) -> None:
    """One run, every field."""
    cfg = config_or_exit(home, write_default=False)
    record = _one(cfg, request_id)
    data = record.to_json()
    if as_json:
        print_json(data)
        return
    out = console()
    t = Table(title=f"run {request_id}", show_header=False)
    t.add_column("field")
    t.add_column("value", overflow="fold")
    for k, v in data.items():
        t.add_row(k, _fmt_time(v) if k == "started_at" else ("-" if v is None else str(v)))
    out.print(t)
    _source_line(out, "database", cfg)


@app.command("events")
def runs_events(request_id: str, home: Path = HomeOption, as_json: bool = JsonOption) -> None:
    """One run's events, in order."""
    cfg = config_or_exit(home, write_default=False)
    record = _one(cfg, request_id)
    events = [e.to_json() for e in record.events]
    if as_json:
        print_json({"request_id": request_id, "data": events})
        return
    out = console()
    t = Table(title=f"events of {request_id}")
    t.add_column("#", justify="right")
    t.add_column("event")
    t.add_column("t (ms)", justify="right")
    t.add_column("detail", overflow="fold")
    for i, e in enumerate(events):
        detail = "" if e["detail"] is None else orjson.dumps(e["detail"]).decode()
        t.add_row(str(i), e["name"], f"{e['t_ms']:.2f}", detail)
    out.print(t)
    _source_line(out, "database", cfg)


# ---- posture ----------------------------------------------------------------------------------


def _server_url(cfg: Config) -> str:
    host = cfg.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.server.port}"


def _live_posture(cfg: Config, key: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """(posture, note): the running server's posture, or None and why not."""
    url = _server_url(cfg) + "/v1/openai-compat/posture"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310 - our own loopback server
            return orjson.loads(resp.read()), None
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            return None, f"a server answers at {_server_url(cfg)} but needs a key with the ledger scope (--key)"
        return None, f"the server at {_server_url(cfg)} answered HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError):
        return None, None  # no server running: the database is the source


def posture_data(cfg: Config, key: str | None) -> tuple[dict[str, Any], str | None]:
    live, note = _live_posture(cfg, key)
    if live is not None:
        return live, None
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
    data["in_flight"] = None  # unknown without the server
    return data, note


def render_posture(out: Console, p: dict[str, Any]) -> None:
    state_style = {"ready": "green", "degraded": "yellow", "disabled": "red"}.get(p["state"], "white")
    pers = p["persistence"]
    head = Table(title="posture", show_header=False)
    head.add_column("what")
    head.add_column("value", overflow="fold")
    head.add_row("state", f"[{state_style}]{p['state']}[/]")
    head.add_row("source", p["source"])
    head.add_row("in flight", "-" if p["in_flight"] is None else str(p["in_flight"]))
    persistence = pers["state"]
    if pers["state"] != "ok":
        persistence += f" ({pers['dropped_rows']} rows dropped; last error: {pers['last_error']})"
    head.add_row("persistence", persistence)
    head.add_row("window", f"last {p['window']['seconds']} s, {p['window']['runs']} runs")
    out.print(head)
    for key, name in (("by_route", "route"), ("by_outcome", "outcome")):
        t = Table(title=f"by {name}")
        for c in (name, "count", "p50 ms", "p95 ms"):
            t.add_column(c, justify="right" if c != name else "left")
        for g in p[key]:
            t.add_row(g[name], str(g["count"]), _ms(g["p50_ms"]), _ms(g["p95_ms"]))
        out.print(t)
    t = Table(title="top client user-agents")
    t.add_column("user-agent", overflow="fold")
    t.add_column("count", justify="right")
    for u in p["top_user_agents"]:
        t.add_row(u["client_ua"], str(u["count"]))
    out.print(t)
    t = Table(title="recent runs")
    for c in ("started", "request_id", "route", "status", "outcome", "agent", "ms"):
        t.add_column(c, overflow="fold")
    for r in p["recent_runs"]:
        t.add_row(
            _fmt_time(r["started_at"]), r["request_id"], r["route"], str(r["status"]), r["outcome"],
            r["agent"] or "-", _ms(r["duration_ms"]),
        )  # fmt: skip
    out.print(t)


def posture(home: Path = HomeOption, key: str = KeyOption, as_json: bool = JsonOption) -> None:
    """The live posture: state, persistence, in-flight, per-route and per-outcome timings, top UAs."""
    cfg = config_or_exit(home, write_default=False)
    data, note = posture_data(cfg, key or os.environ.get("BMO_API_KEY"))
    if as_json:
        print_json(data)
        return
    out = console()
    render_posture(out, data)
    _source_line(out, data["source"], cfg)
    if note:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
