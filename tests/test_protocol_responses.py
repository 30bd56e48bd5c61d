"""Pure tests of the OpenAI Responses dialect (protocol/responses.py): no server.

Request body → internal model; internal answer and events → the `response` object and raw SSE
bytes. Streams are checked three ways: byte-level invariants (PROTOCOLS §0, B.3), golden files,
and the real openai SDK (its `responses.stream()` accumulator, strict pydantic validation of
every event and object, and its whole client over an in-memory transport).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx2
import openai
import orjson
import pydantic
import pytest
from openai._models import construct_type
from openai._types import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent

from bmo.chat import (
    END,
    FILTERED,
    LENGTH,
    TOOL_CALLS,
    Completion,
    Event,
    Finish,
    Message,
    ReasoningDelta,
    RedactedThinking,
    ServerToolCall,
    TextDelta,
    Thinking,
    ThinkingSignature,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    UpstreamCall,
    Usage,
    message_to_json,
    same_turn,
)
from bmo.errors import BmoError, InternalError, InvalidRequest, RateLimited, UpstreamError
from bmo.protocol.dialect import Dialect, Reply, StreamRenderer
from bmo.protocol.responses import (
    RESPONSES,
    ResponseStream,
    ResponsesWire,
    custom_input,
    input_items_page,
    parse_responses_request,
    render_error,
    to_input_items,
    to_response,
    usage_obj,
)
from golden import assert_golden

HEX = "0123456789abcdef"


def reply(wire: ResponsesWire | None = None, prompt_tokens: int = 42) -> Reply:
    return Reply(id=f"resp_{HEX}", created=0, model="bmo-coder", prompt_tokens=prompt_tokens, wire=wire)


def parse(body: dict[str, Any]) -> Any:
    return parse_responses_request(body, {})


def parsed(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [message_to_json(m) for m in parse(body).messages]


def msg(role: str, content: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content, **extra}


def fcall(cid: str, name: str, args: str = "{}", **extra: Any) -> dict[str, Any]:
    return {"type": "function_call", "call_id": cid, "name": name, "arguments": args, **extra}


def fout(cid: str, output: Any) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": cid, "output": output}


def itext(t: str) -> dict[str, Any]:
    return {"type": "input_text", "text": t}


def text_part(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


# ---- parsing: input -------------------------------------------------------------------------

IMG = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}

INPUT_CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
    ("a string is one user message", {"input": "hi"}, [{"role": "user", "content": "hi"}]),
    (
        "instructions lead as a system message",
        {"input": "hi", "instructions": "Be brief."},
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    ),
    (
        "easy messages: roles kept, developer stays developer, type optional",
        {
            "input": [
                {"role": "developer", "content": "dev rules"},
                {"role": "system", "content": [itext("sys")]},
                msg("user", [itext("look"), {"type": "input_image", "image_url": IMG["image_url"]["url"]}]),
                {"role": "assistant", "content": [{"type": "output_text", "text": "ok", "annotations": []}]},
            ]
        },
        [
            {"role": "developer", "content": "dev rules"},
            {"role": "system", "content": [text_part("sys")]},
            {"role": "user", "content": [text_part("look"), IMG]},
            {"role": "assistant", "content": [text_part("ok")]},
        ],
    ),
    (
        "image_url as {url} keeps detail; refusal is text; input_file is dropped",
        {
            "input": [
                msg(
                    "user",
                    [
                        {"type": "input_image", "image_url": {"url": "https://x/cat.png"}, "detail": "low"},
                        {"type": "input_file", "file_id": "file_1"},
                    ],
                ),
                msg("assistant", [{"type": "refusal", "refusal": "No."}]),
            ]
        },
        [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}}],
            },
            {"role": "assistant", "content": [text_part("No.")]},
        ],
    ),
    (
        "consecutive calls merge into the assistant message before them; outputs are tool messages",
        {
            "input": [
                msg("user", "weather and time?"),
                msg("assistant", [{"type": "output_text", "text": "Checking."}]),
                fcall("call_1", "get_weather", '{"city":"Paris"}', id="fc_1"),
                fcall("call_2", "get_time", '{"tz":"CET"}'),
                fout("call_1", "18C"),
                fout("call_2", [itext("12:00"), itext("CET")]),
                msg("user", "thanks"),
            ]
        },
        [
            {"role": "user", "content": "weather and time?"},
            {
                "role": "assistant",
                "content": [text_part("Checking.")],
                "tool_calls": [
                    {"id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
                    {"id": "call_2", "name": "get_time", "arguments": '{"tz":"CET"}'},
                ],
            },
            {"role": "tool", "content": "18C", "tool_call_id": "call_1"},
            {"role": "tool", "content": "12:00\nCET", "tool_call_id": "call_2"},
            {"role": "user", "content": "thanks"},
        ],
    ),
    (
        "calls with no assistant message before them open one; reasoning items vanish",
        {
            "input": [
                msg("user", "go"),
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
                fcall("c1", "f"),
                {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "hm"}]},
                fcall("c2", "g", {"a": 1}),  # an object, not a string: serialised
                {"type": "function_call", "call_id": "c3", "name": "h"},  # no arguments: {}
            ]
        },
        [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "name": "f", "arguments": "{}"},
                    {"id": "c2", "name": "g", "arguments": '{"a":1}'},
                    {"id": "c3", "name": "h", "arguments": "{}"},
                ],
            },
        ],
    ),
    (
        "custom tool calls carry their input as {input}; their outputs are tool messages",
        {
            "input": [
                {"type": "custom_tool_call", "call_id": "ct1", "name": "apply_patch", "input": "*** Begin Patch\n"},
                {"type": "custom_tool_call_output", "call_id": "ct1", "output": "Done!"},
            ]
        },
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "ct1", "name": "apply_patch", "arguments": '{"input":"*** Begin Patch\\n"}'}],
            },
            {"role": "tool", "content": "Done!", "tool_call_id": "ct1"},
        ],
    ),
    (
        "images in tool outputs follow the run of tool results as one user message",
        {
            "input": [
                fcall("c1", "shot"),
                fcall("c2", "shot"),
                fout("c1", [itext("one"), {"type": "input_image", "image_url": IMG["image_url"]["url"]}]),
                fout("c2", [{"type": "input_image", "image_url": {"url": IMG["image_url"]["url"]}}]),
                msg("user", "and?"),
            ]
        },
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "name": "shot", "arguments": "{}"},
                    {"id": "c2", "name": "shot", "arguments": "{}"},
                ],
            },
            {"role": "tool", "content": "one", "tool_call_id": "c1"},
            {"role": "tool", "content": "", "tool_call_id": "c2"},
            {"role": "user", "content": [IMG, IMG]},
            {"role": "user", "content": "and?"},
        ],
    ),
    (
        "item references, hosted calls and unknown items are dropped, never a 400",
        {
            "input": [
                {"type": "item_reference", "id": "msg_old"},
                {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}},
                msg("user", "hi", id="msg_9", status="completed"),
            ]
        },
        [{"role": "user", "content": "hi"}],
    ),
    ("input [] with a previous response is an empty continuation", {"input": [], "previous_response_id": "resp_1"}, []),
    ("input missing with a previous response too", {"previous_response_id": "resp_1"}, []),
]


@pytest.mark.parametrize(("case", "b", "want"), INPUT_CASES, ids=[c[0] for c in INPUT_CASES])
def test_parse_input(case: str, b: dict[str, Any], want: list[dict[str, Any]]) -> None:
    assert parsed(b) == want


def test_dropped_things_are_named_once() -> None:
    req = parse(
        {
            "input": [
                {"type": "item_reference", "id": "a"},
                {"type": "item_reference", "id": "b"},
                msg("user", [{"type": "input_file", "file_data": "x"}, {"type": "input_image", "file_id": "f"}]),
                {"type": "local_shell_call", "call_id": "s", "action": {}},
            ],
            "tools": [{"type": "web_search"}, {"type": "web_search"}, {"type": "file_search", "vector_store_ids": []}],
            "tool_choice": {"type": "web_search_preview"},
            "text": {"format": {"type": "grammar"}},
        }
    )
    assert req.warnings == [
        "dropped_tool:web_search",
        "dropped_tool:file_search",
        "dropped_item:item_reference",
        "dropped_part:input_file",
        "dropped_part:input_image",
        "dropped_item:local_shell_call",
        "dropped_format:grammar",
        "dropped_tool_choice:web_search_preview",
    ]
    assert req.messages == [Message(role="user", content="")] and req.tools == [] and req.tool_choice is None


# ---- parsing: tools, settings, the wire object ------------------------------------------------

APPLY_PATCH_GRAMMAR = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n'

CODEX_BODY: dict[str, Any] = {
    "model": "gpt-5-codex",
    "instructions": "You are Codex, based on GPT-5. You are running as a coding agent in the Codex CLI.",
    "input": [
        msg(
            "developer",
            [itext("<permissions instructions>\nFilesystem sandboxing defines which files can be read.\n" * 4)],
        ),
        msg("user", [itext("<environment_context>\n  <cwd>/work</cwd>\n</environment_context>")]),
        msg("user", [itext("Fix the failing test.")]),
        {"type": "reasoning", "id": "rs_a", "summary": [], "content": None, "encrypted_content": "gAAAAB"},
        fcall("call_sh", "shell_command", '{"command":"pytest -q","workdir":"/work"}'),
        fout("call_sh", "1 failed"),
        {
            "type": "function_call",
            "call_id": "call_mcp",
            "name": "search",
            "namespace": "mcp__docs__",
            "arguments": "{}",
        },
        fout("call_mcp", "found"),
        {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": "*** Begin Patch\n"},
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Success."},
        msg("assistant", [{"type": "output_text", "text": "Fixed."}], id="msg_x", phase="final_answer"),
        msg("user", [itext("Thanks, run it again.")]),
    ],
    "tools": [
        {
            "type": "function",
            "name": "shell_command",
            "description": "Runs a shell command and returns its output.",
            "strict": False,
            "parameters": {
                "type": "object",
                "properties": {"command": {"type": "string"}, "workdir": {"type": "string"}},
                "required": ["command"],
                "additionalProperties": False,
            },
        },
        {
            "type": "function",
            "name": "update_plan",
            "description": "Updates the plan.",
            "strict": False,
            "parameters": {},
        },
        {
            "type": "namespace",
            "name": "mcp__docs__",
            "description": "Tools of the docs MCP server.",
            "tools": [
                {"type": "function", "name": "search", "description": "Search the docs.", "parameters": None},
                {"type": "function", "name": "fetch", "defer_loading": True},
            ],
        },
        {"type": "web_search", "external_web_access": False, "search_content_types": ["text"]},
        {
            "type": "custom",
            "name": "apply_patch",
            "description": "Use the `apply_patch` tool to edit files.",
            "format": {"type": "grammar", "syntax": "lark", "definition": APPLY_PATCH_GRAMMAR},
        },
        {"type": "tool_search", "execution": "client"},
    ],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "store": False,
    "stream": True,
    "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "019a-thread",
    "client_metadata": {"x-codex-turn": "3"},
    "service_tier": "auto",
    "text": {"verbosity": "low"},
    "some_future_field": {"x": 1},
}


def internal(req: Any) -> dict[str, Any]:
    d = dataclasses.asdict(req)
    d["wire"]["custom_tools"] = sorted(d["wire"]["custom_tools"])
    return d


def test_codex_request_is_accepted() -> None:
    req = parse(CODEX_BODY)
    assert req.model == "gpt-5-codex" and req.stream and req.store is False and req.continues is None
    assert [m.role for m in req.messages] == [
        "system", "developer", "user", "user", "assistant", "tool", "assistant", "tool", "assistant", "tool",
        "assistant", "user",
    ]  # fmt: skip
    assert req.messages[0].content == CODEX_BODY["instructions"]
    assert [t.name for t in req.tools] == [
        "shell_command",
        "update_plan",
        "mcp__docs__search",
        "mcp__docs__fetch",
        "apply_patch",
    ]
    assert req.tools[0].strict is False and req.tools[1].schema == {}
    assert (
        req.tools[2].schema == {"type": "object", "properties": {}} and req.tools[2].description == "Search the docs."
    )
    patch = req.tools[4]
    assert (
        patch.schema["required"] == ["input"]
        and APPLY_PATCH_GRAMMAR in patch.schema["properties"]["input"]["description"]
    )
    # history speaks the flattened name the upstream was given
    assert req.messages[6].tool_calls == [ToolCall("call_mcp", "mcp__docs__search", "{}")]
    assert req.messages[8].tool_calls == [ToolCall("call_p", "apply_patch", '{"input":"*** Begin Patch\\n"}')]
    assert req.params == {"parallel_tool_calls": False, "reasoning_effort": "medium"}
    assert req.tool_choice == ToolChoice("auto", parallel=False)
    assert req.warnings == ["dropped_tool:web_search", "dropped_tool:tool_search"]
    wire = req.wire
    assert isinstance(wire, ResponsesWire) and wire.instructions == CODEX_BODY["instructions"]
    assert wire.custom_tools == frozenset({"apply_patch"})
    assert wire.namespaced == {
        "mcp__docs__search": ("mcp__docs__", "search"),
        "mcp__docs__fetch": ("mcp__docs__", "fetch"),
    }
    assert wire.echo["tools"] is CODEX_BODY["tools"] and wire.echo["store"] is False
    assert wire.echo["text"] == {"verbosity": "low"} and wire.echo["metadata"] == {}
    assert_golden("responses_request_codex.internal.json", internal(req))


def test_defaults() -> None:
    req = parse({"input": "hi"})
    assert req.model == "default" and not req.stream and req.store is True and req.continues is None
    assert req.params == {} and req.tools == [] and req.tool_choice is None and req.warnings == []
    assert req.user is None and req.metadata is None
    assert req.wire == ResponsesWire()  # nothing sent: OpenAI's defaults are echoed


def test_settings_use_neutral_names_and_are_echoed() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    req = parse(
        {
            "input": "hi",
            "model": "m",
            "temperature": 0.2,
            "top_p": 1,
            "max_output_tokens": 500,
            "parallel_tool_calls": True,
            "reasoning": {"effort": "high"},
            "text": {"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
            "previous_response_id": "resp_prev",
            "store": True,
            "metadata": {"task": "t1"},
            "user": "u-1",
            "truncation": "auto",
            "background": False,
            "conversation": None,
            "stream_options": {"include_obfuscation": False},
        }
    )
    assert req.params == {
        "temperature": 0.2,
        "top_p": 1,
        "max_tokens": 500,
        "parallel_tool_calls": True,
        "reasoning_effort": "high",
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}},
    }
    assert req.continues == "resp_prev" and req.store and req.user == "u-1" and req.metadata == {"task": "t1"}
    echo = req.wire.echo
    assert (echo["temperature"], echo["top_p"], echo["max_output_tokens"]) == (0.2, 1, 500)
    assert echo["previous_response_id"] == "resp_prev" and echo["metadata"] == {"task": "t1"}
    assert echo["reasoning"] == {"effort": "high"} and echo["text"]["format"]["name"] == "answer"
    assert parse({"input": "x", "text": {"format": {"type": "json_object"}}}).params == {
        "response_format": {"type": "json_object"}
    }
    assert parse({"input": "x", "text": {"format": {"type": "text"}}, "store": None}).params == {}
    assert parse({"input": "x", "store": None}).store is True  # only an explicit false opts out


@pytest.mark.parametrize(
    ("choice", "parallel", "want"),
    [
        ("auto", None, ToolChoice("auto")),
        ("none", None, ToolChoice("none")),
        ("required", False, ToolChoice("required", parallel=False)),
        ({"type": "function", "name": "get_weather"}, None, ToolChoice("tool", "get_weather")),
        ({"type": "custom", "name": "apply_patch"}, None, ToolChoice("tool", "apply_patch")),
        (
            {"type": "function", "name": "search", "namespace": "mcp__docs__"},
            None,
            ToolChoice("tool", "mcp__docs__search"),
        ),
        ({"type": "allowed_tools", "mode": "required", "tools": []}, None, ToolChoice("required")),
        (None, True, ToolChoice("auto", parallel=True)),
        (None, None, None),
    ],
)
def test_tool_choice(choice: Any, parallel: bool | None, want: ToolChoice | None) -> None:
    req = parse({"input": "hi", "tool_choice": choice, "parallel_tool_calls": parallel})
    assert req.tool_choice == want


def test_namespaced_names_are_valid_unique_and_short() -> None:
    long_ns = "mcp__" + "a-very-long-server-name." * 4
    req = parse(
        {
            "input": "hi",
            "tools": [
                {"type": "namespace", "name": "docs", "tools": [{"type": "function", "name": "search"}]},
                {"type": "function", "name": "docs__search"},  # the client's own name wins
                {"type": "namespace", "name": long_ns, "tools": [{"type": "function", "name": "x.y"}]},
                {"type": "namespace", "name": "n", "tools": [{"type": "custom", "name": "c"}]},
            ],
        }
    )
    names = [t.name for t in req.tools]
    assert names[:2] == ["docs__search_2", "docs__search"]
    assert len(names[2]) == 64 and all(c.isalnum() or c in "_-" for c in names[2])
    assert req.wire.namespaced[names[0]] == ("docs", "search") and req.wire.namespaced[names[2]] == (long_ns, "x.y")
    assert req.warnings == ["dropped_tool:custom"]


# ---- parsing: what is a 400 -------------------------------------------------------------------

BAD_REQUESTS: list[tuple[dict[str, Any], str, str]] = [
    ({}, "input", "missing_messages"),
    ({"input": None, "model": "m"}, "input", "missing_messages"),
    ({"input": []}, "input", "missing_messages"),
    ({"input": ""}, "input", "missing_messages"),
    ({"input": 5}, "input", "invalid_value"),
    ({"input": ["hi"]}, "input[0]", "invalid_value"),
    ({"input": [{"content": "x"}]}, "input[0].type", "invalid_value"),
    ({"input": [{"type": 3}]}, "input[0].type", "invalid_value"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", "invalid_value"),
    ({"input": [msg("user", 5)]}, "input[0].content", "invalid_value"),
    ({"input": [msg("user", None)]}, "input[0].content", "invalid_value"),
    ({"input": [msg("user", ["x"])]}, "input[0].content[0]", "invalid_value"),
    ({"input": [msg("user", [{"text": "x"}])]}, "input[0].content[0].type", "invalid_value"),
    ({"input": [msg("user", [{"type": "input_text"}])]}, "input[0].content[0].text", "invalid_value"),
    ({"input": [msg("user", [{"type": "input_image"}])]}, "input[0].content[0].image_url", "invalid_value"),
    ({"input": [msg("assistant", [{"type": "refusal"}])]}, "input[0].content[0].refusal", "invalid_value"),
    ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id", "invalid_value"),
    ({"input": [{"type": "function_call", "call_id": "c"}]}, "input[0].name", "invalid_value"),
    ({"input": [{"type": "custom_tool_call", "call_id": "c", "name": "p"}]}, "input[0].input", "invalid_value"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id", "invalid_value"),
    ({"input": [fout("c", 5)]}, "input[0].output", "invalid_value"),
    ({"input": [fout("c", [5])]}, "input[0].output[0]", "invalid_value"),
    ({"input": "x", "instructions": 5}, "instructions", "invalid_value"),
    ({"input": "x", "previous_response_id": 5}, "previous_response_id", "invalid_value"),
    ({"input": "x", "model": 5}, "model", "invalid_value"),
    ({"input": "x", "stream": "yes"}, "stream", "invalid_value"),
    ({"input": "x", "temperature": 3}, "temperature", "invalid_value"),
    ({"input": "x", "temperature": True}, "temperature", "invalid_value"),
    ({"input": "x", "top_p": -0.1}, "top_p", "invalid_value"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens", "invalid_value"),
    ({"input": "x", "max_output_tokens": 1.5}, "max_output_tokens", "invalid_value"),
    ({"input": "x", "parallel_tool_calls": "no"}, "parallel_tool_calls", "invalid_value"),
    ({"input": "x", "reasoning": "high"}, "reasoning", "invalid_value"),
    ({"input": "x", "reasoning": {"effort": 3}}, "reasoning.effort", "invalid_value"),
    ({"input": "x", "text": "json"}, "text", "invalid_value"),
    ({"input": "x", "text": {"format": "json"}}, "text.format", "invalid_value"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "n"}}}, "text.format.schema", "invalid_value"),
    ({"input": "x", "tools": {}}, "tools", "invalid_value"),
    ({"input": "x", "tools": ["f"]}, "tools[0]", "invalid_value"),
    ({"input": "x", "tools": [{"name": "f"}]}, "tools[0].type", "invalid_value"),
    ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name", "invalid_value"),
    (
        {"input": "x", "tools": [{"type": "function", "name": "f", "parameters": "{}"}]},
        "tools[0].parameters",
        "invalid_value",
    ),
    ({"input": "x", "tools": [{"type": "custom"}]}, "tools[0].name", "invalid_value"),
    ({"input": "x", "tools": [{"type": "namespace", "name": "n"}]}, "tools[0].tools", "invalid_value"),
    (
        {"input": "x", "tools": [{"type": "namespace", "name": "n", "tools": [{}]}]},
        "tools[0].tools[0].name",
        "invalid_value",
    ),
    ({"input": "x", "tool_choice": "any"}, "tool_choice", "invalid_value"),
    ({"input": "x", "tool_choice": 3}, "tool_choice", "invalid_value"),
    ({"input": "x", "tool_choice": {"type": "function"}}, "tool_choice.name", "invalid_value"),
]


@pytest.mark.parametrize(("b", "param", "code"), BAD_REQUESTS, ids=[p for _, p, _ in BAD_REQUESTS])
def test_bad_requests_name_the_param(b: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse(b)
    assert (e.value.status, e.value.param, e.value.code) == (400, param, code)


# ---- the response object ----------------------------------------------------------------------

WIRE = parse(
    {
        "input": "hi",
        "instructions": "Be brief.",
        "metadata": {"k": "v"},
        "tools": [
            {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}},
            {"type": "custom", "name": "apply_patch", "format": {"type": "text"}},
            {
                "type": "namespace",
                "name": "mcp__docs__",
                "description": "d",
                "tools": [{"type": "function", "name": "search"}],
            },
        ],
        "max_output_tokens": 64,
    }
).wire
TEXT_ANSWER = Completion(
    content='Hello "wörld"', tool_calls=[], finish_reason=END, usage=Usage(120, 9, 100, 4), reasoning="Think."
)
TOOL_ANSWER = Completion(
    content="Checking.",
    tool_calls=[
        ToolCall("call_1", "get_weather", '{"city":"Paris"}'),
        ToolCall("", "mcp__docs__search", ""),
    ],
    finish_reason=TOOL_CALLS,
    usage=Usage(377, 65),
)
CUSTOM_ANSWER = Completion(
    content=None,
    tool_calls=[
        ToolCall("call_p", "apply_patch", orjson.dumps({"input": "*** Begin Patch\n*** End Patch\n"}).decode())
    ],
    finish_reason=TOOL_CALLS,
    usage=Usage(10, 5),
)
INCOMPLETE_ANSWER = Completion(content="Once upon a", tool_calls=[], finish_reason=LENGTH, usage=Usage(3, 64))


def sdk_extras(model: pydantic.BaseModel, path: str = "") -> set[str]:
    """Every field the SDK's types do not declare, anywhere in a validated object: a typo or a
    field in the wrong place shows up here even though the SDK's models allow extras."""
    out = {f"{path}{k}" for k in (model.__pydantic_extra__ or {})}
    for name in type(model).model_fields:
        out |= _extras_of(getattr(model, name), f"{path}{name}.")
    return out


