"""The frozen binary trusts certifi's CA bundle, so HTTPS upstreams verify on any distribution."""

from __future__ import annotations

import ssl
import sys

import pytest

from bmo.tls import ssl_context


def test_frozen_binary_uses_certifi(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    ctx = ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.cert_store_stats()["x509_ca"] > 50


def test_ssl_cert_file_and_unfrozen_keep_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ssl_context() is True
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    assert ssl_context() is True
