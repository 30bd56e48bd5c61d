"""The agent loop (layer 3): model call → server-side tools → model call …

It knows nothing of HTTP or the store. `run_agent` streams what the client sees, in batches (the
events of one upstream read): text and reasoning deltas, client tool-call deltas (re-indexed so
the client sees 0, 1, 2…), exactly one `Finish`, and last the `Usage` summed over every upstream
call. `run_agent_whole` returns the same answer in one piece. Each mode reads its upstream its own
way (a stream, or one whole answer: the cheapest for each); everything else — the conversation,
the decision after each call, the server-side tools — is the one `_Steps`. Both show every event, including
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
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bmo.agents import AgentSpec
from bmo.chat import (
    END,
    LENGTH,
    STOP_SEQUENCE,
    TOOL_CALLS,
    ChatRequest,
    Completion,
    Event,
    Finish,
    Message,
    ReasoningDelta,
    RedactedThinking,
    ServerToolCall,
    ServerToolResult,
    TextDelta,
    Thinking,
    ThinkingSignature,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolSpec,
    UpstreamCall,
    Usage,
)
from bmo.errors import InvalidRequest
from bmo.providers import ModelCall, Provider
from bmo.tools import Tool, ToolFailed, ToolOutput

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
    tool_choice: ToolChoice | None
    max_steps: int
    warnings: list[str] = field(default_factory=list)
    beta: str | None = None
    prompt: str | None = None  # a raw text completion (chat.ChatRequest.prompt)
    suffix: str | None = None


def plan_run(
    agent: AgentSpec,
    req: ChatRequest,
    server_tools: dict[str, Tool],  # the agent's own, by exposed name (ChatService.tools_for)
    *,
    system_policy: str,
    max_steps: int,
) -> Plan:
    warnings = req.warnings  # what the parser dropped, then what the plan drops
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

    tools = [t.spec for t in server_tools.values()]
    own = server_tools.keys()
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
        server_tools=server_tools,
        client_tools=frozenset(client),
        tool_choice=req.tool_choice,
        max_steps=agent.max_steps or max_steps,
        warnings=warnings,
        beta=req.beta,
        prompt=req.prompt,
        suffix=req.suffix,
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


class _Steps:
    """What both modes share: one run's conversation across its upstream calls, and the one
    decision after each call (`after`): finish with a stop reason, or run the server-side tools
    the model asked for and call it again."""

    __slots__ = ("plan", "provider", "observe", "messages", "usage", "tool_choice", "step")

    def __init__(self, plan: Plan, provider: Provider, observe: Observer) -> None:
        self.plan = plan
        self.provider = provider
        self.observe = observe
        self.messages = list(plan.messages)
        self.usage = Usage()
        self.tool_choice = plan.tool_choice
        self.step = 0

    def call(self) -> ModelCall:
        """The next upstream call."""
        self.step += 1
        plan = self.plan
        self.observe(UpstreamCall(step=self.step, route=plan.agent.model))
        return ModelCall(
            model=plan.agent.upstream_model,
            messages=self.messages,
            params=plan.params,
            tools=plan.tools,
            tool_choice=self.tool_choice,
            beta=plan.beta,
            prompt=plan.prompt,
            suffix=plan.suffix,
        )

    async def after(
        self, text: str, thinking: list[Thinking] | None, n_client: int, server: list[ToolCall], reason: str
    ) -> str | None:
        """The run's stop reason, or None when the server-side tools have run and the model must be
        called again. A client call ends the run; so does a turn with no server call, or the
        last step the agent allows (cut short: `length`)."""
        if n_client:
            return TOOL_CALLS
        if not server:
            return END if reason == TOOL_CALLS else reason
        if self.step >= self.plan.max_steps:
            return LENGTH  # the model still wanted tools: the answer is cut short
        self.messages.append(Message(role="assistant", content=text or None, tool_calls=server, thinking=thinking))
        for tc in server:
            self.observe(ServerToolCall(tc))
            result = await _run_tool(self.plan.server_tools[tc.name], tc)
            self.observe(result)
            self.messages.append(
                Message(role="tool", content=result.content(), tool_call_id=tc.id, is_error=result.is_error)
            )
        # a forced choice applies to the first turn only, or the loop never ends
        tc_ = self.tool_choice
        if tc_ is not None and tc_.mode in ("required", "tool"):
            self.tool_choice = ToolChoice("auto", parallel=tc_.parallel)
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
    steps = _Steps(plan, provider, observe)
    all_text = getattr(observe, "wants_all_text", True)
    see_text = True
    stop_sequence: str | None = None
    while True:
        calls: dict[int, _Call] = {}
        n_client = 0
        text: list[str] = []
        thinking: list[Thinking] = []
        reasoning: list[str] = []
        reason = END
        upstream = await provider.open_stream(steps.call())
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
                                    id=c.id or f"call_{steps.step}_{ev.index}",
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
                        reasoning.append(ev.text)
                        observe(ev)
                        out.append(ev)
                    elif isinstance(ev, ThinkingSignature):
                        thinking.append(Thinking("".join(reasoning), ev.signature))
                        reasoning.clear()
                        out.append(ev)
                    elif isinstance(ev, RedactedThinking):
                        thinking.append(Thinking(redacted=ev.data))
                        out.append(ev)
                    elif isinstance(ev, Finish):
                        reason, stop_sequence = ev.reason, ev.stop_sequence
                    elif isinstance(ev, Usage):
                        steps.usage.add(ev)
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
                    index=c.client_index, id=c.id or f"call_{steps.step}_{idx}", name="", arguments="".join(c.args)
                )
                observe(delta)
                last.append(delta)
        if reasoning:
            thinking.append(Thinking("".join(reasoning)))
        server = _server_calls(calls, steps.step)
        finish = await steps.after("".join(text), thinking or None, n_client, server, reason)
        if finish is not None:
            last.append(Finish(finish, stop_sequence if finish == STOP_SEQUENCE else None))
            break
        # (`last` is empty here: an unnamed call is a client call, and a client call finishes the run)
    observe(steps.usage)
    last.append(steps.usage)
    yield last


async def run_agent_whole(plan: Plan, provider: Provider, *, observe: Observer = _ignore) -> Completion:
    """The same run for a client that asked for one whole answer: no generator per event, one
    `complete()` per upstream call. Returns what the client sees, usage summed over every call."""
    steps = _Steps(plan, provider, observe)
    text: list[str] = []
    reasoning: list[str] = []
    thinking: list[Thinking] = []
    while True:
        done = await provider.complete(steps.call())
        steps.usage.add(done.usage)
        if done.reasoning:
            reasoning.append(done.reasoning)
        if done.thinking:
            thinking += done.thinking
        if done.content:
            text.append(done.content)
        client = [tc for tc in done.tool_calls if tc.name not in plan.server_tools]
        server = [tc for tc in done.tool_calls if tc.name in plan.server_tools]
        finish = await steps.after(done.content or "", done.thinking, len(client), server, done.finish_reason)
        if finish is not None:
            answer = Completion(
                content="".join(text),
                tool_calls=client,
                finish_reason=finish,
                usage=steps.usage,
                reasoning="".join(reasoning) or None,
                thinking=thinking or None,
                stop_sequence=done.stop_sequence if finish == STOP_SEQUENCE else None,
            )
            for ev in answer.events():
                observe(ev)
            return answer


def _server_calls(calls: dict[int, _Call], step: int) -> list[ToolCall]:
    return [
        ToolCall(id=c.id or f"call_{step}_{i}", name=c.name or "", arguments="".join(c.args))
        for i, c in sorted(calls.items())
        if c.kind == "server"
    ]


async def _run_tool(tool: Tool, tc: ToolCall) -> ServerToolResult:
    """One server-side call; whatever happens is a result the model reads, never an exception
    (a cancelled run, the client gone, is the one thing that propagates)."""
    t0 = time.monotonic()
    server = tool.server
    try:
        args = orjson.loads(tc.arguments) if tc.arguments.strip() else {}
        if not isinstance(args, dict):
            raise ToolFailed("arguments must be a JSON object")
        async with asyncio.timeout(tool.timeout_s):
            out = await tool.run(args)
    except orjson.JSONDecodeError as e:
        out = ToolOutput(f"error: arguments are not valid JSON: {e}", True)
    except ToolFailed as e:
        out = ToolOutput(f"error: {e}", True)
    except TimeoutError:
        out = ToolOutput(f"error: tool took longer than {tool.timeout_s:g}s", True)
    ms = (time.monotonic() - t0) * 1000
    if isinstance(out, str):
        return ServerToolResult(tc.id, tc.name, out, False, server, ms)
    return ServerToolResult(tc.id, tc.name, out.text, out.is_error, server, ms, out.images or None)
