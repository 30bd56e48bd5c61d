"""bmo against an upstream that fails on purpose (tests/faults.py), through both dialects, whole
and streamed: every failure is a SPEC §5 error (a real status before the first byte, in-band
after it), recorded with the right outcome, never a 500, and bmo lets go of the upstream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from conftest import LoopThread
from fakes import BmoServer
from faults import FaultUpstream

KEY = "fault-upstream-key-7f3a9c2e1d"
OVERALL_S = 20.0
HTTP = httpx.Client(timeout=OVERALL_S)  # one client: a new one per call costs an SSL context

# fault -> (status, code, outcome) when it strikes before the first byte; after it (streams
# that had begun), the same code in-band.
BEFORE = {
    "reset-headers": (502, "upstream_error", "upstream_error"),
    "garbage": (502, "upstream_error", "upstream_error"),
    "stall-headers": (504, "upstream_timeout", "timeout"),
    "rate-limited": (429, "rate_limited", "upstream_error"),
    "leaky-401": (502, "upstream_error", "upstream_error"),
}
WHOLE_ONLY = {  # these strike after the headers: before any byte for a whole answer
    "reset-stream": (502, "upstream_error", "upstream_error"),
    "stall-stream": (504, "upstream_timeout", "timeout"),
    "garbage-body": (502, "upstream_error", "upstream_error"),
    "huge": (502, "upstream_too_large", "upstream_error"),
}
MID_STREAM = {
    "reset-stream": ("upstream_error", "upstream_error"),
    "stall-stream": ("upstream_timeout", "timeout"),
    "garbage-body": ("upstream_error", "upstream_error"),
    "huge": ("upstream_too_large", "upstream_error"),
    "leaky-event": ("upstream_error", "upstream_error"),
}
ANTHROPIC_TYPES = {429: "rate_limit_error", 502: "api_error", 504: "timeout_error"}


@pytest.fixture(scope="module")
def faulty(servers: LoopThread) -> Iterator[FaultUpstream]:
    up = FaultUpstream(leaked=KEY)
    servers.run(up.start())
    yield up
    servers.run(up.stop())


@pytest.fixture(scope="module")
def bmo_faulty(
    servers: LoopThread, faulty: FaultUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BmoServer]:
    """One bmo for the module (a server per case would double its time): provider `faulty`
    with a short timeout, a 1 MB answer limit and a key the leaky faults quote."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FAULT_KEY", KEY)
    s = BmoServer(
        tmp_path_factory.mktemp("faults"),
        config=(
            "auth: {mode: none}\nopenai_compat: {expose_routes: true}\nproviders:\n"
            f'  faulty: {{kind: openai, base_url: "{faulty.url}", api_key_env: FAULT_KEY, timeout_s: 0.5, '
            "max_response_mb: 1}\n"
        ),
    )
    servers.run(s.start())
    yield s
    servers.run(s.stop())
    mp.undo()


def _request(s: BmoServer, dialect: str, fault: str, stream: bool) -> httpx.Response:
    body: dict[str, Any] = {"model": f"faulty/{fault}", "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    path = "/v1/chat/completions"
    if dialect == "anthropic":
        path, body["max_tokens"] = "/v1/messages", 64
    return HTTP.post(s.url + path, json=body)


def _run(s: BmoServer, r: httpx.Response) -> dict[str, Any]:
    rid = r.headers["x-request-id"]
    got = HTTP.get(f"{s.url}/v1/openai-compat/runs/{rid}")
    assert got.status_code == 200, got.text
    run: dict[str, Any] = got.json()
    return run


def _in_band(r: httpx.Response, dialect: str) -> dict[str, Any]:
    """The stream's in-band error object, checking the frames around it."""
    text = r.text
    if dialect == "openai":
        frames = [f for f in text.split("\n\n") if f.strip()]
        assert frames[-1] == "data: [DONE]", text[-300:]
        err = orjson.loads(frames[-2].removeprefix("data: "))
        assert set(err) == {"error"}, err
        assert set(err["error"]) == {"message", "type", "param", "code"}
        return dict(err["error"])
    frames = [f for f in text.split("\n\n") if f.strip()]
    last = frames[-1]
    assert last.startswith("event: error\n"), text[-300:]
    err = orjson.loads(last.split("\ndata: ", 1)[1])
    assert err["type"] == "error" and set(err["error"]) == {"type", "message"}
    assert "message_stop" not in text  # a cut stream never passes for a finished one
    return dict(err["error"])


CASES = (
    [(f, st, d) for f in BEFORE for st in (False, True) for d in ("openai", "anthropic")]
    + [(f, False, d) for f in WHOLE_ONLY for d in ("openai", "anthropic")]
    + [(f, True, d) for f in MID_STREAM for d in ("openai", "anthropic")]
)


@pytest.mark.parametrize(
    ("fault", "stream", "dialect"), CASES, ids=[f"{f}-{'stream' if s else 'whole'}-{d}" for f, s, d in CASES]
)
def test_upstream_fault(bmo_faulty: BmoServer, faulty: FaultUpstream, fault: str, stream: bool, dialect: str) -> None:
    r = _request(bmo_faulty, dialect, fault, stream)
    assert r.status_code != 500, r.text
    assert KEY not in r.text  # the upstream's key never gets through
    run = _run(bmo_faulty, r)
    assert run["outcome"] != "internal_error"
    before = (BEFORE | WHOLE_ONLY).get(fault) if not stream or fault in BEFORE else None
    eager = stream and dialect == "anthropic"  # message_start went out before the upstream was asked
    if before is not None and not eager:
        status, code, outcome = before
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/json")
        if dialect == "openai":
            assert r.json()["error"]["code"] == code
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        else:
            assert r.json()["type"] == "error" and r.json()["error"]["type"] == ANTHROPIC_TYPES[status]
        if fault == "rate-limited":
            assert r.headers["retry-after"] == "7"
        assert (run["status"], run["error_code"], run["outcome"]) == (status, code, outcome)
    else:
        code, outcome = MID_STREAM[fault] if fault in MID_STREAM else BEFORE[fault][1:]
        assert r.status_code == 200
        err = _in_band(r, dialect)
        if dialect == "openai":
            assert err["code"] == code
        assert (run["error_code"], run["outcome"]) == (code, outcome)
    events = HTTP.get(f"{bmo_faulty.url}/v1/openai-compat/runs/{run['request_id']}/events").text
    assert KEY not in events
    assert HTTP.get(bmo_faulty.url + "/health").status_code == 200


def test_bmo_lets_go_of_every_failed_upstream_connection(bmo_faulty: BmoServer, faulty: FaultUpstream) -> None:
    for fault in ("stall-headers", "stall-stream", "huge", "reset-stream"):
        _request(bmo_faulty, "openai", fault, True)
    deadline = time.monotonic() + OVERALL_S
    while faulty.open_conns and time.monotonic() < deadline:
        time.sleep(0.05)
    assert faulty.open_conns == 0
