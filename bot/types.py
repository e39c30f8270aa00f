"""Typed values the engine passes around: messages, stream chunks, responses, modes, model config.

These are the public data types of the engine. Pydantic models sit at the boundary (they validate
what callers hand in); everything here is platform-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Role(StrEnum):
    """Who said a message, in Ollama's vocabulary."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class Outcome(StrEnum):
    """How a generation ended. Stored with every assistant message and shown to the user.

    ``LENGTH`` is a reply the model ended at a length limit (Ollama's ``done_reason: "length"``:
    ``num_predict`` reached, or the context window full): it looks whole but was cut.
    """

    COMPLETE = "complete"
    LENGTH = "length"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    ERROR = "error"


class ToolCall(BaseModel):
    """One function call the model asked for."""

    model_config = ConfigDict(frozen=True)

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """One message of a conversation.

    ``content`` is stripped and must not be empty, except for an assistant message that only
    carries tool calls.
    """

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    tool_calls: tuple[ToolCall, ...] = ()
    images: tuple[bytes, ...] = ()

    @field_validator("content")
    @classmethod
    def _strip_content(cls, value: str) -> str:
        return value.strip()

    def model_post_init(self, __context: Any) -> None:
        if not self.content and not self.tool_calls:
            raise ValueError("message content must not be empty")


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of a streamed reply, as it arrives from the model.

    A frozen dataclass rather than a pydantic model: one is built per token, and the engine
    builds it from values already checked (no validation needed on that path).
    """

    content: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    done: bool = False


class Response(BaseModel):
    """A whole reply and what it cost.

    ``token_count`` is Ollama's ``eval_count``; durations are seconds. ``outcome`` says whether the
    reply is complete; a reply cut by a dropped connection is ``INTERRUPTED`` and ``error`` holds
    the user-facing reason.

    Ollama sends its counters in the last line of a reply, which a stopped or interrupted reply
    never gets. Then ``token_count`` also counts the chunks streamed since the last counters (one
    token each, as Ollama streams them) and ``token_count_estimated`` is true; no speed is
    computed from such a reply.
    """

    content: str = ""
    thinking: str = ""
    token_count: int = 0
    token_count_estimated: bool = False
    prompt_token_count: int = 0
    model_name: str = ""
    done_reason: str | None = None
    time_to_first_token: float | None = None
    total_duration: float | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    outcome: Outcome = Outcome.COMPLETE
    error: str | None = None
    cached: bool = False

    @property
    def tokens_per_second(self) -> float | None:
        """Generation speed, first token to last; ``None`` without Ollama's counters."""
        if not self.token_count or self.token_count_estimated or self.total_duration is None:
            return None
        gen_time = self.total_duration - (self.time_to_first_token or 0.0)
        if gen_time <= 0:
            return None
        return self.token_count / gen_time


class ModeProfile(BaseModel):
    """The sampling options and system-prompt addendum a chat mode stands for."""

    model_config = ConfigDict(frozen=True)

    temperature: float
    top_p: float
    addendum: str


class ChatMode(StrEnum):
    """How the model should answer. Each mode is a set of sampling options plus a prompt addendum.

    - ``BALANCED``: temperature 0.7, top_p 0.9; no addendum. The default.
    - ``PRECISE``: temperature 0.2, top_p 0.5; asks for short, factual, checked answers.
    - ``CREATIVE``: temperature 1.0, top_p 0.95; asks for original, vivid answers.
    - ``CODE``: temperature 0.1, top_p 0.5; asks for working code in fenced blocks.
    """

    BALANCED = "balanced"
    PRECISE = "precise"
    CREATIVE = "creative"
    CODE = "code"

    @property
    def profile(self) -> ModeProfile:
        return _MODE_PROFILES[self]


_MODE_PROFILES: dict[ChatMode, ModeProfile] = {
    ChatMode.BALANCED: ModeProfile(temperature=0.7, top_p=0.9, addendum=""),
    ChatMode.PRECISE: ModeProfile(
        temperature=0.2,
        top_p=0.5,
        addendum="Answer precisely and concisely. State facts you are sure of; say when unsure.",
    ),
    ChatMode.CREATIVE: ModeProfile(
        temperature=1.0,
        top_p=0.95,
        addendum="Be imaginative and original; vivid language is welcome.",
    ),
    ChatMode.CODE: ModeProfile(
        temperature=0.1,
        top_p=0.5,
        addendum=(
            "You are a careful programmer. Give working code in fenced code blocks with the "
            "language named, and explain briefly."
        ),
    ),
}


DEFAULT_CONTEXT_LENGTH = 8192
"""The context window asked for when nothing names one (capped at the model's maximum): a
model's advertised maximum (often 131,072) would make Ollama allocate a KV cache of gigabytes."""

MIN_CONTEXT_LENGTH = 512
"""The smallest context window that may be configured: less leaves no room for a question and a
reply."""


class ModelConfig(BaseModel):
    """Which model to use and how to sample from it.

    ``None`` for a sampling field means "the mode's value" (or the model's own default).
    ``context_length`` of ``None`` means :data:`DEFAULT_CONTEXT_LENGTH`; either way it is capped
    at the model's maximum (see :func:`bot.conversation.history.context_window`).
    """

    model_config = ConfigDict(frozen=True)

    name: str = "llama3.2"
    context_length: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    num_predict: int | None = None
    keep_alive: str | None = None
    think: bool = False

    def options(self, mode: ChatMode = ChatMode.BALANCED) -> dict[str, Any]:
        """The Ollama ``options`` for this config under ``mode`` (explicit values win)."""
        profile = mode.profile
        opts: dict[str, Any] = {
            "temperature": profile.temperature if self.temperature is None else self.temperature,
            "top_p": profile.top_p if self.top_p is None else self.top_p,
        }
        if self.seed is not None:
            opts["seed"] = self.seed
        if self.num_predict is not None:
            opts["num_predict"] = self.num_predict
        if self.context_length is not None:
            opts["num_ctx"] = self.context_length
        return opts


class ModelInfo(BaseModel):
    """What Ollama says about an installed model."""

    model_config = ConfigDict(frozen=True)

    name: str
    context_length: int = 4096
    capabilities: frozenset[str] = frozenset()
    size: int | None = None
    family: str | None = None
    parameter_size: str | None = None

    @property
    def supports_tools(self) -> bool:
        return "tools" in self.capabilities

    @property
    def supports_thinking(self) -> bool:
        return "thinking" in self.capabilities

    @property
    def supports_vision(self) -> bool:
        return "vision" in self.capabilities


class PullProgress(BaseModel):
    """One progress report of a model pull."""

    model_config = ConfigDict(frozen=True)

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None

    @property
    def fraction(self) -> float | None:
        if not self.total or self.completed is None:
            return None
        return min(1.0, self.completed / self.total)
