"""A published MCP server, not one of ours: `@modelcontextprotocol/server-filesystem` from npm
(pinned in scripts/clients.sh, installed into .cache/clients), driven over stdio through the
ToolRegistry exactly as a configured `mcp_servers:` entry would be. Skipped when it is not
installed; in CI (`CI` set) that is a failure instead: a test that cannot run must not pass."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bmo.config import McpServerConfig
from bmo.tools import ToolOutput
from mcp_servers.harness import Tracker, alive, eventually

REPO_ROOT = Path(__file__).resolve().parents[1]
ENTRY = REPO_ROOT / ".cache/clients/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
NODE = shutil.which("node")

if NODE is None or not ENTRY.exists():
    if os.environ.get("CI"):
        raise RuntimeError("server-filesystem is not installed in .cache/clients; run scripts/clients.sh")
    pytest.skip("server-filesystem (npm) is not installed: run scripts/clients.sh", allow_module_level=True)


@pytest.fixture
async def track(tmp_path: Path) -> AsyncIterator[Tracker]:
    t = Tracker(tmp_path)
    yield t
    await t.close()


async def test_filesystem_server_reads_a_file_through_the_registry(track: Tracker, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.txt").write_text("bmo read this through MCP ✓\n")
    assert NODE is not None
    cfg = McpServerConfig(command=[NODE, str(ENTRY), str(docs)], timeout_s=30, startup_timeout_s=60)
    registry = track.registry({"fs": cfg})
    await registry.open()
    status = registry.status()[0]
    assert status["state"] == "up", status["last_error"]
    assert status["server_name"] and status["protocol_version"] in ("2025-06-18", "2025-11-25")
    assert registry.check("reader", ["fs/*", "fs/read_text_file"]) == []

    tools = registry.resolve(["fs/read_text_file", "fs/list_directory"])
    assert list(tools) == ["fs__read_text_file", "fs__list_directory"]
    out = await tools["fs__read_text_file"].run({"path": str(docs / "note.txt")})
    assert isinstance(out, ToolOutput) and not out.is_error
    assert out.text.strip() == "bmo read this through MCP ✓"

    listing = await tools["fs__list_directory"].run({"path": str(docs)})
    assert isinstance(listing, ToolOutput) and "note.txt" in listing.text

    # outside its allowed directory: an error the model reads, not an exception
    denied = await tools["fs__read_text_file"].run({"path": "/etc/hostname"})
    assert isinstance(denied, ToolOutput) and denied.is_error

    pid = registry.servers["fs"].pid
    await registry.close()
    assert pid is not None and await eventually(lambda: not alive(pid), within=2)
