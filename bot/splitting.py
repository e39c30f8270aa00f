"""Split a reply into platform messages without breaking its Markdown code fences.

A platform caps the length of one message (Discord: 2000 characters). A long reply becomes
several :class:`Part` objects. Each part is rendered as ``prefix + body + suffix``: the bodies are
consecutive slices of the reply (put together they give the reply back, exactly), and the prefix
and suffix are synthetic fence lines, so that a cut inside a fenced code block closes the block
at the end of one message and reopens it, with the same info string, at the start of the next.

Cuts are made, in order of preference, after a blank line (a paragraph boundary), after any
line, after the whitespace between two words, and only when a single word is longer than a
message, inside that word. Within a kind the latest place wins, and a better kind is only taken
when it fills at least half the message (a paragraph break near the top would waste a message).
A cut never leaves a part of nothing but whitespace when another choice exists, and never makes
a fence line out of text that was not one (a cut starts a new line in the next message).

Streaming needs the same cuts made incrementally: :func:`next_cut` decides one part at a time and
only looks at a window of ``max_chars + 1`` characters after the part's start, so a part frozen
while the reply is still growing is exactly the part :func:`split_reply` makes from the whole
reply. Fence state is tracked the way each rendered message will be parsed (a cut starts a new
line), so every rendered part has balanced fences.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

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

# CommonMark fence line: up to three spaces, then three or more backticks or tildes.
_FENCE_RE = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)")


@dataclass(frozen=True, slots=True)
class Fence:
    """An open fenced code block: how it was opened.

    Attributes:
        indent: The spaces before the marker (at most three).
        marker: The run of backticks or tildes, e.g. "```".
        info: The info string after the marker (e.g. "python"), trailing blanks removed.
    """

    indent: str
    marker: str
    info: str

    @property
    def opener(self) -> str:
        """The fence line that opens this block (without a newline)."""
        return f"{self.indent}{self.marker}{self.info}"

    @property
    def closer(self) -> str:
        """A fence line that closes this block."""
        return self.marker


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


def _next_state(line: str, state: Fence | None) -> Fence | None:
    """The fence state after one line (returns ``state`` itself when the line changes nothing)."""
    if not line or line[0] not in " `~":
        return state  # the common case, decided without scanning the line
    if not line.lstrip(" ").startswith(("```", "~~~")):
        return state
    match = _FENCE_RE.fullmatch(line.removesuffix("\r"))
    if match is None:
        return state
    indent, marker, rest = match.groups()
    if state is None:
        if marker[0] == "`" and "`" in rest:
            return None  # CommonMark: a backtick fence's info string has no backtick
        return Fence(indent, marker, rest.rstrip(" \t"))
    if marker[0] == state.marker[0] and len(marker) >= len(state.marker) and not rest.strip(" \t"):
        return None
    return state


def fence_state(text: str, state: Fence | None = None) -> Fence | None:
    """Scan ``text`` as the lines of a message; return the code block still open at its end.

    A last line without a newline counts as a whole line, as it does in a rendered message.

    Args:
        text: The text to scan.
        state: The code block open before ``text`` (``None`` for none).

    Returns:
        The open code block after ``text``, or ``None``.
    """
    for line in text.split("\n"):
        state = _next_state(line, state)
    return state


def max_reserve(max_chars: int) -> int:
    """The most room a footer may take from the last part of a ``max_chars`` split."""
    return max_chars - max_chars // 2 - 1


def _overhead(fence: Fence) -> int:
    # Prefix line plus newline, and a closer that may need its own newline.
    return len(fence.opener) + 1 + 1 + len(fence.closer)


def _reopen(fence: Fence | None, max_chars: int) -> Fence | None:
    """The fence a continuation reopens: the original, shortened if it would crowd the message.

    A very long info string or marker could leave no room for text; the overhead is kept within
    half a message by dropping the info string after its first word, then all of it, then by
    using a three-character marker.
    """
    if fence is None:
        return None
    budget = max_chars // 2
    words = fence.info.split()
    first = words[0] if words else ""
    if first.startswith(fence.marker[0]):
        # Glued to the marker, "~0" would make "~~~~0": a longer fence the closer cannot close.
        first = " " + first
    candidates = [
        fence,
        Fence("", fence.marker, first),
        Fence("", fence.marker, ""),
        Fence("", fence.marker[0] * 3, ""),
    ]
    for candidate in candidates:
        if _overhead(candidate) <= budget:
            return candidate
    return candidates[-1]


def _suffix(state: Fence | None, body: str) -> str:
    if state is None:
        return ""
    return state.closer if body.endswith("\n") else "\n" + state.closer


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
    carried = _reopen(fence, max_chars)
    prefix = carried.opener + "\n" if carried is not None else ""
    room = max_chars - len(prefix)  # the longest body a part can have
    if more_coming:
        if rest <= room:
            return None  # the window is not complete yet: wait for more text
    elif len(prefix) + rest <= max_chars - reserve:  # else it cannot fit, whatever the suffix
        body = text[start:]
        state = fence_state(body, carried)
        suffix = _suffix(state, body)
        if len(prefix) + len(body) + len(suffix) <= max_chars - reserve:
            return Cut(len(text), Part(body, prefix, suffix), _reopen(state, max_chars))
    window = text[start : start + room + 1]
    offset, state = _choose(window, carried, len(prefix), max_chars)
    body = window[:offset]
    return Cut(start + offset, Part(body, prefix, _suffix(state, body)), _reopen(state, max_chars))


@dataclass(slots=True)
class _Candidate:
    offset: int
    state: Fence | None
    kind: int  # _PARAGRAPH, _LINE, _WORD, _HARD, _UNSAFE


_PARAGRAPH, _LINE, _WORD, _HARD, _UNSAFE = range(5)


def _choose(
    window: str, carried: Fence | None, prefix_len: int, max_chars: int
) -> tuple[int, Fence | None]:
    """Pick where to cut ``window`` (a cut at offset o keeps ``window[:o]``, 0 < o < len)."""
    candidates = list(_candidates(window, carried))

    def fits(c: _Candidate) -> bool:
        ends_line = window[c.offset - 1] == "\n"
        suffix = 0 if c.state is None else len(c.state.closer) + (0 if ends_line else 1)
        return prefix_len + c.offset + suffix <= max_chars

    fitting = [c for c in candidates if fits(c)]
    first_ink = len(window) - len(window.lstrip())
    # A part that shows nothing but whitespace is a waste of a message: avoid it when possible.
    inked = [c for c in fitting if c.offset > first_ink]
    min_fill = (max_chars - prefix_len) // 2
    for kind in (_PARAGRAPH, _LINE, _WORD):
        best = [c for c in inked if c.kind == kind and c.offset >= min_fill]
        if best:
            return _latest(best)
    for kinds in ((_PARAGRAPH, _LINE, _WORD), (_HARD,), (_UNSAFE,)):
        best = [c for c in inked if c.kind in kinds]
        if best:
            return _latest(best)
    if fitting:
        return _latest(fitting)
    # Unreachable in practice: a one-character body always fits (see _reopen's budget).
    return 1, fence_state(window[:1], carried)


def _latest(candidates: Iterable[_Candidate]) -> tuple[int, Fence | None]:
    best = max(candidates, key=lambda c: c.offset)
    return best.offset, best.state


def _fency_at(text: str, pos: int, end: int) -> bool:
    """Whether ``text[pos:end]`` starts like a fence line (up to 3 spaces, then ``` or ~~~)."""
    spaces = 0
    while spaces < 3 and pos + spaces < end and text[pos + spaces] == " ":
        spaces += 1
    return text.startswith(("```", "~~~"), pos + spaces, end)


def _candidates(window: str, carried: Fence | None) -> Iterable[_Candidate]:
    """Every place the window could be cut (never at 0 or at its very end), classified."""
    state = carried
    line_start = 0
    previous_blank = False
    length = len(window)
    while line_start < length:
        newline = window.find("\n", line_start)
        line_end = length if newline < 0 else newline
        line = window[line_start:line_end]
        if line_start > 0:
            yield _Candidate(line_start, state, _PARAGRAPH if previous_blank else _LINE)
        after = _next_state(line, state)
        line_is_fence = after is not state
        # Only a line starting like a fence can turn into one when shortened.
        head_fency = _fency_at(window, line_start, line_end)
        for offset in range(line_start + 1, min(line_end + 1, length)):
            head_state = state
            if head_fency:
                head_state = _next_state(window[line_start:offset], state)
            # A cut turns the tail into a line of its own: unsafe if that makes it (or the
            # shortened head) parse as a fence line when the whole line did not.
            unsafe = line_is_fence or head_state is not state
            if not unsafe and _fency_at(window, offset, line_end):
                unsafe = _next_state(window[offset:line_end], head_state) is not head_state
            if unsafe:
                yield _Candidate(offset, head_state, _UNSAFE)
            elif window[offset - 1] in " \t" and offset < line_end and window[offset] not in " \t":
                yield _Candidate(offset, state, _WORD)
            else:
                yield _Candidate(offset, state, _HARD)
        previous_blank = not line.strip()
        state = after
        line_start = line_end + 1


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
