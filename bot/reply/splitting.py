"""Split a reply into platform messages without breaking its Markdown code fences.

A platform caps the length of one message (Discord: 2000 characters). A long reply becomes
several :class:`Part` objects. Each part is rendered as ``prefix + body + suffix``: the bodies are
consecutive slices of the reply (put together they give the reply back, exactly), and the prefix
and suffix are synthetic fence lines, so that a cut inside a fenced code block closes the block
at the end of one message and reopens it, with the same info string, at the start of the next.

A reply takes the fewest messages the splitting rules allow: each cut is the latest one that
keeps them, which is what makes the count the smallest (a later cut never leaves more text for
the messages after it). The rules: a cut is made at the start of a line, or after the whitespace
between two words, and inside a word only when no such place exists (a single word longer than a
message); a line inside a code block is not broken between its words when a line of that code
block can end the message at least half full (copied code keeps its lines); a cut never leaves a
part of nothing but whitespace when another choice exists, and never makes a fence line out of
text that was not one (a cut starts a new line in the next message). Paragraph and line breaks
are therefore taken only when they are the latest place: a nicer break earlier in the message
would be paid for, sooner or later, with one more message.

Streaming needs the same cuts made incrementally: :func:`next_cut` decides one part at a time and
only looks at a window of ``max_chars + 1`` characters after the part's start, so a part frozen
while the reply is still growing is exactly the part :func:`split_reply` makes from the whole
reply. Fence state is tracked the way each rendered message will be parsed (a cut starts a new
line), so every rendered part has balanced fences.

A line is what lies between two ``"\n"`` (the line break of the Markdown that Discord and Matrix
clients render); a ``"\r"`` just before the ``"\n"`` belongs to the line ending. Every other
character ``str.splitlines()`` would break on (a lone ``"\r"``, ``"\x0b"``, ``"\x1c"``,
``"\u2028"``...) is ordinary text inside a line, for the fence scanner and the cut chooser alike,
and the blanks of the fence grammar are spaces and tabs only.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from bot.reply.fences import (
    Fence,
    closing_suffix,
    fence_state,
    looks_like_fence,
    next_state,
    reopen,
)

__all__ = [
    "MIN_MAX_CHARS",
    "Cut",
    "Fence",
    "Part",
    "fence_state",
    "max_reserve",
    "next_cut",
    "split_reply",
    "unsplit",
]

MIN_MAX_CHARS = 20
"""The smallest message size the splitter accepts (room for a fence pair and some text)."""


@dataclass(frozen=True, slots=True)
class Part:
    """One platform message of a split reply.

    Attributes:
        body: The slice of the reply this message carries.
        prefix: The fence line reopening a code block cut by the previous part ("" for none).
        suffix: The fence line closing a code block this part cuts ("" for none).
    """

    body: str
    prefix: str = ""
    suffix: str = ""

    @property
    def text(self) -> str:
        """The message as sent: ``prefix + body + suffix``."""
        return f"{self.prefix}{self.body}{self.suffix}"


@dataclass(frozen=True, slots=True)
class Cut:
    """One part decided by :func:`next_cut`.

    Attributes:
        end: Where the part's body ends in the text (the next part starts here).
        part: The part.
        fence: The code block open at ``end``, as the next part reopens it (pass it back to
            :func:`next_cut` as ``fence``); ``None`` outside a code block.
    """

    end: int
    part: Part
    fence: Fence | None


def max_reserve(max_chars: int) -> int:
    """The most room a footer may take from the last part of a ``max_chars`` split."""
    return max_chars - max_chars // 2 - 1


def _check(max_chars: int, reserve: int) -> None:
    if max_chars < MIN_MAX_CHARS:
        raise ValueError(f"max_chars must be at least {MIN_MAX_CHARS}, got {max_chars}")
    if not 0 <= reserve <= max_reserve(max_chars):
        raise ValueError(
            f"reserve must be between 0 and {max_reserve(max_chars)} for max_chars={max_chars}"
        )


def next_cut(
    text: str,
    start: int,
    max_chars: int,
    *,
    fence: Fence | None = None,
    more_coming: bool,
    reserve: int = 0,
) -> Cut | None:
    """Decide the part that starts at ``start``.

    With ``more_coming`` (the reply is still streaming) a part is only cut once the text after
    ``start`` can no longer fit one message, and the cut depends only on text already there, so
    it never changes as more arrives. Without it, the rest becomes the last part when it fits in
    ``max_chars - reserve``, and is cut otherwise.

    Args:
        text: The whole reply so far.
        start: Where the part starts (the ``end`` of the previous cut; 0 for the first part).
        max_chars: The longest message.
        fence: The ``fence`` of the previous cut.
        more_coming: Whether the text may still grow.
        reserve: Room to leave in the last part (for a footer). Ignored with ``more_coming``.

    Returns:
        The cut, or ``None`` when there is nothing to decide yet (or nothing left).

    Raises:
        ValueError: ``max_chars`` is below :data:`MIN_MAX_CHARS` or ``reserve`` too large.
    """
    _check(max_chars, reserve)
    rest = len(text) - start
    if rest <= 0:
        return None
    carried = reopen(fence, max_chars)
    prefix = carried.opener + "\n" if carried is not None else ""
    room = max_chars - len(prefix)  # the longest body a part can have
    if more_coming:
        if rest <= room:
            return None  # the window is not complete yet: wait for more text
    elif len(prefix) + rest <= max_chars - reserve:  # else it cannot fit, whatever the suffix
        body = text[start:]
        state = fence_state(body, carried)
        suffix = closing_suffix(state, body)
        if len(prefix) + len(body) + len(suffix) <= max_chars - reserve:
            return Cut(len(text), Part(body, prefix, suffix), reopen(state, max_chars))
    window = text[start : start + room + 1]
    offset, state = _choose(window, carried, len(prefix), max_chars)
    body = window[:offset]
    return Cut(
        start + offset, Part(body, prefix, closing_suffix(state, body)), reopen(state, max_chars)
    )


_PARAGRAPH, _LINE, _WORD, _HARD, _UNSAFE = range(5)
_ALL = (_PARAGRAPH, _LINE, _WORD, _HARD, _UNSAFE)


@dataclass(slots=True)
class _Window:
    """The window's lines and where cutting it is allowed, classified on demand.

    Every offset ``0 < o < len(window)`` is one cut of one kind: a line start is a paragraph cut
    (after a blank line) or a line cut; inside a line, a cut that would make the head or the tail
    parse as a fence line when the whole line did not is unsafe, a cut after blanks and before a
    word is a word cut, and any other is a hard cut. Only the lines are scanned up front (a few
    per message); offsets are classified when the chooser, scanning backwards, asks.
    """

    text: str
    starts: list[int]  # where each line starts (the first is 0)
    states: list[Fence | None]  # the code block open at each line's start
    blank_before: list[bool]  # whether the line before each line is blank
    fence_lines: list[bool]  # whether each line (whole) is a fence line

    @classmethod
    def scan(cls, text: str, carried: Fence | None) -> _Window:
        starts: list[int] = []
        states: list[Fence | None] = []
        blank_before: list[bool] = []
        fence_lines: list[bool] = []
        state, start, previous_blank = carried, 0, False
        length = len(text)
        while start < length:
            newline = text.find("\n", start)
            end = length if newline < 0 else newline
            line = text[start:end]
            after = next_state(line, state)
            starts.append(start)
            states.append(state)
            blank_before.append(previous_blank)
            fence_lines.append(after is not state)
            previous_blank = not line.strip()
            state = after
            start = end + 1
        return cls(text, starts, states, blank_before, fence_lines)

    def line_end(self, index: int) -> int:
        """Where line ``index`` ends (its newline, or the end of the window)."""
        if index + 1 < len(self.starts):
            return self.starts[index + 1] - 1
        newline = self.text.find("\n", self.starts[index])
        return len(self.text) if newline < 0 else newline

    def inside(self, offset: int, index: int) -> tuple[int, Fence | None]:
        """The kind and state of a cut at ``offset`` inside line ``index`` (not at its start)."""
        text, line_start, state = self.text, self.starts[index], self.states[index]
        line_end = self.line_end(index)
        head_state = state
        # Only a line starting like a fence can turn into one when shortened.
        if looks_like_fence(text, line_start, line_end):
            head_state = next_state(text[line_start:offset], state)
        # A cut turns the tail into a line of its own: unsafe if that makes it (or the shortened
        # head) parse as a fence line when the whole line did not.
        unsafe = self.fence_lines[index] or head_state is not state
        if not unsafe and looks_like_fence(text, offset, line_end):
            unsafe = next_state(text[offset:line_end], head_state) is not head_state
        if unsafe:
            return _UNSAFE, head_state
        if text[offset - 1] in " \t" and offset < line_end and text[offset] not in " \t":
            return _WORD, state
        return _HARD, state

    def classify(self, offset: int) -> tuple[int, Fence | None]:
        """The kind of the cut at ``offset`` and the code block open there, as the head ends."""
        index = bisect_right(self.starts, offset) - 1
        if self.starts[index] == offset:  # a line start (never the first line's)
            return (_PARAGRAPH if self.blank_before[index] else _LINE), self.states[index]
        return self.inside(offset, index)


def _choose(
    window: str, carried: Fence | None, prefix_len: int, max_chars: int
) -> tuple[int, Fence | None]:
    """Pick where to cut ``window`` (a cut at offset o keeps ``window[:o]``, 0 < o < len).

    The policy (see the module docstring) takes the latest cut that keeps the rules; the search
    walks backwards from the end of the window through the cuts of one kind at a time and stops
    at the first that is acceptable, so a typical cut looks at a few places, not all.
    """
    lines = _Window.scan(window, carried)
    last = min(len(window) - 1, max_chars - prefix_len)  # no later cut can fit
    first_ink = len(window) - len(window.lstrip())
    # A part that shows nothing but whitespace is a waste of a message: avoid it when possible.
    inked = first_ink + 1
    min_fill = (max_chars - prefix_len) // 2

    def fits(offset: int, state: Fence | None) -> bool:
        ends_line = window[offset - 1] == "\n"
        suffix = 0 if state is None else len(state.closer) + (0 if ends_line else 1)
        return prefix_len + offset + suffix <= max_chars

    def line_cut(lowest: int) -> tuple[int, Fence | None] | None:
        for index in range(len(lines.starts) - 1, 0, -1):
            offset = lines.starts[index]
            if offset < lowest:
                break
            if offset <= last:
                state = lines.states[index]
                if fits(offset, state):
                    return offset, state
        return None

    def word_cut(lowest: int, in_code: bool) -> tuple[int, Fence | None] | None:
        # A word cut is after a blank and before a character that is neither blank nor newline.
        blank = max(window.rfind(" ", 0, last), window.rfind("\t", 0, last))
        while blank >= 0 and blank + 1 >= lowest:
            offset = blank + 1
            if window[offset] not in " \t\n":
                kind, state = lines.classify(offset)
                if kind == _WORD and (state is not None) is in_code and fits(offset, state):
                    return offset, state
            blank = max(window.rfind(" ", 0, blank), window.rfind("\t", 0, blank))
        return None

    def any_cut(kinds: tuple[int, ...], lowest: int) -> tuple[int, Fence | None] | None:
        offset = last
        while offset >= max(lowest, 1):
            index = bisect_right(lines.starts, offset) - 1
            if _UNSAFE not in kinds and lines.fence_lines[index] and lines.starts[index] < offset:
                offset = lines.starts[index]  # every cut inside a fence line is unsafe
                continue
            kind, state = lines.classify(offset)
            if kind in kinds and fits(offset, state):
                return offset, state
            offset -= 1
        return None

    # The latest line start, or word cut outside code; inside a code block the words of a line
    # are only cut apart when no line end fills half the message.
    line = line_cut(inked)
    latest = [found for found in (line, word_cut(inked, in_code=False)) if found is not None]
    if line is None or line[0] < min_fill:
        code = word_cut(max(inked, line[0] + 1 if line else 0), in_code=True)
        if code is not None:
            latest.append(code)
    if latest:
        return max(latest, key=lambda cut: cut[0])
    # Then a hard cut; then an unsafe one (it changes which text parses as a fence line, see
    # _Window); then anything that fits, even blank.
    for kinds, lowest in (((_HARD,), inked), ((_UNSAFE,), inked), (_ALL, 1)):
        found = any_cut(kinds, lowest)
        if found is not None:
            return found
    # Unreachable in practice: a one-character body always fits (see reopen's budget).
    return 1, fence_state(window[:1], carried)


def split_reply(text: str, max_chars: int, *, reserve: int = 0) -> list[Part]:
    """Split a whole reply into messages of at most ``max_chars`` characters.

    Args:
        text: The reply.
        max_chars: The longest message the platform accepts.
        reserve: Room to leave in the last part, for a footer appended to it.

    Returns:
        The parts, in order; ``[]`` for an empty text. ``unsplit(parts) == text``.

    Raises:
        ValueError: ``max_chars`` is below :data:`MIN_MAX_CHARS` or ``reserve`` too large.
    """
    _check(max_chars, reserve)
    parts: list[Part] = []
    start = 0
    fence: Fence | None = None
    while True:
        cut = next_cut(text, start, max_chars, fence=fence, more_coming=False, reserve=reserve)
        if cut is None:
            return parts
        parts.append(cut.part)
        start, fence = cut.end, cut.fence


def unsplit(parts: Iterable[Part]) -> str:
    """Put the bodies of ``parts`` back together: the original reply."""
    return "".join(part.body for part in parts)
