"""`bmo serve` and friends as a newcomer runs them: a real process on a free loopback port."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import openai
from typer.testing import CliRunner

from bmo.cli import app
from served import Served, run_bmo


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
    r = CliRunner().invoke(app, ["config", "show-openai-compat", "--home", str(tmp_path), "--json"])
    assert r.exit_code == 0 and '"concurrency": 5' in r.output


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
