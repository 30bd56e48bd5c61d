"""The agent loop (layer 3): model call → server-side tools → model call …

It knows nothing of HTTP or the store. `run_agent` streams what the client sees, in batches (the
events of one upstream read): text and reasoning deltas, client tool-call deltas (re-indexed so
the client sees 0, 1, 2…), exactly one `Finish`, and last the `Usage` summed over every upstream
call. `run_agent_whole` returns the same answer in one piece. Both show every event, including
`UpstreamCall` and `ServerToolCall`/`ServerToolResult`, to an `observe` callback (the service
feeds the ledger from it): a plain call per event is far cheaper than another generator layer
per token.

Server-side tools are executed here and never shown to the client as `tool_calls`. A client
tool call ends the run with `finish_reason: "tool_calls"`; the client's follow-up request
(carrying the `tool` message) continues the conversation. When one model turn calls both kinds,
the client calls win and the server calls of that turn are not run: the client's follow-up
history will not contain them, and the model calls them again if it still needs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bmo.agents import AgentSpec
from bmo.chat import (
    ChatRequest,
    Completion,
    Event,
    Finish,
    Message,
    ReasoningDelta,
    ServerToolCall,
    ServerToolResult,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    UpstreamCall,
    Usage,
)
from bmo.errors import InvalidRequest
from bmo.providers import ModelCall, Provider
from bmo.tools import Tool, ToolFailed

TOOL_TIMEOUT_S = 30  # one server-side tool call; a hung tool must not hold a run forever
UNSUPPORTED = {"n": lambda v: v != 1}  # one choice per run: an agent run is one conversation


@dataclass(slots=True)
class Plan:
    """Everything one run needs, decided before the first upstream byte (so errors are 4xx)."""

    agent: AgentSpec
    messages: list[Message]
    params: dict[str, Any]
    tools: list[ToolSpec]
    server_tools: dict[str, Tool]
    client_tools: frozenset[str]
    tool_choice: Any
    max_steps: int
    warnings: list[str] = field(default_factory=list)


def plan_run(
    agent: AgentSpec,
    req: ChatRequest,
    server_tools: dict[str, Tool],
    *,
    system_policy: str,
    max_steps: int,
) -> Plan:
    warnings: list[str] = []
    messages: list[Message] = []
    if agent.system:
        messages.append(Message(role="system", content=agent.system))
    for i, m in enumerate(req.messages):
        if m.role in ("system", "developer"):
            if system_policy == "ignore":
                continue
            if system_policy == "reject":
                raise InvalidRequest(
                    f"Agent `{agent.id}` does not accept system or developer messages.",
                    param=f"messages[{i}].role",
                )
            # `developer` is OpenAI's newer name; many upstreams only know `system`
            m = Message(role="system", content=m.content, name=m.name)
        messages.append(m)
    if system_policy == "ignore" and any(m.role in ("system", "developer") for m in req.messages):
        warnings.append("system_messages_ignored")

    params = dict(agent.params)
    for k, v in req.params.items():
        if k in agent.lock:
            warnings.append(f"locked:{k}")
        elif k in UNSUPPORTED and UNSUPPORTED[k](v):
            warnings.append(f"unsupported:{k}")
        else:
            params[k] = v

    tools = [server_tools[name].spec for name in agent.tools if name in server_tools]
    own = {t.name for t in tools}
    client: set[str] = set()
    for t in req.tools:
        if t.name in own:
            warnings.append(f"shadowed_tool:{t.name}")
            continue
        client.add(t.name)
        tools.append(t)
    return Plan(
        agent=agent,
        messages=messages,
        params=params,
        tools=tools,
        server_tools={n: server_tools[n] for n in agent.tools if n in server_tools},
        client_tools=frozenset(client),
        tool_choice=req.tool_choice,
        max_steps=agent.max_steps or max_steps,
        warnings=warnings,
    )


@dataclass(slots=True)
class _Call:
    kind: str | None = None  # "server" | "client", once the name is known
    id: str | None = None
    name: str | None = None
    args: list[str] = field(default_factory=list)
    client_index: int = -1


Observer = Callable[[Event], None]


def _ignore(ev: Event) -> None:
    return None


async def run_agent(plan: Plan, provider: Provider, *, observe: Observer = _ignore) -> AsyncIterator[list[Event]]:
    """The streaming run. Yields what the client sees, in batches: the events of one upstream
    read together (text, reasoning, client tool-call deltas), and last one batch ending with
    the `Finish` and then the total `Usage`. A batch is never empty. Under load one read often
    carries several tokens; the client then gets them in one write too, not one write (and one
    syscall) each. `observe` is also shown the upstream calls and server-side tool calls and
    results (for the ledger), without a generator hop per event. Of the text deltas it sees the
    first, and all of them only if it has `wants_all_text` set (the service's observer does when
    a session keeps the answer): a call per token is not free."""
    messages = list(plan.messages)
    usage = Usage()
    tool_choice = plan.tool_choice
    all_text = getattr(observe, "wants_all_text", True)
    see_text = True
    step = 0
    while True:
        step += 1
        observe(UpstreamCall(step=step, route=plan.agent.model))
        calls: dict[int, _Call] = {}
        n_client = 0
        text: list[str] = []
        reason = "stop"
        upstream = await provider.open_stream(_call(plan, messages, tool_choice))
        try:
            reads = upstream.reads().__aiter__()
            more = True
            while more:
                # The reads and their decoding happen in this frame: one generator layer fewer
                # per read than iterating a provider's own generator.
                if upstream.done:
                    evs, more = upstream.end(), False
                else:
                    try:
                        evs = upstream.decode(await reads.__anext__())
                    except StopAsyncIteration:
                        evs, more = upstream.end(), False
                    except Exception as e:
                        err = upstream.failed(e)
                        if err is e:
                            raise
                        raise err from e
                out: list[Event] = []
                for ev in evs:
                    if type(ev) is TextDelta:
                        text.append(ev.text)
                        if see_text:
                            observe(ev)
                            see_text = all_text
                        out.append(ev)
                    elif isinstance(ev, ToolCallDelta):
                        c = calls.setdefault(ev.index, _Call())
                        c.id = c.id or ev.id
                        c.name = c.name or ev.name
                        c.args.append(ev.arguments)
                        if c.kind is None and c.name:
                            c.kind = "server" if c.name in plan.server_tools else "client"
                            if c.kind == "client":
                                c.client_index = n_client
                                n_client += 1
                                delta = ToolCallDelta(
                                    index=c.client_index,
                                    id=c.id or f"call_{step}_{ev.index}",
                                    name=c.name,
                                    arguments="".join(c.args),
                                )
                                observe(delta)
                                out.append(delta)
                        elif c.kind == "client" and ev.arguments:
                            delta = ToolCallDelta(index=c.client_index, arguments=ev.arguments)
                            observe(delta)
                            out.append(delta)
                    elif isinstance(ev, ReasoningDelta):
                        observe(ev)
                        out.append(ev)
                    elif isinstance(ev, Finish):
                        reason = ev.reason
                    elif isinstance(ev, Usage):
                        usage.add(ev)
                if out:
                    yield out
        finally:
            await upstream.close()
        last: list[Event] = []
        for idx, c in calls.items():
            if c.kind is None:  # a call that never named itself: show it to the client as-is
                c.kind, c.client_index = "client", n_client
                n_client += 1
                delta = ToolCallDelta(
                    index=c.client_index, id=c.id or f"call_{step}_{idx}", name="", arguments="".join(c.args)
                )
                observe(delta)
                last.append(delta)
        server = _server_calls(calls, step)
        finish = _finish(n_client, server, reason, step, plan.max_steps)
        if finish is not None:
            last.append(Finish(finish))
            break
        # (`last` is empty here: an unnamed call is a client call, and a client call finishes the run)
        messages.append(Message(role="assistant", content="".join(text) or None, tool_calls=server))
        await _run_server_tools(plan, server, messages, observe)
        tool_choice = _after_tools(tool_choice)
    observe(usage)
    last.append(usage)
    yield last


async def run_agent_whole(plan: Plan, provider: Provider, *, observe: Observer = _ignore) -> Completion:
    """The same run for a client that asked for one whole answer: no generator per event, one
    `complete()` per upstream call. Returns what the client sees, usage summed over every call."""
    messages = list(plan.messages)
    usage = Usage()
    tool_choice = plan.tool_choice
    text: list[str] = []
    reasoning: list[str] = []
    step = 0
    while True:
        step += 1
        observe(UpstreamCall(step=step, route=plan.agent.model))
        done = await provider.complete(_call(plan, messages, tool_choice))
        usage.add(done.usage)
        if done.reasoning:
            reasoning.append(done.reasoning)
        if done.content:
            text.append(done.content)
        client = [tc for tc in done.tool_calls if tc.name not in plan.server_tools]
        server = [tc for tc in done.tool_calls if tc.name in plan.server_tools]
        if client or not server or step >= plan.max_steps:
            finish = _finish(len(client), server, done.finish_reason, step, plan.max_steps) or "stop"
            answer = Completion(
                content="".join(text),
                tool_calls=client,
                finish_reason=finish,
                usage=usage,
                reasoning="".join(reasoning) or None,
            )
            for ev in answer.events():
                observe(ev)
            return answer
        messages.append(Message(role="assistant", content=done.content or None, tool_calls=server))
        await _run_server_tools(plan, server, messages, observe)
        tool_choice = _after_tools(tool_choice)


def _call(plan: Plan, messages: list[Message], tool_choice: Any) -> ModelCall:
    return ModelCall(
        model=plan.agent.upstream_model,
        messages=messages,
        params=plan.params,
        tools=plan.tools,
        tool_choice=tool_choice,
    )


def _server_calls(calls: dict[int, _Call], step: int) -> list[ToolCall]:
    return [
        ToolCall(id=c.id or f"call_{step}_{i}", name=c.name or "", arguments="".join(c.args))
        for i, c in sorted(calls.items())
        if c.kind == "server"
    ]


def _finish(n_client: int, server: list[ToolCall], reason: str, step: int, max_steps: int) -> str | None:
    """The run's finish_reason, or None when server-side tools must run and the loop go on."""
    if n_client:
        return "tool_calls"
    if not server:
        return "stop" if reason == "tool_calls" else reason
    if step >= max_steps:
        return "length"  # the model still wanted tools: the answer is cut short
    return None


