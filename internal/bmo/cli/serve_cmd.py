"""`bmo serve` and `bmo version`.

`bmo serve` writes BMO_HOME/serve.json (pid, url, version, started) the moment it answers and
removes it when it exits, so `bmo status`, `bmo stop` and `bmo posture` find it (bmo.cli.remote).
Its banner's "ready in N ms" counts from the start of the process to that moment: what a user
waits, not what the code after the imports took.

Start-up never ends in a traceback: whatever stops it before the server is ready (a bad config
or agent file, a provider kind this build lacks, a store that cannot be opened, a port in use)
ends `bmo serve` with one line on stderr naming the file, the key and the reason, and exit code
2. `BMO_DEBUG=1` re-raises instead, traceback and all.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import orjson
import typer

from bmo import __version__
from bmo.cli.common import HomeOption, build_runtime, config_or_exit, fail, print_json
from bmo.cli.remote import remove_serve_file, write_serve_file
from bmo.config import Config, as_dict
from bmo.errors import BmoError, ConfigError

if TYPE_CHECKING:
    from bmo.runtime import Runtime
    from bmo.store.keys import NewKey

START_FAILED = 2  # the exit code of every start-up failure, as for a bad config


class _JsonFormatter(logging.Formatter):
    """One JSON object a line (the access log, bmo.recorder.AccessLog, writes the same shape)."""

    def format(self, record: logging.LogRecord) -> str:
        d: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(d, default=str).decode()


def setup_logging(fmt: str, level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access logger stays off (bmo writes its own access lines: bmo.recorder)


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: /proc), None where that is not known."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError):
        return None
    # field 22 (starttime, in clock ticks since boot); the command name (field 2) may hold spaces
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def serve(
    host: str = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1).", show_default=False),
    port: int = typer.Option(
        None, "--port", help="Port to bind (default 9000; 0 picks a free one).", show_default=False
    ),
    concurrency: int = typer.Option(
        None, "--concurrency", help="Requests running at once (default 64).", show_default=False
    ),
    workers: str = typer.Option(
        None, "--workers", help="Processes serving the port (default 1; auto: one per CPU; Linux).",
        show_default=False,
    ),
    worker_slot: int = typer.Option(None, "--worker-slot", hidden=True),  # a worker of --workers N
    log_format: str = typer.Option(None, "--log-format", help="text or json", show_default=False),
    log_level: str = typer.Option(
        None, "--log-level", help="debug, info, warning or error (default info; above info: no access lines).",
        show_default=False,
    ),
    home: Path = HomeOption,
) -> None:  # fmt: skip
    """Start the server."""
    age = process_age_s()
    t0 = time.monotonic() - (age if age is not None else 0.0)
    flags = {
        "server.host": host,
        "server.port": port,
        "openai_compat.concurrency": concurrency,
        "server.log_format": log_format,
        "server.log_level": log_level,
        "server.workers": workers,
    }
    cfg = config_or_exit(home, flags)
    setup_logging(cfg.server.log_format, cfg.server.log_level)
    if worker_slot is not None:
        return _serve_worker(cfg, worker_slot)
    if cfg.server.workers > 1:
        passed = {"--concurrency": concurrency, "--log-format": log_format, "--log-level": log_level}
        return _supervise(cfg, t0, [a for k, v in passed.items() if v is not None for a in (k, str(v))])
    try:
        # Everything `bmo config validate` checks, before the store is touched: a bad agent
        # file or alias mints no key.
        runtime = build_runtime(cfg)
    except Exception as e:
        _start_failed(e, cfg)
    env_key = os.environ.get("BMO_API_KEY") or None
    # With auth.mode keys a key is always required, so binding a public address is safe; the
    # first start on a home with no usable key mints one, shown once in the banner below.
    first = _prepare_store(cfg, mint_first=cfg.auth.mode == "keys" and not env_key)
    shown = False
    try:
        try:
            from bmo.server.app import make_app

            app = make_app(runtime, env_api_key=env_key)
        except Exception as e:
            _start_failed(e, cfg)

        def ready(h: str, p: int) -> None:
            nonlocal shown
            shown = True
            _show_ready(cfg, runtime, env_key, first, h, p, t0)

        _serve_app(cfg, runtime, app, ready)
    finally:
        remove_serve_file(cfg.home, os.getpid())
        if first is not None and not shown:
            _forget(cfg, first)  # never shown to anyone: the next start mints a fresh one


def _show_ready(
    cfg: Config, runtime: Runtime, env_key: str | None, first: NewKey | None, h: str, p: int, t0: float,
    workers: list[dict[str, Any]] | None = None,
) -> None:  # fmt: skip
    """The server answers: serve.json, and the banner."""
    out = Banner()
    ready_ms = (time.monotonic() - t0) * 1000  # bound, and the loop is about to accept
    url = f"http://{'[' + h + ']' if ':' in h else h}:{p}"
    gc.enable()  # off since bmo.cli.main: start-up is over
    _announce(cfg, h, p, t0, workers)
    n = f", {len(workers)} workers" if workers else ""
    out.line(
        f"{out.bold(f'bmo {__version__}', 'green')} serving on {out.bold(url + '/v1')} (ready in {ready_ms:.0f} ms{n})"
    )
    out.line(f"  home     {cfg.home}")
    written = " (written now, with every default)" if cfg.config_written else ""
    out.line(f"  config   {cfg.config_file}{written}")
    if cfg.store.url:  # SQLite's bmo.db is in the home; a shared store is named (never its password)
        out.line(f"  store    {as_dict(cfg)['store']['url']}")
    out.line(
        f"  agents   {', '.join(runtime.agents.model_ids())}  (default: {cfg.default_agent} on "
        f"{runtime.agents.default.model})"
    )
    _print_auth(out, cfg.auth.mode, env_key, first, url)
    out.line("  Ctrl-C stops it (or `bmo stop`; `bmo status` checks on it).")
    out.flush()


def _announce(cfg: Config, host: str, port: int, t0: float, workers: list[dict[str, Any]] | None = None) -> None:
    """serve.json: how the CLI on this home finds this server (a wildcard bind is reached on
    loopback). A home that cannot take the file still serves; the CLI then needs --url."""
    connect = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    url = f"http://{'[' + connect + ']' if ':' in connect else connect}:{port}"
    started = time.time() - (time.monotonic() - t0)
    try:
        write_serve_file(cfg.home, pid=os.getpid(), url=url, version=__version__, started=started,
                         bind=f"{host}:{port}", workers=workers)  # fmt: skip
    except OSError as e:
        logging.getLogger("bmo.serve").warning("cannot write %s: %s", cfg.home / "serve.json", e)


def _serve_worker(cfg: Config, slot: int) -> None:
    """One worker of `bmo serve --workers N` (bmo.cli.supervisor started it): serve the port the
    supervisor holds, beside the other workers (SO_REUSEPORT). The supervisor has migrated the
    store and minted the first key; it prints the banner and writes serve.json. This process
    says `ready` on its stdout once it listens; its errors go to stderr as `bmo serve`'s do."""
    from bmo.workers import WorkerSlot

    try:
        runtime = build_runtime(cfg)
        runtime.worker = WorkerSlot(slot, cfg.server.workers)
        from bmo.server.app import make_app

        app = make_app(runtime, env_api_key=os.environ.get("BMO_API_KEY") or None)
    except Exception as e:
        _start_failed(e, cfg)

    def ready(_h: str, _p: int) -> None:
        gc.enable()
        sys.stdout.write(f"ready {os.getpid()}\n")
        sys.stdout.flush()

    _serve_app(cfg, runtime, app, ready, reuse_port=True)


