"""GET /openapi.json (SPEC §3): a valid OpenAPI 3.1 document of every route in the routes table,
served without a key, whose error schemas are the ones bmo answers with."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
from openapi_spec_validator import validate

from bmo.server.app import build_router
from fakes import BmoServer


def test_openapi_document_is_valid_and_lists_every_route(make_bmo: Any) -> None:
    s: BmoServer = make_bmo(config="auth: {mode: keys}\n", env_api_key="sk-bmo-openapi-test-key")
    r = httpx.get(s.url + "/openapi.json", timeout=10)  # no key needed
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    validate(doc)  # raises on anything that is not OpenAPI 3.1
    assert doc["openapi"] == "3.1.0"
    for method, (_handler, scope, route, _dialect) in build_router().declared():
        op = doc["paths"][route][method.lower()]
        assert op["x-bmo-scope"] == scope
        assert (op.get("security") == []) == (scope == "none")
    assert "post" in doc["paths"]["/v1/chat/completions"] and "/v1/openai-compat/runs/{id}/events" in doc["paths"]
    # The error schemas are what bmo really answers with.
    schemas = doc["components"]["schemas"]
    no_key = httpx.get(s.url + "/v1/models", timeout=10)
    assert no_key.status_code == 401
    jsonschema.validate(no_key.json(), schemas["Error"])
    anthropic = httpx.post(s.url + "/v1/messages", json={}, timeout=10)
    jsonschema.validate(anthropic.json(), schemas["AnthropicError"])
