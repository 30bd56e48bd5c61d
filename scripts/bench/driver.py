"""The load driver: a separate process that sends Chat Completions requests and measures them.

Python (aiohttp client, one pooled session, `--concurrency` workers) for every scenario; `wrk`
for non-stream load when it is installed (`wrk_command`/`parse_wrk`, used by the orchestrator), because a C
client leaves more of the load core to the upstream. Bounded twice: at most `--requests`
requests, none started after `--duration` seconds, and the whole run cut at duration + timeout.
Loopback only. Prints one JSON object:

    sent, completed, ok, errors{reason: n}, elapsed_s, rps, lat_p50_ms, lat_p99_ms,
    ttft_p50_ms, ttft_p99_ms, tokens, tok_s, max_open

A stream's TTFT is the time from sending the request to the first chunk with non-empty
`delta.content` (not the first byte: bmo sends its headers and role chunk before the upstream
answers). Tokens are chunks with non-empty content, counted without decoding JSON.

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
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

TOKEN = re.compile(rb'"content":\s*"(?!")')  # a chunk that carries text; role chunks carry ""
UA = "bmo-bench/1"


def request_body(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Write one sentence about foxes."}],
        "max_tokens": 256,
    }
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


class Load:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.body = request_body(a.model, a.stream)
        self.headers = {"Content-Type": "application/json", "User-Agent": UA}
        if a.key:
            self.headers["Authorization"] = f"Bearer {a.key}"
        self.sent = self.completed = self.ok = self.tokens = 0
        self.open = self.max_open = 0
        self.errors: Counter[str] = Counter()
        self.lat: list[float] = []
        self.ttft: list[float] = []
        self.deadline = 0.0

    async def one(self, session: aiohttp.ClientSession) -> None:
        t0 = time.perf_counter()
        self.sent += 1
        async with session.post(self.a.url, data=self.body, headers=self.headers) as resp:
            if resp.status != 200:
                await resp.read()
                self.completed += 1
                self.errors[f"http_{resp.status}"] += 1
                return
            if not self.a.stream:
                await resp.read()
                self.completed += 1
                self.ok += 1
                self.lat.append(time.perf_counter() - t0)
                return
            self.open += 1
            self.max_open = max(self.max_open, self.open)
            try:
                n, first, done, buf = 0, None, False, b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    end = buf.rfind(b"\n\n")
                    if end < 0:
                        continue
                    events, buf = buf[:end], buf[end + 2 :]
                    k = len(TOKEN.findall(events))
                    if k and first is None:
                        first = time.perf_counter() - t0
                    n += k
                    if b"data: [DONE]" in events:
                        done = True
            finally:
                self.open -= 1
        self.completed += 1
        self.tokens += n
        if not done:
            self.errors["stream_without_done"] += 1
        elif self.a.expect_tokens and n != self.a.expect_tokens:
            self.errors["wrong_token_count"] += 1
        else:
            self.ok += 1
            self.lat.append(time.perf_counter() - t0)
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
            "tokens": self.tokens,
            "tok_s": self.tokens / elapsed if elapsed else 0.0,
            "max_open": self.max_open,
        }


# ---- wrk -----------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_command(url: str, key: str | None, model: str, connections: int, duration: float, script: Path) -> list[str]:
    """The wrk command line for non-stream load (one thread); writes its Lua request to `script`."""
    lua = [
        'wrk.method = "POST"',
        f"wrk.body = [[{request_body(model, False).decode()}]]",
        'wrk.headers["Content-Type"] = "application/json"',
        f'wrk.headers["User-Agent"] = "{UA}"',
    ]
    if key:
        lua.append(f'wrk.headers["Authorization"] = "Bearer {key}"')
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
