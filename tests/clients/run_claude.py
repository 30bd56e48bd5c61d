"""Run the real Claude Code CLI (`@anthropic-ai/claude-code`) in print mode against a local server.

Offline and as root. What makes that work (found with 2.1.332, see README.md here):

- `IS_SANDBOX=1` (exactly "1"): without it `--dangerously-skip-permissions` (and
  `--permission-mode bypassPermissions`) exit 1 as root with "cannot be used with root/sudo
  privileges for security reasons".
- `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`: no `HEAD <base>/api/hello` preflight, no DNS
  look-ups of api.anthropic.com (telemetry / event logging), only the Messages calls.
- A clean environment: nothing of the caller's ANTHROPIC_* / CLAUDE_* leaks in.
- Print mode needs no onboarding; a `~/.claude.json` is still written (see `write_config`) so the
  run does not depend on first-start migrations.

Claude Code appends `/v1/messages?beta=true` to ANTHROPIC_BASE_URL, so pass the server root
(`http://127.0.0.1:PORT`), not `.../v1`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / ".cache" / "clients" / "node_modules" / ".bin" / "claude"
# The platform package's binary: what `bin/claude` is hard-linked to by the postinstall step. It
# also works when npm ran with --ignore-scripts (then `.bin/claude` is a stub that exits 1).
NATIVE_BIN = REPO_ROOT / ".cache" / "clients" / "node_modules" / "@anthropic-ai" / "claude-code-linux-x64" / "claude"

OFFLINE_ENV = {
    "IS_SANDBOX": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_BUG_COMMAND": "1",
    "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
}

# Only these are taken from the caller's environment.
_PASS_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "TZ")


def find_claude() -> Path | None:
    """$BMO_CLAUDE_BIN, else .cache/clients/node_modules/.bin/claude (or its native binary)."""
    env = os.environ.get("BMO_CLAUDE_BIN")
    if env:
        p = Path(env)
        return p if p.exists() else None
    for p in (DEFAULT_BIN, NATIVE_BIN):
        # the --ignore-scripts stub is a 500-byte shell text; the real one is a ~400 MB ELF
        if p.exists() and p.stat().st_size > 1_000_000:
            return p
    return None


def write_config(home: Path) -> None:
    """A minimal ~/.claude.json: onboarding done, no tips / release notes / trust dialogs."""
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / ".claude.json"
    if not cfg.exists():
        cfg.write_text(
            json.dumps(
                {
                    "hasCompletedOnboarding": True,
                    "lastOnboardingVersion": "2.1.332",
                    "numStartups": 1,
                    "autoUpdates": False,
                    "bypassPermissionsModeAccepted": True,
                },
                indent=2,
            )
        )


def claude_env(
    base_url: str,
    token: str,
    *,
    auth: Literal["bearer", "x-api-key"] = "bearer",
    home: Path,
    extra_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(HOME=str(home), TERM="dumb", NO_COLOR="1", ANTHROPIC_BASE_URL=base_url.rstrip("/"))
    env.update(OFFLINE_ENV)
    if auth == "bearer":
        env["ANTHROPIC_AUTH_TOKEN"] = token  # sent as `Authorization: Bearer <token>`
    elif auth == "x-api-key":
        env["ANTHROPIC_API_KEY"] = token  # sent as `x-api-key: <token>`
    else:
        raise ValueError(f"auth must be 'bearer' or 'x-api-key', not {auth!r}")
    if extra_env:
        env.update(extra_env)
    return env


def run_claude(
    prompt: str,
    base_url: str,
    token: str,
    *,
    auth: Literal["bearer", "x-api-key"] = "bearer",
    home: Path,
    timeout: float = 120,
    cwd: Path | None = None,
    output_format: Literal["text", "json", "stream-json"] = "text",
    model: str | None = None,
    max_retries: int | None = 0,
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    claude_bin: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`claude -p PROMPT --dangerously-skip-permissions` against `base_url` (the server root).

    `home` becomes $HOME (a throwaway dir; Claude Code writes ~/.claude.json and ~/.claude/ there).
    `cwd` defaults to `home/work`. `max_retries=0` makes HTTP errors fail at once (Claude Code's own
    default is 10 retries with backoff); pass None to keep the default.
    Raises FileNotFoundError when no binary is installed, subprocess.TimeoutExpired on timeout.
    """
    exe = claude_bin or find_claude()
    if exe is None:
        raise FileNotFoundError("claude not installed: set BMO_CLAUDE_BIN or see tests/clients/README.md")
    home = Path(home)
    write_config(home)
    workdir = Path(cwd) if cwd else home / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    env = claude_env(base_url, token, auth=auth, home=home, extra_env=extra_env)
    if max_retries is not None:
        env.setdefault("CLAUDE_CODE_MAX_RETRIES", str(max_retries))
    cmd = [str(exe), "-p", prompt, "--dangerously-skip-permissions", "--output-format", output_format]
    if output_format == "stream-json":
        cmd.append("--verbose")  # required by the CLI for stream-json in print mode
    if model:
        cmd += ["--model", model]
    cmd += list(extra_args)
    return subprocess.run(
        cmd,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def have_claude() -> bool:
    return find_claude() is not None and shutil.which("bash") is not None
