"""ollabot: the platform-free conversation engine.

The names below are the public surface; ``tests/core/test_exported_members.py`` pins them.
Everything else in ``bot`` is free to change.
"""

from __future__ import annotations

from bot.batch import BatchItem, process_message_batch, process_stream
from bot.chat_manager import ChatManager
from bot.conversation.history import estimate_tokens, trim_to_budget
from bot.errors import (
    Busy,
    ChatError,
    ConfigError,
    GenerationTimeout,
    InputRejected,
    ModelNotFoundError,
    OllabotError,
    OllamaError,
    OllamaUnavailableError,
    PermissionDenied,
    RateLimited,
    StoreError,
    StreamInterrupted,
)
from bot.logs import configure_logging, log_interaction, register_secret
from bot.model.cache import ResponseCache
from bot.model.generation import ResponseStream, Timeouts
from bot.model.port import ChatDelta, ChatModel, ChatRequest
from bot.model.retry import RetryPolicy
from bot.model.tools import Tool, ToolRegistry, builtin_tools, tool
from bot.prompts import ChainOfThoughtPrompt, ChainResult, parse_chain
from bot.reply.streamer import Pacer, ReplyStatus, ReplyStreamer, ReplySurface
from bot.turn import Attachment, Author, SessionKey, Turn
from bot.types import (
    ChatMode,
    Message,
    ModelConfig,
    ModelInfo,
    ModeProfile,
    Outcome,
    PullProgress,
    Response,
    Role,
    StreamChunk,
    ToolCall,
)
from bot.validation import ChatInput, validate_input

__all__ = [
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
    "Pacer",
    "PermissionDenied",
    "PullProgress",
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
]
