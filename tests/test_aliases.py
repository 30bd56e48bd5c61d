"""`model_aliases` (SPEC §2, §4): clients that send their own model ids reach an agent.

`model_aliases: {glob: agent id}` in config.yaml, globs per `fnmatch.fnmatchcase`, tried in file
order after exact ids, `agent:`/`bmo:` and exposed provider routes; the first match wins. A target
that names no agent stops start-up (and `bmo config validate`) with the file, key and line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from bmo.agents import AgentRegistry, load_agents
from bmo.cli import app
from bmo.config import as_dict, load_config
from bmo.errors import ConfigError, NotFound
from fakes import BmoServer
from served import run_bmo

CODER = "id: coder\nmodel: local/echo\ndescription: writes code\n"
OTHER = "id: other\nmodel: local/echo\n"


def _home(tmp_path: Path, config: str, agents: dict[str, str] | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.yaml").write_text(config)
    if agents:
        (tmp_path / "agents").mkdir(exist_ok=True)
        for name, text in agents.items():
            (tmp_path / "agents" / f"{name}.yaml").write_text(text)
    return tmp_path


def _registry(tmp_path: Path, config: str, agents: dict[str, str] | None = None) -> AgentRegistry:
    cfg = load_config(_home(tmp_path, config, agents), env={})
    return AgentRegistry(cfg, load_agents(cfg))


def test_config_keeps_the_aliases_in_file_order(tmp_path: Path) -> None:
    cfg = load_config(_home(tmp_path, 'model_aliases:\n  "gpt-5*": coder\n  "claude-*": other\n  "*": coder\n'), env={})
    assert list(cfg.model_aliases.items()) == [("gpt-5*", "coder"), ("claude-*", "other"), ("*", "coder")]
    assert as_dict(cfg)["model_aliases"] == {"gpt-5*": "coder", "claude-*": "other", "*": "coder"}
    assert "lines" not in as_dict(cfg)


def test_the_default_config_has_no_aliases(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "fresh", env={})
    assert cfg.model_aliases == {}
    assert "model_aliases: {}" in (tmp_path / "fresh" / "config.yaml").read_text()


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("model_aliases: [claude-*]\n", "model_aliases (line 1)", "mapping of glob -> agent id"),
        ("model_aliases:\n  claude-*: [coder]\n", "model_aliases.claude-* (line 2)", "must name an agent id"),
        ("model_aliases:\n  claude-*:\n", "model_aliases.claude-* (line 2)", "must name an agent id"),
        ("model_aliases:\n  5: coder\n", "model_aliases.5 (line 2)", "glob string"),
    ],
)
def test_a_malformed_alias_names_key_and_line(tmp_path: Path, text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(_home(tmp_path, text), env={})
    assert e.value.file == str(tmp_path / "config.yaml") and e.value.key == key and problem in e.value.problem


def test_an_alias_to_an_unknown_agent_is_a_config_error(tmp_path: Path) -> None:
    cfg = load_config(_home(tmp_path, 'auth: {mode: none}\nmodel_aliases:\n  "claude-*": coder\n'), env={})
    with pytest.raises(ConfigError) as e:
        load_agents(cfg)
    assert e.value.file == str(tmp_path / "config.yaml")
    assert e.value.key == "model_aliases.claude-* (line 3)"
    assert "no agent 'coder'" in e.value.problem and "known: default" in e.value.problem
    # the registry checks too, whoever hands it the agents
    agents = load_agents(load_config(_home(tmp_path / "b", "auth: {mode: none}\n"), env={}))
    with pytest.raises(ConfigError):
        AgentRegistry(cfg, agents)


def test_resolution_order_exact_prefix_route_then_first_matching_glob(tmp_path: Path) -> None:
    reg = _registry(
        tmp_path,
        "openai_compat: {expose_routes: true}\n"
        'model_aliases:\n  "claude-3*": other\n  "claude-*": coder\n  "gpt-5*": coder\n  "local/*": other\n',
        {"coder": CODER, "other": OTHER, "claude-x": "id: claude-x\nmodel: local/echo\n"},
    )
    assert reg.resolve("claude-sonnet-4-5").id == "coder"
    assert reg.resolve("claude-3-5-haiku-20241022").id == "other"  # the first glob that matches wins
    assert reg.resolve("gpt-5.1-codex").id == "coder"
    assert reg.resolve("claude-x").id == "claude-x"  # an exact id before any glob
    assert reg.resolve("agent:other").id == "other"
    assert reg.resolve("local/echo").source == "route"  # an exposed route before a glob
    assert reg.resolve(None, header="claude-opus-4").id == "coder"  # X-BMO-Agent too
    assert reg.resolve("default") is reg.default
    with pytest.raises(NotFound):
        reg.resolve("Claude-sonnet")  # case-sensitive: fnmatchcase
    with pytest.raises(NotFound):
        reg.resolve("gpt-4.1")
    # aliases are not model ids of their own
    assert not any("*" in m for m in reg.model_ids())
    assert reg.get_model("claude-sonnet-4-5") == "claude-sonnet-4-5"


def test_without_aliases_unknown_ids_stay_404(tmp_path: Path) -> None:
    reg = _registry(tmp_path, "auth: {mode: none}\n", {"coder": CODER})
    with pytest.raises(NotFound):
        reg.resolve("claude-sonnet-4-5")


def test_aliases_over_http(make_bmo: Callable[..., BmoServer]) -> None:
    s = make_bmo(config='auth: {mode: none}\nmodel_aliases: {"claude-*": coder}\n', agents={"coder": CODER})
    models = httpx.get(s.url + "/v1/models", timeout=10).json()
    assert sorted(m["id"] for m in models["data"]) == ["coder", "default"]
    r = httpx.get(s.url + "/v1/models/claude-sonnet-4-5", timeout=10)
    assert r.status_code == 200 and r.json()["id"] == "claude-sonnet-4-5"
    assert httpx.get(s.url + "/v1/models/gpt-4.1", timeout=10).status_code == 404
    r = httpx.post(
        s.url + "/v1/chat/completions",
        json={"model": "claude-opus-4", "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "claude-opus-4"  # the model as the client named it
    run = httpx.get(s.url + f"/v1/openai-compat/runs/{r.headers['x-request-id']}", timeout=10).json()
    assert run["agent"] == "coder" and run["model_requested"] == "claude-opus-4"


def test_agents_list_shows_the_globs_of_each_agent(tmp_path: Path) -> None:
    _home(tmp_path, 'model_aliases:\n  "claude-*": coder\n  "gpt-5*": coder\n  "o[34]*": other\n',
          {"coder": CODER, "other": OTHER})  # fmt: skip
    runner = CliRunner()
    r = runner.invoke(app, ["agents", "list", "--home", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    body = orjson.loads(r.output)
    assert body["object"] == "list"
    by_id = {a["id"]: a for a in body["data"]}
    assert by_id["coder"]["aliases"] == ["claude-*", "gpt-5*"] and by_id["other"]["aliases"] == ["o[34]*"]
    assert by_id["default"]["aliases"] == []
    assert list(body["model_aliases"]) == ["claude-*", "gpt-5*", "o[34]*"]
    r = runner.invoke(app, ["agents", "list", "--home", str(tmp_path)], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    assert "aliases" in r.output and "claude-*, gpt-5*" in r.output and "o[34]*" in r.output
    assert "tried in this order: claude-* -> coder, gpt-5* -> coder, o[34]* -> other" in r.output


def test_agents_list_refuses_an_alias_to_no_agent(tmp_path: Path) -> None:
    _home(tmp_path, 'model_aliases: {"claude-*": coder}\n')
    r = CliRunner().invoke(app, ["agents", "list", "--home", str(tmp_path)], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "model_aliases.claude-* (line 1): no agent 'coder'" in r.output


def test_show_openai_compat_shows_the_aliases(tmp_path: Path) -> None:
    _home(tmp_path, 'model_aliases:\n  "claude-*": coder\n  "gpt-5*": coder\n', {"coder": CODER})
    runner = CliRunner()
    r = runner.invoke(app, ["config", "show-openai-compat", "--home", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    view = orjson.loads(r.output)
    assert list(view["model_aliases"].items()) == [("claude-*", "coder"), ("gpt-5*", "coder")]
    coder = next(a for a in view["agents"] if a["id"] == "coder")
    assert coder["aliases"] == ["claude-*", "gpt-5*"] and coder["route"] == "local/echo"
    r = runner.invoke(app, ["config", "show-openai-compat", "--home", str(tmp_path)], env={"COLUMNS": "160"})
    assert r.exit_code == 0, r.output
    assert "model_aliases.claude-*" in r.output and "model_aliases.gpt-5*" in r.output
    assert "claude-* -> coder, gpt-5* -> coder" in r.output


def test_validate_and_serve_both_refuse_an_alias_to_no_agent(tmp_path: Path) -> None:
    _home(tmp_path, 'model_aliases:\n  "claude-*": coder\n')
    r = CliRunner().invoke(app, ["config", "validate", "--home", str(tmp_path)], env={"COLUMNS": "200"})
    assert r.exit_code == 2 and "model_aliases.claude-* (line 2): no agent 'coder' (known: default)" in r.output
    r = run_bmo(tmp_path, "serve", "--port", "0")
    assert r.returncode == 2, r.stderr
    assert "model_aliases.claude-* (line 2): no agent 'coder' (known: default)" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bmo.db").exists()  # refused before the store was touched: no key minted


def test_validate_lists_the_aliases(tmp_path: Path) -> None:
    _home(tmp_path, 'model_aliases:\n  "claude-*": coder\n', {"coder": CODER})
    r = CliRunner().invoke(app, ["config", "validate", "--home", str(tmp_path)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "2 agent(s): coder, default" in r.output and "claude-* -> coder" in r.output
