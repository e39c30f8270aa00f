"""The status line at the bottom of the terminal chat: model, mode, context used, last speed."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StatusLine"]


@dataclass(slots=True)
class StatusLine:
    """What the status line shows.

    Attributes:
        model: The model that answers in this chat.
        mode: The answer style.
        context_used: Tokens the conversation filled at the last reply (its prompt and answer).
        context_length: Tokens the model is run with.
        tokens_per_second: The last reply's speed.
    """

    model: str = ""
    mode: str = ""
    context_used: int | None = None
    context_length: int | None = None
    tokens_per_second: float | None = None

    def render(self) -> str:
        """``llama3.2 · balanced · context 1,234/8,192 · 38.2 tokens/s``."""
        parts = [self.model or "(model unknown)"]
        if self.mode:
            parts.append(self.mode)
        if self.context_length:
            used = f"{self.context_used:,}" if self.context_used is not None else "0"
            parts.append(f"context {used}/{self.context_length:,}")
        if self.tokens_per_second is not None:
            parts.append(f"{self.tokens_per_second:.1f} tokens/s")
        return " \N{MIDDLE DOT} ".join(parts)
