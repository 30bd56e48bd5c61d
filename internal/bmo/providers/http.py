"""HTTP helpers every upstream provider shares (layer 2).

What an upstream's HTTP failure becomes in bmo's error tree (`status_error`, `transport_error`,
`stream_failed`, `decode_failed`, `unreadable`, `too_large`), the upstream's own message out of
whichever error envelope it used, the bounded read of a whole answer (`read_bounded`), and the
silence watchdog of a streamed answer. Provider modules (`openai_compat`, `anthropic`) import
these; nothing above `providers/` does.

Every message built here from what an upstream sent passes the provider's `Redactor` (SPEC §5:
an upstream that quotes a key in its error never gets it to the client, the log or the ledger).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Protocol

import aiohttp
import orjson

from bmo.chat import Event
from bmo.config import Config, ProviderConfig
from bmo.errors import RateLimited, UpstreamError, UpstreamRateLimited, UpstreamTimeout
from bmo.protocol.sse import SSEDecoder
from bmo.providers.base import one_read
from bmo.redact import Redactor, env_secrets

MAX_ERROR_BODY = 64 * 1024  # an upstream error page is read this far, no further
SHAPES = Redactor()  # key-shaped tokens only: for a caller that knows no configured key
_SECRET_HEADER = re.compile(r"(?i)auth|key|token|secret")


def provider_secrets(pc: ProviderConfig) -> list[str]:
    """A provider's credentials: the value of its `api_key_env` variable, and of configured
    headers that carry one (`Authorization: Bearer …`, `api-key`)."""
    secrets = env_secrets([pc.api_key_env])
    for name, value in pc.headers.items():
        if _SECRET_HEADER.search(name):
            secrets += [value, value.partition(" ")[2]]  # the value with and without its scheme
    return secrets


def configured_secrets(cfg: Config) -> list[str]:
    """Every provider's credentials (`provider_secrets`)."""
    return [s for pc in cfg.providers.values() for s in provider_secrets(pc)]


def upstream_message(status: int, raw: bytes, redact: Redactor = SHAPES) -> str:
    """The upstream's own error message, from whichever envelope it used, redacted."""
    return redact(_message(status, raw))


def _message(status: int, raw: bytes) -> str:
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
                return msg[:2000]
        elif isinstance(err, str):
            return err[:2000]
        if isinstance(body.get("message"), str):
            return str(body["message"])[:2000]
    return raw.decode("utf-8", "replace")[:500]


def retry_after_s(value: str | None) -> str:
    """An upstream's `retry-after` as whole seconds for bmo's own answer (1 when absent or an
    HTTP date: bmo does not pass on a clock it cannot check)."""
    return value if value and value.isdigit() else "1"


def status_error(
    provider: str, status: int, raw: bytes, retry_after: str | None, redact: Redactor = SHAPES
) -> UpstreamError | RateLimited:
    msg = f"upstream {provider} answered HTTP {status}: {upstream_message(status, raw, redact)}"
    if status == 429:  # the client may retry; the ledger blames the upstream (SPEC §6)
        return UpstreamRateLimited(msg, code="rate_limited", headers={"retry-after": retry_after_s(retry_after)})
    # A 4xx will fail the same way again; a 5xx may not.
    return UpstreamError(msg, upstream_status=status, should_retry=status >= 500)


def transport_error(provider: str, timeout_s: float, e: BaseException, redact: Redactor = SHAPES) -> UpstreamError:
    """A transport failure (no HTTP answer at all) as bmo's error."""
    if isinstance(e, asyncio.TimeoutError):
        return UpstreamTimeout(f"upstream {provider} did not answer within {timeout_s:g}s")
    return UpstreamError(redact(f"could not reach upstream {provider}: {type(e).__name__}: {e}"))


def unreadable(provider: str, e: BaseException, redact: Redactor = SHAPES) -> UpstreamError:
    """An answer that is not what the upstream's API promises (not JSON, a wrong shape)."""
    return UpstreamError(redact(f"upstream {provider} sent an answer bmo cannot read: {e}"))


