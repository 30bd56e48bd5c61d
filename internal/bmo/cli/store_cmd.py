"""`bmo store migrate --to postgresql://…`: copy a home's SQLite store into PostgreSQL.

What it copies and how (idempotent, paged, keys by hash) is bmo.store.copy's; this file opens
both stores, draws a progress bar per table and prints what it copied.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from bmo.cli.common import HomeOption, JsonOption, console, fail, print_json
from bmo.errors import BmoError

app = typer.Typer(help="The store: copy a home's SQLite store into PostgreSQL.", no_args_is_help=True)


@app.command("migrate")
def migrate(
    to: str = typer.Option(..., "--to", help="The PostgreSQL URL to copy into: postgresql://user:pw@host:5432/db."),
    home: Path = HomeOption,
    as_json: bool = JsonOption,
) -> None:
    """Copy this home's bmo.db (keys, sessions, responses, runs with events) into PostgreSQL;
    safe to run again (copies only what is missing). Then set store.url to that URL."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from bmo.config import default_home
    from bmo.store.backend import is_url, open_store, redacted
    from bmo.store.copy import copy_store

    if not is_url(to):
        fail(f"--to takes a postgresql:// URL; got {to!r}.", 2)
    src_path = (home or default_home()).expanduser() / "bmo.db"
    if not src_path.exists():
        fail(f"There is nothing to copy: no database at {src_path}.", 1)
    out = console()

    async def go(bars: Any) -> Any:
        tasks: dict[str, Any] = {}

        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bars.add_task(table, total=max(total, 1))
            bars.update(tasks[table], completed=done if total else 1)

        async with open_store(src_path) as src, open_store(to, pool_size=2) as dst:
            return await copy_store(src, dst, progress)

    bars = Progress(
        TextColumn("{task.description:<17}"), BarColumn(), MofNCompleteColumn(), console=out, disable=as_json
    )
    try:
        with bars:
            result = asyncio.run(go(bars))
    except BmoError as e:
        fail(e.message, 1)
    if as_json:
        print_json({"object": "store.migration", "to": redacted(to),
                    "tables": [{"table": c.table, "source": c.source, "copied": c.copied, "skipped": c.skipped}
                               for c in result]})  # fmt: skip
        return
    out.print(f"Copied {src_path} into {redacted(to)}:", highlight=False, soft_wrap=True)
    for c in result:
        note = f" ({c.skipped} already there)" if c.skipped else ""
        out.print(f"  {c.table:<17} {c.copied:>8} copied of {c.source}{note}", highlight=False)
    out.print(f"Now set `store: {{url: {redacted(to)}}}` (or BMO_STORE_URL) and restart bmo.", highlight=False,
              soft_wrap=True)  # fmt: skip
