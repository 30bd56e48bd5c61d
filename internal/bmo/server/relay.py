"""The one relay between an admitted run and an HTTP client, for every dialect.

A dialect's handler parses the body and calls `respond`; the relay does what every wire needs:
the run's scope (`Run.admitted`: agent, slot, session, plan), the reply's id, the whole answer or
the stream, keepalive on a quiet run, headers held until the first event (so a failure before
any output still gets a real HTTP status) unless the dialect's stream is `eager` (Anthropic's
`message_start` goes out before the agent starts work), errors in-band after the first byte,
cancellation when the client goes away, and the session commit before the last write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from bmo.chat import ChatRequest, Event, estimate_tokens
from bmo.errors import BmoError, InternalError, ShuttingDown
from bmo.protocol.dialect import Dialect, Reply, StreamRenderer
from bmo.server.context import CUT_MESSAGE, STATE, RequestState
from bmo.server.http import json_response
from bmo.service import Run

log = logging.getLogger("bmo.server")

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def _run_headers(run: Run) -> dict[str, str]:
    assert run.agent is not None
    h: dict[str, str] = {"X-BMO-Agent": run.agent.id}
    if run.warnings:
        h["X-BMO-Warning"] = ", ".join(run.warnings)
    return h


async def respond(request: web.Request, state: RequestState, dialect: Dialect, req: ChatRequest) -> web.StreamResponse:
    run = state.run
    async with run.admitted(req, request.headers, state.principal):
        plan = run.plan
        assert plan is not None  # planned on entry
        srv = state.server
        reply = Reply(
            id=dialect.id_prefix + srv.ids.reply_id(),
            created=int(time.time()),
            model=req.model,
            include_usage=req.include_usage,
            # a stream that starts before the upstream has counted shows bmo's estimate
            prompt_tokens=estimate_tokens(plan.messages, plan.tools) if req.stream and dialect.eager_start else 0,
            wire=req.wire,
        )
        if req.stream:
            return await _stream(request, run, dialect.stream(reply), srv.keepalive_s)
        try:
            done = await run.complete()
        except BmoError as e:
            raise run.failed(e) from None
        body = dialect.render_whole(done, reply)
        await run.finish(body)
        return json_response(body, headers=_run_headers(run))


class _KeepAlive:
    """One timer per stream: when nothing was written for `interval`, it sends the dialect's
    keepalive frame (and, before the first output, the headers). A timer, not a task per event: the
    cost per token must stay tiny. `lock` makes "send the headers" happen once, whoever gets
    there first."""

    __slots__ = ("request", "resp", "interval", "last", "lock", "stopped", "task", "frame")

    def __init__(
        self, request: web.Request, resp: web.StreamResponse, interval: float, frame: Callable[[], bytes]
    ) -> None:
        self.request = request
        self.resp = resp
        self.interval = interval
        self.frame = frame
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
                    await self.resp.write(self.frame())
                    self.last = loop.time()
        except (ConnectionError, RuntimeError):
            return


async def _stream(
    request: web.Request, run: Run, out: StreamRenderer, keepalive_s: float
) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={**SSE_HEADERS, **_run_headers(run)})
    it = run.stream_events().__aiter__()
    ka = _KeepAlive(request, resp, keepalive_s, out.keepalive)
    head = out.start()
    if out.eager:  # the client hears from bmo before the agent starts work
        await ka.prepare()
        run.first_byte_sent = True
        await resp.write(head)
        head = b""
    try:
        batch: list[Event] | None = await it.__anext__()
    except StopAsyncIteration:
        batch = None
    except BmoError as e:
        if not await ka.stop():
            raise run.failed(e) from None  # nothing sent yet: a real HTTP status
        run.first_byte_sent = True
        await _fail(resp, out, run.failed(e))
        return resp
    except asyncio.CancelledError:
        ka.task.cancel()
        if resp.prepared and request[STATE].cut:  # an eager stream cut by the drain
            return await _shutting_down(resp, out, run)
        raise
    except BaseException:
        ka.task.cancel()
        raise
    try:
        # The headers wait for the first output, so an early failure gets a real status (above).
        await ka.prepare()
        run.first_byte_sent = True
        await asyncio.ensure_future(_relay(it, batch, out, head, resp, ka))
        tail = out.end()
        await run.finish(out.final)  # stored (when kept) before the client can see its end
        await resp.write(tail)
    except BmoError as e:
        await _fail(resp, out, run.failed(e))
    except ConnectionError:  # the client went away between two writes
        run.client_gone = True
    except asyncio.CancelledError:
        if resp.prepared and request[STATE].cut:
            return await _shutting_down(resp, out, run)
        run.client_gone = True
        raise
    except Exception as e:  # never a traceback to the client; the detail goes to the log
        log.exception("stream failed: %s", run.request_id)
        err = InternalError(f"bmo failed while streaming: {type(e).__name__}", detail=str(e))
        run.error = err
        await _fail(resp, out, err)
    finally:
        ka.task.cancel()
    return resp


async def _relay(
    it: AsyncIterator[list[Event]],
    batch: list[Event] | None,
    out: StreamRenderer,
    head: bytes,
    resp: web.StreamResponse,
    ka: _KeepAlive,
) -> None:
    """Render and write every batch of events from `batch` on, each batch in one write (`head`,
    the stream's start when it was held, goes with the first).

    `_stream` runs this in a task of its own: a task wakes for each upstream read, and every
    coroutine it is awaiting through is resumed on each wake. In the handler's task that is
    aiohttp's two frames, `_dispatch`, the handler and `_stream` above this loop, for every
    read; here it is this loop alone. A client that goes away cancels the handler, and asyncio
    cancels this task with it and lets it unwind (closing the upstream) first."""
    loop = asyncio.get_running_loop()
    write = resp.write
    render = out.events
    if batch is None and head:
        await write(head)
    while batch is not None:
        data = render(batch)
        if head:
            data, head = head + data, b""
        if data:
            await write(data)
        ka.last = loop.time()
        try:
            batch = await it.__anext__()
        except StopAsyncIteration:
            batch = None


async def _shutting_down(resp: web.StreamResponse, out: StreamRenderer, run: Run) -> web.StreamResponse:
    """A stream the drain cut (its task cancelled at the end of the grace, SPEC §11): the
    cancellation ends here, and the client gets the dialect's in-band `shutting_down` error."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    run.first_byte_sent = True
    await _fail(resp, out, run.failed(ShuttingDown(CUT_MESSAGE)))
    return resp


async def _fail(resp: web.StreamResponse, out: StreamRenderer, err: BmoError) -> None:
    try:
        await resp.write(out.error(err))
    except (ConnectionError, RuntimeError):
        pass
