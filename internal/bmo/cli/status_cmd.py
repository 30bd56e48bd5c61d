"""`bmo status` and `bmo stop`: is a server up, and stop it (SPEC §8).

`status` asks GET /health of the server `bmo.cli.remote` finds; it needs no key. Exit codes, for
scripts and monitors: 0 a server answers (its state may still be `degraded`), 3 none does.
`stop` sends SIGTERM to the pid in BMO_HOME/serve.json and waits while the server drains its
in-flight runs (up to `server.shutdown_grace_s` and a little more).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import typer

from bmo.cli.common import HomeOption, JsonOption, config_or_exit, console, fail, print_json
from bmo.cli.remote import (
    Target,
    UrlOption,
    error_message,
    find_server,
    get,
    is_bmo,
    pid_alive,
    remove_serve_file,
    wait_gone,
)
from bmo.cli.tables import local_time, render_pairs, to_ts

DOWN = 3  # the exit code of "no server answers": status, posture, stop


def status(home: Path = HomeOption, url: str = UrlOption, as_json: bool = JsonOption) -> None:
    """Whether a server answers: url, pid, version, uptime, state. Exit 0 up, 3 down."""
    cfg = config_or_exit(home, write_default=False)
    target = find_server(cfg, url)
    health = get(target.url, "/health")
    data = _status(cfg.home, target, health.status, error_message(health) if health.status else health.error)
    if health.status == 503 and _code(health.body) == "shutting_down":
        data["state"] = "stopping"  # draining after SIGTERM: up, not for long
    if as_json:
        print_json(data)
    else:
        _print_status(data, target)
    if not data["up"]:
        raise typer.Exit(DOWN)


def _code(body: Any) -> str | None:
    err = body.get("error") if isinstance(body, dict) else None
    return err.get("code") if isinstance(err, dict) else None


def _status(home: Path, target: Target, code: int, reason: str | None) -> dict[str, Any]:
    info = target.info or {}
    started = to_ts(info.get("started"))
    up = code in (200, 503)  # 503: it answers, and says why it is not healthy
    state = "down"
    if code == 200:
        state = "ready"
    elif code == 503:
        state = "degraded"
    elif code:
        state = "unknown"  # something answers, but not bmo's /health
    return {
        "object": "status",
        "up": up,
        "state": state,
        "url": target.url,
        "found_by": target.source,
        "pid": info.get("pid"),
        "version": info.get("version"),
        "started_at": info.get("started"),
        "uptime_s": round(time.time() - started, 1) if started and up else None,
        "home": str(home),
        "reason": None if code == 200 else reason,
        # `bmo serve --workers N`: each worker's slot, pid, restarts and whether it runs (serve.json)
        "workers": [{**w, "alive": pid_alive(int(w["pid"]))} for w in info["workers"]] if info.get("workers") else None,
    }


def _print_status(d: dict[str, Any], target: Target) -> None:
    out = console()
    if not d["up"]:
        why = f" ({d['reason']})" if d["reason"] else ""
        out.print(f"[red]down[/]: no bmo server answers at {d['url']}{why}", highlight=False, soft_wrap=True)
        if target.stale:
            out.print(
                f"  BMO_HOME/serve.json names pid {target.stale.get('pid')}, which has exited (killed?)",
                highlight=False, markup=False, soft_wrap=True,
            )  # fmt: skip
        out.print(f"  found by: {d['found_by']}; `bmo serve` starts one", highlight=False, markup=False)
        return
    pairs = [("state", d["state"]), ("url", d["url"] + "/v1")]
    if d["pid"] is not None:
        pairs.append(("pid", str(d["pid"])))
    if d["version"]:
        pairs.append(("version", d["version"]))
    if d["started_at"]:
        pairs.append(("started", f"{local_time(d['started_at'])} ({_ago(d['uptime_s'])} ago)"))
    if d["reason"]:
        pairs.append(("reason", str(d["reason"])))
    for w in d.get("workers") or []:
        restarts = f", restarted {w['restarts']}x" if w.get("restarts") else ""
        alive = "" if w.get("alive") else ", not running"
        pairs.append((f"worker {w['slot']}", f"pid {w['pid']}{restarts}{alive}"))
    pairs += [("home", d["home"]), ("found by", d["found_by"])]
    render_pairs(out, pairs, title="bmo is up" if d["state"] == "ready" else f"bmo is up, {d['state']}")


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d"


def stop(
    home: Path = HomeOption,
    timeout: float = typer.Option(
        None, "--timeout", help="Seconds to wait for the drain (default: server.shutdown_grace_s + 5).",
        show_default=False,
    ),
) -> None:  # fmt: skip
    """Stop the server started on this home: SIGTERM, then wait while it drains. Exit 3 if none runs."""
    cfg = config_or_exit(home, write_default=False)
    target = find_server(cfg, None)
    if target.info is None:
        if target.stale is not None:
            remove_serve_file(cfg.home, int(target.stale["pid"]))
            fail(f"no bmo server runs on {cfg.home} (removed a serve.json left by pid {target.stale['pid']})", DOWN)
        if get(target.url, "/health").status:
            fail(
                f"a server answers at {target.url}, but {cfg.home / 'serve.json'} does not name it: it was not "
                "started on this home (stop it where it runs, e.g. systemctl stop bmo)",
                1,
            )
        fail(f"no bmo server runs on {cfg.home}", DOWN)
    pid = int(target.info["pid"])
    if pid == os.getpid() or not is_bmo(pid):
        fail(f"{cfg.home / 'serve.json'} names pid {pid}, which is not a bmo server; not stopping it", 1)
    grace = cfg.server.shutdown_grace_s + 5 if timeout is None else timeout
    t0 = time.monotonic()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        fail(f"no bmo server runs on {cfg.home} (pid {pid} has just exited)", DOWN)
    except PermissionError:
        fail(f"not allowed to signal pid {pid} (another user's server?)", 1)
    if not wait_gone(pid, grace):
        fail(f"bmo (pid {pid}) still runs {grace:g} s after SIGTERM; it may be draining long runs", 1)
    console().print(
        f"stopped bmo (pid {pid}, {target.url}) in {time.monotonic() - t0:.1f} s", highlight=False, soft_wrap=True
    )
    if pid_alive(pid):  # pragma: no cover - wait_gone said it is gone
        raise typer.Exit(1)
