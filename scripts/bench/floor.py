"""The floor: bmo's own per-request work on the benchmark's path, written by hand in one function.

The raw proxy (proxy.py) is what a Python gateway costs when it does nothing. This gateway does
the least that bmo's contract asks of the benchmark's requests, with none of bmo's structure:

- auth: one dict lookup of the `Authorization` header (bmo caches verified keys the same way);
- parse the client's JSON, check `model` and each message, build and dump the upstream body;
- non-stream: parse the upstream answer and render a fresh `chat.completion` body;
- stream: split each read into SSE events, parse each chunk, render each token as bmo's own
  `chat.completion.chunk` frame (from a pre-rendered head and tail, as bmo does), end with
  `[DONE]`;
- record: one row in bmo's own `runs` schema (same columns, same indexes, same WAL settings),
  written in batches from a worker thread, and the two access lines, batched to stderr.

What bmo does beyond this (agents, the agent loop, errors in every shape, posture, metrics,
sessions, admission, keep-alives, timeouts) is what its ratio to this floor pays for. The floor
answers only the happy path; anything else is a plain 400/401. Loopback only.

    python scripts/bench/floor.py --port 18004 --upstream http://127.0.0.1:18001 --db /tmp/floor.db
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from bmo.server.serve import settle_gc
from bmo.store.migrations import MIGRATIONS

SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
UP_HEADERS = {"Content-Type": "application/json"}
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
COLUMNS = 22
INSERT = f"INSERT OR REPLACE INTO runs VALUES ({', '.join('?' * COLUMNS)})"
FLUSH_S = 0.05


def open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    runs = next(m for m in MIGRATIONS if m.name == "runs")
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone() is None:
        db.executescript(runs.sql)
    return db


def make_app(upstream: str, db_path: str, keys: set[str]) -> web.Application:
    url = upstream.rstrip("/") + "/v1/chat/completions"
    auth = {f"Bearer {k}": k[:10] for k in keys}
    rows: list[tuple[Any, ...]] = []
    lines: list[bytes] = []
    db = open_db(db_path)

    def write(batch: list[tuple[Any, ...]]) -> None:
        db.execute("BEGIN")
        db.executemany(INSERT, batch)
        db.execute("COMMIT")

    async def flusher() -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(FLUSH_S)
            if rows:
                batch = rows[:]
                rows.clear()
                await loop.run_in_executor(None, write, batch)
            if lines:
                sys.stderr.buffer.write(b"".join(lines))
                sys.stderr.buffer.flush()
                lines.clear()

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        task = asyncio.ensure_future(flusher())
        yield
        task.cancel()
        await app[SESSION].close()
        if rows:
            write(rows)

    def record(rid: str, t: tuple[float, float], req: web.Request, model: str, stream: bool, usage: Any) -> None:
        t0, wall = t
        ms = (time.monotonic() - t0) * 1000
        ua = req.headers.get("User-Agent")
        events = orjson.dumps([{"name": "received", "t_ms": 0.0}, {"name": "finished", "t_ms": ms}]).decode()
        rows.append(
            (rid, wall, "chat", "POST", 200, "ok", None, model, "bench", "up/bench-model", int(stream), None, ms,
             usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), 0, None, auth_prefix(req), ua,
             req.remote, events, None)
        )  # fmt: skip
        lines.append(f"INFO bmo.access: openai_compat.action request_id={rid} duration_ms={ms:.3f}\n".encode())

    def auth_prefix(req: web.Request) -> str | None:
        return auth.get(req.headers.get("Authorization", ""))

    async def chat(request: web.Request) -> web.StreamResponse:
        t0, wall = time.monotonic(), time.time()
        if auth_prefix(request) is None:
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        rid = secrets.token_hex(12)
        try:
            body = orjson.loads(await request.read())
            model, messages, stream = body["model"], body["messages"], bool(body.get("stream"))
            if not isinstance(model, str) or not all(isinstance(m, dict) and m.get("role") for m in messages):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": {"message": "bad request"}}, status=400)
        lines.append(f"INFO bmo.access: openai_compat.fired request_id={rid} agent=bench\n".encode())
        out: dict[str, Any] = {"model": "bench-model", "messages": messages, "stream": stream}
        if stream:
            out["stream_options"] = {"include_usage": True}
        headers = {"X-Request-Id": rid, "X-BMO-Agent": "bench"}
        async with request.app[SESSION].post(url, data=orjson.dumps(out), headers=UP_HEADERS) as up:
            if not stream:
                data = orjson.loads(await up.read())
                choice = data["choices"][0]
                usage = data.get("usage") or {}
                answer = {
                    "id": "chatcmpl-" + rid, "object": "chat.completion", "created": int(wall), "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": choice["message"]["content"]},
                                 "logprobs": None, "finish_reason": choice.get("finish_reason") or "stop"}],
                    "usage": {k: usage.get(k, 0) for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
                }  # fmt: skip
                record(rid, (t0, wall), request, model, False, usage)
                return web.Response(body=orjson.dumps(answer), content_type="application/json", headers=headers)
            resp = web.StreamResponse(headers={**SSE_HEADERS, **headers})
            await resp.prepare(request)
            head = orjson.dumps({"id": "chatcmpl-" + rid, "object": "chat.completion.chunk", "created": int(wall),
                                 "model": model})[:-1] + b',"choices":[{"index":0,"delta":'  # fmt: skip
            text_head, text_tail = b"data: " + head + b'{"content":', b'},"logprobs":null,"finish_reason":null}]}\n\n'
            usage, buf = {}, b""
            async for chunk in up.content.iter_any():
                buf += chunk
                *events, buf = buf.split(b"\n\n")
                frames = []
                for ev in events:
                    if not ev.startswith(b"data: ") or ev == b"data: [DONE]":
                        continue
                    data = orjson.loads(ev[6:])
                    if data.get("usage"):
                        usage = data["usage"]
                    for choice in data["choices"]:
                        text = choice["delta"].get("content")
                        if text:
                            frames.append(text_head + orjson.dumps(text) + text_tail)
                        if choice.get("finish_reason"):
                            frames.append(b"data: " + head + b'{}},"logprobs":null,"finish_reason":"stop"}]}\n\n')
                if frames:
                    await resp.write(b"".join(frames))
            await resp.write(b"data: [DONE]\n\n")
            record(rid, (t0, wall), request, model, True, usage)
            await resp.write_eof()
            return resp

    app = web.Application()
    app.cleanup_ctx.append(lifetime)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", lambda r: web.json_response({"status": "ok"}))
    return app


async def settle(app: web.Application) -> None:
    settle_gc()  # the collector settled as bmo's server settles it once it is up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="base URL of the upstream, without /v1")
    ap.add_argument("--db", required=True, help="SQLite file for the runs (created with bmo's schema)")
    ap.add_argument("--key", action="append", default=[], help="an accepted API key (repeatable)")
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = make_app(a.upstream, a.db, set(a.key) or {os.environ.get("BMO_API_KEY", "")})
    app.on_startup.append(settle)
    web.run_app(app, host="127.0.0.1", port=a.port, access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
