"""Which client sent a request (layer 0, stdlib only): a short name beside the raw user-agent.

The ledger keeps the raw `User-Agent` too, but a user-agent alone cannot tell the clients apart
that matter to an operator: Open WebUI calls as a generic `Python/3.11 aiohttp/…`, Continue's
`cn` as a minified openai-node (`ls/JS 5.23.2`). So the tell-tale headers come first:

- Open WebUI: the `X-OpenWebUI-*` headers it forwards (only with its
  `ENABLE_FORWARD_USER_INFO_HEADERS=true`; without it, it is `aiohttp`);
- Codex: the `originator` header (`codex_cli_rs`, `codex_vscode`, …);
- then the user-agent: `claude-cli/…` (Claude Code), the openai and anthropic SDKs
  (`OpenAI/Python`, `Anthropic/JS`, …), curl, httpx, …;
- a user-agent none of those knows, from an SDK (`x-stainless-lang`, with `anthropic-version`
  for Anthropic's): the SDK's name (an app may set its own user-agent on the SDK);
- otherwise the user-agent's first product token (`name/version`), or `other`. Never more of the
  user-agent than that token: a user-agent is client input, and one that is not a product token
  (a pasted key, say) is not copied.

`client_name` runs once per request (server/app.py builds the run with it): a few header
look-ups and a dict hit; each distinct user-agent is parsed once and remembered (bounded).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["client_name", "from_user_agent"]

# Open WebUI forwards these with ENABLE_FORWARD_USER_INFO_HEADERS=true (0.6+; Chat-Id on chats).
OPENWEBUI_HEADERS = ("X-OpenWebUI-Chat-Id", "X-OpenWebUI-User-Id", "X-OpenWebUI-User-Name")

# (pattern on the lower-cased user-agent, name), first match wins.
_UA_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), name)
    for p, name in (
        (r"^claude-cli/", "claude-code"),
        (r"^codex[_-]", "codex"),
        (r"^openai/python", "openai-python"),
        (r"^openai/js", "openai-node"),
        (r"^anthropic/python", "anthropic-python"),
        (r"^anthropic/js", "anthropic-node"),
        (r"^async ?openai/python", "openai-python"),
        (r"^litellm", "litellm"),
        # a bundled, minified openai-node names itself after its mangled class: `ls/JS 5.23.2` (cn)
        (r"^[a-z_$][\w$]{0,3}/js \d", "openai-node"),
        (r"^curl/", "curl"),
        (r"^wget/", "wget"),
        (r"^python-httpx/", "httpx"),
        (r"^python-requests/", "requests"),
        (r"^python-urllib/", "urllib"),
        (r"(^|\s)aiohttp/", "aiohttp"),
        (r"^go-http-client/", "go"),
        (r"^(node-fetch|undici|node)\b", "node"),
        (r"^bmo/", "bmo"),
        (r"^mozilla/", "browser"),
    )
)
_PRODUCT = re.compile(r"([a-z0-9][a-z0-9._-]{0,31})/")  # `name/` at the start of a user-agent
_CACHE: dict[str, tuple[str | None, bool]] = {}  # user-agent -> (name, whether a rule knew it)
_CACHE_MAX = 1024  # distinct user-agents remembered; a flood of random ones only costs a parse each


def client_name(headers: Mapping[str, str]) -> str | None:
    """The client's short name from a request's headers (case-insensitive, as aiohttp's are),
    or None when it sent no user-agent and nothing else tells."""
    for h in OPENWEBUI_HEADERS:
        if h in headers:
            return "open-webui"
    originator = headers.get("originator")
    if originator:
        return _originator(originator)
    ua = headers.get("User-Agent")
    hit = _CACHE.get(ua or "")
    if hit is None:
        hit = _parse(ua or "")
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[ua or ""] = hit
    name, known = hit
    if not known:
        lang = headers.get("x-stainless-lang")
        if lang in _SDK_LANGS:
            return ("anthropic-" if "anthropic-version" in headers else "openai-") + _SDK_LANGS[lang]
    return name


_SDK_LANGS = {"python": "python", "js": "node"}


def from_user_agent(ua: str) -> str | None:
    """The client's name from its user-agent alone."""
    return _parse(ua)[0]


def _parse(ua: str) -> tuple[str | None, bool]:
    low = ua.strip().lower()
    if not low:
        return None, False
    for pattern, name in _UA_RULES:
        if pattern.search(low):
            return name, True
    m = _PRODUCT.match(low)
    return (m.group(1) if m and not m.group(1).startswith("sk-") else "other"), False


def _originator(value: str) -> str:
    low = value.strip().lower()
    if low.startswith("codex"):
        return "codex"
    m = _PRODUCT.match(low + "/")
    return m.group(1) if m and not m.group(1).startswith("sk-") else "other"