def _extras_of(v: Any, path: str) -> set[str]:
    if isinstance(v, pydantic.BaseModel):
        return sdk_extras(v, path)
    if isinstance(v, list):
        return set().union(*(_extras_of(x, path) for x in v)) if v else set()
    return set()


def validate_response(obj: dict[str, Any]) -> Response:
    r = Response.model_validate(obj, strict=True)
    # the convenience string, and `store` (the API returns it; this SDK's type omits it, B.2)
    assert sdk_extras(r) == {"output_text", "store"}
    return r


@pytest.mark.parametrize(
    ("name", "answer"),
    [
        ("text", TEXT_ANSWER),
        ("function_call", TOOL_ANSWER),
        ("custom_tool_call", CUSTOM_ANSWER),
        ("incomplete", INCOMPLETE_ANSWER),
    ],
)
def test_to_response_golden(name: str, answer: Completion) -> None:
    obj = to_response(answer, reply(WIRE))
    assert_golden(f"responses_response_{name}.json", obj)
    r = validate_response(obj)
    assert r.id == f"resp_{HEX}" and r.usage is not None and r.output_text == (answer.content or "")
    assert obj["output_text"] == r.output_text


def test_to_response_shapes() -> None:
    obj = to_response(TOOL_ANSWER, reply(WIRE))
    assert [(o["type"], o["id"]) for o in obj["output"]] == [
        ("message", f"msg_{HEX}_0"),
        ("function_call", f"fc_{HEX}_1"),
        ("function_call", f"fc_{HEX}_2"),
    ]
    # a namespaced tool renders back under the client's own name and namespace; a missing call
    # id is minted; empty arguments are an empty object (Codex parses them)
    assert obj["output"][2] == {
        "id": f"fc_{HEX}_2",
        "type": "function_call",
        "status": "completed",
        "call_id": f"call_{HEX}_2",
        "name": "search",
        "namespace": "mcp__docs__",
        "arguments": "{}",
    }
    assert obj["status"] == "completed" and obj["incomplete_details"] is None and obj["error"] is None
    assert obj["usage"] == usage_obj(Usage(377, 65))
    assert (obj["instructions"], obj["metadata"], obj["max_output_tokens"]) == ("Be brief.", {"k": "v"}, 64)
    custom = to_response(CUSTOM_ANSWER, reply(WIRE))["output"]
    assert custom == [
        {
            "id": f"ctc_{HEX}_0",
            "type": "custom_tool_call",
            "call_id": "call_p",
            "name": "apply_patch",
            "input": "*** Begin Patch\n*** End Patch\n",
        }
    ]
    incomplete = to_response(INCOMPLETE_ANSWER, reply(WIRE))
    assert incomplete["status"] == "incomplete" and incomplete["incomplete_details"] == {"reason": "max_output_tokens"}
    filtered = to_response(Completion("", [], FILTERED, Usage()), reply())
    assert (filtered["status"], filtered["incomplete_details"], filtered["output"]) == (
        "incomplete",
        {"reason": "content_filter"},
        [],
    )
    validate_response(filtered)


