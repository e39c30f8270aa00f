"""Tools: schemas, the registry's never-raising runner, and the built-ins."""

from __future__ import annotations

import asyncio
import re
import tracemalloc

import pytest
from pydantic import BaseModel

from bot.model.tools import (
    CalculationError,
    Tool,
    ToolRegistry,
    builtin_tools,
    evaluate_expression,
    tool,
)
from bot.types import ToolCall


class EchoArgs(BaseModel):
    text: str
    times: int = 1


@tool("echo", "Repeat the text.", EchoArgs)
async def echo(args: EchoArgs) -> str:
    return args.text * args.times


class NoArgs(BaseModel):
    pass


@tool("slow", "Never finishes in time.", NoArgs)
async def slow(_args: NoArgs) -> str:
    await asyncio.sleep(3600)
    return "never"


@tool("broken", "Always fails.", NoArgs)
async def broken(_args: NoArgs) -> str:
    raise RuntimeError("disk on fire")


def registry(timeout: float = 10.0) -> ToolRegistry:
    return ToolRegistry([echo, slow, broken, *builtin_tools()], timeout=timeout)


def test_schema_is_in_ollama_tools_form() -> None:
    schema = echo.schema()
    assert schema["type"] == "function"
    function = schema["function"]
    assert function["name"] == "echo"
    assert function["description"] == "Repeat the text."
    assert function["parameters"]["type"] == "object"
    assert function["parameters"]["required"] == ["text"]
    assert set(function["parameters"]["properties"]) == {"text", "times"}


def test_registry_offers_every_schema_and_refuses_duplicates() -> None:
    names = [s["function"]["name"] for s in registry().schemas()]
    assert names == ["echo", "slow", "broken", "current_time", "calculate"]
    with pytest.raises(ValueError, match="duplicate"):
        ToolRegistry([echo, echo])


async def test_good_call_returns_the_result() -> None:
    result = await registry().run(ToolCall(name="echo", arguments={"text": "ab", "times": 2}))
    assert result == "abab"


async def test_unknown_tool_is_an_error_text_listing_the_tools() -> None:
    result = await registry().run(ToolCall(name="rm_rf", arguments={}))
    assert result.startswith("Error: unknown tool 'rm_rf'")
    assert "calculate" in result


async def test_bad_arguments_are_an_error_text_naming_the_field() -> None:
    result = await registry().run(ToolCall(name="echo", arguments={"times": "lots"}))
    assert result.startswith("Error: bad arguments for echo")
    assert "text" in result
    assert "times" in result


async def test_timeout_is_an_error_text() -> None:
    result = await registry(timeout=0.05).run(ToolCall(name="slow"))
    assert result == "Error: slow took longer than 0.05 s and was stopped."


async def test_exception_is_an_error_text() -> None:
    result = await registry().run(ToolCall(name="broken"))
    assert result == "Error: broken failed: RuntimeError: disk on fire"


async def test_current_time_in_a_known_zone() -> None:
    result = await registry().run(
        ToolCall(name="current_time", arguments={"timezone": "Asia/Tokyo"})
    )
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d JST \(UTC\+0900\) Asia/Tokyo", result)


async def test_current_time_unknown_zone_is_a_clear_error() -> None:
    result = await registry().run(
        ToolCall(name="current_time", arguments={"timezone": "Mars/Olympus"})
    )
    assert result.startswith("Error: unknown time zone 'Mars/Olympus'")
    traversal = await registry().run(
        ToolCall(name="current_time", arguments={"timezone": "../../etc/passwd"})
    )
    assert traversal.startswith("Error: unknown time zone")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("-2 ** 2", "-4"),
        ("7 // 2 + 7 % 2", "4"),
        ("2 ^ 10", "1024"),
        ("sqrt(16) + abs(-1)", "5"),
        ("1 / 4", "0.25"),
        ("round(pi, 2)", "3.14"),
    ],
)
async def test_calculate_arithmetic(expression: str, expected: str) -> None:
    result = await registry().run(ToolCall(name="calculate", arguments={"expression": expression}))
    assert result == expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('true')", "unknown function"),
        ("().__class__", "not arithmetic"),
        ("'a' * 3", "only numbers"),
        ("x + 1", "unknown name"),
        ("2 ** 100000", "exponents above"),
        ("10 ** 1000 * 10 ** 1000 * 10 ** 1000 * 10 ** 1000 * 10 ** 1000", "too large"),
        ("1 / 0", "division by zero"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 << 3", "only +"),
        ("1 +", "not valid"),
        ("1" + " + 1" * 100, "longer than 200"),
        ("sqrt(-1)", "sqrt"),
        ("True + 1", "only numbers"),
        ("10.0 ** 999", "too large"),
        ("1e308 * 10", "too large"),
        ("10 ** 1000 / 3", "too large"),
        ("log(0)", "log"),
    ],
)
def test_calculator_refuses_what_is_not_safe_arithmetic(expression: str, reason: str) -> None:
    with pytest.raises(CalculationError, match=reason):
        evaluate_expression(expression)


async def test_calculator_error_reaches_the_model_as_text() -> None:
    result = await registry().run(ToolCall(name="calculate", arguments={"expression": "1/0"}))
    assert result == "Error: cannot calculate '1/0': division by zero."


def test_tool_built_without_decorator() -> None:
    async def shout(args: EchoArgs) -> str:
        return args.text.upper()

    made = Tool(name="shout", description="Shout.", args_model=EchoArgs, func=shout)
    assert made.schema()["function"]["name"] == "shout"


@pytest.mark.parametrize("expression", ["(9 ** 999) ** 999", "(2 ** 999) ** 999"])
def test_calculator_refuses_an_oversized_operation_before_computing_it(expression: str) -> None:
    # The refusal must come from the operands' sizes: computing (9**999)**999 first (a
    # 3-million-bit integer, ~400 kB, ~0.3 s of a blocked event loop) and checking after
    # shows up as a peak in allocated memory, which does not depend on the machine's speed.
    tracemalloc.start()
    try:
        with pytest.raises(CalculationError, match="too large"):
            evaluate_expression(expression)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64_000


def test_calculator_still_computes_results_just_under_the_size_limit() -> None:
    assert evaluate_expression("2 ** 1000 * 2 ** 1000") == 2**2000
    assert evaluate_expression("(2 ** 14) ** 999") == 2 ** (14 * 999)
