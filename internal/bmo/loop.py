"""The agent loop (layer 3): model call → server-side tools → model call …, as a stream of events.

It knows nothing of HTTP or the store. It yields internal events: text and reasoning deltas,
client tool-call deltas (re-indexed so the client sees 0, 1, 2…), `UpstreamCall`,
`ServerToolCall`/`ServerToolResult` (for the ledger and keep-alives), exactly one `Finish`, and
last the `Usage` summed over every upstream call of the run.

Server-side tools are executed here and never shown to the client as `tool_calls`. A client
tool call ends the run with `finish_reason: "tool_calls"`; the client's follow-up request
(carrying the `tool` message) continues the conversation. When one model turn calls both kinds,
the client calls win and the server calls of that turn are not run: the client's follow-up
history will not contain them, and the model calls them again if it still needs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from bmo.agents import AgentSpec
from bmo.chat import (
    ChatRequest,
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


async def run_agent(plan: Plan, provider: Provider, *, stream: bool) -> AsyncIterator[Event]:
    messages = list(plan.messages)
    usage = Usage()
    tool_choice = plan.tool_choice
    route = plan.agent.model
    step = 0
    while True:
        step += 1
        call = ModelCall(
            model=plan.agent.upstream_model,
            messages=messages,
            params=plan.params,
            tools=plan.tools,
            tool_choice=tool_choice,
        )
        yield UpstreamCall(step=step, route=route)
        calls: dict[int, _Call] = {}
        n_client = 0
        text: list[str] = []
        reason = "stop"
        if stream:
            source: AsyncIterator[Event] = provider.stream(call)
        else:
            source = _aiter((await provider.complete(call)).events())
        async for ev in source:
            if isinstance(ev, TextDelta):
                text.append(ev.text)
                yield ev
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
                        yield ToolCallDelta(
                            index=c.client_index,
                            id=c.id or f"call_{step}_{ev.index}",
                            name=c.name,
                            arguments="".join(c.args),
                        )
                elif c.kind == "client" and ev.arguments:
                    yield ToolCallDelta(index=c.client_index, arguments=ev.arguments)
            elif isinstance(ev, ReasoningDelta):
                yield ev
            elif isinstance(ev, Finish):
                reason = ev.reason
            elif isinstance(ev, Usage):
                usage.add(ev)
        for idx, c in calls.items():
            if c.kind is None:  # a call that never named itself: show it to the client as-is
                c.kind, c.client_index = "client", n_client
                n_client += 1
                yield ToolCallDelta(
                    index=c.client_index, id=c.id or f"call_{step}_{idx}", name="", arguments="".join(c.args)
                )
        if n_client:
            yield Finish("tool_calls")
            break
        server = [
            ToolCall(id=c.id or f"call_{step}_{i}", name=c.name or "", arguments="".join(c.args))
            for i, c in sorted(calls.items())
            if c.kind == "server"
        ]
        if not server:
            yield Finish("stop" if reason == "tool_calls" else reason)
            break
        if step >= plan.max_steps:
            yield Finish("length")  # the model still wanted tools: the answer is cut short
            break
        messages.append(Message(role="assistant", content="".join(text) or None, tool_calls=server))
        for tc in server:
            yield ServerToolCall(tc)
            result = await _run_tool(plan.server_tools[tc.name], tc)
            yield result
            messages.append(Message(role="tool", content=result.output, tool_call_id=tc.id))
        if isinstance(tool_choice, dict) or tool_choice == "required":
            tool_choice = "auto"  # a forced choice applies to the first turn only, or it never ends
    yield usage


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


async def _aiter(events: list[Event]) -> AsyncIterator[Event]:
    for ev in events:
        yield ev
