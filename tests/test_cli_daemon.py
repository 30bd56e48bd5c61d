"""bmo as a daemon (issue 17, problems 3, 4 and 7): `serve.json`, `bmo status`, `bmo stop`,
`--url`, the log level and the access log, as real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bmo import __version__
from served import Served, run_bmo, serve_env

KEY_A = "sk-bmo-daemon-a-0123456789"
KEY_B = "sk-bmo-daemon-b-0123456789"


def chat(url: str, key: str, ua: str = "daemon-test/1.0") -> httpx.Response:
    return httpx.post(
        url + "/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}", "User-Agent": ua},
        timeout=20,
    )


def test_serve_json_status_and_stop(tmp_path: Path) -> None:
    s = Served(tmp_path, BMO_API_KEY=KEY_A)
    try:
        info = json.loads((tmp_path / "serve.json").read_text())
        assert info["pid"] == s.proc.pid and info["url"] + "/v1" == s.url and info["version"] == __version__
        assert info["started"].endswith("Z")
        r = run_bmo(tmp_path, "status")
        assert r.returncode == 0, r.stderr
        assert s.url in r.stdout and str(s.proc.pid) in r.stdout and "ready" in r.stdout
        st = json.loads(run_bmo(tmp_path, "status", "--json").stdout)
        assert st["up"] is True and st["state"] == "ready" and st["pid"] == s.proc.pid
        assert st["found_by"] == "serve.json"
        assert st["version"] == __version__ and st["uptime_s"] >= 0
        r = run_bmo(tmp_path, "stop")
        assert r.returncode == 0, r.stderr
        assert f"stopped bmo (pid {s.proc.pid}" in r.stdout
        assert s.proc.wait(5) == 0  # SIGTERM: drained and exited 0, before `stop` returned
        assert not (tmp_path / "serve.json").exists()
    finally:
        s.stop()
    r = run_bmo(tmp_path, "status")
    assert r.returncode == 3 and "down" in r.stdout
    st = json.loads(run_bmo(tmp_path, "status", "--json").stdout)
    assert st["up"] is False and st["state"] == "down"
    r = run_bmo(tmp_path, "stop")
    assert r.returncode == 3 and "no bmo server runs" in r.stderr


def test_the_cli_finds_a_server_started_with_port(tmp_path: Path) -> None:
    """Another bmo answers on the configured port; the one started on this home with --port is
    the one asked (it used to be the other, which then refused the key)."""
    other = Served(tmp_path / "other", BMO_API_KEY=KEY_B)
    home = tmp_path / "home"
    home.mkdir()
    other_port = other.url.rsplit(":", 1)[1].removesuffix("/v1")
    (home / "config.yaml").write_text(f"server: {{port: {other_port}}}\n")
    mine = Served(home, BMO_API_KEY=KEY_A)
    try:
        assert chat(mine.url, KEY_A, ua="to-mine/1.0").status_code == 200
        r = run_bmo(home, "posture", "--key", KEY_A, "--json")
        assert r.returncode == 0, r.stderr
        p = json.loads(r.stdout)
        assert p["source"] == "server" and [u["client_ua"] for u in p["top_user_agents"]] == ["to-mine/1.0"]
        # --url picks a server explicitly, whatever serve.json says
        r = run_bmo(home, "posture", "--key", KEY_B, "--json", "--url", other.url)
        assert r.returncode == 0 and json.loads(r.stdout)["window"]["runs"] == 0
        r = run_bmo(home, "status", "--json", "--url", other.url)
        assert r.returncode == 0 and json.loads(r.stdout)["found_by"] == "--url"
        # the key of one is refused by the other: an error naming the server, not a fallback
        r = run_bmo(home, "posture", "--key", KEY_A, "--json", "--url", other.url)
        assert r.returncode == 1 and other.url.removesuffix("/v1") in r.stderr and r.stdout == ""
    finally:
        mine.stop()
        other.stop()


def test_a_killed_server_leaves_a_stale_serve_json_that_is_not_believed(tmp_path: Path) -> None:
    s = Served(tmp_path, BMO_API_KEY=KEY_A)
    try:
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait(10)
    finally:
        s.stop()
    assert (tmp_path / "serve.json").exists()
    r = run_bmo(tmp_path, "status")
    assert r.returncode == 3 and "down" in r.stdout and "has exited" in r.stdout
    r = run_bmo(tmp_path, "posture", "--json")
    assert r.returncode == 3 and json.loads(r.stdout)["state"] == "down"
    r = run_bmo(tmp_path, "stop")
    assert r.returncode == 3 and "removed a serve.json" in r.stderr
    assert not (tmp_path / "serve.json").exists()


@pytest.mark.parametrize(
    ("args", "config", "access_lines"),
    [
        ((), "", True),
        (("--log-level", "warning"), "", False),
        ((), "server: {access_log: false}\n", False),
        ((), "server: {log_level: error}\n", False),
        (("--log-level", "debug"), "", True),
    ],
)
def test_log_level_and_access_log(tmp_path: Path, args: tuple[str, ...], config: str, access_lines: bool) -> None:
    if config:
        (tmp_path / "config.yaml").write_text(config)
    s = Served(tmp_path, *args, BMO_API_KEY=KEY_A)
    try:
        rid = chat(s.url, KEY_A).headers["x-request-id"]
    finally:
        err = s.stop()
    assert s.proc.returncode == 0
    assert ("openai_compat.action" in err) is access_lines, err
    runs = json.loads(run_bmo(tmp_path, "runs", "list", "--json").stdout)["data"]
    assert [r["request_id"] for r in runs] == [rid]  # the ledger has every run either way


def test_a_bad_log_level_is_refused(tmp_path: Path) -> None:
    r = run_bmo(tmp_path, "serve", "--log-level", "loud", "--port", "0")
    assert r.returncode == 2 and "--log-level" in r.stderr and "debug, info, warning, error" in r.stderr


def test_the_banner_counts_from_the_start_of_the_process(tmp_path: Path) -> None:
    """"ready in N ms" is what a user waits: from exec, not from after the imports."""
    code = "import time; time.sleep(0.3)\nfrom bmo.cli.serve_cmd import process_age_s\nprint(process_age_s())"
    out = subprocess.run([sys.executable, "-c", code], env=serve_env(tmp_path), capture_output=True, text=True,
                         timeout=30)  # fmt: skip
    assert float(out.stdout) >= 0.29, out.stdout + out.stderr
    s = Served(tmp_path, BMO_API_KEY=KEY_A)
    try:
        ready_ms = int(s.banner.split("ready in ", 1)[1].split(" ms", 1)[0])
        assert ready_ms > 0
    finally:
        s.stop()


def test_version_json_is_the_same_both_ways(tmp_path: Path) -> None:
    fast = run_bmo(tmp_path, "version", "--json")  # answered before typer is imported
    assert fast.returncode == 0
    v = json.loads(fast.stdout)
    assert v["object"] == "version" and v["version"] == __version__ and v["binary"] is False
    from typer.testing import CliRunner

    from bmo.cli import app

    assert json.loads(CliRunner().invoke(app, ["version", "--json"]).stdout) == v
    t0 = time.monotonic()
    assert run_bmo(tmp_path, "version").stdout.startswith(f"bmo {__version__} ")
    assert time.monotonic() - t0 < 30  # (a bound on a hang, not a benchmark)
