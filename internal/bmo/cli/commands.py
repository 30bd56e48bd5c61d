"""The Typer app: every command group in one place (see the package docstring)."""

from __future__ import annotations

import typer

from bmo.cli import agents_cmd, apikey_cmd, config_cmd, ledger_cmd, serve_cmd, sessions_cmd

app = typer.Typer(
    name="bmo",
    help="bmo: a headless agent hub behind the OpenAI-compatible API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve_cmd.serve)
app.command("version")(serve_cmd.version)
app.add_typer(config_cmd.app, name="config")
app.add_typer(agents_cmd.app, name="agents")
app.add_typer(apikey_cmd.app, name="api-key")
app.add_typer(ledger_cmd.app, name="runs")
app.command("posture")(ledger_cmd.posture)
app.add_typer(sessions_cmd.app, name="sessions")
