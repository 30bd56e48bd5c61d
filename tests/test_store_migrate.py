"""`bmo store migrate --to postgresql://…`: a home's SQLite store copied into PostgreSQL, every
kind of row, idempotently (a second run copies nothing and doubles nothing)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from bmo.chat import Message
from bmo.cli import app as cli_app
from bmo.runs import RunEvent, RunRecord
from bmo.store import ledger
from bmo.store.backend import open_store
from bmo.store.keys import KeyStore, hash_secret
from bmo.store.responses import ResponseStore, StoredResponse
from bmo.store.sessions import SessionStore


async def _fill(path: Path) -> str:
    async with open_store(path) as db:
        keys = KeyStore(db)
        k = await keys.create("laptop", ["chat"])
        await keys.create("old", ["chat", "ledger"])
        await keys.revoke("old")
        ss = SessionStore(db)
        s = await ss.create("sk-bmo-aaaaa", "chat-1", "header", "helper")
        await ss.save(s.id, 0, [Message(role="user", content="hi"), Message(role="assistant", content="yo")])
        q, a = Message(role="user", content="q"), Message(role="assistant", content="a")
        await ResponseStore(db).save(
            StoredResponse("resp_1", "sk-bmo-aaaaa", None, "helper", time.time(), [q], a, {"id": "resp_1"})
        )
        w = ledger.LedgerWriter(db)
        w.start()
        for i in range(1200):  # more than two pages
            w.submit(RunRecord(f"req_{i:06d}", 1000.0 + i, "/v1/chat/completions", "POST", status=200,
                               events=[RunEvent("request", 0.0, {"i": i})]))  # fmt: skip
        await w.close()
        return k.secret


def _migrate(home: Path, url: str) -> Any:
    r = CliRunner().invoke(cli_app, ["store", "migrate", "--to", url, "--home", str(home), "--json"])
    assert r.exit_code == 0, r.output
    return {t["table"]: (t["source"], t["copied"], t["skipped"]) for t in json.loads(r.output)["tables"]}


def test_migrate_copies_everything_once(pg: Any, tmp_path: Path) -> None:
    secret = asyncio.run(_fill(tmp_path / "bmo.db"))
    url = pg.database()
    first = _migrate(tmp_path, url)
    assert first == {
        "api_keys": (2, 2, 0),
        "sessions": (1, 1, 0),
        "session_messages": (2, 2, 0),
        "responses": (1, 1, 0),
        "runs": (1200, 1200, 0),
    }
    again = _migrate(tmp_path, url)  # idempotent
    assert all(copied == 0 and skipped == n for n, copied, skipped in again.values()), again

    async def check() -> None:
        async with open_store(url) as db:
            keys = KeyStore(db)
            rec = await keys.find(hash_secret(secret))
            assert rec is not None and rec.name == "laptop" and rec.state() == "active"
            assert {r.name: r.state() for r in await keys.list()} == {"laptop": "active", "old": "revoked"}
            s = await SessionStore(db).find("sk-bmo-aaaaa", "chat-1")
            assert s is not None and [m.content for m in s.messages] == ["hi", "yo"]
            chain = await ResponseStore(db).chain("resp_1", "sk-bmo-aaaaa")
            assert chain is not None and chain[0].body == {"id": "resp_1"}
            run = await ledger.get_run(db, "req_000007")
            assert run is not None and run.events == [RunEvent("request", 0.0, {"i": 7})]
            assert await ledger.count_runs(db) == 1200

    asyncio.run(check())
    human = CliRunner().invoke(cli_app, ["store", "migrate", "--to", url, "--home", str(tmp_path)])
    assert human.exit_code == 0 and "runs" in human.output and "1200 already there" in human.output, human.output
    assert "--to takes" in CliRunner().invoke(cli_app, ["store", "migrate", "--to", "mysql://x"]).output
