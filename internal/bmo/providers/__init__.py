"""Upstream providers (layer 2): an explicit registry of kinds, so the frozen binary needs no
hidden imports. `build_providers` makes one instance per configured provider."""

from __future__ import annotations

import aiohttp

from bmo.config import Config
from bmo.errors import ConfigError
from bmo.providers.anthropic import AnthropicProvider
from bmo.providers.base import ModelCall, Provider, UpstreamStream
from bmo.providers.echo import EchoProvider
from bmo.providers.http import configured_secrets
from bmo.providers.openai_compat import OpenAIProvider
from bmo.redact import Redactor
from bmo.tls import ssl_context

__all__ = ["KINDS", "ClientSession", "ModelCall", "Provider", "UpstreamStream", "build_providers", "open_session"]

KINDS = ("openai", "anthropic", "echo")
# Upstream pool: enough for the default concurrency with streams held open, and DNS cached.
POOL_LIMIT = 512
ClientSession = aiohttp.ClientSession


def open_session(concurrency: int = 64) -> aiohttp.ClientSession:
    """The one pooled upstream HTTP client every provider shares (owned by the runtime). The pool
    is never what limits bmo: admission (`openai_compat.concurrency`) is, so it is sized above it."""
    limit = max(POOL_LIMIT, concurrency * 2)
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300, enable_cleanup_closed=True, ssl=ssl_context())
    return aiohttp.ClientSession(connector=connector, auto_decompress=True)


def build_providers(cfg: Config, session: aiohttp.ClientSession) -> dict[str, Provider]:
    out: dict[str, Provider] = {}
    redact = Redactor(configured_secrets(cfg))  # no provider relays any configured key (SPEC §5)
    for name, pc in cfg.providers.items():
        if pc.kind == "echo":
            out[name] = EchoProvider(name)
        elif pc.kind == "openai":
            out[name] = OpenAIProvider(name, pc, session, redact)
        elif pc.kind == "anthropic":
            out[name] = AnthropicProvider(name, pc, session, redact)
        else:
            raise ConfigError(
                str(cfg.config_file),
                f"providers.{name}.kind",
                f"provider kind {pc.kind!r} is not available in this build (available: {', '.join(KINDS)})",
            )
    return out
