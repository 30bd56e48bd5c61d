"""The Typer app: every command group in one place (see the package docstring)."""

from __future__ import annotations

import typer

from bmo.cli import (
    agents_cmd,
    apikey_cmd,
    config_cmd,
    ledger_cmd,
    responses_cmd,
    serve_cmd,
    sessions_cmd,
    status_cmd,
    store_cmd,
    tools_cmd,
)

app = typer.Typer(
    name="bmo",
    help="bmo: a headless agent hub behind the OpenAI-compatible API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help and usage errors: see below
)
app.command("serve")(serve_cmd.serve)
app.command("version")(serve_cmd.version)
app.command("status")(status_cmd.status)
app.command("stop")(status_cmd.stop)
app.add_typer(config_cmd.app, name="config")
app.add_typer(agents_cmd.app, name="agents")
app.add_typer(tools_cmd.app, name="tools")
app.add_typer(apikey_cmd.app, name="api-key")
app.add_typer(ledger_cmd.app, name="runs")
app.command("posture")(ledger_cmd.posture)
app.add_typer(sessions_cmd.app, name="sessions")
app.add_typer(responses_cmd.app, name="responses")
app.add_typer(store_cmd.app, name="store")

# Help and usage errors in plain text, for every group: Typer's Rich formatting imports
# rich.markdown and rich.traceback, and with them markdown-it and pygments (~2 MB of the binary,
# and time on every error); bmo's own output still uses Rich (bmo.cli.tables).
for _group in (app, config_cmd.app, agents_cmd.app, apikey_cmd.app, ledger_cmd.app, sessions_cmd.app,
               responses_cmd.app, tools_cmd.app, store_cmd.app):  # fmt: skip
    _group.rich_markup_mode = None
