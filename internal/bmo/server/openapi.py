"""GET /openapi.json: an OpenAPI 3.1 document of bmo's HTTP surface (SPEC §3).

Generated from the routes table (`server/app.py` `build_router`): every route, its methods, its
auth scope and the envelope its errors come in are read from there, so a route added to the
table is documented without a word here. This module adds what the table does not know: a line
of summary, the request bodies of the inference routes (loose schemas: bmo never rejects a field
it does not know, SPEC §4) and the query parameters of the ledger's list. Users generate clients
from it and fuzz bmo with it (tests/test_fuzz.py validates error bodies against its schemas).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web

from bmo import __version__
from bmo.server.context import RUNTIME
from bmo.server.routes import Router

JSON = "application/json"
_PARAM = re.compile(r"\{(\w+)\}")

SUMMARIES: dict[str, str] = {
    "/health": "Liveness and store health: 200 when the store is writable, else 503.",
    "/v1/models": "The agents and teams served as models.",
    "/v1/models/{id}": "One model (ids may contain `/`).",
    "/v1/chat/completions": "OpenAI Chat Completions, whole or streamed (SSE).",
    "/v1/completions": "Legacy text completions, relayed to the agent's upstream.",
    "/v1/messages": "Anthropic Messages, whole or streamed (SSE).",
    "/v1/messages/count_tokens": "The input tokens of a Messages request.",
    "/v1/responses": "OpenAI Responses, whole or streamed (SSE).",
    "/v1/responses/{id}": "A stored Responses object.",
    "/v1/openai-compat/posture": "The live posture snapshot.",
    "/v1/openai-compat/runs": "Runs of the ledger, newest first.",
    "/v1/openai-compat/runs/{id}": "One run of the ledger.",
    "/v1/openai-compat/stats": "Per-minute buckets of the ledger: counts per outcome, p50/p95 ms.",
    "/metrics": "Prometheus metrics (text format).",
    "/openapi.json": "This document.",
    "/ui": "The web console (HTML, no key: the page asks for one with the `ledger` scope).",
    "/ui/{id}": "A file of the web console (its script or style sheet).",
    "/v1/openai-compat/tools": "Every server-side tool (built-ins and MCP servers'), the agents that may use it, "
    "and each MCP server's state.",
}
STREAMING = {"/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/responses"}
TEXT = {"/metrics": ("text/plain",), "/ui": ("text/html",), "/ui/{id}": ("text/javascript", "text/css")}
# A prefix route's sub-paths (its handler reads the rest of the path itself).
SUB_PATHS: dict[str, dict[str, str]] = {
    "/v1/openai-compat/runs/{id}": {"/events": "One run's events, in order."},
}
QUERY: dict[str, list[tuple[str, str]]] = {
    "/v1/openai-compat/tools": [("agent", "string")],
    "/v1/openai-compat/runs": [
        ("limit", "integer"),
        ("cursor", "string"),
        ("route", "string"),
        ("status", "integer"),
        ("agent", "string"),
        ("outcome", "string"),
        ("client", "string"),
        ("ua", "string"),
    ],
    "/v1/openai-compat/stats": [("minutes", "integer")],
}

_CONTENT: dict[str, Any] = {"oneOf": [{"type": "string"}, {"type": "array"}, {"type": "null"}]}
_SAMPLING: dict[str, Any] = {
    "model": {"type": "string"},
    "stream": {"type": "boolean"},
    "temperature": {"type": "number"},
    "top_p": {"type": "number"},
    "max_tokens": {"type": "integer"},
    "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "tools": {"type": "array", "items": {"type": "object"}},
    "tool_choice": {},
}
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "type": "object",
        "required": ["messages"],
        "properties": {
            **_SAMPLING,
            "messages": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["role"],
                    "properties": {
                        "role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
                        "content": _CONTENT,
                        "tool_calls": {"type": "array"},
                        "tool_call_id": {"type": "string"},
                        "name": {"type": "string"},
                    },
                },
            },
            "max_completion_tokens": {"type": "integer"},
            "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
            "seed": {"type": "integer"},
            "user": {"type": "string"},
        },
    },
    "/v1/completions": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            **_SAMPLING,
            "prompt": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "suffix": {"type": "string"},
        },
    },
    "/v1/messages": {
        "type": "object",
        "required": ["messages"],
        "properties": {
            **_SAMPLING,
            "messages": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {"role": {"enum": ["user", "assistant"]}, "content": _CONTENT},
                },
            },
            "system": _CONTENT,
            "thinking": {"type": "object"},
        },
    },
    "/v1/messages/count_tokens": {
        "type": "object",
        "required": ["messages"],
        "properties": {
            "model": {"type": "string"},
            "messages": {"type": "array", "items": {"type": "object"}},
            "system": _CONTENT,
            "tools": {"type": "array", "items": {"type": "object"}},
        },
    },
    "/v1/responses": {
        "type": "object",
        "properties": {
            **_SAMPLING,
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
            "instructions": {"type": "string"},
            "previous_response_id": {"type": "string"},
            "store": {"type": "boolean"},
            "max_output_tokens": {"type": "integer"},
        },
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "description": "The OpenAI error envelope (SPEC §5).",
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "AnthropicError": {
        "description": "The Anthropic error envelope (SPEC §4a).",
        "type": "object",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def build(router: Router) -> dict[str, Any]:
    """The document for `router`'s routes."""
    paths: dict[str, dict[str, Any]] = {}
    for method, (handler, scope, route, dialect) in router.declared():
        envelope = "AnthropicError" if dialect is not None and dialect.name == "anthropic" else "Error"
        for sub, summary in {"": SUMMARIES.get(route, ""), **SUB_PATHS.get(route, {})}.items():
            path = route + sub
            op: dict[str, Any] = {
                "operationId": _operation_id(method, path),
                "summary": summary or _first_line(handler.__doc__) or path,
                "responses": _responses(route if not sub else path, envelope),
                "x-bmo-scope": scope,
            }
            if scope == "none":
                op["security"] = []
            params = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in _PARAM.findall(path)
            ]
            params += [{"name": n, "in": "query", "schema": {"type": t}} for n, t in QUERY.get(path, [])]
            if params:
                op["parameters"] = params
            if method == "POST":
                op["requestBody"] = {
                    "required": True,
                    "content": {JSON: {"schema": BODIES.get(route, {"type": "object"})}},
                }
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bmo",
            "version": __version__,
            "description": "A headless agent hub that speaks the OpenAI and Anthropic wire formats.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A bmo key, `sk-bmo-…`."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
            "schemas": SCHEMAS,
        },
    }


def _responses(path: str, envelope: str) -> dict[str, Any]:
    text = TEXT.get(path)
    ok: dict[str, Any] = {t: {"schema": {"type": "string"}} for t in text} if text else {JSON: {"schema": {}}}
    if path in STREAMING:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
    schema = {"$ref": f"#/components/schemas/{envelope}"}
    error = {"description": "An error (SPEC §5)", "content": {JSON: {"schema": schema}}}
    return {"200": {"description": "OK", "content": ok}, "4XX": error, "5XX": error}


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path.replace("{id}", "by_id")).strip("_")
    return f"{method.lower()}_{words or 'root'}"


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


async def document(request: web.Request) -> web.StreamResponse:
    """GET /openapi.json (no auth)."""
    state = request.app[RUNTIME]
    if state.openapi is None:
        state.openapi = orjson.dumps(build(state.router))
    return web.Response(body=state.openapi, content_type=JSON)
