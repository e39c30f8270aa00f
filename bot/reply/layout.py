"""What a streamed reply should look like: the display text, its frozen parts, its final state.

:class:`ReplyLayout` is the renderer half of :class:`bot.reply.streamer.ReplyStreamer`: it keeps
the answer and thinking as they arrive, the display text (a "💭" thinking block, then the
answer), the parts already frozen by :func:`bot.reply.splitting.next_cut`, and the final state
with the error or empty-answer notice and the footer. It makes no platform call; the streamer's
flusher compares what it says with what is shown and sends or edits the difference.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.reply.splitting import Fence, Part, max_reserve, next_cut
from bot.reply.surface import ReplyStatus
from bot.types import Outcome

__all__ = ["PLACEHOLDER", "THINKING_MARK", "ReplyLayout"]


THINKING_MARK = "> \N{THOUGHT BALLOON} "
"""How a shown thinking block starts (a Markdown blockquote)."""

PLACEHOLDER = "\N{HORIZONTAL ELLIPSIS}"
"""Shown for a message whose part is only whitespace (platforms refuse empty messages)."""

_EMPTY_NOTICES: Mapping[Outcome, str] = {
    Outcome.COMPLETE: "(The model returned an empty answer.)",
    Outcome.LENGTH: "(The length limit was reached before any answer.)",
    Outcome.STOPPED: "(Stopped before any answer.)",
    Outcome.INTERRUPTED: "(Interrupted before any answer.)",
    Outcome.ERROR: "(The reply failed.)",
}


class ReplyLayout:
    """The text of one reply and how it is split into platform messages.

    Args:
        max_chars: The platform's longest message.
        show_thinking: Show the model's thinking before the answer, as a "💭" blockquote.
        max_thinking_chars: Thinking shown beyond this many characters is elided with "…".
        append_only: The surface can only add to what it showed (a terminal): the message
            being written gets no provisional closing fence while a code block is open, so
            each text it is given begins with the one before (see
            :func:`bot.reply.surface.is_append_only`).

    Raises:
        ValueError: ``max_chars`` is below :data:`bot.reply.splitting.MIN_MAX_CHARS`.
    """

    def __init__(
        self,
        max_chars: int,
        *,
        show_thinking: bool,
        max_thinking_chars: int,
        append_only: bool = False,
    ) -> None:
        next_cut("", 0, max_chars, more_coming=False)  # validates max_chars early
        self._max_chars = max_chars
        self._append_only = append_only
        self._show_thinking = show_thinking
        self._max_thinking_chars = max_thinking_chars

        self._answer: list[str] = []
        self._thinking: list[str] = []
        # The display text (thinking block, then answer) after the frozen parts, in pieces:
        # per-flush work stays proportional to one message, not to the whole reply.
        self._live: list[str] = []
        self._has_head = False
        self._thinking_shown = 0
        self._answer_started = False
        self._noted = False

        # Parts already decided; they never change (see bot.reply.splitting.next_cut).
        self.frozen: list[Part] = []
        self.frozen_texts: list[tuple[str, int]] = []
        self.version = 0  # bumped by every visible change; keys the cache below
        self._desired_cache: tuple[int, list[tuple[str, int]]] | None = None
        self._cut_fence: Fence | None = None
        self._final: tuple[list[Part], list[tuple[str, int]]] | None = None
        self._status: ReplyStatus | None = None
        self.footer = ""
        self.finishing = False

    def add_answer(self, content: str) -> None:
        """Append answer text (non-empty)."""
        if not self._answer_started:
            self._answer_started = True
            if self._has_head:
                self._live.append("\n\n")
        self._answer.append(content)
        self._live.append(content)
        self.version += 1

    def add_note(self, text: str, *, paragraph: bool = False) -> None:
        """Append text that is shown but is not part of the answer (a tool call's line).

        With ``paragraph``, it starts a new paragraph (after a blank line) unless it comes first.
        """
        if paragraph:
            tail = self._tail()
            if (tail or self.frozen) and not tail.endswith("\n\n"):
                text = ("\n" if tail.endswith("\n") else "\n\n") + text
        self._has_head = self._noted = True
        self._live.append(text)
        self.version += 1

    def add_thinking(self, thinking: str) -> bool:
        """Keep thinking text; return whether the display text changed."""
        self._thinking.append(thinking)
        # Thinking that arrives after the answer started (or after a note) is kept but not
        # shown: the displayed text only ever grows at its end, so frozen parts stay valid.
        shown = self._show_thinking and not self._answer_started and not self._noted
        if shown and self._show_more_thinking(thinking):
            self.version += 1
            return True
        return False

    def finish(self, status: ReplyStatus, footer: str) -> None:
        """The reply ended with ``status``; ``footer`` is the surface's rendering of it."""
        self.finishing = True
        self._status = status
        self.footer = self._fit_footer(footer)
        self.version += 1

    @property
    def text(self) -> str:
        """The answer so far."""
        if len(self._answer) > 1:
            self._answer[:] = ["".join(self._answer)]
        return self._answer[0] if self._answer else ""

    @property
    def thinking(self) -> str:
        """The model's thinking so far (shown or not)."""
        return "".join(self._thinking)

    def _show_more_thinking(self, thinking: str) -> bool:
        room = self._max_thinking_chars - self._thinking_shown
        if room <= 0:
            return False
        if not self._has_head:
            self._has_head = True
            self._live.append(THINKING_MARK)
        piece = thinking[:room]
        self._thinking_shown += len(piece)
        self._live.append(piece.replace("\n", "\n> "))
        if len(thinking) > room:
            self._live.append(" " + PLACEHOLDER)
            self._thinking_shown = self._max_thinking_chars
        return True

    def _tail(self) -> str:
        """The display text not yet in a frozen part."""
        if len(self._live) > 1:
            self._live[:] = ["".join(self._live)]
        return self._live[0] if self._live else ""

    def _notice(self) -> str:
        """What the reply adds so the user sees its outcome: the error, or why it is empty."""
        status = self._status
        assert status is not None
        blank = not self.text.strip()
        # The footer usually says what went wrong; when it does not, the text must.
        if status.error and status.error not in self.footer:
            notice = f"\N{WARNING SIGN} {status.error}"
        elif blank and not status.error:
            notice = _EMPTY_NOTICES[status.outcome]
        else:
            return ""
        before = self._has_head or not blank
        return ("\n\n" if before else "") + notice

    def _fit_footer(self, footer: str) -> str:
        room = max_reserve(self._max_chars) - 1  # one for the newline before it
        if len(footer) > room:
            footer = footer[: room - 1] + PLACEHOLDER
        return footer

    def final_state(self) -> tuple[list[Part], list[tuple[str, int]]]:
        if self._final is None:
            display = self._tail() + self._notice()
            parts = list(self.frozen)
            start, fence = 0, self._cut_fence
            reserve = len(self.footer) + 1 if self.footer else 0
            while (
                cut := next_cut(
                    display, start, self._max_chars, fence=fence, more_coming=False, reserve=reserve
                )
            ) is not None:
                parts.append(cut.part)
                start, fence = cut.end, cut.fence
            texts = [(_render(part), len(part.body)) for part in parts]
            last = self._open_text(parts[-1]) if parts and parts[-1].body.strip() else ""
            if self.footer:
                # Alone, the footer is the whole message: no blank lines before it.
                last = f"{last}\n{self.footer}" if last.strip() else self.footer.lstrip("\n")
            if parts:
                texts[-1] = (last or PLACEHOLDER, len(parts[-1].body))
            else:
                texts = [(last or PLACEHOLDER, 0)]
            self._final = (parts, texts)
        return self._final

    def desired(self) -> list[tuple[str, int]]:
        """The messages as they should look now: (text, body length) each."""
        if self.finishing:
            return self.final_state()[1]
        if self._desired_cache is not None and self._desired_cache[0] == self.version:
            return self._desired_cache[1]
        tail = self._tail()
        frozen_any = False
        while (
            cut := next_cut(tail, 0, self._max_chars, fence=self._cut_fence, more_coming=True)
        ) is not None:
            self.frozen.append(cut.part)
            self.frozen_texts.append((_render(cut.part), len(cut.part.body)))
            self._cut_fence = cut.fence
            tail = tail[cut.end :]
            frozen_any = True
        if frozen_any:
            self._live[:] = [tail]
        desired = list(self.frozen_texts)
        preview = next_cut(tail, 0, self._max_chars, fence=self._cut_fence, more_coming=False)
        # A part of nothing but whitespace waits for text rather than showing a placeholder.
        if preview is not None and preview.part.body.strip():
            desired.append((self._open_text(preview.part), len(preview.part.body)))
        self._desired_cache = (self.version, desired)
        return desired

    def _open_text(self, part: Part) -> str:
        """The message that shows the reply's last part, the one still being written.

        Platforms render each message's Markdown on its own, so a code block still open gets
        a provisional closing fence (the part's suffix), or the rest of the message would
        show as code. An append-only surface prints what is new and cannot take a line back:
        a fence shown now and gone with the next word would leave a stray line or blank
        lines inside the code, so it gets the text as written.
        """
        return part.prefix + part.body if self._append_only else part.text


def _render(part: Part) -> str:
    return part.text if part.body.strip() else PLACEHOLDER
