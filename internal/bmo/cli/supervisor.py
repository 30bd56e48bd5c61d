"""`bmo serve --workers N` (SPEC §11): N worker processes on one port under this supervisor.

The supervisor serves nothing itself. Before any worker starts it has done, once, what must
happen once: migrate the store, mint the first key, empty the `workers` table (bmo.workers), and
bind the port with SO_REUSEPORT without listening on it. That socket keeps the port (`--port 0`
picks it here) for the workers, which each bind it again with SO_REUSEPORT and listen: the
kernel spreads new connections evenly over them (a socket that only binds gets none). Then:

- each worker is `bmo serve --worker-slot K` (a hidden option) and says `ready` on its stdout
  once it listens; when all are, the banner is printed and `serve.json` written, with the
  workers' pids (rewritten whenever one is replaced);
- a worker that dies is restarted on its slot after a back-off (`BACKOFF_S`, doubling; reset
  once a worker has lived `STEADY_S`) and logged; it continues its slot's counters, and posture
  counts the restarts. A worker that dies before it is ready at the first start stops the
  server with exit code 2 (as any start-up failure); one restarted that dies `GIVE_UP` times in
  a row before it is ready stops it with exit code 1;
- SIGTERM (or SIGINT) is forwarded to every worker, each drains as one server does (SPEC §11)
  and the supervisor waits for them all, up to the grace plus `EXIT_S`; a second signal is
  forwarded too (cut now). Exit 0 when every worker exited 0.

Workers get SIGTERM if the supervisor itself dies (Linux: PR_SET_PDEATHSIG), so none is left
serving without it. Linux only: elsewhere SO_REUSEPORT does not spread connections (macOS gives
them all to one socket), and `--workers` above 1 is refused at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("bmo.serve")

READY_S = 60.0  # a worker must listen within this, plus its MCP servers' startup_timeout_s
BACKOFF_S = (0.5, 30.0)  # the first restart's wait, and the longest
STEADY_S = 30.0  # a worker that lived this long resets the back-off
GIVE_UP = 5  # restarted workers dying before they are ready, in a row: the server stops
EXIT_S = 5.0  # beyond the grace: a worker still running then is killed


def reuse_port_supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) host:port with SO_REUSEPORT: the port is this server's, and free for
    its workers to bind too. OSError as a bind would raise it."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


def worker_command(args: list[str]) -> list[str]:
    """How to start `bmo ARGS` again: the frozen binary itself, or this Python with `-m bmo`."""
    if getattr(sys, "frozen", False):
        return [sys.executable, *args]
    return [sys.executable, "-m", "bmo", *args]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM this worker when the supervisor dies, however it dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass(slots=True)
class Worker:
    slot: int
    proc: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = 0.0
    restarts: int = 0  # how many times this slot was restarted
    failing: int = 0  # deaths before ready, in a row
    backoff: float = BACKOFF_S[0]
    watcher: asyncio.Future[None] | None = None  # reads its stdout

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class StartFailed(Exception):
    """A worker could not start (its own stderr said why); exit code 2."""


class Supervisor:
    def __init__(
        self,
        count: int,
        args: list[str],
        *,
        grace_s: float,
        on_ready: Callable[[list[Worker]], None],
        on_change: Callable[[list[Worker]], None],
        ready_s: float = READY_S,
    ) -> None:
        self.workers = [Worker(k) for k in range(count)]
        self.ready_s = ready_s
        self.args = args  # `serve …` with every option but the slot
        self.grace_s = grace_s
        self.on_ready = on_ready
        self.on_change = on_change
        self.stopping = False
        self.stop = asyncio.Event()
        self.failed: str | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signal)
        tasks = [asyncio.create_task(self._keep(w), name=f"bmo-worker-{w.slot}") for w in self.workers]
        try:
            first = asyncio.gather(*(w.ready.wait() for w in self.workers))
            stopped = asyncio.ensure_future(self.stop.wait())
            waits: list[asyncio.Future[Any]] = [first, stopped]
            await asyncio.wait(waits, timeout=self.ready_s, return_when=asyncio.FIRST_COMPLETED)
            first.cancel()
            stopped.cancel()
            if not self.stop.is_set():
                if not all(w.ready.is_set() for w in self.workers):
                    self.failed = f"the workers did not all start within {self.ready_s:g}s"
                else:
                    self.on_ready(self.workers)
            if self.failed is None:
                await self.stop.wait()
        finally:
            await self._stop_all()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        if self.failed is not None:
            raise StartFailed(self.failed)
        codes = [w.proc.returncode for w in self.workers if w.proc is not None]
        return 0 if all(c == 0 for c in codes) else 1

    def _signal(self) -> None:
        if self.stopping:  # a second signal: the workers cut what still runs, now
            self._forward(signal.SIGTERM)
            return
        self.stopping = True
        self.stop.set()

    def _forward(self, sig: int) -> None:
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(sig)

    async def _stop_all(self) -> None:
        """SIGTERM every worker; wait for their drains (the grace plus a margin), then kill."""
        self.stopping = True
        self._forward(signal.SIGTERM)
        procs = [w.proc for w in self.workers if w.proc is not None and w.proc.returncode is None]
        if not procs:
            return
        _, pending = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs], timeout=self.grace_s + EXIT_S)
        if pending:
            log.error("%d worker(s) still running %gs after SIGTERM: killing them", len(pending), self.grace_s + EXIT_S)
            self._forward(signal.SIGKILL)
            await asyncio.wait(pending, timeout=5)

    async def _keep(self, w: Worker) -> None:
        """Run slot `w.slot` until the server stops: start it, and restart it when it dies."""
        while not self.stopping:
            await self._start(w)
            assert w.proc is not None
            code = await w.proc.wait()
            if self.stopping:
                return
            lived = time.monotonic() - w.started
            w.failing = 0 if w.ready.is_set() else w.failing + 1
            if w.restarts == 0 and not w.ready.is_set():
                self.failed = f"worker {w.slot} exited with code {code} before it was ready (see above)"
                self.stop.set()
                return
            if w.failing >= GIVE_UP:
                self.failed = f"worker {w.slot} died {w.failing} times in a row before it was ready (see above)"
                log.error("%s: stopping the server", self.failed)
                self.stop.set()
                return
            if lived >= STEADY_S:
                w.backoff = BACKOFF_S[0]
            log.warning(
                "worker %d (pid %s) exited with code %s after %.1fs; restarting it in %gs",
                w.slot, w.pid, code, lived, w.backoff,
            )  # fmt: skip
            try:
                await asyncio.wait_for(self.stop.wait(), w.backoff)
                return  # stopped meanwhile
            except TimeoutError:
                pass
            w.backoff = min(w.backoff * 2, BACKOFF_S[1])
            w.restarts += 1

    async def _start(self, w: Worker) -> None:
        w.ready = asyncio.Event() if w.restarts else w.ready
        w.started = time.monotonic()
        w.proc = await asyncio.create_subprocess_exec(
            *worker_command([*self.args, "--worker-slot", str(w.slot)]),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent,
            # A group of its own: Ctrl-C in a terminal reaches the supervisor only, which forwards
            # one SIGTERM (the worker's own SIGINT besides would be a second signal: cut at once).
            process_group=0,
        )
        w.watcher = asyncio.ensure_future(self._watch(w, w.proc))  # held: a task nobody holds may vanish
        if self.stopping:  # stopped while it was being started: it drains with the others
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)

    async def _watch(self, w: Worker, proc: asyncio.subprocess.Process) -> None:
        """The worker's stdout: `ready` once it listens (then nothing; read to its end)."""
        assert proc.stdout is not None
        async for line in proc.stdout:
            if line.startswith(b"ready") and w.proc is proc:
                w.ready.set()
                if w.restarts:
                    log.warning("worker %d is back (pid %d)", w.slot, proc.pid)
                    self.on_change(self.workers)


def workers_json(workers: list[Worker]) -> list[dict[str, Any]]:
    return [{"slot": w.slot, "pid": w.pid, "restarts": w.restarts} for w in workers]
