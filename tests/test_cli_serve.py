"""`bmo serve` and friends as a newcomer runs them: a real process on a free loopback port."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
from typer.testing import CliRunner

from bmo.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BMO_", "OPENAI_"))}
    env.update(BMO_HOME=str(home), COLUMNS="200", PYTHONPATH=str(ROOT / "internal"), **extra)
    return env


def test_serve_on_empty_home_then_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bmo", "serve", "--port", "0"],
        env=_env(home, BMO_API_KEY="sk-bmo-test-key"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 30
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"serving on (http://127\.0\.0\.1:\d+/v1)", line)
            url = m.group(1) if m else None
        assert url, "".join(lines)
        while "Ctrl-C" not in lines[-1] and time.monotonic() < deadline:  # the rest of the banner
            lines.append(proc.stdout.readline())
        banner = "".join(lines)
        assert str(home) in banner and "config.yaml" in banner and "written now" in banner
        assert "base_url=" in banner  # how to point a client at it
        assert (home / "config.yaml").read_text().startswith("# bmo configuration")

        client = openai.OpenAI(base_url=url, api_key="sk-bmo-test-key", max_retries=0)
        got = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="default", messages=[{"role": "user", "content": "streamed hello"}], stream=True
            )
            if c.choices
        )
        assert got == "streamed hello"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_bad_config_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("server:\n  port: many\n")
    r = subprocess.run(
        [sys.executable, "-m", "bmo", "serve"], env=_env(tmp_path), capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2
    assert "config.yaml: server.port (line 2): must be a whole number" in r.stderr.replace("\n", "")
    assert "Traceback" not in r.stderr


def test_serve_refuses_open_auth_on_public_address(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("auth: {mode: none}\n")
    r = subprocess.run(
        [sys.executable, "-m", "bmo", "serve", "--host", "0.0.0.0"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
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
    proc = subprocess.Popen(
        [sys.executable, "-m", "bmo", "serve", "--port", "0", "--log-format", "json"],
        env=_env(tmp_path, BMO_API_KEY="sk-bmo-log-key"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            m = re.search(r"serving on (http://127\.0\.0\.1:\d+)/v1", proc.stdout.readline())
            url = m.group(1) if m else None
        assert url
        ids = []
        with httpx.Client(headers={"Authorization": "Bearer sk-bmo-log-key", "User-Agent": "log-test"}) as c:
            ids.append(c.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
                       .headers["x-request-id"])  # fmt: skip
            ids.append(c.get(url + "/v1/models/nope").headers["x-request-id"])
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
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
