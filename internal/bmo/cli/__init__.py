"""The command line (layer 6): the only package that imports typer and rich.

One file per command group (`commands.py` assembles them). Imports of the server stack happen inside
the commands that need them, `bmo version` answers before typer is even imported, and `bmo serve`
skips the other command groups: every command pays for what it imports, on every start, and a
server's start-up is what a user waits for before the first request.
"""

from __future__ import annotations

import gc
import sys
from typing import Any


def main() -> None:
    # Start-up builds objects that live as long as the process (modules, classes, the app): the
    # collector, run every 700 allocations meanwhile, finds nothing to free and costs ~5 % of a
    # start. It is back on before a command runs; `bmo serve` turns it on once the server
    # answers (after bmo.server.serve.settle_gc).
    gc.disable()
    args = sys.argv[1:]
    if args in (["version"], ["--version"]):
        from bmo import __version__

        print(f"bmo {__version__} (python {sys.version.split()[0]})")
        return
    if args == ["version", "--json"]:  # the same answer as `bmo version --json` through typer
        import orjson

        sys.stdout.write(orjson.dumps(version_info(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if args[:1] == ["serve"]:
        from bmo.cli.serve_cmd import serve_alone

        serve_alone(args[1:])
        return
    from bmo.cli.commands import app

    gc.enable()
    app()


def version_info() -> dict[str, Any]:
    """`bmo version --json`: what a bug report or an upgrade script needs."""
    import platform

    from bmo import __version__

    return {
        "object": "version",
        "version": __version__,
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine().lower()}",
        "binary": bool(getattr(sys, "frozen", False)),  # the standalone build (PyInstaller)
    }


def __getattr__(name: str) -> Any:
    if name == "app":  # `from bmo.cli import app` (tests, tools) gets the Typer app
        from bmo.cli.commands import app

        return app
    raise AttributeError(name)
