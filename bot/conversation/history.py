"""Fitting a conversation into the model's context window.

Ollama runs every request with ``options.num_ctx`` or, without it, its own default (4,096 tokens
on current releases, 2,048 on older ones) whatever the model's ``/api/show`` advertises, and a
prompt longer than that loses its oldest messages silently. So the window is chosen here, by one
rule for the engine and ``ChatManager`` (:func:`context_window`), sent as ``num_ctx`` on every
request, and the conversation is trimmed to it on our side (:func:`trim_to_budget`), keeping the
system prompt and whole messages. The window stays the same from one request to the next for a
model: a different ``num_ctx`` makes Ollama reload the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.types import DEFAULT_CONTEXT_LENGTH, MIN_CONTEXT_LENGTH, Message, Role

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_CONTEXT_LENGTH",
    "MESSAGE_OVERHEAD_TOKENS",
    "MIN_CONTEXT_LENGTH",
    "context_window",
    "estimate_tokens",
    "message_chars",
    "message_tokens",
    "prompt_budget",
    "trim_to_budget",
]

# Chat templates wrap each message in role markers (e.g. "<|start_header_id|>user<|end...|>").
MESSAGE_OVERHEAD_TOKENS = 4
CHARS_PER_TOKEN = 4


def context_window(model_max: int | None, wanted: int | None = None) -> int:
    """The context window (``num_ctx``) to run a model with.

    Args:
        model_max: The longest context the model supports (``/api/show``); ``None`` if unknown.
        wanted: The configured or per-place ``context_length``; ``None`` for
            :data:`DEFAULT_CONTEXT_LENGTH`.

    Returns:
        ``wanted`` capped at the model's maximum (Ollama caps it there too).
    """
    length = DEFAULT_CONTEXT_LENGTH if wanted is None else wanted
    if model_max:
        length = min(length, model_max)
    return length


def prompt_budget(context_length: int, reply_reserve: int) -> int:
    """Tokens the prompt may use in a window: all but the room kept for the reply.

    The reserve is at most half the window, so a small window still holds a question.
    """
    return context_length - min(reply_reserve, context_length // 2)


def message_chars(tokens: int) -> int:
    """The longest content a message costing at most ``tokens`` may have (by the estimate)."""
    return max(0, (tokens - MESSAGE_OVERHEAD_TOKENS) * CHARS_PER_TOKEN)


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
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


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
