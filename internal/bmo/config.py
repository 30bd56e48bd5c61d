"""Typed configuration (layer 1). One loader, visible defaults, one precedence:

    built-in defaults  <  BMO_HOME/config.yaml  <  environment (BMO_*)  <  command-line flags

A bad file never half-starts the server: `load_config` raises `ConfigError` naming the file, the
key, its line and the problem. Every setting, its default and its environment variable is listed
in `ENV_VARS` and in README.md (a test keeps the two in step). `providers` and `model_aliases` are
mappings the file alone sets (no environment variable).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import shlex
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from bmo import defaults  # imported, not named in a string: the frozen binary sees it
from bmo.errors import ConfigError

PROVIDER_KINDS = ("openai", "anthropic", "echo")


@dataclass(slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 9000
    max_body_mb: float = 8
    shutdown_grace_s: float = 10
    log_format: str = "text"
    log_level: str = "info"  # debug | info | warning | error; access lines are info: warning and above hide them
    access_log: bool = True  # false: no access lines (`openai_compat.fired`/`.action`); the ledger still has every run
    header_timeout_s: float = 10  # a connection must send complete headers (and keep a body coming) this fast
    max_connections: int = 1024  # open client connections at once (lowered to fit the open-file limit)
    metrics_public: bool = False  # true: GET /metrics needs no key (for a scraper on a private network)
    workers: int = 1  # serving processes on one port (SO_REUSEPORT, Linux); "auto": one per CPU


@dataclass(slots=True)
class AuthConfig:
    mode: str = "keys"  # keys | none


@dataclass(slots=True)
class ProviderConfig:
    kind: str = "openai"
    base_url: str = ""
    api_key_env: str | None = None
    timeout_s: float = 600
    connect_timeout_s: float = 10
    headers: dict[str, str] = field(default_factory=dict)
    max_response_mb: float = 32  # an upstream answer (whole or streamed) larger than this is 502 upstream_too_large


@dataclass(slots=True)
class McpServerConfig:
    """One MCP tool server (SPEC §9): a stdio `command` or a streamable-HTTP `url`, never both.
    `${VAR}` in `env` and `headers` values is expanded from bmo's environment when the server is
    started, so secrets stay out of the file (and out of `bmo config show-openai-compat`)."""

    command: list[str] = field(default_factory=list)  # argv; a string is split like a shell would
    url: str = ""
    env: dict[str, str] = field(default_factory=dict)  # what the child sees besides PATH and HOME
    headers: dict[str, str] = field(default_factory=dict)  # sent on every HTTP request
    cwd: str | None = None
    timeout_s: float = 120  # one tools/call; past it the call is cancelled and the model reads an error
    startup_timeout_s: float = 60  # start + initialize + tools/list (npx cold starts take ~20 s)


TEAM_STRATEGIES = ("fallback", "round_robin")


@dataclass(slots=True)
class TeamConfig:
    """`team:NAME` (SPEC §10): agents in order and how to pick one. The ids are checked where
    agents are loaded (bmo.agents)."""

    agents: list[str] = field(default_factory=list)
    strategy: str = "fallback"  # fallback | round_robin


@dataclass(slots=True)
class OpenAICompatConfig:
    enabled: bool = True
    concurrency: int = 64
    queue_timeout_s: float = 30
    keepalive_s: float = 15
    expose_routes: bool = False
    system_messages: str = "append"  # append | ignore | reject
    cors_origins: list[str] = field(default_factory=list)
    max_steps: int = 8


@dataclass(slots=True)
class SessionsConfig:
    from_user: bool = False
    from_openwebui_chat_id: bool = True
    ttl_days: float = 30


@dataclass(slots=True)
class LedgerConfig:
    store_content: bool = False
    retention_days: float = 30


@dataclass(slots=True)
class ResponsesConfig:
    store: bool = True  # false: no Responses object is kept, whatever a request's `store` says
    retention_days: float = 30


@dataclass(slots=True)
class StoreConfig:
    # "" = SQLite in BMO_HOME/bmo.db; postgresql://user:password@host:port/db = a database that
    # several bmo replicas share (needs `pip install 'bmo[postgres]'`; the binary has it)
    url: str = ""
    pool_size: int = 10  # PostgreSQL connections per bmo process


@dataclass(slots=True)
class Config:
    home: Path = field(default_factory=lambda: Path("~/.bmo").expanduser())
    server: ServerConfig = field(default_factory=ServerConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    default_agent: str = "default"
    # glob (fnmatch, case-sensitive) -> agent id, in file order: tried after exact ids (SPEC §4), so
    # clients that send their own model ids (Claude Code, Codex) reach an agent. The targets are
    # checked where agents are loaded (bmo.agents), since only there are the agent ids known.
    model_aliases: dict[str, str] = field(default_factory=dict)
    agents_dir: str = "agents"
    mcp_servers: dict[str, McpServerConfig] = field(default_factory=dict)
    teams: dict[str, TeamConfig] = field(default_factory=dict)
    openai_compat: OpenAICompatConfig = field(default_factory=OpenAICompatConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    responses: ResponsesConfig = field(default_factory=ResponsesConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    config_file: Path | None = None
    config_written: bool = False  # true when this start wrote the default config.yaml
    lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False)  # dotted key -> line
    # dotted key -> where its value came from ("file", "env BMO_PORT", "flag --port"); absent: default
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def where(self, key: str) -> str:
        """`key (line N)` when the key came from config.yaml, so later checks can say where too."""
        return f"{key} (line {self.lines[key]})" if key in self.lines else key

    @property
    def db_path(self) -> Path:
        return self.home / "bmo.db"

    @property
    def store_target(self) -> Path | str:
        """What the store opens: the PostgreSQL URL when `store.url` is set, else bmo.db."""
        return self.store.url or self.db_path

    @property
    def agents_path(self) -> Path:
        p = Path(self.agents_dir).expanduser()
        return p if p.is_absolute() else self.home / p

    def is_loopback(self) -> bool:
        return is_loopback_host(self.server.host)


_SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "auth": AuthConfig,
    "openai_compat": OpenAICompatConfig,
    "sessions": SessionsConfig,
    "ledger": LedgerConfig,
    "responses": ResponsesConfig,
    "store": StoreConfig,
}
_TOP_SCALARS = {"default_agent": str, "agents_dir": str}
_MAPPINGS = ("providers", "model_aliases", "mcp_servers", "teams")  # name -> mapping; the file alone sets them

_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("auth", "mode"): ("keys", "none"),
    ("openai_compat", "system_messages"): ("append", "ignore", "reject"),
    ("server", "log_format"): ("text", "json"),
    ("server", "log_level"): ("debug", "info", "warning", "error"),
}
_POSITIVE = {
    ("server", "max_body_mb"),
    ("server", "header_timeout_s"),
    ("server", "max_connections"),
    ("server", "workers"),
    ("openai_compat", "concurrency"),
    ("openai_compat", "max_steps"),
    ("openai_compat", "keepalive_s"),
}


def _env_table() -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    for section, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name == "cors_origins":
                table["BMO_CORS_ORIGINS"] = (section, f.name)
                continue
            table[f"BMO_{section.upper()}_{f.name.upper()}"] = (section, f.name)
    for key in _TOP_SCALARS:
        table[f"BMO_{key.upper()}"] = ("", key)
    # short aliases people type
    table["BMO_HOST"] = ("server", "host")
    table["BMO_PORT"] = ("server", "port")
    table["BMO_AUTH"] = ("auth", "mode")
    table["BMO_CONCURRENCY"] = ("openai_compat", "concurrency")
    return table


ENV_VARS: dict[str, tuple[str, str]] = _env_table()


def is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_home(env: dict[str, str] | None = None) -> Path:
    home = os.environ.get("BMO_HOME") if env is None else env.get("BMO_HOME")
    return Path(home or "~/.bmo").expanduser()


def store_target(home: Path | None = None, env: dict[str, str] | None = None) -> Path | str:
    """Where the store is, read even from a config that is otherwise broken (a leaked key must be
    revocable while config.yaml has a typo): BMO_STORE_URL, else `store.url` in config.yaml, else
    bmo.db in the home. The URL is not checked here; opening it is."""
    env = dict(os.environ) if env is None else env
    home = (home or default_home(env)).expanduser()
    url = env.get("BMO_STORE_URL", "").strip()
    if not url:
        try:
            data = yaml.safe_load((home / "config.yaml").read_text("utf-8"))
            url = str(data["store"]["url"] or "").strip()
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            url = ""
    return url or home / "bmo.db"


def default_config_text() -> str:
    return resources.files(defaults).joinpath("config.yaml").read_text("utf-8")


def load_config(
    home: Path | None = None,
    *,
    env: dict[str, str] | None = None,
    flags: dict[str, Any] | None = None,
    write_default: bool = True,
) -> Config:
    """Build the effective config. Raises ConfigError; never returns a half-valid config."""
    env = dict(os.environ) if env is None else env
    home = (home or default_home(env)).expanduser()
    cfg = Config(home=home)
    path = home / "config.yaml"
    cfg.config_file = path
    if not path.exists() and write_default:
        try:
            home.mkdir(parents=True, exist_ok=True)
            path.write_text(default_config_text(), "utf-8")
            cfg.config_written = True
        except OSError as e:
            raise ConfigError(str(path), None, f"cannot write the default config: {e}") from e
    if path.exists():
        _apply_file(cfg, path)
    _apply_env(cfg, env)
    for dotted, value in (flags or {}).items():
        if value is None:
            continue
        section, _, key = dotted.rpartition(".")
        _set(cfg, section, key, value, "command line", f"--{key.replace('_', '-')}")
    _finish(cfg, env)
    return cfg


def _line_index(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """Map dotted keys to 1-based line numbers, so errors can say where."""
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                dotted = f"{prefix}{k.value}"
                out[dotted] = k.start_mark.line + 1
                out.update(_line_index(v, dotted + "."))
    return out


def read_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """Parse a YAML file; a syntax error becomes a ConfigError with its line."""
    try:
        text = path.read_text("utf-8")
    except OSError as e:
        raise ConfigError(str(path), None, f"cannot read: {e}") from e
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> tuple[Any, dict[str, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(source, where, f"invalid YAML: {problem}") from e
    return data, _line_index(node)


def _apply_file(cfg: Config, path: Path) -> None:
    data, lines = read_yaml(path)
    if data is None:
        return
    src = str(path)
    cfg.lines = lines
    where = cfg.where

    if not isinstance(data, dict):
        raise ConfigError(src, None, "the top level must be a mapping of keys")
    for key, value in data.items():
        if key in _SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(src, where(key), "must be a mapping")
            for sub, v in value.items():
                _set(cfg, key, str(sub), v, src, where(f"{key}.{sub}"))
        elif key in _TOP_SCALARS:
            _set(cfg, "", key, value, src, where(key))
        elif key == "providers":
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(src, where(key), "must be a mapping of name -> provider")
            for name, pv in value.items():
                cfg.providers[str(name)] = _provider(str(name), pv, src, where, f"providers.{name}")
        elif key == "model_aliases":
            cfg.model_aliases = _aliases(value, src, where)
        elif key == "mcp_servers":
            cfg.mcp_servers = _named(value, src, where, key, _mcp_server)
        elif key == "teams":
            cfg.teams = _named(value, src, where, key, _team)
        else:
            known = ", ".join(sorted([*_SECTIONS, *_TOP_SCALARS, *_MAPPINGS]))
            raise ConfigError(src, where(str(key)), f"unknown key (known: {known})")


def _aliases(raw: Any, src: str, where: Any) -> dict[str, str]:
    """`model_aliases: {glob: agent id}`; the order is kept (the first glob that matches wins)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            src, where("model_aliases"), 'must be a mapping of glob -> agent id, e.g. {"claude-*": coder}'
        )
    out: dict[str, str] = {}
    for glob, target in raw.items():
        key = f"model_aliases.{glob}"
        if not isinstance(glob, str) or not glob.strip():
            raise ConfigError(src, where(key), 'a model alias must be a non-empty glob string, e.g. "claude-*"')
        if not isinstance(target, str) or not target.strip():
            raise ConfigError(src, where(key), f"must name an agent id, got {target!r}")
        out[glob] = target.strip()
    return out


