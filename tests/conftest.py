"""Shared fixtures: servers run in one background loop thread (see fakes.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fakes import BmoServer, FakeUpstream, LoopThread
from fakes_anthropic import FakeAnthropicUpstream


@pytest.fixture(scope="session")
def servers() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


@pytest.fixture
def upstream(servers: LoopThread) -> Iterator[FakeUpstream]:
    up = FakeUpstream()
    servers.run(up.start())
    yield up
    servers.run(up.stop())


@pytest.fixture
def claude(servers: LoopThread) -> Iterator[FakeAnthropicUpstream]:
    """A fake Anthropic Messages upstream (tests/fakes_anthropic.py)."""
    up = FakeAnthropicUpstream()
    servers.run(up.start())
    yield up
    servers.run(up.stop())


def upstream_config(up: FakeUpstream, extra: str = "") -> str:
    return f'auth: {{mode: none}}\nproviders:\n  up: {{kind: openai, base_url: "{up.url}", timeout_s: 5}}\n{extra}'


AGENTS = {
    "helper": "id: helper\nmodel: up/gpt-test\nsystem: You are helpful.\ntools: [calculator, clock]\n"
    "params: {temperature: 0.3}\nlock: [seed]\n",
    "plain": "id: plain\nmodel: up/gpt-plain\n",
}


@pytest.fixture
def make_bmo(servers: LoopThread, tmp_path: Path) -> Iterator[Callable[..., BmoServer]]:
    started: list[BmoServer] = []

    def make(**kw: Any) -> BmoServer:
        home = kw.pop("home", None) or tmp_path / f"home{len(started)}"
        s = BmoServer(home, **kw)
        servers.run(s.start())
        started.append(s)
        return s

    yield make
    for s in started:
        servers.run(s.stop())


@pytest.fixture
def bmo(make_bmo: Callable[..., BmoServer], upstream: FakeUpstream) -> BmoServer:
    """bmo with provider `up` (the fake upstream), agents `helper` and `plain`, auth off."""
    return make_bmo(config=upstream_config(upstream), agents=AGENTS)


@pytest.fixture(scope="session")
def pg() -> Iterator[Any]:
    """One real PostgreSQL server for the whole test session (tests/pg.py); skipped when its
    binaries are absent, except in CI (`CI` set), where that is a failure."""
    import os

    from pg import PgServer, pg_bin

    bindir = pg_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries are missing (/usr/lib/postgresql/*/bin): .ci/run installs them")
        pytest.skip("PostgreSQL binaries are absent (/usr/lib/postgresql/*/bin)")
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("asyncpg is missing: pip install -e '.[dev]'")
        pytest.skip("asyncpg is not installed")
    server = PgServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Where a store test's database is: a bmo.db in tmp_path, or a fresh PostgreSQL database.
    One parametrised suite runs against both backends."""
    if request.param == "sqlite":
        return tmp_path / "bmo.db"
    return request.getfixturevalue("pg").database()
