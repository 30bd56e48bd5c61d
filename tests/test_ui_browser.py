"""The web console (`GET /ui`) driven in a real headless Chromium, as a person would use it:
refused keys, the posture, filtering runs, one run's events. Screenshots of every view go to
tests/artifacts/ui/ (git-ignored) for a human to look at; a second test fails on any console
error or uncaught exception, and on any request that leaves the server's origin.

The browser is Debian's `chromium` (/usr/bin/chromium, or BMO_CHROMIUM), driven by Playwright
with `executable_path`: nothing here downloads a browser (`playwright install` is never run).
.ci/run installs the package; without it this module skips, except in CI, where it fails (a
test that cannot run must not pass).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import AGENTS, upstream_config
from fakes import BmoServer, FakeUpstream, LoopThread, Step

CHROMIUM = Path(os.environ.get("BMO_CHROMIUM", "/usr/bin/chromium"))
try:
    from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
except ImportError:  # the dev extras are not installed
    sync_playwright = None  # type: ignore[assignment]

if sync_playwright is None or not CHROMIUM.exists():
    why = "Playwright is not installed (pip install -e '.[dev]')" if sync_playwright is None else f"no {CHROMIUM}"
    if os.environ.get("CI"):  # .ci/run installs both: there, a missing browser is a failure, not a skip
        raise RuntimeError(f"the web console's browser test cannot run: {why} (apt-get install chromium)")
    pytest.skip(f"the web console's browser test needs Debian's chromium: {why}", allow_module_level=True)

ARTIFACTS = Path(__file__).parent / "artifacts" / "ui"
ADMIN = "sk-bmo-ui-browser-admin-0123456789"
CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]
TIMEOUT_MS = 10_000  # per wait: generous on a loaded 2-core machine; no test asserts on speed
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            # --disable-dev-shm-usage: containers' /dev/shm is small; the sandbox is off as root anyway
            args=["--disable-dev-shm-usage", "--no-first-run", "--disable-gpu"],
        )
        yield b
        b.close()


@pytest.fixture
def console(make_bmo: Any, upstream: FakeUpstream, servers: LoopThread) -> dict[str, Any]:
    """bmo with auth.mode keys, some varied traffic in its ledger, and two stored keys: one with
    the `ledger` scope, one with `chat` only."""
    s: BmoServer = make_bmo(config=upstream_config(upstream).replace("mode: none", "mode: keys"), env_api_key=ADMIN,
                            agents=AGENTS)  # fmt: skip
    ledger_key = servers.run(s.runtime.key_store.create("console", ["ledger"])).secret
    chat_key = servers.run(s.runtime.key_store.create("chatonly", ["chat"])).secret
    upstream.enqueue(
        Step(tool_calls=[{"id": "c1", "name": "calculator", "arguments": '{"expression":"6*7"}'}]),
        Step(text="42"),
        Step(text="hello"),
        Step(text="again"),
        Step(status=500, error="upstream fell over"),
    )

    def chat(model: str, ua: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN}", "User-Agent": ua}
        return httpx.post(s.url + CHAT, json={"model": model, "messages": USER}, headers=headers, timeout=20)

    tool_run = chat("helper", "OpenAI/Python 1.99.0").headers["x-request-id"]
    chat("plain", "claude-cli/2.1.0 (external, cli)")
    chat("plain", "claude-cli/2.1.0 (external, cli)")
    chat("nope", "curl/8.5.0")
    failed_run = chat("plain", "OpenAI/Python 1.99.0").headers["x-request-id"]
    return {"server": s, "ledger_key": ledger_key, "chat_key": chat_key, "tool_run": tool_run,
            "failed_run": failed_run}  # fmt: skip


def _page(browser: Browser) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme="light")
    page.set_default_timeout(TIMEOUT_MS)
    return page


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def _open(page: Page, key: str) -> None:
    page.fill("#key", key)
    page.click("#key-submit")


def test_console_key_posture_runs_and_one_run(browser: Browser, console: dict[str, Any]) -> None:
    s: BmoServer = console["server"]
    page = _page(browser)
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(s.url + "/ui")

    # 1. the key gate, and refused keys said plainly
    expect(page.locator("#gate")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    _shot(page, "01-key.png")
    _open(page, "sk-bmo-not-a-real-key-000000000000000000000")
    expect(page.locator("#gate-error")).to_contain_text("The server refused this key")
    expect(page.locator("#gate")).to_be_visible()
    _shot(page, "02-wrong-key.png")
    _open(page, console["chat_key"])
    expect(page.locator("#gate-error")).to_contain_text("needs the `ledger` scope")
    assert page.evaluate("sessionStorage.length") == 0  # a refused key is not kept

    # 2. posture: figures, groups, the charts, recent runs
    _open(page, console["ledger_key"])
    expect(page.locator("#gate")).to_be_hidden()
    figures = page.locator("#posture-figures")
    expect(figures.locator(".stat").first).to_contain_text("ready")
    expect(page.locator("#posture-groups")).to_contain_text(CHAT)
    expect(page.locator("#posture-groups")).to_contain_text("upstream_error")
    expect(page.locator("#posture-clients")).to_contain_text("OpenAI/Python 1.99.0")
    expect(page.locator("#chart-requests svg rect.o-ok").first).to_be_attached()
    expect(page.locator("#chart-latency svg circle.dot.p95").first).to_be_attached()
    expect(page.locator("#posture-recent table tbody tr")).to_have_count(5)
    expect(page.locator("#live")).to_contain_text("live")
    _shot(page, "03-posture.png")
    # the key: in this tab's sessionStorage only, never in a URL or a cookie, never on the page
    key = console["ledger_key"]
    assert page.evaluate("sessionStorage.getItem('bmo.console.key')") == key
    assert page.evaluate("document.cookie") == "" and page.evaluate("localStorage.length") == 0
    assert key not in page.content() and not any(key in u or "sk-bmo" in u for u in urls)
    # a hidden tab stops polling; shown again, it polls again
    page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    expect(page.locator("#live")).to_have_text("paused")
    page.evaluate(
        "Object.defineProperty(document, 'visibilityState', {value: 'visible', configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'))"
    )
    expect(page.locator("#live")).to_contain_text("live")

    # 3. runs, filtered as `bmo runs list` filters
    page.click("#nav a[data-view=runs]")
    rows = page.locator("#runs-results table tbody tr")
    expect(rows).to_have_count(5)
    page.fill("#f-agent", "helper")
    page.click("#f-apply")
    expect(page).to_have_url(re.compile(r"#/runs\?agent=helper$"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(console["tool_run"])
    _shot(page, "04-runs-filtered.png")
    page.click("#f-clear")
    page.select_option("#f-outcome", "upstream_error")
    page.fill("#f-ua", "python")
    page.click("#f-apply")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(console["failed_run"])
    page.fill("#f-client", "claude-code")  # no run has both: the filters combine
    page.click("#f-apply")
    expect(page.locator("#runs-results .empty")).to_contain_text("No run matches")

    # 4. one run: its fields and its events as a timeline, the tool call highlighted
    page.goto(s.url + "/ui#/runs?agent=helper")
    page.click(f"#runs-results a:text('{console['tool_run']}')")
    expect(page).to_have_url(re.compile(r"#/runs/" + console["tool_run"] + "$"))
    expect(page.locator("#run-id")).to_have_text(console["tool_run"])
    events = page.locator("#run-events tbody tr")
    expect(events).to_have_count(8)
    expect(page.locator("#run-events tr[data-event=tool_call]")).to_have_class(re.compile(r"\btool\b"))
    expect(page.locator("#run-events tr[data-event=tool_result]")).to_have_class(re.compile(r"\btool\b"))
    expect(page.locator("#run-fields")).to_contain_text("up/gpt-test")
    _shot(page, "05-run.png")
    # a failed run: its error events stand out
    page.goto(s.url + "/ui#/runs/" + console["failed_run"])
    expect(page.locator("#run-events tr[data-event=upstream_error]")).to_have_class(re.compile(r"\bbad\b"))
    expect(page.locator("#run-events tr[data-event=finished]")).to_have_class(re.compile(r"\bbad\b"))
    _shot(page, "06-run-failed.png")
    page.goto(s.url + "/ui#/runs/req_nope")  # an unknown run is a message
    expect(page.locator("#view")).to_contain_text("No such run")

    # 5. forgetting the key goes back to the gate
    page.click("#forget")
    expect(page.locator("#gate")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    page.close()


def test_console_logs_no_error_and_fetches_nothing_from_elsewhere(browser: Browser, console: dict[str, Any]) -> None:
    s: BmoServer = console["server"]
    page = _page(browser)
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            problems.append(f"console {msg.type}: {msg.text} ({msg.location})")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    page.on("request", lambda r: None if r.url.startswith(s.url + "/") else problems.append(f"elsewhere: {r.url}"))
    page.goto(s.url + "/ui")
    _open(page, console["ledger_key"])
    expect(page.locator("#posture-figures .stat").first).to_contain_text("ready")
    for _ in range(2):  # it polls on its own
        with page.expect_response(lambda r: "/openai-compat/stats" in r.url, timeout=TIMEOUT_MS):
            pass
    page.click("#nav a[data-view=runs]")
    page.select_option("#f-outcome", "ok")
    page.click("#f-apply")
    expect(page.locator("#runs-results table tbody tr")).to_have_count(3)
    page.click(f"#runs-results a:text('{console['tool_run']}')")
    expect(page.locator("#run-events tbody tr")).to_have_count(8)
    page.go_back()
    expect(page.locator("#runs-results table tbody tr")).to_have_count(3)
    page.close()
    assert problems == []
