"""POST /v1/chat/completions: parse, call the service, render (SPEC §4).

Streaming holds the response headers back until the run yields its first event, so a failure
before any output (unknown upstream model, upstream 401, upstream down) still gets a real HTTP
status. If the run is quiet for `keepalive_s` first (server-side tools, a slow upstream), the
headers go out with a `: keepalive` comment, and keep going out while it stays quiet. After the
first byte, an error becomes a `data: {"error":…}` frame and `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from aiohttp import web

from bmo.chat import ChatRequest, Event, Finish, ReasoningDelta, TextDelta, ToolCall, ToolCallDelta, Usage
from bmo.errors import BmoError, InternalError
from bmo.protocol.openai import ChunkStream, parse_chat_request, parse_json_body, to_completion
from bmo.protocol.openai_upstream import message_obj
from bmo.protocol.sse import KEEPALIVE
from bmo.server.context import RUNTIME, STATE, RequestState
from bmo.server.http import json_response, read_body
from bmo.server.recording import fire
from bmo.service import ActiveRun

log = logging.getLogger("bmo.server")

_OUTPUT = (TextDelta, ToolCallDelta, ReasoningDelta, Finish)
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def raw_messages(req: ChatRequest) -> list[dict[str, Any]]:
    return [message_obj(m) for m in req.messages]


def completion_id() -> str:
    return "chatcmpl-" + secrets.token_urlsafe(18)


def _run_headers(run: ActiveRun) -> dict[str, str]:
    h: dict[str, str] = {"X-BMO-Agent": run.agent.id}
    if run.warnings:
        h["X-BMO-Warning"] = ", ".join(run.warnings)
    return h


def _no_retry(err: BmoError, run: ActiveRun) -> BmoError:
    """A run that already executed tools must not be re-run by an SDK's automatic retry."""
    if run.info.server_tools_ran:
        err.headers["x-should-retry"] = "false"
    return err


async def chat_completions(request: web.Request) -> web.StreamResponse:
    rt = request.app[RUNTIME]
    state: RequestState = request[STATE]
    raw = await read_body(request, rt.max_body)
    req = parse_chat_request(parse_json_body(raw))
    state.model_requested = req.model
    state.stream = req.stream
    service = rt.runtime.chat()
    agent = service.resolve(req.model, request.headers.get("X-BMO-Agent"))
    async with service.admit():
        run = await service.begin(req, state.info, agent, headers=request.headers, principal=state.principal)
        try:
            fire(request, state)
            if rt.runtime.recorder.store_content:
                state.info.content = {"messages": raw_messages(req), "answer": None}
            if req.stream:
                return await _stream(request, run, req.model, req.include_usage, rt.keepalive_s)
            return await _whole(run, req.model)
        finally:
            await run.close()


async def _whole(run: ActiveRun, model: str) -> web.Response:
    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, ToolCall] = {}
    finish = "stop"
    usage = Usage()
    try:
        async for ev in run.events:
            if isinstance(ev, TextDelta):
                text.append(ev.text)
            elif isinstance(ev, ToolCallDelta):
                if ev.index not in calls:
                    calls[ev.index] = ToolCall(id=ev.id or f"call_{ev.index}", name=ev.name or "", arguments="")
                calls[ev.index].arguments += ev.arguments
            elif isinstance(ev, ReasoningDelta):
                reasoning.append(ev.text)
            elif isinstance(ev, Finish):
                finish = ev.reason
            elif isinstance(ev, Usage):
                usage = ev
    except BmoError as e:
        raise _no_retry(e, run) from None
    if run.info.content is not None:
        run.info.content["answer"] = "".join(text)
    body = to_completion(
        rid=completion_id(),
        created=int(time.time()),
        model=model,
        content="".join(text),
        tool_calls=[calls[i] for i in sorted(calls)],
        finish_reason=finish,
        usage=usage,
        reasoning="".join(reasoning) or None,
    )
    return json_response(body, headers=_run_headers(run))


