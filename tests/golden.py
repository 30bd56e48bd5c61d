"""Golden files: every public JSON shape and stream is pinned under tests/golden/.

`assert_golden(name, value)` compares `value` (JSON-able, or text) with tests/golden/<name>.
Volatile fields are normalised first. Set BMO_UPDATE_GOLDEN=1 to (re)write the files; a changed
shape then shows up in the commit's diff, which is the point. Without it a missing file is a
failure, never a silent write: a test must not pass by creating its own expectation.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import orjson

GOLDEN = Path(__file__).parent / "golden"
_VOLATILE_KEYS = {
    "created": 0,
    "started_at": "<time>",
    "generated_at": "<time>",
    "uptime_s": "<seconds>",
    "duration_ms": "<ms>",
    "ttfb_ms": "<ms>",
    "t_ms": "<ms>",
    "p50_ms": "<ms>",
    "p95_ms": "<ms>",
    "bind": "<host:port>",
    "next_cursor": "<cursor>",
    "written_rows": "<count>",  # the ledger writer runs on its own clock
    "queue_depth": "<count>",
    "request_id": "<request_id>",
    "created_at": "<time>",
}
_PATTERNS = [
    (re.compile(r"chatcmpl-[A-Za-z0-9_-]+"), "chatcmpl-<id>"),
    (re.compile(r"req_[0-9a-f]{24}"), "req_<id>"),
    (re.compile(r'"cmpl-[0-9a-f]{24}"'), '"cmpl-<id>"'),
    (re.compile(r'"created":\d+'), '"created":0'),
]


def normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (_VOLATILE_KEYS[k] if k in _VOLATILE_KEYS and v is not None else normalise(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, str):
        for pat, rep in _PATTERNS:
            value = pat.sub(rep, value)
    return value


def assert_golden(name: str, value: Any) -> None:
    path = GOLDEN / name
    if isinstance(value, (bytes, str)):
        text = value.decode() if isinstance(value, bytes) else value
        for pat, rep in _PATTERNS:
            text = pat.sub(rep, text)
    else:
        text = orjson.dumps(normalise(value), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"
    if os.environ.get("BMO_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        raise AssertionError(f"golden file {path} is missing; run the tests with BMO_UPDATE_GOLDEN=1 and commit it")
    assert text == path.read_text(), f"{name} differs from its golden file (BMO_UPDATE_GOLDEN=1 to accept)"