def _named(raw: Any, src: str, where: Any, section: str, one: Any) -> dict[str, Any]:
    """A `name -> mapping` section (`mcp_servers`, `teams`), each entry read by `one`."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(src, where(section), "must be a mapping of name -> settings")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        name = str(name)
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ConfigError(src, where(f"{section}.{name}"), "a name may hold only letters, digits, '-' and '_'")
        out[name] = one(value, src, where, f"{section}.{name}")
    return out


def _fields(cls: Any, raw: Any, src: str, where: Any, key: str, what: str) -> Any:
    """A dataclass `cls` from the mapping `raw`, each value coerced to its field's type."""
    if not isinstance(raw, dict):
        raise ConfigError(src, where(key), f"{what} must be a mapping")
    obj = cls()
    hints = get_type_hints(cls)
    for k, v in raw.items():
        if k not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(src, where(f"{key}.{k}"), f"unknown key (known: {known})")
        if k == "command" and isinstance(v, str):
            v = shlex.split(v)
        setattr(obj, k, _coerce(v, hints[k], src, where(f"{key}.{k}")))
    return obj


def _mcp_server(raw: Any, src: str, where: Any, key: str) -> McpServerConfig:
    mc: McpServerConfig = _fields(McpServerConfig, raw, src, where, key, "an MCP server")
    if bool(mc.command) == bool(mc.url):
        raise ConfigError(
            src, where(key), "needs exactly one of `command` (a stdio server) or `url` (a streamable-HTTP server)"
        )
    if mc.url and not mc.url.startswith(("http://", "https://")):
        raise ConfigError(src, where(f"{key}.url"), "must start with http:// or https://")
    for k in ("timeout_s", "startup_timeout_s"):
        if getattr(mc, k) <= 0:
            raise ConfigError(src, where(f"{key}.{k}"), "must be > 0")
    return mc