def _after_tools(tool_choice: Any) -> Any:
    # a forced choice applies to the first turn only, or the loop never ends
    return "auto" if isinstance(tool_choice, dict) or tool_choice == "required" else tool_choice


async def _run_server_tools(plan: Plan, server: list[ToolCall], messages: list[Message], observe: Observer) -> None:
    for tc in server:
        observe(ServerToolCall(tc))
        result = await _run_tool(plan.server_tools[tc.name], tc)
        observe(result)
        messages.append(Message(role="tool", content=result.output, tool_call_id=tc.id))


async def _run_tool(tool: Tool, tc: ToolCall) -> ServerToolResult:
    try:
        args = orjson.loads(tc.arguments) if tc.arguments.strip() else {}
        if not isinstance(args, dict):
            raise ToolFailed("arguments must be a JSON object")
        async with asyncio.timeout(TOOL_TIMEOUT_S):
            out = await tool.run(args)
        return ServerToolResult(call_id=tc.id, name=tc.name, output=out)
    except orjson.JSONDecodeError as e:
        return ServerToolResult(tc.id, tc.name, f"error: arguments are not valid JSON: {e}", True)
    except ToolFailed as e:
        return ServerToolResult(tc.id, tc.name, f"error: {e}", True)
    except TimeoutError:
        return ServerToolResult(tc.id, tc.name, f"error: tool took longer than {TOOL_TIMEOUT_S}s", True)
