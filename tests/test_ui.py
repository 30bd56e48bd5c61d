"""The web console over HTTP (SPEC §3 `GET /ui`): its page and assets are public, served from
package data with a strict Content-Security-Policy, and hold nothing from outside the machine;
the stats route its charts draw (`GET /v1/openai-compat/stats`) and the runs filters it shares
with `bmo runs list`. tests/test_ui_browser.py drives the console itself in a real browser."""

from __future__ import annotations

import re
import time
from importlib import resources
from typing import Any

import httpx
import pytest

from bmo import ui
from bmo.runs import RunRecord
from conftest import AGENTS, upstream_config
from fakes import BmoServer, FakeUpstream, LoopThread, Step
from golden import assert_golden

KEY = "sk-bmo-ui-test-admin-0123456789"
CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def keyed(make_bmo: Any, upstream: FakeUpstream) -> BmoServer:
    """bmo with auth.mode keys (BMO_API_KEY = KEY), the fake upstream and its agents."""
    return make_bmo(config=upstream_config(upstream).replace("mode: none", "mode: keys"), env_api_key=KEY,
                    agents=AGENTS)  # fmt: skip


def _security_headers(r: httpx.Response) -> None:
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_the_page_and_its_assets_need_no_key_and_carry_the_security_headers(keyed: BmoServer) -> None:
    page = httpx.get(keyed.url + "/ui", timeout=10)  # no key: the page asks for one itself
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    _security_headers(page)
    assert httpx.get(keyed.url + "/ui/", timeout=10).text == page.text  # a trailing slash is the same page
    assets = re.findall(r'(?:src|href)="(/ui/[^"]+)"', page.text)
    assert sorted(assets) == ["/ui/app.css", "/ui/app.js"]
    types = {"/ui/app.js": "text/javascript; charset=utf-8", "/ui/app.css": "text/css; charset=utf-8"}
    for path in assets:
        r = httpx.get(keyed.url + path, timeout=10)
        assert r.status_code == 200 and r.headers["content-type"] == types[path], path
        _security_headers(r)
        assert r.content == _packaged(path.rsplit("/", 1)[1])
    head = httpx.head(keyed.url + "/ui", timeout=10)
    assert head.status_code == 200 and head.headers["content-security-policy"] == CSP
    for missing in ("/ui/nope.js", "/ui/../config.yaml", "/ui/%2e%2e/bmo.db", "/ui/app.js/x"):
        r = httpx.get(keyed.url + missing, timeout=10)
        assert r.status_code == 404, missing
    # The console's own requests are not runs: only the 404s above are in the ledger.
    runs = httpx.get(keyed.url + "/v1/openai-compat/runs", headers=AUTH, timeout=10).json()["data"]
    assert {r["route"] for r in runs} <= {"unmatched"}
    assert not any(r["route"].startswith("/ui") for r in runs)


def _packaged(name: str) -> bytes:
    return resources.files(ui).joinpath(name).read_bytes()


def test_the_console_holds_nothing_from_outside_and_no_inline_code() -> None:
    html = _packaged("index.html").decode()
    js = _packaged("app.js").decode()
    css = _packaged("app.css").decode()
    # the only absolute URL anywhere is SVG's namespace name (an identifier, never fetched)
    for name, text in (("index.html", html), ("app.js", js), ("app.css", css)):
        urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[a-z]{2,}[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)
        assert "@import" not in text and "url(" not in text.replace('href="data:,"', ""), name
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="/ui/' in attrs and not body.strip() for attrs, body in scripts)
    assert "<style" not in html and not re.search(r"\sstyle=", html) and not re.search(r"\son[a-z]+=", html)
    assert "innerHTML" not in js and "eval(" not in js and "document.write" not in js
    assert "localStorage" not in js and "document.cookie" not in js  # the key stays in sessionStorage
    assert set(ui.ASSETS) == {"index.html", "app.js", "app.css"}


