"""Issue 16's smaller items: the new settings, an upstream 429 blamed on the upstream, the
answer-size limit and redaction on an Anthropic upstream, the agent kept on a queue-timeout
429, and /health and posture agreeing on the store."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from bmo.config import load_config
from bmo.errors import ConfigError
from conftest import AGENTS, upstream_config
from fakes import BmoServer, FakeUpstream, Step
from fakes_anthropic import AStep, FakeAnthropicUpstream

USER = [{"role": "user", "content": "hi"}]
CLAUDE_KEY = "claude-upstream-key-9d8c7b6a5f"


def _run(s: BmoServer, r: httpx.Response) -> dict[str, Any]:
    out: dict[str, Any] = httpx.get(f"{s.url}/v1/openai-compat/runs/{r.headers['x-request-id']}", timeout=10).json()
    return out


def test_new_settings_have_defaults_and_are_checked(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "a", env={})
    assert (cfg.server.header_timeout_s, cfg.server.max_connections) == (10, 1024)
    cfg = load_config(tmp_path / "a", env={"BMO_SERVER_HEADER_TIMEOUT_S": "2.5", "BMO_SERVER_MAX_CONNECTIONS": "50"})
    assert (cfg.server.header_timeout_s, cfg.server.max_connections) == (2.5, 50)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.yaml").write_text("providers:\n  up: {kind: openai, max_response_mb: 2}\n")
    assert load_config(tmp_path / "b", env={}).providers["up"].max_response_mb == 2
    for bad in ("server: {max_connections: 0}\n", "server: {header_timeout_s: -1}\n",
                "providers:\n  up: {kind: openai, max_response_mb: 0}\n"):  # fmt: skip
        (tmp_path / "b" / "config.yaml").write_text(bad)
        with pytest.raises(ConfigError):
            load_config(tmp_path / "b", env={})


def test_an_upstream_429_is_the_upstreams_fault_in_the_ledger(bmo: BmoServer, upstream: FakeUpstream) -> None:
    upstream.enqueue(Step(status=429, error="slow down", headers={"retry-after": "3"}))
    r = httpx.post(bmo.url + "/v1/chat/completions", json={"model": "helper", "messages": USER}, timeout=10)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited" and r.headers["retry-after"] == "3"
    run = _run(bmo, r)
    assert (run["status"], run["outcome"], run["error_code"]) == (429, "upstream_error", "rate_limited")


def test_a_queue_timeout_429_keeps_its_agent(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(
        config=upstream_config(upstream, "openai_compat: {concurrency: 1, queue_timeout_s: 0.2}\n"), agents=AGENTS
    )
    upstream.enqueue(Step(text="slow", delay=1.0))
    first = threading.Thread(
        target=lambda: httpx.post(
            s.url + "/v1/chat/completions", json={"model": "helper", "messages": USER}, timeout=10
        )
    )
    first.start()
    while not upstream.requests:
        first.join(0.02)
    r = httpx.post(s.url + "/v1/chat/completions", json={"model": "plain", "messages": USER}, timeout=10)
    first.join(10)
    assert r.status_code == 429 and r.json()["error"]["code"] == "concurrency_limit"
    run = _run(s, r)
    assert (run["agent"], run["outcome"], run["upstream_route"]) == ("plain", "client_error", "up/gpt-plain")


def test_health_and_posture_agree_on_the_store(bmo: BmoServer) -> None:
    get = lambda p: httpx.get(bmo.url + p, timeout=10)  # noqa: E731
    assert get("/health").status_code == 200
    assert get("/v1/openai-compat/posture").json()["state"] == "ready"
    bmo.runtime.db.last_write_error = "disk I/O error"  # what a failed write leaves behind
    try:
        assert get("/health").status_code == 503
        assert get("/v1/openai-compat/posture").json()["state"] == "degraded"
    finally:
        bmo.runtime.db.last_write_error = None
    assert get("/health").status_code == 200
    assert get("/v1/openai-compat/posture").json()["state"] == "ready"


@pytest.fixture
def bmo_claude(make_bmo: Any, claude: FakeAnthropicUpstream, monkeypatch: pytest.MonkeyPatch) -> BmoServer:
    monkeypatch.setenv("BMO_TEST_CLAUDE_KEY", CLAUDE_KEY)
    server: BmoServer = make_bmo(
        config=(
            "auth: {mode: none}\nopenai_compat: {expose_routes: true}\n"
            f'providers:\n  claude: {{kind: anthropic, base_url: "{claude.url}", api_key_env: BMO_TEST_CLAUDE_KEY, '
            "max_response_mb: 0.05}\n"
        )
    )
    return server


@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_upstream_answer_past_the_limit_is_upstream_too_large(
    bmo_claude: BmoServer, claude: FakeAnthropicUpstream, stream: bool
) -> None:
    claude.enqueue(AStep(text=" ".join(["word"] * 30000)))  # ~150 KB against a 50 KB limit
    body = {"model": "claude/claude-x", "stream": stream, "messages": USER}
    r = httpx.post(bmo_claude.url + "/v1/chat/completions", json=body, timeout=10)
    run = _run(bmo_claude, r)
    assert (run["error_code"], run["outcome"]) == ("upstream_too_large", "upstream_error")
    if r.status_code == 502:  # before the first byte (a stream's first read was already too much)
        assert r.json()["error"]["code"] == "upstream_too_large"
    else:
        assert stream and r.status_code == 200
        assert '"code":"upstream_too_large"' in r.text and r.text.endswith("data: [DONE]\n\n")
    assert "0.05 MiB" in r.text


def test_an_anthropic_upstream_quoting_its_key_is_redacted(
    bmo_claude: BmoServer, claude: FakeAnthropicUpstream
) -> None:
    claude.enqueue(AStep(status=401, error_type="authentication_error", error=f"invalid x-api-key {CLAUDE_KEY}"))
    r = httpx.post(bmo_claude.url + "/v1/messages", json={"model": "claude/x", "max_tokens": 9, "messages": USER})
    assert r.status_code == 502 and "invalid x-api-key" in r.text and CLAUDE_KEY not in r.text
    events = httpx.get(f"{bmo_claude.url}/v1/openai-compat/runs/{r.headers['x-request-id']}/events").text
    assert CLAUDE_KEY not in events
