"""The composition root (layer 5): builds everything a running bmo needs, and closes it.

Nothing in bmo creates long-lived objects at import time; they are all made here, once, in
dependency order, and closed in reverse. The server and the CLI ask for a `Runtime`.
"""

from __future__ import annotations

import time

from bmo.agents import AgentRegistry, load_agents
from bmo.config import Config
from bmo.providers import ClientSession, Provider, build_providers, open_session
from bmo.service import ChatService


class Runtime:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.started_at = int(time.time())
        # Validate agents before anything opens: a bad file must stop start-up, not half-start it.
        self.agents = AgentRegistry(cfg, load_agents(cfg))
        self.http: ClientSession | None = None
        self.providers: dict[str, Provider] = {}
        self.service: ChatService | None = None
        self.api_key: str | None = None  # BMO_API_KEY: one admin key with no database row

    async def open(self) -> None:
        self.http = open_session()
        self.providers = build_providers(self.cfg, self.http)
        self.service = ChatService(self.cfg, self.agents, self.providers)

    async def close(self) -> None:
        for p in self.providers.values():
            await p.close()
        if self.http is not None:
            await self.http.close()
            self.http = None

    def chat(self) -> ChatService:
        assert self.service is not None, "Runtime.open() was not called"
        return self.service
