"""The OpenAI Agents SDK in its default (Responses) mode runs an agent with a function tool through
bmo to a final answer: the scripted upstream asks for the tool, the SDK runs it, its output reaches
the upstream on the next call, and the SDK gets the final text."""

from __future__ import annotations

import json

import agents  # openai-agents, a dev dependency (pyproject.toml)
import openai

from fakes import BmoServer, FakeUpstream, Step


async def test_agents_sdk_runs_a_function_tool_through_bmo(bmo: BmoServer, upstream: FakeUpstream) -> None:
    agents.set_tracing_disabled(True)  # tracing would go to OpenAI
    upstream.enqueue(
        Step(tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": json.dumps({"city": "Oslo"})}]),
        Step(text="It is -3C in Oslo."),
    )
    seen: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"-3C in {city}"

    client = openai.AsyncOpenAI(base_url=bmo.base_url, api_key="x", max_retries=0)
    agent = agents.Agent(
        name="weather",
        instructions="Answer with the weather.",
        tools=[get_weather],
        model=agents.OpenAIResponsesModel(model="helper", openai_client=client),
    )
    result = await agents.Runner.run(agent, "What is the weather in Oslo?")
    assert result.final_output == "It is -3C in Oslo."
    assert seen == ["Oslo"]
    second = upstream.requests[1]["messages"]
    assert second[-1] == {"role": "tool", "content": "-3C in Oslo", "tool_call_id": "call_1"}
    assert any(m["role"] == "system" and m["content"] == "Answer with the weather." for m in second)
    await client.close()
