"""The run ledger and posture through a real server: every compat request is one row."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import threading
import time
from typing import Any

import aiohttp
import httpx
import pytest

from bmo.recorder import AccessLog
from bmo.runs import RunRecord
from bmo.store.db import Database
from bmo.store.ledger import LedgerWriter
from conftest import AGENTS, upstream_config
from fakes import BmoServer, FakeUpstream, LoopThread, Step
from golden import assert_golden

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
UA = {"User-Agent": "ledger-test/1.0"}


def get(s: BmoServer, path: str, **kw: Any) -> httpx.Response:
    return httpx.get(s.url + path, timeout=20, headers=UA, **kw)


def post(s: BmoServer, body: Any, **kw: Any) -> httpx.Response:
    headers = {**UA, **kw.pop("headers", {})}
    return httpx.post(s.url + CHAT, json=body, timeout=20, headers=headers, **kw)


def run_of(s: BmoServer, rid: str) -> dict[str, Any]:
    r = get(s, f"/v1/openai-compat/runs/{rid}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_run(s: BmoServer, rid: str, timeout: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = get(s, f"/v1/openai-compat/runs/{rid}")
        if r.status_code == 200 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            return r.json()
        time.sleep(0.05)


def test_the_request_id_a_client_got_finds_its_run(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(tool_calls=[{"id": "c1", "name": "calculator", "arguments": '{"expression":"1+1"}'}]),
                     Step(text="two"))  # fmt: skip
    r = post(bmo, {"model": "helper", "messages": USER})
    rid = r.headers["x-request-id"]
    run = run_of(bmo, rid)
    assert run["status"] == 200 and run["outcome"] == "ok" and run["agent"] == "helper"
    assert run["upstream_route"] == "up/gpt-test" and run["model_requested"] == "helper"
    assert run["prompt_tokens"] == 14 and run["completion_tokens"] == 10 and run["tool_calls"] == 1
    assert run["client_ua"] == "ledger-test/1.0" and run["client_ip"] == "127.0.0.1"
    assert_golden("ledger_run.json", run)
    events = get(bmo, f"/v1/openai-compat/runs/{rid}/events").json()
    names = [e["name"] for e in events["data"]]
    assert names == ["received", "resolved", "upstream_request", "tool_call", "tool_result", "upstream_request",
                     "first_token", "finished"]  # fmt: skip
    times = [e["t_ms"] for e in events["data"]]
    assert times == sorted(times)
    assert_golden("ledger_events.json", events)


@pytest.mark.parametrize(
    ("name", "send", "status"),
    [
        ("bad_json", lambda s: httpx.post(s.url + CHAT, content=b"{", headers=UA), 400),
        ("unknown_model", lambda s: post(s, {"model": "nope", "messages": USER}), 404),
        ("unknown_route", lambda s: get(s, "/v1/whatever"), 404),
        ("wrong_method", lambda s: get(s, CHAT), 405),
        ("too_large", lambda s: post(s, {"messages": [{"role": "user", "content": "x" * 30000}]}), 413),
    ],
)
def test_every_answer_is_recorded(make_bmo: Any, upstream: FakeUpstream, name: str, send: Any,
                                  status: int) -> None:  # fmt: skip
    s = make_bmo(config=upstream_config(upstream, "server: {max_body_mb: 0.02}\n"), agents=AGENTS)
    r = send(s)
    assert r.status_code == status
    run = run_of(s, r.headers["x-request-id"])
    assert run["status"] == status and run["outcome"] == "client_error"
    assert run["error_code"] == r.json()["error"]["code"]


def test_auth_failures_are_recorded(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(config=upstream_config(upstream).replace("mode: none", "mode: keys"), env_api_key="sk-admin",
                 agents=AGENTS)  # fmt: skip
    r = httpx.get(s.url + "/v1/models", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    run = httpx.get(s.url + f"/v1/openai-compat/runs/{r.headers['x-request-id']}",
                    headers={"Authorization": "Bearer sk-admin"}).json()  # fmt: skip
    assert (run["status"], run["error_code"], run["api_key_prefix"]) == (401, "invalid_api_key", None)
    ok = httpx.get(s.url + "/v1/models", headers={"Authorization": "Bearer sk-admin"})
    run = httpx.get(s.url + f"/v1/openai-compat/runs/{ok.headers['x-request-id']}",
                    headers={"Authorization": "Bearer sk-admin"}).json()  # fmt: skip
    assert run["api_key_prefix"] == "sk-admin"


def test_abandoned_stream_is_cancelled(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text=" ".join(["w"] * 300), token_delay=0.02))
    with httpx.stream("POST", bmo.url + CHAT, json={"model": "helper", "messages": USER, "stream": True},
                      headers=UA, timeout=10) as r:  # fmt: skip
        rid = r.headers["x-request-id"]
        next(r.iter_bytes())
    deadline = time.monotonic() + 5
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = get(bmo, f"/v1/openai-compat/runs/{rid}")
        if resp.status_code == 200:
            run = resp.json()
            break
        time.sleep(0.05)
    assert run["outcome"] == "cancelled" and run["stream"] is True and run["status"] == 200
    names = [e["name"] for e in get(bmo, f"/v1/openai-compat/runs/{rid}/events").json()["data"]]
    assert "client_disconnected" in names and names[-1] == "finished"


def test_mid_stream_upstream_failure_recorded_as_upstream_error(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(text="a b c d", error_after=2))
    r = post(bmo, {"model": "helper", "messages": USER, "stream": True})
    run = run_of(bmo, r.headers["x-request-id"])
    assert (run["status"], run["outcome"], run["error_code"]) == (200, "upstream_error", "upstream_error")


def test_runs_paging_and_filters(bmo: BmoServer, upstream: FakeUpstream) -> None:
    ids = [post(bmo, {"model": "default", "messages": USER}).headers["x-request-id"] for _ in range(5)]
    ids.append(post(bmo, {"model": "helper", "messages": USER}).headers["x-request-id"])
    get(bmo, "/v1/nope")
    page = get(bmo, "/v1/openai-compat/runs", params={"limit": 3}).json()
    assert page["object"] == "list" and page["has_more"] is True and len(page["data"]) == 3
    seen = [r["request_id"] for r in page["data"]]
    while page["has_more"]:
        page = get(bmo, "/v1/openai-compat/runs", params={"limit": 3, "cursor": page["next_cursor"]}).json()
        seen += [r["request_id"] for r in page["data"]]
    assert len(seen) == 7 and len(set(seen)) == 7
    assert seen[1:] == list(reversed(ids))  # newest first
    agent = get(bmo, "/v1/openai-compat/runs", params={"agent": "helper"}).json()["data"]
    assert [r["request_id"] for r in agent] == [ids[-1]]
    s404 = get(bmo, "/v1/openai-compat/runs", params={"status": 404}).json()["data"]
    assert len(s404) == 1 and s404[0]["route"] == "unmatched"
    route = get(bmo, "/v1/openai-compat/runs", params={"route": CHAT, "limit": 500}).json()["data"]
    assert len(route) == 6
    assert_golden("ledger_runs_page.json", get(bmo, "/v1/openai-compat/runs", params={"limit": 1}).json())
    bad = get(bmo, "/v1/openai-compat/runs", params={"cursor": "garbage!"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cursor"
    bad = get(bmo, "/v1/openai-compat/runs", params={"limit": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
    missing = get(bmo, "/v1/openai-compat/runs/req_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "run_not_found"
    assert_golden("ledger_run_not_found.json", missing.json())


def test_posture_shape_and_counts(bmo: BmoServer) -> None:
    for _ in range(3):
        post(bmo, {"messages": USER})
    get(bmo, "/v1/nope")
    p = get(bmo, "/v1/openai-compat/posture").json()
    assert p["state"] == "ready" and p["source"] == "server" and p["in_flight"] == 0
    assert {g["route"]: g["count"] for g in p["by_route"]} == {CHAT: 3, "unmatched": 1}
    assert {g["outcome"]: g["count"] for g in p["by_outcome"]} == {"ok": 3, "client_error": 1}
    assert p["top_user_agents"] == [{"client_ua": "ledger-test/1.0", "count": 4}]
    assert p["top_clients"] == [{"client": "ledger-test", "count": 4}]  # the product token of an unknown UA
    assert p["generated_at"].endswith("Z") and p["recent_runs"][0]["started_at"].endswith("Z")  # UTC ISO-8601
    assert len(p["recent_runs"]) == 4
    assert_golden("posture.json", p)


def test_prompts_stored_only_when_asked(make_bmo: Any, upstream: FakeUpstream) -> None:
    plain = make_bmo(config=upstream_config(upstream), agents=AGENTS)
    r = post(plain, {"messages": [{"role": "user", "content": "secret plans"}]})
    assert "content" not in run_of(plain, r.headers["x-request-id"])
    db = (plain.home / "bmo.db").read_bytes()
    assert b"secret plans" not in db
    keep = make_bmo(config=upstream_config(upstream, "ledger: {store_content: true}\n"), agents=AGENTS)
    r = post(keep, {"messages": [{"role": "user", "content": "secret plans"}]})
    run = run_of(keep, r.headers["x-request-id"])
    assert run["content"] == {"messages": [{"role": "user", "content": "secret plans"}], "answer": "secret plans"}


def test_store_failure_never_fails_requests_and_posture_recovers(bmo: BmoServer) -> None:
    assert post(bmo, {"messages": USER}).status_code == 200
    get(bmo, "/v1/openai-compat/runs")  # flushed
    other = sqlite3.connect(bmo.home / "bmo.db", timeout=5)
    other.execute("ALTER TABLE runs RENAME TO runs_hidden")  # the ledger's table is gone: every write fails
    other.commit()
    try:
        for _ in range(5):
            assert post(bmo, {"messages": USER}).status_code == 200
        deadline = time.monotonic() + 5
        p: dict[str, Any] = {}
        while time.monotonic() < deadline:
            p = get(bmo, "/v1/openai-compat/posture").json()
            if p["persistence"]["dropped_rows"] >= 5:
                break
            time.sleep(0.05)
        assert p["state"] == "degraded" and p["persistence"]["state"] == "degraded"
        assert p["persistence"]["dropped_rows"] == 5 and "runs" in p["persistence"]["last_error"]
        assert get(bmo, "/health").status_code == 503
        assert post(bmo, {"messages": USER}).status_code == 200  # still degraded: sticky, still serving
        assert get(bmo, "/v1/openai-compat/posture").json()["state"] == "degraded"
    finally:
        other.execute("ALTER TABLE runs_hidden RENAME TO runs")
        other.commit()
        other.close()
    r = post(bmo, {"messages": USER})
    run = wait_for_run(bmo, r.headers["x-request-id"])
    assert run["outcome"] == "ok"
    p = get(bmo, "/v1/openai-compat/posture").json()
    assert p["state"] == "ready" and p["persistence"]["state"] == "ok" and p["persistence"]["last_error"] is None
    assert get(bmo, "/health").status_code == 200


def test_burst_of_2000_requests_leaves_exactly_2000_rows(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(config=upstream_config(upstream, "openai_compat: {concurrency: 256}\n"), agents=AGENTS)
    n = 2000

    async def burst() -> list[int]:
        sem = asyncio.Semaphore(64)
        async with aiohttp.ClientSession() as client:

            async def one(i: int) -> int:
                async with sem, client.post(s.url + CHAT, json={"messages": [{"role": "user", "content": f"m{i}"}]},
                                            headers=UA) as r:  # fmt: skip
                    await r.read()
                    return r.status

            return await asyncio.gather(*(one(i) for i in range(n)))

    statuses = asyncio.run(burst())
    assert statuses == [200] * n
    get(s, "/v1/openai-compat/runs")  # waits for the writer to flush
    db = sqlite3.connect(s.home / "bmo.db")
    count = db.execute("SELECT count(*) FROM runs WHERE route = ?", (CHAT,)).fetchone()[0]
    db.close()
    assert count == n


def test_shutdown_flushes_everything(make_bmo: Any, upstream: FakeUpstream, servers: LoopThread) -> None:
    s = make_bmo(config=upstream_config(upstream), agents=AGENTS)
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(50):
                post(s, {"messages": USER})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=hammer)
    t.start()
    t.join(30)
    servers.run(s.stop())  # the app's cleanup closes the ledger writer: it must drain its queue
    assert not errors
    db = sqlite3.connect(s.home / "bmo.db")
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 50
    db.close()


def test_metrics_text(bmo: BmoServer, upstream: FakeUpstream) -> None:
    post(bmo, {"messages": USER})
    upstream.enqueue(Step(status=500))
    post(bmo, {"model": "helper", "messages": USER})
    text = get(bmo, "/metrics").text
    assert 'bmo_requests_total{route="/v1/chat/completions",status="200",outcome="ok"} 1' in text
    assert 'bmo_requests_total{route="/v1/chat/completions",status="502",outcome="upstream_error"} 1' in text
    assert 'bmo_upstream_errors_total{upstream_route="up/gpt-test"} 1' in text
    assert 'bmo_request_duration_seconds_count{route="/v1/chat/completions"} 2' in text
    assert "bmo_ledger_degraded 0" in text and "bmo_in_flight 0" in text


def test_ledger_routes_need_the_ledger_scope(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(config=upstream_config(upstream).replace("mode: none", "mode: keys"), env_api_key="sk-admin",
                 agents=AGENTS)  # fmt: skip
    for path in ("/v1/openai-compat/posture", "/v1/openai-compat/runs", "/metrics"):
        assert httpx.get(s.url + path).status_code == 401
        assert httpx.get(s.url + path, headers={"Authorization": "Bearer sk-admin"}).status_code == 200


async def test_retention_prunes_old_runs_in_batches(store_target: Any) -> None:
    from bmo.runs import RunRecord
    from bmo.store import ledger
    from bmo.store.backend import make_store

    db = make_store(store_target)  # SQLite and PostgreSQL
    await db.open()
    writer = ledger.LedgerWriter(db)
    writer.start()
    now = time.time()
    for i in range(2500):
        age_days = 40 if i < 2300 else 1
        writer.submit(
            RunRecord(request_id=f"req_{i:06d}", started_at=now - age_days * 86400, route=CHAT, method="POST")
        )
    await writer.close()
    assert await ledger.count_runs(db) == 2500
    assert await ledger.prune(db, 30, now=now) == 2300  # more than one batch of PRUNE_BATCH
    left, _ = await ledger.list_runs(db, limit=500)
    assert len(left) == 200 and all(r.started_at > now - 30 * 86400 for r in left)
    await db.close()


async def test_a_full_ledger_queue_drops_and_counts_then_writes_the_rest(store_target: Any) -> None:
    from bmo.runs import RunRecord
    from bmo.store import ledger
    from bmo.store.backend import make_store

    db = make_store(store_target)  # SQLite and PostgreSQL
    await db.open()
    writer = ledger.LedgerWriter(db, queue_max=3)
    for i in range(5):  # the writer is not running yet: the disk "cannot keep up"
        writer.submit(RunRecord(request_id=f"req_{i}", started_at=time.time(), route=CHAT, method="POST"))
    p = writer.persistence
    assert (p.state, p.dropped_rows) == ("degraded", 2) and "queue is full" in (p.last_error or "")
    writer.start()
    await writer.flush()
    assert await ledger.count_runs(db) == 3 and p.state == "ok" and p.written_rows == 3
    writer.submit(RunRecord(request_id="req_late", started_at=time.time(), route=CHAT, method="POST"))
    await writer.close()
    assert await ledger.count_runs(db) == 4
    await db.close()


def test_text_access_line_quotes_only_what_needs_it() -> None:
    """One `key=value` per field; a value that is empty or holds a space or a quote is a JSON
    string, and a missing one is `-`, so the line still splits on spaces."""
    out = io.BytesIO()
    log = AccessLog("text", out=out)  # no running loop: each line is written at once
    log.emit(
        "openai_compat.fired",
        {"request_id": "req_1", "agent": None, "client_ua": "OpenAI/Python 1.2", "route": "/v1/chat/completions"},
    )
    log.emit("openai_compat.action", {"status": 200, "error_code": None, "duration_ms": 1.5, "note": "", "q": 'a"b'})
    first, second = out.getvalue().decode().splitlines()
    assert first.endswith(
        ' INFO bmo.access: openai_compat.fired request_id=req_1 agent=- client_ua="OpenAI/Python 1.2"'
        " route=/v1/chat/completions"
    )
    assert second.endswith(' openai_compat.action status=200 error_code=- duration_ms=1.5 note="" q="a\\"b"')


def test_queue_depth_counts_runs_waiting_for_the_writer(tmp_path: Any) -> None:
    """Posture and /metrics show the backlog as soon as runs wait, not only once the writer wakes."""
    writer = LedgerWriter(Database(tmp_path / "ledger.db"))  # not started: every run waits
    for i in range(3):
        writer.submit(RunRecord(request_id=f"req_{i}", started_at=0.0, route=CHAT, method="POST"))
    assert writer.persistence.queue_depth == 3