async def _stream(
    request: web.Request, run: ActiveRun, model: str, include_usage: bool, keepalive_s: float
) -> web.StreamResponse:
    chunks = ChunkStream(completion_id(), int(time.time()), model, include_usage)
    resp = web.StreamResponse(status=200, headers={**SSE_HEADERS, **_run_headers(run)})
    it = run.events.__aiter__()
    loop = asyncio.get_running_loop()
    state: RequestState = request[STATE]

    # Wait for the first output, sending keep-alives (and so the headers) only if it is slow.
    # Events that show nothing (an upstream call starting, a server tool running) do not count.
    started = False
    ev: Event | None = None
    try:
        while ev is None:
            nxt = asyncio.ensure_future(it.__anext__())
            try:
                while True:
                    done, _ = await asyncio.wait((nxt,), timeout=keepalive_s)
                    if done:
                        break
                    if not started:
                        await resp.prepare(request)
                        started = True
                    await resp.write(KEEPALIVE)
            finally:
                if not nxt.done():
                    nxt.cancel()
            ev = nxt.result()
            if not isinstance(ev, _OUTPUT):
                ev = None
    except StopAsyncIteration:
        ev = None
    except BmoError as e:
        if not started:
            raise _no_retry(e, run) from None
        await _fail(resp, chunks, _no_retry(e, run), state)
        return resp
    if not started:
        await resp.prepare(request)
    state.first_byte_sent = True
    write = resp.write
    await write(chunks.start())

    # From here on, a quiet run still gets a keep-alive every keepalive_s (a timer, not a task
    # per event: streaming cost per token must stay tiny).
    last = [loop.time()]
    ka = asyncio.ensure_future(_keepalive(resp, last, keepalive_s))
    usage: Usage | None = None
    answer: list[str] | None = [] if state.info.content is not None else None
    try:
        while ev is not None:
            if isinstance(ev, TextDelta):
                await write(chunks.text(ev.text))
                if answer is not None:
                    answer.append(ev.text)
            elif isinstance(ev, ToolCallDelta):
                await write(chunks.tool_call(ev))
            elif isinstance(ev, ReasoningDelta):
                await write(chunks.reasoning(ev.text))
            elif isinstance(ev, Finish):
                await write(chunks.finish(ev.reason))
            elif isinstance(ev, Usage):
                usage = ev
            last[0] = loop.time()
            try:
                ev = await it.__anext__()
            except StopAsyncIteration:
                ev = None
        if usage is not None and include_usage:
            await write(chunks.usage(usage))
        await write(chunks.done())
        if answer is not None and state.info.content is not None:
            state.info.content["answer"] = "".join(answer)
    except BmoError as e:
        await _fail(resp, chunks, _no_retry(e, run), state)
    except ConnectionError:  # the client went away between two writes
        state.client_gone = True
    except asyncio.CancelledError:
        state.client_gone = True
        raise
    except Exception as e:  # never a traceback to the client; the detail goes to the log
        log.exception("stream failed: %s", state.info.request_id)
        err = InternalError(f"bmo failed while streaming: {type(e).__name__}", detail=str(e))
        await _fail(resp, chunks, err, state)
    finally:
        ka.cancel()
    return resp


async def _keepalive(resp: web.StreamResponse, last: list[float], interval: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            await asyncio.sleep(max(0.0, last[0] + interval - loop.time()))
            if loop.time() - last[0] >= interval:
                await resp.write(KEEPALIVE)
                last[0] = loop.time()
    except (ConnectionError, RuntimeError):
        return


async def _fail(resp: web.StreamResponse, chunks: ChunkStream, err: BmoError, state: RequestState) -> None:
    state.error = err  # the ledger records what the client was told, though the status was 200
    try:
        await resp.write(chunks.error(err))
        await resp.write(chunks.done())
    except (ConnectionError, RuntimeError):
        pass