def _serve_app(
    cfg: Config, runtime: Runtime, app: Any, on_ready: Callable[[str, int], None], *, reuse_port: bool = False
) -> None:
    """Serve `app` until it shuts down. A failure before it answered is a start-up failure (one
    line, exit 2); after, a BmoError is one line and exit 1."""
    shown = False

    def ready(h: str, p: int) -> None:
        nonlocal shown
        shown = True
        on_ready(h, p)

    try:
        from bmo.server.serve import run

        run(
            app,
            cfg.server.host,
            cfg.server.port,
            shutdown_grace_s=cfg.server.shutdown_grace_s,
            on_ready=ready,
            cleanup=runtime.abort,  # a no-op after a clean shutdown: the app's cleanup closed it
            reuse_port=reuse_port,
        )
    except Exception as e:
        if not shown:
            _start_failed(e, cfg)
        if isinstance(e, BmoError):
            fail(e.message, 1)
        raise


def _supervise(cfg: Config, t0: float, passed: list[str]) -> None:
    """`bmo serve --workers N`: what must happen once, then N workers (bmo.cli.supervisor)."""
    from bmo.cli.supervisor import (
        READY_S,
        StartFailed,
        Supervisor,
        reserve_port,
        reuse_port_supported,
        workers_json,
    )

    count = cfg.server.workers
    if not reuse_port_supported():
        fail(
            f"cannot start {count} workers (server.workers): bmo shares a port between processes with "
            "SO_REUSEPORT on Linux only; here, run one worker (server.workers: 1), or several bmo on "
            "several ports behind a load balancer",
            START_FAILED,
        )
    try:
        runtime = build_runtime(cfg)  # what `bmo config validate` checks, before anything starts
    except Exception as e:
        _start_failed(e, cfg)
    env_key = os.environ.get("BMO_API_KEY") or None
    first = _prepare_store(cfg, mint_first=cfg.auth.mode == "keys" and not env_key, workers=True)
    shown = False
    try:
        try:
            sock = reserve_port(cfg.server.host, cfg.server.port)
        except OSError as e:
            _start_failed(e, cfg)
        host, port = cfg.server.host, sock.getsockname()[1]
        args = ["serve", "--home", str(cfg.home), "--host", host, "--port", str(port), "--workers", str(count), *passed]

        def ready(workers: list[Any]) -> None:
            nonlocal shown
            shown = True
            _show_ready(cfg, runtime, env_key, first, host, port, t0, workers_json(workers))

        def changed(workers: list[Any]) -> None:
            _announce(cfg, host, port, t0, workers_json(workers))

        mcp_s = max((m.startup_timeout_s for m in cfg.mcp_servers.values()), default=0.0)
        sup = Supervisor(
            count, args, grace_s=cfg.server.shutdown_grace_s, on_ready=ready, on_change=changed,
            ready_s=READY_S + mcp_s,
        )  # fmt: skip
        try:
            code = asyncio.run(sup.run())
        except StartFailed as e:
            if shown:  # it served, then its workers kept dying
                fail(f"bmo stopped: {e}", 1)
            fail(f"cannot start: {e}", START_FAILED)
        finally:
            sock.close()
    finally:
        remove_serve_file(cfg.home, os.getpid())
        if first is not None and not shown:
            _forget(cfg, first)
    if code:
        raise typer.Exit(code)


