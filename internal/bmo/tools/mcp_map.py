"""MCP tools as the model sees them, and their results as the model reads them (layer 2; pure,
no I/O; used by bmo.tools.mcp and bmo.tools.registry). PROTOCOLS.md §D.3.

- Names: `server__tool`, cut to what every upstream accepts (`^[A-Za-z0-9_-]{1,64}$`: OpenAI and
  Anthropic reject anything else, and one bad name fails the whole LLM request, not one tool).
- Schemas: `inputSchema` with `type: object` and `properties` ensured and `$schema` dropped.
- Results: text items joined; `structuredContent` as JSON when there is no text; images kept for
  vision upstreams with a placeholder in the text; the text cut at MAX_TEXT.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from bmo.tools.base import ToolOutput

MAX_NAME = 64
# A tool answer the model reads: 100 KB is ~25k tokens, already a large share of a context
# window; more would crowd out the conversation (and cost) without helping the model.
MAX_TEXT = 100_000
# One image, base64: Anthropic refuses images over 5 MB, and every upstream prices them by size.
MAX_IMAGE = 5 * 1024 * 1024

_BAD = re.compile(r"[^A-Za-z0-9_-]")


def name_hash(server: str, tool: str) -> str:
    return hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:8]


def exposed_name(server: str, tool: str, hashed: bool = False) -> str:
    """The function name the model sees for `tool` of `server`. Too long for MAX_NAME, or
    `hashed` (its plain form collides with another tool's), it keeps a readable prefix and ends
    in `_` + 8 hex digits of sha256(server NUL tool), so it is stable and unique."""
    name = _BAD.sub("_", f"{server}__{tool}")
    if hashed or len(name) > MAX_NAME:
        name = name[: MAX_NAME - 9] + "_" + name_hash(server, tool)
    return name


def clean_schema(schema: Any) -> dict[str, Any]:
    """An `inputSchema` fit for a function tool: an object schema with `properties`, no `$schema`
    (some upstreams reject the keyword). Everything else is kept as the server wrote it."""
    out = dict(schema) if isinstance(schema, dict) else {}
    out.pop("$schema", None)
    out["type"] = "object"
    if not isinstance(out.get("properties"), dict):
        out["properties"] = {}
    return out


def describe(tool: dict[str, Any]) -> str:
    for key in ("description", "title"):
        v = tool.get(key)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return ""


def to_output(result: Any) -> ToolOutput:
    """A `tools/call` result as a ToolOutput. `isError: true` sets `is_error`: the model reads
    the failure and may correct itself; it is never an exception."""
    if not isinstance(result, dict):
        return ToolOutput("error: the MCP server answered tools/call with no result object", is_error=True)
    parts: list[str] = []
    texts = 0
    images: list[tuple[str, str]] = []
    content = result.get("content")
    for item in content if isinstance(content, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "text":
            parts.append(str(item.get("text", "")))
            texts += 1
        elif kind in ("image", "audio"):
            mime, data = str(item.get("mimeType") or "application/octet-stream"), item.get("data")
            size = _b64_size(data)
            if kind == "image" and isinstance(data, str) and len(data) <= MAX_IMAGE:
                images.append((mime, data))
                parts.append(f"[image: {mime}, {size} bytes]")
            else:
                note = " (too large to pass on)" if kind == "image" else ""
                parts.append(f"[{kind}: {mime}, {size} bytes{note}]")
        elif kind == "resource_link":
            uri, label = item.get("uri", ""), item.get("name") or item.get("title")
            parts.append(f"{uri} ({label})" if label else str(uri))
        elif kind == "resource":
            res: dict[str, Any] = item["resource"] if isinstance(item.get("resource"), dict) else {}
            if isinstance(res.get("text"), str):
                parts.append(res["text"])
            else:
                blob = res.get("blob")
                size = _b64_size(blob)
                parts.append(f"[resource: {res.get('uri', '')}, {res.get('mimeType') or 'binary'}, {size} bytes]")
        else:
            parts.append(f"[{kind} content]")
    structured = result.get("structuredContent")
    if not texts and structured is not None:
        parts.insert(0, json.dumps(structured, ensure_ascii=False))
    return ToolOutput(cap_text("\n".join(parts)), is_error=result.get("isError") is True, images=images)


def _b64_size(data: Any) -> int:
    """The decoded size of base64 `data`, for a placeholder (without decoding it)."""
    if not isinstance(data, str):
        return 0
    return len(data) * 3 // 4 - (len(data) - len(data.rstrip("=")))


def cap_text(text: str, limit: int = MAX_TEXT) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", "ignore")
    return f"{kept}\n[truncated: the tool returned {len(data)} bytes; only the first {limit} are shown]"
