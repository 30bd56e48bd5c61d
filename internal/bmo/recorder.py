"""Where every finished request goes (layer 4): the posture window, the metrics, the ledger queue
and the two structured access-log lines (`openai_compat.fired` when a request is accepted,
`openai_compat.action` when it is answered). All of it is in-memory work; the disk write happens
later in the ledger's own task, so recording never slows or fails a request.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, BinaryIO, Protocol

import orjson

from bmo.metrics import Metrics
from bmo.posture import Persistence, PostureWindow
from bmo.redact import Redactor
from bmo.runs import RunRecord

FLUSH_S = 0.05  # access lines reach stderr within 50 ms...
FLUSH_LINES = 512  # ...or at once when this many are waiting


class RunSink(Protocol):
    def submit(self, record: RunRecord) -> None: ...


class AccessLog:
    """Structured access lines on stderr, in the server's log format (`text` or `json`).

    Built by hand and written in batches: through `logging` with a formatter, two lines cost
    about as much CPU as the rest of a small request (see scripts/bench/RESULTS.md).
    """

    def __init__(self, fmt: str = "text", out: BinaryIO | None = None) -> None:
        self.fmt = fmt
        # the stderr of the process that built the server, not whatever sys.stderr is later
        self.out: BinaryIO | None = out or getattr(sys.stderr, "buffer", None)
        self._buf: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._stamp = ""
        # With several workers on one stderr (`--workers N`), each write is at most this many
        # bytes and ends at a line's end, so that no line is cut into by another worker's
        # (a pipe keeps writes of up to PIPE_BUF bytes whole). 0: one write per batch.
        self.max_write = 0

    def emit(self, event: str, fields: dict[str, Any]) -> None:
        if self.fmt == "off":
            return
        now = time.time()
        if self.fmt == "json":
            line = orjson.dumps(
                {"ts": round(now, 3), "level": "info", "logger": "bmo.access", "msg": event, **fields}, default=str
            )
        else:
            second = int(now)
            if second != self._second:  # strftime once a second, not once a line
                self._second = second
                self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            parts = [f"{self._stamp},{int(now * 1000) % 1000:03d} INFO bmo.access: {event}"]
            for k, v in fields.items():  # a value is quoted when it is empty or has a space or a quote
                s = "-" if v is None else v if type(v) is str else str(v)
                if v is not None and (not s or " " in s or '"' in s):
                    s = orjson.dumps(s).decode()
                parts.append(f"{k}={s}")
            line = " ".join(parts).encode()
        self._buf.append(line + b"\n")
        if len(self._buf) >= FLUSH_LINES:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
            except RuntimeError:  # no loop (a CLI or test caller): write now
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        if self.out is None:
            return
        try:
            if self.max_write and len(data) > self.max_write:
                self._write_lines(data)
                return
            self.out.write(data)
            self.out.flush()
        except (OSError, ValueError):  # stderr closed or gone: logging must never fail a request
            pass

    def _write_lines(self, data: bytes) -> None:
        assert self.out is not None
        start = 0
        while start < len(data):
            end = data.rfind(b"\n", start, start + self.max_write) + 1 or start + self.max_write
            self.out.write(data[start:end])
            self.out.flush()  # one write(2) each (stderr's buffer would merge them again)
            start = end


class Recorder:
    def __init__(
        self,
        sink: RunSink | None,
        persistence: Persistence,
        *,
        store_content: bool,
        log: AccessLog | None = None,
        redact: Redactor | None = None,
    ) -> None:
        self.sink = sink
        self.persistence = persistence
        self.window = PostureWindow()
        self.metrics = Metrics()
        self.store_content = store_content
        self.log = log or AccessLog()
        # The one field of a run a client writes freely: its User-Agent. A key pasted into it
        # stays out of the access log, posture and the ledger (SPEC §5). The server sets the
        # redactor that knows the configured keys.
        self.redact = redact or Redactor()

    def fired(self, request_id: str, route: str, agent: str | None, client_ua: str | None) -> None:
        if client_ua and ("sk-" in client_ua or "earer" in client_ua):  # no call unless it looks like a key
            client_ua = self.redact(client_ua)
        self.log.emit(
            "openai_compat.fired", {"request_id": request_id, "route": route, "agent": agent, "client_ua": client_ua}
        )

    def finish(self, r: RunRecord) -> None:
        if not self.store_content:
            r.content = None  # prompts and answers stay out unless ledger.store_content
        ua = r.client_ua
        if ua and ("sk-" in ua or "earer" in ua):
            r.client_ua = self.redact(ua)
        self.window.add(r)
        self.metrics.observe(r)
        if self.sink is not None:
            self.sink.submit(r)
        self.log.emit(
            "openai_compat.action",
            {
                "request_id": r.request_id,
                "route": r.route,
                "agent": r.agent,
                "status": r.status,
                "outcome": r.outcome,
                "error_code": r.error_code,
                "duration_ms": round(r.duration_ms, 3),
            },
        )
