"""`bmo api-key create|list|revoke` through Typer's runner, rendered at a fixed width."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from typer.testing import CliRunner, Result

from bmo.cli import app

SECRET = re.compile(r"sk-bmo-[A-Za-z0-9_-]{43}")
ENV = {"COLUMNS": "120", "BMO_HOME": None}


def cli(home: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["api-key", *args, "--home", str(home)], env=ENV)


def create(home: Path, name: str, *extra: str) -> str:
    r = cli(home, "create", "--name", name, *extra)
    assert r.exit_code == 0, r.output
    secrets = SECRET.findall(r.stdout)
    assert len(secrets) == 1, r.stdout  # printed once, and only once
    return secrets[0]


def listed(home: Path) -> list[dict[str, object]]:
    r = cli(home, "list", "--json")
    assert r.exit_code == 0, r.output
    body = orjson.loads(r.stdout)
    assert body["object"] == "list"  # one --json convention: a list is {"object": "list", "data": [...]}
    rows: list[dict[str, object]] = body["data"]
    return rows


def test_create_prints_the_secret_once_with_prefix_and_scopes(tmp_path: Path) -> None:
    r = cli(tmp_path, "create", "--name", "openai-clients")
    assert r.exit_code == 0, r.output
    (secret,) = SECRET.findall(r.stdout)
    assert r.stdout.count(secret) == 1
    assert f"prefix {secret[:12]}" in r.stdout and "scopes chat, ledger" in r.stdout
    assert "shown only this once" in r.stdout


def test_list_never_shows_the_secret(tmp_path: Path) -> None:
    a = create(tmp_path, "alpha")
    b = create(tmp_path, "beta", "--scopes", "admin", "--expires", "30d")
    r = cli(tmp_path, "list")
    assert r.exit_code == 0
    table = r.stdout
    for word in ("name", "prefix", "scopes", "created", "last used", "expires", "state"):
        assert word in table
    assert "alpha" in table and a[:12] in table and "chat,ledger" in table and "active" in table
    assert "beta" in table and b[:12] in table and "admin" in table
    assert max(len(line) for line in table.splitlines()) <= 120
    rows = listed(tmp_path)
    out = cli(tmp_path, "list", "--json").stdout
    for secret in (a, b):
        assert secret not in table and secret[12:] not in table
        assert secret not in out and secret[12:] not in out
        assert SECRET.search(table + out) is None
    assert [(x["name"], x["prefix"], x["scopes"], x["state"]) for x in rows] == [
        ("alpha", a[:12], ["chat", "ledger"], "active"),
        ("beta", b[:12], ["admin"], "active"),
    ]
    assert rows[0]["expires_at"] is None and isinstance(rows[1]["expires_at"], str)
    assert rows[0]["last_used_at"] is None and str(rows[0]["created_at"]).endswith("Z")


def test_revoke_by_name_and_by_prefix(tmp_path: Path) -> None:
    create(tmp_path, "by-name")
    b = create(tmp_path, "by-prefix")
    r = cli(tmp_path, "revoke", "by-name")
    assert r.exit_code == 0 and "Revoked API key by-name" in r.stdout
    r = cli(tmp_path, "revoke", b[:12])
    assert r.exit_code == 0 and "Revoked API key by-prefix" in r.stdout
    assert [x["state"] for x in listed(tmp_path)] == ["revoked", "revoked"]
    assert "revoked" in cli(tmp_path, "list").stdout
    r = cli(tmp_path, "revoke", "by-name")
    assert r.exit_code == 1 and "already revoked" in r.stderr
    r = cli(tmp_path, "revoke", "nobody")
    assert r.exit_code == 1 and "No live key" in r.stderr
    create(tmp_path, "by-name")  # the name is free again
    assert [x["state"] for x in listed(tmp_path)] == ["revoked", "revoked", "active"]


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    create(tmp_path, "taken")
    cases = [
        (("create", "--name", "x", "--scopes", "chat,root"), "Unknown scope 'root'"),
        (("create", "--name", "x", "--scopes", ""), "at least one scope"),
        (("create", "--name", "x", "--expires", "soon"), "--expires takes a duration"),
        (("create", "--name", "x", "--expires", "2001-01-01"), "in the past"),
        (("create", "--name", "bad name"), "A key name is"),
        (("create", "--name", "taken"), "already exists"),
    ]
    for args, message in cases:
        r = cli(tmp_path, *args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.stderr.replace("\n", ""), (args, r.stderr)
        assert "Traceback" not in r.output and SECRET.search(r.output) is None
    r = CliRunner().invoke(app, ["api-key", "create", "--home", str(tmp_path)], env=ENV)
    assert r.exit_code == 2 and "--name" in r.output  # a missing option is Typer's usage error
    assert len(listed(tmp_path)) == 1


def test_expiry_is_listed(tmp_path: Path) -> None:
    create(tmp_path, "dated", "--expires", "2099-12-31")
    (row,) = listed(tmp_path)
    assert row["expires_at"] == "2099-12-31T00:00:00Z" and row["state"] == "active"
    assert "2099-12-31 00:00" in cli(tmp_path, "list").stdout


def test_list_on_an_empty_home_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "empty"
    r = cli(home, "list")
    assert r.exit_code == 0 and "No API keys yet" in r.stdout
    assert orjson.loads(cli(home, "list", "--json").stdout) == {"object": "list", "data": []}
    r = cli(home, "revoke", "x")
    assert r.exit_code == 1 and "no API keys" in r.stderr
    assert not home.exists()


def test_keys_are_managed_even_when_the_config_is_broken(tmp_path: Path) -> None:
    """A leaked key must be revocable while config.yaml has a typo."""
    create(tmp_path, "leaked")
    (tmp_path / "config.yaml").write_text("server:\n  port: many\n")
    assert cli(tmp_path, "revoke", "leaked").exit_code == 0


def test_bmo_home_from_the_environment(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        app, ["api-key", "create", "--name", "env"], env={"COLUMNS": "120", "BMO_HOME": str(tmp_path)}
    )
    assert r.exit_code == 0 and (tmp_path / "bmo.db").exists()
    assert [x["name"] for x in listed(tmp_path)] == ["env"]


def test_the_secret_never_reaches_the_database_file(tmp_path: Path) -> None:
    secret = create(tmp_path, "hidden")
    cli(tmp_path, "revoke", "hidden")
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("bmo.db"))
    assert blob and secret.encode() not in blob and secret[12:].encode() not in blob
