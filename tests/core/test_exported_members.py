"""The public surface of ``bot`` is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import bot

EXPECTED = {
    "Attachment",
    "Author",
    "BatchItem",
    "Busy",
    "ChainOfThoughtPrompt",
    "ChainResult",
    "ChatDelta",
    "ChatError",
    "ChatInput",
    "ChatManager",
    "ChatMode",
    "ChatModel",
    "ChatRequest",
    "ConfigError",
    "GenerationTimeout",
    "InputRejected",
    "Message",
    "ModeProfile",
    "ModelConfig",
    "ModelInfo",
    "ModelNotFoundError",
    "OllabotError",
    "OllamaError",
    "OllamaUnavailableError",
    "Outcome",
    "PermissionDenied",
    "PullProgress",
    "Pacer",
    "RateLimited",
    "ReplyStatus",
    "ReplyStreamer",
    "ReplySurface",
    "Response",
    "ResponseCache",
    "ResponseStream",
    "RetryPolicy",
    "Role",
    "SessionKey",
    "StoreError",
    "StreamChunk",
    "StreamInterrupted",
    "Timeouts",
    "Tool",
    "ToolCall",
    "ToolRegistry",
    "Turn",
    "builtin_tools",
    "configure_logging",
    "estimate_tokens",
    "log_interaction",
    "parse_chain",
    "process_message_batch",
    "process_stream",
    "register_secret",
    "tool",
    "trim_to_budget",
    "validate_input",
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(bot.__all__) == EXPECTED
    assert len(bot.__all__) == len(EXPECTED), "a name is listed twice in __all__"


def test_every_exported_name_exists_and_says_it_is_public() -> None:
    for name in bot.__all__:
        member = getattr(bot, name)
        module = getattr(member, "__module__", "bot")
        assert module.startswith("bot"), f"{name} comes from {module}"
        assert not module.split(".")[-1].startswith("_"), f"{name} lives in a private module"


def test_all_is_sorted_so_diffs_stay_readable() -> None:
    assert bot.__all__ == sorted(bot.__all__)
