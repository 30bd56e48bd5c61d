"""A short soak of a real `bmo serve` (bounded: `SOAK_S` at `RATE` requests a second): mixed
traffic — whole and streamed answers in both dialects, client errors, connections that close
after one request, clients that walk away mid-stream — and bmo's memory and descriptors stay
flat, and every request on a compat route is in the ledger. RSS and descriptor counts are
printed (`pytest -s`); the assertions are generous bounds on growth, not on speed.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx

from fakes import FakeUpstream, Step
from running import ServeProcess, fds, rss_kb, write_home

SOAK_S = 60.0  # RSS levels off after ~2,000 requests (the collector's thresholds, server/serve.py)
RATE = 50  # requests a second
WARM = 200
RSS_GROWTH_MAX_KB = 30 * 1024  # generous (it levels off ~12 MB up): a leak of 10 KB a request would pass it
LATE_GROWTH_MAX_KB = 8 * 1024  # over the last third, once it has levelled off
FD_GROWTH_MAX = 5
USER = [{"role": "user", "content": "hello there, soak"}]


def test_soak_memory_and_descriptors_stay_flat_and_every_run_is_recorded(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    config = f'auth: {{mode: none}}\nproviders:\n  up: {{kind: openai, base_url: "{upstream.url}", timeout_s: 10}}\n'
    home = write_home(tmp_path / "home", config, {"slow": "id: slow\nmodel: up/slow\n"})
    srv = ServeProcess(home)
    ids: list[str] = []
    statuses: dict[int, int] = {}
    try:
        with httpx.Client(timeout=10) as c:
            for _ in range(WARM):
                ids.append(c.post(srv.url + "/v1/chat/completions", json={"messages": USER}).headers["x-request-id"])
        time.sleep(0.5)
        rss0, fd0 = rss_kb(srv.pid), fds(srv.pid)
        samples: list[int] = []
        t0 = time.monotonic()
        n = 0
        c = httpx.Client(timeout=10)
        while (elapsed := time.monotonic() - t0) < SOAK_S:
            kind = n % 20
            n += 1
            if kind < 9:  # a whole chat answer
                r = c.post(srv.url + "/v1/chat/completions", json={"messages": USER})
            elif kind < 12:  # a streamed chat answer
                r = c.post(srv.url + "/v1/chat/completions", json={"messages": USER, "stream": True})
            elif kind < 14:  # a streamed Anthropic answer
                r = c.post(srv.url + "/v1/messages", json={"messages": USER, "stream": True, "max_tokens": 50})
            elif kind == 14:  # model_not_found
                r = c.post(srv.url + "/v1/chat/completions", json={"model": "nope", "messages": USER})
            elif kind == 15:  # invalid_json
                r = c.post(srv.url + "/v1/chat/completions", content=b"{nope")
            elif kind == 16:  # a connection for one request
                with httpx.Client(timeout=10) as once:
                    r = once.post(srv.url + "/v1/messages", json={"messages": USER, "max_tokens": 50})
            elif kind == 17:  # a client that walks away mid-stream
                upstream.enqueue(Step(text=" ".join(["w"] * 50), token_delay=0.02))
                with httpx.Client(timeout=10) as gone:
                    body = {"model": "slow", "messages": USER, "stream": True}
                    with gone.stream("POST", srv.url + "/v1/chat/completions", json=body) as r:
                        next(r.iter_bytes())
            else:  # not recorded: health and the ledger's reads
                r = c.get(srv.url + ("/health" if kind == 18 else "/v1/openai-compat/posture"))
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if kind < 18:
                ids.append(r.headers["x-request-id"])
            if n % (RATE * 5) == 0:  # every 5 s
                samples.append(rss_kb(srv.pid))
            time.sleep(max(0.0, n / RATE - (time.monotonic() - t0)))  # paced: RATE a second
        c.close()
        time.sleep(1.0)  # cancelled runs unwind, closed connections go
        rss1, fd1 = rss_kb(srv.pid), fds(srv.pid)
    finally:
        code, err, _ = srv.terminate()
    assert code == 0, err[-2000:]
    db = sqlite3.connect(home / "bmo.db")
    try:
        stored = {r[0] for r in db.execute("SELECT request_id FROM runs")}
    finally:
        db.close()
    missing = [i for i in ids if i not in stored]
    print(
        f"\n[soak] {n} requests in {elapsed:.0f}s ({n / elapsed:.0f}/s), statuses {dict(sorted(statuses.items()))}; "
        f"RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB (samples {[round(s / 1024, 1) for s in samples]}), "
        f"fds {fd0} -> {fd1}; {len(ids)} compat requests, {len(missing)} missing from the ledger"
    )
    assert not any(s >= 500 for s in statuses)
    assert rss1 - rss0 < RSS_GROWTH_MAX_KB
    third = len(samples) // 3
    assert samples[-1] - samples[-third - 1] < LATE_GROWTH_MAX_KB  # flat at the end
    assert fd1 <= fd0 + FD_GROWTH_MAX
    assert not missing
