"""The chat service (layer 4): owns every run from its first byte to its ledger row.

A `Run` is one request on a compat route, and the one object that holds its facts. The server
makes it when a request arrives (`Run(service, …)` in `_dispatch`), so that a 401 or a 404 is recorded like
any other run, and reports only HTTP facts on it (status, first byte sent, client gone). A
dialect's handler parses the body into a `ChatRequest` and enters

    async with run.admitted(req, headers, caller):   # resolve, admit, session, plan
        ... run.stream() or await run.complete(), then await run.finish()

and `ChatService.end(run, status)` turns the finished run into its ledger row, its posture and
metrics, and its access line. The loop shows every event to the run (`Run.__call__`), which
keeps what the ledger and the session need: time to first token, tool calls, usage, the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any

from bmo.agents import AgentRegistry, AgentSpec, Team
from bmo.chat import (
    ChatRequest,
    Completion,
    Event,
    Message,
    ReasoningDelta,
    ServerToolCall,
    ServerToolResult,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    UpstreamCall,
    Usage,
    estimate_tokens,
    message_to_json,
)
from bmo.config import Config
from bmo.errors import BmoError, NotFound, RateLimited, UpstreamError, UpstreamRateLimited
from bmo.loop import Plan, plan_run, run_agent, run_agent_whole
from bmo.providers import ModelCall, Provider
from bmo.recorder import Recorder
from bmo.runs import RunEvent, RunRecord, outcome_for
from bmo.sessions import Bound, SessionManager, is_background_task, owner_of, session_name
from bmo.store.responses import ResponseStore, StoredResponse
from bmo.tools import Tool
from bmo.tools.registry import ToolRegistry

log = logging.getLogger("bmo.service")
NO_TOOLS: dict[str, Tool] = {}  # an agent without server-side tools (never written to)


class Run:
    """One request on a compat route: what it asked, what it did, how it ended.

    It is also the agent loop's observer (`__call__`, a plain call per event, no generator
    layer), and the `async with` scope of an admitted run (`admitted`)."""

    __slots__ = (
        "service", "request_id", "route", "method", "started", "wall", "client_ua", "client_ip", "client",
        "caller_prefix", "model_requested", "stream", "agent", "plan", "provider", "bound",
        "ttfb_ms", "tool_calls", "server_tools_ran", "usage", "events", "session_id", "content",
        "status", "error", "client_gone", "first_byte_sent", "fired", "calls", "wants_all_text",
        "answer", "keep", "new_input", "team", "rest", "_events", "_req", "_headers", "_caller", "_slot",
        "_warnings",
    )  # fmt: skip

    def __init__(
        self,
        service: ChatService,
        request_id: str,
        route: str,
        method: str,
        client_ua: str | None,
        client_ip: str | None,
        started: float,
        wall: float,
        client: str | None = None,  # the client's short name (bmo.clients), for the ledger
    ) -> None:
        self.service = service
        self.client = client
        self.request_id = request_id
        self.route = route
        self.method = method
        self.client_ua = client_ua
        self.client_ip = client_ip
        self.started = started
        self.wall = wall
        self.caller_prefix: str | None = None
        self.model_requested: str | None = None
        self.stream = False
        self.agent: AgentSpec | None = None
        self.plan: Plan | None = None
        self.provider: Provider | None = None
        self.bound: Bound | None = None
        self.ttfb_ms: float | None = None
        self.tool_calls = 0  # server-side tool calls executed + client tool calls returned
        self.server_tools_ran = False
        self.usage = Usage()
        self.events = [RunEvent("received", 0.0)]
        self.session_id: str | None = None
        self.content: dict[str, Any] | None = None  # prompt and answer, only with ledger.store_content
        # HTTP facts, set by the server
        self.status = 499  # until something is answered: the client went away first
        self.error: BmoError | None = None  # what the client was told, before or inside the stream
        self.client_gone = False
        self.first_byte_sent = False
        self.fired = False
        # what the loop shows
        self.calls: dict[int, ToolCall] = {}
        self.wants_all_text = False  # the first token times the run; a session or the ledger keeps them all
        self.answer: list[str] = []
        self.keep = False  # the answer is stored (a Responses object): `finish` writes it
        self.new_input: list[Message] = []  # what this request added to the conversation (stored)
        self._events: AsyncIterator[list[Event]] | None = None
        self._slot: Admission | None = None
        self.team: Team | None = None  # the team the request named (SPEC §10)
        self.rest: list[AgentSpec] = []  # its agents still to try when the current one fails

    def event(self, name: str, detail: dict[str, Any] | None = None) -> None:
        self.events.append(RunEvent(name, (time.monotonic() - self.started) * 1000, detail))

    @property
    def warnings(self) -> list[str]:
        return self.plan.warnings if self.plan is not None else []

    # ---- the scope of an admitted run ------------------------------------------------------

    def admitted(self, req: ChatRequest, headers: Mapping[str, str], caller: object) -> Run:
        """`async with run.admitted(req, headers, caller):` resolves the agent (404 before any
        wait), takes a run slot (429 past the queue timeout), binds the session and plans the
        run: everything that can fail as a client error happens on entry, before any upstream
        work. The exit stops the run (and its upstream request, at once, when the client went
        away) and frees the session and the slot."""
        self.model_requested = req.model
        self.stream = req.stream
        self._req = req
        self._headers = headers
        self._caller = caller
        return self

    async def __aenter__(self) -> Run:
        svc = self.service
        req = self._req
        target = svc.agents.resolve(req.model, self._headers.get("X-BMO-Agent"))
        if isinstance(target, Team):
            self.team = target
            agent, *self.rest = target.order()
            self.event("resolved", {"agent": agent.id, "upstream_route": agent.model, "team": target.id})
        else:
            agent = target
            self.event("resolved", {"agent": agent.id, "upstream_route": agent.model})
        self.agent = agent
        slot = svc.admission
        await slot.__aenter__()
        self._slot = slot
        try:
            if req.continues is not None or req.store:
                await self._stored(svc, req)
            if svc.sessions is not None and req.prompt is None and not is_background_task(req):
                named = session_name(self._headers, req, svc.cfg, agent)
                if named is not None:
                    bound_to = self.team.id if self.team is not None else agent.id  # a team's session stays on it
                    self.bound = await svc.sessions.bind(owner_of(self._caller), named[0], named[1], bound_to, req)
                    self.session_id = self.bound.session.id
                    self.wants_all_text = True
            if self.rest:
                self._warnings = list(req.warnings)  # each attempt's plan starts from the parser's
            # as `_plan` does, inline: one call fewer on every request
            compat = svc.cfg.openai_compat
            tools = svc.tools_for(agent) if agent.tools else NO_TOOLS
            self.plan = plan_run(agent, req, tools, system_policy=compat.system_messages, max_steps=compat.max_steps)
            self.provider = svc.providers[agent.provider]
            if svc.recorder.store_content:
                self.content = {"messages": [message_to_json(m) for m in req.messages], "answer": None}
                self.wants_all_text = True
            svc.fire(self)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    def _plan(self, agent: AgentSpec) -> None:
        """Plan the run for `agent` (a team's next one)."""
        svc = self.service
        compat = svc.cfg.openai_compat
        tools = svc.tools_for(agent)
        self.plan = plan_run(agent, self._req, tools, system_policy=compat.system_messages, max_steps=compat.max_steps)
        self.provider = svc.providers[agent.provider]
        self.agent = agent

    def _fall_over(self, e: BmoError) -> bool:
        """The current agent's upstream failed before the client had a byte of its answer: move
        to the team's next agent (True), or not (False: no team left, nothing to retry, or a
        failure another upstream would not fix). Each attempt is an event."""
        if not self.rest or self.server_tools_ran or self.ttfb_ms is not None or not falls_over(e):
            return False
        assert self.agent is not None and self.team is not None
        self.event("upstream_error", {"code": e.code, "message": e.message[:300], "agent": self.agent.id})
        agent = self.rest.pop(0)
        self.event("resolved", {"agent": agent.id, "upstream_route": agent.model, "team": self.team.id})
        self._req.warnings = list(self._warnings)
        self._plan(agent)
        return True

    async def _stored(self, svc: ChatService, req: ChatRequest) -> None:
        """A request that continues a stored answer gets its conversation first (after the
        request's own instructions); one whose answer is kept remembers what it added."""
        lead = req.preamble  # the request's instructions: they apply to it alone, they are not stored
        self.new_input = req.messages[lead:]
        self.keep = req.store and svc.responses is not None and svc.cfg.responses.store
        self.wants_all_text = self.wants_all_text or self.keep
        if req.continues is None:
            return
        chain = await svc.responses.chain(req.continues, owner_of(self._caller)) if svc.responses else None
        if chain is None:
            raise NotFound(
                f"Previous response with id '{req.continues}' not found.",
                code="previous_response_not_found",
                param="previous_response_id",
            )
        history: list[Message] = []
        for r in chain:
            history += r.input
            history.append(r.output)
        req.messages = [*req.messages[:lead], *history, *self.new_input]

    async def __aexit__(self, *exc: object) -> None:
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError, BmoError):  # already closing in a cancelled task
                await aclose()
        if self.bound is not None:
            self.bound.release()
        if self._slot is not None:
            self._slot.slots.release()
            self._slot = None

    def stream_events(self) -> AsyncIterator[list[Event]]:
        """The run's events in batches, as `run_agent` yields them."""
        assert self.plan is not None and self.provider is not None
        if self.rest:
            return self._stream_team()
        self._events = run_agent(self.plan, self.provider, observe=self)
        return self._events

    async def _stream_team(self) -> AsyncIterator[list[Event]]:
        """A team's run: its agents in turn until one gives a first batch (a generator layer that
        only team runs pay)."""
        while True:
            assert self.plan is not None and self.provider is not None
            events = self._events = run_agent(self.plan, self.provider, observe=self)
            try:
                first = await events.__anext__()
            except BmoError as e:
                if self._fall_over(e):
                    continue
                raise
            break
        yield first
        async for batch in events:
            yield batch

    def complete(self) -> Awaitable[Completion]:
        """The whole answer. The loop's own coroutine, not one more layer around it."""
        assert self.plan is not None and self.provider is not None
        if self.rest:
            return self._complete_team()
        return run_agent_whole(self.plan, self.provider, observe=self)

    async def _complete_team(self) -> Completion:
        while True:
            assert self.plan is not None and self.provider is not None
            try:
                return await run_agent_whole(self.plan, self.provider, observe=self)
            except BmoError as e:
                if not self._fall_over(e):
                    raise

    def failed(self, e: BmoError) -> BmoError:
        """The run failed with `e`, which the client is about to be told; returns it, marked
        not to be retried when the run already executed tools (an SDK's automatic retry would
        run them again)."""
        self.error = e
        if isinstance(e, (UpstreamError, RateLimited)):
            self.event("upstream_error", {"code": e.code, "message": e.message[:300]})
        if self.server_tools_ran:
            e.headers["x-should-retry"] = "false"
        return e

    async def finish(self, final: dict[str, Any] | None = None) -> None:
        """The run is done and its answer rendered (not yet sent): the exchange joins the
        session transcript, and a kept answer (`final`, the object the client is about to get)
        is stored, so that it can be continued the moment the client has it."""
        if self.content is not None:
            self.content["answer"] = "".join(self.answer)
        if self.bound is not None:
            self.bound.answer_text = self.answer
            self.bound.answer_calls = [self.calls[i] for i in sorted(self.calls)]
            await self.bound.commit()
        if self.keep and final is not None:
            svc = self.service
            assert svc.responses is not None and self.agent is not None
            calls = [self.calls[i] for i in sorted(self.calls)]
            output = Message(role="assistant", content="".join(self.answer) or None, tool_calls=calls or None)
            await svc.responses.save(
                StoredResponse(
                    id=final["id"],
                    owner=owner_of(self._caller),
                    previous_id=self._req.continues,
                    agent=self.agent.id,
                    created_at=time.time(),
                    input=self.new_input,
                    output=output,
                    body=final,
                )
            )

    # ---- the loop's observer ---------------------------------------------------------------

    def __call__(self, ev: Event) -> None:
        kind = type(ev)
        if kind is TextDelta or kind is ToolCallDelta or kind is ReasoningDelta:
            if self.ttfb_ms is None:
                self.ttfb_ms = (time.monotonic() - self.started) * 1000
                self.event("first_token")
            if kind is TextDelta:
                if self.wants_all_text:
                    self.answer.append(ev.text)  # type: ignore[union-attr]
                return
        if isinstance(ev, ToolCallDelta):
            if ev.id is not None:
                self.tool_calls += 1
                self.event("tool_call", {"name": ev.name, "side": "client"})
            if self.wants_all_text:
                call = self.calls.get(ev.index)
                if call is None:
                    call = self.calls[ev.index] = ToolCall(ev.id or f"call_{ev.index}", ev.name or "", "")
                call.arguments += ev.arguments
        elif isinstance(ev, UpstreamCall):
            self.event("upstream_request", {"step": ev.step, "route": ev.route})
        elif isinstance(ev, ServerToolCall):
            self.event("tool_call", {"name": ev.call.name, "side": "server"})
        elif isinstance(ev, ServerToolResult):
            self.tool_calls += 1
            self.server_tools_ran = True
            # which server ran it (None: a built-in) and how long it took (SPEC §9)
            detail: dict[str, Any] = {
                "name": ev.name, "server": ev.server, "is_error": ev.is_error, "duration_ms": round(ev.duration_ms, 1)
            }  # fmt: skip
            if ev.is_error:
                detail["error"] = ev.output[:300]
            self.event("tool_result", detail)
        elif isinstance(ev, Usage):
            self.usage = ev

    # ---- the ledger row --------------------------------------------------------------------

    def record(self) -> RunRecord:
        err = self.error
        if self.client_gone:
            self.event("client_disconnected")
        status = 200 if self.first_byte_sent else self.status
        outcome = outcome_for(status, err.outcome if err else None, self.client_gone)
        self.event("finished", {"status": status, "outcome": outcome})
        agent = self.agent
        return RunRecord(
            request_id=self.request_id,
            started_at=self.wall,
            route=self.route,
            method=self.method,
            status=status,
            outcome=outcome,
            error_code=err.code if err else None,
            model_requested=self.model_requested,
            agent=agent.id if agent else None,
            upstream_route=agent.model if agent else None,
            stream=self.stream,
            ttfb_ms=self.ttfb_ms,
            duration_ms=(time.monotonic() - self.started) * 1000,
            prompt_tokens=self.usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens,
            tool_calls=self.tool_calls,
            session_id=self.session_id,
            api_key_prefix=self.caller_prefix,
            client_ua=self.client_ua,
            client_ip=self.client_ip,
            client=self.client,
            events=self.events,
            content=self.content,
        )


