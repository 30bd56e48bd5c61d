"""Configuration: defaults, precedence, the default file, and errors that say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from bmo.agents import AgentRegistry, load_agents
from bmo.config import ENV_VARS, load_config
from bmo.errors import ConfigError, NotFound


def test_empty_home_writes_commented_default_that_loads_to_the_defaults(tmp_path: Path) -> None:
    home = tmp_path / "h"
    cfg = load_config(home, env={})
    text = (home / "config.yaml").read_text()
    assert cfg.config_written and "# bmo configuration" in text
    assert cfg.server.port == 9000 and cfg.auth.mode == "keys" and cfg.openai_compat.concurrency == 64
    assert set(cfg.providers) == {"local"}
    again = load_config(home, env={})
    assert not again.config_written and again.server == cfg.server and again.openai_compat == cfg.openai_compat


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("server: {port: 9100, host: 127.0.0.2}\nopenai_compat: {concurrency: 8}\n")
    cfg = load_config(tmp_path, env={})
    assert (cfg.server.port, cfg.server.host, cfg.openai_compat.concurrency) == (9100, "127.0.0.2", 8)
    cfg = load_config(tmp_path, env={"BMO_PORT": "9200", "BMO_OPENAI_COMPAT_CONCURRENCY": "4"})
    assert (cfg.server.port, cfg.openai_compat.concurrency) == (9200, 4)
    cfg = load_config(tmp_path, env={"BMO_PORT": "9200"}, flags={"server.port": 9300})
    assert cfg.server.port == 9300 and cfg.server.host == "127.0.0.2"
    cfg = load_config(tmp_path, env={"BMO_CORS_ORIGINS": "http://a, http://b"})
    assert cfg.openai_compat.cors_origins == ["http://a", "http://b"]


def test_openai_env_registers_a_provider(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "http://127.0.0.1:1234/v1/"})
    p = cfg.providers["openai"]
    assert (p.kind, p.base_url, p.api_key_env) == ("openai", "http://127.0.0.1:1234/v1", "OPENAI_API_KEY")


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("server:\n  port: lots\n", "server.port (line 2)", "whole number"),
        ("server: {port: 70000}\n", "server.port (line 1)", "port number"),
        ("openai_compat: {concurrency: 0}\n", "openai_compat.concurrency (line 1)", "greater than 0"),
        ("auth:\n  mode: open\n", "auth.mode (line 2)", "one of keys, none"),
        ("sever: {}\n", "sever (line 1)", "unknown key"),
        ("openai_compat:\n  concurency: 3\n", "openai_compat.concurency (line 2)", "unknown key"),
        ("providers:\n  x: {kind: grok}\n", "providers.x.kind (line 2)", "must be one of"),
        ("providers:\n  x: {kind: openai, base_url: ftp://h}\n", "providers.x.base_url (line 2)", "http"),
        ("providers:\n  x: {kind: openai, api_key_env: sk-123-abc}\n", "providers.x.api_key_env", "environment"),
        ("server: [1, 2\n", "line 2", "invalid YAML"),
        ("auth: {mode: none}\nserver: {host: 0.0.0.0}\n", "auth.mode", "refused"),
    ],
)
def test_bad_config_names_file_key_line_and_problem(tmp_path: Path, text: str, key: str, problem: str) -> None:
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path, env={})
    assert str(tmp_path / "config.yaml") in str(e.value)
    assert e.value.key == key
    assert problem in e.value.problem


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path, env={"BMO_PORT": "ninety"})
    assert (e.value.file, e.value.key) == ("environment", "BMO_PORT")


def test_every_env_var_maps_to_a_real_setting(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={})
    for name, (section, key) in ENV_VARS.items():
        target = getattr(cfg, section) if section else cfg
        assert hasattr(target, key), name


def _agent(tmp_path: Path, text: str) -> Path:
    (tmp_path / "agents").mkdir(exist_ok=True)
    p = tmp_path / "agents" / "a.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("id: bad id\nmodel: local/echo\n", "id (line 1)", "letters"),
        ("id: a\nmodel: echo\n", "model (line 2)", "route"),
        ("id: a\nmodel: nowhere/x\n", "model (line 2)", "unknown provider"),
        ("id: a\nmodel: local/echo\ntools: [shell]\n", "tools (line 3)", "unknown tool"),
        ("id: a\nmodel: local/echo\nparams: {temprature: 1}\n", "params.temprature (line 3)", "unknown param"),
        ("id: a\nmodel: local/echo\nsytem: hi\n", "sytem (line 3)", "unknown agent key"),
    ],
)
def test_bad_agent_file(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = _agent(tmp_path, text)
    cfg = load_config(tmp_path, env={})
    with pytest.raises(ConfigError) as e:
        load_agents(cfg)
    assert e.value.file == str(path) and e.value.key == key and problem in e.value.problem


def test_default_agent_must_exist(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("default_agent: ghost\n")
    with pytest.raises(ConfigError) as e:
        load_agents(load_config(tmp_path, env={}))
    assert e.value.key == "default_agent"


def test_agent_file_can_replace_default_and_resolution(tmp_path: Path) -> None:
    _agent(tmp_path, "id: default\nmodel: local/echo\nsystem: custom\n")
    cfg = load_config(tmp_path, env={})
    reg = AgentRegistry(cfg, load_agents(cfg))
    assert reg.resolve(None).system == "custom"
    assert reg.resolve("agent:default") is reg.default
    with pytest.raises(NotFound):
        reg.resolve("local/echo")  # routes are hidden unless expose_routes


def test_agents_dir_must_be_a_folder(tmp_path: Path) -> None:
    # a file there used to be skipped silently: the agents in it were simply missing
    (tmp_path / "config.yaml").write_text("agents_dir: coder.yaml\n")
    (tmp_path / "coder.yaml").write_text("id: coder\nmodel: local/echo\n")
    with pytest.raises(ConfigError) as e:
        load_agents(load_config(tmp_path, env={}))
    assert e.value.file == str(tmp_path / "config.yaml") and e.value.key == "agents_dir"
    assert "is not a folder" in e.value.problem


def test_the_config_remembers_where_each_key_was(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("server:\n  port: 9100\nmodel_aliases:\n  'gpt-5*': default\n")
    cfg = load_config(tmp_path, env={})
    assert cfg.where("server.port") == "server.port (line 2)"
    assert cfg.where("model_aliases.gpt-5*") == "model_aliases.gpt-5* (line 4)"
    assert cfg.where("auth.mode") == "auth.mode"  # not in the file: no line to name
    assert load_config(tmp_path, env={}) == cfg  # the line index is not part of the config's value


def test_mcp_servers_and_teams_are_read_and_checked(tmp_path: Path) -> None:
    from bmo.config import as_dict

    (tmp_path / "config.yaml").write_text(
        "mcp_servers:\n"
        "  fs: {command: 'npx -y server-fs /srv', env: {TOKEN: '${FS_TOKEN}', PLAIN: secret}}\n"
        "  docs: {url: 'http://127.0.0.1:8931/mcp', headers: {Authorization: 'Bearer abc'}, timeout_s: 5}\n"
        "teams:\n  duo: {agents: [default]}\n"
    )
    cfg = load_config(tmp_path, env={})
    assert cfg.mcp_servers["fs"].command == ["npx", "-y", "server-fs", "/srv"]
    assert cfg.mcp_servers["docs"].timeout_s == 5 and cfg.mcp_servers["docs"].startup_timeout_s == 60
    assert cfg.teams["duo"].strategy == "fallback"
    shown = as_dict(cfg)["mcp_servers"]
    assert shown["fs"]["env"] == {"TOKEN": "${FS_TOKEN}", "PLAIN": "***"}  # a written-out secret is never shown
    assert shown["docs"]["headers"] == {"Authorization": "***"}
    for bad, words in [
        ("mcp_servers:\n  x: {}\n", "exactly one of `command`"),
        ("mcp_servers:\n  x: {command: [a], url: 'http://h'}\n", "exactly one of `command`"),
        ("mcp_servers:\n  x: {url: 'ftp://h'}\n", "http://"),
        ("mcp_servers:\n  x: {command: [a], timeout_s: 0}\n", "> 0"),
        ("mcp_servers:\n  x: {command: [a], colour: red}\n", "unknown key"),
        ("mcp_servers:\n  'a b': {command: [a]}\n", "letters, digits"),
        ("teams:\n  t: {agents: []}\n", "at least one agent"),
    ]:
        (tmp_path / "config.yaml").write_text(bad)
        with pytest.raises(ConfigError) as e:
            load_config(tmp_path, env={})
        assert words in str(e.value), (bad, str(e.value))


def test_agent_tools_name_builtins_or_configured_mcp_servers(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "config.yaml").write_text("mcp_servers:\n  fs: {command: [true]}\n")
    agent = tmp_path / "agents" / "a.yaml"
    agent.write_text("id: a\nmodel: local/echo\ntools: [calculator, fs/*, fs/read_file]\n")
    cfg = load_config(tmp_path, env={})
    assert load_agents(cfg)["a"].tools == ["calculator", "fs/*", "fs/read_file"]
    for tools, words in [
        ("[web/*]", "unknown MCP server 'web'"),
        ("[fs/]", "names no tool"),
        ("[browser]", "unknown tool 'browser'"),
    ]:
        agent.write_text(f"id: a\nmodel: local/echo\ntools: {tools}\n")
        with pytest.raises(ConfigError) as e:
            load_agents(cfg)
        assert words in str(e.value) and "a.yaml" in str(e.value)


def test_store_url_is_checked_and_never_shown_with_its_password(tmp_path: Path) -> None:
    from bmo.cli.config_cmd import settings
    from bmo.config import as_dict, load_config, store_target

    (tmp_path / "config.yaml").write_text('store: {url: "postgresql://bmo:s3cret@db:5432/bmo", pool_size: 3}\n')
    cfg = load_config(tmp_path, env={})
    assert cfg.store_target == "postgresql://bmo:s3cret@db:5432/bmo" and cfg.store.pool_size == 3
    assert as_dict(cfg)["store"]["url"] == "postgresql://bmo:***@db:5432/bmo"
    assert "s3cret" not in str(settings(cfg))
    assert load_config(tmp_path, env={"BMO_STORE_URL": "postgres://x@h/d"}).store_target == "postgres://x@h/d"
    assert load_config(tmp_path, env={"BMO_STORE_URL": ""}).store.url  # empty env: the file's
    (tmp_path / "config.yaml").write_text('store: {url: "mysql://x"}\nserver: {port: many}\n')
    assert store_target(tmp_path, env={}) == "mysql://x"  # read even from a broken file (api-key revoke)
    (tmp_path / "config.yaml").write_text('store: {url: "mysql://x"}\n')
    with pytest.raises(ConfigError, match="postgresql://"):
        load_config(tmp_path, env={})
    assert store_target(tmp_path / "nothing", env={}) == tmp_path / "nothing" / "bmo.db"
