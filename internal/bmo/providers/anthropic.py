"""The `anthropic` provider: Anthropic's Messages API, `POST {base_url}/v1/messages` (layer 2).

Shares the runtime's one pooled `aiohttp.ClientSession` and the HTTP helpers of `providers.http`
with the `openai` provider, and reads streams the same way (`UpstreamStream`: the loop reads, this
module decodes, a `Silence` watchdog bounds the quiet between reads). The wire translation is
`protocol.anthropic_upstream`'s. Anthropic's overload (HTTP 529, or an `overloaded_error` before
or inside a stream) becomes a retryable 503 with `retry-after`; its 429 a `RateLimited`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import aiohttp
import orjson

from bmo.chat import Completion, Event
from bmo.config import ProviderConfig
from bmo.errors import InvalidRequest, RateLimited, UpstreamError
from bmo.protocol.anthropic_upstream import EventParser, from_message_body, to_upstream_body
from bmo.providers.base import ModelCall
from bmo.providers.http import (
    MAX_ERROR_BODY,
    SHAPES,
    SSEStream,
    decode_failed,
    provider_secrets,
    read_bounded,
    retry_after_s,
    status_error,
    too_large,
    transport_error,
    unreadable,
    upstream_message,
)
from bmo.redact import Redactor

ANTHROPIC_VERSION = "2023-06-01"  # the one version every SDK sends; the API pins its shapes to it
# What count_tokens accepts of a messages body (it rejects sampling settings and max_tokens).
_COUNT_KEYS = ("model", "system", "messages", "tools", "tool_choice", "thinking")


def api_root(base_url: str) -> str:
    """The API root without `/v1`: configs name it either way (`ANTHROPIC_BASE_URL` has none,
    OpenAI-style base URLs end in `/v1`)."""
    base = base_url.rstrip("/")
    return base[:-3] if base.endswith("/v1") else base


def anthropic_status_error(
    provider: str, status: int, raw: bytes, retry_after: str | None, redact: Redactor = SHAPES
) -> UpstreamError | RateLimited:
    """An HTTP error answer. Overload (529, or an `overloaded_error` body on another status) is
    bmo's 503 with `retry-after`, worth retrying; the rest as any upstream's."""
    kind = _error_type(raw)
    if status != 429 and (status == 529 or kind == "overloaded_error"):
        return UpstreamError(
            f"upstream {provider} answered HTTP {status}: {upstream_message(status, raw, redact)}",
            upstream_status=status,
            upstream_type="overloaded_error",
            status=503,
            should_retry=True,
            headers={"retry-after": retry_after_s(retry_after)},
        )
    err = status_error(provider, status, raw, retry_after, redact)
    if isinstance(err, UpstreamError):
        err.upstream_type = kind
    return err


def _error_type(raw: bytes) -> str | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    err = body.get("error") if isinstance(body, dict) else None
    kind = err.get("type") if isinstance(err, dict) else None
    return kind if isinstance(kind, str) else None


class AnthropicProvider:
    def __init__(
        self, name: str, cfg: ProviderConfig, session: aiohttp.ClientSession, redact: Redactor | None = None
    ) -> None:
        self.name = name
        self._session = session
        self._redact = redact or Redactor(provider_secrets(cfg))  # every upstream message passes it
        self._max_bytes = int(cfg.max_response_mb * 1048576)
        root = api_root(cfg.base_url or "https://api.anthropic.com")
        self._url = root + "/v1/messages"
        self._count_url = root + "/v1/messages/count_tokens"
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        headers.update({k.lower(): v for k, v in cfg.headers.items()})
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if key:
            headers["x-api-key"] = key
        self._headers = headers
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, sock_connect=cfg.connect_timeout_s)
        # As in openai_compat: the wait for the headers is bounded in `open_stream`, the silence
        # between reads by `Silence`, not by aiohttp's per-read timer.
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=cfg.connect_timeout_s)
        self._timeout_s = cfg.timeout_s

    def _headers_for(self, call: ModelCall, stream: bool = False) -> dict[str, str]:
        if not call.beta and not stream:
            return self._headers
        h = dict(self._headers)
        if stream:
            h["accept"] = "text/event-stream"
        if call.beta:  # the client's flags, after any the config sets
            flags = [f.strip() for f in (h.get("anthropic-beta", "") + "," + call.beta).split(",")]
            h["anthropic-beta"] = ",".join(dict.fromkeys(f for f in flags if f))
        return h

    def _body(self, call: ModelCall, stream: bool) -> dict[str, Any]:
        if call.prompt is not None:  # before anything is sent: a real 400 for the client
            raise InvalidRequest(
                f"The agent's upstream {self.name} (Anthropic Messages) has no text completions; "
                "use an agent on an OpenAI-compatible upstream for /v1/completions.",
                code="unsupported_for_upstream",
                param="model",
            )
        return to_upstream_body(
            model=call.model,
            messages=call.messages,
            params=call.params,
            tools=call.tools,
            tool_choice=call.tool_choice,
            stream=stream,
        )

    async def _post(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> bytes:
        try:
            async with self._session.post(url, data=orjson.dumps(body), headers=headers, timeout=self._timeout) as resp:
                length = resp.headers.get("Content-Length")  # declared within the limit: one read (no extra call)
                if length is not None and int(length) <= self._max_bytes and "Content-Encoding" not in resp.headers:
                    raw = await resp.read()
                else:
                    raw = await read_bounded(resp, self._max_bytes, self.name)
                if resp.status >= 400:
                    raise anthropic_status_error(
                        self.name, resp.status, raw[:MAX_ERROR_BODY], resp.headers.get("retry-after"), self._redact
                    )
        except (TimeoutError, aiohttp.ClientError) as e:
            raise transport_error(self.name, self._timeout_s, e, self._redact) from e
        return raw

    async def complete(self, call: ModelCall) -> Completion:
        raw = await self._post(self._url, self._body(call, False), self._headers_for(call))
        try:
            return from_message_body(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as e:
            raise unreadable(self.name, e, self._redact) from e

    async def count_tokens(self, call: ModelCall) -> int:
        """The upstream's own count of the call's input tokens (`/v1/messages/count_tokens`)."""
        full = self._body(call, False)
        body = {k: full[k] for k in _COUNT_KEYS if k in full}
        raw = await self._post(self._count_url, body, self._headers_for(call))
        try:
            n = orjson.loads(raw).get("input_tokens")
        except (orjson.JSONDecodeError, AttributeError) as e:
            raise UpstreamError(f"upstream {self.name} sent a token count bmo cannot read: {e}") from e
        if not isinstance(n, int) or isinstance(n, bool):
            raise UpstreamError(self._redact(f"upstream {self.name} sent a token count bmo cannot read: {n!r:.200}"))
        return n

    async def open_stream(self, call: ModelCall) -> AnthropicStream:
        try:
            async with asyncio.timeout(self._timeout_s):
                resp = await self._session.post(
                    self._url,
                    data=orjson.dumps(self._body(call, True)),
                    headers=self._headers_for(call, stream=True),
                    timeout=self._stream_timeout,
                )
        except (TimeoutError, aiohttp.ClientError) as e:
            raise transport_error(self.name, self._timeout_s, e, self._redact) from e
        try:
            if resp.status >= 400:
                raw = await resp.content.read(MAX_ERROR_BODY)
                raise anthropic_status_error(
                    self.name, resp.status, raw, resp.headers.get("retry-after"), self._redact
                )
            whole = None
            if "text/event-stream" not in resp.headers.get("Content-Type", ""):
                # a compatible server that ignores `stream` and answers whole: accept that
                whole = from_message_body(orjson.loads(await read_bounded(resp, self._max_bytes, self.name))).events()
        except (TimeoutError, aiohttp.ClientError) as e:
            resp.close()
            raise transport_error(self.name, self._timeout_s, e, self._redact) from e
        except (orjson.JSONDecodeError, ValueError) as e:
            resp.close()
            raise unreadable(self.name, e, self._redact) from e
        except BaseException:
            resp.close()
            raise
        return AnthropicStream(self, resp, whole)

    async def close(self) -> None:
        return None


class AnthropicStream(SSEStream):
    """One Anthropic event stream: the JSON parse and the `EventParser` one read at a time; the
    rest is `SSEStream`'s. It has ended as it should only at `message_stop`; a failure after
    events of the same read waits in `deferred`, so those events go out first and `end()` raises
    it."""

    __slots__ = ("parser",)

    def __init__(self, provider: AnthropicProvider, resp: aiohttp.ClientResponse, whole: list[Event] | None) -> None:
        super().__init__(provider, resp, whole)
        self.provider: AnthropicProvider = provider
        self.parser = EventParser(provider.name)

    def decode(self, chunk: bytes) -> list[Event]:
        if self.whole is not None:
            self.done = self.ok = True
            return self.whole
        self.silence.last = self.loop.time()
        if self.resp.content.total_bytes > self.provider._max_bytes:  # no call: aiohttp counts
            raise too_large(self.provider.name, self.provider._max_bytes)
        return self._events(self.decoder.feed(chunk))

    def _events(self, frames: list[tuple[str | None, bytes]]) -> list[Event]:
        parser = self.parser
        out: list[Event] = []
        try:
            for event, data in frames:
                obj = orjson.loads(data)
                if type(obj) is not dict:
                    continue
                out += parser.feed(event, obj)
                if parser.done:
                    self.done = self.ok = True
                    break
        except (UpstreamError, ValueError) as e:  # ValueError: orjson's JSONDecodeError too
            return decode_failed(self.provider.name, self, out, e, self.provider._redact)
        return out

    def end(self) -> list[Event]:
        if self.deferred is not None:
            raise self.deferred
        if self.whole is not None or self.ok:
            return []
        out = self._events(self.decoder.close())  # a last event without its blank line
        if self.deferred is not None:
            raise self.deferred
        if not self.ok:
            raise UpstreamError(f"upstream {self.provider.name} closed the stream before it finished")
        return out