def test_usage_is_all_ints_with_both_details() -> None:
    assert usage_obj(Usage(120, 9, 100, 4)) == {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 4},
        "output_tokens": 9,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 129,
    }


@pytest.mark.parametrize(
    ("args", "want"),
    [
        ('{"input":"raw"}', "raw"),
        ('"a string"', "a string"),
        ("not json", "not json"),
        ('{"x":1}', '{"x":1}'),
        ("", ""),
    ],
)
def test_custom_input(args: str, want: str) -> None:
    assert custom_input(args) == want


def test_thinking_blocks_are_one_reasoning_summary() -> None:
    answer = Completion(
        "ok", [], END, Usage(), thinking=[Thinking("a", "sig"), Thinking(redacted="x"), Thinking("b", "")]
    )
    out = to_response(answer, reply())["output"]
    assert out[0] == {"id": f"rs_{HEX}_0", "type": "reasoning", "summary": [{"type": "summary_text", "text": "ab"}]}


# ---- the stream -------------------------------------------------------------------------------


def frames(data: bytes) -> list[dict[str, Any]]:
    """Each SSE block is `event: <type>` + one `data:` line whose type matches (§0); comments are
    keep-alives. Never an `id:` line."""
    out: list[dict[str, Any]] = []
    assert data.endswith(b"\n\n")
    for block in data[:-2].split(b"\n\n"):
        if block.startswith(b":"):
            assert block == b": keepalive"
            continue
        lines = block.split(b"\n")
        assert len(lines) == 2, block
        assert lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), block
        obj = orjson.loads(lines[1][6:])
        assert lines[0][7:].decode() == obj["type"], block
        out.append(obj)
    return out


TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def check_stream(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PROTOCOLS B.3's invariants; returns the items as their output_item.done sent them."""
    assert [o["sequence_number"] for o in objs] == list(range(len(objs)))
    assert [o["type"] for o in objs[:2]] == ["response.created", "response.in_progress"]
    created = objs[0]["response"]
    assert created["output"] == [] and created["usage"] is None and created["status"] == "in_progress"
    assert [o["type"] in TERMINAL for o in objs] == [False] * (len(objs) - 1) + [True]
    rid = created["id"]
    assert objs[1]["response"]["id"] == rid and objs[-1]["response"]["id"] == rid
    added: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []
    open_index: int | None = None
    parts = 0
    for o in objs[2:-1]:
        t = o["type"]
        if t == "response.in_progress":  # a keepalive on a quiet run: no item of its own
            assert o["response"]["id"] == rid and o["response"]["output"] == []
            continue
        if t == "response.output_item.added":
            assert open_index is None, "items interleave"
            assert o["output_index"] == len(added)
            open_index, parts = o["output_index"], 0
            added.append(o["item"])
            continue
        assert o["output_index"] == open_index, o
        item = added[open_index]
        if t != "response.output_item.done":
            assert o["item_id"] == item["id"]
        if t == "response.content_part.added":
            assert item["type"] == "message" and o["content_index"] == parts
            parts += 1
        elif t.startswith("response.output_text.") or t == "response.content_part.done":
            assert item["type"] == "message" and o["content_index"] == parts - 1
        elif t.startswith("response.reasoning_summary"):
            assert item["type"] == "reasoning" and o["summary_index"] == 0
        elif t.startswith("response.function_call_arguments."):
            assert item["type"] == "function_call"
        elif t.startswith("response.custom_tool_call_input."):
            assert item["type"] == "custom_tool_call"
        elif t == "response.output_item.done":
            assert o["item"]["id"] == item["id"] and o["item"]["type"] == item["type"]
            done.append(o["item"])
            open_index = None
        else:
            raise AssertionError(f"unexpected {t}")
    final = objs[-1]["response"]
    if objs[-1]["type"] == "response.failed" and open_index is not None:  # cut short by the failure
        added.pop()
        open_index = None
    assert open_index is None and len(done) == len(added)
    if objs[-1]["type"] != "response.failed":
        assert final["output"] == done  # exactly the items as their output_item.done sent them
        assert all(isinstance(v, int) for k, v in final["usage"].items() if not k.endswith("_details"))
    return done


def render(
    events: list[Event], *, wire: ResponsesWire | None = WIRE, batches: int = 1, keepalive: bool = False
) -> bytes:
    s = ResponseStream(reply(wire))
    out = s.start() + (s.keepalive() if keepalive else b"")
    step = max(1, len(events) // batches)
    for i in range(0, len(events), step):
        out += s.events(events[i : i + step])
    return out + s.end()


def sdk_accumulate(data: bytes) -> tuple[Any, list[Any]]:
    """The SDK's own `responses.stream()` state machine over our frames, every event validated
    strictly first. Returns the final response (None without response.completed) and events."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
    fired: list[Any] = []
    for obj in frames(data):
        validated = adapter.validate_python(obj, strict=True)
        extras = sdk_extras(validated)
        # `name`: newer SDKs declare it on function_call_arguments.done (B.3)
        assert extras <= {"name", "response.output_text", "response.store"}, extras
        fired += state.handle_event(construct_type(type_=ResponseStreamEvent, value=obj))  # type: ignore[arg-type]
    return state._completed_response, fired


TEXT_EVENTS: list[Event] = [
    UpstreamCall(step=1, route="local/qwen"),
    ReasoningDelta("Let me "),
    ReasoningDelta("think."),
    ThinkingSignature("sig"),
    TextDelta("Hel"),
    TextDelta(""),
    TextDelta('lo "wörld"\n'),
    Finish(END),
    Usage(prompt_tokens=120, completion_tokens=9, cache_read_tokens=100, cache_write_tokens=4),
]
# Parallel calls whose fragments an upstream interleaved, after some text: a plain function, a
# namespaced one with no id of its own, and a custom tool.
TOOL_EVENTS: list[Event] = [
    TextDelta("I'll check."),
    ToolCallDelta(index=0, id="call_W", name="get_weather", arguments=""),
    ToolCallDelta(index=1, name="mcp__docs__search", arguments='{"q": '),
    ToolCallDelta(index=0, arguments='{"city": "Par'),
    ToolCallDelta(index=2, id="call_P", name="apply_patch", arguments='{"input": "*** Begin'),
    ToolCallDelta(index=1, arguments='"rust"}'),
    ToolCallDelta(index=0, arguments='is"}'),
    ToolCallDelta(index=2, arguments=' Patch\\n"}'),
    Finish(TOOL_CALLS),
    Usage(prompt_tokens=377, completion_tokens=65),
]


def test_stream_text_golden() -> None:
    data = render(TEXT_EVENTS, keepalive=True)
    objs = frames(data)
    done = check_stream(objs)
    assert [(d["type"], d["id"]) for d in done] == [("reasoning", f"rs_{HEX}_0"), ("message", f"msg_{HEX}_1")]
    assert objs[-1]["type"] == "response.completed"
    assert objs[-1]["response"]["usage"] == usage_obj(TEXT_EVENTS[-1])  # type: ignore[arg-type]
    deltas = [o["delta"] for o in objs if o["type"] == "response.output_text.delta"]
    assert deltas == ["Hel", 'lo "wörld"\n']
    assert_golden("responses_stream_text.sse", data)
    final, fired = sdk_accumulate(data)
    assert final is not None and final.output_text == 'Hello "wörld"\n'
    assert final.output[0].type == "reasoning" and final.output[0].summary[0].text == "Let me think."
    snapshots = [e.snapshot for e in fired if e.type == "response.output_text.delta"]
    assert snapshots == ["Hel", 'Hello "wörld"\n']
    validate_response(objs[-1]["response"])


def test_stream_tools_golden() -> None:
    data = render(TOOL_EVENTS)
    objs = frames(data)
    done = check_stream(objs)
    assert [(d["type"], d["call_id"] if d["type"] != "message" else None) for d in done] == [
        ("message", None),
        ("function_call", "call_W"),
        ("function_call", f"call_{HEX}_2"),
        ("custom_tool_call", "call_P"),
    ]
    assert done[1]["arguments"] == '{"city": "Paris"}'
    assert (done[2]["name"], done[2]["namespace"], done[2]["arguments"]) == ("search", "mcp__docs__", '{"q": "rust"}')
    assert done[3]["input"] == "*** Begin Patch\n"
    args_done = [o for o in objs if o["type"] == "response.function_call_arguments.done"]
    assert [o["name"] for o in args_done] == ["get_weather", "search"]
    assert_golden("responses_stream_tools.sse", data)
    final, _ = sdk_accumulate(data)
    assert [o.type for o in final.output] == ["message", "function_call", "function_call", "custom_tool_call"]
    assert final.output[2].namespace == "mcp__docs__" and final.output[3].input == "*** Begin Patch\n"


@pytest.mark.parametrize("batches", [1, 3, 100])
def test_batching_does_not_change_the_bytes(batches: int) -> None:
    assert render(TOOL_EVENTS, batches=batches) == render(TOOL_EVENTS)
    assert render(TEXT_EVENTS, batches=batches) == render(TEXT_EVENTS)


def test_text_fast_path_frames_are_what_the_slow_path_would_build() -> None:
    objs = frames(render([TextDelta("a"), TextDelta("b\n"), Finish(END)]))
    deltas = [o for o in objs if o["type"] == "response.output_text.delta"]
    assert deltas == [
        {
            "type": "response.output_text.delta",
            "sequence_number": n,
            "item_id": f"msg_{HEX}_0",
            "output_index": 0,
            "content_index": 0,
            "logprobs": [],
            "delta": d,
        }
        for n, d in ((4, "a"), (5, "b\n"))
    ]


def test_items_alternate_and_take_the_next_index() -> None:
    events: list[Event] = [
        TextDelta("one"),
        ReasoningDelta("hm"),
        RedactedThinking("opaque"),
        TextDelta("two"),
        ReasoningDelta(""),
        ServerToolCall(ToolCall("c", "read_file", "{}")),
        TextDelta("three"),
        Finish(END),
    ]
    done = check_stream(frames(render(events)))
    assert [(d["type"], d["id"]) for d in done] == [
        ("message", f"msg_{HEX}_0"),
        ("reasoning", f"rs_{HEX}_1"),
        ("message", f"msg_{HEX}_2"),
    ]
    assert done[2]["content"][0]["text"] == "twothree"
    final, _ = sdk_accumulate(render(events))
    assert final.output_text == "onetwothree"


def test_incomplete_and_empty_streams() -> None:
    objs = frames(render([TextDelta("Once"), Finish(LENGTH), Usage(3, 64)]))
    check_stream(objs)
    assert objs[-1]["type"] == "response.incomplete"
    assert objs[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    _, fired = sdk_accumulate(render([TextDelta("Once"), Finish(LENGTH)]))
    assert fired[-1].type == "response.incomplete"
    # nothing at all: no items, and usage is bmo's estimate of the input (never null, B.6 #8)
    objs = frames(render([Finish(END)]))
    assert check_stream(objs) == [] and len(objs) == 3
    assert objs[-1]["response"]["usage"] == usage_obj(Usage(prompt_tokens=42))
    # tools without a Finish are flushed by end()
    done = check_stream(frames(render([ToolCallDelta(0, "c", "get_weather", "{}")])))
    assert [d["type"] for d in done] == ["function_call"]


def test_a_reused_index_with_a_new_id_is_a_new_call() -> None:
    events: list[Event] = [
        ToolCallDelta(index=0, id="call_a", name="f", arguments='{"n": 1}'),
        ToolCallDelta(index=0, id="call_b", name="g", arguments='{"n": 2}'),
        Finish(TOOL_CALLS),
    ]
    done = check_stream(frames(render(events)))
    assert [(d["call_id"], d["name"], d["arguments"]) for d in done] == [
        ("call_a", "f", '{"n": 1}'),
        ("call_b", "g", '{"n": 2}'),
    ]


def test_final_is_the_terminal_response_and_later_calls_render_nothing() -> None:
    s = ResponseStream(reply(WIRE))
    assert s.final is None
    data = s.start() + s.events(TEXT_EVENTS) + s.end()
    assert s.final == frames(data)[-1]["response"]
    assert s.final["status"] == "completed" and s.final["id"] == f"resp_{HEX}"
    assert s.events([TextDelta("more")]) == b"" and s.end() == b"" and s.error(InternalError("x")) == b""


@pytest.mark.parametrize(
    ("err", "code"),
    [(UpstreamError("upstream went away"), "server_error"), (RateLimited("slow down"), "rate_limit_exceeded")],
)
def test_error_mid_stream_is_one_failed_event_last(err: BmoError, code: str) -> None:
    s = ResponseStream(reply(WIRE))
    data = s.start() + s.events([ReasoningDelta("hm"), TextDelta("partial"), ToolCallDelta(0, "c", "f", "{}")])
    data += s.error(err)
    objs = frames(data)
    check_stream(objs)
    failed = objs[-1]
    assert failed["type"] == "response.failed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"] == {"code": code, "message": err.message}
    # the partial message is reported incomplete; the buffered tool call is never sent
    assert [(o["type"], o["status"]) for o in failed["response"]["output"][1:]] == [("message", "incomplete")]
    assert s.final is None
    assert s.events([TextDelta("more")]) == b"" and s.end() == b"" and s.error(InternalError("x")) == b""
    validate_response(failed["response"])
    final, fired = sdk_accumulate(data)
    assert final is None and fired[-1].type == "response.failed" and fired[-1].response.error.code == code


def whole_answers() -> list[Completion]:
    return [
        TEXT_ANSWER,
        TOOL_ANSWER,
        CUSTOM_ANSWER,
        INCOMPLETE_ANSWER,
        Completion("x", [], END, Usage(1, 1), thinking=[Thinking("a", "s"), Thinking(redacted="r"), Thinking("b")]),
    ]


@pytest.mark.parametrize("answer", whole_answers())
def test_stream_of_an_answer_equals_its_whole_rendering(answer: Completion) -> None:
    """The streamed terminal response (and what the SDK accumulates) is what to_response renders."""
    whole = to_response(answer, reply(WIRE))
    s = ResponseStream(reply(WIRE))
    data = s.start() + s.events(answer.events()) + s.end()
    assert s.final == whole
    check_stream(frames(data))
    final, _ = sdk_accumulate(data)
    if final is not None:  # the SDK adds its structured-output slots (`parsed`, `parsed_arguments`)
        output = [{k: v for k, v in o.to_dict().items() if k != "parsed_arguments"} for o in final.output]
        for o in output:
            for c in o.get("content", ()):
                c.pop("parsed", None)
        assert output == whole["output"]


def sdk_client(handler: Any) -> openai.OpenAI:
    """The real SDK client, answered in memory by `handler(request) -> (status, body, content type)`."""

    def respond(request: httpx2.Request) -> httpx2.Response:
        status, payload, ctype = handler(request)
        return httpx2.Response(status, content=payload, headers={"content-type": ctype})

    http = httpx2.Client(transport=httpx2.MockTransport(respond))
    return openai.OpenAI(api_key="k", base_url="http://bmo.test/v1", max_retries=0, http_client=http)


def test_real_sdk_client_streams_and_creates() -> None:
    stream_bytes = render(TOOL_EVENTS, keepalive=True)
    client = sdk_client(lambda r: (200, stream_bytes, "text/event-stream"))
    with client.responses.stream(model="m", input="hi") as st:
        texts = [e.delta for e in st if e.type == "response.output_text.delta"]
        final = st.get_final_response()
    assert "".join(texts) == "I'll check." and final.id == f"resp_{HEX}"
    assert [o.type for o in final.output] == ["message", "function_call", "function_call", "custom_tool_call"]
    raw = list(client.responses.create(model="m", input="hi", stream=True))
    assert raw[0].type == "response.created" and raw[-1].type == "response.completed"

    whole = orjson.dumps(to_response(TOOL_ANSWER, reply(WIRE)))
    client = sdk_client(lambda r: (200, whole, "application/json"))
    resp = client.responses.create(model="m", input="hi")
    assert resp.output_text == "Checking." and resp.output[1].arguments == '{"city":"Paris"}'  # type: ignore[union-attr]


def test_real_sdk_stream_reports_a_failure() -> None:
    s = ResponseStream(reply(WIRE))
    data = s.start() + s.events([TextDelta("partial")]) + s.error(UpstreamError("upstream went away"))
    client = sdk_client(lambda r: (200, data, "text/event-stream"))
    with client.responses.stream(model="m", input="hi") as st:
        events = list(st)
        assert events[-1].type == "response.failed"
        with pytest.raises(RuntimeError, match="response.completed"):
            st.get_final_response()


# ---- errors, input items, the dialect object -------------------------------------------------


def test_errors_use_the_openai_envelope() -> None:
    err = InvalidRequest("`input` is required.", code="missing_messages", param="input")
    assert orjson.loads(render_error(err)) == {
        "error": {
            "message": "`input` is required.",
            "type": "invalid_request_error",
            "param": "input",
            "code": "missing_messages",
        }
    }
    assert RESPONSES.render_error(err) == render_error(err)
    client = sdk_client(lambda r: (400, render_error(err), "application/json"))
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="m", input="hi")
    assert e.value.code == "missing_messages" and e.value.param == "input"


HISTORY = parse(
    {
        "input": [
            msg("developer", "rules"),
            msg("user", [itext("look"), {"type": "input_image", "image_url": IMG["image_url"]["url"]}]),
            msg("assistant", [{"type": "output_text", "text": "Checking."}]),
            fcall("call_1", "get_weather", '{"city":"Paris"}'),
            {
                "type": "function_call",
                "call_id": "call_2",
                "name": "search",
                "namespace": "mcp__docs__",
                "arguments": "{}",
            },
            fout("call_1", "18C"),
            fout("call_2", "found"),
            {"type": "custom_tool_call", "call_id": "call_3", "name": "apply_patch", "input": "*** Begin Patch\n"},
            {"type": "custom_tool_call_output", "call_id": "call_3", "output": "Done"},
            msg("user", "thanks"),
        ],
        "tools": [
            {"type": "function", "name": "get_weather"},
            {"type": "custom", "name": "apply_patch"},
            {"type": "namespace", "name": "mcp__docs__", "tools": [{"type": "function", "name": "search"}]},
        ],
    }
)


def test_input_items_are_the_inverse_of_parsing() -> None:
    items = to_input_items(HISTORY.messages, f"resp_{HEX}", wire=HISTORY.wire)
    assert_golden("responses_input_items.json", items)
    assert len({i["id"] for i in items}) == len(items)
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseItem)
    for item in items:
        assert sdk_extras(adapter.validate_python(item, strict=True)) == set(), item
    # parsing them again gives the same conversation
    again = parse({"input": items, "tools": HISTORY.wire.echo["tools"]}).messages
    assert len(again) == len(HISTORY.messages) and all(map(same_turn, again, HISTORY.messages))
    assert [m.tool_calls for m in again] == [m.tool_calls for m in HISTORY.messages]
    # without the wire, every call is a function_call under the name the upstream saw
    plain = to_input_items(HISTORY.messages, f"resp_{HEX}")
    assert [i["name"] for i in plain if i["type"] == "function_call"] == [
        "get_weather",
        "mcp__docs__search",
        "apply_patch",
    ]


def test_input_items_pages() -> None:
    items = [{"id": f"i{k}"} for k in range(5)]

    def ids(page: dict[str, Any]) -> list[str]:
        return [d["id"] for d in page["data"]]

    page = input_items_page(items)
    assert ids(page) == ["i4", "i3", "i2", "i1", "i0"] and not page["has_more"]
    assert (page["first_id"], page["last_id"], page["object"]) == ("i4", "i0", "list")
    page = input_items_page(items, order="asc", limit=2)
    assert ids(page) == ["i0", "i1"] and page["has_more"]
    page = input_items_page(items, order="asc", limit="2", after="i1")
    assert ids(page) == ["i2", "i3"] and page["has_more"]
    page = input_items_page(items, after="i1")
    assert ids(page) == ["i0"] and not page["has_more"]
    page = input_items_page(items, order="asc", before="i4", limit=2)
    assert ids(page) == ["i2", "i3"] and page["has_more"]
    assert input_items_page([]) == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    for kw, param in [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"limit": True}, "limit"),
        ({"order": "up"}, "order"),
        ({"after": "nope"}, "after"),
        ({"before": "nope"}, "before"),
    ]:
        with pytest.raises(InvalidRequest) as e:
            input_items_page(items, **kw)
        assert e.value.param == param


def test_real_sdk_pages_through_input_items() -> None:
    items = to_input_items(HISTORY.messages, f"resp_{HEX}", wire=HISTORY.wire)

    def handler(request: httpx2.Request) -> tuple[int, bytes, str]:
        q = request.url.params
        page = input_items_page(items, after=q.get("after"), limit=q.get("limit"), order=q.get("order"))
        return 200, orjson.dumps(page), "application/json"

    client = sdk_client(handler)
    got = [i.id for i in client.responses.input_items.list(f"resp_{HEX}", limit=3, order="asc")]
    assert got == [i["id"] for i in items]


def test_dialect_object() -> None:
    d: Dialect = RESPONSES
    assert (d.name, d.id_prefix, d.request_id_header, d.eager_start) == ("responses", "resp_", None, True)
    s: StreamRenderer = d.stream(reply(WIRE))
    assert s.eager is True and s.final is None
    assert s.start().startswith(b"event: response.created\ndata: ")
    # a quiet run repeats response.in_progress, with the next sequence number: Codex's idle timer
    # is reset by events only, never by a comment line
    ka = s.keepalive()
    assert ka.startswith(b"event: response.in_progress\ndata: ") and b'"sequence_number":2' in ka
    assert d.parse({"input": "hi"}, {}).messages[0].content == "hi"
    assert d.render_whole(TEXT_ANSWER, reply(WIRE)) == to_response(TEXT_ANSWER, reply(WIRE))
    # a reply without this dialect's wire (a test, another caller) renders OpenAI's defaults
    assert to_response(TEXT_ANSWER, reply(None))["tools"] == [] and ResponseStream(reply(None)).start()
