"""The load driver: a separate process that sends Chat Completions (or, with `--api`, Anthropic
Messages, OpenAI Responses or legacy completions) requests and measures them.

Python (aiohttp client, one pooled session, `--concurrency` workers) for every scenario; `wrk`
for non-stream load when it is installed (`wrk_command`/`parse_wrk`, used by the orchestrator), because a C
client leaves more of the load core to the upstream. Bounded twice: at most `--requests`
requests, none started after `--duration` seconds, and the whole run cut at duration + timeout.
Loopback only. Prints one JSON object:

    sent, completed, ok, errors{reason: n}, elapsed_s, rps, lat_p50_ms, lat_p99_ms,
    ttft_p50_ms, ttft_p99_ms, ttfb_p50_ms, ttfb_p99_ms, tokens, tok_s, max_open

A stream's TTFT is the time from sending the request to the first chunk with non-empty
`delta.content` (not the first byte: bmo sends its headers and role chunk before the upstream
answers). A stream's TTFB is the time to the first byte of the response: when its status line
and headers have arrived (a server that holds its headers for the first chunk sends both at
once). Tokens are chunks with non-empty content, counted without decoding JSON.

`--api messages` sends the same body to `/v1/messages` with the headers an Anthropic SDK sends
(`x-api-key`, `anthropic-version`). A whole answer must carry a text in `content[0].text`
(`bad_message` otherwise); a stream's tokens are its `text_delta` events (TTFT: the first one)
and it must end with `message_stop` (`stream_without_message_stop` otherwise; an `error` event
is `stream_error_event`).

`--api responses` sends `{"model", "input", "stream", "store": false}` to `/v1/responses`
(`--api responses_store`: the same without `store`, whose default is true: the answer is kept).
A whole answer must have status `completed` and a non-empty `output_text`; a stream's tokens are
its `response.output_text.delta` events and it must carry exactly one terminal event, and that
`response.completed` (`stream_without_completed`, `stream_terminal_events`; `response.failed`,
`response.incomplete` or `error` is `stream_error_event`).

`--api completions` sends `{"model", "prompt", "max_tokens", "stream"}` to `/v1/completions`.
A whole answer must carry a text in `choices[0].text`; a stream's tokens are its chunks with a
non-empty `text` and it must end with `data: [DONE]` (a chunk with an `error` is
`stream_error_event`).

    python scripts/bench/driver.py --url http://127.0.0.1:9000/v1/chat/completions --key K \\
        --stream --concurrency 64 --requests 256 --duration 30 --expect-tokens 200
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

TOKEN = re.compile(rb'"content":\s*"(?!")')  # a chunk that carries text; role chunks carry ""
TEXT_DELTA = b'"type":"text_delta"'  # an Anthropic token (bmo renders with orjson: no spaces)
MESSAGE_STOP = b"event: message_stop"
OUTPUT_TEXT_DELTA = b"event: response.output_text.delta\n"  # a Responses token
RESPONSE_COMPLETED = b"event: response.completed\n"
RESPONSE_FAILS = (b"event: response.incomplete\n", b"event: response.failed\n", b"event: error\n")
RESPONSE_ENDS = (RESPONSE_COMPLETED, *RESPONSE_FAILS[:2])  # the terminal events: exactly one a stream
TEXT_TOKEN = re.compile(rb'"text":\s*"(?!")')  # a completions chunk that carries text; the last one carries ""
UA = "bmo-bench/1"
ANTHROPIC_VERSION = "2023-06-01"
APIS = ("chat", "messages", "responses", "responses_store", "completions")
PATHS = {
    "chat": "/v1/chat/completions",
    "messages": "/v1/messages",
    "responses": "/v1/responses",
    "responses_store": "/v1/responses",
    "completions": "/v1/completions",
}
PROMPT = "Write one sentence about foxes."


def request_body(model: str, stream: bool, api: str = "chat") -> bytes:
    """The body an API is sent. Chat and messages share one: it is a valid Chat Completions
    body and a valid Messages body (model, messages of string content, max_tokens), so both
    routes parse the same bytes. Responses and completions carry the same prompt in their own
    shape: `input` (with `store` false, or left out with `responses_store`: its default is
    true), and `prompt` with `max_tokens`."""
    body: dict[str, Any]
    if api in ("responses", "responses_store"):
        body = {"model": model, "input": PROMPT, "stream": stream}
        if api == "responses":
            body["store"] = False
        return orjson.dumps(body)
    if api == "completions":
        return orjson.dumps({"model": model, "prompt": PROMPT, "max_tokens": 256, "stream": stream})
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 256}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def request_headers(api: str, key: str | None) -> dict[str, str]:
    """What an SDK of the API sends: a Bearer key, or Anthropic's `x-api-key` and version."""
    headers = {"Content-Type": "application/json", "User-Agent": UA}
    if api == "messages":
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if key:
            headers["x-api-key"] = key
    elif key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


