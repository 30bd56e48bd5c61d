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
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from bmo.chat import ChatRequest, Event, Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from bmo.errors import BmoError, InternalError
from bmo.protocol.openai import ChunkStream, parse_chat_request, parse_json_body, to_completion
from bmo.protocol.openai_upstream import message_obj
from bmo.protocol.sse import KEEPALIVE
from bmo.server.context import STATE, RequestState
from bmo.server.http import json_response, read_body
from bmo.server.recording import fire
from bmo.service import ActiveRun

log = logging.getLogger("bmo.server")

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def raw_messages(req: ChatRequest) -> list[dict[str, Any]]:
    return [message_obj(m) for m in req.messages]


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
    state: RequestState = request[STATE]
    rt = state.server
    raw = await read_body(request, rt.max_body)
    req = parse_chat_request(parse_json_body(raw))
    state.model_requested = req.model
    state.stream = req.stream
    state.info.completion_id = rt.ids.completion_id()
    service = rt.runtime.chat()
    agent = service.resolve(req.model, request.headers.get("X-BMO-Agent"))
    async with service.admit():
        run = await service.begin(req, state.info, agent, headers=request.headers, principal=state.principal)
        try:
            fire(request, state)
            if rt.runtime.recorder.store_content:
                state.info.content = {"messages": raw_messages(req), "answer": None}
            if req.stream:
                return await _stream(request, state, run, req.model, req.include_usage, rt.keepalive_s)
            return await _whole(run, req.model)
        finally:
            await run.close()


async def _whole(run: ActiveRun, model: str) -> web.Response:
    try:
        done = await run.complete()
    except BmoError as e:
        run.failed(e)
        raise _no_retry(e, run) from None
    await run.finish()
    if run.info.content is not None:
        run.info.content["answer"] = done.content
    body = to_completion(
        rid=run.info.completion_id,
        created=int(time.time()),
        model=model,
        content=done.content,
        tool_calls=done.tool_calls,
        finish_reason=done.finish_reason,
        usage=done.usage,
        reasoning=done.reasoning,
    )
    return json_response(body, headers=_run_headers(run))


class _KeepAlive:
    """One timer per stream: when nothing was written for `interval`, it sends `: keepalive`
    (and, before the first output, the headers). A timer, not a task per event: the cost per
    token must stay tiny. `lock` makes "send the headers" happen once, whoever gets there first."""

    __slots__ = ("request", "resp", "interval", "last", "lock", "stopped", "task")

    def __init__(self, request: web.Request, resp: web.StreamResponse, interval: float) -> None:
        self.request = request
        self.resp = resp
        self.interval = interval
        self.last = asyncio.get_running_loop().time()
        self.lock = asyncio.Lock()
        self.stopped = False
        self.task = asyncio.ensure_future(self._run())

    async def prepare(self) -> bool:
        """Send the headers unless sent; False when the stream was stopped first."""
        async with self.lock:
            if self.stopped:
                return False
            if not self.resp.prepared:
                await self.resp.prepare(self.request)
            return True

    async def stop(self) -> bool:
        """Stop the timer; True when the headers had already gone out."""
        async with self.lock:
            self.stopped = True
        self.task.cancel()
        return self.resp.prepared

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(max(0.0, self.last + self.interval - loop.time()))
                if loop.time() - self.last >= self.interval:
                    if not await self.prepare():
                        return
                    await self.resp.write(KEEPALIVE)
                    self.last = loop.time()
        except (ConnectionError, RuntimeError):
            return


async def _stream(
    request: web.Request, state: RequestState, run: ActiveRun, model: str, include_usage: bool, keepalive_s: float
) -> web.StreamResponse:
    chunks = ChunkStream(run.info.completion_id, int(time.time()), model, include_usage)
    resp = web.StreamResponse(status=200, headers={**SSE_HEADERS, **_run_headers(run)})
    it = run.stream().__aiter__()
    ka = _KeepAlive(request, resp, keepalive_s)
    answer: list[str] | None = [] if state.info.content is not None else None
    try:
        batch: list[Event] | None = await it.__anext__()
    except StopAsyncIteration:
        batch = None
    except BmoError as e:
        run.failed(e)
        if not await ka.stop():
            raise _no_retry(e, run) from None  # nothing sent yet: a real HTTP status
        await _fail(resp, chunks, _no_retry(e, run), state)
        return resp
    except BaseException:
        ka.task.cancel()
        raise
    try:
        # The headers wait for the first output, so an early failure gets a real status (above).
        await ka.prepare()
        state.first_byte_sent = True
        usage, head = await asyncio.ensure_future(_relay(it, batch, chunks, resp, ka, answer))
        await run.finish()
        if usage is not None and include_usage:
            head += chunks.usage(usage)
        await resp.write(head + chunks.done())  # the usage chunk and [DONE] in one write
        if answer is not None and state.info.content is not None:
            state.info.content["answer"] = "".join(answer)
    except BmoError as e:
        run.failed(e)
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
        ka.task.cancel()
    return resp


async def _relay(
    it: AsyncIterator[list[Event]],
    batch: list[Event] | None,
    chunks: ChunkStream,
    resp: web.StreamResponse,
    ka: _KeepAlive,
    answer: list[str] | None,
) -> tuple[Usage | None, bytes]:
    """Render and write every batch of events from `batch` on, each batch in one write; returns
    the run's usage and what is still to be written (the role chunk, when no event came).

    `_stream` runs this in a task of its own: a task wakes for each upstream read, and every
    coroutine it is awaiting through is resumed on each wake. In the handler's task that is
    aiohttp's two frames, `_dispatch`, `chat_completions` and `_stream` above this loop, for
    every read; here it is this loop alone. A client that goes away cancels the handler, and
    asyncio cancels this task with it and lets it unwind (closing the upstream) first."""
    loop = asyncio.get_running_loop()
    write = resp.write
    usage: Usage | None = None
    # The role chunk goes out with the first token (and the headers, which aiohttp holds for
    # the first write): one write and one segment for the client to wait on, not two.
    head = chunks.start()
    while batch is not None:
        frames = [head] if head else []
        head = b""
        for ev in batch:
            kind = type(ev)
            if kind is TextDelta:
                frames.append(chunks.text(ev.text))  # type: ignore[union-attr]
                if answer is not None:
                    answer.append(ev.text)  # type: ignore[union-attr]
            elif kind is ToolCallDelta:
                frames.append(chunks.tool_call(ev))  # type: ignore[arg-type]
            elif kind is ReasoningDelta:
                frames.append(chunks.reasoning(ev.text))  # type: ignore[union-attr]
            elif kind is Finish:
                frames.append(chunks.finish(ev.reason))  # type: ignore[union-attr]
            elif kind is Usage:
                usage = ev  # type: ignore[assignment]
        if frames:
            await write(frames[0] if len(frames) == 1 else b"".join(frames))
        ka.last = loop.time()
        try:
            batch = await it.__anext__()
        except StopAsyncIteration:
            batch = None
    return usage, head


async def _fail(resp: web.StreamResponse, chunks: ChunkStream, err: BmoError, state: RequestState) -> None:
    state.error = err  # the ledger records what the client was told, though the status was 200
    try:
        await resp.write(chunks.error(err))
        await resp.write(chunks.done())
    except (ConnectionError, RuntimeError):
        pass
