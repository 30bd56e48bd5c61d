"""Agents: files → `AgentSpec`, the registry, and model-id resolution (layer 2).

An agent is what a client names in `model`. Resolution order (SPEC §4), first match wins:
header `X-BMO-Agent`; `default` or no model → the configured default agent; an agent id;
`agent:<id>` / `bmo:<id>`; `team:<name>` (a `Team`, SPEC §10); a provider route
`<provider>/<model>` when `expose_routes` is on; the
first `model_aliases` glob (config.yaml, `fnmatch.fnmatchcase`) that matches. Anything else is 404
`model_not_found`. Aliases are not model ids of their own: `/v1/models` lists agents, not globs.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from importlib import resources
from typing import Any

from bmo.chat import SAMPLING
from bmo.config import Config, parse_yaml, read_yaml
from bmo.defaults import agents as default_agents
from bmo.errors import ConfigError, NotFound
from bmo.tools import BUILTINS

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_KEYS = ("id", "description", "model", "system", "tools", "params", "lock", "session", "max_steps")


@dataclass(slots=True)
class AgentSpec:
    id: str
    model: str  # route: <provider>/<upstream model>
    description: str = ""
    system: str = ""
    tools: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    lock: frozenset[str] = frozenset()
    session: dict[str, Any] = field(default_factory=dict)
    max_steps: int | None = None
    source: str = "built-in"

    @property
    def provider(self) -> str:
        return self.model.split("/", 1)[0]

    @property
    def upstream_model(self) -> str:
        return self.model.split("/", 1)[1]


@dataclass(slots=True)
class Team:
    """`team:NAME`: agents in order and a strategy. `order()` is the order to try them in for one
    request: as listed (`fallback`), or starting one further each time (`round_robin`; the rest
    follow, so a failing agent still falls over to the next)."""

    name: str
    agents: list[AgentSpec]
    strategy: str = "fallback"
    _turn: int = 0

    @property
    def id(self) -> str:
        return TEAM_PREFIX + self.name

    def order(self) -> list[AgentSpec]:
        if self.strategy != "round_robin" or len(self.agents) < 2:
            return self.agents
        i = self._turn % len(self.agents)
        self._turn = i + 1
        return [*self.agents[i:], *self.agents[:i]]


TEAM_PREFIX = "team:"
Target = AgentSpec | Team  # what a model id names


def tool_name_problem(name: str, mcp_servers: Collection[str]) -> str | None:
    """Why `name` cannot be in an agent's `tools` (None: it can). A built-in, or an MCP server's
    tools as `SERVER/*` or `SERVER/TOOL`; whether that TOOL exists is known only once the server
    has listed its tools (bmo.tools.registry checks it at start-up)."""
    if name in BUILTINS:
        return None
    server, slash, tool = name.partition("/")
    if not slash:
        known = ", ".join([*BUILTINS, *(f"{s}/*" for s in sorted(mcp_servers))])
        return f"unknown tool {name!r} (known: {known})"
    if server not in mcp_servers:
        configured = ", ".join(sorted(mcp_servers)) or "none"
        return f"unknown MCP server {server!r} in {name!r} (mcp_servers in config.yaml: {configured})"
    if not tool:
        return f"{name!r} names no tool: use {server}/* for all of its tools, or {server}/TOOL"
    return None


def parse_agent(
    data: Any, source: str, lines: dict[str, int], providers: set[str], mcp_servers: Collection[str] = ()
) -> AgentSpec:
    def where(key: str) -> str:
        return f"{key} (line {lines[key]})" if key in lines else key

    if not isinstance(data, dict):
        raise ConfigError(source, None, "an agent file must be a mapping with at least `id` and `model`")
    for k in data:
        if k not in _KEYS:
            raise ConfigError(source, where(str(k)), f"unknown agent key (known: {', '.join(_KEYS)})")
    aid = data.get("id")
    if not isinstance(aid, str) or not ID_RE.match(aid):
        raise ConfigError(
            source,
            where("id"),
            "`id` must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    model = data.get("model")
    if not isinstance(model, str) or "/" not in model or model.startswith("/") or model.endswith("/"):
        raise ConfigError(source, where("model"), "`model` must be a route `<provider>/<model>`, e.g. local/echo")
    prov = model.split("/", 1)[0]
    if prov not in providers:
        raise ConfigError(
            source, where("model"), f"unknown provider {prov!r} (configured: {', '.join(sorted(providers))})"
        )
    system = data.get("system") or ""
    if not isinstance(system, str):
        raise ConfigError(source, where("system"), "`system` must be a string")
    tools = data.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        raise ConfigError(source, where("tools"), "`tools` must be a list of tool names")
    for t in tools:
        problem = tool_name_problem(t, mcp_servers)
        if problem is not None:
            raise ConfigError(source, where("tools"), problem)
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(source, where("params"), "`params` must be a mapping")
    for p in params:
        if p not in SAMPLING:
            raise ConfigError(source, where(f"params.{p}"), f"unknown param (known: {', '.join(SAMPLING)})")
    lock = data.get("lock") or []
    if not isinstance(lock, list) or not all(isinstance(x, str) for x in lock):
        raise ConfigError(source, where("lock"), "`lock` must be a list of param names")
    session = data.get("session") or {}
    if not isinstance(session, dict):
        raise ConfigError(source, where("session"), "`session` must be a mapping")
    max_steps = data.get("max_steps")
    if max_steps is not None and (not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1):
        raise ConfigError(source, where("max_steps"), "`max_steps` must be a positive integer")
    desc = data.get("description") or ""
    return AgentSpec(
        id=aid,
        model=model,
        description=str(desc),
        system=system,
        tools=list(tools),
        params=dict(params),
        lock=frozenset(lock),
        session=dict(session),
        max_steps=max_steps,
        source=source,
    )


def _builtin_default(providers: set[str]) -> AgentSpec:
    ref = resources.files(default_agents).joinpath("default.yaml")
    data, lines = parse_yaml(ref.read_text("utf-8"), "built-in default agent")
    return parse_agent(data, "built-in default agent", lines, providers)


def load_agents(cfg: Config) -> dict[str, AgentSpec]:
    """The built-in `default` plus every `*.yaml`/`*.yml` in agents_dir (a file may replace it)."""
    providers = set(cfg.providers)
    agents = {"default": _builtin_default(providers)}
    d = cfg.agents_path
    if d.exists() and not d.is_dir():
        raise ConfigError(str(cfg.config_file), "agents_dir", f"{d} is not a folder (it must hold the agent files)")
    if d.is_dir():
        seen: dict[str, str] = {}
        for path in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
            data, lines = read_yaml(path)
            spec = parse_agent(data, str(path), lines, providers, cfg.mcp_servers)
            if spec.id in seen:
                raise ConfigError(str(path), "id", f"agent id {spec.id!r} is also defined in {seen[spec.id]}")
            seen[spec.id] = str(path)
            agents[spec.id] = spec
    if cfg.default_agent not in agents:
        raise ConfigError(
            str(cfg.config_file),
            "default_agent",
            f"no agent {cfg.default_agent!r} (known: {', '.join(sorted(agents))})",
        )
    alias_targets(cfg, agents, load_teams(cfg, agents))
    return agents


def load_teams(cfg: Config, agents: dict[str, AgentSpec]) -> dict[str, Team]:
    """`teams:` as `Team`s; a team naming no known agent is a ConfigError (checked at load)."""
    teams: dict[str, Team] = {}
    for name, tc in cfg.teams.items():
        members: list[AgentSpec] = []
        for aid in tc.agents:
            if aid not in agents:
                raise ConfigError(
                    str(cfg.config_file),
                    cfg.where(f"teams.{name}.agents"),
                    f"no agent {aid!r} (known: {', '.join(sorted(agents))})",
                )
            members.append(agents[aid])
        teams[name] = Team(name, members, tc.strategy)
    return teams


def alias_targets(cfg: Config, agents: dict[str, AgentSpec], teams: dict[str, Team]) -> list[tuple[str, Target]]:
    """`model_aliases` as (glob, agent or team) in file order; a glob naming no known agent or
    `team:NAME` is a ConfigError (checked at load, so a typo stops start-up instead of turning
    into 404s later)."""
    out: list[tuple[str, Target]] = []
    for glob, target in cfg.model_aliases.items():
        found: Target | None = agents.get(target)
        if target.startswith(TEAM_PREFIX):
            found = teams.get(target[len(TEAM_PREFIX) :])
        if found is None:
            known = ", ".join([*sorted(agents), *(t.id for t in teams.values())])
            raise ConfigError(
                str(cfg.config_file), cfg.where(f"model_aliases.{glob}"), f"no agent {target!r} (known: {known})"
            )
        out.append((glob, found))
    return out


class AgentRegistry:
    def __init__(self, cfg: Config, agents: dict[str, AgentSpec]) -> None:
        self.agents = agents
        self.default = agents[cfg.default_agent]
        self.expose_routes = cfg.openai_compat.expose_routes
        self.providers = set(cfg.providers)
        routes = {a.model for a in agents.values()} | {"local/echo"}
        self._routes = sorted(routes)
        self._route_agents: dict[str, AgentSpec] = {}
        self.teams = load_teams(cfg, agents)
        self.aliases = alias_targets(cfg, agents, self.teams)

    def model_ids(self) -> list[str]:
        ids = ["default", *sorted(a for a in self.agents if a != "default")]
        ids += [t.id for t in self.teams.values()]
        if self.expose_routes:
            ids += self._routes
        return ids

    def resolve(self, model: str | None, header: str | None = None) -> Target:
        if header:
            return self._lookup(header.strip(), header.strip())
        if model is None or model == "" or model == "default":
            return self.default
        return self._lookup(model, model)

    def _lookup(self, name: str, shown: str) -> Target:
        if name == "default":
            return self.default
        spec = self.agents.get(name)
        if spec is not None:
            return spec
        if name.startswith(TEAM_PREFIX) and name[len(TEAM_PREFIX) :] in self.teams:
            return self.teams[name[len(TEAM_PREFIX) :]]
        for prefix in ("agent:", "bmo:"):
            if name.startswith(prefix) and name[len(prefix) :] in self.agents:
                return self.agents[name[len(prefix) :]]
        if self.expose_routes and "/" in name:
            prov, _, upstream = name.partition("/")
            if prov in self.providers and upstream:
                spec = self._route_agents.get(name)
                if spec is None:
                    spec = AgentSpec(id=name, model=name, description=f"provider route {name}", source="route")
                    if len(self._route_agents) < 1024:  # bounded: clients choose these names
                        self._route_agents[name] = spec
                return spec
        for glob, target in self.aliases:
            if fnmatchcase(name, glob):
                return target
        raise NotFound(
            f"The model `{shown}` does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )

    def get_model(self, model_id: str) -> str:
        """The id to show for GET /v1/models/{id}; 404 when it would not resolve."""
        self._lookup(model_id, model_id)
        return model_id
