"""LangChain's ``ChatOpenAI``, unmodified, against the real gateway and the default base model."""

from __future__ import annotations

import pytest
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from conftest import MODEL
from gateway_process import GatewayProcess

pytestmark = pytest.mark.engine


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"Sunny in {city}"


class Person(BaseModel):
    name: str = Field(max_length=12)
    age: int


def _llm(gateway: GatewayProcess, **extra: object) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=f"{gateway.url}/v1", api_key="unused", model=MODEL, temperature=0, max_retries=0, **extra
    )


def test_invoke_and_stream(gateway: GatewayProcess) -> None:
    llm = _llm(gateway, max_tokens=8)
    assert llm.invoke("Name a colour.").content
    pieces = [chunk.content for chunk in llm.stream("Count to five.")]
    assert len(pieces) > 2 and "".join(str(p) for p in pieces)


def test_bind_tools_returns_tool_calls(gateway: GatewayProcess) -> None:
    llm = _llm(gateway, max_tokens=160).bind_tools([get_weather], tool_choice="get_weather")
    message = llm.invoke("What is the weather in Paris?")
    assert message.tool_calls, message
    assert message.tool_calls[0]["name"] == "get_weather"
    assert isinstance(message.tool_calls[0]["args"]["city"], str)


def test_with_structured_output(gateway: GatewayProcess) -> None:
    person = _llm(gateway, max_tokens=200).with_structured_output(Person).invoke("Describe a person.")
    assert isinstance(person, Person)
    assert len(person.name) <= 12
