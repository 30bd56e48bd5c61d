"""A fast fake OpenAI upstream for the benchmark: `POST /v1/chat/completions` and the legacy
`POST /v1/completions` (`text_completion` objects), whole or SSE.

It spends as little CPU as it can (answers are pre-rendered bytes, per configuration), so the
load it can carry is set by the gateway in front of it. What it answers is set at start-up by
flags, or between scenarios by `POST /_bench/config {"tokens", "delay_ms", "latency_ms"}`:

- `tokens`: words in the answer (one SSE chunk each when streaming, on either route),
- `latency_ms`: wait before the response headers (the model "thinking"),
- `delay_ms`: wait between two streamed tokens (none before the first).

A completions stream is paced as a chat stream is: the first token's chunk goes out at once (a
chat stream's role chunk is in the same write), then one chunk per token every `delay_ms`, then
the finish chunk, the usage chunk (with `stream_options.include_usage`) and `[DONE]` in one write.

`GET /_bench/stats` counts what it served. Loopback only.

    python scripts/bench/upstream.py --port 18001 [--tokens 32 --delay-ms 0 --latency-ms 0]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

WORDS = ("the", " quick", " brown", " fox", " jumps", " over", " a", " lazy", " dog", ".")


class Upstream:
    def __init__(self, tokens: int, delay_ms: float, latency_ms: float) -> None:
        self.requests = 0
        self.text_requests = 0  # of them, /v1/completions
        self.streams = 0
        self.tokens_sent = 0
        self.configure(tokens, delay_ms, latency_ms)

    def configure(self, tokens: int, delay_ms: float, latency_ms: float) -> None:
        self.tokens = max(1, int(tokens))
        self.delay = max(0.0, float(delay_ms)) / 1000
        self.latency = max(0.0, float(latency_ms)) / 1000
        created = int(time.time())
        words = [WORDS[i % len(WORDS)] for i in range(self.tokens)]
        usage = {"prompt_tokens": 12, "completion_tokens": self.tokens, "total_tokens": 12 + self.tokens}
        self.whole = orjson.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": created,
                "model": "bench-model",
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(words), "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )
        head = orjson.dumps(
            {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created, "model": "bench-model"}
        )[:-1]

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return b"data: " + head + b',"system_fingerprint":null,"choices":[' + orjson.dumps(choice) + b"]}\n\n"

        self.first = chunk({"role": "assistant", "content": ""})
        self.token_chunks = [chunk({"content": w}) for w in words]
        self.finish = chunk({}, "stop")
        self.usage = b"data: " + head + b',"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n"

        # the same answer as `text_completion` objects, for /v1/completions
        self.text_whole = orjson.dumps(
            {
                "id": "cmpl-bench",
                "object": "text_completion",
                "created": created,
                "model": "bench-model",
                "choices": [{"text": "".join(words), "index": 0, "logprobs": None, "finish_reason": "stop"}],
                "usage": usage,
            }
        )
        text_head = orjson.dumps(
            {"id": "cmpl-bench", "object": "text_completion", "created": created, "model": "bench-model"}
        )[:-1]

        def text_chunk(text: str, finish: str | None = None) -> bytes:
            choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}
            return b"data: " + text_head + b',"choices":[' + orjson.dumps(choice) + b"]}\n\n"

        self.text_chunks = [text_chunk(w) for w in words]
        self.text_finish = text_chunk("", "stop")
        self.text_usage = b"data: " + text_head + b',"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n"

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if not body.get("stream"):
            return web.Response(body=self.whole, content_type="application/json")
        return await self._stream(request, body, self.first, self.token_chunks, self.finish, self.usage)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """Legacy completions: the same words, as `text_completion` objects."""
        body = orjson.loads(await request.read())
        self.requests += 1
        self.text_requests += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if not body.get("stream"):
            return web.Response(body=self.text_whole, content_type="application/json")
        return await self._stream(request, body, b"", self.text_chunks, self.text_finish, self.text_usage)

    async def _stream(
        self, request: web.Request, body: dict[str, Any], first: bytes, chunks: list[bytes], finish: bytes, usage: bytes
    ) -> web.StreamResponse:
        """One stream, either route's chunks, paced alike: `first` (chat's role chunk) goes
        with the first token's chunk, each next one `delay` later, then the tail in one write."""
        self.streams += 1
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        delay = self.delay
        await resp.write(first + chunks[0])
        for c in chunks[1:]:
            if delay:
                await asyncio.sleep(delay)
            await resp.write(c)
        self.tokens_sent += len(chunks)
        tail = finish
        opts = body.get("stream_options")
        if isinstance(opts, dict) and opts.get("include_usage"):
            tail += usage
        await resp.write(tail + b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def set_config(self, request: web.Request) -> web.Response:
        c = await request.json()
        self.configure(
            c.get("tokens", self.tokens),
            c.get("delay_ms", self.delay * 1000),
            c.get("latency_ms", self.latency * 1000),
        )
        return await self.stats(request)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": self.requests,
                "completions_requests": self.text_requests,
                "streams": self.streams,
                "tokens_sent": self.tokens_sent,
                "tokens": self.tokens,
                "delay_ms": self.delay * 1000,
                "latency_ms": self.latency * 1000,
            }
        )


def make_app(up: Upstream) -> web.Application:
    app = web.Application()
    for path in ("/v1/chat/completions", "/chat/completions"):
        app.router.add_post(path, up.chat)
    for path in ("/v1/completions", "/completions"):
        app.router.add_post(path, up.completions)
    app.router.add_post("/_bench/config", up.set_config)
    app.router.add_get("/_bench/stats", up.stats)
    app.router.add_get("/health", lambda r: up.stats(r))
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--latency-ms", type=float, default=0.0)
    a = ap.parse_args()
    up = Upstream(a.tokens, a.delay_ms, a.latency_ms)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(make_app(up), host="127.0.0.1", port=a.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