def _team(raw: Any, src: str, where: Any, key: str) -> TeamConfig:
    tc: TeamConfig = _fields(TeamConfig, raw, src, where, key, "a team")
    if not tc.agents:
        raise ConfigError(src, where(f"{key}.agents"), "a team needs at least one agent")
    if tc.strategy not in TEAM_STRATEGIES:
        raise ConfigError(src, where(f"{key}.strategy"), f"must be one of {', '.join(TEAM_STRATEGIES)}")
    return tc


def _provider(name: str, raw: Any, src: str, where: Any, key: str) -> ProviderConfig:
    if not isinstance(raw, dict):
        raise ConfigError(src, where(key), "a provider must be a mapping with at least `kind`")
    pc = ProviderConfig()
    hints = get_type_hints(ProviderConfig)
    for k, v in raw.items():
        if k not in hints:
            known = ", ".join(f.name for f in dataclasses.fields(ProviderConfig))
            raise ConfigError(src, where(f"{key}.{k}"), f"unknown provider key (known: {known})")
        setattr(pc, k, _coerce(v, hints[k], src, where(f"{key}.{k}")))
    if pc.kind not in PROVIDER_KINDS:
        raise ConfigError(src, where(f"{key}.kind"), f"must be one of {', '.join(PROVIDER_KINDS)}")
    if "/" in name or not name:
        raise ConfigError(src, where(key), "a provider name must not be empty or contain '/'")
    if pc.kind == "openai" and not pc.base_url:
        pc.base_url = "https://api.openai.com/v1"
    if pc.kind == "anthropic" and not pc.base_url:
        pc.base_url = "https://api.anthropic.com"
    if pc.kind != "echo" and not pc.base_url.startswith(("http://", "https://")):
        raise ConfigError(src, where(f"{key}.base_url"), "must start with http:// or https://")
    if pc.timeout_s <= 0:
        raise ConfigError(src, where(f"{key}.timeout_s"), "must be > 0")
    if pc.max_response_mb <= 0:
        raise ConfigError(src, where(f"{key}.max_response_mb"), "must be > 0")
    return pc


