"""Stored API keys against a real running server: made and revoked by the CLI while it runs."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from aiohttp import web
from typer.testing import CliRunner

from bmo.cli import app as cli_app
from bmo.server.context import RUNTIME
from bmo.server.http import json_response
from bmo.store.db import open_database
from bmo.store.keys import KeyStore, new_secret
from fakes import BmoServer, LoopThread

KEYS = "auth: {mode: keys}\n"
SECRET = re.compile(r"sk-bmo-[A-Za-z0-9_-]{43}")
LEDGER_ROUTE = "/v1/test-only/ledger"


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BMO_API_KEY", raising=False)
    monkeypatch.delenv("BMO_HOME", raising=False)


def call(s: BmoServer, path: str = "/v1/models", key: str | None = None, header: str = "bearer") -> httpx.Response:
    headers = {}
    if key is not None:
        headers = {"Authorization": f"Bearer {key}"} if header == "bearer" else {"X-Api-Key": key}
    return httpx.get(s.url + path, headers=headers, timeout=20)


def cli(s: BmoServer, *args: str) -> str:
    r = CliRunner().invoke(cli_app, ["api-key", *args, "--home", str(s.home)], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    return r.stdout


def create(s: BmoServer, name: str, scopes: str = "chat,ledger") -> str:
    (secret,) = SECRET.findall(cli(s, "create", "--name", name, "--scopes", scopes))
    return secret


def keys_server(make_bmo: Callable[..., BmoServer], **kw: Any) -> BmoServer:
    """bmo with auth.mode keys, and a ledger-scoped route (no real one exists yet; the run
    ledger's routes will be the real ones) to check scopes against."""
    s = make_bmo(config=KEYS, **kw)

    async def ledger(request: web.Request) -> web.StreamResponse:
        return json_response({"ok": True})

    s.app[RUNTIME].router.add("GET", LEDGER_ROUTE, ledger, scope="ledger")
    return s


def wait_for_status(s: BmoServer, key: str, status: int, timeout: float = 15) -> httpx.Response:
    """Poll until the server answers `status` (bounded; no assertion on how fast)."""
    deadline = time.monotonic() + timeout
    while True:
        r = call(s, key=key)
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def assert_401(r: httpx.Response, word: str, secret: str | None = None) -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert (err["type"], err["code"], err["param"]) == ("authentication_error", "invalid_api_key", None)
    assert word in err["message"].lower(), err["message"]
    if secret:
        assert secret not in r.text and secret[:12] not in r.text
    assert r.headers["x-request-id"].startswith("req_")


def test_a_key_made_by_the_cli_works_at_once_and_revoke_takes_effect(make_bmo: Callable[..., BmoServer]) -> None:
    s = keys_server(make_bmo)
    assert_401(call(s), "no api key")
    secret = create(s, "clients")  # the server is running: no restart
    assert call(s, key=secret).status_code == 200
    assert call(s, key=secret, header="x-api-key").status_code == 200
    r = httpx.post(
        s.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {secret}"},
        json={"model": "default", "messages": [{"role": "user", "content": "hi"}]},
        timeout=20,
    )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "hi"
    cli(s, "revoke", "clients")
    assert_401(wait_for_status(s, secret, 401), "revoked", secret)
    assert call(s, key=secret, header="x-api-key").status_code == 401


def test_revoke_by_prefix_on_a_running_server(make_bmo: Callable[..., BmoServer]) -> None:
    s = keys_server(make_bmo)
    keep, drop = create(s, "keep"), create(s, "drop")
    assert call(s, key=drop).status_code == 200
    cli(s, "revoke", drop[:12])
    assert_401(wait_for_status(s, drop, 401), "revoked", drop)
    assert call(s, key=keep).status_code == 200


def test_every_401_class_is_named_and_nothing_leaks(make_bmo: Callable[..., BmoServer]) -> None:
    s = keys_server(make_bmo)
    assert_401(call(s), "no api key")
    r = httpx.get(s.url + "/v1/models", headers={"Authorization": "Basic dXNlcjpwdw=="}, timeout=20)
    assert_401(r, "malformed")
    r = httpx.get(s.url + "/v1/models", headers={"Authorization": "Bearer"}, timeout=20)
    assert_401(r, "malformed")
    assert_401(call(s, key="hunter2"), "malformed", "hunter2")
    stranger = new_secret()
    assert_401(call(s, key=stranger), "not known", stranger)
    assert_401(call(s, key=stranger, header="x-api-key"), "not known", stranger)


def test_expiry_on_a_running_server(make_bmo: Callable[..., BmoServer]) -> None:
    s = keys_server(make_bmo)

    async def mint() -> str:
        async with open_database(s.cfg.db_path) as db:
            return (await KeyStore(db).create("brief", ["chat"], expires_at=time.time() + 3)).secret

    secret = asyncio.run(mint())
    assert call(s, key=secret).status_code == 200
    assert_401(wait_for_status(s, secret, 401), "expired", secret)
    (row,) = [x for x in _json_list(s) if x["name"] == "brief"]
    assert row["state"] == "expired"


def test_scopes(make_bmo: Callable[..., BmoServer]) -> None:
    s = keys_server(make_bmo, env_api_key="env-admin-key-123")
    chat, ledger, admin = create(s, "c", "chat"), create(s, "l", "ledger"), create(s, "a", "admin")
    r = call(s, LEDGER_ROUTE, key=chat)
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "permission_error" and r.json()["error"]["code"] == "insufficient_scope"
    assert call(s, "/v1/models", key=chat).status_code == 200
    assert call(s, LEDGER_ROUTE, key=ledger).status_code == 200
    assert call(s, "/v1/models", key=ledger).status_code == 403
    assert call(s, LEDGER_ROUTE, key=admin).status_code == 200 and call(s, key=admin).status_code == 200
    # BMO_API_KEY stays an admin key with no row, beside the stored ones
    assert call(s, LEDGER_ROUTE, key="env-admin-key-123").status_code == 200
    assert call(s, key="env-admin-key-123", header="x-api-key").status_code == 200
    assert "env-admin" not in cli(s, "list")


def test_health_needs_no_key_and_reports_the_store(make_bmo: Callable[..., BmoServer]) -> None:
    s = keys_server(make_bmo)
    r = call(s, "/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    for p in s.home.glob("bmo.db*"):
        p.unlink()
    r = call(s, "/health")
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "store_unavailable" and "gone away" in err["message"]
    assert str(s.home) not in r.text  # an unauthenticated caller learns no path


def test_last_used_is_written_in_batches(make_bmo: Callable[..., BmoServer], servers: LoopThread) -> None:
    s = keys_server(make_bmo)
    secret = create(s, "busy")
    for _ in range(20):
        assert call(s, key=secret).status_code == 200
    servers.run(s.runtime.keys.flush())  # what the background task does every few seconds
    (row,) = _json_list(s)
    assert row["last_used_at"] is not None


def test_the_secret_is_never_in_the_file_the_list_or_the_logs(
    make_bmo: Callable[..., BmoServer], servers: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s = keys_server(make_bmo)
    secret = create(s, "quiet")
    for header in ("bearer", "x-api-key"):
        assert call(s, key=secret, header=header).status_code == 200
    assert call(s, LEDGER_ROUTE, key=create(s, "chat-only", "chat")).status_code == 403
    servers.run(s.runtime.keys.flush())
    listing = cli(s, "list") + cli(s, "list", "--json")
    cli(s, "revoke", "quiet")
    wait_for_status(s, secret, 401)
    servers.run(s.stop())  # the last flush and close
    tail = secret[12:]
    assert secret not in listing and tail not in listing
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert caplog.records and secret not in logged and tail not in logged
    blob = b"".join(p.read_bytes() for p in s.home.glob("bmo.db*"))
    assert blob and secret.encode() not in blob and tail.encode() not in blob


async def test_200_parallel_requests_while_keys_change(
    make_bmo: Callable[..., BmoServer], caplog: pytest.LogCaptureFixture
) -> None:
    """No `database is locked`, every request 200, while another connection keeps writing keys
    (each write makes the server drop its cache and read again)."""
    caplog.set_level(logging.INFO)
    s = keys_server(make_bmo)
    async with open_database(s.cfg.db_path) as db:
        ks = KeyStore(db)
        secret = (await ks.create("hammer", ["chat"])).secret

        async def churn() -> None:
            for i in range(20):
                await ks.create(f"churn-{i}", ["chat"])
                await asyncio.sleep(0.01)
            await ks.revoke("churn-0")

        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as http:

            async def one(i: int) -> tuple[int, str]:
                headers = {"Authorization": f"Bearer {secret}"} if i % 2 else {"X-Api-Key": secret}
                async with http.get(s.url + "/v1/models", headers=headers) as r:
                    return r.status, await r.text()

            results, _ = await asyncio.gather(asyncio.gather(*(one(i) for i in range(200))), churn())
    assert [st for st, _ in results] == [200] * 200, [t for st, t in results if st != 200][:3]
    assert "locked" not in caplog.text and all("locked" not in t for _, t in results)


def _json_list(s: BmoServer) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = orjson.loads(cli(s, "list", "--json"))["data"]
    return rows


def test_auth_mode_none_still_opens_the_store(make_bmo: Callable[..., BmoServer]) -> None:
    s = make_bmo(config="auth: {mode: none}\n")
    assert call(s).status_code == 200 and call(s, "/health").status_code == 200
    assert (s.home / "bmo.db").exists()
