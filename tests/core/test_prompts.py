"""Chain-of-thought prompts: the schema, the messages, and the tolerant parser."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.prompts import ChainOfThoughtPrompt, ChainResult, parse_chain, strip_step_number
from bot.types import Role

GOOD = {"steps": ["Add 2 and 3", "Multiply by 4"], "reasoning": "2+3=5, 5*4=20", "solution": "20"}
EXPECTED = ChainResult(reasoning="2+3=5, 5*4=20", solution="20", steps=GOOD["steps"])  # type: ignore[arg-type]


def test_schema_requires_steps_reasoning_and_solution() -> None:
    schema = ChainOfThoughtPrompt("2+2").schema()
    assert schema["type"] == "object"
    assert schema["required"] == ["steps", "reasoning", "solution"]
    assert schema["properties"]["steps"] == {"type": "array", "items": {"type": "string"}}
    assert schema["properties"]["solution"] == {"type": "string"}


def test_step_count_is_pinned_in_the_schema_and_the_prompt() -> None:
    numbered = ChainOfThoughtPrompt("task", steps=3)
    assert numbered.schema()["properties"]["steps"]["minItems"] == 3
    assert numbered.schema()["properties"]["steps"]["maxItems"] == 3
    assert "exactly 3 steps" in numbered.user_text()

    named = ChainOfThoughtPrompt("task", steps=["Read", "Solve"])
    assert named.schema()["properties"]["steps"]["maxItems"] == 2
    assert "1. Read\n2. Solve" in named.user_text()


def test_messages_are_system_then_task_and_keep_the_callers_system_prompt() -> None:
    messages = ChainOfThoughtPrompt("What is 2+2?").messages(system_prompt="You are a pirate.")
    assert [m.role for m in messages] == [Role.SYSTEM, Role.USER]
    assert messages[0].content.startswith("You are a pirate.")
    assert "JSON" in messages[0].content
    assert messages[1].content == "Task: What is 2+2?"


def test_parses_clean_json() -> None:
    assert parse_chain(json.dumps(GOOD)) == EXPECTED


def test_parses_json_in_a_code_fence_with_chatter_around_it() -> None:
    text = f"Sure! Here it is:\n```json\n{json.dumps(GOOD, indent=2)}\n```\nHope that helps."
    assert parse_chain(text) == EXPECTED


def test_parses_json_with_trailing_junk() -> None:
    assert parse_chain(json.dumps(GOOD) + "\n\nLet me know {if} you need more.") == EXPECTED


def test_json_synonyms_and_odd_types_are_accepted() -> None:
    text = json.dumps({"Answer": 20, "explanation": ["first", "second"], "steps": "1. a\n2. b"})
    assert parse_chain(text) == ChainResult(
        reasoning="first\nsecond", solution="20", steps=["a", "b"]
    )


def test_json_without_known_keys_falls_back_to_prose() -> None:
    result = parse_chain('{"foo": 1}\n\nThe answer is 4.')
    assert result.solution == "The answer is 4."


def test_parses_prose_with_markers_and_numbered_steps() -> None:
    text = (
        "Reasoning:\n1. Two apples plus two apples.\n2. Count them.\n\n**Final answer:** 4 apples"
    )
    result = parse_chain(text)
    assert result.solution == "4 apples"
    assert result.steps == ["Two apples plus two apples.", "Count them."]
    assert result.reasoning.startswith("1. Two apples")


def test_parses_prose_with_answer_marker_after_a_preamble() -> None:
    result = parse_chain("We add the numbers.\nStep 1: 2+2\nAnswer: 4")
    assert result.solution == "4"
    assert result.steps == ["2+2"]
    assert "We add the numbers." in result.reasoning


def test_plain_prose_without_markers_uses_the_last_paragraph_as_solution() -> None:
    result = parse_chain("First we think.\nThen we think more.\n\nIt is 42.")
    assert result == ChainResult(
        reasoning="First we think.\nThen we think more.", solution="It is 42.", steps=[]
    )
    one_line = parse_chain("42")
    assert one_line.solution == "42"


def test_empty_text_gives_an_empty_result() -> None:
    assert parse_chain("") == ChainResult()
    assert parse_chain("   \n") == ChainResult()


def test_deeply_nested_json_does_not_crash() -> None:
    parse_chain("{" + '"a":[' * 5000 + "]" * 5000 + "}")
    parse_chain("{" * 10_000)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parser_never_crashes_on_arbitrary_text(text: str) -> None:
    result = parse_chain(text)
    assert isinstance(result, ChainResult)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["steps", "reasoning", "solution", "answer", "other"]), json_values
    ),
    st.text(max_size=20),
    st.text(max_size=20),
)
def test_parser_never_crashes_on_arbitrary_json_shapes(
    data: dict[str, object], before: str, after: str
) -> None:
    result = parse_chain(before + json.dumps(data) + after)
    assert isinstance(result, ChainResult)


def test_a_raw_newline_inside_a_json_string_is_still_read_as_json() -> None:
    # llama.cpp's grammar lets a raw newline into a string (1 reply in 10 with a small model).
    text = '{"steps": ["Add\nthe numbers"], "reasoning": "Easy.", "solution": "4"}'
    assert parse_chain(text) == ChainResult(
        reasoning="Easy.", solution="4", steps=["Add\nthe numbers"]
    )


def test_a_reply_cut_off_inside_its_json_keeps_what_it_had_written() -> None:
    cut = '{ "steps": ["Count the apples", "Subtract the eaten ones"], "reasoning": "There we'
    assert parse_chain(cut) == ChainResult(
        reasoning="There we", steps=["Count the apples", "Subtract the eaten ones"]
    )
    fenced = '```json\n{"steps": ["One"], "solution": "Forty'
    assert parse_chain(fenced) == ChainResult(solution="Forty", steps=["One"])


@pytest.mark.parametrize(
    "step", ["1. Add", "1) Add", "Step 1: Add", "step 1 - Add", "  3.  Add", "Add"]
)
def test_steps_the_model_numbered_itself_are_not_numbered_twice(step: str) -> None:
    assert parse_chain(json.dumps({"steps": [step], "solution": "x"})).steps == ["Add"]
    assert strip_step_number(step) == "Add"


def test_a_step_that_starts_with_a_number_that_is_not_its_own_keeps_it() -> None:
    assert strip_step_number("3 apples remain") == "3 apples remain"
    assert strip_step_number("2.5 is half of 5") == "2.5 is half of 5"