class ChatService:
    def __init__(
        self,
        cfg: Config,
        agents: AgentRegistry,
        providers: dict[str, Provider],
        recorder: Recorder,
        tools: ToolRegistry | None = None,
        sessions: SessionManager | None = None,
        responses: ResponseStore | None = None,
    ) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.responses = responses
        self.agents = agents
        self.providers = providers
        self.recorder = recorder
        self.tools = tools if tools is not None else ToolRegistry({})
        self._agent_tools: dict[str, tuple[int, dict[str, Tool]]] = {}  # agent id -> (generation, its tools)
        compat = cfg.openai_compat
        self.admission = Admission(compat.concurrency, compat.queue_timeout_s)

    def tools_for(self, agent: AgentSpec) -> dict[str, Tool]:
        """The agent's server-side tools by exposed name, resolved again only when a tool server's
        list has changed since (the registry's generation)."""
        if not agent.tools:
            return {}
        gen = self.tools.generation
        hit = self._agent_tools.get(agent.id)
        if hit is None or hit[0] != gen:
            hit = self._agent_tools[agent.id] = (gen, self.tools.resolve(agent.tools))
        return hit[1]

    async def count_tokens(self, run: Run, req: ChatRequest, headers: Mapping[str, str]) -> int:
        """The input tokens of what the agent would send for `req` (its prompt, the messages and
        every tool it offers): the upstream's own count where its provider has one, else
        `chat.estimate_tokens`. No run slot, no session: nothing is generated."""
        target = self.agents.resolve(req.model, headers.get("X-BMO-Agent"))
        agent = target.agents[0] if isinstance(target, Team) else target  # counted for the first agent
        run.model_requested = req.model
        run.agent = agent
        run.event("resolved", {"agent": agent.id, "upstream_route": agent.model})
        self.fire(run)
        compat = self.cfg.openai_compat
        tools = self.tools_for(agent)
        plan = plan_run(agent, req, tools, system_policy=compat.system_messages, max_steps=compat.max_steps)
        call = ModelCall(
            model=agent.upstream_model,
            messages=plan.messages,
            params=plan.params,
            tools=plan.tools,
            tool_choice=plan.tool_choice,
            beta=plan.beta,
        )
        try:
            n = await self.providers[agent.provider].count_tokens(call)
        except BmoError as e:
            raise run.failed(e) from None
        return n if n is not None else estimate_tokens(plan.messages, plan.tools)

    async def stored_response(self, rid: str, caller: object) -> StoredResponse:
        """A stored Responses object of this caller's; 404 `response_not_found` otherwise."""
        found = await self.responses.get(rid, owner_of(caller)) if self.responses is not None else None
        if found is None:
            raise NotFound(f"Response with id '{rid}' not found.", code="response_not_found", param="response_id")
        return found

    async def delete_response(self, rid: str, caller: object) -> None:
        if self.responses is None or not await self.responses.delete(rid, owner_of(caller)):
            raise NotFound(f"Response with id '{rid}' not found.", code="response_not_found", param="response_id")

    def fire(self, run: Run) -> None:
        """The `openai_compat.fired` line: once per request, when it is accepted."""
        if not run.fired:
            run.fired = True
            self.recorder.fired(run.request_id, run.route, run.agent.id if run.agent else None, run.client_ua)

    def end(self, run: Run) -> None:
        """The run is over: its ledger row, posture, metrics and access line. Never raises: a
        ledger failure never fails a request."""
        try:
            if not run.fired:  # a run refused before it was accepted still gets its line
                self.fire(run)
            self.recorder.finish(run.record())
        except Exception:
            log.exception("could not record run %s", run.request_id)


def falls_over(e: BmoError) -> bool:
    """An upstream failure another agent's upstream may not share (SPEC §10): no answer at all
    (connect error, timeout), a 5xx, a 429. A 4xx, or an answer too large, would fail alike."""
    if isinstance(e, UpstreamRateLimited):
        return True
    if not isinstance(e, UpstreamError) or e.code == "upstream_too_large":
        return False
    return e.upstream_status is None or e.upstream_status >= 500


class Admission:
    """The run slots: at most `concurrency` runs at once; a request that waits past the queue
    timeout gets 429. A class, not `@asynccontextmanager`: it is entered on every request, and a
    generator-based manager costs a generator and two extra frames each time
    (scripts/bench/RESULTS.md)."""

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
