"""What a wire dialect is (layer 1, pure): the contract between a protocol module and the one
shared relay in `server/relay.py`.

A dialect turns a client's JSON body into the internal `ChatRequest`, and renders the run's
answer back in that client's wire shape: whole, as a stream, or as an error. It does no I/O and
never imports another dialect's module; the relay and the service do the rest (admission,
session, the agent loop, keepalive, headers held until the first event, in-band errors,
cancellation, the ledger). Adding a dialect is a protocol module with one object of this shape,
a handler of a few lines, and a line in the routes table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from bmo.chat import ChatRequest, Completion, Event, ToolCallDelta
from bmo.errors import BmoError, InvalidRequest


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """Decode a request body; anything but a JSON object is a 400 with a clear message."""
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        where = f" (line {e.lineno}, column {e.colno})" if e.lineno else ""
        raise InvalidRequest(f"The request body is not valid JSON{where}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


@dataclass(slots=True)
class Reply:
    """What every rendering of one run shares: the id the client sees on every frame, the
    creation time, and the model as the client named it."""

    id: str
    created: int  # unix seconds
    model: str
    include_usage: bool = False  # OpenAI `stream_options.include_usage`
    prompt_tokens: int = 0  # an estimate known before the upstream answers (Anthropic message_start)
    wire: Any = None  # the request's `ChatRequest.wire`: what the dialect's parser kept for rendering


class StreamRenderer(Protocol):
    """One stream, rendered as bytes. The relay calls `start()` once, then `events(batch)` for
    every batch the run yields (text, reasoning, client tool-call deltas, the `Finish`, the total
    `Usage`), then `end()`; or `error(err)` in place of whatever is left after a failure."""

    eager: bool  # True: `start()` goes out as soon as the run is admitted, before any event
    final: dict[str, Any] | None  # after `end()`: the whole answer as a stored object (Responses)

    def start(self) -> bytes: ...

    def keepalive(self) -> bytes:
        """What goes out while the run is quiet (a comment, a ping, a lifecycle event)."""
        ...

    def events(self, batch: list[Event]) -> bytes: ...

    def end(self) -> bytes: ...

    def error(self, err: BmoError) -> bytes: ...


class Dialect(Protocol):
    name: str  # "openai", "anthropic"
    id_prefix: str  # of `Reply.id`: "chatcmpl-", "msg_"
    request_id_header: str | None  # a header of the dialect's own that carries bmo's request id
    eager_start: bool  # its streams start before the agent works (their renderer is `eager`)

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> ChatRequest: ...

    def render_whole(self, answer: Completion, reply: Reply) -> dict[str, Any]: ...

    def stream(self, reply: Reply) -> StreamRenderer: ...

    def render_error(self, err: BmoError) -> bytes:
        """The error's body in this dialect's envelope (status and headers are the error's)."""
        ...


class PendingCall:
    """One client tool call gathered from its fragments."""

    __slots__ = ("id", "name", "parts")

    def __init__(self, cid: str, name: str) -> None:
        self.id, self.name = cid, name
        self.parts: list[str] = []


class ToolCallBuffer:
    """Client tool-call fragments gathered by index, for a stream renderer that sends each call
    whole at the `Finish`: always correct, even when an upstream interleaves parallel calls'
    fragments (a wire whose blocks or items may not interleave: Anthropic, Responses)."""

    __slots__ = ("_calls", "_by_index")

    def __init__(self) -> None:
        self._calls: list[tuple[int, PendingCall]] = []  # by arrival
        self._by_index: dict[int, PendingCall] = {}

    def add(self, d: ToolCallDelta) -> None:
        call = self._by_index.get(d.index)
        if call is None or (d.id and call.id and d.id != call.id):  # a new call (or an index reused)
            call = PendingCall(d.id or "", d.name or "")
            self._by_index[d.index] = call
            self._calls.append((d.index, call))
        else:
            call.id = call.id or d.id or ""
            call.name = call.name or d.name or ""
        call.parts.append(d.arguments)

    def take(self) -> list[PendingCall]:
        """The calls gathered so far, in index order (stable on reuse); the buffer is then empty."""
        calls = [c for _, c in sorted(self._calls, key=lambda c: c[0])]
        self._calls.clear()
        self._by_index.clear()
        return calls
