"""Property-based fuzzing of the HTTP surface (hypothesis): whatever a client sends — odd paths
and methods, wrong keys, arbitrary JSON where a chat request goes, bytes that are not HTTP —
bmo never answers 5xx, every error body is a SPEC §5 envelope (OpenAI's, or Anthropic's on the
Messages routes), and nothing the client sent in a header is echoed.

Bounded by count (`JSON_EXAMPLES`, `RAW_EXAMPLES`), loopback only, against bmo run through
`serve()` (tests/running.py), so requests aiohttp's parser rejects take bmo's own path. The
counts of answers by status class are printed (`pytest -s`).
"""

from __future__ import annotations

import socket
import string
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import LoopThread
from running import Serving

JSON_EXAMPLES = 600
RAW_EXAMPLES = 300
KEY = "sk-bmo-FuzzingKey0123456789abcdef"
MARK = "sk-bmo-MarkerThatMustNeverComeBack42"
FUZZ = settings(
    max_examples=JSON_EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def target(servers: LoopThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    s = Serving(
        servers,
        tmp_path_factory.mktemp("fuzz") / "home",
        "auth: {mode: keys}\nserver: {header_timeout_s: 1, max_body_mb: 0.5}\n",
        env_api_key=KEY,
    ).start()
    schemas = httpx.get(s.url + "/openapi.json", timeout=10).json()
    yield s.url, schemas
    s.stop()


ASCII = string.ascii_letters + string.digits + " -_./:;=,+*~!@$%^&()[]{}<>?'\"\\|`#"
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),  # orjson (the test's encoder) stops at 64 bits
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_value = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=16,
)
part = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_text", "tool_use", "tool_result", "thinking", "weird"])},
    optional={"text": st.text(max_size=30), "image_url": json_value, "input": json_value, "id": st.text(max_size=8)},
)
message = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "robot", ""]),
            "content": st.one_of(st.text(max_size=60), st.none(), st.lists(part | json_value, max_size=3), json_value),
        },
        optional={"tool_calls": json_value, "tool_call_id": st.text(max_size=8), "name": st.text(max_size=8)},
    ),
    json_value,
)
MODELS = ["default", "agent:default", "bmo:default", "team:nope", "local/echo", "gpt-4.1", "claude-x", ""]
body = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(MODELS) | st.text(max_size=12) | json_value,
        "messages": st.lists(message, max_size=4) | json_value,
        "stream": st.booleans() | json_value,
        "max_tokens": st.integers(-5, 10**12) | json_value,
        "temperature": st.floats(-10, 10) | json_value,
        "tools": st.lists(json_value, max_size=2),
        "tool_choice": json_value,
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | json_value,
        "stop": json_value,
        "system": st.text(max_size=20) | json_value,
        "prompt": st.text(max_size=20) | json_value,
        "input": st.text(max_size=20) | json_value,
        "user": json_value,
    },
).flatmap(lambda d: st.dictionaries(st.text(max_size=10), json_value, max_size=3).map(lambda extra: {**extra, **d}))
PATHS = [
    "/health", "/openapi.json", "/metrics", "/v1/models", "/v1/models/{id}", "/v1/chat/completions",
    "/v1/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/responses", "/v1/responses/{id}",
    "/v1/openai-compat/posture", "/v1/openai-compat/runs", "/v1/openai-compat/runs/{id}",
    "/v1/openai-compat/runs/{id}/events", "/chat/completions", "/nowhere",
]  # fmt: skip
path = st.builds(
    lambda p, ident, how, tail: {
        "plain": p,
        "slashes": p.replace("/", "//"),
        "trailing": p + "/",
        "tail": p + "/" + tail,
    }[how].replace("{id}", ident),
    st.sampled_from(PATHS),
    st.text(max_size=12).map(lambda t: quote(t, safe="")),
    st.sampled_from(["plain", "plain", "slashes", "trailing", "tail"]),
    st.text(alphabet=string.ascii_letters, max_size=6),
)
header_value = st.text(alphabet=ASCII, max_size=40).map(str.strip)  # h11 refuses padded values
headers = st.fixed_dictionaries(
    {"X-Echo-Check": st.just(MARK)},
    optional={
        "Authorization": st.sampled_from([f"Bearer {KEY}", f"Bearer {KEY}", "Bearer sk-bmo-wrong", "Basic abc", ""])
        | header_value,
        "X-Api-Key": st.sampled_from([KEY, "nope"]) | header_value,
        "anthropic-version": st.just("2023-06-01") | header_value,
        "X-BMO-Agent": header_value,
        "X-BMO-Session": header_value,
        "Content-Type": st.sampled_from(["application/json", "text/plain", "multipart/form-data; boundary=x"]),
        "Accept-Encoding": st.sampled_from(["gzip", "br", "identity"]),
    },
)
payload = st.one_of(
    body.map(lambda b: orjson.dumps(b)),
    json_value.map(lambda v: orjson.dumps(v)),
    st.binary(max_size=200),
    st.just(b""),
)
request = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["POST", "POST", "POST", "GET", "GET", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"]),
        "path": path,
        "headers": headers,
        "content": payload,
    }
)


