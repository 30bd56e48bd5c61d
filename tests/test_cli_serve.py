"""`bmo serve` and friends as a newcomer runs them: a real process on a free loopback port."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest
from typer.testing import CliRunner

from bmo.cli import app
from served import Served, run_bmo, serve_env


def test_serve_on_empty_home_then_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    s = Served(home, BMO_API_KEY="sk-bmo-test-key")
    try:
        assert str(home) in s.banner and "config.yaml" in s.banner and "written now" in s.banner
        assert "base_url=" in s.banner  # how to point a client at it
        assert (home / "config.yaml").read_text().startswith("# bmo configuration")
        client = openai.OpenAI(base_url=s.url, api_key="sk-bmo-test-key", max_retries=0)
        got = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="default", messages=[{"role": "user", "content": "streamed hello"}], stream=True
            )
            if c.choices
        )
        assert got == "streamed hello"
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(15) == 0
    finally:
        s.stop()


def test_serve_refuses_bad_config_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("server:\n  port: many\n")
    r = run_bmo(tmp_path, "serve")
    assert r.returncode == 2
    assert "config.yaml: server.port (line 2): must be a whole number" in r.stderr.replace("\n", "")
    assert "Traceback" not in r.stderr


def test_serve_refuses_open_auth_on_public_address(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("auth: {mode: none}\n")
    r = run_bmo(tmp_path, "serve", "--host", "0.0.0.0")
    assert r.returncode == 2 and "refused" in r.stderr


def test_config_validate_and_agents_list(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "r.yaml").write_text("id: researcher\nmodel: local/echo\ntools: [clock]\n")
    r = runner.invoke(app, ["config", "validate", "--home", str(tmp_path)], env={"COLUMNS": "120"})
    assert r.exit_code == 0 and "2 agent(s): default, researcher" in r.output
    r = runner.invoke(app, ["agents", "list", "--home", str(tmp_path), "--json"])
    assert r.exit_code == 0 and '"id": "researcher"' in r.output
    r = runner.invoke(app, ["agents", "list", "--home", str(tmp_path)], env={"COLUMNS": "120"})
    assert "researcher" in r.output and "local/echo" in r.output
    (tmp_path / "agents" / "r.yaml").write_text("id: researcher\nmodel: local/echo\ntools: [shell]\n")
    r = runner.invoke(app, ["config", "validate", "--home", str(tmp_path)], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "unknown tool 'shell'" in r.output


def test_show_openai_compat_json(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("openai_compat: {concurrency: 5}\n")
    r = CliRunner().invoke(
        app, ["config", "show-openai-compat", "--home", str(tmp_path), "--json", "--url", "http://127.0.0.1:9"]
    )
    assert r.exit_code == 0, r.output
    view = json.loads(r.output)
    concurrency = next(x for x in view["settings"] if x["key"] == "openai_compat.concurrency")
    assert concurrency == {"key": "openai_compat.concurrency", "value": 5, "source": "file (line 1)"}


def test_json_access_log_one_fired_and_one_action_per_request(tmp_path: Path) -> None:
    s = Served(tmp_path, "--log-format", "json", BMO_API_KEY="sk-bmo-log-key")
    try:
        ids = []
        with httpx.Client(headers={"Authorization": "Bearer sk-bmo-log-key", "User-Agent": "log-test"}) as c:
            r = c.post(s.url + "/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
            ids.append(r.headers["x-request-id"])
            ids.append(c.get(s.url + "/models/nope").headers["x-request-id"])
    finally:
        err = s.stop()
    assert s.proc.returncode == 0
    lines = [json.loads(ln) for ln in err.splitlines() if ln.startswith("{")]
    access = [ln for ln in lines if ln.get("logger") == "bmo.access"]
    for rid in ids:
        mine = [ln["msg"] for ln in access if ln.get("request_id") == rid]
        assert sorted(mine) == ["openai_compat.action", "openai_compat.fired"], mine
    chat = next(ln for ln in access if ln["request_id"] == ids[0] and ln["msg"] == "openai_compat.fired")
    assert chat["agent"] == "default" and chat["client_ua"] == "log-test" and chat["route"] == "/v1/chat/completions"
    action = next(ln for ln in access if ln["request_id"] == ids[1] and ln["msg"] == "openai_compat.action")
    assert action["status"] == 404 and action["outcome"] == "client_error"
    assert "sk-bmo-log-key" not in err


# Start-up failures: one line on stderr naming file, key and reason; exit code 2; no traceback,
# and the process ends (a half-open store must not keep it alive).


def _refused(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "serving on" not in r.stdout


def run_patched(home: Path, patch: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`bmo ARGS` in a child process after `patch` ran in it: a failure no config can cause."""
    code = f"{patch}\nfrom bmo.cli import main\nmain()\n"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=serve_env(home), capture_output=True, text=True, timeout=30
    )


