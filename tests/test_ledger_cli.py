"""`bmo runs …`, `bmo posture` and `bmo config show-openai-compat` at a fixed width."""

from __future__ import annotations

import json
from typing import Any

import httpx
from typer.testing import CliRunner

from bmo.cli import app
from conftest import AGENTS, upstream_config
from fakes import BmoServer, FakeUpstream, LoopThread

WIDTH = {"COLUMNS": "160", "BMO_API_KEY": ""}


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=WIDTH)


def _populate(s: BmoServer) -> list[str]:
    ids = []
    with httpx.Client(headers={"User-Agent": "cli-test/2.0"}) as c:
        for i in range(3):
            r = c.post(s.base_url + "/chat/completions", json={"messages": [{"role": "user", "content": f"m{i}"}]})
            ids.append(r.headers["x-request-id"])
        ids.append(c.get(s.url + "/v1/nothing").headers["x-request-id"])
    return ids


def test_runs_and_posture_from_the_database(make_bmo: Any, upstream: FakeUpstream, servers: LoopThread) -> None:
    s = make_bmo(config=upstream_config(upstream), agents=AGENTS)
    ids = _populate(s)
    servers.run(s.stop())  # no server: the CLI reads the database
    home = str(s.home)

    r = cli("runs", "list", "--home", home)
    assert r.exit_code == 0, r.output
    for rid in ids:
        assert rid in r.output
    assert "cli-test/2.0" in r.output and f"source: database {s.home / 'bmo.db'}" in r.output

    r = cli("runs", "list", "--home", home, "--json", "--status", "404")
    data = json.loads(r.output)
    assert data["source"] == "database" and [d["request_id"] for d in data["data"]] == [ids[-1]]
    r = cli("runs", "list", "--home", home, "--json", "--limit", "2", "--route", "/v1/chat/completions")
    assert [d["request_id"] for d in json.loads(r.output)["data"]] == [ids[2], ids[1]]

    r = cli("runs", "show", ids[0], "--home", home)
    assert r.exit_code == 0 and "/v1/chat/completions" in r.output and "local/echo" in r.output
    r = cli("runs", "events", ids[0], "--home", home, "--json")
    names = [e["name"] for e in json.loads(r.output)["data"]]
    assert names == ["received", "resolved", "upstream_request", "first_token", "finished"]
    r = cli("runs", "show", "req_missing", "--home", home)
    assert r.exit_code == 1 and "no run with request id" in r.output

    r = cli("posture", "--home", home)
    assert r.exit_code == 0, r.output
    assert "ready" in r.output and "database" in r.output and "cli-test/2.0" in r.output
    p = json.loads(cli("posture", "--home", home, "--json").output)
    assert p["source"] == "database" and p["in_flight"] is None
    assert {g["route"]: g["count"] for g in p["by_route"]} == {"/v1/chat/completions": 3, "unmatched": 1}


def test_posture_from_the_running_server(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(config=upstream_config(upstream).replace("mode: none", "mode: keys"), env_api_key="sk-ledger",
                 agents=AGENTS)  # fmt: skip
    port = s.url.rsplit(":", 1)[1]
    cfg = (s.home / "config.yaml").read_text() + f"server: {{port: {port}}}\n"
    (s.home / "config.yaml").write_text(cfg)
    r = cli("posture", "--home", str(s.home))
    assert "source: database" in r.output and "needs a key with the ledger scope" in r.output
    p = json.loads(cli("posture", "--home", str(s.home), "--json", "--key", "sk-ledger").output)
    assert p["source"] == "server" and p["in_flight"] == 0
    r = cli("config", "show-openai-compat", "--home", str(s.home), "--key", "sk-ledger")
    assert (
        r.exit_code == 0
        and "openai_compat.concurrency" in r.output
        and "posture source: the running server" in (r.output)
    )
    both = json.loads(cli("config", "show-openai-compat", "--home", str(s.home), "--json", "--key", "sk-ledger").output)
    assert set(both) == {"config", "posture"} and both["posture"]["source"] == "server"


def test_reading_an_empty_home_creates_nothing(tmp_path: Any) -> None:
    r = cli("runs", "list", "--home", str(tmp_path))
    assert r.exit_code == 0 and "runs (newest first, 0)" in r.output
    r = cli("posture", "--home", str(tmp_path), "--json")
    assert json.loads(r.output)["window"]["runs"] == 0
    assert not (tmp_path / "bmo.db").exists()