def test_stats_buckets_per_minute_by_outcome(keyed: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(tool_calls=[{"id": "c1", "name": "calculator", "arguments": '{"expression":"2*3"}'}]),
                     Step(text="six"))  # fmt: skip
    for model in ("helper", "plain", "plain"):
        r = httpx.post(keyed.url + CHAT, json={"model": model, "messages": USER}, headers=AUTH, timeout=20)
        assert r.status_code == 200, r.text
    assert httpx.post(keyed.url + CHAT, json={"model": "nope", "messages": USER}, headers=AUTH).status_code == 404
    assert httpx.get(keyed.url + "/v1/openai-compat/stats", timeout=10).status_code == 401  # the ledger scope
    r = httpx.get(keyed.url + "/v1/openai-compat/stats", params={"minutes": 2}, headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "openai_compat.stats" and body["minutes"] == 2 and body["bucket_s"] == 60
    assert len(body["buckets"]) == 2 and body["buckets"][0]["count"] == 0  # empty minutes are there too
    last = body["buckets"][-1]  # the buckets end now: the runs just made are all in the last one
    assert last["count"] == 4 and last["by_outcome"] == {"client_error": 1, "ok": 3}
    assert 0 <= last["p50_ms"] <= last["p95_ms"]
    assert body["total"] == {"count": 4, "by_outcome": {"client_error": 1, "ok": 3}}
    default = httpx.get(keyed.url + "/v1/openai-compat/stats", headers=AUTH, timeout=10).json()
    assert default["minutes"] == 60 and len(default["buckets"]) == 60 and default["total"]["count"] == 4
    for bad in ("0", "1441", "x"):
        e = httpx.get(keyed.url + "/v1/openai-compat/stats", params={"minutes": bad}, headers=AUTH, timeout=10)
        assert e.status_code == 400 and e.json()["error"]["param"] == "minutes", bad
    for b in body["buckets"]:
        b["start"] = "<time>"
    body["since"] = body["until"] = "<time>"
    assert_golden("ledger_stats.json", body)


def test_stats_percentiles_are_nearest_rank(keyed: BmoServer, servers: LoopThread) -> None:
    """p50/p95 of a minute with a known spread of durations: the store ranks them in SQL."""
    now = time.time()

    async def submit() -> None:  # on the server's loop: the writer is not thread-safe
        for i in (7, 3, 20, 1, 12, 5, 18, 2, 9, 14, 4, 16, 6, 11, 19, 8, 13, 10, 17, 15):  # 1..20, shuffled
            keyed.runtime.ledger.submit(
                RunRecord(request_id=f"req_{i:024x}", started_at=now - 5, route=CHAT, method="POST", duration_ms=i)
            )

    servers.run(submit())
    body = httpx.get(keyed.url + "/v1/openai-compat/stats?minutes=1", headers=AUTH, timeout=10).json()
    (b,) = body["buckets"]
    assert b["count"] == 20 and b["p50_ms"] == 10.0 and b["p95_ms"] == 19.0  # ceil(q*n/100)-th of 1..20


def test_runs_filters_by_client_and_user_agent(keyed: BmoServer) -> None:
    """The runs route has every filter of `bmo runs list`: route, status, agent, outcome, client, ua."""
    for ua in ("OpenAI/Python 1.99.0", "claude-cli/2.1.0 (external, cli)", "curl/8.5.0"):
        httpx.get(keyed.url + "/v1/models", headers={**AUTH, "User-Agent": ua}, timeout=10)

    def ids(**params: str) -> list[str]:
        r = httpx.get(keyed.url + "/v1/openai-compat/runs", params=params, headers=AUTH, timeout=10)
        assert r.status_code == 200, r.text
        return [x["client_ua"] for x in r.json()["data"]]

    assert ids(ua="python") == ["OpenAI/Python 1.99.0"]  # any case, a substring
    assert ids(ua="%") == [] and ids(ua="_") == []  # LIKE's wildcards are matched as text
    assert ids(client="curl") == ["curl/8.5.0"]
    assert ids(client="curl", ua="python") == []
    assert len(ids(route="/v1/models", status="200")) == 3
