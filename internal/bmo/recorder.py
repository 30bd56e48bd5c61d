"""Where every finished request goes (layer 4): the posture window, the metrics, the ledger queue
and the two structured log lines (`openai_compat.fired` when a request is accepted,
`openai_compat.action` when it is answered). All of it is in-memory work; the disk write happens
later in the ledger's own task, so recording never slows or fails a request.
"""

from __future__ import annotations

import logging
from typing import Protocol

from bmo.metrics import Metrics
from bmo.posture import Persistence, PostureWindow
from bmo.runs import RunRecord

access = logging.getLogger("bmo.access")


class RunSink(Protocol):
    def submit(self, record: RunRecord) -> None: ...


class Recorder:
    def __init__(self, sink: RunSink | None, persistence: Persistence, *, store_content: bool) -> None:
        self.sink = sink
        self.persistence = persistence
        self.window = PostureWindow()
        self.metrics = Metrics()
        self.store_content = store_content

    def fired(self, request_id: str, route: str, agent: str | None, client_ua: str | None) -> None:
        if access.isEnabledFor(logging.INFO):
            access.info(
                "openai_compat.fired",
                extra={"fields": {"request_id": request_id, "route": route, "agent": agent, "client_ua": client_ua}},
            )

    def finish(self, r: RunRecord) -> None:
        if not self.store_content:
            r.content = None  # prompts and answers stay out unless ledger.store_content
        self.window.add(r)
        self.metrics.observe(r)
        if self.sink is not None:
            self.sink.submit(r)
        if access.isEnabledFor(logging.INFO):
            access.info(
                "openai_compat.action",
                extra={
                    "fields": {
                        "request_id": r.request_id,
                        "route": r.route,
                        "agent": r.agent,
                        "status": r.status,
                        "outcome": r.outcome,
                        "error_code": r.error_code,
                        "duration_ms": round(r.duration_ms, 3),
                    }
                },
            )
