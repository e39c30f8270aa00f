"""The tool catalogue and one reply's tool session, with the built-ins (no server needed)."""

from __future__ import annotations

import re

from ollama import Tool as OllamaTool  # what the real client sends, after its own model

from bot.model.toolbox import ToolBox, ToolCallRecord, model_names, ollama_parameters
from bot.model.tools import builtin_tools
from bot.types import ToolCall

SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_model_names_follow_the_function_name_rules_and_map_back_one_to_one() -> None:
    qualified = [
        "calculate",
        "files.read_file",
        "files.read.file",  # a dot inside a tool name
        "files.read_file ",  # would collide once cleaned
        "web-search.find me",
        "s." + "x" * 100,
        "s." + "x" * 99 + "y",  # same 64-character prefix as the one before
    ]
    names = model_names(qualified)
    assert names["calculate"] == "calculate"
    assert names["files.read_file"] == "files__read_file"
    assert names["web-search.find me"] == "web-search__find_me"
    assert all(SAFE.match(name) for name in names.values())
    assert len(set(names.values())) == len(qualified)
    assert model_names(reversed(qualified)) == names  # stable whatever the order


async def test_builtin_calls_are_validated_and_refusals_are_errors() -> None:
    box = ToolBox(builtin_tools())
    seen: list[ToolCallRecord] = []
    session = box.session(lambda entry: True, on_call=seen.append)
    assert {s["function"]["name"] for s in session.schemas()} == {"current_time", "calculate"}
    assert await session.run(ToolCall(name="calculate", arguments={"expression": "6*7"})) == "42"
    wrong = await session.run(ToolCall(name="calculate", arguments={"expr": "1"}))
    assert wrong.startswith("Error: invalid arguments for calculate: arguments: 'expression'")
    refused = await session.run(ToolCall(name="calculate", arguments={"expression": "1/0"}))
    assert refused.startswith("Error: cannot calculate '1/0': division by zero")
    assert [(r.name, r.ok) for r in session.calls] == [
        ("calculate", True),
        ("calculate", False),
        ("calculate", False),
    ]
    assert [r.ok for r in seen] == [None, True, None, False, None, False]


async def test_a_tool_not_offered_is_refused_without_running() -> None:
    box = ToolBox(builtin_tools())
    session = box.session(lambda entry: entry.qualified == "current_time")
    answer = await session.run(ToolCall(name="calculate", arguments={"expression": "1+1"}))
    assert answer == (
        "Error: the tool 'calculate' is not available here. Available tools: current_time."
    )
    assert session.calls[0].ok is False


async def test_a_long_result_is_cut_to_the_limit() -> None:
    box = ToolBox(builtin_tools(), max_result_chars=100)
    session = box.session(lambda entry: True)
    answer = await session.run(ToolCall(name="calculate", arguments={"expression": "9**200"}))
    assert len(answer) <= 100
    assert answer.endswith("more characters]")


def test_schemas_reach_ollama_with_refs_inlined_and_optional_types_folded() -> None:
    schema = {
        "type": "object",
        "$defs": {"Box": {"type": "object", "properties": {"w": {"type": "integer"}}}},
        "properties": {
            "path": {"type": "string", "description": "Where"},
            "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
            "box": {"$ref": "#/$defs/Box"},
        },
        "required": ["path"],
    }
    parameters = ollama_parameters(schema)
    assert parameters["properties"]["limit"]["type"] == ["integer", "null"]
    assert parameters["properties"]["tags"]["items"] == {"type": "string"}
    assert parameters["properties"]["box"]["properties"] == {"w": {"type": "integer"}}
    assert "$defs" not in parameters
    sent = OllamaTool.model_validate(
        {"type": "function", "function": {"name": "t", "parameters": parameters}}
    ).model_dump(exclude_none=True)
    assert sent["function"]["parameters"]["properties"]["limit"] == {"type": ["integer", "null"]}
