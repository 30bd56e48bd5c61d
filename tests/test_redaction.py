"""Secrets never leave through bmo (SPEC §5): an upstream that quotes its key, a client that pastes
one into a header, a User-Agent or a malformed request. The redactor itself, then a real
`bmo serve`: the key is in none of the client's answers, the server log, or `bmo.db`.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bmo.redact import MASK, RedactingFilter, Redactor, env_secrets
from fakes import LoopThread
from faults import FOREIGN_KEY, FaultUpstream
from running import ServeProcess, write_home

UP_KEY = "up-key-not-shaped-like-one-7f3a9c"  # only the configured-key rule can catch this one
BMO_KEY = "sk-bmo-TheAdminKeyOfThisServer0123"
UA_KEY = "sk-ant-api03-PastedIntoTheUserAgent99"


def test_the_redactor_masks_key_shapes_and_configured_keys() -> None:
    r = Redactor([UP_KEY, "short", None])
    text = (
        f"Incorrect API key provided: sk-proj-abcdEFGH1234****wxyz. Authorization: Bearer {UP_KEY}, "
        f"bearer\teyJhbGciOi.payload.sig and {UP_KEY}; task-runner and sk-8 stay; short stays"
    )
    out = r(text)
    assert UP_KEY not in out and "abcdEFGH" not in out and "eyJhbGciOi" not in out
    assert out.count(MASK) == 4
    assert "task-runner" in out and "sk-8" in out and "short stays" in out  # no false positives
    assert env_secrets(["A", "B", None], {"A": "value-of-a", "B": ""}) == ["value-of-a"]


def test_the_log_filter_redacts_messages_arguments_and_tracebacks() -> None:
    f = RedactingFilter(Redactor([UP_KEY]))
    try:
        raise ValueError(f"upstream said {UP_KEY}")
    except ValueError:
        record = logging.LogRecord(
            "bmo.x", logging.ERROR, __file__, 1, "key %s and %s", (UP_KEY, BMO_KEY), sys.exc_info()
        )
    assert f.filter(record)
    text = logging.Formatter().format(record)
    assert UP_KEY not in text and BMO_KEY not in text and "ValueError" in text


@pytest.fixture
def leaky(servers: LoopThread) -> Iterator[FaultUpstream]:
    up = FaultUpstream(leaked=UP_KEY)
    servers.run(up.start())
    yield up
    servers.run(up.stop())


def test_no_key_reaches_a_client_the_log_or_the_ledger(leaky: FaultUpstream, tmp_path: Path) -> None:
    config = (
        "auth: {mode: keys}\nopenai_compat: {expose_routes: true}\nledger: {store_content: true}\n"
        f'providers:\n  up: {{kind: openai, base_url: "{leaky.url}", api_key_env: UP_KEY, timeout_s: 5}}\n'
    )
    home = write_home(tmp_path / "home", config)
    srv = ServeProcess(home, UP_KEY=UP_KEY, BMO_API_KEY=BMO_KEY)
    answers: list[str] = []
    try:
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {BMO_KEY}", "User-Agent": UA_KEY}) as c:
            for model in ("up/leaky-401", "up/leaky-event"):
                for stream in (False, True):
                    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
                    answers.append(c.post(srv.url + "/v1/chat/completions", json=body).text)
                    answers.append(c.post(srv.url + "/v1/messages", json={**body, "max_tokens": 9}).text)
            answers.append(c.get(srv.url + "/v1/openai-compat/runs", params={"limit": 50}).text)
            answers.append(c.get(srv.url + "/v1/openai-compat/posture").text)
        # the client's own key in a header aiohttp's parser rejects
        addr = srv.url.removeprefix("http://").split(":")
        with socket.create_connection((addr[0], int(addr[1])), timeout=5) as s:
            s.sendall(f"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {BMO_KEY}\x01\r\n\r\n".encode())
            answers.append(s.recv(65536).decode("latin-1"))
    finally:
        code, log, _ = srv.terminate()
    assert code == 0, log
    assert any("HTTP 401" in a for a in answers)  # the upstream's message itself gets through...
    stored = b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("bmo.db"))
    for secret in (UP_KEY, FOREIGN_KEY, BMO_KEY, UA_KEY):  # ...its keys do not
        for a in answers:
            assert secret not in a
        assert secret not in log, secret
        assert secret.encode() not in stored, secret
    assert "upstream up answered HTTP 401" in log  # the failure is logged, redacted
    assert "bad request" in log and "Traceback" not in log
