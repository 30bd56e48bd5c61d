"""The `openai` provider: any Chat Completions server (layer 2).

One shared, pooled `aiohttp.ClientSession` (owned by the runtime) serves every provider. Every
transport failure is translated here into `UpstreamError`/`UpstreamTimeout` with the upstream's
status and message, so nothing above this module sees aiohttp exceptions. Closing the stream
iterator early (client gone, run cancelled) closes the upstream connection at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import aiohttp
import orjson

from bmo.chat import Completion, Event, Finish, TextDelta, Usage, estimate_tokens
from bmo.config import ProviderConfig
from bmo.errors import UpstreamError
from bmo.protocol.openai_upstream import (
    ChunkParser,
    TextChunkParser,
    from_completion_body,
    from_text_body,
    to_text_body,
    to_upstream_body,
)
from bmo.providers.base import ModelCall
from bmo.providers.http import (
    MAX_ERROR_BODY,
    SSEStream,
    decode_failed,
    provider_secrets,
    read_bounded,
    status_error,
    too_large,
    transport_error,
    unreadable,
)
from bmo.redact import Redactor

log = logging.getLogger("bmo.providers")


class OpenAIProvider:
    def __init__(
        self, name: str, cfg: ProviderConfig, session: aiohttp.ClientSession, redact: Redactor | None = None
    ) -> None:
        self.name = name
        self._session = session
        self._redact = redact or Redactor(provider_secrets(cfg))  # every upstream message passes it
        self._max_bytes = int(cfg.max_response_mb * 1048576)
        self._chat_url = cfg.base_url + "/chat/completions"
        self._text_url = cfg.base_url + "/completions"  # raw text completions (ModelCall.prompt)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        headers.update(cfg.headers)
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "text/event-stream"}
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, sock_connect=cfg.connect_timeout_s)
        # A stream may run long; what must not happen is silence longer than timeout_s. The wait
        # for the headers is bounded in `_open_stream`, the silence between reads by `Silence`:
        # aiohttp's sock_read would re-arm a timer on every read (~4 % of the CPU per token).
        self._stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=cfg.connect_timeout_s)
        self._timeout_s = cfg.timeout_s
        self._stream_usage = True  # ask for usage in streams until the upstream says it cannot

    def _url(self, call: ModelCall) -> str:
        return self._chat_url if call.prompt is None else self._text_url

    def _body(self, call: ModelCall, stream: bool) -> bytes:
        if call.prompt is not None:
            return orjson.dumps(
                to_text_body(
                    model=call.model,
                    prompt=call.prompt,
                    suffix=call.suffix,
                    params=call.params,
                    stream=stream,
                    stream_usage=self._stream_usage,
                )
            )
        return orjson.dumps(
            to_upstream_body(
                model=call.model,
                messages=call.messages,
                params=call.params,
                tools=call.tools,
                tool_choice=call.tool_choice,
                stream=stream,
                stream_usage=self._stream_usage,
            )
        )

    async def _open_stream(self, call: ModelCall) -> aiohttp.ClientResponse:
        """POST a streaming call. An upstream that rejects `stream_options` (older vLLM,
        llama.cpp and other strict servers answer 400) is asked again without it, and never again
        with it; bmo then estimates usage itself."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._post_stream(call)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise transport_error(self.name, self._timeout_s, e, self._redact) from e

    async def _post_stream(self, call: ModelCall) -> aiohttp.ClientResponse:
        resp = await self._session.post(
            self._url(call), data=self._body(call, True), headers=self._stream_headers, timeout=self._stream_timeout
        )
        if resp.status == 400 and self._stream_usage:
            try:
                raw = await resp.content.read(MAX_ERROR_BODY)
            finally:
                resp.close()
            if b"stream_options" not in raw:
                raise status_error(self.name, resp.status, raw, None, self._redact)
            log.warning("upstream %s rejects stream_options; streaming without it from now on", self.name)
            self._stream_usage = False
            resp = await self._session.post(
                self._url(call), data=self._body(call, True), headers=self._stream_headers, timeout=self._stream_timeout
            )
        return resp

    async def complete(self, call: ModelCall) -> Completion:
        try:
            async with self._session.post(
                self._url(call), data=self._body(call, False), headers=self._headers, timeout=self._timeout
            ) as resp:
                length = resp.headers.get("Content-Length")  # declared within the limit: one read (no extra call)
                if length is not None and int(length) <= self._max_bytes and "Content-Encoding" not in resp.headers:
                    raw = await resp.read()
                else:
                    raw = await read_bounded(resp, self._max_bytes, self.name)
                if resp.status >= 400:
                    raise status_error(
                        self.name, resp.status, raw[:MAX_ERROR_BODY], resp.headers.get("retry-after"), self._redact
                    )
        except (TimeoutError, aiohttp.ClientError) as e:
            raise transport_error(self.name, self._timeout_s, e, self._redact) from e
        try:
            answer = orjson.loads(raw)
            return from_completion_body(answer) if call.prompt is None else from_text_body(answer)
        except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError) as e:
            raise unreadable(self.name, e, self._redact) from e

    async def open_stream(self, call: ModelCall) -> _SSEStream:
        resp = await self._open_stream(call)
        try:
            if resp.status >= 400:
                raw = await resp.content.read(MAX_ERROR_BODY)
                raise status_error(self.name, resp.status, raw, resp.headers.get("retry-after"), self._redact)
            whole = None
            if "text/event-stream" not in resp.headers.get("Content-Type", ""):
                # some servers ignore `stream` and answer whole: accept that
                answer = orjson.loads(await read_bounded(resp, self._max_bytes, self.name))
                whole = (from_completion_body(answer) if call.prompt is None else from_text_body(answer)).events()
        except (TimeoutError, aiohttp.ClientError) as e:
            resp.close()
            raise transport_error(self.name, self._timeout_s, e, self._redact) from e
        except (orjson.JSONDecodeError, ValueError) as e:
            resp.close()
            raise unreadable(self.name, e, self._redact) from e
        except BaseException:
            resp.close()
            raise
        return _SSEStream(self, call, resp, whole)

    async def count_tokens(self, call: ModelCall) -> int | None:
        return None  # Chat Completions has no count endpoint: bmo estimates

    async def close(self) -> None:
        return None


