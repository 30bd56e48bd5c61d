"""bmo.clients: the client's name beside the raw user-agent (issue 17, problem 10).

The headers below are what each client sent, as recorded (tests/clients/README.md): Open WebUI
0.12 calls as a generic `Python/3.11 aiohttp/…` and only its forwarded `X-OpenWebUI-*` headers
tell it apart; Continue's `cn` is a bundled openai-node whose class name was minified to `ls`.
"""

from __future__ import annotations

import httpx
import pytest
from multidict import CIMultiDict

from bmo.clients import client_name, from_user_agent
from fakes import BmoServer

CASES = [
    ({"User-Agent": "Python/3.11 aiohttp/3.11.18", "X-OpenWebUI-Chat-Id": "c1", "X-OpenWebUI-User-Id": "u"},
     "open-webui"),
    ({"User-Agent": "Python/3.11 aiohttp/3.11.18", "X-OpenWebUI-User-Name": "ann"}, "open-webui"),
    ({"User-Agent": "Python/3.11 aiohttp/3.11.18"}, "aiohttp"),  # Open WebUI without the flag
    ({"User-Agent": "claude-cli/2.1.332 (external, sdk-cli)", "x-app": "cli"}, "claude-code"),
    ({"User-Agent": "codex_cli_rs/0.50.0 (Ubuntu 24.4.0; x86_64) xterm", "originator": "codex_cli_rs"}, "codex"),
    ({"User-Agent": "something", "originator": "codex_vscode"}, "codex"),
    ({"User-Agent": "ls/JS 5.23.2", "x-stainless-lang": "js"}, "openai-node"),  # Continue's cn 1.5
    ({"User-Agent": "OpenAI/Python 1.99.1", "x-stainless-lang": "python"}, "openai-python"),
    ({"User-Agent": "AsyncOpenAI/Python 1.99.1"}, "openai-python"),
    ({"User-Agent": "OpenAI/JS 5.23.2"}, "openai-node"),
    ({"User-Agent": "Anthropic/Python 0.60.0"}, "anthropic-python"),
    ({"User-Agent": "Anthropic/JS 0.60.0"}, "anthropic-node"),
    ({"User-Agent": "curl/8.5.0"}, "curl"),
    ({"User-Agent": "python-httpx/0.28.1"}, "httpx"),
    ({"User-Agent": "Go-http-client/1.1"}, "go"),
    ({"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}, "browser"),
    ({"User-Agent": "my-tool/2.0 (+https://example.com)"}, "my-tool"),  # unknown: its product token
    ({"User-Agent": "sk-bmo-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "other"),  # never a copy of a secret
    ({"User-Agent": "sk-proj-abcdef/1.0"}, "other"),
    ({"User-Agent": "my-app/3.1", "x-stainless-lang": "python"}, "openai-python"),  # an SDK under another name
    ({"User-Agent": "my-app/3.1", "x-stainless-lang": "js", "anthropic-version": "2023-06-01"}, "anthropic-node"),
    ({"x-stainless-lang": "python"}, "openai-python"),
    ({}, None),
]  # fmt: skip


@pytest.mark.parametrize(("headers", "name"), CASES)
def test_client_name(headers: dict[str, str], name: str | None) -> None:
    assert client_name(CIMultiDict(headers)) == name
    lower = CIMultiDict({k.lower(): v for k, v in headers.items()})  # header names are case-insensitive
    assert client_name(lower) == name


def test_the_user_agent_alone_cannot_tell_open_webui() -> None:
    assert from_user_agent("Python/3.11 aiohttp/3.11.18") == "aiohttp"
    assert from_user_agent("") is None


def test_the_ledger_keeps_the_client_beside_the_user_agent(bmo: BmoServer) -> None:
    h = {"User-Agent": "Python/3.11 aiohttp/3.11.18", "X-OpenWebUI-Chat-Id": "chat-1"}
    r = httpx.post(bmo.base_url + "/chat/completions", json={"messages": [{"role": "user", "content": "x"}]},
                   headers=h)  # fmt: skip
    run = httpx.get(bmo.url + f"/v1/openai-compat/runs/{r.headers['x-request-id']}").json()
    assert run["client"] == "open-webui" and run["client_ua"] == "Python/3.11 aiohttp/3.11.18"
    posture = httpx.get(bmo.url + "/v1/openai-compat/posture").json()
    assert posture["top_clients"] == [{"client": "open-webui", "count": 1}]
    assert posture["top_user_agents"] == [{"client_ua": "Python/3.11 aiohttp/3.11.18", "count": 1}]
