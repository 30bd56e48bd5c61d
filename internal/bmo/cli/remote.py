"""Finding and asking the running server (SPEC §8): `serve.json`, `--url`, and plain HTTP.

`bmo serve` writes `BMO_HOME/serve.json` (pid, url, version, started) once it answers, and
removes it on exit; a file left by a server that was killed names a pid that is gone and is
ignored. Every command that talks to a server looks for it, in this order:

    --url (or $BMO_URL)  >  BMO_HOME/serve.json  >  server.host/server.port from the config

so `bmo serve --port 9100` is found by `bmo status` on the same home without being told. The
answer is either the server's, or "no server answers" (never a guess from the database).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import typer

from bmo.config import Config

SERVE_FILE = "serve.json"
UrlOption = typer.Option(
    None,
    "--url",
    envvar="BMO_URL",
    help="The server to ask, e.g. http://127.0.0.1:9000 (default: BMO_HOME/serve.json, then the config).",
    show_default=False,
)


def serve_file(home: Path) -> Path:
    return home / SERVE_FILE


def write_serve_file(
    home: Path, *, pid: int, url: str, version: str, started: float, bind: str,
    workers: list[dict[str, Any]] | None = None,
) -> None:  # fmt: skip
    """Atomically: a reader never sees half a file. `workers` (`--workers N`): each worker's
    slot, pid and restarts; `pid` is then the supervisor's, the one `bmo stop` signals."""
    from bmo.runs import iso_utc

    path = serve_file(home)
    tmp = path.with_name(f".{SERVE_FILE}.{pid}")
    body: dict[str, Any] = {"pid": pid, "url": url, "version": version, "started": iso_utc(started), "bind": bind}
    if workers is not None:
        body["workers"] = workers
    tmp.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, path)


def remove_serve_file(home: Path, pid: int) -> None:
    """Remove serve.json if it is this process's (a second server on the same home owns it now
    otherwise)."""
    info = read_serve_file(home)
    if info is not None and info.get("pid") == pid:
        with contextlib.suppress(OSError):
            serve_file(home).unlink()


def read_serve_file(home: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(serve_file(home).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs: a zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(0) is all there is
    return state not in ("Z", "X")


def is_bmo(pid: int) -> bool:
    """Whether `pid` looks like a bmo process (Linux: its command line); elsewhere, assume so."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid_alive(pid)
    return b"bmo" in cmdline


@dataclass(slots=True)
class Target:
    url: str  # http://host:port, no trailing slash, no /v1
    source: str  # "--url", "serve.json" or "config"
    info: dict[str, Any] | None = None  # serve.json, when that is where the url came from
    stale: dict[str, Any] | None = None  # a serve.json whose process is gone


def config_url(cfg: Config) -> str:
    host = cfg.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.server.port}"


def find_server(cfg: Config, url: str | None) -> Target:
    if url:
        u = url.rstrip("/")
        if u.endswith("/v1"):
            u = u[:-3]
        if "://" not in u:
            u = "http://" + u
        return Target(u, "--url")
    info = read_serve_file(cfg.home)
    if info is not None:
        if pid_alive(int(info["pid"])):
            return Target(str(info["url"]), "serve.json", info=info)
        return Target(config_url(cfg), "config", stale=info)
    return Target(config_url(cfg), "config")


@dataclass(slots=True)
class Answer:
    status: int  # 0: nothing answered (refused, timed out, not HTTP)
    body: Any = None
    error: str | None = None  # why nothing answered


def get(url: str, path: str, key: str | None = None, timeout: float = 2.0) -> Answer:
    """GET url+path; JSON bodies decoded. Never raises: status 0 and `error` when nothing answers."""
    import urllib.error  # here, not at the top: `bmo serve` imports this module and never asks
    import urllib.request
    headers = {"User-Agent": f"bmo-cli/{_version()}", "Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the operator's own server
            return Answer(resp.status, _decode(resp.read()))
    except urllib.error.HTTPError as e:
        return Answer(e.code, _decode(e.read()))
    except urllib.error.URLError as e:
        return Answer(0, error=str(e.reason))
    except (OSError, ValueError) as e:  # TimeoutError is an OSError
        return Answer(0, error=str(e) or type(e).__name__)


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


def _version() -> str:
    from bmo import __version__

    return __version__


def error_message(a: Answer) -> str:
    body = a.body
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return f"HTTP {a.status}"


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until process `pid` has exited; False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)
