"""The TLS trust every outgoing HTTPS client of bmo uses (layer 0): upstream providers and
streamable-HTTP MCP servers alike."""

from __future__ import annotations

import os
import ssl
import sys


def ssl_context() -> ssl.SSLContext | bool:
    """The frozen binary carries the build machine's OpenSSL, which looks for CA certificates
    where that distribution keeps them; elsewhere (Fedora, Alpine…) HTTPS would fail. So the
    binary trusts certifi's bundle, unless SSL_CERT_FILE says otherwise."""
    if getattr(sys, "frozen", False) and not os.environ.get("SSL_CERT_FILE"):
        try:
            import certifi
        except ImportError:
            return True
        return ssl.create_default_context(cafile=certifi.where())
    return True  # aiohttp's default verification with the system's CA store
