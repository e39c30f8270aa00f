"""Markdown code fences as a rendered message sees them: which block is open, how to reopen it.

A line opens a fenced code block when it has at most three spaces, then three or more backticks
or tildes and an info string (a backtick fence's info string has no backtick); a later line of
the same character, at least as long and with nothing after it, closes it. The splitter
(:mod:`bot.reply.splitting`) scans the reply with these rules to close a block at the end of
one message and reopen it, with the same info string, at the start of the next.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Fence", "closing_suffix", "fence_state", "looks_like_fence", "next_state", "reopen"]

# CommonMark fence line: up to three spaces, then three or more backticks or tildes.
_FENCE_RE = re.compile(r"( {0,3})(`{3,}|~{3,})(.*)")
_BLANKS_RE = re.compile(r"[ \t]+")


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


def next_state(line: str, state: Fence | None) -> Fence | None:
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
        state = next_state(line, state)
    return state


def _overhead(fence: Fence) -> int:
    # Prefix line plus newline, and a closer that may need its own newline.
    return len(fence.opener) + 1 + 1 + len(fence.closer)


def reopen(fence: Fence | None, max_chars: int) -> Fence | None:
    """The fence a continuation reopens: the original, shortened if it would crowd the message.

    A very long info string or marker could leave no room for text; the overhead is kept within
    half a message by dropping the info string after its first word, then all of it, then by
    using a three-character marker.
    """
    if fence is None:
        return None
    budget = max_chars // 2
    # Words as the fence grammar sees them: split on blanks only. str.split() would also split
    # on "\r", "\x0b", "\x1c", "\u2028"..., characters that are plain text inside a line here.
    words = _BLANKS_RE.split(fence.info.strip(" \t"))
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


def closing_suffix(state: Fence | None, body: str) -> str:
    if state is None:
        return ""
    return state.closer if body.endswith("\n") else "\n" + state.closer


def looks_like_fence(text: str, pos: int, end: int) -> bool:
    """Whether ``text[pos:end]`` starts like a fence line (up to 3 spaces, then ``` or ~~~)."""
    spaces = 0
    while spaces < 3 and pos + spaces < end and text[pos + spaces] == " ":
        spaces += 1
    return text.startswith(("```", "~~~"), pos + spaces, end)
