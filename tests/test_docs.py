"""README.md documents every setting, its environment variable, and every CLI command
(as datasette's test_docs.py does): a new key or command without docs fails here."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import typer

from bmo.cli import app
from bmo.config import _SECTIONS, _TOP_SCALARS, ENV_VARS, McpServerConfig, TeamConfig

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _settings() -> list[str]:
    keys = [f"{section}.{f.name}" for section, cls in _SECTIONS.items() for f in dataclasses.fields(cls)]
    keys += [f"mcp_servers.NAME.{f.name}" for f in dataclasses.fields(McpServerConfig)]
    keys += [f"teams.NAME.{f.name}" for f in dataclasses.fields(TeamConfig)]
    return keys + list(_TOP_SCALARS)


@pytest.mark.parametrize("key", _settings())
def test_every_setting_is_in_the_readme_table(key: str) -> None:
    assert re.search(rf"^\| `{re.escape(key)}` \|", README, re.M), f"README's configuration table lacks `{key}`"


@pytest.mark.parametrize("var", sorted(ENV_VARS))
def test_every_environment_variable_is_documented(var: str) -> None:
    assert f"`{var}`" in README, f"README does not mention `{var}`"


def _commands(group: Any, prefix: str = "bmo") -> list[str]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if hasattr(cmd, "commands"):  # a group (typer ships its own click)
            out += _commands(cmd, path)
        else:
            out.append(path)
    return out


COMMANDS = _commands(typer.main.get_command(app))


def test_the_cli_has_the_commands_spec_names() -> None:
    for cmd in ("bmo serve", "bmo config show-openai-compat", "bmo config validate", "bmo api-key create",
                "bmo agents list", "bmo runs list", "bmo runs show", "bmo runs events", "bmo runs tail",
                "bmo posture", "bmo status", "bmo stop", "bmo version"):  # fmt: skip
        assert cmd in COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_readme(command: str) -> None:
    assert re.search(rf"^\| `{re.escape(command)}[ `]", README, re.M), f"README's command table lacks `{command}`"


def test_readme_starts_with_the_two_commands() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    assert blocks[0].strip().endswith(".venv/bin/bmo serve")
    assert blocks[1].strip().endswith(".venv/bin/python -m pytest -q")
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest -q" in ci  # CI runs exactly the README's test command


def test_the_readme_links_nothing_outside_the_repository() -> None:
    """A clone has no ../shared/: every link and path the README names is inside the repo."""
    assert "../" not in README, [ln for ln in README.splitlines() if "../" in ln]
    root = Path(__file__).resolve().parents[1]
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in target:
            assert (root / target).exists(), f"README links {target}, which is not in the repository"
    for path in re.findall(r"`((?:scripts|tests|internal|cmd)/[\w./-]+)`", README):
        assert (root / path).exists(), f"README names {path}, which is not in the repository"


def test_the_readme_says_what_clients_need() -> None:
    assert "ENABLE_FORWARD_USER_INFO_HEADERS=true" in README  # Open WebUI sends no chat id without it
    node = README[README.index("Node, the official `openai` SDK") :]
    assert "`hello.mjs`" in node.split("```js", 1)[0]  # `import` needs an ES module
    assert re.search(r"glibc 2\.\d+ or newer", README)


def test_the_systemd_unit_runs_serve_and_lets_it_drain() -> None:
    unit = (Path(__file__).resolve().parents[1] / "scripts" / "bmo.service").read_text()
    keys = dict(ln.split("=", 1) for ln in unit.splitlines() if "=" in ln and not ln.startswith("#"))
    assert keys["ExecStart"].endswith("/bmo serve") and keys["KillSignal"] == "SIGTERM"
    assert int(keys["TimeoutStopSec"]) > 10 + 1  # more than the default shutdown_grace_s and its second
    assert keys["RestartPreventExitStatus"] == "2"  # a bad config is not retried forever
    assert "scripts/bmo.service" in README


def test_the_systemd_unit_is_valid(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze here")
    unit = (Path(__file__).resolve().parents[1] / "scripts" / "bmo.service").read_text()
    (tmp_path / "bmo.service").write_text(unit.replace("%h/.local/bin/bmo", "/bin/true"))
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "bmo.service")], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
