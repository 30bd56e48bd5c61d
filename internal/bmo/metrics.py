"""Prometheus metrics (layer 1): counters fed by every finished run, rendered as text format 0.0.4.

No client library: a handful of dict increments per request is all this needs, and it keeps the
request path cheap. Label values come from bmo's own route names, statuses and outcomes, so the
number of series stays bounded.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from typing import Any

from bmo.runs import Persistence, RunRecord

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, int, str], int] = defaultdict(int)
        self.hist: dict[str, list[int]] = {}
        self.hist_sum: defaultdict[str, float] = defaultdict(float)
        self.upstream_errors: defaultdict[str, int] = defaultdict(int)
        self.tokens = {"prompt": 0, "completion": 0}

    def observe(self, r: RunRecord) -> None:
        self.requests[(r.route, r.status, r.outcome)] += 1
        b = self.hist.get(r.route)
        if b is None:
            b = self.hist[r.route] = [0] * (len(BUCKETS) + 1)
        secs = r.duration_ms / 1000
        b[bisect_left(BUCKETS, secs)] += 1
        self.hist_sum[r.route] += secs
        if r.outcome in ("upstream_error", "timeout"):
            self.upstream_errors[r.upstream_route or "none"] += 1
        self.tokens["prompt"] += r.prompt_tokens
        self.tokens["completion"] += r.completion_tokens

    def to_json(self) -> dict[str, Any]:
        """The counters, for the `workers` table (bmo.workers): what another worker sums, and
        what a worker restarted on the same slot continues from."""
        return {
            "requests": [[route, status, outcome, n] for (route, status, outcome), n in self.requests.items()],
            "hist": self.hist,
            "hist_sum": dict(self.hist_sum),
            "upstream_errors": dict(self.upstream_errors),
            "tokens": self.tokens,
        }

    def add(self, d: dict[str, Any]) -> None:
        """Add counters published by `to_json` (a worker's, or this slot's predecessor's)."""
        for route, status, outcome, n in d.get("requests", ()):
            self.requests[(str(route), int(status), str(outcome))] += int(n)
        for route, counts in d.get("hist", {}).items():
            b = self.hist.get(route)
            if b is None:
                b = self.hist[route] = [0] * (len(BUCKETS) + 1)
            for i, c in enumerate(counts[: len(b)]):
                b[i] += int(c)
        for route, v in d.get("hist_sum", {}).items():
            self.hist_sum[route] += float(v)
        for route, n in d.get("upstream_errors", {}).items():
            self.upstream_errors[route] += int(n)
        for kind, n in d.get("tokens", {}).items():
            if kind in self.tokens:
                self.tokens[kind] += int(n)

    def render(self, *, in_flight: int, persistence: Persistence) -> str:
        out: list[str] = [
            "# HELP bmo_requests_total Requests on compat routes, by route, HTTP status and outcome.",
            "# TYPE bmo_requests_total counter",
        ]
        for (route, status, outcome), n in sorted(self.requests.items()):
            out.append(f'bmo_requests_total{{route="{_esc(route)}",status="{status}",outcome="{outcome}"}} {n}')
        out += [
            "# HELP bmo_request_duration_seconds Time from request received to response finished.",
            "# TYPE bmo_request_duration_seconds histogram",
        ]
        for route, counts in sorted(self.hist.items()):
            acc = 0
            lbl = _esc(route)
            for le, c in zip(BUCKETS, counts, strict=False):
                acc += c
                out.append(f'bmo_request_duration_seconds_bucket{{route="{lbl}",le="{le}"}} {acc}')
            acc += counts[-1]
            out.append(f'bmo_request_duration_seconds_bucket{{route="{lbl}",le="+Inf"}} {acc}')
            out.append(f'bmo_request_duration_seconds_sum{{route="{lbl}"}} {self.hist_sum[route]:.6f}')
            out.append(f'bmo_request_duration_seconds_count{{route="{lbl}"}} {acc}')
        out += [
            "# HELP bmo_upstream_errors_total Runs that ended in an upstream error or timeout.",
            "# TYPE bmo_upstream_errors_total counter",
        ]
        for route, n in sorted(self.upstream_errors.items()):
            out.append(f'bmo_upstream_errors_total{{upstream_route="{_esc(route)}"}} {n}')
        out += [
            "# HELP bmo_tokens_total Tokens reported by upstreams, summed over runs.",
            "# TYPE bmo_tokens_total counter",
            f'bmo_tokens_total{{kind="prompt"}} {self.tokens["prompt"]}',
            f'bmo_tokens_total{{kind="completion"}} {self.tokens["completion"]}',
            "# HELP bmo_in_flight Requests being served now.",
            "# TYPE bmo_in_flight gauge",
            f"bmo_in_flight {in_flight}",
            "# HELP bmo_ledger_queue_depth Finished runs waiting to be written to the ledger.",
            "# TYPE bmo_ledger_queue_depth gauge",
            f"bmo_ledger_queue_depth {persistence.queue_depth}",
            "# HELP bmo_ledger_written_rows_total Runs written to the ledger.",
            "# TYPE bmo_ledger_written_rows_total counter",
            f"bmo_ledger_written_rows_total {persistence.written_rows}",
            "# HELP bmo_ledger_dropped_rows Runs the ledger could not write since it last went degraded.",
            "# TYPE bmo_ledger_dropped_rows gauge",
            f"bmo_ledger_dropped_rows {persistence.dropped_rows}",
            "# HELP bmo_ledger_degraded 1 while the ledger cannot write.",
            "# TYPE bmo_ledger_degraded gauge",
            f"bmo_ledger_degraded {int(persistence.state != 'ok')}",
        ]
        return "\n".join(out) + "\n"