def serve_alone(args: list[str]) -> None:
    """`bmo serve ARGS` with only this command built (bmo.cli.main): the same options, help and
    errors as through the whole CLI, without importing every other command group first."""
    one = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    one.command(name="serve")(serve)
    one(args=args, prog_name="bmo serve")


def _start_failed(e: BaseException, cfg: Config) -> NoReturn:
    """One line naming file, key and reason; exit code 2. BMO_DEBUG=1: the traceback instead."""
    if os.environ.get("BMO_DEBUG") == "1":
        raise e
    fail(start_error(e, cfg), START_FAILED)


def start_error(e: BaseException, cfg: Config) -> str:
    if isinstance(e, ConfigError):
        return f"bad configuration: {e}"
    if isinstance(e, BmoError):
        return f"cannot start: {e.message}"
    if isinstance(e, OSError):
        if e.filename is not None:
            return f"cannot start: {e.filename}: {e.strerror or e}"
        return f"cannot listen on {cfg.server.host}:{cfg.server.port}: {e.strerror or e}"
    return f"cannot start: {type(e).__name__}: {e} (BMO_DEBUG=1 shows where)"


class Banner:
    """The start-up banner on stdout: plain lines, the key words bold in a terminal. Not Rich:
    importing it is ~25 ms of every start, and a server's start is what a user waits for."""

    def __init__(self) -> None:
        self.out = sys.stdout
        isatty = getattr(self.out, "isatty", None)
        self.color = bool(isatty and isatty()) and not os.environ.get("NO_COLOR")

    def bold(self, text: str, color: str | None = None) -> str:
        if not self.color:
            return text
        return f"\x1b[1{';32' if color == 'green' else ''}m{text}\x1b[0m"

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def flush(self) -> None:
        self.out.flush()


