"""Pure tests of the Anthropic Messages dialect (protocol/anthropic.py): no server.

Request body → internal model; internal answer and events → wire JSON and raw SSE bytes. The
streams are checked three ways: byte-level invariants (PROTOCOLS §0, A.4), golden files, and the
real anthropic SDK (its accumulator, and its whole client over an in-memory transport).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import anthropic
import httpx2
import orjson
import pydantic
import pytest
from anthropic._models import construct_type
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message as SDKMessage
from anthropic.types import RawMessageStreamEvent
from multidict import CIMultiDict

from bmo.chat import (
    END,
    FILTERED,
    LENGTH,
    STOP_SEQUENCE,
    TOOL_CALLS,
    Completion,
    Event,
    Finish,
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
)
from bmo.errors import (
    AuthenticationError,
    BmoError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from bmo.protocol.anthropic import (
    ANTHROPIC,
    MessageStream,
    error_type,
    parse_count_tokens_request,
    parse_messages_request,
    render_error,
    to_message,
    to_model,
    to_model_list,
    to_token_count,
)
from bmo.protocol.dialect import Dialect, Reply, StreamRenderer
from golden import assert_golden

REPLY = Reply(id="msg_0123456789abcdef", created=0, model="claude-sonnet-4-6", prompt_tokens=42)


def body(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-6", "max_tokens": 1024, "messages": list(messages), **extra}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def text(t: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": t, **extra}


def parsed(b: dict[str, Any], headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return [message_to_json(m) for m in parse_messages_request(b, headers or {}).messages]


# ---- parsing: messages ----------------------------------------------------------------------

IMG_B64 = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
IMG_URL = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
PART_B64 = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
PART_URL = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
CC = {"cache_control": {"type": "ephemeral"}}

MESSAGE_CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
    ("string content", body(user("hi")), [{"role": "user", "content": "hi"}]),
    (
        "system string leads",
        body(user("hi"), system="Be brief."),
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    ),
    (
        "system blocks joined, billing header and cache_control dropped",
        body(
            user("hi"),
            system=[
                text("x-anthropic-billing-header: cc_version=2.1.69.abc; cc_entrypoint=cli; cch=f00d;"),
                text("You are Claude Code.", **CC),
                text("Follow the rules."),
            ],
        ),
        [{"role": "system", "content": "You are Claude Code.\n\nFollow the rules."}, {"role": "user", "content": "hi"}],
    ),
    (
        "role system inside messages folded into the leading system, in order",
        body(
            {"role": "system", "content": "third"},
            user("hi"),
            {"role": "system", "content": [text("fourth")]},
            system=[text("first"), text("second")],
        ),
        [{"role": "system", "content": "first\n\nsecond\n\nthird\n\nfourth"}, {"role": "user", "content": "hi"}],
    ),
    (
        "text blocks lose cache_control; images become image_url parts",
        body(user([text("look", **CC), IMG_B64, IMG_URL])),
        [{"role": "user", "content": [{"type": "text", "text": "look"}, PART_B64, PART_URL]}],
    ),
    (
        "assistant tool_use: arguments are the input dumped, content null",
        body(
            user("weather?"),
            assistant([{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]),
        ),
        [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "toolu_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}],
            },
        ],
    ),
    (
        "assistant thinking, redacted thinking, text and a tool call",
        body(
            user("q"),
            assistant(
                [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig=="},
                    {"type": "redacted_thinking", "data": "opaque"},
                    text("Let me look."),
                    {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {}},
                ]
            ),
        ),
        [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "Let me look."}],
                "tool_calls": [{"id": "toolu_2", "name": "Bash", "arguments": "{}"}],
                "thinking": [
                    {"text": "hmm", "signature": "sig==", "redacted": None},
                    {"text": "", "signature": "", "redacted": "opaque"},
                ],
            },
        ],
    ),
    (
        "tool results come first, each its own tool message; the rest follows as a user message",
        body(
            user(
                [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    text("and now?"),
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "is_error": True,
                        "content": [text("line 1"), text("line 2", **CC)],
                    },
                ]
            )
        ),
        [
            {"role": "tool", "content": "18C", "tool_call_id": "toolu_1"},
            {"role": "tool", "content": "line 1\nline 2", "tool_call_id": "toolu_2", "is_error": True},
            {"role": "user", "content": [{"type": "text", "text": "and now?"}]},
        ],
    ),
    (
        "only tool results: no empty user message after them; missing content is empty",
        body(user([{"type": "tool_result", "tool_use_id": "toolu_1"}])),
        [{"role": "tool", "content": "", "tool_call_id": "toolu_1"}],
    ),
    (
        "images inside a tool_result go to a following user message, before the rest",
        body(
            user(
                [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [text("screenshot:"), IMG_B64]},
                    text("what do you see?"),
                ]
            )
        ),
        [
            {"role": "tool", "content": "screenshot:", "tool_call_id": "toolu_1"},
            {"role": "user", "content": [PART_B64, {"type": "text", "text": "what do you see?"}]},
        ],
    ),
    (
        "documents and search results with text become text; a PDF is dropped",
        body(
            user(
                [
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc text"}},
                    {"type": "document", "source": {"type": "content", "content": [text("a"), text("b")]}},
                    {"type": "search_result", "source": "u", "title": "t", "content": [text("found")]},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}},
                ]
            )
        ),
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "doc text"},
                    {"type": "text", "text": "a\nb"},
                    {"type": "text", "text": "found"},
                ],
            }
        ],
    ),
    (
        "unknown and wrong-side blocks are dropped, never a 400",
        body(
            user([text("hi"), {"type": "container_upload", "file_id": "f"}, {"type": "tool_use", "id": "x"}]),
            assistant(
                [
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
                    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                    text("done"),
                ]
            ),
        ),
        [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "done"}]},
        ],
    ),
    (
        "a tool_use with null input, an empty unsigned thinking block",
        body(
            assistant(
                [{"type": "thinking", "thinking": ""}, {"type": "tool_use", "id": "t", "name": "f", "input": None}]
            )
        ),
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "t", "name": "f", "arguments": "{}"}],
                "thinking": [{"text": "", "signature": "", "redacted": None}],
            }
        ],
    ),
    (
        "consecutive same-role messages stay separate; an empty block list is an empty turn",
        body(user("a"), user("b"), user([]), assistant([])),
        [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "user", "content": ""},
            {"role": "assistant", "content": ""},
        ],
    ),
]


@pytest.mark.parametrize(("case", "b", "want"), MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES])
def test_parse_messages(case: str, b: dict[str, Any], want: list[dict[str, Any]]) -> None:
    assert parsed(b) == want


def test_dropped_blocks_and_tools_are_named_once() -> None:
    req = parse_messages_request(
        body(
            user(
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": [{"type": "tool_reference", "tool_name": "X"}],
                    },
                    {"type": "container_upload", "file_id": "f"},
                    {"type": "container_upload", "file_id": "g"},
                    {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
                ]
            ),
            tools=[
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
                {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
            ],
        ),
        {},
    )
    assert req.warnings == [
        "dropped_block:tool_reference",
        "dropped_block:container_upload",
        "dropped_block:image",
        "dropped_tool:web_search",
    ]
    assert req.tools == []


# ---- parsing: everything but messages -------------------------------------------------------


def test_defaults_and_metadata_is_not_a_session() -> None:
    req = parse_messages_request(
        {"messages": [user("hi")], "metadata": {"user_id": "user_abc_account_def_session_123"}}, {}
    )
    assert req.model == "default" and req.params == {} and not req.stream
    assert req.user is None and req.metadata is None and req.beta is None
    assert req.tools == [] and req.tool_choice is None and req.warnings == []


def test_sampling_params_use_neutral_names() -> None:
    req = parse_messages_request(
        body(
            user("hi"),
            temperature=0.5,
            top_p=1,
            top_k=40,
            stop_sequences=["\n\nHuman:", "END"],
            thinking={"type": "enabled", "budget_tokens": 2048},
            stream=True,
        ),
        {},
    )
    assert req.stream
    assert req.params == {
        "temperature": 0.5,
        "top_p": 1,
        "top_k": 40,
        "max_tokens": 1024,
        "stop": ["\n\nHuman:", "END"],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }


def test_max_tokens_is_optional_and_empty_stop_sequences_send_nothing() -> None:
    req = parse_messages_request({"messages": [user("hi")], "stop_sequences": []}, {})
    assert req.params == {}


@pytest.mark.parametrize(
    ("choice", "want", "params"),
    [
        ({"type": "auto"}, ToolChoice("auto"), {}),
        ({"type": "any"}, ToolChoice("required"), {}),
        ({"type": "none"}, ToolChoice("none"), {}),
        ({"type": "tool", "name": "get_weather"}, ToolChoice("tool", "get_weather"), {}),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            ToolChoice("auto", parallel=False),
            {"parallel_tool_calls": False},
        ),
        ({"type": "any", "disable_parallel_tool_use": False}, ToolChoice("required"), {}),
    ],
)
def test_tool_choice(choice: dict[str, Any], want: ToolChoice, params: dict[str, Any]) -> None:
    req = parse_messages_request({"messages": [user("hi")], "tool_choice": choice}, {})
    assert req.tool_choice == want
    assert req.params == params


def test_tools_keep_schema_and_ignore_extra_keys() -> None:
    schema = {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}
    req = parse_messages_request(
        body(
            user("hi"),
            tools=[
                {"name": "Bash", "description": "Run a command", "input_schema": schema, **CC, "strict": True},
                {"type": "custom", "name": "Later", "input_schema": schema, "defer_loading": True},
                {"name": "Fast", "input_schema": schema, "eager_input_streaming": True, "strict": "yes"},
                {"type": "bash_20250124", "name": "bash"},
            ],
        ),
        {},
    )
    assert [(t.name, t.description, t.strict) for t in req.tools] == [
        ("Bash", "Run a command", True),
        ("Later", "", None),
        ("Fast", "", None),
    ]
    assert all(t.schema is schema for t in req.tools)
    assert req.warnings == ["dropped_tool:bash"]


@pytest.mark.parametrize(
    "headers",
    [
        {"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14"},
        {"Anthropic-Beta": "claude-code-20250219,interleaved-thinking-2025-05-14"},
    ],
)
def test_anthropic_beta_header_is_kept(headers: dict[str, str]) -> None:
    req = parse_messages_request(body(user("hi")), CIMultiDict(headers))  # as aiohttp hands them over
    assert req.beta == "claude-code-20250219,interleaved-thinking-2025-05-14"


CLAUDE_CODE_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 32000,
    "stream": True,
    "system": [
        text("x-anthropic-billing-header: cc_version=2.1.69.a1b; cc_entrypoint=cli; cch=00000;"),
        text("You are Claude Code, Anthropic's official CLI for Claude.", **CC),
        text("You are an interactive agent that helps users with software engineering tasks.", **CC),
    ],
    "messages": [
        {"role": "system", "content": "Extra instructions from a hook."},
        user(
            [
                text("<system-reminder>context</system-reminder>"),
                text("List the files here.", **CC),
            ]
        ),
        assistant(
            [
                {"type": "thinking", "thinking": "I should run ls.", "signature": "EqQBCkYIBxgCKkA="},
                {
                    "type": "tool_use",
                    "id": "toolu_01A",
                    "name": "Bash",
                    "input": {"command": "ls", "description": "List"},
                },
            ]
        ),
        user(
            [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "a.py\nb.py", **CC},
            ]
        ),
    ],
    "tools": [
        {
            "name": "Bash",
            "description": "Executes a bash command",
            "input_schema": {
                "type": "object",
                "properties": {"command": {"type": "string"}, "description": {"type": "string"}},
                "required": ["command"],
                "additionalProperties": False,
                "$schema": "http://json-schema.org/draft-07/schema#",
            },
        },
        {
            "name": "ToolSearch",
            "description": "Find deferred tools",
            "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
            "defer_loading": True,
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 8},
    ],
    "tool_choice": {"type": "auto"},
    "metadata": {"user_id": "user_0f0f_account_1234_session_5678"},
    "thinking": {"type": "adaptive", "display": "omitted"},
    "output_config": {"effort": "high"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "temperature": 1,
    "service_tier": "auto",
    "container": None,
    "inference_geo": "us",
    "cache_control": {"type": "ephemeral"},
    "mcp_servers": [],
    "some_future_field": {"x": 1},
}
CLAUDE_CODE_HEADERS = {
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27",
    "x-app": "cli",
}


def test_claude_code_body_is_accepted() -> None:
    req = parse_messages_request(CLAUDE_CODE_BODY, CLAUDE_CODE_HEADERS)
    assert req.messages[0].role == "system" and "billing" not in str(req.messages[0].content)
    assert req.messages[0].content == (
        "You are Claude Code, Anthropic's official CLI for Claude.\n\nYou are an interactive agent that helps"
        " users with software engineering tasks.\n\nExtra instructions from a hook."
    )
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.params["thinking"] == {"type": "adaptive", "display": "omitted"}
    assert [t.name for t in req.tools] == ["Bash", "ToolSearch"]
    assert req.warnings == ["dropped_tool:web_search"]
    assert req.user is None and req.metadata is None
    assert_golden("anthropic_request_claude_code.internal.json", dataclasses.asdict(req))


def test_count_tokens_ignores_max_tokens_and_stream() -> None:
    req = parse_count_tokens_request(
        {"model": "claude-haiku-4-5", "messages": [user("hi")], "max_tokens": "x", "stream": "y", "system": "s"}, {}
    )
    assert not req.stream and "max_tokens" not in req.params
    assert [m.role for m in req.messages] == ["system", "user"]
    assert to_token_count(17) == {"input_tokens": 17}


# ---- parsing: what is a 400 -----------------------------------------------------------------

BAD_REQUESTS: list[tuple[dict[str, Any], str, str]] = [
    ({}, "messages", "missing_messages"),
    ({"messages": None}, "messages", "missing_messages"),
    ({"messages": []}, "messages", "missing_messages"),
    ({"messages": "hi"}, "messages", "invalid_value"),
    ({"messages": ["hi"]}, "messages[0]", "invalid_value"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role", "invalid_value"),
    ({"messages": [{"content": "x"}]}, "messages[0].role", "invalid_value"),
    ({"messages": [user(5)]}, "messages[0].content", "invalid_value"),
    ({"messages": [user(None)]}, "messages[0].content", "invalid_value"),
    ({"messages": [user(["hi"])]}, "messages[0].content[0]", "invalid_value"),
    ({"messages": [user([{"text": "x"}])]}, "messages[0].content[0].type", "invalid_value"),
    (
        {"messages": [user("a"), assistant("b"), user([{"type": "text", "text": None}])]},
        "messages[2].content[0].text",
        "invalid_value",
    ),
    ({"messages": [user([{"type": "image"}])]}, "messages[0].content[0].source", "invalid_value"),
    (
        {"messages": [user([{"type": "image", "source": {"type": "base64", "data": "x"}}])]},
        "messages[0].content[0].source",
        "invalid_value",
    ),
    ({"messages": [user([{"type": "tool_result", "id": "t"}])]}, "messages[0].content[0].tool_use_id", "invalid_value"),
    (
        {"messages": [user([{"type": "tool_result", "tool_use_id": "t", "content": [7]}])]},
        "messages[0].content[0].content[0]",
        "invalid_value",
    ),
    (
        {"messages": [user([{"type": "tool_result", "tool_use_id": "t", "content": 7}])]},
        "messages[0].content[0].content",
        "invalid_value",
    ),
    ({"messages": [assistant([{"type": "tool_use", "name": "f"}])]}, "messages[0].content[0].id", "invalid_value"),
    ({"messages": [assistant([{"type": "tool_use", "id": "t"}])]}, "messages[0].content[0].name", "invalid_value"),
    (
        {"messages": [assistant([{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}])]},
        "messages[0].content[0].input",
        "invalid_value",
    ),
    ({"messages": [assistant([{"type": "thinking"}])]}, "messages[0].content[0].thinking", "invalid_value"),
    ({"messages": [assistant([{"type": "redacted_thinking"}])]}, "messages[0].content[0].data", "invalid_value"),
    ({"messages": [{"role": "system", "content": 3}, user("x")]}, "messages[0].content", "invalid_value"),
    (body(user("x"), system=5), "system", "invalid_value"),
    (body(user("x"), system=[{"type": "text", "text": 1}]), "system[0].text", "invalid_value"),
    (body(user("x"), model=5), "model", "invalid_value"),
    (body(user("x"), stream="yes"), "stream", "invalid_value"),
    (body(user("x"), max_tokens=0), "max_tokens", "invalid_value"),
    (body(user("x"), max_tokens="100"), "max_tokens", "invalid_value"),
    (body(user("x"), max_tokens=True), "max_tokens", "invalid_value"),
    (body(user("x"), temperature=1.5), "temperature", "invalid_value"),
    (body(user("x"), top_p=-0.1), "top_p", "invalid_value"),
    (body(user("x"), top_k=-1), "top_k", "invalid_value"),
    (body(user("x"), top_k=2.5), "top_k", "invalid_value"),
    (body(user("x"), stop_sequences="END"), "stop_sequences", "invalid_value"),
    (body(user("x"), stop_sequences=["a", 1]), "stop_sequences", "invalid_value"),
    (body(user("x"), thinking="on"), "thinking", "invalid_value"),
    (body(user("x"), tools={}), "tools", "invalid_value"),
    (body(user("x"), tools=[5]), "tools[0]", "invalid_value"),
    (body(user("x"), tools=[{"input_schema": {}}]), "tools[0].name", "invalid_value"),
    (body(user("x"), tools=[{"name": "f", "input_schema": "x"}]), "tools[0].input_schema", "invalid_value"),
    (body(user("x"), tool_choice="auto"), "tool_choice", "invalid_value"),
    (body(user("x"), tool_choice={"type": "required"}), "tool_choice.type", "invalid_value"),
    (body(user("x"), tool_choice={"type": "tool"}), "tool_choice.name", "invalid_value"),
]


def test_bad_request_messages_are_readable() -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_messages_request(body(user("x"), top_k=-1), {})
    assert e.value.message == "`top_k` must be an integer of at least 0."
    with pytest.raises(InvalidRequest) as e:
        parse_messages_request(body(user([{"type": "tool_result"}])), {})
    assert e.value.message == "A tool_result block needs a string `tool_use_id`."


@pytest.mark.parametrize(("b", "param", "code"), BAD_REQUESTS, ids=[f"{c[1]}-{i}" for i, c in enumerate(BAD_REQUESTS)])
def test_bad_requests_name_the_param(b: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_messages_request(b, {})
    assert (e.value.param, e.value.code, e.value.status) == (param, code, 400)


# ---- rendering a whole answer ---------------------------------------------------------------

TEXT_ANSWER = Completion(
    content="Hello! How can I help?",
    tool_calls=[],
    finish_reason=END,
    usage=Usage(prompt_tokens=120, completion_tokens=9, cache_read_tokens=100, cache_write_tokens=4),
)
TOOL_ANSWER = Completion(
    content="I'll check the weather in Paris.",
    tool_calls=[
        ToolCall("toolu_01W", "get_weather", '{"location": "Paris", "unit": "c"}'),
        ToolCall("toolu_01T", "get_time", ""),
    ],
    finish_reason=TOOL_CALLS,
    usage=Usage(prompt_tokens=377, completion_tokens=65),
    thinking=[Thinking("The user wants weather.", "EqQBCkYI"), Thinking(redacted="c2VjcmV0")],
)


def test_to_message_text_golden() -> None:
    msg = to_message(TEXT_ANSWER, REPLY)
    assert msg["usage"] == {
        "input_tokens": 16,
        "output_tokens": 9,
        "cache_creation_input_tokens": 4,
        "cache_read_input_tokens": 100,
    }
    SDKMessage.model_validate(msg)
    assert_golden("anthropic_message_text.json", msg)


def test_to_message_tool_use_golden() -> None:
    msg = to_message(TOOL_ANSWER, REPLY)
    assert [b["type"] for b in msg["content"]] == ["thinking", "redacted_thinking", "text", "tool_use", "tool_use"]
    assert msg["content"][3]["input"] == {"location": "Paris", "unit": "c"}
    assert msg["content"][4]["input"] == {}
    assert msg["stop_reason"] == "tool_use"
    SDKMessage.model_validate(msg)
    assert_golden("anthropic_message_tool_use.json", msg)


@pytest.mark.parametrize(
    ("reason", "calls", "want"),
    [
        (END, [], "end_turn"),
        (LENGTH, [], "max_tokens"),
        (TOOL_CALLS, [], "tool_use"),
        (STOP_SEQUENCE, [], "stop_sequence"),
        (FILTERED, [], "refusal"),
        ("something_new", [], "end_turn"),
        (END, [ToolCall("t", "f", "{}")], "tool_use"),  # a tool_use block always means tool_use
        (LENGTH, [ToolCall("t", "f", "{}")], "tool_use"),
    ],
)
def test_stop_reasons(reason: str, calls: list[ToolCall], want: str) -> None:
    answer = Completion(content="x", tool_calls=calls, finish_reason=reason, usage=Usage(), stop_sequence="END")
    msg = to_message(answer, REPLY)
    assert msg["stop_reason"] == want
    assert msg["stop_sequence"] == ("END" if want == "stop_sequence" else None)


def test_tool_input_is_always_an_object() -> None:
    calls = [ToolCall("a", "f", "[1, 2]"), ToolCall("b", "f", "{not json"), ToolCall("", "f", '"s"')]
    msg = to_message(Completion(content=None, tool_calls=calls, finish_reason=TOOL_CALLS, usage=Usage()), REPLY)
    assert [b["input"] for b in msg["content"]] == [{}, {}, {}]
    assert msg["content"][2]["id"] == "toolu_0123456789abcdef_2"  # an id the upstream did not give


def test_unsigned_reasoning_is_one_thinking_block_with_empty_signature() -> None:
    answer = Completion(content="4", tool_calls=[], finish_reason=END, usage=Usage(), reasoning="2+2")
    assert to_message(answer, REPLY)["content"] == [
        {"type": "thinking", "thinking": "2+2", "signature": ""},
        {"type": "text", "text": "4"},
    ]


# ---- streaming: bytes, invariants, golden ---------------------------------------------------


def frames(data: bytes) -> list[dict[str, Any]]:
    """Split raw SSE bytes strictly: every frame is `event: <type>` + one `data:` line + a blank."""
    assert data.endswith(b"\n\n")
    out = []
    for block in data[:-2].split(b"\n\n"):
        lines = block.split(b"\n")
        assert len(lines) == 2, block
        assert lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), block
        obj = orjson.loads(lines[1][6:])
        assert lines[0][7:].decode() == obj["type"], block
        out.append(obj)
    return out


def check_stream(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PROTOCOLS A.4's invariants; returns the content blocks as started."""
    objs = [o for o in objs if o["type"] != "ping"]
    assert objs[0]["type"] == "message_start"
    start = objs[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and isinstance(start["usage"]["input_tokens"], int)
    assert [o["type"] for o in objs[-2:]] == ["message_delta", "message_stop"]
    assert sum(o["type"] == "message_delta" for o in objs) == 1
    assert objs[-2]["delta"]["stop_reason"] is not None
    assert isinstance(objs[-2]["usage"]["output_tokens"], int)
    blocks: list[dict[str, Any]] = []
    open_index: int | None = None
    allowed = {"text": "text_delta", "thinking": ("thinking_delta", "signature_delta"), "tool_use": "input_json_delta"}
    for o in objs[1:-2]:
        if o["type"] == "content_block_start":
            assert open_index is None, "blocks interleave"
            assert o["index"] == len(blocks), "indices are 0, 1, 2… in start order"
            open_index = o["index"]
            blocks.append(o["content_block"])
        elif o["type"] == "content_block_delta":
            assert o["index"] == open_index
            assert o["delta"]["type"] in allowed.get(blocks[o["index"]]["type"], ())
        elif o["type"] == "content_block_stop":
            assert o["index"] == open_index
            open_index = None
        else:
            raise AssertionError(f"unexpected {o['type']} between message_start and message_delta")
    assert open_index is None
    if any(b["type"] == "tool_use" for b in blocks):
        assert objs[-2]["delta"]["stop_reason"] == "tool_use"
    for b in blocks:
        if b["type"] == "tool_use":
            assert b["id"] and b["name"] and b["input"] == {}
    return blocks


def render(events: list[Event], *, batches: int = 1, keepalive: bool = False) -> bytes:
    s = MessageStream(REPLY)
    out = s.start() + (s.keepalive() if keepalive else b"")
    step = max(1, len(events) // batches)
    for i in range(0, len(events), step):
        out += s.events(events[i : i + step])
    return out + s.end()


def sdk_accumulate(data: bytes) -> SDKMessage:
    """The SDK's own stream accumulator over our frames (what `messages.stream()` runs)."""
    snapshot = None
    bufs: dict[int, bytes] = {}
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RawMessageStreamEvent)
    for obj in frames(data):
        if obj["type"] == "ping":
            continue
        adapter.validate_python(obj)  # every event is a valid SDK event, strictly
        event = construct_type(type_=RawMessageStreamEvent, value=obj)
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    return snapshot


def sdk_client(status: int, payload: bytes, content_type: str) -> anthropic.Anthropic:
    """The real SDK client, answered in memory by `payload`."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, content=payload, headers={"content-type": content_type, "request-id": "req_1"})

    transport = httpx2.MockTransport(handler)
    return anthropic.Anthropic(
        api_key="k", base_url="http://bmo.test", max_retries=0, http_client=httpx2.Client(transport=transport)
    )


TEXT_EVENTS: list[Event] = [
    UpstreamCall(step=1, route="local/qwen"),
    TextDelta("Hel"),
    TextDelta(""),
    TextDelta('lo "wörld"\n'),
    Finish(END),
    Usage(prompt_tokens=120, completion_tokens=9, cache_read_tokens=100, cache_write_tokens=4),
]
# Two parallel calls whose fragments an upstream interleaved, after some text.
TOOL_EVENTS: list[Event] = [
    TextDelta("I'll check both."),
    ToolCallDelta(index=0, id="toolu_01W", name="get_weather", arguments=""),
    ToolCallDelta(index=1, id="toolu_01T", name="get_time", arguments='{"tz": '),
    ToolCallDelta(index=0, arguments='{"location": "Par'),
    ToolCallDelta(index=1, arguments='"Europe/Paris"}'),
    ToolCallDelta(index=0, arguments='is"}'),
    Finish(TOOL_CALLS),
    Usage(prompt_tokens=377, completion_tokens=65),
]


def test_stream_text_golden() -> None:
    data = render(TEXT_EVENTS, keepalive=True)
    objs = frames(data)
    blocks = check_stream(objs)
    assert blocks == [{"type": "text", "text": ""}]
    assert objs[-2]["usage"] == {
        "output_tokens": 9,
        "input_tokens": 16,
        "cache_creation_input_tokens": 4,
        "cache_read_input_tokens": 100,
    }
    assert_golden("anthropic_stream_text.sse", data)
    final = sdk_accumulate(data)
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == 'Hello "wörld"\n'  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 9 and final.usage.input_tokens == 16


def test_stream_tool_use_golden() -> None:
    data = render(TOOL_EVENTS)
    blocks = check_stream(frames(data))
    assert [(b["type"], b.get("id")) for b in blocks] == [
        ("text", None),
        ("tool_use", "toolu_01W"),
        ("tool_use", "toolu_01T"),
    ]
    assert_golden("anthropic_stream_tool_use.sse", data)
    final = sdk_accumulate(data)
    assert final.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "input", None)) for b in final.content] == [
        ("text", None),
        ("tool_use", {"location": "Paris"}),
        ("tool_use", {"tz": "Europe/Paris"}),
    ]


@pytest.mark.parametrize("batches", [1, 3, 100])
def test_batching_does_not_change_the_bytes(batches: int) -> None:
    assert render(TOOL_EVENTS, batches=batches) == render(TOOL_EVENTS)
    assert render(TEXT_EVENTS, batches=batches) == render(TEXT_EVENTS)


def test_thinking_blocks_stream_in_order_and_close_on_type_change() -> None:
    events: list[Event] = [
        ReasoningDelta("First, "),
        ReasoningDelta("think."),
        ThinkingSignature("sig-1"),
        RedactedThinking("b3BhcXVl"),
        ReasoningDelta("unsigned"),
        TextDelta("Answer."),
        ReasoningDelta("more"),  # after text: a fresh thinking block, never a delta into text
        ThinkingSignature(""),
        Finish(END),
    ]
    data = render(events)
    blocks = check_stream(frames(data))
    assert [b["type"] for b in blocks] == ["thinking", "redacted_thinking", "thinking", "text", "thinking"]
    final = sdk_accumulate(data)
    assert [b.to_dict() for b in final.content] == [
        {"type": "thinking", "thinking": "First, think.", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "b3BhcXVl"},
        {"type": "thinking", "thinking": "unsigned", "signature": ""},
        {"type": "text", "text": "Answer."},
        {"type": "thinking", "thinking": "more", "signature": ""},
    ]


def test_tools_emitted_force_tool_use_even_without_a_finish() -> None:
    data = render([ToolCallDelta(index=0, id="toolu_1", name="f", arguments="{}"), Finish(END)])
    assert frames(data)[-2]["delta"]["stop_reason"] == "tool_use"
    data = render([ToolCallDelta(index=0, id="toolu_1", name="f", arguments="{}")])  # end() flushes them
    blocks = check_stream(frames(data))
    assert [b["type"] for b in blocks] == ["tool_use"]


def test_bad_tool_arguments_become_an_empty_object_and_missing_ids_are_minted() -> None:
    data = render([ToolCallDelta(index=0, name="f", arguments='{"trunc'), Finish(LENGTH)])
    objs = frames(data)
    check_stream(objs)
    assert objs[1]["content_block"]["id"] == "toolu_0123456789abcdef_0"
    assert objs[2]["delta"] == {"type": "input_json_delta", "partial_json": "{}"}
    assert sdk_accumulate(data).content[0].input == {}  # type: ignore[union-attr]


def test_a_reused_index_with_a_new_id_is_a_new_call() -> None:
    events: list[Event] = [
        ToolCallDelta(index=0, id="toolu_a", name="f", arguments='{"n": 1}'),
        ToolCallDelta(index=0, id="toolu_b", name="g", arguments='{"n": 2}'),
        Finish(TOOL_CALLS),
    ]
    final = sdk_accumulate(render(events))
    assert [(b.id, b.input) for b in final.content] == [("toolu_a", {"n": 1}), ("toolu_b", {"n": 2})]  # type: ignore[union-attr]


def test_empty_answer_has_no_blocks_and_estimated_usage() -> None:
    objs = frames(render([ServerToolCall(ToolCall("c", "read_file", "{}")), Finish(END)]))
    assert check_stream(objs) == []
    assert objs[0]["message"]["usage"] == {
        "input_tokens": 42,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert objs[-2]["usage"]["input_tokens"] == 42 and objs[-2]["usage"]["output_tokens"] == 0


def test_stop_sequence_in_stream() -> None:
    objs = frames(render([TextDelta("a"), Finish(STOP_SEQUENCE, "END")]))
    assert objs[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


def test_error_mid_stream_is_the_last_frame() -> None:
    s = MessageStream(REPLY)
    data = s.start() + s.events([TextDelta("partial")]) + s.error(UpstreamError("upstream went away"))
    assert data.endswith(
        b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":"upstream went away"}}\n\n'
    )
    assert s.events([TextDelta("more")]) == b"" and s.end() == b"" and s.error(InternalError("x")) == b""
    client = sdk_client(200, data, "text/event-stream")
    with pytest.raises(anthropic.APIStatusError) as e:
        with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as st:
            st.get_final_message()
    assert e.value.body == {"type": "error", "error": {"type": "api_error", "message": "upstream went away"}}


def test_keepalive_and_eagerness() -> None:
    s = MessageStream(REPLY)
    assert s.eager is True
    assert s.keepalive() == b'event: ping\ndata: {"type":"ping"}\n\n'


def whole_answers() -> list[Completion]:
    return [
        TEXT_ANSWER,
        TOOL_ANSWER,
        Completion(content=None, tool_calls=[], finish_reason=LENGTH, usage=Usage(3, 1), reasoning="hmm"),
        Completion(content="x", tool_calls=[], finish_reason=STOP_SEQUENCE, usage=Usage(), stop_sequence="##"),
    ]


@pytest.mark.parametrize("answer", whole_answers())
def test_stream_of_an_answer_equals_its_whole_rendering(answer: Completion) -> None:
    """What the SDK accumulates from the stream is what to_message renders whole."""
    whole = to_message(answer, REPLY)
    final: dict[str, Any] = sdk_accumulate(render(answer.events())).to_dict()
    assert final["content"] == whole["content"]
    assert (final["stop_reason"], final["stop_sequence"]) == (whole["stop_reason"], whole["stop_sequence"])
    assert {k: final["usage"][k] for k in whole["usage"]} == whole["usage"]


def test_real_sdk_client_reads_the_stream_and_the_whole_message() -> None:
    client = sdk_client(200, render(TOOL_EVENTS, keepalive=True), "text/event-stream")
    with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as st:
        texts = list(st.text_stream)
        final = st.get_final_message()
    assert "".join(texts) == "I'll check both."
    assert final.stop_reason == "tool_use" and [b.type for b in final.content] == ["text", "tool_use", "tool_use"]

    client = sdk_client(200, orjson.dumps(to_message(TOOL_ANSWER, REPLY)), "application/json")
    msg = client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert msg.id == REPLY.id and msg.stop_reason == "tool_use"
    assert msg.content[3].input == {"location": "Paris", "unit": "c"}  # type: ignore[union-attr]


# ---- errors, models, the dialect object -----------------------------------------------------

ERRORS: list[tuple[BmoError, str, type[anthropic.APIStatusError]]] = [
    (InvalidRequest("bad"), "invalid_request_error", anthropic.BadRequestError),
    (MethodNotAllowed("no"), "invalid_request_error", anthropic.APIStatusError),
    (RequestTooLarge("big"), "request_too_large", anthropic.APIStatusError),
    (AuthenticationError("who"), "authentication_error", anthropic.AuthenticationError),
    (PermissionDenied("no"), "permission_error", anthropic.PermissionDeniedError),
    (NotFound("model 'x' not found", code="model_not_found"), "not_found_error", anthropic.NotFoundError),
    (RateLimited("slow down"), "rate_limit_error", anthropic.RateLimitError),
    (InternalError("oops"), "api_error", anthropic.InternalServerError),
    (UpstreamError("upstream said no"), "api_error", anthropic.InternalServerError),
    (BmoError("store down", status=503), "overloaded_error", anthropic.InternalServerError),
    (UpstreamTimeout("slow"), "timeout_error", anthropic.InternalServerError),
]


@pytest.mark.parametrize(("err", "etype", "exc"), ERRORS, ids=[f"{e.status}-{t}" for e, t, _ in ERRORS])
def test_error_envelope(err: BmoError, etype: str, exc: type[anthropic.APIStatusError]) -> None:
    assert error_type(err) == etype
    raw = render_error(err)
    assert orjson.loads(raw) == {"type": "error", "error": {"type": etype, "message": err.message}}
    assert ANTHROPIC.render_error(err) == raw
    client = sdk_client(err.status, raw, "application/json")
    with pytest.raises(exc) as e:
        client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == err.status and e.value.request_id == "req_1"
    assert e.value.body == orjson.loads(raw)


def test_errors_golden() -> None:
    assert_golden("anthropic_errors.json", {str(e.status): orjson.loads(render_error(e)) for e, _, _ in ERRORS})


def test_models() -> None:
    at = "2026-01-01T00:00:00Z"
    assert to_model("claude-bmo-coder", at) == {
        "type": "model",
        "id": "claude-bmo-coder",
        "display_name": "claude-bmo-coder",
        "created_at": at,
    }
    page = to_model_list(["claude-bmo-coder", "claude-bmo-helper"], at)
    assert (page["has_more"], page["first_id"], page["last_id"]) == (False, "claude-bmo-coder", "claude-bmo-helper")
    assert to_model_list([], at) == {"data": [], "has_more": False, "first_id": None, "last_id": None}
    client = sdk_client(200, orjson.dumps(page), "application/json")
    assert [m.id for m in client.models.list()] == ["claude-bmo-coder", "claude-bmo-helper"]  # no endless paging


def test_dialect_object() -> None:
    d: Dialect = ANTHROPIC
    assert (d.name, d.id_prefix, d.request_id_header) == ("anthropic", "msg_", "request-id")
    s: StreamRenderer = d.stream(REPLY)
    assert s.start().startswith(b"event: message_start\n")
    assert d.parse(body(user("hi")), {}).messages[0].content == "hi"
    assert d.render_whole(TEXT_ANSWER, REPLY) == to_message(TEXT_ANSWER, REPLY)
