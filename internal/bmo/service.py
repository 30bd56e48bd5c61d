"""The chat service (layer 4): resolve the agent, plan the run, admit it, run the loop.

It is what every wire adapter (Chat Completions today; Responses and Messages later) calls: the
adapter parses into a `ChatRequest`, calls `start`, and renders the `ActiveRun`'s events. The
service watches the events go by (tool calls made, time to first token, usage) so the ledger
and posture can be fed from one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bmo.agents import AgentRegistry, AgentSpec
from bmo.chat import (
    ChatRequest,
    Completion,
    Event,
    ReasoningDelta,
    ServerToolCall,
    ServerToolResult,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    UpstreamCall,
    Usage,
)
from bmo.config import Config
from bmo.errors import BmoError, RateLimited, UpstreamError
from bmo.loop import Plan, plan_run, run_agent, run_agent_whole
from bmo.providers import Provider
from bmo.runs import RunEvent
from bmo.sessions import Bound, SessionManager, is_background_task, owner_of, session_name
from bmo.tools import BUILTINS, Tool


@dataclass(slots=True)
class RunInfo:
    """What one run did, filled in as its events pass (read by the ledger and posture)."""

    request_id: str
    route: str
    started: float = field(default_factory=time.monotonic)
    agent: str | None = None
    upstream_route: str | None = None
    ttfb_ms: float | None = None
    tool_calls: int = 0  # server-side tool calls executed + client tool calls returned
    server_tools_ran: bool = False
    usage: Usage = field(default_factory=Usage)
    events: list[RunEvent] = field(default_factory=list)
    session_id: str | None = None
    content: dict[str, Any] | None = None  # prompt and answer, kept only with ledger.store_content
    completion_id: str = ""

    def event(self, name: str, detail: dict[str, Any] | None = None) -> None:
        self.events.append(RunEvent(name, (time.monotonic() - self.started) * 1000, detail))


class Observer:
    """Watches a run's events go by (called by the loop for each): fills `RunInfo` for the ledger
    and collects the answer for the session transcript. Plain calls, no generator layer."""

    __slots__ = ("info", "bound", "calls", "wants_all_text")

    def __init__(self, info: RunInfo, bound: Bound | None) -> None:
        self.info = info
        self.bound = bound
        self.calls: dict[int, ToolCall] = {}
        self.wants_all_text = bound is not None  # the first token times the run; a session keeps them all

    def __call__(self, ev: Event) -> None:
        info = self.info
        kind = type(ev)
        if kind is TextDelta or kind is ToolCallDelta or kind is ReasoningDelta:
            if info.ttfb_ms is None:
                info.ttfb_ms = (time.monotonic() - info.started) * 1000
                info.event("first_token")
            if self.bound is None:
                if kind is TextDelta:
                    return
            elif kind is TextDelta:
                self.bound.answer_text.append(ev.text)  # type: ignore[union-attr]
                return
        if isinstance(ev, ToolCallDelta):
            if ev.id is not None:
                info.tool_calls += 1
                info.event("tool_call", {"name": ev.name, "side": "client"})
            if self.bound is not None:
                call = self.calls.get(ev.index)
                if call is None:
                    call = self.calls[ev.index] = ToolCall(ev.id or f"call_{ev.index}", ev.name or "", "")
                call.arguments += ev.arguments
        elif isinstance(ev, UpstreamCall):
            info.event("upstream_request", {"step": ev.step, "route": ev.route})
        elif isinstance(ev, ServerToolCall):
            info.event("tool_call", {"name": ev.call.name, "side": "server"})
        elif isinstance(ev, ServerToolResult):
            info.tool_calls += 1
            info.server_tools_ran = True
            info.event("tool_result", {"name": ev.name, "is_error": ev.is_error})
        elif isinstance(ev, Usage):
            info.usage = ev


@dataclass(slots=True)
class ActiveRun:
    """One admitted run. The adapter either iterates `stream()` or awaits `complete()`, then calls
    `finish()` when the client has the whole answer, and always `close()`."""

    agent: AgentSpec
    plan: Plan
    info: RunInfo
    provider: Provider
    observer: Observer
    bound: Bound | None = None
    _events: AsyncIterator[list[Event]] | None = None

    @property
    def warnings(self) -> list[str]:
        return self.plan.warnings

    def stream(self) -> AsyncIterator[list[Event]]:
        """The run's events in batches, as `run_agent` yields them."""
        self._events = run_agent(self.plan, self.provider, observe=self.observer)
        return self._events

    def complete(self) -> Awaitable[Completion]:
        """The whole answer. The loop's own coroutine, not one more layer around it: on a
        `BmoError` the adapter calls `failed(e)`, as it does for a stream."""
        return run_agent_whole(self.plan, self.provider, observe=self.observer)

    def failed(self, e: BmoError) -> None:
        if isinstance(e, (UpstreamError, RateLimited)):
            self.info.event("upstream_error", {"code": e.code, "message": e.message[:300]})

    async def finish(self) -> None:
        """The run is done and answered: its exchange joins the session transcript."""
        if self.bound is not None:
            self.bound.answer_calls = [self.observer.calls[i] for i in sorted(self.observer.calls)]
            await self.bound.commit()

    async def close(self) -> None:
        """Always called by the adapter when it is done: stops the run (and with it the upstream
        request, at once, when the client went away), and frees its session."""
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError, BmoError):  # already closing in a cancelled task
                await aclose()
        if self.bound is not None:
            self.bound.release()


