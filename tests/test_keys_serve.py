"""First start (SPEC §7) as a newcomer meets it: `bmo serve` on an empty home, as a process."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import openai

from served import Served, run_bmo

SECRET = re.compile(r"sk-bmo-[A-Za-z0-9_-]{43}")


def test_first_start_mints_a_key_prints_it_once_and_requires_keys(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    s = Served(home)
    try:
        found = SECRET.findall(s.banner)
        assert len(found) == 1, s.banner  # once, in a snippet ready to paste
        secret = found[0]
        assert f'api_key="{secret}"' in s.banner and "from openai import OpenAI" in s.banner
        assert "first" in s.banner and "chat, ledger" in s.banner and "shown only this once" in s.banner
        client = openai.OpenAI(base_url=s.url, api_key=secret, max_retries=0)
        r = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "secure hello"}])
        assert r.choices[0].message.content == "secure hello"
        r2 = httpx.get(s.url + "/models", timeout=20)
        assert r2.status_code == 401 and r2.json()["error"]["code"] == "invalid_api_key"
    finally:
        err = s.stop()
    assert s.proc.returncode == 0, err
    assert secret not in err  # the server's log never has it
    blob = b"".join(p.read_bytes() for p in home.glob("bmo.db*"))
    assert secret.encode() not in blob and secret[12:].encode() not in blob

    again = Served(home)  # a key exists now: nothing is minted, nothing secret is printed
    try:
        assert SECRET.search(again.banner) is None, again.banner
        assert "API key required" in again.banner and "bmo api-key" in again.banner
        assert httpx.get(again.url + "/models", headers={"X-Api-Key": secret}, timeout=20).status_code == 200
    finally:
        again.stop()


def test_no_key_is_minted_with_bmo_api_key_or_auth_none(tmp_path: Path) -> None:
    s = Served(tmp_path / "env", BMO_API_KEY="sk-bmo-from-the-environment")
    try:
        assert SECRET.search(s.banner) is None and "BMO_API_KEY" in s.banner
    finally:
        s.stop()
    none_home = tmp_path / "none"
    none_home.mkdir()
    (none_home / "config.yaml").write_text("auth: {mode: none}\n")
    s = Served(none_home)
    try:
        assert SECRET.search(s.banner) is None and "auth.mode: none" in s.banner
    finally:
        s.stop()
    r = run_bmo(tmp_path / "env", "api-key", "list", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"object": "list", "data": []}


def test_a_store_that_cannot_open_stops_start_up_clearly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "bmo.db").write_bytes(b"not a database, just bytes " * 100)
    r = run_bmo(home, "serve", "--port", "0")
    assert r.returncode == 2, r.stdout + r.stderr  # every start-up failure: exit 2, as a bad config
    assert "bmo.db" in r.stderr and "Traceback" not in r.stderr


def test_a_port_in_use_is_a_clear_error_and_the_unshown_key_is_dropped(tmp_path: Path) -> None:
    first = Served(tmp_path / "a")
    try:
        port = first.url.rsplit(":", 1)[1].split("/")[0]
        home = tmp_path / "b"
        r = run_bmo(home, "serve", "--port", port)
        assert r.returncode == 2 and "cannot listen" in r.stderr and "Traceback" not in r.stderr
        assert SECRET.search(r.stdout) is None
        listed = run_bmo(home, "api-key", "list", "--json")
        assert json.loads(listed.stdout)["data"] == []  # never shown, so not kept: the next start mints afresh
    finally:
        first.stop()
