"""Every table at 80 and 120 columns, in a terminal and piped (SPEC §8; issue 17, problem 1).

A table row is one line, whatever the width: at 120 columns Rich used to fold cells into
fragments (`outco/me`), and at 80 (what it uses whenever output is piped) it left every data
column empty and cut key prefixes to `sk-bmo-t…`. Here each table is rendered through the real
command, then read back cell by cell: what a user copies into the next command (a request id,
a key prefix, a name) is whole on its row, next to the cells that say what the row is.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from bmo.cli import app
from bmo.cli.tables import Col, fit
from bmo.runs import RunEvent, RunRecord
from bmo.store.db import open_database
from bmo.store.keys import KeyStore
from bmo.store.ledger import LedgerWriter
from bmo.store.sessions import SessionStore

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
LONG_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) SomeClient/123.0.0.0"
WIDTHS = [80, 120]
MODES = ["tty", "piped"]


def _run(i: int, **kw: Any) -> RunRecord:
    base: dict[str, Any] = dict(
        request_id=f"req_{i:024x}", started_at=time.time() - 60 + i, route="/v1/chat/completions", method="POST",
        status=200, outcome="ok", agent="researcher", upstream_route="openai/gpt-4.1-mini", duration_ms=123.4,
        ttfb_ms=45.6, prompt_tokens=1200, completion_tokens=340, client_ua="OpenAI/Python 1.99.1",
        client="openai-python", events=[RunEvent("received", 0.0), RunEvent("finished", 120.0, {"status": 200})],
    )  # fmt: skip
    base.update(kw)
    return RunRecord(**base)


RUNS = [
    _run(1),
    _run(2, status=404, outcome="client_error", error_code="model_not_found", agent=None, upstream_route=None,
         client_ua="curl/8.5.0", client="curl"),  # fmt: skip
    _run(3, route="/v1/messages", stream=True, client_ua="claude-cli/2.1.332 (external, sdk-cli)", client="claude-code",
         agent="coder"),  # fmt: skip
    _run(4, status=502, outcome="upstream_error", error_code="upstream_error", client_ua=LONG_UA, client="browser"),
    _run(5, route="unmatched", status=401, outcome="client_error", error_code="invalid_api_key", agent=None,
         client_ua="Python/3.11 aiohttp/3.11.18", client="open-webui"),  # fmt: skip
]
KEY_NAMES = ["openai-clients-on-the-build-farm", "claude-code", "x"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    h = tmp_path_factory.mktemp("tables")
    (h / "agents").mkdir()
    (h / "agents" / "researcher.yaml").write_text(
        "id: researcher\nmodel: local/echo\ndescription: Finds and summarises sources, with care and at length\n"
        "tools: [clock, calculator]\n"
    )
    (h / "agents" / "coder.yaml").write_text("id: coder\nmodel: local/echo\n")
    (h / "config.yaml").write_text('model_aliases: {"claude-*": coder, "gpt-5*": coder}\n')

    async def fill() -> dict[str, Any]:
        async with open_database(h / "bmo.db") as db:
            w = LedgerWriter(db)
            w.start()
            for r in RUNS:
                w.submit(r)
            await w.close()
            ks = KeyStore(db)
            prefixes = [(await ks.create(n, ["chat", "ledger"])).record.prefix for n in KEY_NAMES]
            await ks.revoke(KEY_NAMES[2])
            ss = SessionStore(db)
            sessions = [
                (await ss.create(prefixes[0], f"a-rather-long-session-name-{i}", "header", "researcher")).id
                for i in range(2)
            ]
        return {"prefixes": prefixes, "sessions": sessions}

    made = asyncio.run(fill())
    return {"path": h, **made}


def show(home: Path, width: int, mode: str, *args: str) -> tuple[int, list[str]]:
    env = {"COLUMNS": str(width), "TTY_COMPATIBLE": "1" if mode == "tty" else "0", "BMO_API_KEY": None,
           "BMO_URL": "http://127.0.0.1:9"}  # fmt: skip  (port 9: nothing answers, so no real server is asked)
    r = CliRunner().invoke(app, [*args, "--home", str(home)], env=env)
    if mode == "tty":
        assert "\x1b[" in r.stdout, "a terminal gets styles"
    else:
        assert "\x1b[" not in r.stdout, "a pipe gets no escape codes"
    return r.exit_code, ANSI.sub("", r.stdout).splitlines()


def row_of(lines: list[str], needle: str) -> list[str]:
    """The cells of the one line that holds `needle` whole (cells: runs of 2+ spaces apart)."""
    hits = [ln for ln in lines if needle in ln]
    assert len(hits) == 1, (needle, lines)
    return [c for c in re.split(r" {2,}", hits[0].strip()) if c]


def fits(lines: list[str], width: int) -> None:
    too_long = [ln for ln in lines if len(ln.rstrip()) > width]
    assert not too_long, too_long


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width", WIDTHS)
def test_runs_list(home: dict[str, Any], width: int, mode: str) -> None:
    code, lines = show(home["path"], width, mode, "runs", "list")
    assert code == 0
    fits(lines, width)
    header = row_of(lines, "request_id")
    for r in RUNS:
        cells = row_of(lines, r.request_id)  # whole, on one line
        assert len(cells) == len(header), (header, cells)
        assert str(r.status) in cells and r.outcome in cells
        if width >= 120:
            assert (r.error_code or "-") in cells and (r.agent or "-") in cells
            assert any(c.startswith(r.route[4:10] if r.route.startswith("/v1/") else r.route[:6]) for c in cells)
    if width >= 120:
        assert "error" in header and "agent" in header and "route" in header


@pytest.mark.parametrize("mode", MODES)
def test_runs_list_wide_has_every_column_whole(home: dict[str, Any], mode: str) -> None:
    code, lines = show(home["path"], 80, mode, "runs", "list", "--wide")
    assert code == 0
    header = row_of(lines, "request_id")
    every = ("status", "outcome", "route", "error", "agent", "client", "ms", "ttfb", "tokens", "stream", "user-agent")
    assert all(col in header for col in every), header
    cells = row_of(lines, RUNS[3].request_id)
    assert LONG_UA in cells and "/v1/chat/completions" in cells and "browser" in cells and "1200/340" in cells


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width", WIDTHS)
def test_posture_recent_runs_and_top_clients(home: dict[str, Any], width: int, mode: str) -> None:
    code, lines = show(home["path"], width, mode, "posture")
    assert code == 3  # no server answers: down, from the database's figures
    fits(lines, width)
    assert row_of(lines, "state")[1] == "down"
    for r in RUNS:
        cells = row_of(lines, r.request_id)
        assert str(r.status) in cells and r.outcome in cells
    for client in ("openai-python", "curl", "claude-code", "browser", "open-webui"):
        assert row_of(lines, client + " ")[-1] == "1" or client == "openai-python"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width", WIDTHS)
def test_api_key_list(home: dict[str, Any], width: int, mode: str) -> None:
    code, lines = show(home["path"], width, mode, "api-key", "list")
    assert code == 0
    fits(lines, width)
    for name, prefix, state in zip(KEY_NAMES, home["prefixes"], ["active", "active", "revoked"], strict=True):
        cells = row_of(lines, prefix)
        assert cells[0] == name and cells[1] == prefix and cells[2] == state  # what `revoke` needs, whole


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width", WIDTHS)
def test_sessions_list(home: dict[str, Any], width: int, mode: str) -> None:
    code, lines = show(home["path"], width, mode, "sessions", "list")
    assert code == 0
    fits(lines, width)
    for sid in home["sessions"]:
        cells = row_of(lines, sid)
        assert cells[0] == sid and "researcher" in cells


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width", WIDTHS)
def test_agents_list(home: dict[str, Any], width: int, mode: str) -> None:
    code, lines = show(home["path"], width, mode, "agents", "list")
    assert code == 0
    fits(lines, width)
    assert row_of(lines, "researcher")[:2] == ["researcher", "local/echo"]
    assert row_of(lines, "coder ")[:3] == ["coder", "local/echo", "claude-*, gpt-5*"]
    assert row_of(lines, "(default)")[0] == "default (default)"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width", WIDTHS)
def test_runs_events(home: dict[str, Any], width: int, mode: str) -> None:
    code, lines = show(home["path"], width, mode, "runs", "events", RUNS[0].request_id)
    assert code == 0
    fits(lines, width)
    assert row_of(lines, "received")[:3] == ["0", "received", "0.00"]
    assert row_of(lines, "finished")[:3] == ["1", "finished", "120.00"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width", WIDTHS)
def test_show_openai_compat(home: dict[str, Any], width: int, mode: str) -> None:
    code, lines = show(home["path"], width, mode, "config", "show-openai-compat")
    assert code == 0
    fits(lines, width)
    # ints as ints, booleans as YAML writes them, and where each value came from
    assert row_of(lines, "openai_compat.queue_timeout_s")[1:] == ["30", "default"]
    assert row_of(lines, "ledger.store_content")[1:] == ["false", "default"]
    assert row_of(lines, "model_aliases.claude-*")[1:] == ["coder", "file (line 1)"]
    assert row_of(lines, "base URL")[1].startswith("http://127.0.0.1:9/v1")
    assert row_of(lines, "config file")[1] == str(home["path"] / "config.yaml")
    cells = row_of(lines, "researcher ")
    assert cells[:2] == ["researcher", "local/echo"]
    assert row_of(lines, "state")[1] == "down"


def test_fit_drops_least_important_and_never_cuts_a_keep_column() -> None:
    cols = [Col("id", keep=True), Col("a", 1), Col("b", 2, min=4), Col("c", 3)]
    rows = [["req_" + "0" * 24, "x" * 10, "y" * 30, "z" * 10]]
    assert fit(cols, rows, 200) == [28, 10, 30, 10]
    assert fit(cols, rows, 60) == [28, 10, 6, 10]  # b does not fit whole: cut (to its min, and what is left)
    assert fit(cols, rows, 52) == [28, 10, 10, None]  # c does not fit at all: dropped, b gets the room
    assert fit(cols, rows, 20) == [28, None, None, None]  # too narrow even for the id: whole anyway
    assert fit(cols, rows, 20, wide=True) == [28, 10, 30, 10]


def test_json_lists_are_one_shape(home: dict[str, Any]) -> None:
    """Every list: {"object": "list", "data": [...]}; times are UTC ISO-8601 with Z."""
    r = CliRunner()
    h = str(home["path"])
    for args in (["runs", "list"], ["api-key", "list"], ["sessions", "list"], ["agents", "list"],
                 ["runs", "events", RUNS[0].request_id]):  # fmt: skip
        out = r.invoke(app, [*args, "--home", h, "--json"], env={"BMO_URL": "http://127.0.0.1:9"})
        assert out.exit_code == 0, out.output
        body = orjson.loads(out.stdout)
        assert body["object"] == "list" and isinstance(body["data"], list) and body["data"], args
    runs = orjson.loads(r.invoke(app, ["runs", "list", "--home", h, "--json"]).stdout)["data"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", x["started_at"]) for x in runs)
    keys = orjson.loads(r.invoke(app, ["api-key", "list", "--home", h, "--json"]).stdout)["data"]
    assert all(k["created_at"].endswith("Z") for k in keys)
    one = orjson.loads(r.invoke(app, ["runs", "show", RUNS[1].request_id, "--home", h, "--json"]).stdout)
    assert one["request_id"] == RUNS[1].request_id and one["error_code"] == "model_not_found"
    assert one["client"] == "curl" and one["client_ua"] == "curl/8.5.0"
    v = orjson.loads(r.invoke(app, ["version", "--json"]).stdout)
    assert v["object"] == "version" and v["version"]


def test_client_text_cannot_reach_the_terminal_as_escapes(tmp_path: Path) -> None:
    """A user-agent or session name is client input: an escape sequence in it is shown, not sent."""
    evil = "evil/1.0 \x1b[2J\x1b]0;pwned\x07\nsecond line"

    async def fill() -> None:
        async with open_database(tmp_path / "bmo.db") as db:
            w = LedgerWriter(db)
            w.start()
            w.submit(_run(9, client_ua=evil, client="evil"))
            await w.close()

    asyncio.run(fill())
    for args in (["runs", "list", "--wide"], ["runs", "show", f"req_{9:024x}"]):
        code, lines = show(tmp_path, 200, "piped", *args)
        assert code == 0
        text = "\n".join(lines)
        assert "\x1b" not in text and "\x07" not in text and "evil/1.0 \\x1b[2J" in text
        assert sum("second line" in ln for ln in lines) == 1 and not any(ln.startswith("second") for ln in lines)
