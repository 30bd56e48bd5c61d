"""Claude Code itself (`@anthropic-ai/claude-code`, print mode) completes a task through bmo.

The agent's upstream is a scripted fake that makes Claude Code run one of its own tools (`Bash`,
`echo bmo-probe-42`); the test then checks that the tool's output reached the upstream on the
next turn and that Claude Code printed the final answer. Once with the key as
`ANTHROPIC_AUTH_TOKEN` (Bearer) on a Claude-backed agent, once as `ANTHROPIC_API_KEY`
(`x-api-key`) on an OpenAI-compatible agent. `.ci/run` installs the CLI into `.cache/clients`
(tests/clients/README.md says how it runs offline as root).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from clients.run_claude import find_claude, run_claude
from fakes import FakeUpstream, Step
from fakes_anthropic import AStep, FakeAnthropicUpstream

KEY = "sk-bmo-claude-code-test-0123456789"
PROBE = "bmo-probe-42"
BASH = {"command": f"echo {PROBE}", "description": "Print the probe"}

if find_claude() is None:
    # CI installs it (.ci/run): there, a missing CLI is a failure, not a skip
    if os.environ.get("CI"):
        raise RuntimeError("Claude Code is not installed in .cache/clients; see tests/clients/README.md")
    pytest.skip("Claude Code is not installed (see tests/clients/README.md)", allow_module_level=True)


def _tool_results(messages: list[dict[str, Any]]) -> list[str]:
    out = []
    for m in messages:
        content = m.get("content")
        if m.get("role") == "tool":
            out.append(str(content))
        elif isinstance(content, list):
            for b in content:
                if isinstance(b, dict) and b.get("type") == "tool_result":
                    out.append(json.dumps(b.get("content")))
    return out


def test_claude_code_on_a_claude_agent_with_bearer(
    make_bmo: Any, claude: FakeAnthropicUpstream, tmp_path: Path
) -> None:
    s = make_bmo(
        config=(
            "auth: {mode: keys}\n"
            f'providers:\n  claude: {{kind: anthropic, base_url: "{claude.url}", timeout_s: 30}}\n'
            'model_aliases: {"claude-*": coder}\n'
        ),
        agents={"coder": "id: coder\nmodel: claude/claude-sonnet-4-5\n"},
        env_api_key=KEY,
    )
    claude.enqueue(
        AStep(text="", tool_uses=[{"id": "toolu_probe", "name": "Bash", "input": BASH}]),
        AStep(text=f"DONE: {PROBE}"),
    )
    r = run_claude(
        "Run `echo bmo-probe-42` with the Bash tool and tell me the output.",
        s.url,
        KEY,
        auth="bearer",
        home=tmp_path / "cc",
        timeout=120,
        output_format="json",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["result"] == f"DONE: {PROBE}"
    assert len(claude.requests) == 2
    first, second = claude.requests
    assert any(t["name"] == "Bash" for t in first["tools"])  # Claude Code's own tools are offered upstream
    assert any(PROBE in t for t in _tool_results(second["messages"])), second["messages"][-2:]
    assert "claude-code-20250219" in claude.headers[0]["anthropic-beta"]  # forwarded


def test_claude_code_on_an_openai_agent_with_x_api_key(make_bmo: Any, upstream: FakeUpstream, tmp_path: Path) -> None:
    s = make_bmo(
        config=(
            "auth: {mode: keys}\n"
            f'providers:\n  up: {{kind: openai, base_url: "{upstream.url}", timeout_s: 30}}\n'
            'model_aliases: {"claude-*": coder}\n'
        ),
        agents={"coder": "id: coder\nmodel: up/gpt-test\n"},
        env_api_key=KEY,
    )
    upstream.enqueue(
        Step(tool_calls=[{"id": "call_probe", "name": "Bash", "arguments": json.dumps(BASH)}]),
        Step(text=f"DONE: {PROBE}"),
    )
    r = run_claude(
        "Run `echo bmo-probe-42` with the Bash tool and tell me the output.",
        s.url,
        KEY,
        auth="x-api-key",
        home=tmp_path / "cc",
        timeout=120,
        output_format="json",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["result"] == f"DONE: {PROBE}"
    assert len(upstream.requests) == 2
    tool = [m for m in upstream.requests[1]["messages"] if m["role"] == "tool"]
    assert tool and tool[-1]["tool_call_id"] == "call_probe" and PROBE in tool[-1]["content"]
