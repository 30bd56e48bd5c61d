"""What every command shares: the console, loading config, turning errors into exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import orjson
import typer

from bmo.config import Config, load_config
from bmo.errors import BmoError, ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from bmo.runtime import Runtime

HomeOption = typer.Option(None, "--home", help="bmo's folder (default: $BMO_HOME or ~/.bmo)", show_default=False)
JsonOption = typer.Option(False, "--json", help="Print JSON instead of tables.")
WideOption = typer.Option(
    False, "--wide", help="Every column, nothing shortened (lines may be longer than the terminal)."
)
KeyOption = typer.Option(
    None, "--key", envvar="BMO_API_KEY", help="An API key with the ledger scope (default: $BMO_API_KEY).",
    show_default=False,
)  # fmt: skip


def console() -> Console:
    """stdout: the terminal's width in a terminal, else $COLUMNS, else 80 (Rich's default when
    piped); every table is fitted to it (bmo.cli.tables)."""
    from rich.console import Console  # here: `bmo serve` never needs Rich (~25 ms of its start)

    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else None
    return Console(width=width, soft_wrap=False)


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    # soft_wrap: one line however narrow the terminal, so a path or a key in it can be copied whole
    # escaped: a message quotes user text (a glob like `claude-[34]*`), never Rich markup
    from rich.markup import escape

    err_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def config_or_exit(home: Path | None, flags: dict[str, Any] | None = None, *, write_default: bool = True) -> Config:
    try:
        return load_config(home, flags=flags, write_default=write_default)
    except ConfigError as e:
        fail(f"bad configuration: {e}", 2)


def build_runtime(cfg: Config) -> Runtime:
    """What `bmo serve` builds before it opens anything, so `bmo config validate` accepts exactly
    the configs serve starts on: the agents (incl. `model_aliases`) and the provider registry's
    kinds. Raises ConfigError."""
    import bmo.providers
    from bmo.runtime import Runtime

    kinds = getattr(bmo.providers, "KINDS", None)
    for name, pc in cfg.providers.items():
        if kinds is not None and pc.kind not in kinds:
            raise ConfigError(
                str(cfg.config_file),
                cfg.where(f"providers.{name}.kind"),
                f"provider kind {pc.kind!r} is not available in this build (available: {', '.join(kinds)})",
            )
    return Runtime(cfg)


def print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


def with_db(cfg: Config, fn: Any) -> Any:
    """Run `await fn(db)` on the home's database, or `await fn(None)` when there is none yet:
    reading commands must not create the file. A store error becomes a message and exit 1."""
    import asyncio

    from bmo.store.db import open_database

    async def go() -> Any:
        if not cfg.store.url and not cfg.db_path.exists():
            return await fn(None)
        async with open_database(cfg.store_target, pool_size=cfg.store.pool_size) as db:
            return await fn(db)

    try:
        return asyncio.run(go())
    except BmoError as e:
        fail(e.message)
