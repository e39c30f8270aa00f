"""Fitting a conversation into the model's context window.

Ollama silently drops the oldest tokens when a prompt exceeds ``num_ctx``, which can cut the
system prompt. Trimming on our side keeps the system prompt and whole messages instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.types import Message, Role

__all__ = ["MESSAGE_OVERHEAD_TOKENS", "estimate_tokens", "message_tokens", "trim_to_budget"]

# Chat templates wrap each message in role markers (e.g. "<|start_header_id|>user<|end...|>").
MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    """Estimate how many tokens ``text`` is, without a tokenizer.

    English text averages about four characters per token for the BPE tokenizers of current
    open models (Llama 3, Qwen, Mistral); code and other languages run denser, so this
    under-counts them somewhat. The caller's budget should leave some headroom.

    Args:
        text: Any text.

    Returns:
        ``ceil(len(text) / 4)``; 0 for the empty string.
    """
    return (len(text) + 3) // 4


def message_tokens(message: Message, estimate: Callable[[str], int] = estimate_tokens) -> int:
    """The estimated cost of one message: its content, tool calls, and the template overhead."""
    cost = estimate(message.content) + MESSAGE_OVERHEAD_TOKENS
    for call in message.tool_calls:
        cost += estimate(call.name) + estimate(str(call.arguments))
    return cost


def trim_to_budget(
    messages: Sequence[Message],
    budget_tokens: int,
    *,
    estimate: Callable[[str], int] = estimate_tokens,
) -> list[Message]:
    """Keep the system messages and the newest other messages that fit in ``budget_tokens``.

    System messages are always kept, even if they alone exceed the budget: dropping them would
    change who the bot is. The rest are taken newest first until the next one does not fit; the
    newest message is kept even if it alone is over budget (it is the question being asked).
    A tool result is never kept without the assistant message that asked for it.

    Args:
        messages: The conversation, oldest first.
        budget_tokens: How many prompt tokens may be used.
        estimate: Counts tokens in a string (default :func:`estimate_tokens`).

    Returns:
        The kept messages, in their original order.
    """
    system_idx = [i for i, m in enumerate(messages) if m.role == Role.SYSTEM]
    remaining = budget_tokens - sum(message_tokens(messages[i], estimate) for i in system_idx)
    others = [i for i, m in enumerate(messages) if m.role != Role.SYSTEM]

    kept: set[int] = set(system_idx)
    for position, idx in enumerate(reversed(others)):
        cost = message_tokens(messages[idx], estimate)
        if position > 0 and cost > remaining:
            break
        kept.add(idx)
        remaining -= cost

    # A leading tool result whose assistant call was dropped would confuse the model.
    for idx in others:
        if idx not in kept:
            continue
        if messages[idx].role == Role.TOOL and idx != others[-1]:
            kept.discard(idx)
            continue
        break
    return [m for i, m in enumerate(messages) if i in kept]
