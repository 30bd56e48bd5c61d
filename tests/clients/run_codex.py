"""Run the real Codex CLI (`@openai/codex`, `codex exec`) against a local Responses server.

Offline and as root. What makes that work (found with 0.171.0, see README.md here):

- A custom model provider in `$CODEX_HOME/config.toml` (`wire_api = "responses"`, `base_url` ending
  in `/v1`: Codex appends `/responses`); the key comes from the env var named by `env_key` and is
  sent as `Authorization: Bearer <key>`. No login, no `auth.json`, no `OPENAI_API_KEY`.
- `--dangerously-bypass-approvals-and-sandbox`: no approvals, no bubblewrap/landlock; works as root
  (Codex has no root check). `--skip-git-repo-check`: the work dir is not a git repo.
- No phoning home: `[analytics] enabled = false` (else DNS for ab.chatgpt.com) and
  `[features] plugins = false` (else github.com, api.github.com, chatgpt.com for the plugin
  marketplace sync). With both, strace shows no DNS look-up and no connect() but to our port.
- A model id Codex does not know (bmo's agent ids: `default`, ...). A known OpenAI slug
  (`gpt-6.2-sol`, ...) switches Codex to another request shape (no top-level `tools`; an
  `additional_tools` input item; `x-openai-internal-codex-responses-lite: true`).
- `max_retries=0` sets the provider's `request_max_retries` and `stream_max_retries` to 0, so an
  HTTP error or a cut stream fails after one request (Codex's default: up to 6 x 5 requests for a
  5xx, about 26 s), and turns off the feature `unbounded_connection_retries` (on by default: with
  nothing listening Codex prints "Reconnecting... waiting for network" and never exits).
- The native binary is run directly (see `find_codex`) in its own process group, killed whole on a
  timeout.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO_ROOT / ".cache" / "clients" / "node_modules"
# The npm wrapper: a Node script that runs the native binary of the platform package
# (process.execve where Node has it; a child process on Node 20, which lacks it).
DEFAULT_BIN = NODE_MODULES / ".bin" / "codex"

_TARGETS = {
    "x86_64": ("codex-linux-x64", "x86_64-unknown-linux-musl"),
    "amd64": ("codex-linux-x64", "x86_64-unknown-linux-musl"),
    "aarch64": ("codex-linux-arm64", "aarch64-unknown-linux-musl"),
    "arm64": ("codex-linux-arm64", "aarch64-unknown-linux-musl"),
}


def native_bin() -> Path | None:
    """The platform package's binary (the optional dependency `@openai/codex-linux-<arch>`)."""
    t = _TARGETS.get(platform.machine().lower())
    if t is None:
        return None
    return NODE_MODULES / "@openai" / t[0] / "vendor" / t[1] / "bin" / "codex"


# Only these are taken from the caller's environment.
_PASS_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "TZ")
KEY_ENV = "BMO_API_KEY"
PROVIDER_ID = "bmo"


def find_codex() -> Path | None:
    """$BMO_CODEX_BIN, else the binary behind .cache/clients/node_modules/.bin/codex.

    `.bin/codex` is a Node wrapper that runs the platform package's native binary; on Node < 22
    (no `process.execve`) it spawns it as a child, and killing the wrapper on a timeout leaves that
    child running. So when the wrapper is installed the native binary it would run is returned
    (the wrapper only if that is missing, e.g. another layout).
    """
    env = os.environ.get("BMO_CODEX_BIN")
    if env:
        p = Path(env)
        return p if p.exists() else None
    if not DEFAULT_BIN.exists():
        return None
    nat = native_bin()
    if nat is not None and nat.exists():
        return nat
    return DEFAULT_BIN if shutil.which("node") else None


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_toml(
    base_url: str,
    *,
    model: str,
    max_retries: int | None = 0,
    stream_idle_timeout_ms: int | None = None,
) -> str:
    """The whole $CODEX_HOME/config.toml (every key accepted by `--strict-config`)."""
    provider = [
        f"[model_providers.{PROVIDER_ID}]",
        f"name = {_toml_str(PROVIDER_ID)}",
        f"base_url = {_toml_str(base_url.rstrip('/'))}",
        f"env_key = {_toml_str(KEY_ENV)}",
        'wire_api = "responses"',
    ]
    if max_retries is not None:
        provider += [f"request_max_retries = {int(max_retries)}", f"stream_max_retries = {int(max_retries)}"]
    if stream_idle_timeout_ms is not None:
        provider.append(f"stream_idle_timeout_ms = {int(stream_idle_timeout_ms)}")
    lines = [
        f"model = {_toml_str(model)}",
        f"model_provider = {_toml_str(PROVIDER_ID)}",
        'approval_policy = "never"',
        'sandbox_mode = "danger-full-access"',
        "check_for_update_on_startup = false",
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[features]",
        "plugins = false",
        *(["unbounded_connection_retries = false"] if max_retries is not None else []),
        "",
        *provider,
        "",
    ]
    return "\n".join(lines)