def _print_auth(out: Banner, mode: str, env_key: str | None, first: NewKey | None, url: str) -> None:
    imports = "from openai import OpenAI"
    if mode == "none":
        out.line("  auth     none (auth.mode: none, loopback only)")
        key_expr = '"anything"'
    elif first is not None:
        scopes = ", ".join(first.record.scope_list())
        out.line(
            f"  auth     API key required. {out.bold('A first key was made for you')}: name {first.record.name}, "
            f"scopes {scopes}.\n"
            "           It is in the snippet below and is shown only this once (bmo keeps only its hash);\n"
            "           `bmo api-key create --name NAME` makes more, `bmo api-key list` shows them."
        )
        key_expr = f'"{first.secret}"'
    elif env_key:
        out.line("  auth     API key required: BMO_API_KEY, or a stored key (bmo api-key list)")
        imports = "import os\n    from openai import OpenAI"
        key_expr = 'os.environ["BMO_API_KEY"]'
    else:
        out.line(
            "  auth     API key required: a stored key (`bmo api-key list` shows them, "
            "`bmo api-key create --name NAME` makes one)"
        )
        key_expr = '"sk-bmo-…"'
    out.line("\n  Point any OpenAI client at it:")
    out.line(
        f'    {imports}\n    client = OpenAI(base_url="{url}/v1", api_key={key_expr})\n'
        f'    client.chat.completions.create(model="default", messages=[{{"role": "user", '
        f'"content": "hi"}}])'
    )


def _prepare_store(cfg: Config, *, mint_first: bool, workers: bool = False) -> NewKey | None:
    """Open (and migrate) the store before binding, so a broken store stops start-up with a
    clear message; with `mint_first`, mint the `first` key when no usable key exists (SPEC §7);
    with `workers`, empty the `workers` table (a previous server's rows: bmo.workers)."""
    from bmo.store.db import open_database
    from bmo.store.keys import KeyStore
    from bmo.store.workers import WorkerStore, server_id

    async def go() -> NewKey | None:
        try:
            async with open_database(cfg.store_target, pool_size=cfg.store.pool_size) as db:
                if workers:
                    await WorkerStore(db, server_id(cfg.home)).clear()
                return await KeyStore(db).ensure_first() if mint_first else None
        except BaseException:
            # When a connect fails, aiosqlite stops its worker thread without waiting for it; this
            # moment lets the thread answer this loop, not one already closed (which prints a
            # traceback from the thread). The real fix belongs in bmo.store.db.
            await asyncio.sleep(0.05)
            raise

    try:
        return asyncio.run(go())
    except Exception as e:
        _start_failed(e, cfg)


def _forget(cfg: Config, key: NewKey) -> None:
    from bmo.store.db import open_database
    from bmo.store.keys import KeyStore

    async def go() -> None:
        async with open_database(cfg.store_target, pool_size=1) as db:
            await KeyStore(db).delete(key.record.id)

    with contextlib.suppress(BmoError):
        asyncio.run(go())


def version(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the version."""
    from bmo.cli import version_info

    info = version_info()
    if as_json:
        print_json(info)
        return
    typer.echo(f"bmo {info['version']} (python {info['python']})")
