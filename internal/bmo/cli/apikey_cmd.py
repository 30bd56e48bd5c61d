"""`bmo api-key create|list|revoke` (SPEC §7).

These open `BMO_HOME/bmo.db` directly, so they work whether or not a server runs (WAL lets both
use the file; a running server notices a create or revoke within about a second). They need only
the home folder, not a valid config.yaml: a leaked key can be revoked even while the config is
broken. The secret is printed once, by `create`, and never again by anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import typer

from bmo.cli.common import HomeOption, JsonOption, WideOption, console, fail, print_json
from bmo.cli.tables import Col, local_time, render, short_time, state_style, time_header
from bmo.config import store_target
from bmo.errors import BmoError, InvalidRequest

app = typer.Typer(help="Stored API keys: create, list, revoke.", no_args_is_help=True)

T = TypeVar("T")


def _target(home: Path | None) -> Path | str:
    """The store: bmo.db in the home, or the PostgreSQL database its config's `store.url` names."""
    return store_target(home)


def _exists(target: Path | str) -> bool:
    return not isinstance(target, Path) or target.exists()  # a database server is asked, never skipped


def _with_store(home: Path | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the store, run `work(KeyStore)`, close; a BmoError becomes a message and an exit code."""
    from bmo.store.db import open_database
    from bmo.store.keys import KeyStore

    async def go() -> T:
        async with open_database(_target(home), pool_size=2) as db:
            return await work(KeyStore(db))

    try:
        return asyncio.run(go())
    except BmoError as e:
        fail(e.message, 2 if isinstance(e, InvalidRequest) else 1)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="A name to know the key by (unique among live keys)."),
    scopes: str = typer.Option("chat,ledger", "--scopes", help="Comma-separated: chat, ledger, admin (admin = all)."),
    expires: str | None = typer.Option(
        None, "--expires", help="30d, 12h, 90m, 2w or an ISO date (UTC); default: never.", show_default=False
    ),
    home: Path = HomeOption,
    as_json: bool = typer.Option(False, "--json", help="Print the new key (secret included) as JSON, for scripts."),
) -> None:
    """Create a key and print its secret, once."""
    from bmo.store.keys import parse_expires, parse_name, parse_scopes

    try:
        name = parse_name(name)
        scope_list = parse_scopes(scopes)
        expires_at = parse_expires(expires)
    except InvalidRequest as e:
        fail(e.message, 2)
    new = _with_store(home, lambda ks: ks.create(name, scope_list, expires_at))
    rec = new.record
    if as_json:
        print_json(
            {
                "object": "api_key",
                "name": rec.name,
                "prefix": rec.prefix,
                "scopes": rec.scope_list(),
                "created_at": _iso(rec.created_at),
                "expires_at": _iso(rec.expires_at),
                "secret": new.secret,
            }
        )
        return
    out = console()
    out.print(
        f"Created API key [bold]{rec.name}[/] (prefix {rec.prefix}, scopes {', '.join(rec.scope_list())}, "
        f"expires {local_time(rec.expires_at, empty='never')}{_zone(rec.expires_at)}):",
        highlight=False,
        soft_wrap=True,
    )
    out.print(f"\n    {new.secret}\n", markup=False, highlight=False, soft_wrap=True)
    out.print(
        "Copy it now: it is shown only this once, and bmo keeps only its hash. A running server accepts it at once.",
        highlight=False,
        soft_wrap=True,
    )


@app.command("list")
def list_keys(home: Path = HomeOption, as_json: bool = JsonOption, wide: bool = WideOption) -> None:
    """Every key: name, prefix, scopes, created, last used, expires, state. Never a secret."""
    # Listing must not create a database where none is; no file means no keys.
    records = _with_store(home, lambda ks: ks.list()) if _exists(_target(home)) else []
    data = [
        {
            "object": "api_key",
            "name": r.name,
            "prefix": r.prefix,
            "scopes": r.scope_list(),
            "created_at": _iso(r.created_at),
            "last_used_at": _iso(r.last_used_at),
            "expires_at": _iso(r.expires_at),
            "revoked_at": _iso(r.revoked_at),
            "state": r.state(),
        }
        for r in records
    ]
    if as_json:
        print_json({"object": "list", "data": data})
        return
    out = console()
    if not records:
        out.print("No API keys yet. `bmo api-key create --name NAME` makes one.", highlight=False)
        return
    stamps = [r.created_at for r in records]
    cols = [
        Col("name", keep=True),
        Col("prefix", keep=True),
        Col("state", 0, style=state_style),
        Col("scopes", 1),
        Col(time_header("created", stamps), 2, shorten=short_time),
        Col("last used", 3, shorten=short_time),
        Col("expires", 3, shorten=short_time),
    ]
    rows = [
        [r.name, r.prefix, r.state(), ",".join(r.scope_list()), local_time(r.created_at, stamps),
         local_time(r.last_used_at, empty="never"), local_time(r.expires_at, empty="never")]
        for r in records
    ]  # fmt: skip
    render(out, cols, rows, wide=wide, title=f"API keys ({len(records)}); `bmo api-key revoke NAME|PREFIX`")


def _zone(ts: float | None) -> str:
    from bmo.cli.tables import offset

    return "" if ts is None else f" {offset(ts)}"


@app.command("revoke")
def revoke(
    key: str = typer.Argument(..., metavar="NAME|PREFIX", help="The key's name or its prefix (sk-bmo-…)."),
    home: Path = HomeOption,
) -> None:
    """Revoke a key; a running server refuses it within a second or two."""
    if not _exists(target := _target(home)):
        fail(f"There are no API keys yet (no database at {target}).", 1)
    rec = _with_store(home, lambda ks: ks.revoke(key))
    console().print(
        f"Revoked API key [bold]{rec.name}[/] ({rec.prefix}). A running server refuses it within a second or two.",
        highlight=False,
        soft_wrap=True,
    )
