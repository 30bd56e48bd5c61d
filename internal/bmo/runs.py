"""The run ledger's records (layer 0, stdlib only): one `RunRecord` per request on a compat
route, with its ordered `RunEvent`s, and the ledger's `Persistence`. The store writes them,
posture aggregates them, the HTTP API and the CLI render `to_json()` — the one public shape of a
run (SPEC §6).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = ("ok", "client_error", "upstream_error", "cancelled", "shutting_down", "timeout", "internal_error")
EVENT_NAMES = (
    "received",
    "resolved",
    "upstream_request",
    "first_token",
    "tool_call",
    "tool_result",
    "upstream_error",
    "client_disconnected",
    "finished",
)


@dataclass(slots=True)
class RunEvent:
    name: str
    t_ms: float  # offset from the run's start
    detail: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "t_ms": round(self.t_ms, 3), "detail": self.detail}


@dataclass(slots=True)
class RunRecord:
    request_id: str
    started_at: float  # unix seconds
    route: str
    method: str
    status: int = 0
    outcome: str = "ok"
    error_code: str | None = None
    model_requested: str | None = None
    agent: str | None = None
    upstream_route: str | None = None
    stream: bool = False
    ttfb_ms: float | None = None
    duration_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: int = 0
    session_id: str | None = None
    api_key_prefix: str | None = None
    client_ua: str | None = None
    client_ip: str | None = None
    client: str | None = None  # the client's short name (bmo.clients), beside the raw user-agent
    events: list[RunEvent] = field(default_factory=list)
    content: dict[str, Any] | None = None  # prompts and answers: only with ledger.store_content

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "started_at": iso_utc(self.started_at),
            "route": self.route,
            "method": self.method,
            "status": self.status,
            "outcome": self.outcome,
            "error_code": self.error_code,
            "model_requested": self.model_requested,
            "agent": self.agent,
            "upstream_route": self.upstream_route,
            "stream": self.stream,
            "ttfb_ms": None if self.ttfb_ms is None else round(self.ttfb_ms, 3),
            "duration_ms": round(self.duration_ms, 3),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tool_calls": self.tool_calls,
            "session_id": self.session_id,
            "api_key_prefix": self.api_key_prefix,
            "client_ua": self.client_ua,
            "client": self.client,
            "client_ip": self.client_ip,
        }


def iso_utc(ts: float | None) -> str | None:
    """A unix time as the one JSON time format: UTC ISO-8601 with `Z`, to the millisecond."""
    if ts is None:
        return None
    ms = int(round(ts * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def outcome_for(status: int, error_outcome: str | None, cancelled: bool) -> str:
    """The outcome of a finished request: cancellation first, then the error's own, then by status."""
    if cancelled:
        return "cancelled"
    if error_outcome:
        return error_outcome
    if status < 400:
        return "ok"
    if status == 504:
        return "timeout"
    if status == 502:
        return "upstream_error"
    return "client_error" if status < 500 else "internal_error"


@dataclass(slots=True)
class Persistence:
    """Whether the ledger reaches the disk: the writer (store) sets it, posture and /metrics
    show it."""

    state: str = "ok"  # ok | degraded (sticky until a write succeeds again)
    last_error: str | None = None
    dropped_rows: int = 0  # since the store last went degraded
    written_rows: int = 0
    queue_depth: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "last_error": self.last_error,
            "dropped_rows": self.dropped_rows,
            "written_rows": self.written_rows,
            "queue_depth": self.queue_depth,
        }
