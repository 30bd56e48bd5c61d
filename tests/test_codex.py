"""Codex CLI itself (`@openai/codex`, `codex exec`) completes a task through bmo's /v1/responses.

Codex is configured with a custom model provider whose base URL is bmo (tests/clients/run_codex.py;
tests/clients/README.md says how it runs offline as root). The agent's upstream is a scripted
fake that makes Codex run its own shell tool (`exec_command`, `echo bmo-probe-42`); the test
checks that the command's output reached the upstream on the next turn and that Codex printed the
final answer. `.ci/run` installs the CLI into .cache/clients (scripts/clients.sh).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from clients.run_codex import find_codex, run_codex
from fakes import FakeUpstream, Step

KEY = "sk-bmo-codex-test-0123456789abcdef"
PROBE = "bmo-probe-42"

if find_codex() is None:
    # CI installs it (.ci/run): there, a missing CLI is a failure, not a skip
    if os.environ.get("CI"):
        raise RuntimeError("Codex CLI is not installed in .cache/clients; see tests/clients/README.md")
    pytest.skip("Codex CLI is not installed (see tests/clients/README.md)", allow_module_level=True)


def test_codex_runs_its_shell_tool_through_bmo(make_bmo: Any, upstream: FakeUpstream, tmp_path: Path) -> None:
    s = make_bmo(
        config=(
            f'auth: {{mode: keys}}\nproviders:\n  up: {{kind: openai, base_url: "{upstream.url}", timeout_s: 30}}\n'
        ),
        agents={"coder": "id: coder\nmodel: up/gpt-test\n"},
        env_api_key=KEY,
    )
    upstream.enqueue(
        Step(
            tool_calls=[{"id": "call_probe", "name": "exec_command", "arguments": json.dumps({"cmd": f"echo {PROBE}"})}]
        ),
        Step(text=f"DONE: {PROBE}"),
    )
    r = run_codex(
        "Run `echo bmo-probe-42` and tell me its output.", s.base_url, KEY, home=tmp_path / "codex", model="coder"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith(f"DONE: {PROBE}")
    assert len(upstream.requests) == 2
    first, second = upstream.requests
    names = [t["function"]["name"] for t in first["tools"]]
    assert "exec_command" in names  # Codex's own tools, offered to the upstream (web_search skipped)
    assert all(n.replace("_", "").replace("-", "").isalnum() for n in names)  # namespaced ones flattened
    tool = [m for m in second["messages"] if m["role"] == "tool"]
    assert tool and tool[-1]["tool_call_id"] == "call_probe" and PROBE in tool[-1]["content"]
    def text(m: dict[str, Any]) -> str:
        c = m["content"]
        return c if isinstance(c, str) else "".join(p.get("text", "") for p in c)

    assert any(m["role"] == "system" and len(text(m)) > 1000 for m in first["messages"])  # its developer prompt
