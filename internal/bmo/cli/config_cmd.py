"""`bmo config validate` and `bmo config show-openai-compat`.

`show-openai-compat` is the one page an operator needs: where bmo listens and the base URL a
client uses, how it authenticates, every setting with its value and where that value came from
(default, the file and its line, an environment variable, a flag), the agents a client can name
and the upstream route each one runs on (with the `model_aliases` that reach it), and the live
posture (`down` when no server answers; see bmo.cli.ledger_cmd).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from bmo.cli.common import (
    HomeOption,
    JsonOption,
    KeyOption,
    WideOption,
    build_runtime,
    config_or_exit,
    console,
    fail,
    print_json,
    with_db,
)
from bmo.cli.ledger_cmd import PostureRefused, posture_data, render_posture
from bmo.cli.remote import UrlOption, config_url
from bmo.cli.tables import Col, number, render, render_pairs
from bmo.config import _SECTIONS, _TOP_SCALARS, Config, as_dict
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


def settings(cfg: Config) -> list[dict[str, Any]]:
    """Every scalar setting: key, value, and its source (`default`, `file (line N)`, `env NAME`,
    `flag --name`)."""
    out: list[dict[str, Any]] = []
    keys = [(s, f.name) for s, cls in _SECTIONS.items() for f in dataclasses.fields(cls)]
    keys += [("", k) for k in _TOP_SCALARS]
    for section, name in keys:
        dotted = f"{section}.{name}" if section else name
        value = getattr(getattr(cfg, section) if section else cfg, name)
        if dotted == "store.url":
            value = as_dict(cfg)["store"]["url"]  # never a password
        out.append({"key": dotted, "value": value, "source": _source(cfg, dotted)})
    for glob, target in cfg.model_aliases.items():  # in the file's order: the first match wins
        dotted = f"model_aliases.{glob}"
        out.append({"key": dotted, "value": target, "source": f"file (line {cfg.lines[dotted]})"
                    if dotted in cfg.lines else "file"})  # fmt: skip
    return out


def _source(cfg: Config, dotted: str) -> str:
    src = cfg.sources.get(dotted)
    if src == "file":
        return f"file (line {cfg.lines[dotted]})" if dotted in cfg.lines else "file"
    return src or "default"


def _providers(cfg: Config) -> list[dict[str, Any]]:
    out = []
    for name, p in cfg.providers.items():
        key = f"providers.{name}"
        if key in cfg.lines:
            src = f"file (line {cfg.lines[key]})"
        elif name == "local":
            src = "default"
        else:
            src = "env OPENAI_API_KEY/OPENAI_BASE_URL"
        out.append({"name": name, "kind": p.kind, "base_url": p.base_url or None, "api_key_env": p.api_key_env,
                    "source": src})  # fmt: skip
    return out


def _agents(cfg: Config) -> list[dict[str, Any]]:
    runtime = build_runtime(cfg)
    out = []
    for a in sorted(runtime.agents.agents.values(), key=lambda a: a.id):
        p = cfg.providers.get(a.provider)
        out.append(
            {
                "id": a.id,
                "default": a.id == cfg.default_agent,
                "route": a.model,
                "provider_kind": p.kind if p else None,
                "upstream": (p.base_url or None) if p else None,
                "tools": list(a.tools),
                "aliases": [g for g, t in cfg.model_aliases.items() if t == a.id],
                "source": a.source,
            }
        )
    return out


def _auth(cfg: Config) -> dict[str, Any]:
    async def q(db: Any) -> int:
        if db is None:
            return 0
        from bmo.store.keys import KeyStore

        return sum(1 for r in await KeyStore(db).list() if r.state() == "active")

    return {
        "mode": cfg.auth.mode,
        "active_stored_keys": with_db(cfg, q) if cfg.auth.mode == "keys" else None,
        "env_key": bool(os.environ.get("BMO_API_KEY")),
    }


@app.command("show-openai-compat")
def show_openai_compat(
    home: Path = HomeOption,
    url: str = UrlOption,
    key: str = KeyOption,
    as_json: bool = JsonOption,
    wide: bool = WideOption,
) -> None:
    """The one page: bind, client base URL, auth, every setting and its source, agents and their
    routes, and the live posture."""
    cfg = config_or_exit(home, write_default=False)
    try:
        agents = _agents(cfg)
    except ConfigError as e:
        fail(f"bad configuration: {e}", 2)
    refused = None
    try:
        posture, target = posture_data(cfg, url, key)
    except PostureRefused as e:
        posture, target, refused = None, None, str(e)
    base = (target.url if target is not None and target.source != "config" else config_url(cfg)) + "/v1"
    exists = bool(cfg.config_file and cfg.config_file.exists())
    bind = f"{cfg.server.host}:{cfg.server.port}"
    if target is not None and target.info is not None:  # the running server's, which flags may have moved
        bind = str(target.info.get("bind") or bind)
    view: dict[str, Any] = {
        "object": "openai_compat.config",
        "bind": bind,
        "base_url": base,
        "auth": _auth(cfg),
        "home": str(cfg.home),
        "config_file": str(cfg.config_file) if exists else None,
        "settings": settings(cfg),
        "providers": _providers(cfg),
        "model_aliases": dict(cfg.model_aliases),
        "agents": agents,
        "posture": posture if posture is not None else {"state": "unknown", "error": refused},
    }
    if as_json:
        print_json(view)
    else:
        _render(view, cfg, wide=wide)
    if refused:
        fail(refused, 1)


def _render(v: dict[str, Any], cfg: Config, *, wide: bool) -> None:
    out = console()
    auth = v["auth"]
    if auth["mode"] == "none":
        how = "none: any key or none is accepted (loopback only)"
    else:
        how = f"API key required ({auth['active_stored_keys']} active stored key(s)"
        how += "; BMO_API_KEY set)" if auth["env_key"] else ")"
        how += ": Authorization: Bearer sk-bmo-… or X-Api-Key"
    render_pairs(
        out,
        [
            ("bind", v["bind"]),
            ("base URL", f"{v['base_url']}  (what a client is given; the Anthropic SDKs take it without /v1)"),
            ("auth", how),
            ("home", v["home"]),
            ("config file", v["config_file"] or f"none ({cfg.home / 'config.yaml'} does not exist: all defaults)"),
        ],
        title="bmo, as a client sees it",
    )
    out.print()
    rows = [[s["key"], number(s["value"]), s["source"]] for s in v["settings"]]
    render(out, [Col("setting", keep=True), Col("value", 1, min=12), Col("source", 2, min=8)], rows, wide=wide,
           title="settings (default < file < environment < flags)")  # fmt: skip
    out.print()
    rows = [[p["name"], p["kind"], p["base_url"] or "-", p["api_key_env"] or "-", p["source"]] for p in v["providers"]]
    render(out, [Col("provider", keep=True), Col("kind", 1), Col("base_url", 2, min=16), Col("key from", 3),
                 Col("source", 4, min=8)], rows, wide=wide, title="providers")  # fmt: skip
    out.print()
    rows = [
        [a["id"] + (" (default)" if a["default"] else ""), a["route"], ", ".join(a["aliases"]) or "-",
         ", ".join(a["tools"]) or "-", a["source"]]
        for a in v["agents"]
    ]  # fmt: skip
    render(out, [Col("agent (model id)", keep=True), Col("route", 0), Col("aliases", 1, min=10),
                 Col("tools", 2, min=10), Col("source", 3, min=10)], rows, wide=wide,
           title="agents: what a client names as `model`, and the upstream route each runs on")  # fmt: skip
    if len(v["model_aliases"]) > 1:
        order = ", ".join(f"{g} -> {a}" for g, a in v["model_aliases"].items())
        out.print(Text(f"model_aliases, tried in this order: {order}"), soft_wrap=True)
    out.print()
    p = v["posture"]
    if p.get("state") == "unknown":
        out.print(Text(f"posture: unknown ({p.get('error')})", style="yellow"), soft_wrap=True)
        return
    render_posture(out, p, wide=wide)
