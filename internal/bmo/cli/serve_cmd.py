"""`bmo serve` and `bmo version`."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import typer

from bmo import __version__
from bmo.cli.common import HomeOption, config_or_exit, console, fail
from bmo.errors import ConfigError


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d)


def setup_logging(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def serve(
    host: str = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1).", show_default=False),
    port: int = typer.Option(
        None, "--port", help="Port to bind (default 9000; 0 picks a free one).", show_default=False
    ),
    concurrency: int = typer.Option(
        None, "--concurrency", help="Requests running at once (default 64).", show_default=False
    ),
    log_format: str = typer.Option(None, "--log-format", help="text or json", show_default=False),
    home: Path = HomeOption,
) -> None:
    """Start the server."""
    t0 = time.monotonic()
    flags = {
        "server.host": host,
        "server.port": port,
        "openai_compat.concurrency": concurrency,
        "server.log_format": log_format,
    }
    cfg = config_or_exit(home, flags)
    setup_logging(cfg.server.log_format)
    from bmo.runtime import Runtime
    from bmo.server.app import make_app
    from bmo.server.run import run

    env_key = os.environ.get("BMO_API_KEY") or None
    if cfg.auth.mode == "keys" and not env_key and not cfg.is_loopback():
        fail(
            f"refusing to bind {cfg.server.host} with no API key: anyone who can reach it could use it. "
            "Set BMO_API_KEY, or bind 127.0.0.1.",
            2,
        )
    try:
        runtime = Runtime(cfg)
        app = make_app(runtime, env_api_key=env_key)
    except ConfigError as e:
        fail(f"bad configuration: {e}", 2)
    out = console()

    def ready(h: str, p: int) -> None:
        url = f"http://{'[' + h + ']' if ':' in h else h}:{p}"
        out.print(
            f"[bold green]bmo {__version__}[/] serving on [bold]{url}/v1[/] "
            f"(ready in {(time.monotonic() - t0) * 1000:.0f} ms)",
            highlight=False,
        )
        out.print(f"  home     {cfg.home}", highlight=False)
        written = " (written now, with every default)" if cfg.config_written else ""
        out.print(f"  config   {cfg.config_file}{written}", highlight=False)
        out.print(
            f"  agents   {', '.join(runtime.agents.model_ids())}  (default: {cfg.default_agent} on "
            f"{runtime.agents.default.model})",
            highlight=False,
        )
        if env_key:
            auth_line = "API key required (BMO_API_KEY)"
            key_hint = "$BMO_API_KEY"
        elif cfg.auth.mode == "none":
            auth_line = "none (auth.mode: none, loopback only)"
            key_hint = "anything"
        else:
            auth_line = (
                "[bold yellow]OPEN: no API key is configured, so any local process may call this "
                "server. Set BMO_API_KEY to require one.[/]"
            )
            key_hint = "anything"
        out.print(f"  auth     {auth_line}", highlight=False, soft_wrap=True)
        out.print("\n  Point any OpenAI client at it:", highlight=False)
        out.print(
            f'    from openai import OpenAI\n    client = OpenAI(base_url="{url}/v1", api_key="{key_hint}")\n'
            f'    client.chat.completions.create(model="default", messages=[{{"role": "user", '
            f'"content": "hi"}}])',
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        out.print("  Ctrl-C stops it.", highlight=False)

    run(app, cfg.server.host, cfg.server.port, shutdown_grace_s=cfg.server.shutdown_grace_s, on_ready=ready)


def version() -> None:
    """Print the version."""
    typer.echo(f"bmo {__version__} (python {sys.version.split()[0]})")