LATE_CONFIG_ERROR = """
import bmo.runtime
from bmo.errors import ConfigError
_open = bmo.runtime.Runtime.open
async def open_then_refuse(self):
    await _open(self)  # the store, its tasks and the upstream pool are open now
    raise ConfigError(str(self.cfg.config_file), "providers.late.kind", "refused after the store was opened")
bmo.runtime.Runtime.open = open_then_refuse
"""


def test_serve_late_config_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # as a provider kind the registry does not have, raised from inside Runtime.open()
    r = run_patched(tmp_path, LATE_CONFIG_ERROR, "serve", "--port", "0")
    _refused(r, f"{tmp_path / 'config.yaml'}: providers.late.kind: refused after the store was opened")
    keys = run_bmo(tmp_path, "api-key", "list", "--json")
    assert keys.returncode == 0 and "sk-bmo-" not in keys.stdout
    assert '"name": "first"' not in keys.stdout  # minted for the banner, never shown, so forgotten


def test_bmo_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = run_patched(tmp_path, LATE_CONFIG_ERROR, "serve", "--port", "0")
    assert "Traceback" not in r.stderr
    env_debug = "import os\nos.environ['BMO_DEBUG'] = '1'\n"
    r = run_patched(tmp_path, env_debug + LATE_CONFIG_ERROR, "serve", "--port", "0")
    assert r.returncode != 0 and "Traceback" in r.stderr and "refused after the store was opened" in r.stderr


def test_serve_on_an_unusable_store_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bmo.db").mkdir()  # the database path is a folder
    _refused(run_bmo(tmp_path, "serve", "--port", "0"), "cannot start", str(tmp_path / "bmo.db"))


def test_serve_on_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_bmo(tmp_path, "serve", "--port", str(port), BMO_API_KEY="sk-bmo-test-key")
    _refused(r, f"cannot listen on 127.0.0.1:{port}", "in use")


def test_validate_and_serve_agree_on_an_agents_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("agents_dir: agents.yaml\n")
    (tmp_path / "agents.yaml").write_text("id: coder\nmodel: local/echo\n")
    r = CliRunner().invoke(app, ["config", "validate", "--home", str(tmp_path)], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "agents_dir" in r.output and "is not a folder" in r.output
    _refused(run_bmo(tmp_path, "serve", "--port", "0"), "bad configuration", "agents_dir", "is not a folder")


def test_validate_and_serve_agree_on_a_provider_kind_this_build_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bmo.providers

    (tmp_path / "config.yaml").write_text("providers:\n  c: {kind: anthropic}\n")
    without = "import bmo.providers\nbmo.providers.KINDS = ('openai', 'echo')\n"
    monkeypatch.setattr(bmo.providers, "KINDS", ("openai", "echo"), raising=False)
    r = CliRunner().invoke(app, ["config", "validate", "--home", str(tmp_path)], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "providers.c.kind (line 2): provider kind 'anthropic' is not available" in r.output
    r = run_patched(tmp_path, without, "serve", "--port", "0")
    _refused(r, "providers.c.kind (line 2): provider kind 'anthropic' is not available")


def test_a_config_validate_accepts_is_one_serve_starts_on(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text('model_aliases: {"claude-*": coder}\n')
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "coder.yaml").write_text("id: coder\nmodel: local/echo\n")
    r = CliRunner().invoke(app, ["config", "validate", "--home", str(tmp_path)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    s = Served(tmp_path, BMO_API_KEY="sk-bmo-test-key")
    try:
        got = httpx.get(s.url + "/models/claude-sonnet-4-5", headers={"Authorization": "Bearer sk-bmo-test-key"})
        assert got.status_code == 200 and got.json()["id"] == "claude-sonnet-4-5"
    finally:
        s.stop()
    assert s.proc.returncode == 0