class Load:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.api = a.api
        self.body = request_body(a.model, a.stream, a.api)
        self.headers = request_headers(a.api, a.key)
        self.messages = a.api == "messages"
        self.responses = a.api in ("responses", "responses_store")
        self.completions = a.api == "completions"
        self.sent = self.completed = self.ok = self.tokens = 0
        self.open = self.max_open = 0
        self.errors: Counter[str] = Counter()
        self.lat: list[float] = []
        self.ttft: list[float] = []
        self.ttfb: list[float] = []
        self.deadline = 0.0

    async def one(self, session: aiohttp.ClientSession) -> None:
        t0 = time.perf_counter()
        self.sent += 1
        async with session.post(self.a.url, data=self.body, headers=self.headers) as resp:
            first_byte = time.perf_counter() - t0  # the status line and headers are in
            if resp.status != 200:
                await resp.read()
                self.completed += 1
                self.errors[f"http_{resp.status}"] += 1
                return
            if not self.a.stream:
                data = await resp.read()
                self.completed += 1
                if self.api != "chat" and not answer_ok(self.api, data):
                    self.errors[f"bad_{'message' if self.messages else self.api}"] += 1
                    return
                self.ok += 1
                self.lat.append(time.perf_counter() - t0)
                return
            self.open += 1
            self.max_open = max(self.max_open, self.open)
            failed = False
            ends = 0  # Responses: terminal events seen
            try:
                n, first, done, buf = 0, None, False, b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    end = buf.rfind(b"\n\n")
                    if end < 0:
                        continue
                    events, buf = buf[:end], buf[end + 2 :]
                    if self.messages:
                        k = events.count(TEXT_DELTA)
                        if MESSAGE_STOP in events:
                            done = True
                        if b"event: error" in events:
                            failed = True
                    elif self.responses:
                        k = events.count(OUTPUT_TEXT_DELTA)
                        # an event line ends in a newline, which no JSON data line holds raw
                        ends += sum(events.count(e) for e in RESPONSE_ENDS)
                        if RESPONSE_COMPLETED in events:
                            done = True
                        if any(e in events for e in RESPONSE_FAILS):
                            failed = True
                    elif self.completions:
                        k = len(TEXT_TOKEN.findall(events))
                        if b"data: [DONE]" in events:
                            done = True
                        if b'"error":' in events:
                            failed = True
                    else:
                        k = len(TOKEN.findall(events))
                        if b"data: [DONE]" in events:
                            done = True
                    if k and first is None:
                        first = time.perf_counter() - t0
                    n += k
            finally:
                self.open -= 1
        self.completed += 1
        self.tokens += n
        if failed:
            self.errors["stream_error_event"] += 1
        elif ends > 1:
            self.errors["stream_terminal_events"] += 1
        elif not done:
            self.errors[_NOT_DONE.get(self.api, "stream_without_done")] += 1
        elif self.a.expect_tokens and n != self.a.expect_tokens:
            self.errors["wrong_token_count"] += 1
        else:
            self.ok += 1
            self.lat.append(time.perf_counter() - t0)
            self.ttfb.append(first_byte)
            if first is not None:
                self.ttft.append(first)

    async def worker(self, session: aiohttp.ClientSession) -> None:
        while self.sent < self.a.requests and time.perf_counter() < self.deadline:
            try:
                await asyncio.wait_for(self.one(session), self.a.timeout)
            except TimeoutError:
                self.errors["timeout"] += 1
            except aiohttp.ClientError as e:
                self.errors[type(e).__name__] += 1

    async def run(self) -> dict[str, Any]:
        conn = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=None)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
            t0 = time.perf_counter()
            self.deadline = t0 + self.a.duration
            tasks = [asyncio.ensure_future(self.worker(session)) for _ in range(self.a.concurrency)]
            done, pending = await asyncio.wait(tasks, timeout=self.a.duration + self.a.timeout + 5)
            for t in pending:
                t.cancel()
                self.errors["cut_at_deadline"] += 1
            await asyncio.gather(*pending, return_exceptions=True)
            elapsed = time.perf_counter() - t0
        ms = 1000.0
        return {
            "driver": "python",
            "sent": self.sent,
            "completed": self.completed,
            "ok": self.ok,
            "errors": dict(self.errors),
            "elapsed_s": elapsed,
            "rps": self.ok / elapsed if elapsed else 0.0,
            "lat_p50_ms": (pct(self.lat, 0.5) or 0) * ms,
            "lat_p99_ms": (pct(self.lat, 0.99) or 0) * ms,
            "ttft_p50_ms": (pct(self.ttft, 0.5) or 0) * ms if self.ttft else None,
            "ttft_p99_ms": (pct(self.ttft, 0.99) or 0) * ms if self.ttft else None,
            "ttfb_p50_ms": (pct(self.ttfb, 0.5) or 0) * ms if self.ttfb else None,
            "ttfb_p99_ms": (pct(self.ttfb, 0.99) or 0) * ms if self.ttfb else None,
            "tokens": self.tokens,
            "tok_s": self.tokens / elapsed if elapsed else 0.0,
            "max_open": self.max_open,
        }


