"""The composition root (layer 5): builds everything a running bmo needs, and closes it.

Nothing in bmo creates long-lived objects at import time; they are all made here, once, in
dependency order, and closed in reverse. The server and the CLI ask for a `Runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from bmo.agents import AgentRegistry, load_agents
from bmo.config import Config
from bmo.providers import ClientSession, Provider, build_providers, open_session
from bmo.recorder import AccessLog, Recorder
from bmo.runs import Persistence, RunRecord
from bmo.service import ChatService
from bmo.sessions import SessionManager
from bmo.store.db import Database
from bmo.store.keys import KeyStore
from bmo.store.ledger import LedgerWriter, get_run, list_runs, prune_forever
from bmo.store.responses import ResponseStore
from bmo.store.sessions import SessionStore
from bmo.store.verifier import CachedKeyVerifier

LOUD = ("debug", "info")  # the log levels that show access lines


class Runtime:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.started_at = int(time.time())
        # Validate agents before anything opens: a bad file must stop start-up, not half-start it.
        self.agents = AgentRegistry(cfg, load_agents(cfg))
        self.http: ClientSession | None = None
        self.providers: dict[str, Provider] = {}
        self.service: ChatService | None = None
        # The store: made now (so the server can be handed the key verifier), opened in open().
        self.db = Database(cfg.db_path)
        self.key_store = KeyStore(self.db)
        self.keys = CachedKeyVerifier(self.key_store)
        self._keys_task: asyncio.Task[None] | None = None
        # The ledger: runs are recorded in memory at once and written by the writer's own task.
        self.persistence = Persistence()
        self.ledger = LedgerWriter(self.db, self.persistence)
        self.recorder = Recorder(
            self.ledger,
            self.persistence,
            store_content=cfg.ledger.store_content,
            # access lines are INFO: off with server.access_log false or a log_level above info
            log=AccessLog(cfg.server.log_format if cfg.server.access_log and cfg.server.log_level in LOUD else "off"),
        )
        self._prune_task: asyncio.Task[None] | None = None
        self.sessions = SessionManager(SessionStore(self.db))
        self.responses = ResponseStore(self.db)

    async def open(self) -> None:
        # The store first: a database that cannot be opened stops start-up with a Unavailable
        # naming the file, before anything else is built.
        await self.db.open()
        try:
            await self.keys.start()
        except BaseException:
            await self.db.close()
            raise
        self._keys_task = asyncio.create_task(self.keys.run(), name="bmo-key-epoch")
        self.ledger.start()
        self._prune_task = asyncio.create_task(
            prune_forever(
                self.db,
                self.cfg.ledger.retention_days,
                self.sessions.store,
                self.cfg.sessions.ttl_days,
                self.responses,
                self.cfg.responses.retention_days,
            ),
            name="bmo-retention",
        )
        self.http = open_session(self.cfg.openai_compat.concurrency)
        self.providers = build_providers(self.cfg, self.http)
        self.service = ChatService(
            self.cfg, self.agents, self.providers, self.recorder, sessions=self.sessions, responses=self.responses
        )

    async def close(self) -> None:
        for p in self.providers.values():
            await p.close()
        if self.http is not None:
            await self.http.close()
            self.http = None
        for task in (self._keys_task, self._prune_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._keys_task = self._prune_task = None
        await self.ledger.close()  # every run accepted so far reaches the disk (SIGTERM loses none)
        self.recorder.log.flush()
        if self.db.is_open:
            await self.keys.close()  # the last batch of last-used times
            await self.db.close()

    async def abort(self) -> None:
        """Close what a start-up that failed part way left open (open() raised, or the server
        never bound); a no-op once close() has run. Without it the store's worker thread keeps a
        failed `bmo serve` alive forever."""
        if self.db.is_open or self.http is not None:
            await self.close()

    async def list_runs(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        route: str | None = None,
        status: int | None = None,
        agent: str | None = None,
        outcome: str | None = None,
    ) -> tuple[list[RunRecord], str | None]:
        """The ledger's runs, newest first, and the next page's cursor (None at the end). Waits for
        the writer's flush first, so the run behind an `X-Request-Id` a client just got is there.
        The server reads the store only through here (tests/test_layers.py)."""
        await self.ledger.flush()
        return await list_runs(
            self.db, limit=limit, cursor=cursor, route=route, status=status, agent=agent, outcome=outcome
        )

    async def get_run(self, request_id: str) -> RunRecord | None:
        """One run with its events, after the writer's flush (see list_runs)."""
        await self.ledger.flush()
        return await get_run(self.db, request_id)

    def store_health(self) -> str | None:
        """None when the store is writable, else why not (for GET /health)."""
        return self.db.health()

    def chat(self) -> ChatService:
        assert self.service is not None, "Runtime.open() was not called"
        return self.service
