"""HTTP helpers every upstream provider shares (layer 2).

What an upstream's HTTP failure becomes in bmo's error tree (`status_error`, `transport_error`,
`stream_failed`, `decode_failed`), the upstream's own message out of whichever error envelope it used, and the
silence watchdog of a streamed answer. Provider modules (`openai_compat`, `anthropic`) import
these; nothing above `providers/` does.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import aiohttp
import orjson

from bmo.chat import Event
from bmo.errors import RateLimited, UpstreamError, UpstreamTimeout

MAX_ERROR_BODY = 64 * 1024  # an upstream error page is read this far, no further


def upstream_message(status: int, raw: bytes) -> str:
    """The upstream's own error message, from whichever envelope it used."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:500] or f"HTTP {status}"
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or err.get("msg")
            if isinstance(msg, str):
                return msg
        elif isinstance(err, str):
            return err
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return raw.decode("utf-8", "replace")[:500]


def retry_after_s(value: str | None) -> str:
    """An upstream's `retry-after` as whole seconds for bmo's own answer (1 when absent or an
    HTTP date: bmo does not pass on a clock it cannot check)."""
    return value if value and value.isdigit() else "1"


def status_error(provider: str, status: int, raw: bytes, retry_after: str | None) -> UpstreamError | RateLimited:
    msg = f"upstream {provider} answered HTTP {status}: {upstream_message(status, raw)}"
    if status == 429:
        return RateLimited(msg, code="rate_limited", headers={"retry-after": retry_after_s(retry_after)})
    # A 4xx will fail the same way again; a 5xx may not.
    return UpstreamError(msg, upstream_status=status, should_retry=status >= 500)


def transport_error(provider: str, timeout_s: float, e: BaseException) -> UpstreamError:
    """A transport failure (no HTTP answer at all) as bmo's error."""
    if isinstance(e, asyncio.TimeoutError):
        return UpstreamTimeout(f"upstream {provider} did not answer within {timeout_s:g}s")
    return UpstreamError(f"could not reach upstream {provider}: {type(e).__name__}: {e}")


def stream_failed(provider: str, timeout_s: float, silence: Silence, e: Exception) -> Exception:
    """`UpstreamStream.failed`: a transport exception out of a stream's reads as bmo's error
    (anything else unchanged). A read that failed because the watchdog closed it is a timeout."""
    if not isinstance(e, (TimeoutError, aiohttp.ClientError)):
        return e
    if silence.fired:
        return UpstreamTimeout(f"upstream {provider} sent nothing for {timeout_s:g}s in the middle of a stream")
    return transport_error(provider, timeout_s, e)


class Deferring(Protocol):
    """What `decode_failed` needs of a stream: where a failure waits for `end()`."""

    deferred: UpstreamError | None
    done: bool


def decode_failed(provider: str, stream: Deferring, out: list[Event], e: Exception) -> list[Event]:
    """A read that failed to decode part way (an error event, or bytes that are not JSON): the
    events before the failure go out first and `end()` raises it; with none, it is raised now."""
    unreadable = f"upstream {provider} sent an answer bmo cannot read: {e}"
    err = e if isinstance(e, UpstreamError) else UpstreamError(unreadable)
    if out:
        if err is not e:
            err.__cause__ = e
        stream.deferred, stream.done = err, True
        return out
    if err is e:
        raise err
    raise err from e


class Silence:
    """Closes an upstream stream that has sent nothing for `timeout_s` (the reader then fails
    and `fired` says why). One timer per stream, re-armed only when it comes due: the reader
    just notes the time of each read in `last`. Time counts from bmo's last read, so a client
    that stalls its own reading for that long ends the stream the same way."""

    __slots__ = ("loop", "timeout", "resp", "last", "fired", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, resp: aiohttp.ClientResponse) -> None:
        self.loop = loop
        self.timeout = timeout
        self.resp = resp
        self.last = loop.time()
        self.fired = False
        self._handle = loop.call_later(timeout, self._check)

    def _check(self) -> None:
        idle = self.loop.time() - self.last
        if idle >= self.timeout:
            self.fired = True
            self.resp.close()
        else:
            self._handle = self.loop.call_later(self.timeout - idle, self._check)

    def stop(self) -> None:
        self._handle.cancel()
