"""The posture snapshot (layer 1): one type that the HTTP route and the CLI both render.

`PostureWindow` keeps a light, bounded view of recent runs in memory (the server feeds it every
finished run); `build_posture` turns a window plus the live facts (config, persistence, in-flight)
into the public JSON shape. The CLI, with no server running, fills a window from the database
and calls the same function, so both always agree.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from bmo import __version__
from bmo.config import Config
from bmo.runs import Persistence, RunRecord, iso_utc

__all__ = ["Persistence", "PostureWindow", "build_posture"]

WINDOW_S = 3600  # posture speaks of the last hour...
WINDOW_MAX = 20_000  # ...or of this many runs, whichever is fewer: memory stays bounded
RECENT = 10
INFERENCE_ROUTES = ["/v1/chat/completions"]  # what this build serves; grows with each wire format
TOP_UAS = 5  # top user-agents (raw) and top clients (bmo.clients names): five of each

Row = tuple[float, str, str, float, str | None, str | None]  # started_at, route, outcome, ms, client_ua, client


class PostureWindow:
    __slots__ = ("_rows", "_recent")

    def __init__(self) -> None:
        self._rows: deque[Row] = deque(maxlen=WINDOW_MAX)
        self._recent: deque[RunRecord] = deque(maxlen=RECENT)

    def add(self, r: RunRecord) -> None:
        self._rows.append((r.started_at, r.route, r.outcome, r.duration_ms, r.client_ua, r.client))
        self._recent.append(r)

    def extend(self, records: Iterable[RunRecord]) -> None:
        for r in sorted(records, key=lambda r: r.started_at):
            self.add(r)

    def rows(self, now: float) -> list[Row]:
        cutoff = now - WINDOW_S
        return [row for row in self._rows if row[0] >= cutoff]

    def recent(self) -> list[RunRecord]:
        return list(reversed(self._recent))


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(q / 100 * len(sorted_values) + 0.5)) - 1))
    return round(sorted_values[k], 3)


def _groups(rows: list[Row], idx: int, name: str) -> list[dict[str, Any]]:
    by: dict[str, list[float]] = {}
    for row in rows:
        by.setdefault(str(row[idx]), []).append(row[3])
    out = []
    for key in sorted(by):
        d = sorted(by[key])
        out.append({name: key, "count": len(d), "p50_ms": percentile(d, 50), "p95_ms": percentile(d, 95)})
    return out


def config_view(cfg: Config, enabled_routes: list[str]) -> dict[str, Any]:
    c = cfg.openai_compat
    return {
        "bind": f"{cfg.server.host}:{cfg.server.port}",
        "auth_mode": cfg.auth.mode,
        "enabled": c.enabled,
        "enabled_routes": enabled_routes if c.enabled else [],
        "concurrency": c.concurrency,
        "queue_timeout_s": c.queue_timeout_s,
        "keepalive_s": c.keepalive_s,
        "expose_routes": c.expose_routes,
        "system_messages": c.system_messages,
        "cors_origins": list(c.cors_origins),
        "max_steps": c.max_steps,
        "default_agent": cfg.default_agent,
        "sessions": {
            "from_user": cfg.sessions.from_user,
            "from_openwebui_chat_id": cfg.sessions.from_openwebui_chat_id,
            "ttl_days": cfg.sessions.ttl_days,
        },
        "ledger": {"store_content": cfg.ledger.store_content, "retention_days": cfg.ledger.retention_days},
    }


def build_posture(
    *,
    cfg: Config,
    enabled_routes: list[str],
    window: PostureWindow,
    persistence: Persistence,
    in_flight: int,
    source: str,
    started_at: float | None = None,
    now: float | None = None,
    store_problem: str | None = None,
    mcp_servers: list[dict[str, Any]] | None = None,
    workers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`store_problem`: why the store is not usable (what makes GET /health answer 503), so
    that posture and /health always agree (SPEC §6)."""
    now = time.time() if now is None else now
    rows = window.rows(now)
    if store_problem is not None:
        state = "degraded"
    elif not cfg.openai_compat.enabled:
        state = "disabled"
    elif persistence.state != "ok":
        state = "degraded"
    else:
        state = "ready"
    uas = Counter(row[4] or "(none)" for row in rows)
    clients = Counter(row[5] or "(unknown)" for row in rows)
    out = {
        "object": "openai_compat.posture",
        "state": state,
        "source": source,
        "version": __version__,
        "generated_at": iso_utc(now),
        "started_at": iso_utc(started_at),
        "uptime_s": None if started_at is None else round(now - started_at, 1),
        "config": config_view(cfg, enabled_routes),
        "persistence": persistence.to_json(),
        "in_flight": in_flight,
        "window": {"seconds": WINDOW_S, "runs": len(rows)},
        "by_route": _groups(rows, 1, "route"),
        "by_outcome": _groups(rows, 2, "outcome"),
        "top_user_agents": [{"client_ua": ua, "count": n} for ua, n in uas.most_common(TOP_UAS)],
        "top_clients": [{"client": c, "count": n} for c, n in clients.most_common(TOP_UAS)],
        "mcp_servers": mcp_servers or [],  # each one's state, tools and last error (SPEC §6, §9)
        "recent_runs": [r.to_json() for r in window.recent()],
    }
    if workers is not None:  # `bmo serve --workers N`: each worker, its pid and restarts (SPEC §11)
        out["workers"] = workers
    return out
