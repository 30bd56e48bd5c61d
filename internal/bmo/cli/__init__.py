"""The command line (layer 6): the only package that imports typer and rich.

One file per command group (`commands.py` assembles them). Imports of the server stack happen inside
the commands that need them, and `bmo version` answers before typer is even imported: every
command of a one-file binary pays for what it imports, on every start.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    if sys.argv[1:] in (["version"], ["--version"]):
        from bmo import __version__

        print(f"bmo {__version__} (python {sys.version.split()[0]})")
        return
    from bmo.cli.commands import app

    app()


def __getattr__(name: str) -> Any:
    if name == "app":  # `from bmo.cli import app` (tests, tools) gets the Typer app
        from bmo.cli.commands import app

        return app
    raise AttributeError(name)