def write_config(home: Path, base_url: str, **kw) -> Path:
    """Writes (overwrites: the port changes per run) `home/.codex/config.toml`; returns CODEX_HOME."""
    codex_home = Path(home) / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(config_toml(base_url, **kw))
    return codex_home


def codex_env(token: str, *, home: Path, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(
        HOME=str(home),
        CODEX_HOME=str(Path(home) / ".codex"),
        TERM="dumb",
        NO_COLOR="1",
    )
    # what the npm wrapper adds before running the native binary (only update hints use them)
    env.update(CODEX_MANAGED_BY_NPM="1", CODEX_MANAGED_PACKAGE_ROOT=str(NODE_MODULES / "@openai" / "codex"))
    env[KEY_ENV] = token  # sent as `Authorization: Bearer <token>`
    if extra_env:
        env.update(extra_env)
    return env


def run_codex(
    prompt: str,
    base_url: str,
    token: str,
    *,
    home: Path,
    timeout: float = 120,
    model: str = "default",
    cwd: Path | None = None,
    json_events: bool = False,
    max_retries: int | None = 0,
    stream_idle_timeout_ms: int | None = None,
    ephemeral: bool = True,
    extra_args: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
    codex_bin: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`codex exec PROMPT` against `base_url` (the `/v1` base: Codex POSTs `<base_url>/responses`).

    `home` becomes $HOME, `home/.codex` $CODEX_HOME (config.toml is written there; Codex adds its
    sqlite state, installation_id, ...). `cwd` defaults to `home/work`.
    stdout: the final assistant text only (with `json_events`: JSONL events, `--json`); stderr:
    the transcript and errors (`ERROR: ...`). Exit code 0 on success, 1 on an API error.
    `max_retries=0` fails at once on errors; None keeps Codex's defaults (4 request + 5 stream retries).
    Raises FileNotFoundError when no binary is installed, subprocess.TimeoutExpired on timeout.
    """
    exe = codex_bin or find_codex()
    if exe is None:
        raise FileNotFoundError("codex not installed: set BMO_CODEX_BIN or see tests/clients/README.md")
    home = Path(home)
    write_config(home, base_url, model=model, max_retries=max_retries, stream_idle_timeout_ms=stream_idle_timeout_ms)
    workdir = Path(cwd) if cwd else home / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    env = codex_env(token, home=home, extra_env=extra_env)
    cmd = [
        str(exe),
        "exec",
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
        "--color",
        "never",
        "-C",
        str(workdir),
        "-m",
        model,
    ]
    if ephemeral:
        cmd.append("--ephemeral")
    if json_events:
        cmd.append("--json")
    cmd += list(extra_args)
    cmd += ["--", prompt]
    # Own session: on a timeout the whole group goes (Codex runs the tool commands as children).
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, output=out, stderr=err) from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this function created (start_new_session)
    except ProcessLookupError:
        pass


def have_codex() -> bool:
    return find_codex() is not None and shutil.which("bash") is not None