def too_large(provider: str, max_bytes: int) -> UpstreamError:
    """An answer past `providers.<name>.max_response_mb`: bmo stops reading it (a retry would
    get the same)."""
    return UpstreamError(
        f"upstream {provider} sent an answer larger than {max_bytes / 1048576:.3g} MiB "
        f"(providers.{provider}.max_response_mb); bmo stopped reading it.",
        code="upstream_too_large",
        should_retry=False,
    )


async def read_bounded(resp: aiohttp.ClientResponse, max_bytes: int, provider: str) -> bytes:
    """A whole answer, or `too_large` before more than `max_bytes` of it is held. An answer
    whose declared length is within the limit (and not compressed) is read in one go."""
    length = resp.content_length
    if length is not None and "Content-Encoding" not in resp.headers:
        if length > max_bytes:
            raise too_large(provider, max_bytes)
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            raise too_large(provider, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def stream_failed(
    provider: str, timeout_s: float, silence: Silence, e: Exception, redact: Redactor = SHAPES
) -> Exception:
    """`UpstreamStream.failed`: a transport exception out of a stream's reads as bmo's error
    (anything else unchanged). A read that failed because the watchdog closed it is a timeout."""
    if not isinstance(e, (TimeoutError, aiohttp.ClientError)):
        return e
    if silence.fired:
        return UpstreamTimeout(f"upstream {provider} sent nothing for {timeout_s:g}s in the middle of a stream")
    return transport_error(provider, timeout_s, e, redact)


class Deferring(Protocol):
    """What `decode_failed` needs of a stream: where a failure waits for `end()`."""

    deferred: UpstreamError | None
    done: bool


def decode_failed(
    provider: str, stream: Deferring, out: list[Event], e: Exception, redact: Redactor = SHAPES
) -> list[Event]:
    """A read that failed to decode part way (an error event, or bytes that are not JSON): the
    events before the failure go out first and `end()` raises it; with none, it is raised now.
    An in-stream error event's message is the upstream's own words: redacted here."""
    if isinstance(e, UpstreamError):
        err = e
        err.message = redact(err.message)
        err.args = (err.message,)
    else:
        err = unreadable(provider, e, redact)
    if out:
        if err is not e:
            err.__cause__ = e
        stream.deferred, stream.done = err, True
        return out
    if err is e:
        raise err
    raise err from e


class StreamSource(Protocol):
    """What an `SSEStream` needs of its provider."""

    name: str
    _timeout_s: float
    _max_bytes: int
    _redact: Redactor


class SSEStream:
    """What both providers' event streams share (see `UpstreamStream`): the answer that came
    whole instead of streamed, the SSE decoder, the silence watchdog, the transport failure and
    the close that returns the connection to the pool (or drops it, stopping the upstream at
    once). Each provider's `decode` stays its own and inline: it runs once per read."""

    __slots__ = ("provider", "resp", "whole", "done", "ok", "deferred", "decoder", "silence", "loop")

    def __init__(self, provider: StreamSource, resp: aiohttp.ClientResponse, whole: list[Event] | None) -> None:
        self.provider = provider
        self.resp = resp
        self.whole = whole  # an answer that came whole instead of streamed
        self.done = False  # nothing more to read: the end seen, or a failure waits in `deferred`
        self.ok = False  # ended as it should: the connection goes back to the pool
        self.deferred: UpstreamError | None = None  # a failure after events of the same read
        self.decoder = SSEDecoder()
        self.loop = asyncio.get_running_loop()
        self.silence = Silence(self.loop, provider._timeout_s, resp)

    def reads(self) -> AsyncIterator[bytes]:
        if self.whole is not None:
            return one_read()
        return self.resp.content.iter_any()

    def failed(self, e: Exception) -> Exception:
        p = self.provider
        return stream_failed(p.name, p._timeout_s, self.silence, e, p._redact)

    async def close(self) -> None:
        self.silence.stop()
        if self.ok:
            self.resp.release()
        else:
            self.resp.close()  # drop the connection: the upstream stops generating at once


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
