"""The composition root (layer 5): builds everything a running bmo needs, and closes it.

Nothing in bmo creates long-lived objects at import time; they are all made here, once, in
dependency order, and closed in reverse. The server and the CLI ask for a `Runtime`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import time
from typing import Any

from bmo.agents import AgentRegistry, load_agents
from bmo.config import Config
from bmo.errors import ConfigError
from bmo.posture import WINDOW_MAX, WINDOW_S, PostureWindow
from bmo.providers import ClientSession, Provider, build_providers, open_session
from bmo.recorder import AccessLog, Recorder
from bmo.runs import Persistence, RunRecord
from bmo.service import Admission, ChatService
from bmo.sessions import SessionManager
from bmo.store.backend import make_store
from bmo.store.keys import KeyStore
from bmo.store.leases import LeaseStore
from bmo.store.ledger import LedgerWriter, get_run, list_runs, prune_forever, run_stats
from bmo.store.responses import ResponseStore
from bmo.store.sessions import SessionStore
from bmo.store.verifier import CachedKeyVerifier
from bmo.store.workers import server_id
from bmo.tools.catalog import catalog
from bmo.tools.registry import ToolRegistry
from bmo.workers import Fleet, WorkerSlot, summed, workers_view

LOUD = ("debug", "info")  # the log levels that show access lines
log = logging.getLogger("bmo.runtime")


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
        # SQLite in BMO_HOME/bmo.db, or the PostgreSQL database in `store.url` (store.backend).
        self.db = make_store(cfg.store_target, pool_size=cfg.store.pool_size)
        self.key_store = KeyStore(self.db)
        self.keys = CachedKeyVerifier(self.key_store)
        self._keys_task: asyncio.Task[None] | None = None
        # The ledger: runs are recorded in memory at once and written by the writer's own task.
        self.persistence = Persistence()
        self.ledger = LedgerWriter(self.db, self.persistence)
        self.db.on_down = self.ledger.store_down  # posture's persistence follows the database's health
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
        # Server-side tools: the built-ins and every MCP server's (started in open()).
        self.tools = ToolRegistry(cfg.mcp_servers)
        self.tool_warnings: list[str] = []
        # `bmo serve --workers N`: this process's slot (set before open()), and its row (bmo.workers)
        self.worker: WorkerSlot | None = None
        self.fleet: Fleet | None = None

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
        if self.worker is not None:
            self.recorder.log.max_write = select.PIPE_BUF  # N workers write to one stderr
            self.fleet = Fleet(self.worker, self.db, self.recorder.metrics, self.persistence, server_id(self.cfg.home))
            await self.fleet.start()
        self._prune_task = asyncio.create_task(
            prune_forever(
                self.db,
                self.cfg.ledger.retention_days,
                self.sessions.store,
                self.cfg.sessions.ttl_days,
                self.responses,
                self.cfg.responses.retention_days,
                lease=LeaseStore(self.db),  # one pruner among the workers (and replicas)
            ),
            name="bmo-retention",
        )
        compat = self.cfg.openai_compat
        share = compat.concurrency if self.worker is None else self.worker.share(compat.concurrency)
        self.http = open_session(share)
        self.providers = build_providers(self.cfg, self.http)
        await self.open_tools()
        self.service = ChatService(
            self.cfg,
            self.agents,
            self.providers,
            self.recorder,
            tools=self.tools,
            sessions=self.sessions,
            responses=self.responses,
        )
        if self.worker is not None:  # the server's concurrency is the total: this worker's share of it
            self.service.admission = Admission(share, compat.queue_timeout_s)

    async def open_tools(self) -> None:
        """Start the MCP servers (each within its `startup_timeout_s`), then check every agent's
        tools against what they listed: a tool that does not exist on a running server is a
        ConfigError (start-up stops); one whose server is down is a warning (it is retried in
        the background, and its tools appear when it comes up)."""
        await self.tools.open()
        self.tool_warnings = []
        for agent in self.agents.agents.values():
            try:
                self.tool_warnings += self.tools.check(agent.id, agent.tools)
            except ConfigError as e:  # name the agent's file, as every other agent error does
                raise ConfigError(agent.source, "tools", e.problem) from None
        for w in self.tool_warnings:
            log.warning("%s", w)

    def tool_status(self) -> list[dict[str, Any]]:
        """Each MCP server's state, for posture and `bmo tools list`."""
        return self.tools.status()

    def tool_catalog(self, agent: str | None = None) -> dict[str, Any]:
        """Every tool, the agents that may use it, and each MCP server's state (KeyError: no
        such agent)."""
        return catalog(self.tools, {a.id: a.tools for a in self.agents.agents.values()}, agent)

    async def close(self) -> None:
        await self.tools.close()  # every MCP server's process group, before anything else goes
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
            await self.sessions.close()  # session leases given back
            if self.fleet is not None:
                await self.fleet.close()  # the last counters, for this slot's next worker
                self.fleet = None
            await self.keys.close()  # the last batch of last-used times
            await self.db.close()

    async def abort(self) -> None:
        """Close what a start-up that failed part way left open (open() raised, or the server
        never bound); a no-op once close() has run. Without it the store's worker thread keeps a
        failed `bmo serve` alive forever."""
        if self.db.is_open or self.http is not None:
            await self.close()
        else:
            await self.tools.close()

    async def list_runs(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        route: str | None = None,
        status: int | None = None,
        agent: str | None = None,
        outcome: str | None = None,
        client: str | None = None,
        ua: str | None = None,
    ) -> tuple[list[RunRecord], str | None]:
        """The ledger's runs, newest first, and the next page's cursor (None at the end). Waits for
        the writer's flush first, so the run behind an `X-Request-Id` a client just got is there.
        The server reads the store only through here (tests/test_layers.py)."""
        await self.ledger.flush()
        return await list_runs(
            self.db,
            limit=limit,
            cursor=cursor,
            route=route,
            status=status,
            agent=agent,
            outcome=outcome,
            client=client,
            ua=ua,
        )

    async def get_run(self, request_id: str) -> RunRecord | None:
        """One run with its events, after the writer's flush (see list_runs)."""
        await self.ledger.flush()
        return await get_run(self.db, request_id)

    async def run_stats(self, minutes: int) -> tuple[float, list[dict[str, Any]]]:
        """The last `minutes` of the ledger as per-minute buckets (store.ledger.run_stats), after
        the writer's flush (see list_runs); and where they start. The buckets end now, not at a
        whole minute, so the newest is never a half-empty minute."""
        await self.ledger.flush()
        since = time.time() - minutes * 60
        return since, await run_stats(self.db, since=since, minutes=minutes)

    async def fleet_posture(
        self, *, asking: int = 1
    ) -> tuple[PostureWindow, Persistence, int, list[dict[str, Any]], float]:
        """With several workers: the whole server's posture window (from the ledger every worker
        writes, after this one's flush), ledger persistence, requests in flight, workers, and
        when the oldest of them started."""
        assert self.fleet is not None
        await self.ledger.flush()
        rows = await self.fleet.rows(asking)
        _, persistence, in_flight = summed(rows)
        records, _ = await list_runs(self.db, limit=WINDOW_MAX, since=time.time() - WINDOW_S)
        window = PostureWindow()
        window.extend(records)
        started = min((r.started for r in rows), default=self.started_at)
        return window, persistence, in_flight, workers_view(rows), started

    async def fleet_metrics(self, *, asking: int = 1) -> str:
        """With several workers: /metrics for the whole server, summed over the `workers` rows
        (`asking`: the requests in flight not to count, the scrape itself)."""
        assert self.fleet is not None
        rows = await self.fleet.rows(asking)
        metrics, persistence, in_flight = summed(rows)
        live = [r for r in workers_view(rows) if r["state"] == "up"]
        return metrics.render(in_flight=in_flight, persistence=persistence) + (
            "# HELP bmo_workers Worker processes serving now.\n# TYPE bmo_workers gauge\n"
            f"bmo_workers {len(live)}\n"
            "# HELP bmo_worker_restarts_total Worker processes that replaced one that died.\n"
            "# TYPE bmo_worker_restarts_total counter\n"
            f"bmo_worker_restarts_total {sum(r.restarts for r in rows)}\n"
        )

    def store_health(self) -> str | None:
        """None when the store is writable, else why not (for GET /health)."""
        return self.db.health()

    def chat(self) -> ChatService:
        assert self.service is not None, "Runtime.open() was not called"
        return self.service
