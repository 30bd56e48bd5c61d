"""`bmo runs …`, `bmo posture` and `bmo config show-openai-compat` against a real ledger.

Runs are read from the database; posture is the running server's, or `down` (exit 3) when none
answers — never a healthy state read from the database — and a refused key is an error (exit 1),
with --json too (issue 17, problems 4 and 8).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
from typer.testing import CliRunner

from bmo.cli import app
from conftest import AGENTS, upstream_config
from fakes import BmoServer, FakeUpstream, LoopThread

NOBODY = "http://127.0.0.1:9"  # nothing answers on port 9 (discard): "no server runs"
WIDTH = {"COLUMNS": "160", "BMO_API_KEY": None, "BMO_URL": None}


def cli(*args: str, **env: str | None) -> Any:
    return CliRunner().invoke(app, list(args), env={**WIDTH, **env})


def _populate(s: BmoServer) -> list[str]:
    ids = []
    with httpx.Client(headers={"User-Agent": "cli-test/2.0"}) as c:
        for i in range(3):
            r = c.post(s.base_url + "/chat/completions", json={"messages": [{"role": "user", "content": f"m{i}"}]})
            ids.append(r.headers["x-request-id"])
        ids.append(c.get(s.url + "/v1/nothing").headers["x-request-id"])
    with httpx.Client(headers={"User-Agent": "OpenAI/Python 1.99.1"}) as c:
        body = {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
        r = c.post(s.base_url + "/chat/completions", json=body)
        ids.append(r.headers["x-request-id"])
    return ids


def test_runs_from_the_database(make_bmo: Any, upstream: FakeUpstream, servers: LoopThread) -> None:
    s = make_bmo(config=upstream_config(upstream), agents=AGENTS)
    ids = _populate(s)
    servers.run(s.stop())  # no server: the CLI reads the database
    home = str(s.home)

    r = cli("runs", "list", "--home", home)
    assert r.exit_code == 0, r.output
    for rid in ids:
        assert rid in r.output
    assert "cli-test" in r.output and f"source: database {s.home / 'bmo.db'}" in r.output
    assert "model_not_found" in r.output and "openai-python" in r.output  # the error code and client columns

    r = cli("runs", "list", "--home", home, "--json", "--status", "404")
    data = json.loads(r.output)
    assert data["object"] == "list" and [d["request_id"] for d in data["data"]] == [ids[4], ids[3]]
    r = cli("runs", "list", "--home", home, "--json", "--limit", "2", "--route", "/v1/chat/completions")
    assert [d["request_id"] for d in json.loads(r.output)["data"]] == [ids[4], ids[2]]
    r = cli("runs", "list", "--home", home, "--json", "--ua", "OPENAI/python")  # a substring, any case
    assert [d["request_id"] for d in json.loads(r.output)["data"]] == [ids[4]]
    r = cli("runs", "list", "--home", home, "--json", "--client", "cli-test", "--outcome", "ok")
    assert [d["request_id"] for d in json.loads(r.output)["data"]] == [ids[2], ids[1], ids[0]]
    assert json.loads(cli("runs", "list", "--home", home, "--json", "--ua", "%").output)["data"] == []

    r = cli("runs", "show", ids[0], "--home", home)
    assert r.exit_code == 0 and "/v1/chat/completions" in r.output and "local/echo" in r.output
    r = cli("runs", "events", ids[0], "--home", home, "--json")
    body = json.loads(r.output)
    assert body["object"] == "list" and body["request_id"] == ids[0]
    assert [e["name"] for e in body["data"]] == ["received", "resolved", "upstream_request", "first_token", "finished"]
    r = cli("runs", "show", "req_missing", "--home", home)
    assert r.exit_code == 1 and "no run with request id" in r.output


def test_posture_with_no_server_is_down_never_ready(make_bmo: Any, upstream: FakeUpstream, servers: LoopThread) -> None:
    s = make_bmo(config=upstream_config(upstream), agents=AGENTS)
    _populate(s)
    servers.run(s.stop())
    home = str(s.home)
    r = cli("posture", "--home", home, "--url", NOBODY)
    assert r.exit_code == 3, r.output
    assert "down" in r.output and "ready" not in r.output and "cli-test" in r.output
    r = cli("posture", "--home", home, "--url", NOBODY, "--json")
    assert r.exit_code == 3
    p = json.loads(r.output)
    assert p["state"] == "down" and p["source"] == "database" and p["in_flight"] is None and p["persistence"] is None
    assert {g["route"]: g["count"] for g in p["by_route"]} == {"/v1/chat/completions": 4, "unmatched": 1}
    assert {c["client"]: c["count"] for c in p["top_clients"]} == {"cli-test": 4, "openai-python": 1}


def test_posture_from_the_running_server(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(config=upstream_config(upstream).replace("mode: none", "mode: keys"), env_api_key="sk-ledger",
                 agents=AGENTS)  # fmt: skip
    home = str(s.home)
    p = json.loads(cli("posture", "--home", home, "--url", s.url, "--json", "--key", "sk-ledger").output)
    assert p["source"] == "server" and p["in_flight"] == 0 and p["state"] == "ready"
    p = json.loads(cli("posture", "--home", home, "--url", s.url + "/v1/", "--json", BMO_API_KEY="sk-ledger").output)
    assert p["state"] == "ready"  # the key from the environment; a base URL with /v1 is the server too
    # A server that refuses the key is an error, table or JSON: never a silent fallback to the database.
    for extra in ([], ["--json"], ["--key", "sk-wrong"], ["--key", "sk-wrong", "--json"]):
        r = cli("posture", "--home", home, "--url", s.url, *extra)
        assert r.exit_code == 1, (extra, r.output)
        assert "ledger scope" in r.output and s.url in r.output.replace("\n", "")
        assert '"state"' not in r.stdout and "database" not in r.output
    r = cli("config", "show-openai-compat", "--home", home, "--url", s.url, "--key", "sk-ledger")
    assert r.exit_code == 0 and "openai_compat.concurrency" in r.output and "the running server" in r.output
    view = json.loads(cli("config", "show-openai-compat", "--home", home, "--url", s.url, "--json",
                          "--key", "sk-ledger").output)  # fmt: skip
    assert view["object"] == "openai_compat.config" and view["posture"]["source"] == "server"
    assert view["base_url"] == s.url + "/v1"
    assert {a["id"]: a["route"] for a in view["agents"]} == {"default": "local/echo", "helper": "up/gpt-test",
                                                             "plain": "up/gpt-plain"}  # fmt: skip
    settings = {x["key"]: x for x in view["settings"]}
    assert settings["auth.mode"] == {"key": "auth.mode", "value": "keys", "source": "file (line 1)"}
    assert settings["openai_compat.concurrency"] == {"key": "openai_compat.concurrency", "value": 64,
                                                     "source": "default"}  # fmt: skip
    r = cli("config", "show-openai-compat", "--home", home, "--url", s.url, "--key", "sk-wrong")
    assert r.exit_code == 1 and "refused the key" in r.output.replace("\n", " ")


def test_show_openai_compat_names_every_source(tmp_path: Any) -> None:
    (tmp_path / "config.yaml").write_text("openai_compat: {concurrency: 5}\n")
    r = cli("config", "show-openai-compat", "--home", str(tmp_path), "--json", "--url", NOBODY,
            BMO_SERVER_SHUTDOWN_GRACE_S="3", BMO_PORT="9100")  # fmt: skip
    assert r.exit_code == 0, r.output  # the page itself is fine; its posture says down
    view = json.loads(r.output)
    src = {x["key"]: (x["value"], x["source"]) for x in view["settings"]}
    assert src["openai_compat.concurrency"] == (5, "file (line 1)")
    assert src["server.shutdown_grace_s"] == (3, "env BMO_SERVER_SHUTDOWN_GRACE_S")
    assert src["server.port"] == (9100, "env BMO_PORT")
    assert src["server.log_level"] == ("info", "default") and src["server.access_log"] == (True, "default")
    assert view["bind"] == "127.0.0.1:9100" and view["posture"]["state"] == "down"
    assert view["config_file"] == str(tmp_path / "config.yaml") and view["auth"]["mode"] == "keys"


def test_reading_an_empty_home_creates_nothing(tmp_path: Any) -> None:
    r = cli("runs", "list", "--home", str(tmp_path))
    assert r.exit_code == 0 and "runs, newest first (0)" in r.output
    r = cli("posture", "--home", str(tmp_path), "--json", "--url", NOBODY)
    assert r.exit_code == 3 and json.loads(r.output)["window"]["runs"] == 0
    assert json.loads(r.output)["state"] == "down"
    r = cli("status", "--home", str(tmp_path), "--url", NOBODY)
    assert r.exit_code == 3 and "down" in r.output
    assert not (tmp_path / "bmo.db").exists()


def test_runs_tail_follows_new_runs_in_the_order_they_are_written(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(config=upstream_config(upstream), agents=AGENTS)
    before = _populate(s)
    result: dict[str, Any] = {}

    def tail() -> None:
        result["r"] = cli("runs", "tail", "--home", str(s.home), "--json", "--limit", "1", "--count", "2",
                          "--interval", "0.05", "--ua", "tail-me")  # fmt: skip

    t = threading.Thread(target=tail)
    t.start()
    time.sleep(0.5)  # the tail has read the backlog by now; what follows is new
    new = []
    with httpx.Client(headers={"User-Agent": "tail-me/1.0"}) as c:
        new.append(c.get(s.url + "/v1/nothing").headers["x-request-id"])
        c.post(s.base_url + "/chat/completions", json={"messages": [{"role": "user", "content": "x"}]},
               headers={"User-Agent": "someone-else"})  # fmt: skip  (filtered out)
        new.append(c.post(s.base_url + "/chat/completions", json={"messages": [{"role": "user", "content": "y"}]})
                   .headers["x-request-id"])  # fmt: skip
    t.join(20)
    assert not t.is_alive()
    r = result["r"]
    assert r.exit_code == 0, r.output
    seen = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["request_id"] for x in seen] == new and all(x["client"] == "tail-me" for x in seen)
    assert set(before).isdisjoint(x["request_id"] for x in seen)
