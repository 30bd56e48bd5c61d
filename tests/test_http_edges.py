"""Bad input, odd paths and the HTTP edge: each gets its exact status and error body."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from conftest import AGENTS, upstream_config
from fakes import BmoServer, FakeUpstream, Step
from golden import assert_golden

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "hi"}]


def call(s: BmoServer, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, s.url + path, timeout=20, **kw)


@pytest.mark.parametrize(
    ("name", "method", "path", "kw", "status"),
    [
        ("invalid_json", "POST", CHAT, {"content": b"{nope", "headers": {"Content-Type": "application/json"}}, 400),
        ("empty_body", "POST", CHAT, {"content": b""}, 400),
        ("not_an_object", "POST", CHAT, {"json": [1, 2]}, 400),
        ("missing_messages", "POST", CHAT, {"json": {"model": "default"}}, 400),
        ("wrong_type", "POST", CHAT, {"json": {"messages": USER, "temperature": "warm"}}, 400),
        ("bad_role", "POST", CHAT, {"json": {"messages": [{"role": "robot", "content": "x"}]}}, 400),
        ("unknown_model", "POST", CHAT, {"json": {"model": "gpt-9", "messages": USER}}, 404),
        ("unknown_route", "GET", "/v1/nothing/here", {}, 404),
        ("wrong_method", "GET", CHAT, {}, 405),
        ("unknown_model_retrieve", "GET", "/v1/models/org/model-x", {}, 404),
    ],
)
def test_bad_input_exact_status_and_body(
    bmo: BmoServer, name: str, method: str, path: str, kw: dict[str, Any], status: int
) -> None:
    r = call(bmo, method, path, **kw)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"].startswith("req_")
    assert_golden(f"http_error_{name}.json", {"status": r.status_code, "body": r.json()})
    if status == 405:
        assert r.headers["allow"] == "POST"


def test_body_over_limit_is_413(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(config=upstream_config(upstream, "server: {max_body_mb: 0.01}\n"), agents=AGENTS)
    big = {"messages": [{"role": "user", "content": "x" * 20000}]}
    r = call(s, "POST", CHAT, json=big)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"
    assert upstream.requests == []
    ok = call(s, "POST", CHAT, json={"messages": USER})  # the server is fine afterwards
    assert ok.status_code == 200


@pytest.mark.parametrize("path", ["//v1//models", "/v1/models/", "/models", "/v1//models//"])
def test_tolerant_paths(bmo: BmoServer, path: str) -> None:
    r = call(bmo, "GET", path)
    assert r.status_code == 200 and r.json()["object"] == "list"


def test_bare_chat_path_and_head(bmo: BmoServer) -> None:
    assert call(bmo, "POST", "/chat/completions/", json={"messages": USER}).status_code == 200
    assert call(bmo, "HEAD", "/health").status_code == 200


def test_health_and_models_shapes(bmo: BmoServer) -> None:
    assert call(bmo, "GET", "/health").json() == {"status": "ok"}
    assert_golden("models_list.json", call(bmo, "GET", "/v1/models").json())
    assert_golden("model_one.json", call(bmo, "GET", "/v1/models/helper").json())


def test_model_ids_with_slashes(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(config=upstream_config(upstream, "openai_compat: {expose_routes: true}\n"), agents=AGENTS)
    r = call(s, "GET", "/v1/models/up/gpt-test")
    assert r.status_code == 200 and r.json()["id"] == "up/gpt-test"


def test_compat_disabled(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(config=upstream_config(upstream, "openai_compat: {enabled: false}\n"), agents=AGENTS)
    r = call(s, "POST", CHAT, json={"messages": USER})
    assert r.status_code == 404 and r.json()["error"]["code"] == "endpoint_disabled"
    assert call(s, "GET", "/health").status_code == 200


def test_cors_preflight_without_auth(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(
        config=upstream_config(upstream, 'openai_compat: {cors_origins: ["http://app.local"]}\n'),
        env_api_key="sk-secret",
        agents=AGENTS,
    )
    r = call(
        s,
        "OPTIONS",
        CHAT,
        headers={
            "Origin": "http://app.local",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,x-stainless-timeout",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "http://app.local"
    allow = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allow and "x-stainless-timeout" in allow and "anthropic-version" in allow
    r = call(s, "OPTIONS", CHAT, headers={"Origin": "http://evil.local"})
    assert "access-control-allow-origin" not in r.headers
    r = call(s, "GET", "/v1/models", headers={"Origin": "http://app.local", "Authorization": "Bearer sk-secret"})
    assert r.headers["access-control-allow-origin"] == "http://app.local"
    assert "X-Request-Id" in r.headers["access-control-expose-headers"]


def test_env_api_key(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(
        config=upstream_config(upstream).replace("auth: {mode: none}", "auth: {mode: keys}"),
        env_api_key="sk-bmo-envkey",
        agents=AGENTS,
    )
    r = call(s, "GET", "/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert call(s, "GET", "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert call(s, "GET", "/v1/models", headers={"Authorization": "Bearer sk-bmo-envkey"}).status_code == 200
    assert call(s, "GET", "/v1/models", headers={"X-Api-Key": "sk-bmo-envkey"}).status_code == 200
    assert call(s, "GET", "/health").status_code == 200  # health needs no key


def test_concurrency_limit_answers_429(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(
        config=upstream_config(upstream, "openai_compat: {concurrency: 1, queue_timeout_s: 0.2}\n"), agents=AGENTS
    )
    upstream.enqueue(Step(text="slow", delay=1.5))
    results: list[httpx.Response] = []
    t = threading.Thread(
        target=lambda: results.append(call(s, "POST", CHAT, json={"model": "helper", "messages": USER}))
    )
    t.start()
    while not upstream.requests:
        t.join(0.02)
    r = call(s, "POST", CHAT, json={"model": "helper", "messages": USER})
    t.join(10)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "concurrency_limit" and r.headers["retry-after"] == "1"
    assert results[0].status_code == 200


def test_system_message_policy_reject(make_bmo: Any, upstream: FakeUpstream) -> None:
    s = make_bmo(config=upstream_config(upstream, "openai_compat: {system_messages: reject}\n"), agents=AGENTS)
    r = call(s, "POST", CHAT, json={"messages": [{"role": "system", "content": "x"}, *USER]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0].role"