def _coerce(value: Any, typ: Any, src: str, key: str) -> Any:
    origin = get_origin(typ)
    args = get_args(typ)
    if origin is not None and type(None) in args:  # Optional[X]
        if value is None:
            return None
        typ = next(a for a in args if a is not type(None))
        origin, args = get_origin(typ), get_args(typ)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(src, key, f"must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(src, key, f"must be a whole number, got {value!r}")
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(src, key, f"must be a whole number, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(src, key, f"must be a number, got {value!r}")
        try:
            return float(str(value).strip())
        except ValueError:
            raise ConfigError(src, key, f"must be a number, got {value!r}") from None
    if typ is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(src, key, f"must be a string, got {value!r}")
        return str(value)
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(src, key, f"must be a list, got {value!r}")
        return [_coerce(v, args[0], src, key) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(src, key, f"must be a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], src, f"{key}.{k}") for k, v in value.items()}
    raise ConfigError(src, key, f"unsupported type {typ!r}")  # pragma: no cover


def _set(cfg: Config, section: str, key: str, value: Any, src: str, where: str) -> None:
    target: Any = cfg if not section else getattr(cfg, section, None)
    cls = type(target)
    if target is None or (section and section not in _SECTIONS):
        raise ConfigError(src, where, f"unknown section {section!r}")
    hints = get_type_hints(cls)
    if key not in hints or (not section and key not in _TOP_SCALARS):
        known = ", ".join(f.name for f in dataclasses.fields(cls)) if section else ", ".join(_TOP_SCALARS)
        raise ConfigError(src, where, f"unknown key (known: {known})")
    if (section, key) == ("server", "workers") and str(value).strip().lower() == "auto":
        value = os.cpu_count() or 1
    v = _coerce(value, hints[key], src, where)
    choices = _CHOICES.get((section, key))
    if choices and v not in choices:
        raise ConfigError(src, where, f"must be one of {', '.join(choices)}, got {v!r}")
    if (section, key) in _POSITIVE and v <= 0:
        raise ConfigError(src, where, f"must be greater than 0, got {v!r}")
    if (section, key) == ("server", "port") and not 0 <= v <= 65535:
        raise ConfigError(src, where, f"must be a port number (1-65535, or 0 for any free port), got {v!r}")
    setattr(target, key, v)
    kind = "file" if src == str(cfg.config_file) else "env" if src == "environment" else "flag"
    cfg.sources[f"{section}.{key}" if section else key] = kind if kind == "file" else f"{kind} {where}"


def _apply_env(cfg: Config, env: dict[str, str]) -> None:
    for name, (section, key) in ENV_VARS.items():
        if name in env and env[name] != "":
            _set(cfg, section, key, env[name], "environment", name)


def _finish(cfg: Config, env: dict[str, str]) -> None:
    # OPENAI_API_KEY / OPENAI_BASE_URL register an `openai` provider unless the file has one.
    if "openai" not in cfg.providers and (env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL")):
        cfg.providers["openai"] = ProviderConfig(
            kind="openai",
            base_url=env.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
            api_key_env="OPENAI_API_KEY",
        )
    # `local` (the offline echo provider) is always there.
    cfg.providers.setdefault("local", ProviderConfig(kind="echo"))
    for name, pc in cfg.providers.items():
        pc.base_url = pc.base_url.rstrip("/")
        if pc.api_key_env is not None and not pc.api_key_env.replace("_", "").isalnum():
            raise ConfigError(
                str(cfg.config_file),
                f"providers.{name}.api_key_env",
                "must name an environment variable (the key itself is never written in the config)",
            )
    url = cfg.store.url = cfg.store.url.strip()
    if url and url.split("://", 1)[0] not in ("postgresql", "postgres"):
        raise ConfigError(
            str(cfg.config_file),
            cfg.where("store.url"),
            "must be empty (SQLite in BMO_HOME/bmo.db) or a postgresql://user:password@host:port/db URL",
        )
    if cfg.store.pool_size < 1:
        raise ConfigError(str(cfg.config_file), cfg.where("store.pool_size"), "must be at least 1")
    if cfg.auth.mode == "none" and not cfg.is_loopback():
        raise ConfigError(
            str(cfg.config_file),
            "auth.mode",
            f"auth.mode none is refused when binding the non-loopback address {cfg.server.host!r}: "
            "anyone who can reach it could use your upstream keys. Bind 127.0.0.1 or use auth.mode keys.",
        )


def as_dict(cfg: Config) -> dict[str, Any]:
    """The effective config as plain data (for `bmo config show-openai-compat`, posture)."""
    d = dataclasses.asdict(cfg)
    d["home"] = str(cfg.home)
    d["config_file"] = str(cfg.config_file) if cfg.config_file else None
    d.pop("config_written", None)
    d.pop("lines", None)
    d["store"]["url"] = re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", cfg.store.url)  # never a password
    for server in d.get("mcp_servers", {}).values():
        for part in ("env", "headers"):  # `${VAR}` references are shown; a value written out is not
            server[part] = {k: v if _is_reference(v) else "***" for k, v in server[part].items()}
    return d


def _is_reference(value: str) -> bool:
    return value.startswith("${") and value.endswith("}") and value.count("$") == 1