class _SSEStream(SSEStream):
    """One Chat Completions (or text completions) event stream: the JSON parse and the chunk
    parser one read at a time, and the end-of-stream checks; the rest is `SSEStream`'s."""

    __slots__ = ("call", "saw_finish", "parser")

    def __init__(
        self, provider: OpenAIProvider, call: ModelCall, resp: aiohttp.ClientResponse, whole: list[Event] | None
    ) -> None:
        super().__init__(provider, resp, whole)
        self.provider: OpenAIProvider = provider
        self.call = call
        self.saw_finish = False
        self.parser = ChunkParser() if call.prompt is None else TextChunkParser()

    def decode(self, chunk: bytes) -> list[Event]:
        if self.whole is not None:
            self.done = self.ok = True
            return self.whole
        self.silence.last = self.loop.time()
        if self.resp.content.total_bytes > self.provider._max_bytes:  # no call: aiohttp counts
            raise too_large(self.provider.name, self.provider._max_bytes)
        parser = self.parser
        out: list[Event] = []
        try:
            for event, data in self.decoder.feed(chunk):
                if data.startswith(b"[DONE]"):
                    self.done = self.ok = True
                    break
                obj = orjson.loads(data)
                if event is not None or type(obj) is not dict or "error" in obj:
                    obj = _checked_event(self.provider.name, event, obj)
                    if obj is None:
                        continue
                text = parser.plain_text(obj)
                if text is not None:  # a token: no list of its own, no type tests
                    if text:
                        out.append(TextDelta(text))
                    continue
                for ev in parser.feed(obj):
                    if type(ev) is Finish:
                        self.saw_finish = True
                    out.append(ev)
        except (UpstreamError, ValueError) as e:  # ValueError: orjson's JSONDecodeError too
            return decode_failed(self.provider.name, self, out, e, self.provider._redact)
        return out

    def end(self) -> list[Event]:
        if self.deferred is not None:
            raise self.deferred
        if self.whole is not None:
            return []
        if not self.ok and not self.saw_finish:
            raise UpstreamError(f"upstream {self.provider.name} closed the stream before it finished")
        self.done = self.ok = True
        if self.parser.saw_usage:
            return []
        # the upstream sent none: an estimate beats a silent zero
        call = self.call
        prompt = estimate_tokens(call.messages) if call.prompt is None else -(-len(call.prompt) // 4)
        return [Usage(prompt, -(-self.parser.chars // 4))]


def _checked_event(provider: str, event: str | None, obj: Any) -> dict[str, Any] | None:
    """The uncommon events: a named event, something not an object, or an error."""
    if not isinstance(obj, dict):
        return None
    if event == "error" or "error" in obj and "choices" not in obj:
        err = obj.get("error", obj)
        msg = err.get("message") if isinstance(err, dict) else str(err)
        raise UpstreamError(f"upstream {provider} failed mid-stream: {msg}")
    return obj