class ChatService:
    def __init__(
        self,
        cfg: Config,
        agents: AgentRegistry,
        providers: dict[str, Provider],
        tools: dict[str, Tool] | None = None,
        sessions: SessionManager | None = None,
    ) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.agents = agents
        self.providers = providers
        self.tools: dict[str, Tool] = tools if tools is not None else {n: cls() for n, cls in BUILTINS.items()}
        compat = cfg.openai_compat
        self._admission = Admission(compat.concurrency, compat.queue_timeout_s)

    def resolve(self, model: str | None, agent_header: str | None) -> AgentSpec:
        return self.agents.resolve(model, agent_header)

    async def begin(
        self,
        req: ChatRequest,
        info: RunInfo,
        agent: AgentSpec,
        *,
        headers: Mapping[str, str] | None = None,
        principal: object = None,
    ) -> ActiveRun:
        """Bind the request to its session (if it names one), then plan the run. Everything that
        can fail as a client error happens here, before any upstream work."""
        bound: Bound | None = None
        if self.sessions is not None and not is_background_task(req):
            named = session_name(headers or {}, req, self.cfg, agent)
            if named is not None:
                bound = await self.sessions.bind(owner_of(principal), named[0], named[1], agent, req)
                info.session_id = bound.session.id
        try:
            run = self.start(req, info, agent, bound)
        except BaseException:
            if bound is not None:
                bound.release()
            raise
        return run

    def start(self, req: ChatRequest, info: RunInfo, agent: AgentSpec, bound: Bound | None = None) -> ActiveRun:
        info.agent = agent.id
        info.upstream_route = agent.model
        info.event("resolved", {"agent": agent.id, "upstream_route": agent.model})
        plan = plan_run(
            agent,
            req,
            self.tools,
            system_policy=self.cfg.openai_compat.system_messages,
            max_steps=self.cfg.openai_compat.max_steps,
        )
        return ActiveRun(
            agent=agent,
            plan=plan,
            info=info,
            provider=self.providers[agent.provider],
            observer=Observer(info, bound),
            bound=bound,
        )

    def admit(self) -> Admission:
        """At most `concurrency` runs at once; a request that waits past the queue timeout gets 429.
        Use as `async with service.admit():`."""
        return self._admission


class Admission:
    """The run slots, as an async context manager. A class, not `@asynccontextmanager`: it is
    entered on every request, and a generator-based manager costs a generator and two extra
    frames each time (scripts/bench/RESULTS.md)."""

    __slots__ = ("slots", "concurrency", "queue_timeout")

    def __init__(self, concurrency: int, queue_timeout: float) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self.concurrency = concurrency
        self.queue_timeout = queue_timeout

    async def __aenter__(self) -> None:
        slots = self.slots
        if not slots.locked():
            await slots.acquire()  # the common case: no task, no timer
            return
        try:
            await asyncio.wait_for(slots.acquire(), self.queue_timeout)
        except TimeoutError:
            raise RateLimited(
                f"bmo is running {self.concurrency} requests already and this one "
                f"waited {self.queue_timeout:g}s for a slot; retry shortly.",
                code="concurrency_limit",
                headers={"retry-after": "1"},
            ) from None

    async def __aexit__(self, *exc: object) -> None:
        self.slots.release()
