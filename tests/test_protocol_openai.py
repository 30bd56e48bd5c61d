"""Pure protocol tests: no server. Request → internal model, internal events → wire bytes."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from bmo.chat import END, TOOL_CALLS, Completion, Finish, ToolCall, ToolCallDelta, ToolChoice, Usage
from bmo.errors import (
    AuthenticationError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from bmo.protocol.dialect import Reply
from bmo.protocol.openai import ChunkStream, parse_chat_request, parse_json_body, to_completion
from bmo.protocol.openai_upstream import ChunkParser, from_completion_body, to_upstream_body
from bmo.protocol.sse import SSEDecoder
from golden import assert_golden

FULL_REQUEST = {
    "model": "helper",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": "https://example.com/a.png"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
        {"role": "assistant", "tool_calls": [{"id": "call_2", "function": {"name": "x", "arguments": {"a": 1}}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": ""},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "thanks", "name": "ann"},
    ],
    "temperature": 0.5,
    "max_tokens": 100,
    "stop": ["\n\n"],
    "stream": True,
    "stream_options": {"include_usage": True},
    "tools": [{"type": "function", "function": {"name": "lookup", "description": "Look up", "parameters": {}}}],
    "tool_choice": "auto",
    "user": "u-1",
    "metadata": {"k": "v"},
    "store": False,
    "service_tier": "auto",
    "some_future_field": {"x": 1},
}


def test_full_request_parses_to_internal_model() -> None:
    req = parse_chat_request(FULL_REQUEST)
    assert_golden("request_full.internal.json", dataclasses.asdict(req))


def test_unknown_fields_are_accepted_and_ignored() -> None:
    req = parse_chat_request({"messages": [{"role": "user", "content": "hi"}], "frobnicate": True, "store": True})
    assert req.model == "default" and req.params == {} and not req.stream


def test_legacy_functions_become_tools() -> None:
    req = parse_chat_request(
        {
            "messages": [{"role": "user", "content": "hi"}],
            "functions": [{"name": "f", "parameters": {"type": "object"}}],
            "function_call": {"name": "f"},
        }
    )
    assert [t.name for t in req.tools] == ["f"]
    assert req.tool_choice == ToolChoice("tool", "f")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({}, "messages", "missing_messages"),
        ({"messages": []}, "messages", "missing_messages"),
        ({"messages": "hi"}, "messages", "invalid_value"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_value"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "invalid_value"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature", "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 9}, "temperature", "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens", "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream", "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "model": 3}, "model", "invalid_value"),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
            "tools[0].function.name",
            "invalid_value",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].image_url",
            "invalid_value",
        ),
    ],
)
def test_bad_requests_name_the_param(body: dict, param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_chat_request(body)
    assert e.value.param == param
    assert e.value.code == code
    assert e.value.status == 400


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,2]", b'"x"', b"\xff\xfe"])
def test_body_must_be_a_json_object(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_json_body(raw)
    assert e.value.code == "invalid_json"


def test_stream_chunks_golden() -> None:
    cs = ChunkStream("chatcmpl-X", 1700000000, "helper", include_usage=True)
    out = b"".join(
        [
            cs.start(),
            cs.text("Hel"),
            cs.text('lo "world"\n'),
            cs.reasoning("thinking"),
            cs.tool_call(ToolCallDelta(index=0, id="call_a", name="lookup", arguments="")),
            cs.tool_call(ToolCallDelta(index=0, arguments='{"q":')),
            cs.tool_call(ToolCallDelta(index=1, id="call_b", name="other", arguments="{}")),
            cs.finish("tool_calls"),
            cs.usage(Usage(3, 4)),
            cs.done(),
        ]
    )
    assert_golden("stream_chunks.sse", out)
    # every data line is one JSON document on one line, except the terminator
    for block in out.split(b"\n\n")[:-1]:
        assert block.startswith(b"data: ") and b"\n" not in block
        if block != b"data: [DONE]":
            orjson.loads(block[6:])


def test_usage_chunk_only_when_asked() -> None:
    cs = ChunkStream("chatcmpl-X", 1, "m", include_usage=False)
    assert cs.usage(Usage(1, 2)) == b""
    assert b'"usage"' not in cs.text("x") + cs.finish("stop")


def test_completion_golden() -> None:
    reply = Reply("chatcmpl-X", 1, "helper")
    text = to_completion(Completion(content="Hi!", tool_calls=[], finish_reason=END, usage=Usage(5, 2)), reply)
    tools = to_completion(
        Completion(
            content="",
            finish_reason=TOOL_CALLS,
            usage=Usage(5, 2),
            tool_calls=[ToolCall(id="call_1", name="lookup", arguments='{"q":"x"}')],
        ),
        reply,
    )
    assert tools["choices"][0]["message"]["content"] is None  # CLIENTS #11: null, not missing
    assert_golden("completion_text.json", text)
    assert_golden("completion_tool_calls.json", tools)


def test_error_bodies_golden() -> None:
    errs = [
        InvalidRequest("`messages` is required.", code="missing_messages", param="messages"),
        AuthenticationError("No API key was given."),
        PermissionDenied("needs ledger"),
        NotFound("The model `x` does not exist", code="model_not_found", param="model"),
        RequestTooLarge("too big"),
        RateLimited("busy", code="concurrency_limit"),
        UpstreamError("upstream up answered HTTP 500: boom", upstream_status=500),
        UpstreamTimeout("upstream up did not answer within 5s"),
    ]
    assert_golden("errors.json", [{"status": e.status, "body": e.body()} for e in errs])


def test_upstream_body_and_answers() -> None:
    req = parse_chat_request(FULL_REQUEST)
    body = to_upstream_body(
        model="gpt-x",
        messages=req.messages,
        params=req.params,
        tools=req.tools,
        tool_choice=ToolChoice("auto"),
        stream=True,
    )
    assert body["stream_options"] == {"include_usage": True}
    assert_golden("upstream_request.json", body)
    done = from_completion_body(
        {
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "reasoning_content": "hmm",
                        "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}],
                    },
                    "finish_reason": "",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }
    )
    assert done == Completion(
        content=None,
        tool_calls=[ToolCall("c1", "f", "{}")],
        finish_reason="tool_calls",
        usage=Usage(3, 2),
        reasoning="hmm",
    )


def test_chunk_parser_assigns_missing_tool_indexes() -> None:
    p = ChunkParser()
    evs = []
    for delta in (
        {"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": ""}}]},
        {"tool_calls": [{"function": {"arguments": "{}"}}]},
        {"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": "{"}}]},
        {"tool_calls": [{"function": {"arguments": "}"}}]},
    ):
        evs += p.feed({"choices": [{"delta": delta, "finish_reason": None}]})
    evs += p.feed({"choices": [{"delta": {}, "finish_reason": "eos_token"}]})
    assert [e.index for e in evs if isinstance(e, ToolCallDelta)] == [0, 0, 1, 1]
    assert evs[-1] == Finish("tool_calls")  # engine-specific reasons never reach clients (CLIENTS #8)


def test_sse_decoder_handles_split_frames_comments_and_crlf() -> None:
    d = SSEDecoder()
    got = []
    stream = b': hi\r\nretry: 10\r\n\r\ndata: {"a":\r\ndata: 1}\r\n\r\nevent: error\ndata:{"b":2}\n\ndata: [DONE]\n\n'
    for i in range(0, len(stream), 5):
        got += d.feed(stream[i : i + 5])
    assert got == [(None, b'{"a":\n1}'), ("error", b'{"b":2}'), (None, b"[DONE]")]


def test_sse_decoder_fast_path_matches_the_slow_path() -> None:
    whole = b'data: {"a":1}\n\ndata: {"b":2}\n\n'
    assert SSEDecoder().feed(whole) == [(None, b'{"a":1}'), (None, b'{"b":2}')]
    mixed = b'event: error\ndata: {"c":3}\n\ndata: [DONE]\n\n'
    assert SSEDecoder().feed(mixed) == [("error", b'{"c":3}'), (None, b"[DONE]")]
    d = SSEDecoder()
    assert d.feed(b'data: {"a"') == [] and d.feed(b":1}\n\n") == [(None, b'{"a":1}')]
    # one event per read, the commonest case, and its near misses
    assert SSEDecoder().feed(b'data: {"t":"x"}\n\n') == [(None, b'{"t":"x"}')]
    assert SSEDecoder().feed(b"data: a\r\n\n") == [(None, b"a")]
    assert SSEDecoder().feed(b"data: a\nb: 1\n\n") == [(None, b"a")]
    assert SSEDecoder().feed(b"data: a\ndata: b\n\n") == [(None, b"a\nb")]
    d = SSEDecoder()
    assert d.feed(b"data: a\n") == [] and d.feed(b"data: b\n\n") == [(None, b"a\nb")]


def test_chunk_parser_fast_path_for_plain_tokens() -> None:
    p = ChunkParser()
    assert p.feed({"choices": [{"delta": {"content": "hi"}, "finish_reason": None}]})[0].text == "hi"  # type: ignore[union-attr]
    assert p.feed({"choices": [{"delta": {"content": ""}, "finish_reason": None}]}) == []
    evs = p.feed({"choices": [{"delta": {"content": "x"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1}})
    assert [type(e).__name__ for e in evs] == ["TextDelta", "Finish", "Usage"]