def _check_error(r: httpx.Response, path: str, schemas: dict[str, Any]) -> None:
    assert r.headers.get("content-type", "").startswith("application/json"), (r.status_code, r.text[:200])
    obj = r.json()
    kind = "AnthropicError" if obj.get("type") == "error" else "Error"
    jsonschema.validate(obj, schemas[kind])
    if kind == "AnthropicError":
        assert "/messages" in path, path  # Anthropic's envelope only on its own routes


def test_fuzzed_requests_never_get_a_5xx_or_a_shapeless_error(target: tuple[str, dict[str, Any]]) -> None:
    url, doc = target
    schemas = doc["components"]["schemas"]
    seen: Counter[str] = Counter()
    client = httpx.Client(timeout=30)

    @FUZZ
    @given(req=request)
    def one(req: dict[str, Any]) -> None:
        r = client.request(req["method"], url + req["path"], headers=req["headers"], content=req["content"])
        seen[f"{r.status_code // 100}xx"] += 1
        assert r.status_code < 500, (req, r.status_code, r.text[:300])
        assert MARK not in r.text
        if r.status_code >= 400 and req["method"] != "HEAD":
            _check_error(r, req["path"], schemas)

    try:
        one()
    finally:
        client.close()
        print(f"\n[fuzz] {sum(seen.values())} HTTP requests: {dict(sorted(seen.items()))}")
    assert seen["5xx"] == 0


# ---- below HTTP ---------------------------------------------------------------------------

token = st.binary(min_size=0, max_size=12).filter(lambda b: b"\r\n\r\n" not in b)
raw_request = st.builds(
    lambda method, target, version, head, body: (
        method + b" " + target + b" " + version + b"\r\n" + head + b"\r\n" + body
    ),
    st.sampled_from([b"GET", b"POST", b"PUT", b"BREW", b"get", b""]) | token,
    st.sampled_from([b"/health", b"/v1/chat/completions", b"/v1/messages", b"*", b"http://x/health", b""]) | token,
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/9.9", b"ICE/1.0", b""]) | token,
    st.lists(
        st.sampled_from(
            [
                b"Host: x\r\n",
                b"Content-Length: 5\r\n",
                b"Content-Length: -1\r\n",
                b"Content-Length: 99999999999999999999\r\n",
                b"Transfer-Encoding: chunked\r\n",
                b"Transfer-Encoding: gzip, chunked\r\n",
                b"Expect: 100-continue\r\n",
                b"Connection: Upgrade\r\nUpgrade: websocket\r\n",
                f"Authorization: Bearer {MARK}\x01\r\n".encode(),
                f"X-Api-Key: {MARK}\x00\r\n".encode(),
                b" folded: continuation\r\n",
            ]
        )
        | st.builds(lambda k, v: k + b": " + v + b"\r\n", token, token),
        max_size=5,
    ).map(b"".join),
    st.binary(max_size=64),
)


def _read_first_response(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=3) as s:
        s.sendall(data)
        out = b""
        try:
            while b"\r\n\r\n" not in out or len(out) < out.find(b"\r\n\r\n") + 4 + _length(out):
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def _length(raw: bytes) -> int:
    for line in raw.split(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_fuzzed_bytes_get_json_errors_and_never_an_echo(target: tuple[str, dict[str, Any]]) -> None:
    url, doc = target
    schemas = doc["components"]["schemas"]
    seen: Counter[str] = Counter()

    @settings(FUZZ, max_examples=RAW_EXAMPLES)
    @given(data=raw_request)
    def one(data: bytes) -> None:
        raw = _read_first_response(url, data)
        if not raw:
            seen["closed without an answer"] += 1
            return
        head, _, rest = raw.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n")[0]
        assert status_line.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), raw[:200]
        status = int(status_line.split(b" ")[1])
        seen[f"{status // 100}xx"] += 1
        assert status < 500, raw[:300]
        assert MARK.encode() not in raw
        if status >= 400 and rest:
            obj = orjson.loads(rest[: _length(raw)])
            jsonschema.validate(obj, schemas["AnthropicError" if obj.get("type") == "error" else "Error"])

    try:
        one()
    finally:
        print(f"\n[fuzz] {sum(seen.values())} raw requests: {dict(sorted(seen.items()))}")
    assert seen["5xx"] == 0


def test_the_server_is_fine_after_the_fuzzing(target: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    url, _ = target
    assert httpx.get(url + "/health", timeout=5).status_code == 200
    ok = httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"messages": [{"role": "user", "content": "still there?"}]},
        timeout=10,
    )
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]