_NOT_DONE = {
    "messages": "stream_without_message_stop",
    "responses": "stream_without_completed",
    "responses_store": "stream_without_completed",
}


def _message_text(data: bytes) -> bool:
    """A whole Messages answer whose first block carries text."""
    try:
        msg = orjson.loads(data)
        text = msg["content"][0]["text"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return False
    return isinstance(text, str) and bool(text)


def answer_ok(api: str, data: bytes) -> bool:
    """A whole answer of `api` that carries a text: Messages' `content[0].text`, a completed
    Responses object's `output_text`, a `text_completion`'s `choices[0].text`."""
    if api == "messages":
        return _message_text(data)
    try:
        obj = orjson.loads(data)
        if api in ("responses", "responses_store"):
            text = obj["output_text"] if obj["status"] == "completed" else None
        elif api == "completions":
            text = obj["choices"][0]["text"] if obj["object"] == "text_completion" else None
        else:
            text = obj["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return False
    return isinstance(text, str) and bool(text)


def serves(url: str, key: str | None, api: str, timeout: float = 10.0) -> bool:
    """Whether `url` (a gateway's route for `api`) answers one whole request of `api` with a
    text: False for a gateway, or a bmo revision, that has no such route."""
    body = request_body("bench", False, api)
    req = urllib.request.Request(url, data=body, headers=request_headers(api, key), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status == 200 and answer_ok(api, r.read())
    except (urllib.error.URLError, OSError):
        return False


def serves_messages(url: str, key: str | None, timeout: float = 10.0) -> bool:
    """Whether `url` (a gateway's /v1/messages) answers one Messages request with a text: False
    for a gateway, or a bmo revision, that has no Anthropic route."""
    return serves(url, key, "messages", timeout)


# ---- wrk -----------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_command(
    url: str, key: str | None, model: str, connections: int, duration: float, script: Path, api: str = "chat"
) -> list[str]:
    """The wrk command line for non-stream load (one thread); writes its Lua request to `script`.
    wrk counts non-2xx answers but reads no body: for an `api` other than chat the content check
    is the Python driver's (the orchestrator's warm-up sends every route through it first)."""
    lua = ['wrk.method = "POST"', f"wrk.body = [[{request_body(model, False, api).decode()}]]"]
    lua += [f'wrk.headers["{k}"] = "{v}"' for k, v in request_headers(api, key).items()]
    script.write_text("\n".join(lua) + "\n")
    secs = max(1, round(duration))
    return ["wrk", "-t1", f"-c{connections}", f"-d{secs}s", "--timeout", "10s", "--latency", "-s", str(script), url]


def parse_wrk(out: str, connections: int) -> dict[str, Any]:
    """wrk's report, in the driver's result shape."""
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    n = int(done.group(1)) if done else 0
    elapsed = _ms(done.group(2) + done.group(3)) / 1000 if done else 0.0
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors: dict[str, int] = {}
    if bad:
        errors["non_2xx"] = int(bad.group(1))
    if sock and any(int(x) for x in sock.groups()):
        errors["socket"] = sum(int(x) for x in sock.groups())
    if not done:
        errors["wrk_failed"] = 1
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    ok = n - errors.get("non_2xx", 0)
    return {
        "driver": "wrk",
        "sent": n,  # completed ones; up to `connections` more were in flight when wrk stopped
        "in_flight_at_stop": connections,
        "completed": n,
        "ok": ok,
        "errors": errors,
        "elapsed_s": elapsed,
        "rps": ok / elapsed if elapsed else 0.0,
        "lat_p50_ms": _ms(p50.group(1)) if p50 else 0.0,
        "lat_p99_ms": _ms(p99.group(1)) if p99 else 0.0,
        "ttft_p50_ms": None,
        "ttft_p99_ms": None,
        "tokens": 0,
        "tok_s": 0.0,
        "max_open": connections,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", default=None, help="sent as `Authorization: Bearer`")
    ap.add_argument("--model", default="bench")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument(
        "--api",
        choices=APIS,
        default="chat",
        help="what --url serves: chat (completions), messages, responses (store false), responses_store "
        "(store left out: true) or completions (legacy)",
    )
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--requests", type=int, default=1000, help="at most this many requests")
    ap.add_argument("--duration", type=float, default=10.0, help="start no request after this many seconds")
    ap.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    ap.add_argument("--expect-tokens", type=int, default=0, help="a stream with another count is an error")
    a = ap.parse_args()
    if not a.url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        sys.exit("driver: loopback URLs only")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(Load(a).run())
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
