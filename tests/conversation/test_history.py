"""Trimming a conversation to the context budget."""

from __future__ import annotations

from bot.conversation.history import MESSAGE_OVERHEAD_TOKENS, estimate_tokens, trim_to_budget
from bot.types import Message, Role, ToolCall


def msg(role: Role, text: str) -> Message:
    return Message(role=role, content=text)


def test_estimate_is_about_four_characters_per_token() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("x" * 400) == 100


def test_everything_is_kept_when_it_fits() -> None:
    messages = [msg(Role.SYSTEM, "sys"), msg(Role.USER, "hi"), msg(Role.ASSISTANT, "hello")]
    assert trim_to_budget(messages, 1000) == messages


def test_oldest_messages_go_first_and_system_prompt_is_kept() -> None:
    system = msg(Role.SYSTEM, "You are helpful.")
    turns = [
        msg(Role.USER if i % 2 == 0 else Role.ASSISTANT, f"m{i} " + "x" * 36) for i in range(10)
    ]
    per_message = estimate_tokens(turns[0].content) + MESSAGE_OVERHEAD_TOKENS
    budget = estimate_tokens(system.content) + MESSAGE_OVERHEAD_TOKENS + 3 * per_message
    kept = trim_to_budget([system, *turns], budget)
    assert kept == [system, *turns[-3:]]


def test_system_prompt_is_kept_even_when_it_alone_exceeds_the_budget() -> None:
    system = msg(Role.SYSTEM, "s" * 400)
    question = msg(Role.USER, "what now?")
    kept = trim_to_budget([system, msg(Role.USER, "old"), msg(Role.ASSISTANT, "a"), question], 10)
    assert kept == [system, question]


def test_newest_message_is_kept_even_if_over_budget() -> None:
    big = msg(Role.USER, "q" * 1000)
    assert trim_to_budget([msg(Role.USER, "old"), big], 5) == [big]


def test_order_is_preserved_with_system_messages_in_the_middle() -> None:
    messages = [
        msg(Role.SYSTEM, "a"),
        msg(Role.USER, "b"),
        msg(Role.SYSTEM, "c"),
        msg(Role.USER, "d"),
    ]
    assert trim_to_budget(messages, 1000) == messages


def test_orphan_tool_result_is_dropped_with_its_call() -> None:
    call = Message(
        role=Role.ASSISTANT, content="", tool_calls=(ToolCall(name="calculate", arguments={}),)
    )
    result = msg(Role.TOOL, "4")
    answer = msg(Role.ASSISTANT, "It is 4.")
    question = msg(Role.USER, "and 3+3?")
    cost = sum(
        estimate_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in (result, answer, question)
    )
    kept = trim_to_budget([msg(Role.USER, "2+2?"), call, result, answer, question], cost)
    assert kept == [answer, question]


def test_custom_estimator_is_used() -> None:
    messages = [msg(Role.USER, "one"), msg(Role.USER, "two"), msg(Role.USER, "three")]
    kept = trim_to_budget(messages, 2 * (1 + MESSAGE_OVERHEAD_TOKENS), estimate=lambda _t: 1)
    assert kept == messages[-2:]
